//! Policy cost, measured (not asserted): `cargo bench -p pizzja-bench --bench policy`
//! (`cargo xtask bench` runs it).
//!
//! 1. One decision for a realistic chat message with its account facts, on
//!    a reused wasm instance, next to the same decision compiled natively,
//!    in one run: median and p99 of batches; hot and with cold caches; and,
//!    to take a cold decision apart, the call alone (the same inputs into a
//!    policy that decides nothing), the probe component (`probe/`: a
//!    call of nothing, one buffer in and out, the whole decision through one
//!    encoded buffer each way) and the native decision with cold caches.
//! 2. Swapping in a module: compile and validate, with an empty and a warm
//!    compiled-module cache.
//! 3. From `rename(2)` over the watched file to the reload event (inotify).
//! 4. The default policy in each language (Rust, and the JavaScript and
//!    Python ports `cargo xtask bench` builds into `target/policies`):
//!    module size, compile with an empty and a warm cache, a fresh
//!    instance with its `init`, the decision of section 1, the call alone
//!    (the same event and facts into a policy that decides nothing), and
//!    the memory a process gains by loading it.
//!
//! Under `cargo test` (no `--bench` argument) it runs a tiny smoke pass so
//! the benchmark itself keeps working.

use pizzja_host::policy::bindings as wit;
use pizzja_host::policy::{BUILTIN_DEFAULT, EngineOptions, Limits, PolicyEngine};
use pizzja_host::testing::{guest_build, message_with_body};
use pizzja_sdk::Policy as _;
use std::time::{Duration, Instant};

/// The probe component (`probe/`): a call that does nothing, and one
/// that moves one buffer in and out.
mod probe {
    wasmtime::component::bindgen!({
        path: "probe/wit",
        world: "probe",
    });
}

/// The WIT types as one buffer, as the probe's `decide` speaks them: the
/// same source as the probe's `wire`, over the host's copy of the types.
#[allow(dead_code)]
mod wire {
    use pizzja_host::policy::bindings::*;
    include!("../probe/src/wire_codec.rs");
}

/// The probe, called as the policy engine calls policies (sync calls,
/// epoch interruption, WASI linked with nothing granted: wasmtime-wasi's
/// sync bindings here, which the probe's functions never call).
struct Probe {
    store: wasmtime::Store<ProbeState>,
    probe: probe::Probe,
}

struct ProbeState {
    wasi: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
}

impl wasmtime_wasi::WasiView for ProbeState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl Probe {
    fn new() -> Probe {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = wasmtime::Engine::new(&config).expect("an engine");
        let mut linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("WASI links");
        let component =
            wasmtime::component::Component::from_file(&engine, env!("PIZZJA_PROBE_WASM"))
                .expect("build.rs builds the probe");
        let mut store = wasmtime::Store::new(
            &engine,
            ProbeState {
                wasi: wasmtime_wasi::WasiCtx::builder().build(),
                table: wasmtime::component::ResourceTable::new(),
            },
        );
        store.set_epoch_deadline(u64::MAX / 2);
        let probe =
            probe::Probe::instantiate(&mut store, &component, &linker).expect("instantiates");
        Probe { store, probe }
    }

    fn nothing(&mut self) {
        self.probe.call_nothing(&mut self.store).expect("calls");
    }

    fn bytes(&mut self, input: &[u8]) -> Vec<u8> {
        self.probe
            .call_bytes(&mut self.store, input)
            .expect("calls")
    }

    /// The default policy's decision through one buffer each way, encoding
    /// and decoding on the host's side included.
    fn decide(&mut self, event: &wit::Event, facts: &wit::Facts) -> Vec<wit::Action> {
        let mut input = Vec::with_capacity(1024);
        wire::encode_input(event, facts, &mut input);
        let output = self
            .probe
            .call_decide(&mut self.store, &input)
            .expect("calls");
        wire::decode(&output).expect("the probe's actions decode")
    }
}

