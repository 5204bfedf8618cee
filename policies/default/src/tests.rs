//! One event in, the expected actions out; each test is a sentence of
//! docs/behaviour.md.

use super::*;
use pizzja_sdk::{Content, Controller, IqRequest, SendForeign, SendLocal, Session, Stanza};

const T: &str = "gw.example.org";
const L: &str = "alice@example.org";
const F: &str = "me@remote.net";

fn controller(resource: &str, last_active_ms: u64) -> Controller {
    Controller {
        resource: resource.into(),
        show: None,
        status: None,
        priority: 0,
        online_since_ms: 1,
        last_active_ms,
    }
}

fn facts(controllers: &[&str], sessions: &[(&str, SessionState)]) -> Facts {
    Facts {
        local_jid: L.into(),
        foreign_jid: F.into(),
        gateway: T.into(),
        // The host lists controllers most recently active first.
        controllers: controllers
            .iter()
            .enumerate()
            .map(|(i, r)| controller(r, 1000 - i as u64))
            .collect(),
        sessions: sessions
            .iter()
            .map(|(r, state)| Session {
                resource: (*r).into(),
                state: *state,
            })
            .collect(),
        now_ms: 2000,
    }
}

fn stanza(kind: StanzaKind, type_: &str, from: Option<&str>, to: Option<&str>) -> Stanza {
    Stanza {
        kind,
        type_: type_.into(),
        id: Some("id1".into()),
        from: from.map(Into::into),
        to: to.map(Into::into),
        xml: String::new(),
    }
}

fn local(kind: StanzaKind, type_: &str, resource: Option<&str>, to: &str) -> Event {
    let from = resource.map_or(L.to_string(), |r| format!("{L}/{r}"));
    Event::Local(LocalStanza {
        stanza: stanza(kind, type_, Some(&from), Some(to)),
        sender_resource: resource.map(Into::into),
        answers: None,
    })
}

fn foreign(session: &str, kind: StanzaKind, type_: &str, from: Option<&str>) -> Event {
    Event::Foreign(ForeignStanza {
        session: session.into(),
        stanza: stanza(kind, type_, from, Some(&format!("{F}/{session}"))),
        answers: None,
    })
}

fn decide(event: &Event, facts: &Facts) -> Vec<Action> {
    policy().decide(event, facts)
}

fn policy() -> DefaultPolicy {
    DefaultPolicy::new(&Config::default()).expect("default config is valid")
}

fn forward_foreign(session: &str, to: Option<&str>) -> Action {
    Action::SendForeign(SendForeign {
        session: session.into(),
        to: to.map(Into::into),
        content: Content::Original,
        ties: Vec::new(),
    })
}

fn forward_local(to: &str, node: &str, res: Option<&str>) -> Action {
    Action::SendLocal(SendLocal {
        to_resource: Some(to.into()),
        from_node: Some(node.into()),
        from_resource: res.map(Into::into),
        content: Content::Original,
    })
}

fn error_condition(actions: &[Action]) -> Option<&str> {
    match actions {
        [Action::ReplyError(e)] => Some(e.condition.as_str()),
        _ => None,
    }
}

const WORK: (&str, SessionState) = ("Work", SessionState::Online);

// Section 3: sessions follow local presence.

#[test]
fn first_controller_of_a_opens_the_foreign_session() {
    let f = facts(&["Work/phone"], &[]);
    let actions = decide(&local(StanzaKind::Presence, "", Some("Work/phone"), T), &f);
    assert_eq!(actions, vec![Action::OpenSession("Work".into())]);
}

#[test]
fn second_controller_of_a_reuses_the_open_session() {
    let f = facts(&["Work/laptop", "Work/phone"], &[WORK]);
    let actions = decide(&local(StanzaKind::Presence, "", Some("Work/laptop"), T), &f);
    assert_eq!(actions, vec![]);
}

#[test]
fn a_different_a_opens_a_second_session() {
    let f = facts(&["Home/desk", "Work/phone"], &[WORK]);
    let actions = decide(&local(StanzaKind::Presence, "", Some("Home/desk"), T), &f);
    assert_eq!(actions, vec![Action::OpenSession("Home".into())]);
}

#[test]
fn a_resource_without_slash_is_a_with_empty_b() {
    let f = facts(&["Work"], &[]);
    let actions = decide(&local(StanzaKind::Presence, "", Some("Work"), T), &f);
    assert_eq!(actions, vec![Action::OpenSession("Work".into())]);
}

