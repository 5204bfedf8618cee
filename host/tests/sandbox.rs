//! The policy sandbox against a hostile policy: traps, endless loops and
//! memory bombs fail the one decision and nothing else.

use pizzja_host::policy::bindings::{Event, Facts, LocalStanza, Stanza, StanzaKind};
use pizzja_host::policy::{DecideError, EngineOptions, Limits, PolicyEngine};
use pizzja_host::testing::{facts_of, message_with_body, policy_path};
use std::time::{Duration, Instant};

/// The limits every test engine runs under.
fn limits() -> Limits {
    Limits {
        deadline: Duration::from_millis(100),
        memory: 64 << 20,
    }
}

fn engine() -> PolicyEngine {
    let bytes =
        std::fs::read(policy_path("pizzja_policy_test_hostile")).expect("hostile policy built");
    PolicyEngine::new(
        "hostile",
        &bytes,
        vec![],
        EngineOptions::with_limits(limits()),
    )
    .expect("loads")
}

fn message(body: &str) -> Event {
    message_with_body(body)
}

fn facts() -> Facts {
    facts_of("alice@l.test")
}

/// Why loading `bytes` as a policy failed.
fn refused(name: &str, bytes: &[u8]) -> String {
    let err = PolicyEngine::new(name, bytes, vec![], EngineOptions::with_limits(limits()))
        .err()
        .expect("refused");
    format!("{err:#}")
}

fn assert_recovers(engine: &PolicyEngine) {
    let actions = engine
        .decide(&message("hello"), &facts())
        .expect("a fresh instance decides");
    assert!(
        !actions.is_empty(),
        "the default behaviour answers (service-unavailable)"
    );
}

#[test]
fn a_trap_fails_only_that_decision_and_says_what_the_policy_wrote() {
    let engine = engine();
    let err = engine
        .decide(&message("trap"), &facts())
        .expect_err("traps");
    assert!(matches!(err, DecideError::Trap { .. }), "{err}");
    // A Rust panic's message goes to stderr: it comes with the error,
    // escaped (what a guest writes cannot make lines of the log).
    let text = format!("{err}");
    let wrote = text.split("it wrote: ").nth(1).expect("what it wrote");
    assert!(wrote.contains("hostile policy traps on purpose"), "{text}");
    assert!(!wrote.contains('\n'), "{text}");
    assert_recovers(&engine);
}

#[test]
fn what_a_policy_prints_while_deciding_well_is_dropped_with_the_call() {
    let engine = engine();
    engine
        .decide(&message("print"), &facts())
        .expect("printing is allowed");
    // Nothing of it is left over for the next call's error.
    let err = engine
        .decide(&message("trap"), &facts())
        .expect_err("traps");
    assert!(!format!("{err}").contains("to stdout"), "{err}");
}

#[test]
fn an_endless_loop_is_stopped_at_the_deadline_not_before() {
    let engine = engine();
    let start = Instant::now();
    let err = engine
        .decide(&message("loop"), &facts())
        .expect_err("interrupted");
    let elapsed = start.elapsed();
    // Generous bound: this proves it ends, not how fast (that is a benchmark).
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert!(
        elapsed >= limits().deadline,
        "stopped after {elapsed:?}, before its deadline"
    );
    assert!(format!("{err}").contains("deadline"), "{err}");
    assert_recovers(&engine);
}

#[test]
fn a_policy_that_sleeps_is_stopped_at_once_with_the_reason() {
    let engine = engine();
    let start = Instant::now();
    let err = engine
        .decide(&message("sleep"), &facts())
        .expect_err("a policy cannot wait");
    assert!(format!("{err}").contains("policies cannot wait"), "{err}");
    // Stopped when it asked, not at the deadline.
    assert!(
        start.elapsed() < limits().deadline,
        "took {:?}",
        start.elapsed()
    );
    assert_recovers(&engine);
}

#[test]
fn a_policy_that_imports_what_the_host_does_not_know_is_refused_when_loaded() {
    // A component importing a WASI key-value store, and nothing else.
    let wat = r#"(component
        (import "wasi:keyvalue/store@0.2.0-draft" (instance
            (export "open" (func (param "name" string) (result u32)))))
    )"#;
    let text = refused("keyvalue", wat.as_bytes());
    assert!(
        text.contains("imports something the host does not provide")
            && text.contains("wasi:keyvalue/store"),
        "{text}"
    );
}

#[test]
fn files_and_sockets_load_but_grant_nothing() {
    // Rust's std imports wasi:filesystem and wasi:sockets for the `net`
    // word; the policy loads, and each attempt fails as on a machine with
    // no files and no network.
    let engine = engine();
    let actions = engine
        .decide(&message("net"), &facts())
        .expect("refusals are errors the policy handles, not traps");
    let said = logs(&actions).join("\n");
    assert!(said.contains("net: files Err("), "{said}");
    assert!(said.contains("socket Err("), "{said}");
    assert!(!said.contains("Ok("), "nothing granted: {said}");
    assert_recovers(&engine);
}

