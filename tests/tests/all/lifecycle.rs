//! docs/behaviour.md section 3: sessions follow local presence.

use crate::{World, bob_subscribes};
use pizzja_tests::*;

fn is_presence_from(e: &minidom::Element, from: &str, type_: Option<&str>) -> bool {
    e.name() == "presence" && e.attr("from") == Some(from) && e.attr("type") == type_
}

#[tokio::test]
async fn one_session_per_a_kept_while_any_controller_of_a_is_online() {
    let mut world = World::new().await;
    let mut bob = world.bob().await;
    bob_subscribes(&mut bob, &mut world.phone, "Work").await;

    // A second Work controller shares me/Work; Home/desk opens me/Home.
    let mut laptop = world.controller("Work/laptop").await;
    let mut desk = world.controller("Home/desk").await;
    bob.expect("me/Home online", |e| {
        is_presence_from(e, "me@foreign.test/Home", None)
    })
    .await;

    // The phone leaves; the laptop still holds me/Work: bob's message to
    // me/Work reaches the laptop (a closed me/Work would send it to me/Home).
    world.phone.disconnect().await;
    bob.send(
        "<message type='chat' to='me@foreign.test/Work' id='w'><body>still there?</body></message>",
    )
    .await;
    laptop
        .expect("bob's message", |e| {
            body(e).as_deref() == Some("still there?")
        })
        .await;
    assert!(
        bob.inbox()
            .all(|e| !is_presence_from(e, "me@foreign.test/Work", Some("unavailable"))),
        "me/Work went offline while the laptop was online"
    );

    // The last Work controller leaves: me/Work goes offline, me/Home stays.
    laptop.disconnect().await;
    bob.expect("me/Work offline", |e| {
        is_presence_from(e, "me@foreign.test/Work", Some("unavailable"))
    })
    .await;
    bob.send("<message type='chat' to='me@foreign.test/Home' id='h'><body>home?</body></message>")
        .await;
    desk.expect("bob's message at home", |e| {
        body(e).as_deref() == Some("home?")
    })
    .await;
    assert!(
        bob.inbox()
            .all(|e| !is_presence_from(e, "me@foreign.test/Home", Some("unavailable")))
    );
}

#[tokio::test]
async fn local_presence_is_not_copied_but_presence_to_the_account_sets_it() {
    let mut world = World::new().await;
    let mut bob = world.bob().await;
    bob_subscribes(&mut bob, &mut world.phone, "Work").await;

    // A local status change (broadcast, reaches T) stays local...
    world
        .phone
        .send("<presence><show>away</show><status>local only</status></presence>")
        .await;
    // ...while presence sent to esc(F)@T becomes me/Work's own presence.
    world
        .phone
        .send(&format!(
            "<presence to='{}'><show>dnd</show><status>busy on foreign</status></presence>",
            gw_jid(ME)
        ))
        .await;
    let p = bob
        .expect("me/Work's new status", |e| {
            e.name() == "presence"
                && e.attr("from") == Some("me@foreign.test/Work")
                && xml(e).contains("busy on foreign")
        })
        .await;
    assert!(xml(&p).contains("dnd"));
    // Same session, in order: had the local change been copied, it would
    // have arrived first.
    assert!(
        bob.inbox().all(|e| !xml(e).contains("local only")),
        "local presence leaked"
    );
}

#[tokio::test]
async fn a_probe_of_the_gateway_is_answered_with_its_availability() {
    let mut world = World::new().await;
    world
        .phone
        .send(&format!("<presence type='probe' to='{GW}'/>"))
        .await;
    // Prosody answers client probes itself from the roster; either way the
    // gateway is seen available.
    let p = world
        .phone
        .expect("the gateway's presence", |e| is_presence_from(e, GW, None))
        .await;
    assert_eq!(p.attr("type"), None);
}

#[tokio::test]
async fn with_one_login_slot_sessions_still_all_come_up() {
    // `max_concurrent_logins = 1`: each login must give its slot back once
    // bound, or the next session would wait for ever.
    let world = World::with(|c| c.max_concurrent_logins = 1).await;
    let mut controllers = Vec::new();
    for a in ["Home", "Car", "Office"] {
        let mut c = world.controller(&format!("{a}/x")).await;
        let session = gw_jid(&format!("{ME}/{a}"));
        c.expect("its own session's presence", |e| {
            e.name() == "presence" && e.attr("from") == Some(session.as_str())
        })
        .await;
        controllers.push(c);
    }
}
