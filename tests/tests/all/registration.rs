//! docs/behaviour.md section 2: registration (XEP-0077 with XEP-0100).

use crate::World;
use pizzja_tests::*;

#[tokio::test]
async fn registration_form_offers_username_password_and_a_data_form() {
    init_tracing();
    let prosody = Prosody::start(&[("alice", LOCAL)]).await.expect("prosody");
    let db = prosody.dir.path().join("db.sqlite3");
    let gw = Gateway::start(prosody.gateway_config(&db, ""))
        .await
        .expect("gateway");
    let mut alice = Client::connect(&prosody, "alice", LOCAL, "Work/phone")
        .await
        .expect("login");
    alice
        .send(&format!(
            "<iq type='get' id='f1' to='{GW}'><query xmlns='jabber:iq:register'/></iq>"
        ))
        .await;
    let form = alice
        .expect("the form", |e| e.attr("id") == Some("f1"))
        .await;
    assert_eq!(form.attr("type"), Some("result"), "{}", xml(&form));
    let q = form
        .get_child("query", "jabber:iq:register")
        .expect("query");
    for field in ["instructions", "username", "password"] {
        assert!(
            q.has_child(field, "jabber:iq:register"),
            "missing {field}: {}",
            xml(&form)
        );
    }
    let x = q.get_child("x", "jabber:x:data").expect("a XEP-0004 form");
    let vars: Vec<_> = x.children().filter_map(|f| f.attr("var")).collect();
    assert_eq!(vars, ["username", "password"]);
    assert!(!q.has_child("registered", "jabber:iq:register"));
    gw.stop().await.expect("stops");
}

#[tokio::test]
async fn registers_with_a_real_login_and_keeps_it_across_a_restart() {
    let mut world = World::new().await;
    // Registered: the form says so and shows the foreign JID, never the password.
    world
        .phone
        .send(&format!(
            "<iq type='get' id='f2' to='{GW}'><query xmlns='jabber:iq:register'/></iq>"
        ))
        .await;
    let form = world
        .phone
        .expect("the form", |e| e.attr("id") == Some("f2"))
        .await;
    let q = form
        .get_child("query", "jabber:iq:register")
        .expect("query");
    assert!(
        q.has_child("registered", "jabber:iq:register"),
        "{}",
        xml(&form)
    );
    assert_eq!(
        q.get_child("username", "jabber:iq:register")
            .map(|u| u.text()),
        Some(ME.to_string())
    );
    assert!(!xml(&form).contains(PASSWORD));

    world.session_up("the session's presence").await;

    // Restart the gateway on the same database: still registered, and the
    // start-up probe brings the session back for the controller online.
    let mut bob = world.bob().await;
    world.restart_gateway().await;
    // Without new presence from the phone, the probe revives me/Work.
    world
        .session_up("the session's presence after the restart")
        .await;
    world
        .phone
        .send(&format!(
            "<iq type='get' id='f3' to='{GW}'><query xmlns='jabber:iq:register'/></iq>"
        ))
        .await;
    let form = world
        .phone
        .expect("the form", |e| e.attr("id") == Some("f3"))
        .await;
    assert!(xml(&form).contains("registered"), "{}", xml(&form));
    world
        .phone
        .send(&format!(
            "<message type='chat' to='{}' id='m1'><body>back</body></message>",
            gw_jid("bob@foreign.test")
        ))
        .await;
    let m = bob
        .expect("the message", |e| body(e).as_deref() == Some("back"))
        .await;
    assert_eq!(m.attr("from"), Some("me@foreign.test/Work"));
}

