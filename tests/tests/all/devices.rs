//! docs/behaviour.md section 10: today's clients. Every client here
//! enables carbons at login and the servers keep archives, as Conversations,
//! Gajim and Dino with any Prosody today.

use crate::{World, bob_subscribes};
use minidom::Element;
use pizzja_tests::*;

const NS_MAM: &str = "urn:xmpp:mam:2";
const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const NS_NICK: &str = "http://jabber.org/protocol/nick";
const NS_AVATAR_META: &str = "urn:xmpp:avatar:metadata";

/// How many times `text` is the body of a message in `el`, wrapped in
/// carbons or archive results or not.
fn bodies(el: &Element, text: &str) -> usize {
    let own = usize::from(el.name() == "body" && el.text() == text);
    own + el.children().map(|c| bodies(c, text)).sum::<usize>()
}

/// How many times `client` got a message whose body is `text`.
fn copies(client: &Client, text: &str) -> usize {
    client.inbox().map(|e| bodies(e, text)).sum()
}

/// Waits until `client`'s foreign session `a` is up.
async fn session_up(client: &mut Client, a: &str) {
    let session = gw_jid(&format!("{ME}/{a}"));
    client
        .expect(&format!("me/{a} online"), |e| {
            e.name() == "presence"
                && e.attr("from") == Some(session.as_str())
                && e.attr("type").is_none()
        })
        .await;
}

#[tokio::test]
async fn each_controller_gets_an_incoming_message_once_and_the_archive_keeps_one() {
    let mut world = World::new().await;
    world.session_up("me/Work online").await;
    let mut laptop = world.controller("Work/laptop").await;
    let mut desk = world.controller("Home/desk").await;
    session_up(&mut desk, "Home").await;
    let bob = world.bob().await;

    for (to, text) in [
        ("me@foreign.test/Work", "for-work"),
        ("me@foreign.test/Work", "end-work"),
        ("me@foreign.test/Home", "end-home"),
    ] {
        bob.send(&format!(
            "<message type='chat' to='{to}' id='{text}'><body>{text}</body></message>"
        ))
        .await;
    }
    // The local server routes the gateway's stanzas in order: once the
    // last one is in, every copy of the first one is too.
    for (client, last) in [
        (&mut world.phone, "end-work"),
        (&mut laptop, "end-work"),
        (&mut desk, "end-home"),
    ] {
        client
            .expect(last, |e| body(e).as_deref() == Some(last))
            .await;
    }
    assert_eq!(copies(&world.phone, "for-work"), 1, "phone");
    assert_eq!(copies(&laptop, "for-work"), 1, "laptop");
    assert_eq!(copies(&desk, "for-work"), 0, "desk controls Home, not Work");

    // alice's own archive: one copy.
    world
        .phone
        .send(&format!(
            "<iq type='set' id='own-mam'><query xmlns='{NS_MAM}' queryid='own'/></iq>"
        ))
        .await;
    let done = world
        .phone
        .expect("the archive's answer", |e| e.attr("id") == Some("own-mam"))
        .await;
    assert_eq!(done.attr("type"), Some("result"), "{}", xml(&done));
    let archived: usize = world
        .phone
        .inbox()
        .filter(|e| e.get_child("result", NS_MAM).is_some())
        .map(|e| bodies(e, "for-work"))
        .sum();
    assert_eq!(archived, 1, "alice's archive holds the message once");
}

/// The results of an archive query a controller sends through F/A reach
/// that controller only, even when two controllers use the same queryid
/// at once.
#[tokio::test]
async fn archive_queries_through_the_gateway_answer_only_their_asker() {
    let mut world = World::new().await;
    world.session_up("me/Work online").await;
    let mut laptop = world.controller("Work/laptop").await;
    let bob = world.bob().await;
    for i in 0..6 {
        bob.send(&format!(
            "<message type='chat' to='{ME}/Work' id='a-{i}'><body>a-{i}</body></message>"
        ))
        .await;
    }
    for c in [&mut world.phone, &mut laptop] {
        c.expect("the last message", |e| body(e).as_deref() == Some("a-5"))
            .await;
        c.clear();
    }

    let account = gw_jid(ME);
    let ask = |id: &str, max: usize| {
        format!(
            "<iq type='set' id='{id}' to='{account}'><query xmlns='{NS_MAM}' queryid='same'><set xmlns='http://jabber.org/protocol/rsm'><max>{max}</max></set></query></iq>"
        )
    };
    world.phone.send(&ask("phone-q", 5)).await;
    laptop.send(&ask("laptop-q", 3)).await;
    for (client, id) in [(&mut world.phone, "phone-q"), (&mut laptop, "laptop-q")] {
        let done = client
            .expect("the archive's answer", |e| e.attr("id") == Some(id))
            .await;
        assert_eq!(done.attr("type"), Some("result"), "{}", xml(&done));
        assert_eq!(done.attr("from"), Some(account.as_str()));
    }
    // Anything leaked would come before a message bob sends now.
    bob.send(&format!(
        "<message type='chat' to='{ME}/Work' id='after'><body>after</body></message>"
    ))
    .await;
    for (client, expected) in [(&mut world.phone, 5), (&mut laptop, 3)] {
        client
            .expect("bob's next message", |e| {
                body(e).as_deref() == Some("after")
            })
            .await;
        let results: Vec<&Element> = client
            .inbox()
            .filter_map(|e| e.get_child("result", NS_MAM))
            .collect();
        assert_eq!(results.len(), expected, "{}", client.jid);
        assert!(
            results.iter().all(|r| r.attr("queryid") == Some("same")),
            "each with the asker's own queryid"
        );
    }
}

