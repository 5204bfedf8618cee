//! Every invariant of the address rules, with the actions a hostile policy
//! would try.

use super::*;
use crate::xmpp::{NS_CLIENT, NS_STANZAS};

const GATEWAY: &str = "gw.example.org";

fn jid(s: &str) -> BareJid {
    BareJid::new(s).expect("test JID")
}

fn with_scope<T>(sessions: &[&str], f: impl FnOnce(&Scope) -> T) -> T {
    let (local, foreign) = (jid("alice@example.org"), jid("me@remote.net"));
    let has = |a: &str| sessions.contains(&a);
    f(&Scope {
        local: &local,
        foreign: &foreign,
        gateway: GATEWAY,
        has_session: &has,
    })
}

fn from_controller(xml: &str) -> Current {
    let stanza: Element = xml.parse().expect("test XML");
    let resource = stanza
        .attr("from")
        .and_then(|f| Jid::new(f).ok())
        .and_then(|f| f.resource().map(|r| r.to_string()));
    Current {
        stanza: Some(stanza),
        side: Side::Local { resource },
    }
}

fn chat() -> Current {
    from_controller(
        "<message xmlns='jabber:client' id='m1' type='chat' from='alice@example.org/Work/phone' to='bob\\40remote.net@gw.example.org/x'><body>hi</body></message>",
    )
}

fn from_foreign(xml: &str) -> Current {
    Current {
        stanza: Some(xml.parse().expect("test XML")),
        side: Side::Foreign {
            session: "Work".into(),
        },
    }
}

fn send_local(to: Option<&str>, node: Option<&str>, res: Option<&str>) -> wit::Action {
    wit::Action::SendLocal(wit::SendLocal {
        to_resource: to.map(Into::into),
        from_node: node.map(Into::into),
        from_resource: res.map(Into::into),
        content: wit::Content::Original,
    })
}

fn send_foreign(session: &str, to: Option<&str>, content: wit::Content) -> wit::Action {
    wit::Action::SendForeign(wit::SendForeign {
        session: session.into(),
        to: to.map(Into::into),
        content,
        ties: Vec::new(),
    })
}

fn condition(el: &Element) -> (Option<String>, String) {
    let error = el.get_child("error", NS_CLIENT).expect("an error child");
    let condition = error
        .children()
        .find(|c| c.ns() == NS_STANZAS && c.name() != "text")
        .map(|c| c.name().to_string())
        .expect("a condition");
    (error.attr("type").map(Into::into), condition)
}

