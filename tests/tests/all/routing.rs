//! docs/behaviour.md sections 4 and 5: stanzas both ways, IQ bookkeeping.

use crate::{World, bob_subscribes};
use pizzja_tests::*;

#[tokio::test]
async fn chat_goes_out_as_the_foreign_resource_and_comes_back_to_every_controller() {
    let mut world = World::new().await;
    let mut laptop = world.controller("Work/laptop").await;
    let mut desk = world.controller("Home/desk").await;
    let mut bob = world.bob().await;
    let bob_gw = gw_jid("bob@foreign.test");

    // alice/Work/phone -> bob, through me/Work.
    world
        .phone
        .send(&format!(
            "<message type='chat' to='{bob_gw}' id='c1'><body>from phone</body></message>"
        ))
        .await;
    let m = bob
        .expect("the phone's message", |e| {
            body(e).as_deref() == Some("from phone")
        })
        .await;
    assert_eq!(m.attr("from"), Some("me@foreign.test/Work"));
    // alice/Home/desk -> bob, through me/Home.
    desk.send(&format!(
        "<message type='chat' to='{bob_gw}' id='c2'><body>from desk</body></message>"
    ))
    .await;
    let m = bob
        .expect("the desk's message", |e| {
            body(e).as_deref() == Some("from desk")
        })
        .await;
    assert_eq!(m.attr("from"), Some("me@foreign.test/Home"));

    // bob -> me/Work reaches both Work controllers, from bob's gateway JID.
    bob.send(
        "<message type='chat' to='me@foreign.test/Work' id='r1'><body>to work</body></message>",
    )
    .await;
    for c in [&mut world.phone, &mut laptop] {
        let m = c
            .expect("bob's message", |e| body(e).as_deref() == Some("to work"))
            .await;
        assert_eq!(m.attr("from"), Some(format!("{bob_gw}/pc").as_str()));
    }
    // ...and not the Home controller: a later message to me/Home arrives
    // there first, so the Work one would have come before it.
    bob.send(
        "<message type='chat' to='me@foreign.test/Home' id='r2'><body>to home</body></message>",
    )
    .await;
    desk.expect("bob's message to Home", |e| {
        body(e).as_deref() == Some("to home")
    })
    .await;
    assert!(
        desk.inbox().all(|e| body(e).as_deref() != Some("to work")),
        "Home got Work's message"
    );
}