#[test]
fn a_failed_session_is_retried_when_a_controller_sends_presence_again() {
    let f = facts(&["Work/phone"], &[("Work", SessionState::Failed)]);
    let actions = decide(&local(StanzaKind::Presence, "", Some("Work/phone"), T), &f);
    assert_eq!(actions, vec![Action::OpenSession("Work".into())]);
}

#[test]
fn session_stays_while_another_controller_of_a_is_online() {
    let f = facts(&["Work/laptop"], &[WORK]);
    let actions = decide(
        &local(StanzaKind::Presence, "unavailable", Some("Work/phone"), T),
        &f,
    );
    assert_eq!(actions, vec![]);
}

#[test]
fn last_controller_leaving_closes_the_session() {
    let f = facts(&["Home/desk"], &[WORK, ("Home", SessionState::Online)]);
    let actions = decide(
        &local(StanzaKind::Presence, "unavailable", Some("Work/phone"), T),
        &f,
    );
    assert_eq!(actions, vec![Action::CloseSession("Work".into())]);
}

#[test]
fn probe_to_the_gateway_is_answered_with_its_availability() {
    let f = facts(&[], &[]);
    let actions = decide(&local(StanzaKind::Presence, "probe", None, T), &f);
    match actions.as_slice() {
        [Action::SendLocal(s)] => {
            assert_eq!(
                (s.to_resource.as_deref(), s.from_node.as_deref()),
                (None, None)
            );
            assert!(
                matches!(&s.content, Content::Xml(x) if x.starts_with("<presence") && !x.contains("type="))
            );
        }
        other => panic!("expected one presence, got {other:?}"),
    }
}

#[test]
fn local_presence_broadcast_to_a_bare_contact_stays_local() {
    // Only presence to esc(F)@T becomes F/A's own presence; the server's
    // broadcast to a contact (always to the bare JID) is not copied.
    let f = facts(&["Work/phone"], &[WORK]);
    let to = format!("{}@{T}", escape("bob@remote.net"));
    for type_ in ["", "unavailable"] {
        let actions = decide(
            &local(StanzaKind::Presence, type_, Some("Work/phone"), &to),
            &f,
        );
        assert!(
            actions.iter().all(|a| matches!(a, Action::Log(_))),
            "{type_:?}: {actions:?}"
        );
    }
}

#[test]
fn directed_presence_to_a_full_contact_jid_is_forwarded() {
    let f = facts(&["Work/phone"], &[WORK]);
    let to = format!("{}@{T}/pc", escape("bob@remote.net"));
    let actions = decide(
        &local(StanzaKind::Presence, "", Some("Work/phone"), &to),
        &f,
    );
    assert_eq!(
        actions,
        vec![forward_foreign("Work", Some("bob@remote.net/pc"))]
    );
}

// Section 4: local to foreign.

#[test]
fn message_to_escaped_jid_leaves_through_the_senders_session() {
    let f = facts(
        &["Work/phone", "Home/desk"],
        &[WORK, ("Home", SessionState::Online)],
    );
    let to = format!("{}@{T}", escape("bob@remote.net"));
    let actions = decide(
        &local(StanzaKind::Message, "chat", Some("Home/desk"), &to),
        &f,
    );
    assert_eq!(
        actions,
        vec![forward_foreign("Home", Some("bob@remote.net"))]
    );
}

#[test]
fn the_resource_of_the_gateway_jid_is_the_contacts_resource() {
    let f = facts(&["Work/phone"], &[WORK]);
    let to = format!("{}@{T}/mobile", escape("bob@remote.net"));
    let actions = decide(
        &local(StanzaKind::Message, "chat", Some("Work/phone"), &to),
        &f,
    );
    assert_eq!(
        actions,
        vec![forward_foreign("Work", Some("bob@remote.net/mobile"))]
    );
}

#[test]
fn a_domain_jid_is_reached_through_its_escaped_name() {
    let f = facts(&["Work/phone"], &[WORK]);
    let to = format!("remote.net@{T}");
    let actions = decide(&local(StanzaKind::Iq, "get", Some("Work/phone"), &to), &f);
    assert_eq!(actions, vec![forward_foreign("Work", Some("remote.net"))]);
}

#[test]
fn presence_to_the_foreign_account_sets_the_sessions_own_presence() {
    let f = facts(&["Work/phone"], &[WORK]);
    let to = format!("{}@{T}", escape(F));
    let actions = decide(
        &local(StanzaKind::Presence, "", Some("Work/phone"), &to),
        &f,
    );
    assert_eq!(actions, vec![forward_foreign("Work", None)]);
}

