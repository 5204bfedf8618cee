//! docs/behaviour.md section 7, "Gateway killed": the real binary, killed
//! with SIGKILL under traffic and started again on the same database,
//! keeps registrations, policy state and archive positions, and its
//! sessions come back and catch up with what arrived meanwhile.

use pizzja_tests::process::Process;
use pizzja_tests::*;
use std::path::Path;
use std::time::Duration;

/// `pizzja run` on `config`.
async fn start(config: &Path) -> Process {
    Process::start(Path::new(env!("CARGO_BIN_EXE_pizzja")), config, &[]).await
}

#[tokio::test]
async fn killed_with_sigkill_and_restarted_it_keeps_its_state_and_catches_up() {
    init_tracing();
    let options = Options {
        mam: true,
        ..Options::default()
    };
    let prosody = Prosody::start_options(
        &[("alice", LOCAL), ("me", FOREIGN), ("bob", FOREIGN)],
        &options,
    )
    .await
    .expect("prosody starts");
    let dir = prosody.dir.path();
    let hostile = pizzja_host::testing::policy_path("pizzja_policy_test_hostile");
    let config = dir.join("pizzja.toml");
    let extra = format!("[policy]\nmodule = \"{}\"\n", hostile.display());
    std::fs::write(
        &config,
        prosody
            .gateway_toml(&dir.join("pizzja.sqlite3"), "")
            .replacen("[foreign]", &format!("{extra}\n[foreign]"), 1),
    )
    .expect("config written");
    let mut gateway = start(&config).await;

    let mut phone = registered_phone(&prosody).await;
    let mut bob = bob_online(&prosody).await;
    let to_bob = gw_jid("bob@foreign.test/pc");
    let from_bob = gw_jid("bob@foreign.test/pc");
    // Not the local server's bounces of the phone's own messages to bob
    // while the gateway is dead: they carry bob's address as `from` too.
    let is_from_bob = |e: &minidom::Element| {
        e.name() == "message"
            && e.attr("from") == Some(from_bob.as_str())
            && e.attr("type") != Some("error")
    };

    // Policy state, and a live message that sets the archive position.
    phone
        .send(&format!(
            "<message type='chat' to='{to_bob}' id='r'><body>remember kept</body></message>"
        ))
        .await;
    gateway.wait_for("stored").await;
    bob.send(&format!(
        "<message type='chat' to='{ME}/Work' id='l'><body>live</body></message>"
    ))
    .await;
    phone.expect("the live message", is_from_bob).await;
    // The archive position is written by a writer task: wait until the
    // database has it (another connection to it, as an operator's would).
    let db = pizzja_host::storage::Storage::open(&dir.join("pizzja.sqlite3")).expect("database");
    let alice = format!("alice@{LOCAL}").parse().expect("jid");
    let deadline = tokio::time::Instant::now() + WAIT;
    while db
        .archive_position(&alice, "Work")
        .expect("readable")
        .is_none_or(|p| p.is_empty())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no archive position written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Under traffic: the phone is sending when the gateway dies.
    for i in 0..5 {
        phone
            .send(&format!(
                "<message type='chat' to='{to_bob}' id='t{i}'><body>t{i}</body></message>"
            ))
            .await;
    }
    gateway.kill_9().await;

    // While it is dead, bob writes; only F's archive keeps it.
    let mut written = Vec::new();
    for i in 0..3 {
        let id = format!("dead-{i}");
        bob.send(&format!(
            "<message type='chat' to='{ME}' id='{id}'><body>{id}</body></message>"
        ))
        .await;
        written.push(id);
    }
    bob.send(&format!(
        "<iq type='get' id='p' to='{FOREIGN}'><ping xmlns='urn:xmpp:ping'/></iq>"
    ))
    .await;
    bob.expect("the server's answer", |e| e.attr("id") == Some("p"))
        .await;

    let mut gateway = start(&config).await;
    // Registration kept: the session comes back for the phone, and what
    // bob wrote meanwhile arrives from the archive, once, in order.
    let mut arrived = Vec::new();
    while arrived.len() < written.len() {
        let m = phone.expect("what bob wrote meanwhile", is_from_bob).await;
        let b = body(&m).unwrap_or_default();
        if b == "live" {
            panic!("the message before the crash came again");
        }
        assert!(m.children().any(|c| c.name() == "delay"), "{}", xml(&m));
        arrived.push(b);
    }
    assert_eq!(arrived, written);
    // Policy state kept.
    phone
        .send(&format!(
            "<message type='chat' to='{to_bob}' id='q'><body>recall</body></message>"
        ))
        .await;
    gateway.wait_for("memo: \"kept\"").await;
    gateway.kill_9().await;
}
