//! Single writer: of the controllers of a foreign resource, only the one
//! that came online last may send through it (see README.md).

use pizzja_policy_default::DefaultPolicy;
use pizzja_sdk::{Action, Config, ErrorType, Event, Facts, Policy, split_resource};

/// The default policy with one writer per foreign resource.
pub struct SingleWriter {
    inner: DefaultPolicy,
}

/// The controller of `a` that came online most recently.
fn writer<'f>(facts: &'f Facts, a: &'f str) -> Option<&'f str> {
    facts
        .controllers_of(a)
        .max_by_key(|c| c.online_since_ms)
        .map(|c| c.resource.as_str())
}

impl Policy for SingleWriter {
    fn new(config: &Config) -> Result<Self, String> {
        Ok(SingleWriter {
            inner: DefaultPolicy::new(config)?,
        })
    }

    fn decide(&mut self, event: &Event, facts: &Facts) -> Vec<Action> {
        if let Event::Local(l) = event {
            let to_contact = l.stanza.to_parts().is_some_and(|to| to.node.is_some());
            // Answers to requests from the foreign side are not "sending".
            if let (true, Some(resource), None) = (to_contact, &l.sender_resource, &l.answers) {
                let a = split_resource(resource).0;
                if let Some(w) = writer(facts, a).filter(|w| *w != resource) {
                    return vec![Action::reply_error(
                        ErrorType::Cancel,
                        "not-allowed",
                        format!("only {w} may send as {a} now"),
                    )];
                }
            }
        }
        self.inner.decide(event, facts)
    }
}

pizzja_sdk::export_policy!(SingleWriter);

#[cfg(test)]
mod tests {
    use super::*;
    use pizzja_sdk::{Controller, LocalStanza, Session, SessionState, Stanza, StanzaKind};

    fn controller(resource: &str, online_since_ms: u64) -> Controller {
        Controller {
            resource: resource.into(),
            show: None,
            status: None,
            priority: 0,
            online_since_ms,
            last_active_ms: 5,
        }
    }

    fn facts() -> Facts {
        Facts {
            local_jid: "alice@example.org".into(),
            foreign_jid: "me@remote.net".into(),
            gateway: "gw.example.org".into(),
            // The phone spoke last, but the laptop came online last.
            controllers: vec![controller("Work/phone", 1), controller("Work/laptop", 2)],
            sessions: vec![Session {
                resource: "Work".into(),
                state: SessionState::Online,
            }],
            now_ms: 10,
        }
    }

    fn message_from(resource: &str) -> Event {
        Event::Local(LocalStanza {
            stanza: Stanza {
                kind: StanzaKind::Message,
                type_: "chat".into(),
                id: None,
                from: Some(format!("alice@example.org/{resource}")),
                to: Some(r"bob\40remote.net@gw.example.org".into()),
                xml: String::new(),
            },
            sender_resource: Some(resource.into()),
            answers: None,
        })
    }

    #[test]
    fn the_latest_controller_may_send() {
        let mut p = SingleWriter::new(&Config::default()).expect("valid");
        assert!(matches!(
            p.decide(&message_from("Work/laptop"), &facts()).as_slice(),
            [Action::SendForeign(_)]
        ));
    }

    #[test]
    fn the_others_are_told_who_may() {
        let mut p = SingleWriter::new(&Config::default()).expect("valid");
        match p.decide(&message_from("Work/phone"), &facts()).as_slice() {
            [Action::ReplyError(e)] => {
                assert_eq!(e.condition, "not-allowed");
                assert!(e.text.as_deref().is_some_and(|t| t.contains("Work/laptop")));
            }
            other => panic!("expected not-allowed, got {other:?}"),
        }
    }
}
