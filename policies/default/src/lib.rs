//! The default Pizzja policy: the behaviour of `docs/behaviour.md`, sections 3 to 5
//! and 9. Each function below is named after the part of the spec it
//! implements; the host has already done the bookkeeping (who is online,
//! which sessions exist, which request an IQ answer belongs to).

use pizzja_sdk::{
    Action, Config, ErrorType, Event, Facts, ForeignStanza, IqRequest, JidParts, LocalStanza,
    Policy, SessionChange, SessionState, StanzaKind, escape, split_resource, unescape, xml,
};

/// The policy's settings from `[policy.config]`.
pub struct DefaultPolicy {
    /// docs/behaviour.md section 9: send available presence when a session comes online.
    initial_presence: bool,
}

impl Policy for DefaultPolicy {
    fn new(config: &Config) -> Result<Self, String> {
        let initial_presence = match config.get("initial_presence") {
            None | Some("available") => true,
            Some("none") => false,
            Some(other) => {
                return Err(format!(
                    "initial_presence must be \"available\" or \"none\", not {other:?}"
                ));
            }
        };
        Ok(DefaultPolicy { initial_presence })
    }

    fn decide(&mut self, event: &Event, facts: &Facts) -> Vec<Action> {
        match event {
            Event::Local(local) => match local.stanza.to_parts().and_then(|to| to.node) {
                None => to_the_gateway(local, facts),
                Some(node) => local_to_foreign(local, node, facts),
            },
            Event::Foreign(foreign) => foreign_to_local(foreign, facts),
            Event::Session(change) => self.session_changed(change, facts),
        }
    }
}

#[cfg(feature = "export")]
pizzja_sdk::export_policy!(DefaultPolicy);

// Small blocks from free lists: dlmalloc spends a sixth of a decision
// allocating and freeing (measured in BENCHMARKS.md).
#[cfg(all(
    feature = "export",
    target_arch = "wasm32",
    not(target_feature = "atomics")
))]
#[global_allocator]
static ALLOC: pizzja_sdk::SmallAlloc = pizzja_sdk::SmallAlloc::new();

/// docs/behaviour.md section 3: sessions follow local presence sent to T.
fn to_the_gateway(local: &LocalStanza, facts: &Facts) -> Vec<Action> {
    let stanza = &local.stanza;
    match (stanza.kind, stanza.type_.as_str()) {
        (StanzaKind::Presence, "") => {
            let Some(resource) = &local.sender_resource else {
                return vec![];
            };
            let a = split_resource(resource).0;
            // The first controller of A opens F/A; a failed session is retried.
            match facts.session(a) {
                Some(s) if s.state != SessionState::Failed => vec![],
                _ => vec![Action::OpenSession(a.to_string())],
            }
        }
        (StanzaKind::Presence, "unavailable") => {
            let Some(resource) = &local.sender_resource else {
                return vec![];
            };
            let a = split_resource(resource).0;
            // The host has already taken the resource off the controllers.
            if facts.controllers_of(a).next().is_none() && facts.session(a).is_some() {
                vec![Action::CloseSession(a.to_string())]
            } else {
                vec![]
            }
        }
        (StanzaKind::Presence, "probe") => {
            // "probe from L to T: answered with T's availability"
            vec![Action::send_local_from_gateway(
                None,
                xml::presence("", None, None, None),
            )]
        }
        (StanzaKind::Presence, _) => vec![],
        (StanzaKind::Message, "error") => vec![],
        (StanzaKind::Message, _) => vec![Action::reply_error(
            ErrorType::Cancel,
            "service-unavailable",
            format!(
                "the gateway itself takes no messages: write to a contact as {}@{}",
                escape("contact@example.net"),
                facts.gateway
            ),
        )],
        // IQs to T itself are the host's (registration, disco, ping, version).
        (StanzaKind::Iq, _) => vec![],
    }
}

