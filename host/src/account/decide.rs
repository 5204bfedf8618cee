//! Deciding: an event and the account's facts go to the policy, and each
//! action it returns passes the address rules ([`rules`]) before it is
//! carried out; the actor in `mod.rs` calls in here for every stanza and
//! session change.

use super::{Account, Timer, devices, iq, now_ms, rules};
use crate::metrics::Metrics;
use crate::policy::bindings as wit;
use crate::xmpp::foreign::{Command, Outgoing};
use crate::xmpp::{Kind, set_attr};
use minidom::Element;
use rules::{Current, Plan, Scope, Side};
use tracing::{debug, error, info, trace, warn};

impl Account {
    pub(super) fn facts(&self) -> wit::Facts {
        wit::Facts {
            local_jid: self.reg.local.to_string(),
            foreign_jid: self.reg.foreign.to_string(),
            gateway: self.env.gateway.clone(),
            controllers: self.controllers.facts(),
            sessions: self
                .sessions
                .iter()
                .map(|(r, s)| wit::Session {
                    resource: r.clone(),
                    state: s.state,
                })
                .collect(),
            now_ms: now_ms(),
        }
    }

    /// Decides an event that carries no stanza (a session change).
    pub(super) async fn decide_internal(&mut self, event: wit::Event) {
        let current = Current {
            stanza: None,
            side: Side::Internal,
        };
        self.decide_and_apply(event, current).await;
    }

    pub(super) async fn decide_and_apply(&mut self, event: wit::Event, current: Current) {
        let facts = self.facts();
        let actions = match self.env.engine.decide(&event, &facts) {
            Ok(actions) => actions,
            Err(e) => {
                let kind = match &e {
                    crate::policy::DecideError::Trap { .. } => "trap",
                    crate::policy::DecideError::Instantiate { .. } => "instantiate",
                };
                Metrics::count(&self.env.metrics.policy_failures, kind);
                warn!(local = %self.reg.local, error = %e, "policy failed; answering with an error");
                vec![wit::Action::ReplyError(wit::StanzaError {
                    type_: wit::ErrorType::Wait,
                    condition: "internal-server-error".into(),
                    text: Some("the gateway's policy failed on this stanza".into()),
                })]
            }
        };
        trace!(local = %self.reg.local, ?actions, "policy decided");
        let mut copies = 0;
        for action in actions {
            let plan = {
                let sessions = &self.sessions;
                let has_session = |a: &str| sessions.contains_key(a);
                let scope = Scope {
                    local: &self.reg.local,
                    foreign: &self.reg.foreign,
                    gateway: &self.env.gateway,
                    has_session: &has_session,
                };
                rules::plan(action, &scope, &current)
            };
            let plan = match plan {
                // A message for one controller: the local server must not
                // multiply it through carbons or archive it twice.
                Plan::Local {
                    mut stanza,
                    to_resource: Some(resource),
                } if stanza.name() == "message" => {
                    copies += 1;
                    devices::mark_copy(&mut stanza, copies == 1);
                    Plan::Local {
                        stanza,
                        to_resource: Some(resource),
                    }
                }
                plan => plan,
            };
            self.carry_out(plan, &current).await;
        }
    }

    /// Sends what the rules planned, tracking the IQ requests among it.
    pub(super) async fn carry_out(&mut self, plan: Plan, current: &Current) {
        match plan {
            Plan::Nothing => {}
            Plan::Log(line) => self.log(line),
            Plan::Refused { why, answer } => {
                warn!(local = %self.reg.local, error = %why, "policy action refused");
                Box::pin(self.carry_out(*answer, current)).await;
            }
            Plan::Open { resource, jid } => self.open_session(resource, jid),
            Plan::Close(a) => {
                if let Some(s) = self.sessions.remove(&a) {
                    let _ = s.tx.send(Command::Close).await;
                }
                // Gone from the facts now; its Closed report is then ignored.
            }
            Plan::Foreign {
                session,
                mut stanza,
                origin,
                local_to,
                ties,
            } => {
                // Requests from a controller get a fresh id so that answers find it.
                if is_request(&stanza)
                    && let Side::Local {
                        resource: Some(requester),
                    } = &current.side
                {
                    let id = self.iqs.track_outbound(iq::Outbound {
                        session: session.clone(),
                        requester: requester.clone(),
                        original_id: stanza.attr("id").map(str::to_string),
                        peer: stanza.attr("to").map(str::to_string),
                        local_to,
                        payload_ns: crate::xmpp::payload_ns(&stanza),
                    });
                    set_attr(&mut stanza, "id", Some(id.clone()));
                    // Replies tied to the request (an archive query's
                    // results, and what the policy named) carry the same id.
                    for spec in std::iter::once(devices::archive_tie()).chain(ties) {
                        if let Some(original) = devices::tie_request(&mut stanza, &spec, &id) {
                            self.iqs.tie(&id, iq::Tie { spec, original });
                        }
                    }
                    self.arm(Timer::Outbound(id));
                }
                devices::add_caps(&mut stanza);
                self.send_session(&session, Outgoing { stanza, origin })
                    .await;
            }
            Plan::Local {
                mut stanza,
                to_resource,
            } => {
                if is_request(&stanza)
                    && let (Side::Foreign { session }, Some(controller)) =
                        (&current.side, to_resource)
                {
                    let id = self.iqs.track_inbound(iq::Inbound {
                        session: session.clone(),
                        foreign_from: current
                            .stanza
                            .as_ref()
                            .and_then(|s| s.attr("from"))
                            .map(str::to_string),
                        original_id: stanza.attr("id").map(str::to_string),
                        controller,
                        payload_ns: crate::xmpp::payload_ns(&stanza),
                    });
                    set_attr(&mut stanza, "id", Some(id.clone()));
                    self.arm(Timer::Inbound(id));
                }
                debug!(to = ?stanza.attr("to"), from = ?stanza.attr("from"), "to local");
                trace!(xml = %crate::xmpp::to_logged_xml(&stanza), "to local");
                self.to_local(stanza).await;
            }
        }
    }

    pub(super) fn log(&self, line: wit::LogLine) {
        let (local, name) = (&self.reg.local, self.env.engine.current().name.clone());
        let message = line.message;
        match line.level {
            wit::LogLevel::Trace => trace!(policy = %name, %local, "{message}"),
            wit::LogLevel::Debug => debug!(policy = %name, %local, "{message}"),
            wit::LogLevel::Info => info!(policy = %name, %local, "{message}"),
            wit::LogLevel::Warn => warn!(policy = %name, %local, "{message}"),
            wit::LogLevel::Error => error!(policy = %name, %local, "{message}"),
        }
    }
}

/// An IQ get or set: a request whose answer must find its asker.
fn is_request(el: &Element) -> bool {
    let type_ = el.attr("type").unwrap_or("");
    Kind::of(el) == Some(Kind::Iq) && (type_ == "get" || type_ == "set")
}