#[test]
fn a_memory_bomb_hits_the_cap() {
    let engine = engine();
    let err = engine
        .decide(&message("grow"), &facts())
        .expect_err("capped");
    assert!(matches!(err, DecideError::Trap { .. }), "{err}");
    assert_recovers(&engine);
}

#[test]
fn a_module_that_is_not_a_policy_is_refused_with_a_reason() {
    let text = refused("junk", b"\0asm not really");
    assert!(text.contains("not a WebAssembly component"), "{text}");
}

#[test]
fn a_configuration_the_policy_refuses_is_reported() {
    let bytes = pizzja_host::policy::BUILTIN_DEFAULT;
    let config = vec![("initial_presence".to_string(), "sometimes".to_string())];
    let err = PolicyEngine::new(
        "builtin:default",
        bytes,
        config,
        EngineOptions::with_limits(limits()),
    )
    .err()
    .expect("refused");
    assert!(format!("{err:#}").contains("initial_presence"), "{err:#}");
}

fn default_engine() -> PolicyEngine {
    PolicyEngine::new(
        "builtin:default",
        pizzja_host::policy::BUILTIN_DEFAULT,
        vec![],
        EngineOptions::with_limits(limits()),
    )
    .expect("loads")
}

#[test]
fn a_refused_module_never_replaces_the_running_one() {
    use pizzja_host::policy::PolicyEvent;
    let engine = default_engine();
    let mut events = engine.events();
    let before = engine.current().hash.clone();
    let err = engine
        .replace("broken.wasm", b"definitely not wasm", vec![])
        .err()
        .expect("refused");
    assert!(
        format!("{err:#}").contains("not a WebAssembly component"),
        "{err:#}"
    );
    assert_eq!(engine.current().hash, before);
    match events.try_recv().expect("an event") {
        PolicyEvent::Refused { name, error } => {
            assert_eq!(name, "broken.wasm");
            assert!(error.contains("not a WebAssembly component"), "{error}");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert_recovers(&engine);
}

#[test]
fn a_new_policy_that_keeps_trapping_is_rolled_back() {
    use pizzja_host::policy::{PolicyEvent, ROLLBACK_TRAPS};
    let engine = default_engine();
    let mut events = engine.events();
    let bytes =
        std::fs::read(policy_path("pizzja_policy_test_hostile")).expect("hostile policy built");
    let always_trap = vec![("always".to_string(), "trap".to_string())];
    engine
        .replace("always-traps", &bytes, always_trap)
        .expect("it loads and initialises");
    assert!(matches!(events.try_recv(), Ok(PolicyEvent::Loaded { .. })));
    for _ in 0..ROLLBACK_TRAPS {
        engine
            .decide(&message("hello"), &facts())
            .expect_err("the new policy traps");
    }
    match events.try_recv().expect("an event") {
        PolicyEvent::RolledBack { from, to } => assert_eq!(
            (from.as_str(), to.as_str()),
            ("always-traps", "builtin:default")
        ),
        other => panic!("expected RolledBack, got {other:?}"),
    }
    assert_eq!(engine.current().name, "builtin:default");
    assert_recovers(&engine);
}

#[test]
fn compiled_policies_are_cached_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cached = || {
        PolicyEngine::new(
            "builtin:default",
            pizzja_host::policy::BUILTIN_DEFAULT,
            vec![],
            EngineOptions {
                cache_dir: Some(dir.path().to_path_buf()),
                ..EngineOptions::with_limits(limits())
            },
        )
        .expect("loads")
    };
    let compiled = || {
        let mut files = Vec::new();
        walk(dir.path(), &mut files);
        // The cache's worker also keeps usage statistics beside each entry.
        files.retain(|f| !f.ends_with(".stats") && !f.contains(".wip-"));
        files.sort();
        files
    };
    let engine = cached();
    let after_first = compiled();
    assert!(!after_first.is_empty(), "nothing was cached");
    drop(engine);
    // A restart with the same module finds it and compiles nothing new.
    let again = cached();
    assert_recovers(&again);
    assert_eq!(compiled(), after_first);
}

fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path.display().to_string());
        }
    }
}