#[test]
fn subscription_requests_stamped_with_the_bare_jid_use_the_latest_controller() {
    let f = facts(
        &["Home/desk", "Work/phone"],
        &[WORK, ("Home", SessionState::Online)],
    );
    let to = format!("{}@{T}", escape("bob@remote.net"));
    let actions = decide(&local(StanzaKind::Presence, "subscribe", None, &to), &f);
    assert_eq!(
        actions,
        vec![forward_foreign("Home", Some("bob@remote.net"))]
    );
}

#[test]
fn sender_not_online_at_the_gateway_gets_service_unavailable() {
    let f = facts(&["Work/phone"], &[WORK]);
    let to = format!("{}@{T}", escape("bob@remote.net"));
    let actions = decide(
        &local(StanzaKind::Message, "chat", Some("Work/tablet"), &to),
        &f,
    );
    assert_eq!(error_condition(&actions), Some("service-unavailable"));
    let Action::ReplyError(e) = &actions[0] else {
        unreachable!()
    };
    assert!(
        e.text
            .as_deref()
            .is_some_and(|t| t.contains("send presence to")),
        "{e:?}"
    );
}

#[test]
fn a_node_that_does_not_unescape_to_a_jid_is_jid_malformed() {
    let f = facts(&["Work/phone"], &[WORK]);
    for node in [
        r"bob\40",
        r"\40remote.net",
        r"a\40b\40c",
        r"bob\40remote.net\2fres",
    ] {
        let to = format!("{node}@{T}");
        let actions = decide(
            &local(StanzaKind::Message, "chat", Some("Work/phone"), &to),
            &f,
        );
        assert_eq!(error_condition(&actions), Some("jid-malformed"), "{node}");
    }
}

#[test]
fn stanzas_for_a_failed_session_are_refused_with_an_error() {
    let f = facts(&["Work/phone"], &[("Work", SessionState::Failed)]);
    let to = format!("{}@{T}", escape("bob@remote.net"));
    let actions = decide(
        &local(StanzaKind::Message, "chat", Some("Work/phone"), &to),
        &f,
    );
    assert_eq!(error_condition(&actions), Some("service-unavailable"));
}

#[test]
fn stanzas_for_a_session_still_logging_in_are_forwarded_for_the_host_to_queue() {
    let f = facts(&["Work/phone"], &[("Work", SessionState::Connecting)]);
    let to = format!("{}@{T}", escape("bob@remote.net"));
    let actions = decide(
        &local(StanzaKind::Message, "chat", Some("Work/phone"), &to),
        &f,
    );
    assert_eq!(
        actions,
        vec![forward_foreign("Work", Some("bob@remote.net"))]
    );
}

#[test]
fn a_controllers_answer_to_a_foreign_request_goes_back_to_the_asker() {
    let f = facts(&["Work/phone"], &[WORK]);
    let mut event = local(
        StanzaKind::Iq,
        "result",
        Some("Work/phone"),
        &format!("{}@{T}/pc", escape("bob@remote.net")),
    );
    let Event::Local(l) = &mut event else {
        unreachable!()
    };
    l.answers = Some(IqRequest {
        requester: "Work".into(),
        peer: Some("bob@remote.net/pc".into()),
        payload_ns: Some("jabber:iq:version".into()),
    });
    assert_eq!(
        decide(&event, &f),
        vec![forward_foreign("Work", Some("bob@remote.net/pc"))]
    );
}

#[test]
fn controllers_answers_to_roster_push_copies_are_not_sent_twice() {
    let f = facts(&["Work/phone"], &[WORK]);
    let mut event = local(
        StanzaKind::Iq,
        "result",
        Some("Work/phone"),
        &format!("{}@{T}", escape(F)),
    );
    let Event::Local(l) = &mut event else {
        unreachable!()
    };
    l.answers = Some(IqRequest {
        requester: "Work".into(),
        peer: None,
        payload_ns: Some("jabber:iq:roster".into()),
    });
    assert!(
        decide(&event, &f)
            .iter()
            .all(|a| matches!(a, Action::Log(_)))
    );
}

// Section 5: foreign to local.

