//! The host's invariants over what a policy asks (docs/behaviour.md
//! section 8), as one pure function: an action plus the account's scope in,
//! what to send, or why not, out.
//!
//! - A stanza leaves for the foreign side only through one of this
//!   account's own open sessions, without a 'from' (the foreign server
//!   stamps F/A).
//! - A stanza for the local server is addressed to this account (its bare
//!   JID or one of its resources) and comes from T or a JID under T: both
//!   addresses are built here and checked after parsing, never taken whole
//!   from the policy.
//! - A foreign session is always F/A for this account's F.
//!
//! The password is not here at all: the policy never sees it, and nothing
//! here can name it.

use crate::policy::bindings as wit;
use crate::xmpp::{error_reply, parse_stanza, set_attr};
use jid::{BareJid, FullJid, Jid};
use minidom::Element;

/// The account an action is planned for.
pub struct Scope<'a> {
    /// L.
    pub local: &'a BareJid,
    /// F.
    pub foreign: &'a BareJid,
    /// T.
    pub gateway: &'a str,
    /// Whether foreign session A exists for this account now.
    pub has_session: &'a dyn Fn(&str) -> bool,
}

/// Which side the event being decided came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    /// From the local server; `resource` is the sender's (`A/B`).
    Local {
        /// The sender's resource, none for the bare JID.
        resource: Option<String>,
    },
    /// From foreign session `session`.
    Foreign {
        /// The session's resource A.
        session: String,
    },
    /// From the host itself (a session changed state).
    Internal,
}

/// The event being decided, with the stanza the policy may forward.
#[derive(Debug, Clone)]
pub struct Current {
    /// The stanza, if the event has one.
    pub stanza: Option<Element>,
    /// Where it came from.
    pub side: Side,
}

/// What an action comes to.
#[derive(Debug)]
pub enum Plan {
    /// Nothing to send (an error answering an error, say).
    Nothing,
    /// A line for the host's log, tagged with the policy.
    Log(wit::LogLine),
    /// To the local server, addressed to the account.
    Local {
        /// The stanza, 'to' and 'from' set.
        stanza: Element,
        /// The resource of the account it goes to, if one.
        to_resource: Option<String>,
    },
    /// Out through one of the account's foreign sessions.
    Foreign {
        /// The session's resource A.
        session: String,
        /// The stanza, 'to' set, no 'from'.
        stanza: Element,
        /// The controller's stanza, answered with an error if this one
        /// cannot be sent.
        origin: Option<Element>,
        /// The address the controller wrote, before the rewrite.
        local_to: Option<String>,
        /// Message flows tied to it (for a controller's request), at most
        /// [`MAX_TIES`].
        ties: Vec<wit::RequestTie>,
    },
    /// Open foreign session A (as `jid`).
    Open {
        /// A.
        resource: String,
        /// F/A.
        jid: FullJid,
    },
    /// Close foreign session A.
    Close(String),
    /// Not done: `why` for the log; `answer` for the event's sender.
    Refused {
        /// What was wrong, for the log.
        why: String,
        /// What the sender gets (often an error stanza).
        answer: Box<Plan>,
    },
}

/// What `action` comes to for the account of `scope`, deciding `current`.
pub fn plan(action: wit::Action, scope: &Scope, current: &Current) -> Plan {
    match action {
        wit::Action::Log(line) => Plan::Log(line),
        wit::Action::ReplyError(e) => answer(
            scope,
            current,
            e.type_.as_str(),
            &e.condition,
            e.text.as_deref(),
        ),
        wit::Action::OpenSession(a) => open(scope, current, a),
        wit::Action::CloseSession(a) => Plan::Close(a),
        wit::Action::SendForeign(send) => foreign(scope, current, send),
        wit::Action::SendLocal(send) => local(scope, current, send),
    }
}

/// An error for the sender of the stanza being decided, back the way it
/// came; nothing for an event without a stanza, or a stanza that must not
/// be answered (an error, an IQ result).
pub fn answer(
    scope: &Scope,
    current: &Current,
    type_: &str,
    condition: &str,
    text: Option<&str>,
) -> Plan {
    let Some(stanza) = &current.stanza else {
        return Plan::Nothing;
    };
    let Some(mut reply) = error_reply(stanza, type_, condition, text) else {
        return Plan::Nothing;
    };
    match &current.side {
        Side::Local { .. } => {
            // The router let the stanza in only from this account to a JID
            // under T; checked again, since an answer goes where it says.
            let to = reply.attr("to").and_then(|t| Jid::new(t).ok());
            let from_t = reply
                .attr("from")
                .and_then(|f| Jid::new(f).ok())
                .is_some_and(|f| f.domain().as_str() == scope.gateway);
            match to {
                Some(to) if to.to_bare() == *scope.local && from_t => Plan::Local {
                    to_resource: to.resource().map(|r| r.to_string()),
                    stanza: reply,
                },
                _ => Plan::Nothing,
            }
        }
        Side::Foreign { session } => {
            set_attr(&mut reply, "from", None);
            Plan::Foreign {
                session: session.clone(),
                stanza: reply,
                origin: None,
                local_to: None,
                ties: Vec::new(),
            }
        }
        Side::Internal => Plan::Nothing,
    }
}