fn facts_wit() -> wit::Facts {
    let controller = |r: &str, t: u64| wit::Controller {
        resource: r.into(),
        show: None,
        status: Some("at work".into()),
        priority: 0,
        online_since_ms: 1,
        last_active_ms: t,
    };
    wit::Facts {
        local_jid: "alice@example.org".into(),
        foreign_jid: "me@remote.net".into(),
        gateway: "gw.example.org".into(),
        controllers: vec![
            controller("Work/phone", 30),
            controller("Work/laptop", 20),
            controller("Home/desk", 10),
        ],
        sessions: vec![
            wit::Session {
                resource: "Work".into(),
                state: wit::SessionState::Online,
            },
            wit::Session {
                resource: "Home".into(),
                state: wit::SessionState::Online,
            },
        ],
        now_ms: 40,
    }
}

const XML: &str = "<message xmlns='jabber:client' type='chat' id='m1' from='bob@remote.net/pc' to='me@remote.net/Work'><body>Are we still on for lunch at noon? I booked the usual place.</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>";

fn event_wit() -> wit::Event {
    wit::Event::Foreign(wit::ForeignStanza {
        session: "Work".into(),
        stanza: wit::Stanza {
            kind: wit::StanzaKind::Message,
            type_: "chat".into(),
            id: Some("m1".into()),
            from: Some("bob@remote.net/pc".into()),
            to: Some("me@remote.net/Work".into()),
            xml: XML.into(),
        },
        answers: None,
    })
}

fn event_native() -> (pizzja_sdk::Event, pizzja_sdk::Facts) {
    let f = facts_wit();
    let facts = pizzja_sdk::Facts {
        local_jid: f.local_jid,
        foreign_jid: f.foreign_jid,
        gateway: f.gateway,
        controllers: f
            .controllers
            .into_iter()
            .map(|c| pizzja_sdk::Controller {
                resource: c.resource,
                show: c.show,
                status: c.status,
                priority: c.priority,
                online_since_ms: c.online_since_ms,
                last_active_ms: c.last_active_ms,
            })
            .collect(),
        sessions: vec![
            pizzja_sdk::Session {
                resource: "Work".into(),
                state: pizzja_sdk::SessionState::Online,
            },
            pizzja_sdk::Session {
                resource: "Home".into(),
                state: pizzja_sdk::SessionState::Online,
            },
        ],
        now_ms: f.now_ms,
    };
    let event = pizzja_sdk::Event::Foreign(pizzja_sdk::ForeignStanza {
        session: "Work".into(),
        stanza: pizzja_sdk::Stanza {
            kind: pizzja_sdk::StanzaKind::Message,
            type_: "chat".into(),
            id: Some("m1".into()),
            from: Some("bob@remote.net/pc".into()),
            to: Some("me@remote.net/Work".into()),
            xml: XML.into(),
        },
        answers: None,
    });
    (event, facts)
}

/// Median and p99 of per-call times over `batches` batches of `per` calls.
fn measure(batches: usize, per: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let samples: Vec<Duration> = (0..batches)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per {
                f();
            }
            start.elapsed() / per as u32
        })
        .collect();
    median_p99(samples)
}

/// Times `f` alone, after 8 MiB of other memory traffic (round `i`).
fn cold(i: usize, other: &mut [u8], f: impl FnOnce()) -> Duration {
    for b in other.iter_mut().step_by(64) {
        *b = b.wrapping_add(i as u8);
    }
    std::hint::black_box(&*other);
    let start = Instant::now();
    f();
    start.elapsed()
}

fn median_p99(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[(samples.len() * 99 / 100).min(samples.len() - 1)],
    )
}