#[test]
fn messages_from_a_contact_reach_every_controller_of_a_only() {
    let f = facts(
        &["Work/phone", "Home/desk", "Work/laptop"],
        &[WORK, ("Home", SessionState::Online)],
    );
    let actions = decide(
        &foreign(
            "Work",
            StanzaKind::Message,
            "chat",
            Some("bob@remote.net/pc"),
        ),
        &f,
    );
    let node = escape("bob@remote.net");
    assert_eq!(
        actions,
        vec![
            forward_local("Work/phone", &node, Some("pc")),
            forward_local("Work/laptop", &node, Some("pc"))
        ]
    );
}

#[test]
fn presence_from_a_domain_jid_is_escaped_the_same_way() {
    let f = facts(&["Work/phone"], &[WORK]);
    let actions = decide(
        &foreign("Work", StanzaKind::Presence, "", Some("remote.net")),
        &f,
    );
    assert_eq!(
        actions,
        vec![forward_local("Work/phone", "remote.net", None)]
    );
}

#[test]
fn the_foreign_accounts_own_jid_escapes_like_any_other() {
    let f = facts(&["Work/phone"], &[WORK]);
    let actions = decide(
        &foreign("Work", StanzaKind::Presence, "", Some("me@remote.net/Home")),
        &f,
    );
    assert_eq!(
        actions,
        vec![forward_local(
            "Work/phone",
            r"me\40remote.net",
            Some("Home")
        )]
    );
}

#[test]
fn an_iq_answer_goes_only_to_the_controller_that_asked() {
    let f = facts(&["Work/phone", "Work/laptop"], &[WORK]);
    let mut event = foreign("Work", StanzaKind::Iq, "result", Some("bob@remote.net/pc"));
    let Event::Foreign(fs) = &mut event else {
        unreachable!()
    };
    fs.answers = Some(IqRequest {
        requester: "Work/laptop".into(),
        peer: None,
        payload_ns: None,
    });
    assert_eq!(
        decide(&event, &f),
        vec![forward_local(
            "Work/laptop",
            r"bob\40remote.net",
            Some("pc")
        )]
    );
}

#[test]
fn an_archive_query_s_results_go_only_to_the_controller_that_asked() {
    let f = facts(&["Work/phone", "Work/laptop"], &[WORK]);
    let mut event = foreign("Work", StanzaKind::Message, "", Some(F));
    let Event::Foreign(fs) = &mut event else {
        unreachable!()
    };
    fs.answers = Some(IqRequest {
        requester: "Work/laptop".into(),
        peer: None,
        payload_ns: Some("urn:xmpp:mam:2".into()),
    });
    assert_eq!(
        decide(&event, &f),
        vec![forward_local("Work/laptop", r"me\40remote.net", None)]
    );
}

#[test]
fn an_iq_answer_matching_no_request_is_dropped() {
    let f = facts(&["Work/phone"], &[WORK]);
    let actions = decide(
        &foreign("Work", StanzaKind::Iq, "result", Some("bob@remote.net/pc")),
        &f,
    );
    assert!(
        actions.iter().all(|a| matches!(a, Action::Log(_))),
        "{actions:?}"
    );
}

#[test]
fn a_foreign_request_goes_to_the_most_recently_active_controller() {
    let f = facts(&["Work/laptop", "Work/phone"], &[WORK]);
    let actions = decide(
        &foreign("Work", StanzaKind::Iq, "get", Some("bob@remote.net/pc")),
        &f,
    );
    assert_eq!(
        actions,
        vec![forward_local(
            "Work/laptop",
            r"bob\40remote.net",
            Some("pc")
        )]
    );
}

#[test]
fn a_foreign_request_with_nobody_online_is_service_unavailable() {
    let f = facts(&["Home/desk"], &[WORK]);
    let actions = decide(
        &foreign("Work", StanzaKind::Iq, "get", Some("bob@remote.net/pc")),
        &f,
    );
    assert_eq!(error_condition(&actions), Some("service-unavailable"));
}

#[test]
fn roster_pushes_are_acknowledged_and_copied_to_every_controller() {
    let f = facts(&["Work/phone", "Work/laptop"], &[WORK]);
    let mut event = foreign("Work", StanzaKind::Iq, "set", None);
    let Event::Foreign(fs) = &mut event else {
        unreachable!()
    };
    fs.stanza.xml = "<iq type='set' id='push1'><query xmlns='jabber:iq:roster'/></iq>".into();
    fs.stanza.id = Some("push1".into());
    let actions = decide(&event, &f);
    assert_eq!(actions.len(), 3, "{actions:?}");
    assert!(
        matches!(&actions[0], Action::SendForeign(SendForeign { to: None, content: Content::Xml(x), .. })
        if x.contains("type='result'") && x.contains("id='push1'"))
    );
    assert_eq!(
        actions[1..],
        [
            forward_local("Work/phone", r"me\40remote.net", None),
            forward_local("Work/laptop", r"me\40remote.net", None)
        ]
    );
}