fn refused(why: String, answer: Plan) -> Plan {
    Plan::Refused {
        why,
        answer: Box::new(answer),
    }
}

fn open(scope: &Scope, current: &Current, a: String) -> Plan {
    match FullJid::new(&format!("{}/{a}", scope.foreign)) {
        Ok(jid) if jid.to_bare() == *scope.foreign => Plan::Open { resource: a, jid },
        _ => refused(
            format!("policy asked for a session with an invalid resource `{a}`"),
            answer(
                scope,
                current,
                "modify",
                "jid-malformed",
                Some("invalid foreign resource"),
            ),
        ),
    }
}

/// The stanza an action sends: the event's, or one the policy wrote.
fn content(content: wit::Content, current: &Current) -> Result<Element, String> {
    match content {
        wit::Content::Original => current
            .stanza
            .clone()
            .ok_or_else(|| "this event has no stanza to forward".to_string()),
        wit::Content::Xml(xml) => parse_stanza(&xml),
    }
}

fn foreign(scope: &Scope, current: &Current, send: wit::SendForeign) -> Plan {
    if !(scope.has_session)(&send.session) {
        let text = format!("no foreign session {} is open", send.session);
        return refused(
            format!(
                "policy sent through a session that does not exist: `{}`",
                send.session
            ),
            answer(scope, current, "wait", "service-unavailable", Some(&text)),
        );
    }
    let is_original = matches!(send.content, wit::Content::Original);
    let mut stanza = match content(send.content, current) {
        Ok(el) => el,
        Err(why) => {
            let text = "the gateway's policy failed";
            return refused(
                format!("policy wrote an unusable stanza: {why}"),
                answer(scope, current, "wait", "internal-server-error", Some(text)),
            );
        }
    };
    if let Some(to) = &send.to
        && Jid::new(to).is_err()
    {
        return refused(
            format!("policy named `{to}`, which is not a JID"),
            answer(
                scope,
                current,
                "modify",
                "jid-malformed",
                Some("not a valid JID"),
            ),
        );
    }
    let local_to = stanza.attr("to").map(str::to_string);
    set_attr(&mut stanza, "to", send.to);
    set_attr(&mut stanza, "from", None);
    let origin = match (&current.side, is_original) {
        (Side::Local { .. }, true) => current.stanza.clone(),
        _ => None,
    };
    // A tie names an attribute the host writes: only a valid XML name.
    let mut ties: Vec<wit::RequestTie> = send
        .ties
        .into_iter()
        .filter(|t| {
            minidom::rxml::NcName::try_from(t.attribute.as_str()).is_ok()
                && !t.request.is_empty()
                && !t.reply.is_empty()
        })
        .collect();
    ties.truncate(MAX_TIES);
    Plan::Foreign {
        session: send.session,
        stanza,
        origin,
        local_to,
        ties,
    }
}

/// The most request ties one action may ask for: each costs a look at
/// every message while its request is in flight.
pub const MAX_TIES: usize = 4;

fn local(scope: &Scope, current: &Current, send: wit::SendLocal) -> Plan {
    let mut stanza = match content(send.content, current) {
        Ok(el) => el,
        Err(why) => {
            return refused(
                format!("policy wrote an unusable stanza: {why}"),
                Plan::Nothing,
            );
        }
    };
    let gateway = scope.gateway;
    let to = match &send.to_resource {
        Some(r) => FullJid::new(&format!("{}/{r}", scope.local)).map(Jid::from),
        None => Ok(Jid::from(scope.local.clone())),
    };
    let from = match (&send.from_node, &send.from_resource) {
        (Some(node), Some(res)) => FullJid::new(&format!("{node}@{gateway}/{res}")).map(Jid::from),
        (Some(node), None) => BareJid::new(&format!("{node}@{gateway}")).map(Jid::from),
        (None, Some(res)) => FullJid::new(&format!("{gateway}/{res}")).map(Jid::from),
        (None, None) => BareJid::new(gateway).map(Jid::from),
    };
    // A node or resource with '@' or '/' in it could make a JID elsewhere
    // out of the joined text: what counts is what it parses to.
    let (to, from) = match (to, from) {
        (Ok(to), Ok(from)) if to.to_bare() == *scope.local && from.domain().as_str() == gateway => {
            (to, from)
        }
        (to, from) => {
            let why = format!(
                "policy named an address outside the account or outside T (to {:?}, from {:?})",
                to.map(|j| j.to_string()),
                from.map(|j| j.to_string())
            );
            return refused(why, Plan::Nothing);
        }
    };
    set_attr(&mut stanza, "to", Some(to.to_string()));
    set_attr(&mut stanza, "from", Some(from.to_string()));
    Plan::Local {
        stanza,
        to_resource: send.to_resource,
    }
}

#[cfg(test)]
mod tests;