#[test]
fn a_policy_sees_no_clock() {
    use pizzja_host::policy::bindings::Action;
    let actions = engine()
        .decide(&message("clock"), &facts())
        .expect("decides");
    let said: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Log(l) => Some(l.message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(said, ["clock: Ok(0ns)"]);
}

#[test]
fn a_component_without_the_policy_exports_is_refused_with_what_is_missing() {
    // A valid component exporting nothing (text format).
    let text = refused("empty", b"(component)");
    assert!(
        text.contains("does not export the world `pizzja:policy/policy@0.2.0`"),
        "{text}"
    );
}

fn logs(actions: &[pizzja_host::policy::bindings::Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            pizzja_host::policy::bindings::Action::Log(l) => Some(l.message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_store_is_per_account_and_survives_traps_and_swaps() {
    let engine = engine();
    let say = |body: &str, local: &str| {
        logs(
            &engine
                .decide(&message(body), &facts_of(local))
                .expect("decides"),
        )
    };
    assert_eq!(say("remember lunch at noon", "alice@l.test"), ["stored"]);
    assert_eq!(
        say("recall", "alice@l.test"),
        ["memo: Some(\"lunch at noon\")"]
    );
    // Another account sees its own store only.
    assert_eq!(say("recall", "carol@l.test"), ["memo: None"]);
    // A trap throws the instance away; the store stays.
    engine
        .decide(&message("trap"), &facts())
        .expect_err("traps");
    assert_eq!(
        say("recall", "alice@l.test"),
        ["memo: Some(\"lunch at noon\")"]
    );
    // So does a reload.
    let bytes = std::fs::read(policy_path("pizzja_policy_test_hostile")).expect("built");
    engine.replace("again", &bytes, vec![]).expect("swaps");
    assert_eq!(
        say("recall", "alice@l.test"),
        ["memo: Some(\"lunch at noon\")"]
    );
}

#[test]
fn the_store_is_bounded() {
    let engine = engine();
    let said = logs(&engine.decide(&message("fill"), &facts()).expect("decides"));
    assert_eq!(said.len(), 1);
    assert!(
        said[0].starts_with("refused:") && said[0].contains("limit"),
        "{said:?}"
    );
}

#[test]
fn the_gateway_keeps_policy_state_in_its_database() {
    use pizzja_host::policy::StateBackend;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db.sqlite3");
    let storage = std::sync::Arc::new(pizzja_host::storage::Storage::open(&db).expect("open"));
    let bytes = std::fs::read(policy_path("pizzja_policy_test_hostile")).expect("built");
    let options = EngineOptions {
        state: storage.clone(),
        ..EngineOptions::with_limits(limits())
    };
    let engine = PolicyEngine::new("hostile", &bytes, vec![], options).expect("loads");
    engine
        .decide(&message("remember on disk"), &facts())
        .expect("decides");
    drop(engine);
    // Reopened, as after a restart.
    let again = pizzja_host::storage::Storage::open(&db).expect("reopen");
    assert_eq!(
        StateBackend::get(&again, "alice@l.test", "memo"),
        Some(b"on disk".to_vec())
    );
}

/// A policy built against `pizzja:policy@0.1.0` (the default policy as it
/// was before 0.2.0, kept in `tests/fixtures/`) still loads, and decides as
/// the current default does: the host adapts its events and actions.
#[test]
fn a_policy_built_against_0_1_0_still_loads_and_decides_as_it_did() {
    use pizzja_host::policy::bindings::{
        Controller, ForeignStanza, Session, SessionChange, SessionState,
    };
    let old = PolicyEngine::new(
        "default-0.1.0",
        include_bytes!("fixtures/default-policy-v0.1.0.wasm"),
        vec![],
        EngineOptions::with_limits(limits()),
    )
    .expect("a 0.1.0 policy loads");
    let now = default_engine();
    assert_eq!(old.current().version(), "0.1.0");
    assert_eq!(now.current().version(), "0.2.0");

    let controller = |resource: &str| Controller {
        resource: resource.into(),
        show: None,
        status: None,
        priority: 0,
        online_since_ms: 1,
        last_active_ms: 1,
    };
    let facts = Facts {
        controllers: vec![controller("Work/phone"), controller("Work/laptop")],
        sessions: vec![Session {
            resource: "Work".into(),
            state: SessionState::Online,
        }],
        ..facts()
    };
    let presence = Event::Local(LocalStanza {
        stanza: Stanza {
            kind: StanzaKind::Presence,
            type_: String::new(),
            id: None,
            from: Some("alice@l.test/Home/desk".into()),
            to: Some("gw.l.test".into()),
            xml: "<presence/>".into(),
        },
        sender_resource: Some("Home/desk".into()),
        answers: None,
    });
    let incoming = Event::Foreign(ForeignStanza {
        session: "Work".into(),
        stanza: Stanza {
            kind: StanzaKind::Message,
            type_: "chat".into(),
            id: Some("i".into()),
            from: Some("bob@f.test/pc".into()),
            to: Some("me@f.test/Work".into()),
            xml: "<message><body>hi</body></message>".into(),
        },
        answers: None,
    });
    let gap = Event::Session(SessionChange {
        session: "Work".into(),
        state: SessionState::Reconnecting,
        reason: Some("connection lost".into()),
    });
    for event in [message("hello"), presence, incoming, gap] {
        let then = old
            .decide(&event, &facts)
            .expect("the 0.1.0 policy decides");
        assert!(!then.is_empty(), "{event:?}");
        assert_eq!(
            then,
            now.decide(&event, &facts).expect("decides"),
            "{event:?}"
        );
    }
}
