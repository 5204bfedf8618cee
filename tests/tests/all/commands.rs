//! docs/behaviour.md section 6: ad-hoc commands (XEP-0050) of the gateway.

use crate::World;
use pizzja_host::config::PolicySource;
use pizzja_host::testing::policy_path;
use pizzja_tests::*;

fn note(answer: &minidom::Element) -> (String, String) {
    command_note(answer).unwrap_or_else(|| panic!("no note: {}", xml(answer)))
}

#[tokio::test]
async fn users_see_their_sessions_and_only_admins_may_reload() {
    let mut world = World::new().await;
    // alice: her own sessions; reloading is refused.
    let answer = execute_command(&mut world.phone, "s1", "sessions").await;
    let (_, text) = note(&answer);
    assert!(
        text.contains("me@foreign.test") && text.contains("Work") && text.contains("Work/phone"),
        "{text}"
    );
    let refused = execute_command(&mut world.phone, "r1", "reload-policy").await;
    assert_eq!(
        error_condition(&refused).as_deref(),
        Some("forbidden"),
        "{}",
        xml(&refused)
    );

    // The admin sees the admin commands listed and can list every session.
    let mut admin = world.client("admin", LOCAL, "console").await;
    admin
        .send(&format!("<iq type='get' id='items' to='{GW}'><query xmlns='http://jabber.org/protocol/disco#items' node='{NS_COMMANDS}'/></iq>"))
        .await;
    let items = admin
        .expect("the command list", |e| e.attr("id") == Some("items"))
        .await;
    for node in ["sessions", "reload-policy", "list-sessions", "stats"] {
        assert!(
            xml(&items).contains(&format!("node='{node}'")),
            "{node} missing: {}",
            xml(&items)
        );
    }
    let all = execute_command(&mut admin, "l1", "list-sessions").await;
    assert!(
        note(&all).1.contains("alice@local.test as me@foreign.test"),
        "{}",
        xml(&all)
    );
}

/// Each command node describes itself (XEP-0050 section 2.3), to those who
/// may run it; to others it does not exist.
#[tokio::test]
async fn every_command_node_answers_disco_info_to_those_who_may_run_it() {
    let mut world = World::new().await;
    let mut admin = world.client("admin", LOCAL, "console").await;
    let info = |id: &str, node: &str| {
        format!(
            "<iq type='get' id='{id}' to='{GW}'><query xmlns='http://jabber.org/protocol/disco#info' node='{node}'/></iq>"
        )
    };
    for node in ["sessions", "reload-policy", "list-sessions", "stats"] {
        admin.send(&info(node, node)).await;
        let answer = admin
            .expect("the node's info", |e| e.attr("id") == Some(node))
            .await;
        let text = xml(&answer);
        assert_eq!(answer.attr("type"), Some("result"), "{text}");
        assert!(
            text.contains("category='automation'") && text.contains("type='command-node'"),
            "{node}: {text}"
        );
        assert!(text.contains(NS_COMMANDS), "{node}: {text}");
    }
    world.phone.send(&info("mine", "sessions")).await;
    let mine = world
        .phone
        .expect("sessions' info", |e| e.attr("id") == Some("mine"))
        .await;
    assert_eq!(mine.attr("type"), Some("result"), "{}", xml(&mine));
    world.phone.send(&info("theirs", "stats")).await;
    world.phone.expect_error("theirs", "item-not-found").await;
    // And the list: a user sees only the commands a user may run.
    world
        .phone
        .send(&format!("<iq type='get' id='items' to='{GW}'><query xmlns='http://jabber.org/protocol/disco#items' node='{NS_COMMANDS}'/></iq>"))
        .await;
    let items = world
        .phone
        .expect("the command list", |e| e.attr("id") == Some("items"))
        .await;
    let text = xml(&items);
    assert!(text.contains("node='sessions'"), "{text}");
    for admin_only in ["reload-policy", "list-sessions", "stats"] {
        assert!(!text.contains(&format!("node='{admin_only}'")), "{text}");
    }
}

#[tokio::test]
async fn an_admin_reload_reports_success_and_refusal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("policy.wasm");
    std::fs::copy(policy_path("pizzja_policy_default"), &module).expect("install a module");
    let path = module.clone();
    let world = World::with(move |c| c.policy = PolicySource::File(path)).await;
    let mut admin = world.client("admin", LOCAL, "console").await;

    // Unchanged file: nothing to do.
    let (kind, text) = note(&execute_command(&mut admin, "r0", "reload-policy").await);
    assert_eq!(kind, "info");
    assert!(text.contains("unchanged"), "{text}");
    // A new module: loaded, with its hash.
    std::fs::copy(policy_path("pizzja_policy_allow_list"), &module).expect("replace the module");
    let (kind, text) = note(&execute_command(&mut admin, "r1", "reload-policy").await);
    assert_eq!(kind, "info");
    assert!(text.contains("loaded") && text.contains("sha1"), "{text}");
    // A broken one: refused, and the admin is told why.
    std::fs::write(&module, b"garbage").expect("break the module");
    let (kind, text) = note(&execute_command(&mut admin, "r2", "reload-policy").await);
    assert_eq!(kind, "error");
    assert!(
        text.contains("refused") && text.contains("not a WebAssembly component"),
        "{text}"
    );
}

fn counter(text: &str, name: &str) -> u64 {
    stats_counter(text, name).unwrap_or_else(|| panic!("no counter {name} in {text}"))
}

#[tokio::test]
async fn admins_read_counters_that_follow_the_traffic() {
    let mut world = World::new().await;
    // The phone's session may still be logging in: at rest, none is.
    world.session_up("the session's presence").await;
    let mut admin = world.client("admin", LOCAL, "console").await;
    let (kind, before) = note(&execute_command(&mut admin, "c1", "stats").await);
    assert_eq!(kind, "info");
    assert_eq!(counter(&before, "registered"), 1, "{before}");
    assert_eq!(counter(&before, "accounts-running"), 1, "{before}");
    assert_eq!(counter(&before, "logins-in-flight"), 0, "{before}");

    // One message each way: each is at least one policy decision.
    let mut bob = world.bob().await;
    bob.send(&format!(
        "<message to='{ME}/Work' id='in'><body>hi</body></message>"
    ))
    .await;
    world
        .phone
        .expect("bob's message", |e| e.attr("id") == Some("in"))
        .await;
    world
        .phone
        .send(&format!(
            "<message to='{}' id='out'><body>hello</body></message>",
            gw_jid("bob@foreign.test/pc")
        ))
        .await;
    bob.expect("the answer", |e| e.attr("id") == Some("out"))
        .await;
    let (_, after) = note(&execute_command(&mut admin, "c2", "stats").await);
    assert!(
        counter(&after, "policy-decisions") >= counter(&before, "policy-decisions") + 2,
        "{before}\n--\n{after}"
    );
    assert!(
        counter(&after, "policy-cpu-us") >= counter(&before, "policy-cpu-us"),
        "{after}"
    );

    // Not for ordinary users.
    let refused = execute_command(&mut world.phone, "c3", "stats").await;
    assert_eq!(error_condition(&refused).as_deref(), Some("forbidden"));
}
