//! The end-to-end harness: a real Prosody per test (temp dir, random
//! loopback ports), real XMPP clients, and the gateway run in this same
//! process — so every test also proves that tokio-xmpp's client and our
//! component link live together in one build (docs/dependencies.md).
//!
//! A test that needs Prosody fails loudly when it is missing.

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use minidom::Element;
use pizzja_host::config::{Config, ForeignTls};
use pizzja_host::xmpp::foreign::Connector;
use std::collections::VecDeque;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio_xmpp::Stanza;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::stanzastream::{Event, StanzaStream, StreamEvent};
use tokio_xmpp::xmlstream::Timeouts;

pub mod ejabberd;
pub mod process;
pub mod proxy;
pub mod systemd;

/// The local virtual host.
pub const LOCAL: &str = "local.test";
/// The foreign virtual host.
pub const FOREIGN: &str = "foreign.test";
/// The gateway's component domain.
pub const GW: &str = "gw.local.test";
/// Every test account's password.
pub const PASSWORD: &str = "correct horse";
/// How long any expected stanza may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(15);

/// The component secret of the test servers.
pub const SECRET: &str = "component-secret";

/// Logs to the test's output at `RUST_LOG` (default: warnings).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub(crate) fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(cmd))
        .find(|p| p.is_file())
}

/// A throwaway Prosody: its own directory, ports and users.
pub struct Prosody {
    /// Its temporary directory (config, data, log).
    pub dir: tempfile::TempDir,
    /// The client port.
    pub c2s: u16,
    /// The component port.
    pub component: u16,
    /// The direct TLS client port (XEP-0368) of [`Options::direct_tls`], or 0.
    pub c2s_direct_tls: u16,
    child: Child,
    /// ejabberd in Prosody's place (`PIZZJA_TEST_SERVER=ejabberd`).
    ejabberd: bool,
}

impl Prosody {
    /// Starts Prosody with `users` (`(user, domain)`, password [`PASSWORD`])
    /// and waits until both ports accept connections.
    pub async fn start(users: &[(&str, &str)]) -> Result<Prosody> {
        Prosody::start_with(users, false).await
    }

    /// Like [`Prosody::start`]; with `tls`, foreign.test offers STARTTLS
    /// with a certificate signed by a throwaway CA (`ca.crt` in [`Prosody::dir`]).
    /// Archives are on (XEP-0313), as on any server today's clients use.
    pub async fn start_with(users: &[(&str, &str)], tls: bool) -> Result<Prosody> {
        let options = Options {
            tls,
            mam: true,
            ..Options::default()
        };
        Prosody::start_options(users, &options).await
    }

    /// Starts Prosody with every knob of [`Options`].
    pub async fn start_options(users: &[(&str, &str)], options: &Options) -> Result<Prosody> {
        if ejabberd::wanted() {
            return Prosody::start_ejabberd(users, options).await;
        }
        let prosody = which("prosody").context(
            "prosody is not installed: the end-to-end tests need it (apt-get install prosody)",
        )?;
        let dir = tempfile::tempdir()?;
        let (c2s, component) = (free_port(), free_port());
        let (mut extra_modules, foreign_ssl) = if options.tls {
            make_certificates(dir.path())?;
            let d = dir.path().display();
            (
                ", \"tls\"".to_string(),
                format!(
                    "    ssl = {{ certificate = \"{d}/foreign.crt\", key = \"{d}/foreign.key\" }}"
                ),
            )
        } else {
            (String::new(), String::new())
        };
        if options.mam {
            extra_modules.push_str(", \"mam\"");
        }
        let c2s_direct_tls = if options.direct_tls { free_port() } else { 0 };
        let direct_tls = if options.direct_tls {
            let d = dir.path().display();
            format!(
                "c2s_direct_tls_ports = {{ {c2s_direct_tls} }}\nc2s_direct_tls_ssl = {{ certificate = \"{d}/foreign.crt\", key = \"{d}/foreign.key\" }}"
            )
        } else {
            String::new()
        };
        let config = include_str!("../prosody/prosody.cfg.lua.in")
            .replace("@DIRECT_TLS@", &direct_tls)
            .replace("@DIR@", &dir.path().display().to_string())
            .replace("@C2S@", &c2s.to_string())
            .replace("@COMPONENT@", &component.to_string())
            .replace("@SECRET@", SECRET)
            .replace("@LOGLEVEL@", options.log_level)
            .replace("@AUTHENTICATION@", options.authentication)
            .replace("@EXTRA_MODULES@", &extra_modules)
            .replace("@FOREIGN_SSL@", &foreign_ssl)
            .replace("@HIBERNATION@", &options.hibernation_secs.to_string());
        let cfg_path = dir.path().join("prosody.cfg.lua");
        std::fs::write(&cfg_path, config)?;
        std::fs::create_dir_all(dir.path().join("data"))?;
        for (user, domain) in users {
            register_user(&cfg_path, user, domain, PASSWORD)?;
        }
        if let Some(first) = options.bulk_users.first() {
            // One account made by prosodyctl, copied for all: the same
            // password gives the same stored credentials (salted SCRAM keys
            // with internal_hashed), and the copies take milliseconds.
            register_user(&cfg_path, "bulktemplate", &first.domain, PASSWORD)?;
            let template =
                host_dir(&dir.path().join("data"), &first.domain).join("accounts/bulktemplate.dat");
            let account = std::fs::read_to_string(&template)
                .with_context(|| format!("reading {}", template.display()))?;
            write_bulk_users(&dir.path().join("data"), &options.bulk_users, &account)?;
        }
        let child = spawn_prosody(&prosody, &cfg_path)?;
        let mut p = Prosody {
            dir,
            c2s,
            component,
            c2s_direct_tls,
            child,
            ejabberd: false,
        };
        p.wait_ready().await?;
        Ok(p)
    }