fn main() {
    if let Some(module) = std::env::var_os(RSS_OF) {
        return rss_of(module.into());
    }
    let full = std::env::args().any(|a| a == "--bench");
    let (batches, per) = if full { (400, 250) } else { (5, 5) };
    let limits = Limits {
        deadline: Duration::from_millis(100),
        memory: 64 << 20,
    };

    // 1. Decision cost.
    let engine = PolicyEngine::new(
        "builtin:default",
        BUILTIN_DEFAULT,
        vec![],
        EngineOptions::with_limits(limits),
    )
    .expect("loads");
    let (event, facts) = (event_wit(), facts_wit());
    let actions = engine.decide(&event, &facts).expect("decides");
    assert_eq!(
        actions.len(),
        2,
        "the benchmark's decision delivers to two controllers"
    );
    let (wasm_med, wasm_p99) = measure(batches, per, || {
        std::hint::black_box(engine.decide(&event, &facts).expect("decides"));
    });
    let mut native =
        pizzja_policy_default::DefaultPolicy::new(&pizzja_sdk::Config::default()).expect("valid");
    let (n_event, n_facts) = event_native();
    let (nat_med, nat_p99) = measure(batches, per, || {
        std::hint::black_box(native.decide(&n_event, &n_facts));
    });
    println!("decision, reused wasm instance: median {wasm_med:?}, p99 {wasm_p99:?}");
    println!("decision, native:               median {nat_med:?}, p99 {nat_p99:?}");
    println!(
        "ratio wasm/native (medians):    {:.1}x",
        wasm_med.as_secs_f64() / nat_med.as_secs_f64()
    );
    // The same decision as an account task makes it: on a tokio worker.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (hop_med, hop_p99) = runtime.block_on(async {
        let mut samples = Vec::with_capacity(batches);
        for _ in 0..batches {
            let start = Instant::now();
            for _ in 0..per {
                let decided = engine.decide(&event, &facts);
                std::hint::black_box(decided.expect("decides"));
            }
            samples.push(start.elapsed() / per as u32);
        }
        median_p99(samples)
    });
    println!("decision from a tokio task:     median {hop_med:?}, p99 {hop_p99:?}");
    println!(
        "on a worker, more by:           {:?} (medians)",
        hop_med.saturating_sub(wasm_med)
    );
    // The call alone: the same event and facts into a policy that decides
    // nothing (the hostile test policy's `nothing`, on the same allocator),
    // warm and cold. This is what any policy pays under this WIT.
    let nothing = PolicyEngine::new(
        "nothing",
        &std::fs::read(pizzja_host::testing::policy_path(
            "pizzja_policy_test_hostile",
        ))
        .expect("the test policies are built with the host"),
        vec![("always".into(), "nothing".into())],
        EngineOptions::with_limits(limits),
    )
    .expect("loads");
    let decided = nothing.decide(&event, &facts).expect("decides");
    assert!(decided.is_empty(), "`nothing` decides nothing");
    let (call_med, call_p99) = measure(batches, per, || {
        std::hint::black_box(nothing.decide(&event, &facts).expect("decides"));
    });
    // In the gateway a decision comes once a millisecond or so, between
    // parsing, serialising and socket work: its code and data are no longer
    // in the CPU's caches. Each call after 8 MiB of other memory traffic,
    // timed alone; the two policies take turns, so both see the same
    // machine.
    let mut other = vec![0u8; 8 << 20];
    // The probe: a call of nothing, and one buffer as large as the XML of
    // the event and the facts' strings together, in and out.
    let mut probe = Probe::new();
    let buffer = vec![7u8; 512];
    assert_eq!(probe.bytes(&buffer).len(), 64, "the probe answers");
    assert_eq!(
        probe.decide(&event, &facts),
        actions,
        "one buffer each way decides as the typed call does"
    );
    let (bare_med, bare_p99) = measure(batches, per, || probe.nothing());
    let (buf_med, buf_p99) = measure(batches, per, || {
        std::hint::black_box(probe.bytes(&buffer));
    });
    let (mut decision_cold, mut call_cold) = (Vec::new(), Vec::new());
    let (wire_med, wire_p99) = measure(batches, per, || {
        std::hint::black_box(probe.decide(&event, &facts));
    });
    let (mut bare_cold, mut buf_cold, mut wire_cold) = (Vec::new(), Vec::new(), Vec::new());
    let mut native_cold = Vec::new();
    for i in 0..batches {
        decision_cold.push(cold(i, &mut other, || {
            std::hint::black_box(engine.decide(&event, &facts).expect("decides"));
        }));
        call_cold.push(cold(i, &mut other, || {
            std::hint::black_box(nothing.decide(&event, &facts).expect("decides"));
        }));
        bare_cold.push(cold(i, &mut other, || probe.nothing()));
        buf_cold.push(cold(i, &mut other, || {
            std::hint::black_box(probe.bytes(&buffer));
        }));
        wire_cold.push(cold(i, &mut other, || {
            std::hint::black_box(probe.decide(&event, &facts));
        }));
        native_cold.push(cold(i, &mut other, || {
            std::hint::black_box(native.decide(&n_event, &n_facts));
        }));
    }
    let (cold_med, cold_p99) = median_p99(decision_cold);
    let (call_cold_med, call_cold_p99) = median_p99(call_cold);
    println!("decision with cold caches:      median {cold_med:?}, p99 {cold_p99:?}");
    println!("the call alone (no actions):    median {call_med:?}, p99 {call_p99:?}");
    println!("the call alone, cold caches:    median {call_cold_med:?}, p99 {call_cold_p99:?}");
    println!(
        "share of the call, cold:        {:.0}% of the decision (medians)",
        100.0 * call_cold_med.as_secs_f64() / cold_med.as_secs_f64()
    );
    let (bare_cold_med, bare_cold_p99) = median_p99(bare_cold);
    let (buf_cold_med, buf_cold_p99) = median_p99(buf_cold);
    println!("probe, a call of nothing:       median {bare_med:?}, p99 {bare_p99:?}");
    println!("  cold caches:                  median {bare_cold_med:?}, p99 {bare_cold_p99:?}");
    println!("probe, 512 bytes in, 64 out:    median {buf_med:?}, p99 {buf_p99:?}");
    println!("  cold caches:                  median {buf_cold_med:?}, p99 {buf_cold_p99:?}");
    let (wire_cold_med, wire_cold_p99) = median_p99(wire_cold);
    println!("decision, one buffer each way:  median {wire_med:?}, p99 {wire_p99:?}");
    println!("  cold caches:                  median {wire_cold_med:?}, p99 {wire_cold_p99:?}");
    let (native_cold_med, native_cold_p99) = median_p99(native_cold);
    println!("decision, native, cold caches:  median {native_cold_med:?}, p99 {native_cold_p99:?}");
    println!(
        "one buffer against typed, cold: {:.0}% (medians)",
        100.0 * wire_cold_med.as_secs_f64() / cold_med.as_secs_f64()
    );

    // 2. Swapping in a module, cold and warm cache.
    let cache = tempfile::tempdir().expect("tempdir");
    let rounds = if full { 5 } else { 1 };
    let load = || {
        let options = EngineOptions {
            cache_dir: Some(cache.path().to_path_buf()),
            ..EngineOptions::with_limits(limits)
        };
        let start = Instant::now();
        let engine =
            PolicyEngine::new("builtin:default", BUILTIN_DEFAULT, vec![], options).expect("loads");
        (engine, start.elapsed())
    };
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..rounds {
        let _ = std::fs::remove_dir_all(cache.path());
        cold.push(load().1);
        let (engine, took) = load();
        warm.push(took);
        let start = Instant::now();
        engine
            .replace("again", BUILTIN_DEFAULT, vec![])
            .expect("replaces");
        warm.push(start.elapsed());
    }
    cold.sort();
    warm.sort();
    println!(
        "load + validate, empty cache:   median {:?}",
        cold[cold.len() / 2]
    );
    println!(
        "load + validate, warm cache:    median {:?}",
        warm[warm.len() / 2]
    );

    // 3. rename(2) to the watch noticing it.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let notices: Vec<Duration> = runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let module = dir.path().join("policy.wasm");
        std::fs::write(&module, b"v0").expect("write");
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let _watcher = pizzja_host::policy::reload::watch(&module, tx).expect("watch");
        let mut out = Vec::new();
        for i in 0..rounds * 4 {
            let tmp = dir.path().join("policy.wasm.tmp");
            std::fs::write(&tmp, format!("v{i}")).expect("write");
            let start = Instant::now();
            std::fs::rename(&tmp, &module).expect("rename");
            rx.recv().await.expect("a reload request");
            out.push(start.elapsed());
        }
        out
    });
    let mut notices = notices;
    notices.sort();
    println!(
        "rename to reload request:       median {:?} (includes the watch's 50 ms settle)",
        notices[notices.len() / 2]
    );

    // 4. Each language's default policy.
    println!();
    println!(
        "language    module   compile, empty cache   warm cache   fresh instance + init   decision median   p99        call alone   RSS, loaded"
    );
    for (language, default, hostile) in [
        (
            "Rust",
            BUILTIN_DEFAULT.to_vec(),
            read(pizzja_host::testing::policy_path(
                "pizzja_policy_test_hostile",
            )),
        ),
        (
            "JavaScript",
            read(guest_build("default-js")),
            read(guest_build("test-hostile-js")),
        ),
        (
            "Python",
            read(guest_build("default-python")),
            read(guest_build("test-hostile-python")),
        ),
    ] {
        let cache = tempfile::tempdir().expect("tempdir");
        let options = || EngineOptions {
            cache_dir: Some(cache.path().to_path_buf()),
            ..EngineOptions::with_limits(limits)
        };
        let start = Instant::now();
        let engine = PolicyEngine::new(language, &default, vec![], options()).expect("loads");
        let compile = start.elapsed();
        let rss = rss_in_a_fresh_process(&default, cache.path());
        let start = Instant::now();
        let again = PolicyEngine::new(language, &default, vec![], options()).expect("loads");
        let warm = start.elapsed();
        drop(again);
        // Fewer rounds for the slower languages: the same spread, less time.
        let (b, p) = if full { (200, 50) } else { (3, 3) };
        let (med, p99) = measure(b, p, || {
            std::hint::black_box(engine.decide(&event, &facts).expect("decides"));
        });
        // A trap drops the instance: the next decision makes a fresh one
        // and calls its `init`. The hostile policy is the default with a
        // few more words.
        let hostile = PolicyEngine::new(language, &hostile, vec![], options()).expect("loads");
        let trap = message_with_body("trap");
        let mut fresh = Vec::new();
        for _ in 0..if full { 20 } else { 2 } {
            hostile.decide(&trap, &facts).expect_err("traps");
            let start = Instant::now();
            hostile.decide(&event, &facts).expect("decides");
            fresh.push(start.elapsed().saturating_sub(med));
        }
        let (fresh, _) = median_p99(fresh);
        // The same event into a policy that decides nothing: what crossing
        // into the language's runtime and back costs, without the rules.
        let nothing = message_with_body("nothing");
        let (call, _) = measure(b, p, || {
            std::hint::black_box(hostile.decide(&nothing, &facts).expect("decides"));
        });
        println!(
            "{language:<11} {:>5.1} MB {:>22} {:>12} {:>23} {:>17} {:>10} {:>12} {:>10}",
            default.len() as f64 / 1e6,
            format!("{compile:.2?}"),
            format!("{warm:.2?}"),
            format!("{fresh:.2?}"),
            format!("{med:.2?}"),
            format!("{p99:.2?}"),
            format!("{call:.2?}"),
            format!("{:.1} MiB", rss as f64 / 1024.0),
        );
    }
}