#[tokio::test]
async fn iq_answers_go_to_the_asker_with_its_own_id_even_when_ids_collide() {
    let mut world = World::new().await;
    let mut laptop = world.controller("Work/laptop").await;
    // Both ask the foreign server's disco#info with the same id.
    let ask = format!(
        "<iq type='get' id='same' to='{FOREIGN}@{GW}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    );
    world.phone.send(&ask).await;
    laptop.send(&ask).await;
    for c in [&mut world.phone, &mut laptop] {
        let answer = c
            .expect("the disco answer", |e| e.attr("id") == Some("same"))
            .await;
        assert_eq!(answer.attr("type"), Some("result"), "{}", xml(&answer));
        assert_eq!(
            answer.attr("from"),
            Some(format!("{FOREIGN}@{GW}").as_str())
        );
        assert!(xml(&answer).contains("identity"), "{}", xml(&answer));
    }
    // Exactly one answer each.
    let marker = format!(
        "<iq type='get' id='marker' to='{FOREIGN}@{GW}'><ping xmlns='urn:xmpp:ping'/></iq>"
    );
    for c in [&mut world.phone, &mut laptop] {
        c.send(&marker).await;
        c.expect("the ping answer", |e| e.attr("id") == Some("marker"))
            .await;
        assert!(
            c.inbox().all(|e| e.attr("id") != Some("same")),
            "a second answer arrived"
        );
    }
}

/// disco#items to a contact under the gateway is the contact's server's to
/// answer: the controller gets that answer, from the address it asked.
#[tokio::test]
async fn disco_items_of_a_contact_come_from_the_contact_s_server() {
    let mut world = World::new().await;
    let mut bob = world.bob().await;
    crate::me_subscribes_to_bob(&mut world.phone, &mut bob).await;
    // What bob's server lists for him: his PEP nodes.
    bob.send(
        "<iq type='set' id='nick'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='http://jabber.org/protocol/nick'><item><nick xmlns='http://jabber.org/protocol/nick'>Bobby</nick></item></publish></pubsub></iq>",
    )
    .await;
    bob.expect("published", |e| e.attr("id") == Some("nick"))
        .await;
    let bob_gw = gw_jid("bob@foreign.test");
    world
        .phone
        .send(&format!(
            "<iq type='get' id='items' to='{bob_gw}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
        ))
        .await;
    let answer = world
        .phone
        .expect("bob's items", |e| e.attr("id") == Some("items"))
        .await;
    assert_eq!(
        answer.attr("from"),
        Some(bob_gw.as_str()),
        "{}",
        xml(&answer)
    );
    assert_eq!(answer.attr("type"), Some("result"), "{}", xml(&answer));
    assert!(
        xml(&answer).contains("node='http://jabber.org/protocol/nick'"),
        "{}",
        xml(&answer)
    );
}

#[tokio::test]
async fn roster_and_vcard_requests_reach_the_foreign_server() {
    let mut world = World::new().await;
    let me_gw = gw_jid(ME);
    world
        .phone
        .send(&format!(
            "<iq type='get' id='r' to='{me_gw}'><query xmlns='jabber:iq:roster'/></iq>"
        ))
        .await;
    let roster = world
        .phone
        .expect("the foreign roster", |e| e.attr("id") == Some("r"))
        .await;
    assert_eq!(roster.attr("type"), Some("result"), "{}", xml(&roster));
    assert!(roster.has_child("query", "jabber:iq:roster"));

    world
        .phone
        .send(&format!(
            "<iq type='get' id='v' to='{}'><vCard xmlns='vcard-temp'/></iq>",
            gw_jid("bob@foreign.test")
        ))
        .await;
    let vcard = world
        .phone
        .expect("bob's vCard answer", |e| e.attr("id") == Some("v"))
        .await;
    // Prosody answers for bob (an empty vCard or item-not-found): either
    // way the answer came back, from bob's gateway JID, with our id.
    assert_eq!(
        vcard.attr("from"),
        Some(gw_jid("bob@foreign.test").as_str()),
        "{}",
        xml(&vcard)
    );
}

#[tokio::test]
async fn a_foreign_request_goes_to_the_most_recently_active_controller_and_back() {
    let world = World::new().await;
    let mut laptop = world.controller("Work/laptop").await;
    // The laptop spoke last.
    laptop
        .send(&format!(
            "<iq type='get' id='p' to='{FOREIGN}@{GW}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
    laptop
        .expect("ping answer", |e| e.attr("id") == Some("p"))
        .await;
    let mut bob = world.bob().await;
    bob.send("<iq type='get' id='bobs-id' to='me@foreign.test/Work'><query xmlns='jabber:iq:version'/></iq>").await;
    let request = laptop
        .expect("bob's request", |e| {
            e.name() == "iq" && e.attr("type") == Some("get")
        })
        .await;
    assert_eq!(
        request.attr("from"),
        Some(format!("{}/pc", gw_jid("bob@foreign.test")).as_str())
    );
    let id = request.attr("id").expect("an id").to_string();
    laptop
        .send(&format!(
            "<iq type='result' id='{id}' to='{}/pc'><query xmlns='jabber:iq:version'><name>laptop</name></query></iq>",
            gw_jid("bob@foreign.test")
        ))
        .await;
    let answer = bob
        .expect("the answer", |e| e.attr("id") == Some("bobs-id"))
        .await;
    assert_eq!(answer.attr("type"), Some("result"), "{}", xml(&answer));
    assert!(xml(&answer).contains("laptop"));
    assert_eq!(answer.attr("from"), Some("me@foreign.test/Work"));
}

#[tokio::test]
async fn subscriptions_and_directed_presence_cross_the_gateway() {
    let mut world = World::new().await;
    let mut bob = world.bob().await;
    bob_subscribes(&mut bob, &mut world.phone, "Work").await;
    // Directed presence to a contact goes out as directed presence.
    world
        .phone
        .send(&format!(
            "<presence to='{}/pc'><status>just for bob</status></presence>",
            gw_jid("bob@foreign.test")
        ))
        .await;
    let p = bob
        .expect("directed presence", |e| xml(e).contains("just for bob"))
        .await;
    assert_eq!(p.attr("from"), Some("me@foreign.test/Work"));
}

#[tokio::test]
async fn roster_pushes_are_copied_to_every_controller() {
    let mut world = World::new().await;
    let mut laptop = world.controller("Work/laptop").await;
    let me_gw = gw_jid(ME);
    // RFC 6121 section 2.1.6: pushes go to sessions that asked for the
    // roster, so a controller fetches it through the gateway first.
    world
        .phone
        .send(&format!(
            "<iq type='get' id='get' to='{me_gw}'><query xmlns='jabber:iq:roster'/></iq>"
        ))
        .await;
    world
        .phone
        .expect("the foreign roster", |e| e.attr("id") == Some("get"))
        .await;
    world
        .phone
        .send(&format!(
            "<iq type='set' id='add' to='{me_gw}'><query xmlns='jabber:iq:roster'><item jid='carol@foreign.test' name='Carol'/></query></iq>"
        ))
        .await;
    let answer = world
        .phone
        .expect("the roster set answer", |e| e.attr("id") == Some("add"))
        .await;
    assert_eq!(answer.attr("type"), Some("result"), "{}", xml(&answer));
    for c in [&mut world.phone, &mut laptop] {
        let push = c
            .expect("the copied roster push", |e| {
                e.name() == "iq"
                    && e.attr("type") == Some("set")
                    && xml(e).contains("carol@foreign.test")
            })
            .await;
        assert_eq!(push.attr("from"), Some(me_gw.as_str()));
    }
}

#[tokio::test]
async fn stanzas_sent_while_the_session_logs_in_wait_and_leave_in_order() {
    let world = World::new().await;
    let mut bob = world.bob().await;
    let desk = world.client("alice", LOCAL, "Home/desk").await;
    // Presence opens me/Home; the messages right behind it wait for the login.
    desk.send("<presence/>").await;
    let to = gw_jid("bob@foreign.test");
    for i in 0..5 {
        desk.send(&format!(
            "<message type='chat' to='{to}' id='q{i}'><body>queued {i}</body></message>"
        ))
        .await;
    }
    for i in 0..5 {
        let m = bob
            .expect("the next queued message", |e| {
                body(e).is_some_and(|b| b.starts_with("queued"))
            })
            .await;
        assert_eq!(body(&m), Some(format!("queued {i}")), "out of order");
        assert_eq!(m.attr("from"), Some("me@foreign.test/Home"));
    }
}