    /// ejabberd with the same domains, ports and accounts. What only
    /// Prosody offers here (certificates, bulk accounts, direct TLS) is
    /// refused: the tests that need it run against Prosody.
    async fn start_ejabberd(users: &[(&str, &str)], options: &Options) -> Result<Prosody> {
        if options.tls || options.direct_tls || !options.bulk_users.is_empty() {
            bail!(
                "this test needs Prosody (TLS or bulk accounts); run it without PIZZJA_TEST_SERVER"
            );
        }
        let dir = tempfile::tempdir()?;
        let (c2s, component) = (free_port(), free_port());
        ejabberd::configure(
            dir.path(),
            c2s,
            component,
            options.hibernation_secs,
            options.log_level,
        )?;
        let child = ejabberd::spawn(dir.path())?;
        let mut p = Prosody {
            dir,
            c2s,
            component,
            c2s_direct_tls: 0,
            child,
            ejabberd: true,
        };
        p.wait_ready().await?;
        for (user, domain) in users {
            ejabberd::register(c2s, user, domain, PASSWORD).await?;
        }
        Ok(p)
    }

    /// The server's process id (for CPU and memory readings).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server and starts it again on the same ports and data:
    /// every connection to it drops.
    pub async fn restart(&mut self) -> Result<()> {
        if self.ejabberd {
            // Erlang stops cleanly on SIGTERM: mnesia closes its tables.
            ejabberd::terminate(&mut self.child)?;
        } else {
            self.child.kill()?;
        }
        self.child.wait()?;
        self.child = if self.ejabberd {
            ejabberd::spawn(self.dir.path())?
        } else {
            let prosody = which("prosody").context("prosody is not installed")?;
            spawn_prosody(&prosody, &self.dir.path().join("prosody.cfg.lua"))?
        };
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + WAIT;
        for port in [self.c2s, self.component, self.c2s_direct_tls]
            .into_iter()
            .filter(|p| *p != 0)
        {
            loop {
                if let Some(status) = self.child.try_wait()? {
                    bail!("the server exited with {status}; its log:\n{}", self.log());
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    bail!(
                        "the server did not open port {port}; its log:\n{}",
                        self.log()
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// Deletes a user (the server may be running; its sessions stay up).
    pub fn delete_user(&self, user: &str, domain: &str) -> Result<()> {
        if self.ejabberd {
            return ejabberd::delete_user(self.dir.path(), user, domain);
        }
        let out = Command::new("prosodyctl")
            .arg("--config")
            .arg(self.dir.path().join("prosody.cfg.lua"))
            .args(["deluser", &format!("{user}@{domain}")])
            .output()
            .context("failed to run prosodyctl")?;
        if !out.status.success() {
            bail!(
                "prosodyctl deluser failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Prosody's log, for failure messages.
    pub fn log(&self) -> String {
        let file = if self.ejabberd {
            "ejabberd.log"
        } else {
            "prosody.log"
        };
        std::fs::read_to_string(self.dir.path().join(file)).unwrap_or_default()
    }

    /// The gateway configuration for this server as TOML, plus `extra`.
    pub fn gateway_toml(&self, database: &Path, extra: &str) -> String {
        self.gateway_toml_to(self, database, extra)
    }

    /// Like [`Prosody::gateway_toml`], with foreign.test served by `foreign`
    /// (another Prosody, as in production).
    pub fn gateway_toml_to(&self, foreign: &Prosody, database: &Path, extra: &str) -> String {
        format!(
            r#"
[component]
jid = "{GW}"
server = "127.0.0.1:{component}"
secret = "{SECRET}"
local_domains = ["{LOCAL}"]
admins = ["admin@{LOCAL}"]

[storage]
database = "{db}"

[foreign]
tls = "plaintext"
login_timeout_secs = 10
[foreign.hosts]
"{FOREIGN}" = "127.0.0.1:{c2s}"
{extra}
"#,
            component = self.component,
            c2s = foreign.c2s,
            db = database.display(),
        )
    }

    /// The gateway configuration for this server, plus `extra` TOML.
    pub fn gateway_config(&self, database: &Path, extra: &str) -> Config {
        Config::parse(&self.gateway_toml(database, extra), Path::new("."))
            .expect("test configuration is valid")
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_prosody(prosody: &Path, cfg: &Path) -> Result<Child> {
    Command::new(prosody)
        .arg("--config")
        .arg(cfg)
        .arg("-F")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("failed to start prosody")
}

/// A CA and a certificate for foreign.test signed by it, with openssl.
fn make_certificates(dir: &Path) -> Result<()> {
    which("openssl").context("openssl is needed for the TLS tests (apt-get install openssl)")?;
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:foreign.test\nbasicConstraints=CA:FALSE\n",
    )?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let steps: [Vec<&str>; 3] = [
        [
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=Pizzja Test CA",
            ],
        ]
        .concat(),
        [
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "foreign.key",
                "-out",
                "foreign.csr",
                "-subj",
                "/CN=foreign.test",
            ],
        ]
        .concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "foreign.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "foreign.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(&args)
            .current_dir(dir)
            .output()?;
        if !out.status.success() {
            bail!(
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

fn register_user(cfg: &Path, user: &str, domain: &str, password: &str) -> Result<()> {
    let out = Command::new("prosodyctl")
        .arg("--config")
        .arg(cfg)
        .args(["register", user, domain, password])
        .output()
        .context("failed to run prosodyctl")?;
    if !out.status.success() {
        bail!(
            "prosodyctl register {user} {domain} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// How to start a throwaway Prosody.
pub struct Options {
    /// foreign.test offers STARTTLS (see [`Prosody::start_with`]).
    pub tls: bool,
    /// Prosody's log level.
    pub log_level: &'static str,
    /// Prosody's `authentication`.
    pub authentication: &'static str,
    /// Accounts written straight into the data directory before start
    /// (thousands in milliseconds, where `prosodyctl` takes a second each).
    pub bulk_users: Vec<BulkUser>,
    /// How long a cut XEP-0198 session may still be resumed, seconds
    /// (Prosody's `smacks_hibernation_time`, 600 by default).
    pub hibernation_secs: u32,
    /// Archives on the server (XEP-0313, `mod_mam`), kept in memory.
    pub mam: bool,
    /// A direct TLS client port too (XEP-0368), with [`Options::tls`]'s
    /// certificate.
    pub direct_tls: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tls: false,
            log_level: "info",
            authentication: "internal_hashed",
            bulk_users: Vec::new(),
            hibernation_secs: 600,
            mam: false,
            direct_tls: false,
        }
    }
}

/// An account for [`Options::bulk_users`], password [`PASSWORD`].
pub struct BulkUser {
    /// Its node.
    pub user: String,
    /// Its domain.
    pub domain: String,
    /// Roster items with subscription `both` (e.g. the gateway).
    pub roster: Vec<String>,
}

/// Prosody's `internal` storage keeps a host's data in `data/<host>/`, with
/// `.` in the host name written as `%2e`.
fn host_dir(data: &Path, domain: &str) -> PathBuf {
    data.join(domain.replace('.', "%2e"))
}

/// Writes `account` (a Prosody account file) for every user, and their
/// rosters (`<store>/<user>.dat`, Lua tables).
fn write_bulk_users(data: &Path, users: &[BulkUser], account: &str) -> Result<()> {
    let lua = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    for u in users {
        let host = host_dir(data, &u.domain);
        std::fs::create_dir_all(host.join("accounts"))?;
        std::fs::write(
            host.join("accounts").join(format!("{}.dat", u.user)),
            account,
        )?;
        if !u.roster.is_empty() {
            std::fs::create_dir_all(host.join("roster"))?;
            let mut roster =
                String::from("return {\n\t[false] = { [\"version\"] = 1; [\"pending\"] = {}; };\n");
            for item in &u.roster {
                roster.push_str(&format!(
                    "\t[\"{}\"] = {{ [\"subscription\"] = \"both\"; [\"groups\"] = {{}}; }};\n",
                    lua(item)
                ));
            }
            roster.push_str("};\n");
            std::fs::write(host.join("roster").join(format!("{}.dat", u.user)), roster)?;
        }
    }
    Ok(())
}

/// The gateway, running in this process.
pub struct Gateway {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<()>>,
    /// What happens to its policy (reloads, refusals, rollbacks).
    pub policy_events: tokio::sync::broadcast::Receiver<pizzja_host::policy::PolicyEvent>,
}

impl Gateway {
    /// Starts the gateway and waits until its component link is up.
    pub async fn start(config: Config) -> Result<Gateway> {
        Gateway::start_with(config, |_| {}).await
    }

    /// Like [`Gateway::start`], with what `prepare` made adjusted first
    /// (the SRV answers it sees, say).
    pub async fn start_with(
        config: Config,
        adjust: impl FnOnce(&mut pizzja_host::Prepared),
    ) -> Result<Gateway> {
        let mut prepared = pizzja_host::prepare(config)?;
        adjust(&mut prepared);
        let policy_events = prepared.policy_events();
        let (stop, shutdown) = watch::channel(false);
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(pizzja_host::run(prepared, shutdown, Some(ready_tx)));
        tokio::time::timeout(WAIT, ready_rx)
            .await
            .context("the gateway's component link did not come up")?
            .context("the gateway stopped before it was ready")?;
        Ok(Gateway {
            stop,
            task,
            policy_events,
        })
    }

    /// Stops the gateway and waits for it.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        tokio::time::timeout(WAIT, self.task)
            .await
            .context("the gateway did not stop")???;
        Ok(())
    }
}

/// A real XMPP client connected to the test Prosody.
pub struct Client {
    /// Its full JID.
    pub jid: String,
    stream: StanzaStream,
    inbox: VecDeque<Element>,
}

impl Client {
    /// Logs `user@domain/resource` in and waits until it is bound.
    pub async fn connect(
        prosody: &Prosody,
        user: &str,
        domain: &str,
        resource: &str,
    ) -> Result<Client> {
        let jid: Jid = format!("{user}@{domain}/{resource}").parse()?;
        let connector = Connector {
            addr: Some(format!("127.0.0.1:{}", prosody.c2s).parse()?),
            resolver: Default::default(),
            tls: ForeignTls::Plaintext,
            tls_config: pizzja_host::xmpp::foreign::tls_config(None)?,
        };
        let mut stream = StanzaStream::new_c2s(
            connector,
            jid.clone(),
            PASSWORD.into(),
            Timeouts::tight(),
            64,
        );
        let bound = tokio::time::timeout(WAIT, async {
            while let Some(ev) = stream.next().await {
                if let Event::Stream(StreamEvent::Reset { bound_jid, .. }) = ev {
                    return Some(bound_jid);
                }
            }
            None
        })
        .await
        .with_context(|| format!("{jid} did not log in"))?
        .with_context(|| format!("{jid}'s stream ended during login"))?;
        Ok(Client {
            jid: bound_jid_text(&bound),
            stream,
            inbox: VecDeque::new(),
        })
    }

    /// The client's bare JID.
    pub fn bare(&self) -> String {
        self.jid.split('/').next().unwrap_or_default().to_string()
    }

    /// Sends a stanza written as XML (namespace jabber:client is added).
    pub async fn send(&self, xml: &str) {
        let el = parse(xml);
        let stanza =
            Stanza::try_from(el).unwrap_or_else(|e| panic!("test stanza {xml} is invalid: {e}"));
        self.stream.send(Box::new(stanza)).await;
    }

    /// Waits for the first stanza (already received or coming) that
    /// satisfies `pred`, and takes it out of the inbox. Fails the test after
    /// [`WAIT`], listing what did arrive.
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Element) -> bool) -> Element {
        if let Some(pos) = self.inbox.iter().position(&pred) {
            return self.inbox.remove(pos).expect("position is in range");
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next()).await;
            match next {
                Ok(Some(Event::Stanza(s))) => {
                    let el = Element::from(s);
                    if pred(&el) {
                        return el;
                    }
                    self.inbox.push_back(el);
                }
                Ok(Some(Event::Stream(_))) => {}
                Ok(None) => panic!("{}: stream ended while waiting for {what}", self.jid),
                Err(_) => panic!(
                    "{}: no {what} within {WAIT:?}; received meanwhile:\n{}",
                    self.jid,
                    self.inbox.iter().map(xml).collect::<Vec<_>>().join("\n")
                ),
            }
        }
    }

    /// Waits for the answer with `id` and checks it is an error with the
    /// defined `condition`; returns it for further checks.
    pub async fn expect_error(&mut self, id: &str, condition: &str) -> Element {
        let e = self.expect("an error", |e| e.attr("id") == Some(id)).await;
        assert_eq!(
            error_condition(&e).as_deref(),
            Some(condition),
            "{}",
            xml(&e)
        );
        e
    }

    /// Stanzas received so far and not yet taken by [`Client::expect`].
    pub fn inbox(&self) -> impl Iterator<Item = &Element> {
        self.inbox.iter()
    }

    /// Forgets what is in the inbox.
    pub fn clear(&mut self) {
        self.inbox.clear();
    }

    /// Becomes an interested and available resource as today's clients
    /// (Conversations, Gajim, Dino) do at login: enables carbons (XEP-0280),
    /// asks for the roster (RFC 6121), then sends initial presence.
    pub async fn go_online(&mut self) {
        self.send("<iq type='set' id='carbons-on'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
            .await;
        let on = self
            .expect("carbons enabled", |e| {
                e.name() == "iq" && e.attr("id") == Some("carbons-on")
            })
            .await;
        assert_eq!(on.attr("type"), Some("result"), "carbons: {}", xml(&on));
        self.send("<iq type='get' id='roster-get'><query xmlns='jabber:iq:roster'/></iq>")
            .await;
        self.expect("the roster", |e| {
            e.name() == "iq" && e.attr("id") == Some("roster-get")
        })
        .await;
        self.send("<presence/>").await;
        let me = self.jid.clone();
        self.expect("own presence", |e| {
            e.name() == "presence" && e.attr("from") == Some(me.as_str())
        })
        .await;
    }

    /// The underlying stream, for load generators that read it themselves.
    pub fn into_stream(self) -> StanzaStream {
        self.stream
    }

    /// Logs out cleanly (the server sends unavailable presence for it).
    pub async fn disconnect(self) {
        self.stream.close().await;
    }
}

fn bound_jid_text(jid: &Jid) -> String {
    jid.to_string()
}

/// Runs `cmd` to its end and returns what it wrote, stdout then stderr;
/// panics with that text when it fails or cannot start.
pub fn output_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// Parses test XML, adding the client namespace to the root.
pub fn parse(xml: &str) -> Element {
    let with_ns = if xml.contains("xmlns='jabber:client'") {
        xml.to_string()
    } else {
        let end = xml.find(['>', '/', ' ']).expect("an element");
        format!("{} xmlns='jabber:client'{}", &xml[..end], &xml[end..])
    };
    with_ns
        .parse()
        .unwrap_or_else(|e| panic!("test XML {xml} does not parse: {e}"))
}

/// The element as XML text.
pub fn xml(el: &Element) -> String {
    pizzja_host::xmpp::to_xml(el)
}

/// The gateway JID of foreign JID `jid` (`esc(bare)@T[/res]`).
pub fn gw_jid(jid: &str) -> String {
    match jid.split_once('/') {
        Some((bare, res)) => format!("{}@{GW}/{res}", pizzja_sdk::escape(bare)),
        None => format!("{}@{GW}", pizzja_sdk::escape(jid)),
    }
}

/// XEP-0050's namespace.
pub const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";

/// Executes the gateway's one-stage ad-hoc command `node` and returns the
/// answer (a result or an error).
pub async fn execute_command(client: &mut Client, id: &str, node: &str) -> Element {
    client.send(&format!("<iq type='set' id='{id}' to='{GW}'><command xmlns='{NS_COMMANDS}' node='{node}' action='execute'/></iq>")).await;
    client
        .expect("the command's answer", |e| e.attr("id") == Some(id))
        .await
}

/// The note of a completed command: its type and text.
pub fn command_note(answer: &Element) -> Option<(String, String)> {
    let note = answer
        .get_child("command", NS_COMMANDS)?
        .get_child("note", NS_COMMANDS)?;
    Some((note.attr("type").unwrap_or("").to_string(), note.text()))
}

/// A counter of the admin `stats` command's note (`name: value` lines).
pub fn stats_counter(note: &str, name: &str) -> Option<u64> {
    note.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .and_then(|v| v.parse().ok())
}

/// The body of a message, if any.
pub fn body(el: &Element) -> Option<String> {
    el.get_child("body", "jabber:client").map(Element::text)
}

/// The defined condition of an error stanza, if it is one.
pub fn error_condition(el: &Element) -> Option<String> {
    let error = el.get_child("error", "jabber:client")?;
    error
        .children()
        .find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-stanzas" && c.name() != "text")
        .map(|c| c.name().to_string())
}

/// Registers `client`'s account with the gateway as `foreign` and does the
/// XEP-0100 subscription handshake both ways.
pub async fn register(client: &mut Client, foreign: &str, password: &str) -> Element {
    client
        .send(&format!(
            "<iq type='set' id='reg1' to='{GW}'><query xmlns='jabber:iq:register'><username>{foreign}</username><password>{password}</password></query></iq>"
        ))
        .await;
    client
        .expect("registration answer", |e| {
            e.name() == "iq" && e.attr("id") == Some("reg1")
        })
        .await
}

/// Registers and checks that the gateway refuses it with the defined
/// `condition`; returns the answer for further checks.
pub async fn register_refused(
    client: &mut Client,
    foreign: &str,
    password: &str,
    condition: &str,
) -> Element {
    let answer = register(client, foreign, password).await;
    assert_eq!(
        error_condition(&answer).as_deref(),
        Some(condition),
        "registering {foreign}: {}",
        xml(&answer)
    );
    answer
}

/// The foreign account most tests register.
pub const ME: &str = "me@foreign.test";

/// alice's phone (`Work/phone`), online, with [`ME`] registered: the
/// controller most tests start from.
pub async fn registered_phone(server: &Prosody) -> Client {
    let mut phone = Client::connect(server, "alice", LOCAL, "Work/phone")
        .await
        .expect("the phone logs in");
    phone.go_online().await;
    register_ok(&mut phone, ME).await;
    phone
}

/// bob (`bob@foreign.test/pc`), online: a contact of [`ME`].
pub async fn bob_online(server: &Prosody) -> Client {
    let mut bob = Client::connect(server, "bob", FOREIGN, "pc")
        .await
        .expect("bob logs in");
    bob.go_online().await;
    bob
}

/// Registers (the client must have gone online) and completes the
/// subscription handshake; panics on failure.
pub async fn register_ok(client: &mut Client, foreign: &str) {
    let answer = register(client, foreign, PASSWORD).await;
    assert_eq!(
        answer.attr("type"),
        Some("result"),
        "registration failed: {}",
        xml(&answer)
    );
    client
        .expect("the gateway's subscription request", |e| {
            e.name() == "presence"
                && e.attr("type") == Some("subscribe")
                && e.attr("from") == Some(GW)
        })
        .await;
    client
        .send(&format!("<presence type='subscribed' to='{GW}'/>"))
        .await;
    client
        .send(&format!("<presence type='subscribe' to='{GW}'/>"))
        .await;
    client
        .expect("the gateway's approval", |e| {
            e.name() == "presence"
                && e.attr("type") == Some("subscribed")
                && e.attr("from") == Some(GW)
        })
        .await;
}

/// `GET path` on a loopback HTTP listener (the metrics): its status line
/// and body.
pub async fn http_get(port: u16, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the metrics listener");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: pizzja\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).await.expect("response");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// The value of `series` (name and labels, exactly) in Prometheus text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}
