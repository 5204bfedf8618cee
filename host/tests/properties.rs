//! Hostile input, generated (docs/behaviour.md sections 7 and 8): the parts
//! that take outside input never panic, and whatever actions a policy
//! returns, nothing leaves the account or comes from outside T.
//!
//! proptest runs a bounded number of cases per property in CI
//! (`PROPTEST_CASES` raises it); a failing case is shrunk and kept in
//! `proptest-regressions/`, which is committed and replayed first.

use jid::{BareJid, Jid};
use minidom::Element;
use pizzja_host::account::rules::{Current, Plan, Scope, Side, plan};
use pizzja_host::policy::bindings as wit;
use pizzja_host::xmpp::scram::{ScramClient, ScramHash};
use pizzja_host::xmpp::{NS_CLIENT, NS_COMPONENT, parse_stanza, rename_ns};
use proptest::prelude::*;

/// Text with the characters that matter to JIDs and XML, mixed with any.
fn tricky() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("@".to_string()),
        Just("/".to_string()),
        Just("\\".to_string()),
        Just("\\40".to_string()),
        Just("\\5c".to_string()),
        Just("evil.org".to_string()),
        Just("gw.example.org".to_string()),
        Just("alice@example.org".to_string()),
        Just("<".to_string()),
        Just("'".to_string()),
        Just("&amp;".to_string()),
        Just(" ".to_string()),
        "[a-z]{1,4}",
        any::<String>(),
    ];
    prop::collection::vec(pieces, 0..6).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn escaping_round_trips_and_leaves_no_character_a_localpart_forbids(s in any::<String>()) {
        let e = pizzja_sdk::escape(&s);
        for c in [' ', '"', '&', '\'', '/', ':', '<', '>', '@'] {
            prop_assert!(!e.contains(c), "{e:?} contains {c:?}");
        }
        prop_assert_eq!(pizzja_sdk::unescape(&e), s);
    }

    #[test]
    fn unescaping_any_text_never_panics(s in tricky()) {
        let _ = pizzja_sdk::unescape(&s);
    }

    #[test]
    fn a_policy_s_stanza_text_is_parsed_or_refused_never_a_panic(s in tricky()) {
        if let Ok(el) = parse_stanza(&s) {
            prop_assert_eq!(el.ns(), NS_CLIENT);
        }
    }

    #[test]
    fn stanzas_cross_between_the_links_namespaces_and_back_unchanged(
        names in prop::collection::vec("[a-z]{1,6}", 1..5),
        text in any::<String>(),
        foreign_ns in prop::bool::ANY,
    ) {
        let mut el = Element::bare("message", NS_COMPONENT);
        let mut child = Element::bare(names[0].as_str(), if foreign_ns { "urn:x" } else { NS_COMPONENT });
        for n in &names[1..] {
            child.append_child(Element::bare(n.as_str(), NS_COMPONENT));
        }
        child.append_text_node(text);
        el.append_child(child);
        let client = rename_ns(el.clone(), NS_COMPONENT, NS_CLIENT);
        prop_assert_eq!(client.ns(), NS_CLIENT);
        let back = rename_ns(client, NS_CLIENT, NS_COMPONENT);
        prop_assert_eq!(back, el);
    }

    #[test]
    fn any_server_first_message_is_parsed_or_refused_never_a_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        text in "(r=[a-zA-Z0-9+/=,]{0,40}|s=[a-zA-Z0-9+/=]{0,20}|i=-?[0-9]{0,12}|[a-z]=.{0,10})(,(r|s|i|m|x)=.{0,30}){0,4}",
    ) {
        let client = ScramClient::new(ScramHash::Sha256, "me");
        let _ = client.server_first(&bytes);
        let _ = client.server_first(text.as_bytes());
        let _ = client.verify(&bytes);
    }
}

// ---- the address rules against generated actions --------------------------

const GATEWAY: &str = "gw.example.org";

fn content() -> impl Strategy<Value = wit::Content> {
    prop_oneof![
        Just(wit::Content::Original),
        tricky().prop_map(wit::Content::Xml),
        (tricky(), tricky()).prop_map(|(to, from)| wit::Content::Xml(format!(
            "<message to='{}' from='{}'><body>x</body></message>",
            to.replace('\'', ""),
            from.replace('\'', "")
        ))),
        Just(wit::Content::Xml(
            "<iq type='get' id='q'><query xmlns='urn:q'/></iq>".into()
        )),
    ]
}