/// docs/behaviour.md section 4: a stanza from L/A/B to `x@T[/r]` leaves through F/A
/// addressed to `unesc(x)[/r]`.
fn local_to_foreign(local: &LocalStanza, node: &str, facts: &Facts) -> Vec<Action> {
    let stanza = &local.stanza;

    // An answer to a request that came from the foreign side goes back
    // through the session it came in on, to whoever asked.
    if stanza.is_iq_response() {
        return match &local.answers {
            Some(request) if is_roster_push(request, facts) => {
                vec![Action::debug(
                    "roster push copies were acknowledged already",
                )]
            }
            Some(request) => {
                vec![Action::forward_foreign(
                    &request.requester,
                    request.peer.clone(),
                )]
            }
            None => vec![Action::debug(
                "dropping an IQ answer that matches no request",
            )],
        };
    }

    let session = match &local.sender_resource {
        Some(resource) => {
            if facts.controller(resource).is_none() {
                return vec![Action::reply_error(
                    ErrorType::Cancel,
                    "service-unavailable",
                    format!(
                        "resource {resource} is not online at {}: send presence to {} first",
                        facts.gateway, facts.gateway
                    ),
                )];
            }
            split_resource(resource).0.to_string()
        }
        // The local server stamps subscription requests and probes with the
        // bare JID: they leave through the most recently active controller's
        // session, since a subscription belongs to the account, not to one
        // resource.
        None => match facts.controllers.first() {
            Some(c) => split_resource(&c.resource).0.to_string(),
            None => {
                return vec![Action::reply_error(
                    ErrorType::Cancel,
                    "service-unavailable",
                    format!(
                        "no controller is online: send presence to {} first",
                        facts.gateway
                    ),
                )];
            }
        },
    };

    match facts.session(&session) {
        Some(s) if s.state != SessionState::Failed && s.state != SessionState::Closed => {}
        _ => {
            return vec![Action::reply_error(
                ErrorType::Wait,
                "service-unavailable",
                format!("the foreign session {session} is not connected"),
            )];
        }
    }

    let target = unescape(node);
    let Some(jid) = JidParts::parse(&target).filter(|j| j.resource.is_none()) else {
        return vec![Action::reply_error(
            ErrorType::Modify,
            "jid-malformed",
            format!("{node:?} does not unescape to a bare JID"),
        )];
    };
    let to_resource = stanza.to_parts().and_then(|to| to.resource);

    if stanza.kind == StanzaKind::Presence && stanza.type_ == "probe" {
        return vec![Action::debug(
            "probes to foreign contacts are not forwarded",
        )];
    }

    // Presence to the foreign account itself sets F/A's own presence.
    let own_presence = stanza.kind == StanzaKind::Presence
        && (stanza.type_.is_empty() || stanza.type_ == "unavailable")
        && to_resource.is_none()
        && jid.bare() == facts.foreign_jid;
    if own_presence {
        return vec![Action::forward_foreign(&session, None)];
    }

    // The local server broadcasts a controller's presence to every contact
    // that holds a subscription from the account, and approving a foreign
    // contact's request (forwarded above) creates exactly such a roster
    // item. Broadcasts go to bare JIDs, so presence to a bare contact stays
    // local; directed presence goes to a full JID (`x@T/r`).
    let is_availability = stanza.kind == StanzaKind::Presence
        && (stanza.type_.is_empty() || stanza.type_ == "unavailable");
    if is_availability && to_resource.is_none() {
        return vec![Action::debug(
            "local presence broadcast to a contact stays local",
        )];
    }

    let to = JidParts {
        resource: to_resource,
        ..jid
    };
    vec![Action::forward_foreign(&session, Some(to.full()))]
}

/// A roster push (RFC 6121 section 2.1.6): a roster set from the account's
/// own server, which the policy acknowledges itself.
fn is_roster_push(request: &IqRequest, facts: &Facts) -> bool {
    request.payload_ns.as_deref() == Some("jabber:iq:roster")
        && request
            .peer
            .as_deref()
            .is_none_or(|p| p == facts.foreign_jid)
}

