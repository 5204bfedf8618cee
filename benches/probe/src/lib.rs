//! A component for the policy micro-benchmark (`host/benches/policy.rs`):
//! how much of a decision is the component call itself. It exports, in its
//! own small world `pizzja:probe`, a function that does nothing, one that
//! takes a single buffer, and the default policy's decision with its
//! inputs and actions encoded as one buffer each (the `wire` module), as a
//! policy interface passing one value each way would. Built for
//! wasm32-wasip2 with the policies, on the default policy's allocator. Not
//! a policy.

// wit-bindgen's generated exports are `unsafe extern` functions.
#![allow(unsafe_code)]

/// The WIT types of `pizzja:policy/types` as one byte buffer (see
/// `wire_codec.rs`, which the host's benchmark includes too).
pub mod wire {
    use pizzja_sdk::{
        Action, Content, Controller, ErrorType, Event, Facts, ForeignStanza, IqRequest,
        LocalStanza, LogLevel, LogLine, RequestTie, SendForeign, SendLocal, Session, SessionChange,
        SessionState, Stanza, StanzaError, StanzaKind,
    };
    include!("wire_codec.rs");

    #[cfg(test)]
    mod tests {
        use super::*;

        fn stanza(kind: StanzaKind, xml: &str) -> Stanza {
            Stanza {
                kind,
                type_: "chat".into(),
                id: Some("m1".into()),
                from: Some("bob@remote.net/pc".into()),
                to: None,
                xml: xml.into(),
            }
        }

        fn facts() -> Facts {
            Facts {
                local_jid: "alice@example.org".into(),
                foreign_jid: "me@remote.net".into(),
                gateway: "gw.example.org".into(),
                controllers: vec![Controller {
                    resource: "Work/phone".into(),
                    show: Some("away".into()),
                    status: None,
                    priority: -5,
                    online_since_ms: 1,
                    last_active_ms: u64::MAX,
                }],
                sessions: vec![Session {
                    resource: "Work".into(),
                    state: SessionState::Reconnecting,
                }],
                now_ms: 40,
            }
        }

        fn events() -> Vec<Event> {
            vec![
                Event::Local(LocalStanza {
                    stanza: stanza(StanzaKind::Iq, "<iq/>"),
                    sender_resource: Some("Work/phone".into()),
                    answers: Some(IqRequest {
                        requester: "Work".into(),
                        peer: None,
                        payload_ns: Some("jabber:iq:roster".into()),
                    }),
                }),
                Event::Foreign(ForeignStanza {
                    session: "Work".into(),
                    stanza: stanza(StanzaKind::Message, "<message>é ✓</message>"),
                    answers: None,
                }),
                Event::Session(SessionChange {
                    session: "Home".into(),
                    state: SessionState::Failed,
                    reason: Some("not-authorized".into()),
                }),
            ]
        }

        fn actions() -> Vec<Action> {
            vec![
                Action::SendForeign(SendForeign {
                    session: "Work".into(),
                    to: Some("bob@remote.net".into()),
                    content: Content::Original,
                    ties: vec![RequestTie {
                        namespace: "urn:example".into(),
                        request: "search".into(),
                        reply: "hit".into(),
                        attribute: "tag".into(),
                    }],
                }),
                Action::SendLocal(SendLocal {
                    to_resource: None,
                    from_node: Some("bob\\40remote.net".into()),
                    from_resource: Some("pc".into()),
                    content: Content::Xml("<message/>".into()),
                }),
                Action::OpenSession("Home".into()),
                Action::CloseSession("Work".into()),
                Action::ReplyError(StanzaError {
                    type_: ErrorType::Continue,
                    condition: "service-unavailable".into(),
                    text: None,
                }),
                Action::Log(LogLine {
                    level: LogLevel::Warn,
                    message: String::new(),
                }),
            ]
        }

        #[test]
        fn inputs_and_actions_come_back_as_they_went() {
            for event in events() {
                let mut out = Vec::new();
                encode_input(&event, &facts(), &mut out);
                assert_eq!(decode_input(&out), Ok((event, facts())));
            }
            let mut out = Vec::new();
            encode(&actions(), &mut out);
            assert_eq!(decode::<Vec<Action>>(&out), Ok(actions()));
        }

        #[test]
        fn every_cut_short_buffer_is_an_error_not_a_panic() {
            let mut out = Vec::new();
            encode(&actions(), &mut out);
            for n in 0..out.len() {
                assert!(decode::<Vec<Action>>(&out[..n]).is_err(), "{n} bytes");
            }
            let mut input = Vec::new();
            encode_input(&events()[0], &facts(), &mut input);
            for n in 0..input.len() {
                assert!(decode_input(&input[..n]).is_err(), "{n} bytes");
            }
        }

        #[test]
        fn bad_cases_extra_bytes_and_lying_counts_are_refused() {
            assert_eq!(
                decode::<Vec<Action>>(&[1, 0, 0, 0, 9]),
                Err(WireError::BadCase("Action", 9))
            );
            let mut out = Vec::new();
            encode(&actions(), &mut out);
            out.push(0);
            assert_eq!(decode::<Vec<Action>>(&out), Err(WireError::Trailing));
            // A count of four billion items in five bytes.
            assert_eq!(
                decode::<Vec<Action>>(&[0xff, 0xff, 0xff, 0xff, 0]),
                Err(WireError::Truncated)
            );
            assert_eq!(
                decode::<String>(&[2, 0, 0, 0, 0xff, 0xfe]),
                Err(WireError::NotUtf8)
            );
        }
    }
}

wit_bindgen::generate!({ path: "wit", world: "probe" });

struct Probe;

impl Guest for Probe {
    fn nothing() {}

    fn bytes(input: Vec<u8>) -> Vec<u8> {
        input[..input.len().min(64)].to_vec()
    }

    fn decide(input: Vec<u8>) -> Vec<u8> {
        use pizzja_sdk::Policy as _;
        let Ok((event, facts)) = wire::decode_input(&input) else {
            return Vec::new();
        };
        let actions = POLICY.with(|p| {
            p.borrow_mut()
                .get_or_insert_with(|| {
                    pizzja_policy_default::DefaultPolicy::new(&pizzja_sdk::Config::default())
                        .expect("the default configuration is valid")
                })
                .decide(&event, &facts)
        });
        let mut out = Vec::new();
        wire::encode(&actions, &mut out);
        out
    }
}

thread_local! {
    static POLICY: std::cell::RefCell<Option<pizzja_policy_default::DefaultPolicy>> =
        const { std::cell::RefCell::new(None) };
}

export!(Probe);

#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOC: pizzja_sdk::SmallAlloc = pizzja_sdk::SmallAlloc::new();
