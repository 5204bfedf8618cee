//! docs/behaviour.md section 7: the link to the local server and the foreign sessions
//! come back by themselves.

use crate::World;
use pizzja_tests::*;
use std::time::Duration;

/// Pings the gateway until it answers (instead of the server's error for an
/// absent component); each attempt waits for its answer.
async fn until_gateway_answers(client: &mut Client) {
    for attempt in 0..100 {
        let id = format!("up-{attempt}");
        client
            .send(&format!(
                "<iq type='get' id='{id}' to='{GW}'><ping xmlns='urn:xmpp:ping'/></iq>"
            ))
            .await;
        let answer = client
            .expect("a ping answer", |e| e.attr("id") == Some(id.as_str()))
            .await;
        if answer.attr("type") == Some("result") {
            return;
        }
        // The component is not back yet; its backoff is 1 s, doubling.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the gateway never came back");
}

#[tokio::test]
async fn the_component_link_and_the_sessions_come_back_after_a_server_restart() {
    let mut world = World::new().await;
    // Every connection drops; the gateway itself keeps running and still
    // counts Work/phone as a controller, so me/Work must reconnect.
    world.prosody.restart().await.expect("prosody restarts");

    let mut tablet = world.client("alice", LOCAL, "Work/tablet").await;
    until_gateway_answers(&mut tablet).await;
    tablet.go_online().await;
    let mut bob = world.client("bob", FOREIGN, "pc").await;
    bob.go_online().await;
    let to = gw_jid("bob@foreign.test");
    tablet
        .send(&format!(
            "<message type='chat' to='{to}' id='after'><body>after the restart</body></message>"
        ))
        .await;
    let m = bob
        .expect("the message", |e| {
            body(e).as_deref() == Some("after the restart")
        })
        .await;
    assert_eq!(m.attr("from"), Some("me@foreign.test/Work"));
    bob.send("<message type='chat' to='me@foreign.test/Work' id='back'><body>welcome back</body></message>").await;
    tablet
        .expect("bob's answer", |e| {
            body(e).as_deref() == Some("welcome back")
        })
        .await;
}

#[tokio::test]
async fn a_controller_gone_during_an_outage_is_taken_offline_after_the_probe() {
    let mut world = World::new().await;
    let mut bob = world.bob().await;
    crate::bob_subscribes(&mut bob, &mut world.phone, "Work").await;
    // The phone's presence does not survive the restart and nobody sends
    // new presence: the probe answer lists no Work controller.
    world.prosody.restart().await.expect("prosody restarts");
    // A new resource: the first client reconnects by itself as bob/pc.
    let mut bob = world.client("bob", FOREIGN, "laptop").await;
    bob.go_online().await;
    let from = "me@foreign.test/Work";
    bob.expect("me/Work back online", |e| {
        e.name() == "presence" && e.attr("from") == Some(from) && e.attr("type").is_none()
    })
    .await;
    bob.expect("me/Work offline after the grace period", |e| {
        e.name() == "presence"
            && e.attr("from") == Some(from)
            && e.attr("type") == Some("unavailable")
    })
    .await;
}

#[tokio::test]
async fn thousands_of_registered_users_do_not_stall_start_up() {
    // Found by the login-storm benchmark: at start the router sent one probe
    // per registered user while the link waited for it to take the answers;
    // once both queues (1,024 each) were full the gateway never became
    // ready. With 10,000 registered users (all offline but alice) that
    // happened every time before the fix; 3,000 were not enough.
    init_tracing();
    let n = 10_000;
    let mut bulk: Vec<BulkUser> = (0..n)
        .map(|i| BulkUser {
            user: format!("u{i}"),
            domain: LOCAL.into(),
            roster: vec![GW.into()],
        })
        .collect();
    bulk.push(BulkUser {
        user: "alice".into(),
        domain: LOCAL.into(),
        roster: vec![GW.into()],
    });
    let options = Options {
        bulk_users: bulk,
        ..Options::default()
    };
    let prosody = Prosody::start_options(&[("me", FOREIGN)], &options)
        .await
        .expect("prosody starts");
    let db = prosody.dir.path().join("pizzja.sqlite3");
    let registration = |local: String, foreign: String| pizzja_host::storage::Registration {
        local: local.parse().expect("valid"),
        foreign: foreign.parse().expect("valid"),
        password: pizzja_host::config::Secret(PASSWORD.into()),
    };
    let mut regs: Vec<_> = (0..n)
        .map(|i| registration(format!("u{i}@{LOCAL}"), format!("f{i}@{FOREIGN}")))
        .collect();
    regs.push(registration(format!("alice@{LOCAL}"), ME.into()));
    pizzja_host::storage::Storage::open(&db)
        .expect("database")
        .put_all(&regs)
        .expect("registrations stored");

    let gateway = Gateway::start(prosody.gateway_config(&db, ""))
        .await
        .expect("the gateway becomes ready");
    // And it still routes: alice's presence opens her session.
    let mut alice = Client::connect(&prosody, "alice", LOCAL, "Work/phone")
        .await
        .expect("alice logs in");
    alice.send("<presence/>").await;
    let session = gw_jid(&format!("{}/Work", ME));
    alice
        .expect("her foreign session's presence", |e| {
            e.name() == "presence" && e.attr("from") == Some(session.as_str())
        })
        .await;
    gateway.stop().await.expect("the gateway stops");
}
