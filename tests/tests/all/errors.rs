//! docs/behaviour.md section 4: errors, never silence.

use crate::World;
use pizzja_tests::*;
use std::time::Duration;

#[tokio::test]
async fn an_unregistered_local_user_gets_registration_required() {
    let world = World::new().await;
    let mut carol = world.client("carol", LOCAL, "Work/pc").await;
    carol
        .send(&format!(
            "<message to='{}' id='m'><body>hi</body></message>",
            gw_jid("bob@foreign.test")
        ))
        .await;
    carol.expect_error("m", "registration-required").await;
    carol
        .send(&format!(
            "<iq type='get' id='i' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
            gw_jid("bob@foreign.test")
        ))
        .await;
    carol.expect_error("i", "registration-required").await;
}

#[tokio::test]
async fn a_node_that_does_not_unescape_to_a_jid_is_jid_malformed() {
    let mut world = World::new().await;
    world
        .phone
        .send(&format!(
            "<message to='bob\\40@{GW}' id='bad'><body>x</body></message>"
        ))
        .await;
    let e = world
        .phone
        .expect("an error", |e| e.attr("id") == Some("bad"))
        .await;
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("jid-malformed"),
        "{}",
        xml(&e)
    );
}

#[tokio::test]
async fn a_resource_not_online_at_the_gateway_is_told_to_send_presence_first() {
    let world = World::new().await;
    let mut stray = world.client("alice", LOCAL, "Work/stray").await;
    stray
        .send(&format!(
            "<message to='{}' id='s'><body>x</body></message>",
            gw_jid("bob@foreign.test")
        ))
        .await;
    let e = stray.expect_error("s", "service-unavailable").await;
    assert!(xml(&e).contains("send presence to"), "{}", xml(&e));
}

#[tokio::test]
async fn a_failed_login_bounces_waiting_stanzas_and_tells_the_controllers_why() {
    let world = World::new().await;
    // me/Work is up; now the foreign account disappears, so me/Home cannot log in.
    world.prosody.delete_user("me", FOREIGN).expect("deluser");
    let mut desk = world.client("alice", LOCAL, "Home/desk").await;
    desk.send("<iq type='get' id='roster-get'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    desk.expect("roster", |e| e.attr("id") == Some("roster-get"))
        .await;
    desk.send("<presence/>").await;
    desk.send(&format!(
        "<message type='chat' to='{}' id='waiting'><body>queued</body></message>",
        gw_jid("bob@foreign.test")
    ))
    .await;
    let bounced = desk
        .expect("the bounce", |e| e.attr("id") == Some("waiting"))
        .await;
    assert_eq!(bounced.attr("type"), Some("error"), "{}", xml(&bounced));
    let told = desk
        .expect("why, from the gateway", |e| {
            e.name() == "message" && e.attr("from") == Some(GW)
        })
        .await;
    assert!(
        body(&told).is_some_and(|b| b.contains("not-authorized")),
        "{}",
        xml(&told)
    );
}

#[tokio::test]
async fn an_unanswered_request_times_out_with_remote_server_timeout() {
    let mut world = World::with(|c| c.iq_timeout = Duration::from_secs(2)).await;
    let mut bob = world.bob().await;
    world
        .phone
        .send(&format!(
            "<iq type='get' id='slow' to='{}/pc'><query xmlns='jabber:iq:version'/></iq>",
            gw_jid("bob@foreign.test")
        ))
        .await;
    bob.expect("the request bob never answers", |e| {
        e.name() == "iq" && e.attr("type") == Some("get")
    })
    .await;
    let e = world
        .phone
        .expect("the timeout", |e| e.attr("id") == Some("slow"))
        .await;
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("remote-server-timeout"),
        "{}",
        xml(&e)
    );
}