// Section 9 and the session lifecycle.

#[test]
fn an_online_session_sends_initial_presence_with_priority_zero() {
    let f = facts(&["Work/phone"], &[WORK]);
    let event = Event::Session(SessionChange {
        session: "Work".into(),
        state: SessionState::Online,
        reason: None,
    });
    match decide(&event, &f).as_slice() {
        [
            Action::SendForeign(SendForeign {
                session,
                to: None,
                content: Content::Xml(x),
                ..
            }),
        ] => {
            assert_eq!(session, "Work");
            assert!(
                x.contains("<priority>0</priority>") && !x.contains("type="),
                "{x}"
            );
        }
        other => panic!("expected initial presence, got {other:?}"),
    }
}

#[test]
fn initial_presence_can_be_turned_off() {
    let config = Config::from_pairs(vec![("initial_presence".into(), "none".into())]);
    let mut p = DefaultPolicy::new(&config).expect("valid");
    let event = Event::Session(SessionChange {
        session: "Work".into(),
        state: SessionState::Online,
        reason: None,
    });
    assert_eq!(p.decide(&event, &facts(&["Work/phone"], &[WORK])), vec![]);
}

#[test]
fn an_unknown_initial_presence_setting_refuses_the_module() {
    let config = Config::from_pairs(vec![("initial_presence".into(), "sometimes".into())]);
    let err = DefaultPolicy::new(&config).err().expect("refused");
    assert!(err.contains("initial_presence"), "{err}");
}

#[test]
fn controllers_are_told_why_a_login_failed() {
    let f = facts(
        &["Work/phone", "Home/desk"],
        &[("Work", SessionState::Failed)],
    );
    let event = Event::Session(SessionChange {
        session: "Work".into(),
        state: SessionState::Failed,
        reason: Some("not-authorized".into()),
    });
    match decide(&event, &f).as_slice() {
        [Action::SendLocal(s)] => {
            assert_eq!(
                (s.to_resource.as_deref(), s.from_node.as_deref()),
                (Some("Work/phone"), None)
            );
            assert!(matches!(&s.content, Content::Xml(x) if x.contains("not-authorized")));
        }
        other => panic!("expected one message to Work/phone, got {other:?}"),
    }
}

// Section 7: controllers see F/A go and come back when a gap shows.

fn session_change(state: SessionState, reason: Option<&str>) -> Event {
    Event::Session(SessionChange {
        session: "Work".into(),
        state,
        reason: reason.map(Into::into),
    })
}

fn presences_to_controllers(actions: &[Action]) -> Vec<(String, String)> {
    actions
        .iter()
        .map(|a| match a {
            Action::SendLocal(SendLocal {
                to_resource: Some(to),
                from_node: Some(node),
                from_resource: Some(res),
                content: Content::Xml(x),
            }) => {
                assert_eq!(
                    (node.as_str(), res.as_str()),
                    ("me\\40remote.net", "Work"),
                    "from F/A's own gateway JID"
                );
                (to.clone(), x.clone())
            }
            other => panic!("expected presence to a controller, got {other:?}"),
        })
        .collect()
}

#[test]
fn a_gap_that_shows_takes_f_a_offline_for_its_controllers_with_the_reason() {
    let f = facts(
        &["Work/phone", "Work/laptop", "Home/desk"],
        &[("Work", SessionState::Reconnecting)],
    );
    let event = session_change(SessionState::Reconnecting, Some("connection refused"));
    let sent = presences_to_controllers(&decide(&event, &f));
    let to: Vec<&str> = sent.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(to, ["Work/phone", "Work/laptop"], "only A's controllers");
    for (_, x) in &sent {
        assert!(x.contains("type='unavailable'"), "{x}");
        assert!(x.contains("<status>connection refused</status>"), "{x}");
    }
}

#[test]
fn back_after_a_gap_f_a_is_available_again_and_its_presence_is_the_host_s_to_restore() {
    let f = facts(&["Work/phone"], &[WORK]);
    let event = session_change(SessionState::Online, Some("bound again"));
    let sent = presences_to_controllers(&decide(&event, &f));
    assert_eq!(sent.len(), 1, "no initial presence: the host restored it");
    assert!(!sent[0].1.contains("type="), "{}", sent[0].1);
}
