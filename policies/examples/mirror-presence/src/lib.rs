//! Mirror presence: a controller's presence to the gateway becomes the
//! foreign resource's presence (see README.md).

use pizzja_policy_default::DefaultPolicy;
use pizzja_sdk::{
    Action, Config, Controller, Event, Facts, Policy, SessionState, split_resource, xml,
};

/// The default policy, mirroring local presence to the foreign side.
pub struct MirrorPresence {
    inner: DefaultPolicy,
}

fn presence_of(c: &Controller) -> String {
    xml::presence("", c.show.as_deref(), c.status.as_deref(), Some(c.priority))
}

impl Policy for MirrorPresence {
    fn new(config: &Config) -> Result<Self, String> {
        // Our own presence replaces the default's plain initial presence.
        let mut pairs: Vec<(String, String)> =
            config.pairs().map(|(k, v)| (k.into(), v.into())).collect();
        pairs.retain(|(k, _)| k != "initial_presence");
        pairs.push(("initial_presence".into(), "none".into()));
        Ok(MirrorPresence {
            inner: DefaultPolicy::new(&Config::from_pairs(pairs))?,
        })
    }

    fn decide(&mut self, event: &Event, facts: &Facts) -> Vec<Action> {
        let mut actions = self.inner.decide(event, facts);
        let mirrored = match event {
            // A controller's presence to T itself.
            Event::Local(l) if l.stanza.to_parts().is_some_and(|to| to.node.is_none()) => {
                let Some(resource) = &l.sender_resource else {
                    return actions;
                };
                let a = split_resource(resource).0;
                let open = facts
                    .session(a)
                    .is_some_and(|s| s.state != SessionState::Failed);
                match l.stanza.type_.as_str() {
                    "" if open => facts.controller(resource).map(|c| (a, presence_of(c))),
                    // Someone else of A takes over, if anyone is left.
                    "unavailable" if open => {
                        facts.controllers_of(a).next().map(|c| (a, presence_of(c)))
                    }
                    _ => None,
                }
            }
            Event::Session(s) if s.state == SessionState::Online => facts
                .controllers_of(&s.session)
                .next()
                .map(|c| (s.session.as_str(), presence_of(c))),
            _ => None,
        };
        if let Some((a, presence)) = mirrored {
            actions.push(Action::send_foreign_xml(a, None, presence));
        }
        actions
    }
}

pizzja_sdk::export_policy!(MirrorPresence);

#[cfg(test)]
mod tests {
    use super::*;
    use pizzja_sdk::{LocalStanza, Session, SessionChange, Stanza, StanzaKind};

    fn facts(show: Option<&str>) -> Facts {
        Facts {
            local_jid: "alice@example.org".into(),
            foreign_jid: "me@remote.net".into(),
            gateway: "gw.example.org".into(),
            controllers: vec![Controller {
                resource: "Work/phone".into(),
                show: show.map(Into::into),
                status: Some("on the train".into()),
                priority: 5,
                online_since_ms: 1,
                last_active_ms: 2,
            }],
            sessions: vec![Session {
                resource: "Work".into(),
                state: SessionState::Online,
            }],
            now_ms: 3,
        }
    }

    fn mirrored(actions: &[Action]) -> Option<&str> {
        actions.iter().find_map(|a| match a {
            Action::SendForeign(s) if s.to.is_none() => match &s.content {
                pizzja_sdk::Content::Xml(x) => Some(x.as_str()),
                _ => None,
            },
            _ => None,
        })
    }

    #[test]
    fn a_controllers_presence_becomes_the_foreign_presence() {
        let mut p = MirrorPresence::new(&Config::default()).expect("valid");
        let event = Event::Local(LocalStanza {
            stanza: Stanza {
                kind: StanzaKind::Presence,
                type_: String::new(),
                id: None,
                from: Some("alice@example.org/Work/phone".into()),
                to: Some("gw.example.org".into()),
                xml: String::new(),
            },
            sender_resource: Some("Work/phone".into()),
            answers: None,
        });
        let actions = p.decide(&event, &facts(Some("away")));
        let x = mirrored(&actions).expect("mirrored presence");
        assert!(
            x.contains("<show>away</show>")
                && x.contains("on the train")
                && x.contains("<priority>5</priority>"),
            "{x}"
        );
    }

    #[test]
    fn a_session_coming_online_takes_the_controllers_presence_not_a_plain_one() {
        let mut p = MirrorPresence::new(&Config::default()).expect("valid");
        let event = Event::Session(SessionChange {
            session: "Work".into(),
            state: SessionState::Online,
            reason: None,
        });
        let actions = p.decide(&event, &facts(Some("dnd")));
        assert_eq!(actions.len(), 1, "{actions:?}");
        assert!(mirrored(&actions).is_some_and(|x| x.contains("<show>dnd</show>")));
    }
}