/// F/A advertises PEP notifications for nicknames and avatars (XEP-0115);
/// a contact's server asks the gateway what they mean and then sends the
/// contact's nickname and avatar metadata, which reach the controllers.
#[tokio::test]
async fn a_contact_s_nickname_and_avatar_reach_the_controllers() {
    let mut world = World::new().await;
    world.session_up("me/Work online").await;
    let mut bob = world.bob().await;
    // Subscribed both ways: bob to me, and me to bob.
    bob_subscribes(&mut bob, &mut world.phone, "Work").await;
    crate::me_subscribes_to_bob(&mut world.phone, &mut bob).await;
    let bob_gw = gw_jid("bob@foreign.test");

    let publish = |id: &str, node: &str, item: &str| {
        format!(
            "<iq type='set' id='{id}'><pubsub xmlns='{NS_PUBSUB}'><publish node='{node}'><item id='current'>{item}</item></publish></pubsub></iq>"
        )
    };
    for (id, node, item) in [
        (
            "nick",
            NS_NICK,
            format!("<nick xmlns='{NS_NICK}'>Bobby</nick>"),
        ),
        (
            "avatar",
            NS_AVATAR_META,
            format!(
                "<metadata xmlns='{NS_AVATAR_META}'><info bytes='4' id='current' type='image/png'/></metadata>"
            ),
        ),
    ] {
        bob.send(&publish(id, node, &item)).await;
        let done = bob.expect("published", |e| e.attr("id") == Some(id)).await;
        assert_eq!(done.attr("type"), Some("result"), "{}", xml(&done));
    }

    // A session that comes up now shows its caps to bob's server, which asks
    // the gateway about them and sends what bob published.
    let mut desk = world.controller("Home/desk").await;
    let event_on = |node: &'static str| {
        let bob_gw = bob_gw.clone();
        move |e: &Element| {
            e.name() == "message"
                && e.attr("from") == Some(bob_gw.as_str())
                && e.get_child("event", NS_EVENT)
                    .and_then(|ev| ev.get_child("items", NS_EVENT))
                    .is_some_and(|items| items.attr("node") == Some(node))
        }
    };
    let nick = desk.expect("bob's nickname", event_on(NS_NICK)).await;
    assert!(xml(&nick).contains("Bobby"), "{}", xml(&nick));
    desk.expect("bob's avatar metadata", event_on(NS_AVATAR_META))
        .await;

    // And what bob publishes later.
    bob.send(&publish(
        "nick2",
        NS_NICK,
        &format!("<nick xmlns='{NS_NICK}'>Robert</nick>"),
    ))
    .await;
    let on_nick = event_on(NS_NICK);
    desk.expect("bob's new nickname", |e| {
        on_nick(e) && xml(e).contains("Robert")
    })
    .await;
}

/// Sends `payload` in a message from the phone to bob and from bob to
/// me/Work, and checks it arrives untouched both ways.
async fn passes_untouched(payload: &str) {
    let mut world = World::new().await;
    world.session_up("me/Work online").await;
    let mut bob = world.bob().await;
    let expected: Element = format!("<m xmlns='jabber:client'>{payload}</m>")
        .parse::<Element>()
        .expect("the payload parses");
    let check = |m: &Element| {
        for want in expected.children() {
            let got = m
                .get_child(want.name(), want.ns().as_str())
                .unwrap_or_else(|| panic!("{} lost in {}", want.name(), xml(m)));
            // The stanza's language may move onto its body on the way: the
            // same meaning (XML's xml:lang is inherited).
            assert_eq!(
                xml(got).replace(" xml:lang='en'", ""),
                xml(want),
                "{}",
                xml(m)
            );
        }
    };
    let bob_gw = gw_jid("bob@foreign.test/pc");
    world
        .phone
        .send(&format!(
            "<message type='chat' to='{bob_gw}' id='out'>{payload}</message>"
        ))
        .await;
    let out = bob
        .expect("the phone's message", |e| {
            e.name() == "message" && e.attr("id") == Some("out")
        })
        .await;
    check(&out);
    bob.send(&format!(
        "<message type='chat' to='{ME}/Work' id='in'>{payload}</message>"
    ))
    .await;
    let incoming = world
        .phone
        .expect("bob's message", |e| {
            e.name() == "message" && e.attr("id") == Some("in")
        })
        .await;
    check(&incoming);
}

#[tokio::test]
async fn chat_states_pass_through_untouched() {
    passes_untouched("<composing xmlns='http://jabber.org/protocol/chatstates'/>").await;
}

#[tokio::test]
async fn receipts_pass_through_untouched() {
    passes_untouched(
        "<body>hi</body><request xmlns='urn:xmpp:receipts'/><received xmlns='urn:xmpp:receipts' id='m-0'/>",
    )
    .await;
}

#[tokio::test]
async fn corrections_pass_through_untouched() {
    passes_untouched("<body>fixed</body><replace xmlns='urn:xmpp:message-correct:0' id='m-0'/>")
        .await;
}

#[tokio::test]
async fn replies_pass_through_untouched() {
    passes_untouched(
        "<body>yes</body><reply xmlns='urn:xmpp:reply:0' to='bob@foreign.test/pc' id='m-0'/>",
    )
    .await;
}

#[tokio::test]
async fn reactions_pass_through_untouched() {
    passes_untouched(
        "<reactions xmlns='urn:xmpp:reactions:0' id='m-0'><reaction>\u{1f44d}</reaction></reactions><store xmlns='urn:xmpp:hints'/>",
    )
    .await;
}