/// Set to a module's path, the benchmark only loads it (from the cache in
/// [`RSS_CACHE`]), decides once, and prints how much resident memory that
/// took: measured in a process of its own, so that neither the compiler's
/// memory nor other languages' instances count.
const RSS_OF: &str = "PIZZJA_BENCH_RSS_OF";
const RSS_CACHE: &str = "PIZZJA_BENCH_RSS_CACHE";

fn rss_of(module: std::path::PathBuf) {
    let bytes = read(module);
    let options = EngineOptions {
        cache_dir: std::env::var_os(RSS_CACHE).map(Into::into),
        ..EngineOptions::with_limits(Limits {
            deadline: Duration::from_millis(100),
            memory: 64 << 20,
        })
    };
    let before = rss_kib();
    let engine = PolicyEngine::new("rss", &bytes, vec![], options).expect("loads");
    engine.decide(&event_wit(), &facts_wit()).expect("decides");
    println!("{}", rss_kib().saturating_sub(before));
}

/// Resident KiB a process gains by loading `module` from a warm `cache`
/// and deciding once.
fn rss_in_a_fresh_process(module: &[u8], cache: &std::path::Path) -> u64 {
    // Not in the cache directory: wasmtime's cache removes files it does
    // not know there.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("module.wasm");
    std::fs::write(&file, module).expect("write the module");
    let out = std::process::Command::new(std::env::current_exe().expect("this benchmark"))
        .env(RSS_OF, &file)
        .env(RSS_CACHE, cache)
        .output()
        .expect("run the benchmark again");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a number of KiB")
}

fn read(path: std::path::PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The process's resident set, from /proc.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