#[test]
fn a_foreign_stanza_goes_to_a_controller_from_its_gateway_address() {
    let current = from_foreign(
        "<message xmlns='jabber:client' from='bob@remote.net/x' to='me@remote.net/Work'><body>hi</body></message>",
    );
    let action = send_local(Some("Work/phone"), Some("bob\\40remote.net"), Some("x"));
    match with_scope(&["Work"], |s| plan(action, s, &current)) {
        Plan::Local {
            stanza,
            to_resource,
        } => {
            assert_eq!(stanza.attr("to"), Some("alice@example.org/Work/phone"));
            assert_eq!(
                stanza.attr("from"),
                Some("bob\\40remote.net@gw.example.org/x")
            );
            assert_eq!(to_resource.as_deref(), Some("Work/phone"));
            assert!(stanza.has_child("body", NS_CLIENT), "content kept");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_local_stanza_leaves_through_its_session_without_from_and_keeps_its_origin() {
    let current = chat();
    let action = send_foreign("Work", Some("bob@remote.net/x"), wit::Content::Original);
    match with_scope(&["Work"], |s| plan(action, s, &current)) {
        Plan::Foreign {
            session,
            stanza,
            origin,
            local_to,
            ..
        } => {
            assert_eq!(session, "Work");
            assert_eq!(stanza.attr("to"), Some("bob@remote.net/x"));
            assert_eq!(stanza.attr("from"), None, "the foreign server stamps it");
            assert_eq!(stanza.attr("id"), Some("m1"));
            assert_eq!(
                origin.and_then(|o| o.attr("id").map(str::to_string)),
                Some("m1".into())
            );
            assert_eq!(
                local_to.as_deref(),
                Some("bob\\40remote.net@gw.example.org/x")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_policy_written_stanza_loses_the_from_it_claims() {
    let current = chat();
    let xml = "<message from='eve@evil.org' to='x@y'><body>forged</body></message>";
    let action = send_foreign("Work", None, wit::Content::Xml(xml.into()));
    match with_scope(&["Work"], |s| plan(action, s, &current)) {
        Plan::Foreign { stanza, origin, .. } => {
            assert_eq!(stanza.attr("from"), None);
            assert_eq!(stanza.attr("to"), None, "the action's 'to' counts");
            assert!(origin.is_none(), "not the controller's stanza");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_a_session_open_for_this_account_can_be_used() {
    let current = chat();
    let action = send_foreign("Home", Some("bob@remote.net"), wit::Content::Original);
    match with_scope(&["Work"], |s| plan(action, s, &current)) {
        Plan::Refused { answer, .. } => match *answer {
            Plan::Local { stanza, .. } => {
                assert_eq!(stanza.attr("to"), Some("alice@example.org/Work/phone"));
                assert_eq!(
                    condition(&stanza),
                    (Some("wait".into()), "service-unavailable".into())
                );
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_address_that_is_not_a_jid_is_refused_with_jid_malformed() {
    let current = chat();
    let action = send_foreign("Work", Some("not a jid@@"), wit::Content::Original);
    match with_scope(&["Work"], |s| plan(action, s, &current)) {
        Plan::Refused { answer, .. } => match *answer {
            Plan::Local { stanza, .. } => {
                assert_eq!(
                    condition(&stanza),
                    (Some("modify".into()), "jid-malformed".into())
                )
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn unusable_xml_is_refused_and_answered_with_internal_server_error() {
    let current = chat();
    for xml in [
        "not xml",
        "<foo xmlns='urn:x'/>",
        "<message/><message/>",
        "<stream:features/>",
    ] {
        let action = send_foreign("Work", None, wit::Content::Xml(xml.into()));
        match with_scope(&["Work"], |s| plan(action, s, &current)) {
            Plan::Refused { answer, .. } => match *answer {
                Plan::Local { stanza, .. } => {
                    assert_eq!(condition(&stanza).1, "internal-server-error", "{xml}")
                }
                other => panic!("{xml}: {other:?}"),
            },
            other => panic!("{xml}: {other:?}"),
        }
        let action = wit::Action::SendLocal(wit::SendLocal {
            to_resource: None,
            from_node: None,
            from_resource: None,
            content: wit::Content::Xml(xml.into()),
        });
        assert!(
            matches!(
                with_scope(&["Work"], |s| plan(action, s, &current)),
                Plan::Refused { .. }
            ),
            "{xml}"
        );
    }
}

#[test]
fn the_original_of_an_event_without_a_stanza_cannot_be_sent() {
    let current = Current {
        stanza: None,
        side: Side::Internal,
    };
    let action = send_foreign("Work", None, wit::Content::Original);
    match with_scope(&["Work"], |s| plan(action, s, &current)) {
        Plan::Refused { answer, .. } => assert!(matches!(*answer, Plan::Nothing)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_stanza_for_the_local_server_is_always_to_the_account_and_from_under_t() {
    let current = chat();
    let xml = "<message to='bob@elsewhere.org' from='eve@evil.org'><body>x</body></message>";
    let action = wit::Action::SendLocal(wit::SendLocal {
        to_resource: None,
        from_node: None,
        from_resource: None,
        content: wit::Content::Xml(xml.into()),
    });
    match with_scope(&["Work"], |s| plan(action, s, &current)) {
        Plan::Local { stanza, .. } => {
            assert_eq!(stanza.attr("to"), Some("alice@example.org"));
            assert_eq!(stanza.attr("from"), Some(GATEWAY));
        }
        other => panic!("{other:?}"),
    }
}

/// Node and resource strings a hostile policy would try, to make the
/// joined address land outside the account or outside T.
const HOSTILE: &[&str] = &[
    "",
    "x",
    "x@evil.org",
    "x@evil.org/",
    "evil.org/",
    "@evil.org",
    "/",
    "a/b",
    "x@evil.org/@",
    "bob\\40remote.net",
    "\\",
    "é@évil.org/ü",
    "alice@example.org",
    "gw.example.org/x@evil.org",
    " x",
    "x\u{0}y",
];

#[test]
fn whatever_node_and_resources_a_policy_names_nothing_leaves_the_account_or_t() {
    let current = chat();
    let mut sent = 0;
    for to in HOSTILE.iter().map(|s| Some(*s)).chain([None]) {
        for node in HOSTILE.iter().map(|s| Some(*s)).chain([None]) {
            for res in HOSTILE.iter().map(|s| Some(*s)).chain([None]) {
                let action = send_local(to, node, res);
                match with_scope(&["Work"], |s| plan(action, s, &current)) {
                    Plan::Local { stanza, .. } => {
                        sent += 1;
                        let to = Jid::new(stanza.attr("to").expect("to")).expect("a JID");
                        let from = Jid::new(stanza.attr("from").expect("from")).expect("a JID");
                        assert_eq!(to.to_bare().as_str(), "alice@example.org", "{stanza:?}");
                        assert_eq!(from.domain().as_str(), GATEWAY, "{stanza:?}");
                    }
                    Plan::Refused { answer, .. } => {
                        assert!(matches!(*answer, Plan::Nothing), "dropped quietly")
                    }
                    other => panic!("{to:?} {node:?} {res:?}: {other:?}"),
                }
            }
        }
    }
    assert!(sent > 100, "the ordinary cases still go through ({sent})");
}

#[test]
fn a_session_is_always_the_account_s_own_foreign_jid() {
    let current = chat();
    for a in HOSTILE {
        let action = wit::Action::OpenSession((*a).into());
        match with_scope(&[], |s| plan(action, s, &current)) {
            Plan::Open { jid, resource } => {
                assert_eq!(jid.to_bare().as_str(), "me@remote.net", "{a:?}");
                assert_eq!(jid.resource().as_str(), resource);
            }
            Plan::Refused { answer, .. } => match *answer {
                Plan::Local { stanza, .. } => {
                    assert_eq!(condition(&stanza).1, "jid-malformed", "{a:?}")
                }
                other => panic!("{a:?}: {other:?}"),
            },
            other => panic!("{a:?}: {other:?}"),
        }
    }
}

#[test]
fn errors_go_back_the_way_the_stanza_came() {
    let error = || {
        wit::Action::ReplyError(wit::StanzaError {
            type_: wit::ErrorType::Cancel,
            condition: "forbidden".into(),
            text: Some("no".into()),
        })
    };
    match with_scope(&["Work"], |s| plan(error(), s, &chat())) {
        Plan::Local { stanza, .. } => {
            assert_eq!(stanza.attr("to"), Some("alice@example.org/Work/phone"));
            assert_eq!(
                stanza.attr("from"),
                Some("bob\\40remote.net@gw.example.org/x")
            );
            assert_eq!(stanza.attr("id"), Some("m1"));
            assert_eq!(
                condition(&stanza),
                (Some("cancel".into()), "forbidden".into())
            );
        }
        other => panic!("{other:?}"),
    }
    let foreign = from_foreign(
        "<iq xmlns='jabber:client' type='get' id='f1' from='bob@remote.net/x' to='me@remote.net/Work'><query xmlns='urn:q'/></iq>",
    );
    match with_scope(&["Work"], |s| plan(error(), s, &foreign)) {
        Plan::Foreign {
            session, stanza, ..
        } => {
            assert_eq!(session, "Work");
            assert_eq!(stanza.attr("to"), Some("bob@remote.net/x"));
            assert_eq!(stanza.attr("from"), None);
        }
        other => panic!("{other:?}"),
    }
    let internal = Current {
        stanza: None,
        side: Side::Internal,
    };
    assert!(matches!(
        with_scope(&["Work"], |s| plan(error(), s, &internal)),
        Plan::Nothing
    ));
    // An error is never answered with an error.
    let bounced = from_controller(
        "<message xmlns='jabber:client' type='error' from='alice@example.org/Work/phone' to='bob\\40remote.net@gw.example.org'/>",
    );
    assert!(matches!(
        with_scope(&["Work"], |s| plan(error(), s, &bounced)),
        Plan::Nothing
    ));
}

#[test]
fn an_answer_to_a_stanza_from_outside_the_account_goes_nowhere() {
    // Cannot happen through the router; the rule holds on its own.
    let stray = from_controller(
        "<message xmlns='jabber:client' from='mallory@example.org/x' to='bob\\40remote.net@gw.example.org'/>",
    );
    let action = wit::Action::ReplyError(wit::StanzaError {
        type_: wit::ErrorType::Cancel,
        condition: "forbidden".into(),
        text: None,
    });
    assert!(matches!(
        with_scope(&["Work"], |s| plan(action, s, &stray)),
        Plan::Nothing
    ));
}

#[test]
fn request_ties_naming_no_valid_attribute_are_dropped_and_at_most_four_kept() {
    let current = chat();
    let tie = |attribute: &str| wit::RequestTie {
        namespace: "urn:example".into(),
        request: "search".into(),
        reply: "hit".into(),
        attribute: attribute.into(),
    };
    let mut ties = vec![tie("bad name"), tie(""), tie("x:y")];
    ties.extend((0..6).map(|i| tie(&format!("tag{i}"))));
    let action = wit::Action::SendForeign(wit::SendForeign {
        session: "Work".into(),
        to: Some("bob@remote.net/x".into()),
        content: wit::Content::Original,
        ties,
    });
    match with_scope(&["Work"], |s| plan(action, s, &current)) {
        Plan::Foreign { ties, .. } => {
            let kept: Vec<&str> = ties.iter().map(|t| t.attribute.as_str()).collect();
            assert_eq!(kept, ["tag0", "tag1", "tag2", "tag3"]);
        }
        other => panic!("{other:?}"),
    }
}