/// docs/behaviour.md section 5: what F/A receives comes back to the controllers of A,
/// from `esc(bare(J))@T[/resource(J)]`.
fn foreign_to_local(foreign: &ForeignStanza, facts: &Facts) -> Vec<Action> {
    let stanza = &foreign.stanza;
    let a = foreign.session.as_str();
    // No 'from' means the account's own server (RFC 6120 section 8.1.2.1).
    let sender = stanza.from_parts().unwrap_or(JidParts {
        node: None,
        domain: &facts.foreign_jid,
        resource: None,
    });
    let from_node = Some(escape(&sender.bare()));
    let from_resource = sender.resource.map(str::to_string);
    let deliver_to = |resource: &str| {
        Action::forward_local(
            Some(resource.to_string()),
            from_node.clone(),
            from_resource.clone(),
        )
    };

    if stanza.is_iq_response() {
        return match &foreign.answers {
            Some(request) => vec![deliver_to(&request.requester)],
            None => vec![Action::debug(
                "dropping an IQ answer that matches no request",
            )],
        };
    }

    // docs/behaviour.md section 10: a message tied to a controller's
    // request (the results of an archive query) goes to that controller only.
    if let Some(request) = &foreign.answers {
        return vec![deliver_to(&request.requester)];
    }

    if stanza.is_iq_request() {
        let from_own_account = stanza.from.is_none() || sender.bare() == facts.foreign_jid;
        if from_own_account && stanza.type_ == "set" && stanza.xml.contains("jabber:iq:roster") {
            // A roster push: acknowledged here, copied to every controller.
            let id = stanza.id.clone().unwrap_or_default();
            let ack = format!(
                "<iq xmlns='jabber:client' type='result' id='{}'/>",
                xml::escape_text(&id)
            );
            let mut actions = vec![Action::send_foreign_xml(a, None, ack)];
            actions.extend(facts.controllers_of(a).map(|c| deliver_to(&c.resource)));
            return actions;
        }
        // Other requests go to the most recently active controller of A.
        return match facts.controllers_of(a).next() {
            Some(c) => vec![deliver_to(&c.resource)],
            None => vec![Action::reply_error(
                ErrorType::Cancel,
                "service-unavailable",
                "no controller of this resource is online",
            )],
        };
    }

    // Messages and presence: to every online controller of A.
    facts
        .controllers_of(a)
        .map(|c| deliver_to(&c.resource))
        .collect()
}

impl DefaultPolicy {
    /// docs/behaviour.md section 9 (initial presence), section 4 (controllers are told
    /// why a login failed) and section 7 (controllers see F/A go and come back
    /// when a gap could not be hidden).
    fn session_changed(&self, change: &SessionChange, facts: &Facts) -> Vec<Action> {
        let a = change.session.as_str();
        match change.state {
            // Back after a gap: the host restored F/A's last presence itself.
            SessionState::Online if change.reason.is_some() => {
                presence_to_controllers(a, "", None, facts)
            }
            SessionState::Online if self.initial_presence => vec![Action::send_foreign_xml(
                a,
                None,
                xml::presence("", None, None, Some(0)),
            )],
            SessionState::Reconnecting => {
                let why = change.reason.as_deref();
                presence_to_controllers(a, "unavailable", why, facts)
            }
            SessionState::Failed => {
                let why = change.reason.as_deref().unwrap_or("unknown reason");
                let text = format!("could not connect {}/{a}: {why}", facts.foreign_jid);
                facts
                    .controllers_of(a)
                    .map(|c| {
                        Action::send_local_from_gateway(Some(c.resource.clone()), xml::chat(&text))
                    })
                    .collect()
            }
            _ => vec![],
        }
    }
}

/// F/A's own presence, as `esc(F)@T/A`, to each controller of A.
fn presence_to_controllers(
    a: &str,
    type_: &str,
    status: Option<&str>,
    facts: &Facts,
) -> Vec<Action> {
    let presence = xml::presence(type_, None, status, None);
    facts
        .controllers_of(a)
        .map(|c| {
            Action::SendLocal(pizzja_sdk::SendLocal {
                to_resource: Some(c.resource.clone()),
                from_node: Some(facts.foreign_node()),
                from_resource: Some(a.to_string()),
                content: pizzja_sdk::Content::Xml(presence.clone()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