#[tokio::test]
async fn after_a_restart_a_controller_speaking_before_the_probe_is_answered_is_served() {
    let mut world = World::new().await;
    let mut bob = world.bob().await;
    through(&mut world, &mut bob, "before the restart").await;
    world.restart_gateway().await;
    // At once: in most runs the phone's message reaches the new gateway
    // before the server's answer to its start-up probe says the phone is
    // online. It waits for that answer instead of being refused.
    through(&mut world, &mut bob, "right after the restart").await;
    assert!(
        world.phone.inbox().all(|e| e.attr("type") != Some("error")),
        "the phone got an error: {:?}",
        world.phone.inbox().map(xml).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn after_a_restart_stanzas_wait_in_order_for_their_senders_presence_or_get_an_error() {
    let mut world = World::new().await;
    let mut bob = world.bob().await;
    // Nobody of alice's is online when the gateway starts again, so nothing
    // of hers is confirmed yet.
    world.phone.send("<presence type='unavailable'/>").await;
    // Stanzas are held only while the probes' answers may still come: a
    // window long enough for two logins and 64 messages on a busy machine.
    world
        .restart_gateway_with(|c| c.confirm_window = std::time::Duration::from_secs(15))
        .await;
    let bob_gw = gw_jid("bob@foreign.test");
    let mut tablet = world.client("alice", LOCAL, "Home/tablet").await;
    tablet
        .send(&format!(
            "<message type='chat' id='never' to='{bob_gw}'><body>no presence ever</body></message>"
        ))
        .await;
    // The laptop speaks before its presence: its messages wait, as many as
    // the account may hold; one more is refused at once, to be sent again.
    let mut laptop = world.client("alice", LOCAL, "Work/laptop").await;
    let held = pizzja_host::account::HELD_LIMIT - 1;
    for i in 0..=held {
        laptop
            .send(&format!(
                "<message type='chat' id='early-{i}' to='{bob_gw}'><body>early {i}</body></message>"
            ))
            .await;
    }
    let e = laptop
        .expect_error(&format!("early-{held}"), "resource-constraint")
        .await;
    assert_eq!(e.attr("type"), Some("error"));
    // Its presence comes after its messages: they go out, in order.
    laptop.go_online().await;
    for i in 0..held {
        let text = format!("early {i}");
        let m = bob
            .expect("the held messages", |e| {
                body(e).is_some_and(|b| b.starts_with("early"))
            })
            .await;
        assert_eq!(body(&m).as_deref(), Some(text.as_str()), "out of order");
        assert_eq!(m.attr("from"), Some("me@foreign.test/Work"));
    }
    // The tablet never says it is online: after the wait, docs/behaviour.md section 4's
    // error, not silence.
    let e = tablet.expect_error("never", "service-unavailable").await;
    assert!(xml(&e).contains("send presence"), "{}", xml(&e));
    assert!(
        bob.inbox()
            .all(|e| body(e).as_deref() != Some("no presence ever")),
        "the tablet's message went out"
    );
    assert!(
        laptop.inbox().all(|e| e.attr("type") != Some("error")),
        "the laptop's held messages got errors: {:?}",
        laptop.inbox().map(xml).collect::<Vec<_>>()
    );
}

/// The admin `stats` counter `name`.
async fn counter(world: &World, name: &str) -> u64 {
    let mut admin = world.client("admin", LOCAL, "console").await;
    let answer = execute_command(&mut admin, "stats", "stats").await;
    let (_, text) = command_note(&answer).unwrap_or_else(|| panic!("no note: {}", xml(&answer)));
    stats_counter(&text, name).unwrap_or_else(|| panic!("no counter {name} in {text}"))
}

/// Sends a message from the phone to bob through the gateway and waits for
/// it: the foreign session is up.
async fn through(world: &mut World, bob: &mut Client, text: &str) {
    world
        .phone
        .send(&format!(
            "<message type='chat' to='{}'><body>{text}</body></message>",
            gw_jid("bob@foreign.test")
        ))
        .await;
    bob.expect("the message", |e| body(e).as_deref() == Some(text))
        .await;
}

#[tokio::test]
async fn logins_reuse_the_scram_key_the_registration_derived_even_after_a_restart() {
    let mut world = World::new().await;
    let mut bob = world.bob().await;
    through(&mut world, &mut bob, "first").await;
    world.session_up("the session's presence").await;
    // The registration's credential check derived the salted password and
    // kept it; the session's login reused it.
    assert_eq!(counter(&world, "scram-keys-derived").await, 1);
    assert!(counter(&world, "scram-keys-reused").await >= 1);

    world.restart_gateway().await;
    // The start-up probe finds the phone again, and its session comes back.
    world
        .session_up("the session's presence after the restart")
        .await;
    through(&mut world, &mut bob, "after the restart").await;
    assert_eq!(counter(&world, "scram-keys-derived").await, 0);
    assert!(counter(&world, "scram-keys-reused").await >= 1);
}

#[tokio::test]
async fn a_wrong_password_is_not_authorized() {
    init_tracing();
    let prosody = Prosody::start(&[("alice", LOCAL), ("me", FOREIGN)])
        .await
        .expect("prosody");
    let gw = Gateway::start(prosody.gateway_config(&prosody.dir.path().join("db"), ""))
        .await
        .expect("gateway");
    let mut alice = Client::connect(&prosody, "alice", LOCAL, "Work")
        .await
        .expect("login");
    register_refused(&mut alice, ME, "wrong password", "not-authorized").await;
    // Nothing stored: the gateway still says "register first".
    alice
        .send(&format!(
            "<message to='{}' id='x'><body>hi</body></message>",
            gw_jid("bob@foreign.test")
        ))
        .await;
    let e = alice
        .expect("an error", |e| e.attr("id") == Some("x"))
        .await;
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("registration-required")
    );
    gw.stop().await.expect("stops");
}

#[tokio::test]
async fn an_unreachable_server_is_remote_server_timeout_and_a_bad_jid_is_jid_malformed() {
    init_tracing();
    let prosody = Prosody::start(&[("alice", LOCAL)]).await.expect("prosody");
    // nowhere.test points at a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut config = prosody.gateway_config(&prosody.dir.path().join("db"), "");
    config.foreign_hosts.insert("nowhere.test".into(), closed);
    let gw = Gateway::start(config).await.expect("gateway");
    let mut alice = Client::connect(&prosody, "alice", LOCAL, "Work")
        .await
        .expect("login");
    register_refused(
        &mut alice,
        "me@nowhere.test",
        PASSWORD,
        "remote-server-timeout",
    )
    .await;
    for bad in ["no-at-sign", "a@b@c", "@foreign.test"] {
        register_refused(&mut alice, bad, PASSWORD, "jid-malformed").await;
    }
    gw.stop().await.expect("stops");
}

#[tokio::test]
async fn accounts_outside_the_local_domains_are_refused() {
    let world = World::new().await;
    let mut bob = world.client("bob", FOREIGN, "pc").await;
    register_refused(&mut bob, "bob@foreign.test", PASSWORD, "not-allowed").await;
    bob.send(&format!(
        "<message to='{}' id='m'><body>x</body></message>",
        gw_jid(ME)
    ))
    .await;
    bob.expect_error("m", "forbidden").await;
}

/// XEP-0100 section 4.3: removing closes the sessions, then the gateway
/// says `unsubscribe`, `unsubscribed` and `unavailable`, in that order.
#[tokio::test]
async fn removing_the_registration_unsubscribes_and_forgets() {
    let mut world = World::new().await;
    world.session_up("me/Work online").await;
    let mut bob = world.bob().await;
    crate::bob_subscribes(&mut bob, &mut world.phone, "Work").await;
    world
        .phone
        .send(&format!("<iq type='set' id='rm' to='{GW}'><query xmlns='jabber:iq:register'><remove/></query></iq>"))
        .await;
    let answer = world
        .phone
        .expect("the answer", |e| e.attr("id") == Some("rm"))
        .await;
    assert_eq!(answer.attr("type"), Some("result"), "{}", xml(&answer));
    let mut said = Vec::new();
    while said.len() < 3 {
        let p = world
            .phone
            .expect("the gateway's presence", |e| {
                e.name() == "presence" && e.attr("from") == Some(GW) && e.attr("type").is_some()
            })
            .await;
        said.push(p.attr("type").unwrap_or_default().to_string());
    }
    assert_eq!(said, ["unsubscribe", "unsubscribed", "unavailable"]);
    // The foreign session is closed: bob sees me/Work go.
    let work = format!("{ME}/Work");
    bob.expect("me/Work gone", |e| {
        e.name() == "presence"
            && e.attr("from") == Some(work.as_str())
            && e.attr("type") == Some("unavailable")
    })
    .await;
    // Removing again: there is nothing to remove.
    world
        .phone
        .send(&format!("<iq type='set' id='rm2' to='{GW}'><query xmlns='jabber:iq:register'><remove/></query></iq>"))
        .await;
    world.phone.expect_error("rm2", "item-not-found").await;
    world
        .phone
        .send(&format!(
            "<message to='{}' id='after'><body>x</body></message>",
            gw_jid("bob@foreign.test")
        ))
        .await;
    let e = world
        .phone
        .expect("an error", |e| e.attr("id") == Some("after"))
        .await;
    assert_eq!(
        error_condition(&e).as_deref(),
        Some("registration-required"),
        "{}",
        xml(&e)
    );
}

#[tokio::test]
async fn the_gateway_translates_foreign_jids_and_describes_itself() {
    let mut world = World::new().await;
    // XEP-0100 section 6.3: what to type, then the translation.
    world
        .phone
        .send(&format!(
            "<iq type='get' id='tg' to='{GW}'><query xmlns='jabber:iq:gateway'/></iq>"
        ))
        .await;
    let form = world
        .phone
        .expect("the prompt", |e| e.attr("id") == Some("tg"))
        .await;
    let query = form
        .get_child("query", "jabber:iq:gateway")
        .unwrap_or_else(|| panic!("no query: {}", xml(&form)));
    for field in ["desc", "prompt"] {
        assert!(
            query
                .get_child(field, "jabber:iq:gateway")
                .is_some_and(|f| !f.text().is_empty()),
            "{field} missing: {}",
            xml(&form)
        );
    }
    world
        .phone
        .send(&format!("<iq type='set' id='tr' to='{GW}'><query xmlns='jabber:iq:gateway'><prompt>bob@foreign.test</prompt></query></iq>"))
        .await;
    let answer = world
        .phone
        .expect("the translation", |e| e.attr("id") == Some("tr"))
        .await;
    let jid = answer
        .get_child("query", "jabber:iq:gateway")
        .and_then(|q| q.get_child("jid", "jabber:iq:gateway"));
    assert_eq!(
        jid.map(|j| j.text()),
        Some(gw_jid("bob@foreign.test")),
        "{}",
        xml(&answer)
    );
    world
        .phone
        .send(&format!("<iq type='set' id='bad' to='{GW}'><query xmlns='jabber:iq:gateway'><prompt>not a jid@</prompt></query></iq>"))
        .await;
    world.phone.expect_error("bad", "jid-malformed").await;

    // XEP-0092: the gateway's name and version.
    world
        .phone
        .send(&format!(
            "<iq type='get' id='v' to='{GW}'><query xmlns='jabber:iq:version'/></iq>"
        ))
        .await;
    let version = world
        .phone
        .expect("the version", |e| e.attr("id") == Some("v"))
        .await;
    let query = version.get_child("query", "jabber:iq:version");
    let field = |name: &str| {
        query
            .and_then(|q| q.get_child(name, "jabber:iq:version"))
            .map(|f| f.text())
    };
    assert_eq!(
        field("name").as_deref(),
        Some("Pizzja"),
        "{}",
        xml(&version)
    );
    assert_eq!(
        field("version").as_deref(),
        Some(env!("CARGO_PKG_VERSION")),
        "{}",
        xml(&version)
    );

    // disco#items: nothing under the gateway itself.
    world
        .phone
        .send(&format!("<iq type='get' id='it' to='{GW}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"))
        .await;
    let items = world
        .phone
        .expect("the gateway's items", |e| e.attr("id") == Some("it"))
        .await;
    assert_eq!(items.attr("type"), Some("result"), "{}", xml(&items));

    world.phone.send(&format!("<iq type='get' id='di' to='{GW}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")).await;
    let info = world
        .phone
        .expect("disco#info", |e| e.attr("id") == Some("di"))
        .await;
    let text = xml(&info);
    assert!(
        text.contains("category='gateway'") && text.contains("type='xmpp'"),
        "{text}"
    );
    for feature in [
        "jabber:iq:register",
        "jabber:iq:gateway",
        "urn:xmpp:ping",
        "jabber:iq:version",
    ] {
        assert!(text.contains(feature), "missing {feature}: {text}");
    }
}

#[tokio::test]
async fn a_foreign_server_offering_only_anonymous_logins_is_not_authorized() {
    // An anonymous session would not be the registered account: the
    // gateway must refuse, never bind one (tokio-xmpp's own login falls
    // back to ANONYMOUS).
    init_tracing();
    let local = Prosody::start(&[("alice", LOCAL)]).await.expect("prosody");
    let options = Options {
        authentication: "anonymous",
        ..Options::default()
    };
    let foreign = Prosody::start_options(&[], &options)
        .await
        .expect("anonymous prosody");
    let db = local.dir.path().join("db");
    let config = pizzja_host::config::Config::parse(
        &local.gateway_toml_to(&foreign, &db, ""),
        std::path::Path::new("."),
    )
    .expect("valid configuration");
    let gw = Gateway::start(config).await.expect("gateway");
    let mut alice = Client::connect(&local, "alice", LOCAL, "Work")
        .await
        .expect("login");
    register_refused(&mut alice, ME, "any password", "not-authorized").await;
    gw.stop().await.expect("stops");
}
