//! What the host does with a policy module before and around its
//! decisions: what it refuses to load and why, what it links and grants
//! (nothing), the compiled-code cache, the store kept in the gateway's
//! database, and old builds that still load. How a hostile policy's
//! decisions fail, one at a time, is in languages.rs, for every language.

use pizzja_host::policy::bindings::{Event, Facts, LocalStanza, Stanza, StanzaKind};
use pizzja_host::policy::{EngineOptions, Limits, PolicyEngine};
use pizzja_host::testing::{
    assert_recovers, facts_of, log_lines as logs, message_with_body as message, policy_path,
};
use std::time::Duration;

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
fn a_component_without_the_policy_exports_is_refused_with_what_is_missing() {
    // A valid component exporting nothing (text format).
    let text = refused("empty", b"(component)");
    assert!(
        text.contains("does not export the world `pizzja:policy/policy@0.2.0`"),
        "{text}"
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
