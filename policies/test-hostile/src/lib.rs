//! A hostile policy for the host's tests: the default policy, except that
//! a local message whose body is one of the words below makes it misbehave.
//!
//! - `trap`: panics (a wasm trap).
//! - `loop`: never returns.
//! - `grow`: allocates far more memory than any cap allows.
//! - `forge`: returns actions that try to break the host's invariants.
//! - `facts`: echoes the facts it was given back to the sender.
//! - `nothing`: decides nothing (no actions): what is left of a decision is
//!   the cost of the call itself (the policy micro-benchmark measures it).
//! - `clock`: logs what the system clock says, in seconds.
//! - `sleep`: sleeps for a millisecond (a policy cannot wait).
//! - `print`: writes a line to stdout and to stderr, then decides as usual.
//! - `print-and-trap`: writes a line to stderr, then panics.
//! - `net`: tries to read a directory and to open a TCP connection, and
//!   logs what each attempt met.
//! - `remember <text>` / `recall`: writes and reads the account's store
//!   (`recall` logs `memo: ` and the memo as JSON, `null` when unset);
//!   `fill` tries to store more than the store allows.
//!
//! The JavaScript and Python hostile policies answer the same words the
//! same way, so that one set of tests serves the three languages.
//!
//! With `always = "<word>"` in its configuration it behaves as if every
//! event carried that word (`always = "trap"`: a policy that always traps).

use pizzja_policy_default::DefaultPolicy;
use pizzja_sdk::{Action, Config, Content, Event, Facts, Policy, SendForeign, SendLocal, xml};

// The default policy's allocator, so that `nothing` measures the call the
// default policy pays for.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOC: pizzja_sdk::SmallAlloc = pizzja_sdk::SmallAlloc::new();

/// The default policy with a few bad habits.
pub struct Hostile {
    inner: DefaultPolicy,
    always: Option<String>,
}

fn body(event: &Event) -> Option<&str> {
    let Event::Local(local) = event else {
        return None;
    };
    let x = &local.stanza.xml;
    let start = x.find("<body>")? + "<body>".len();
    let end = x[start..].find("</body>")? + start;
    Some(&x[start..end])
}

impl Policy for Hostile {
    fn new(config: &Config) -> Result<Self, String> {
        Ok(Hostile {
            inner: DefaultPolicy::new(config)?,
            always: config.get("always").map(str::to_string),
        })
    }

    fn decide(&mut self, event: &Event, facts: &Facts) -> Vec<Action> {
        match self.always.as_deref().or(body(event)) {
            Some("trap") => panic!("hostile policy traps on purpose"),
            Some("loop") => loop {
                std::hint::black_box(());
            },
            Some("grow") => {
                // Written to, so the optimiser cannot drop it.
                let big = vec![7u8; 1 << 30];
                vec![Action::debug(format!(
                    "grew {}",
                    std::hint::black_box(&big).len()
                ))]
            }
            Some("forge") => {
                let sender = match event {
                    Event::Local(l) => l.sender_resource.clone(),
                    _ => None,
                };
                vec![
                    // Another account as the target, and a sender outside T.
                    Action::SendLocal(SendLocal {
                        to_resource: Some("x/../../carol@local.test".into()),
                        from_node: Some("evil@elsewhere.example".into()),
                        from_resource: None,
                        content: Content::Xml(xml::chat("to another account")),
                    }),
                    // Addresses written into the XML itself.
                    Action::SendLocal(SendLocal {
                        to_resource: sender,
                        from_node: None,
                        from_resource: None,
                        content: Content::Xml(
                            "<message type='chat' to='carol@local.test' from='admin@local.test'><body>forged</body></message>".into(),
                        ),
                    }),
                    // A session that is not this account's.
                    Action::SendForeign(SendForeign {
                        session: "NotMine".into(),
                        to: Some("bob@foreign.test".into()),
                        content: Content::Original,
                        ties: Vec::new(),
                    }),
                ]
            }
            Some(b) if b.starts_with("remember ") => {
                let said = match pizzja_sdk::store::set("memo", &b.as_bytes()["remember ".len()..])
                {
                    Ok(()) => "stored".to_string(),
                    Err(e) => format!("refused: {e}"),
                };
                vec![Action::debug(said)]
            }
            Some("recall") => {
                // Debug formatting of a plain string is its JSON.
                let memo = pizzja_sdk::store::get("memo").map_or("null".into(), |v| {
                    format!("{:?}", String::from_utf8_lossy(&v))
                });
                vec![Action::debug(format!("memo: {memo}"))]
            }
            Some("fill") => {
                let said = match pizzja_sdk::store::set("big", &vec![1u8; 70 * 1024]) {
                    Ok(()) => "stored".to_string(),
                    Err(e) => format!("refused: {e}"),
                };
                vec![Action::debug(said)]
            }
            Some("clock") => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(-1.0, |d| d.as_secs_f64());
                vec![Action::debug(format!("clock: {now}"))]
            }
            Some("sleep") => {
                std::thread::sleep(std::time::Duration::from_millis(1));
                vec![Action::debug("slept")]
            }
            Some("print") => {
                println!("to stdout");
                eprintln!("to stderr");
                self.inner.decide(event, facts)
            }
            Some("print-and-trap") => {
                eprintln!("to stderr");
                panic!("thrown on purpose")
            }
            Some("net") => {
                let files = std::fs::read_dir("/").map(|d| d.count());
                let socket = std::net::TcpStream::connect("127.0.0.1:5222").map(|_| "connected");
                vec![Action::debug(format!(
                    "net: files {files:?}; socket {socket:?}"
                ))]
            }
            Some("nothing") => Vec::new(),
            Some("facts") => {
                let sender = match event {
                    Event::Local(l) => l.sender_resource.clone(),
                    _ => None,
                };
                vec![Action::send_local_from_gateway(
                    sender,
                    xml::chat(&format!("{facts:?}")),
                )]
            }
            _ => self.inner.decide(event, facts),
        }
    }
}

pizzja_sdk::export_policy!(Hostile);