fn action() -> impl Strategy<Value = wit::Action> {
    let opt = || prop::option::of(tricky());
    prop_oneof![
        (opt(), opt(), opt(), content()).prop_map(
            |(to_resource, from_node, from_resource, content)| {
                wit::Action::SendLocal(wit::SendLocal {
                    to_resource,
                    from_node,
                    from_resource,
                    content,
                })
            }
        ),
        (
            prop_oneof![Just("Work".to_string()), tricky()],
            opt(),
            content(),
            prop::collection::vec((tricky(), tricky(), tricky(), tricky()), 0..3),
        )
            .prop_map(|(session, to, content, ties)| wit::Action::SendForeign(
                wit::SendForeign {
                    session,
                    to,
                    content,
                    ties: ties
                        .into_iter()
                        .map(|(namespace, request, reply, attribute)| wit::RequestTie {
                            namespace,
                            request,
                            reply,
                            attribute,
                        })
                        .collect(),
                }
            )),
        tricky().prop_map(wit::Action::OpenSession),
        tricky().prop_map(wit::Action::CloseSession),
        (tricky(), prop::option::of(tricky())).prop_map(|(condition, text)| {
            wit::Action::ReplyError(wit::StanzaError {
                type_: wit::ErrorType::Cancel,
                condition,
                text,
            })
        }),
    ]
}

fn current() -> impl Strategy<Value = Current> {
    prop_oneof![
        Just(Current {
            stanza: Some(parse(
                "<message xmlns='jabber:client' id='m' type='chat' from='alice@example.org/Work/phone' to='bob\\40remote.net@gw.example.org/x'><body>hi</body></message>",
            )),
            side: Side::Local {
                resource: Some("Work/phone".into())
            },
        }),
        Just(Current {
            stanza: Some(parse(
                "<iq xmlns='jabber:client' type='get' id='f' from='bob@remote.net/x' to='me@remote.net/Work'><query xmlns='urn:q'/></iq>",
            )),
            side: Side::Foreign {
                session: "Work".into()
            },
        }),
        Just(Current {
            stanza: None,
            side: Side::Internal
        }),
    ]
}

fn parse(xml: &str) -> Element {
    xml.parse().expect("test XML")
}

/// What may reach the local server or the foreign side from this plan.
fn check(
    plan: &Plan,
    local: &BareJid,
    foreign: &BareJid,
    sessions: &[&str],
    current: &Current,
) -> Result<(), TestCaseError> {
    match plan {
        Plan::Local { stanza, .. } => {
            let to = Jid::new(stanza.attr("to").unwrap_or(""))
                .map_err(|e| TestCaseError::fail(format!("to: {e}")))?;
            let from = Jid::new(stanza.attr("from").unwrap_or(""))
                .map_err(|e| TestCaseError::fail(format!("from: {e}")))?;
            prop_assert_eq!(to.to_bare(), local.clone(), "to leaves the account");
            prop_assert_eq!(from.domain().as_str(), GATEWAY, "from outside T");
        }
        Plan::Foreign {
            session,
            stanza,
            ties,
            ..
        } => {
            let own = sessions.contains(&session.as_str())
                || matches!(&current.side, Side::Foreign { session: s } if s == session);
            prop_assert!(own, "through session {session:?}, not the account's");
            prop_assert!(
                stanza.attr("from").is_none(),
                "a 'from' on the foreign side"
            );
            prop_assert!(ties.len() <= pizzja_host::account::rules::MAX_TIES);
            // Every tie kept is one the host can apply (it writes the
            // attribute a tie names).
            for tie in ties {
                let mut request = stanza.clone();
                let _ = pizzja_host::account::devices::tie_request(&mut request, tie, "pz-1");
            }
        }
        Plan::Open { jid, .. } => prop_assert_eq!(jid.to_bare(), foreign.clone()),
        Plan::Refused { answer, .. } => check(answer, local, foreign, sessions, current)?,
        Plan::Nothing | Plan::Log(_) | Plan::Close(_) => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn whatever_a_policy_returns_nothing_leaves_the_account_or_comes_from_outside_t(
        actions in prop::collection::vec(action(), 1..8),
        current in current(),
        open in prop::bool::ANY,
    ) {
        let local = BareJid::new("alice@example.org").expect("jid");
        let foreign = BareJid::new("me@remote.net").expect("jid");
        let sessions: &[&str] = if open { &["Work"] } else { &[] };
        let has = |a: &str| sessions.contains(&a);
        let scope = Scope { local: &local, foreign: &foreign, gateway: GATEWAY, has_session: &has };
        for action in actions {
            let planned = plan(action, &scope, &current);
            check(&planned, &local, &foreign, sessions, &current)?;
        }
    }
}
