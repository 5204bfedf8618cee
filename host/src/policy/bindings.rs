//! The `bindgen!` of the WIT world `policy`, in both versions the host
//! loads: `pizzja:policy@0.2.0` (`wit/`), whose types the host uses
//! throughout, and `pizzja:policy@0.1.0` (`wit/v0.1.0/`), adapted in
//! [`v1`]. The host's own WASI is in [`super::wasi`].
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "policy",
    additional_derives: [PartialEq, Eq],
});

pub use pizzja::policy::types::*;

impl ErrorType {
    /// The stanza error's `type` attribute (RFC 6120 section 8.3.2).
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

impl Stanza {
    /// The policy's view of a stanza: its routing header and its XML.
    pub fn of(kind: crate::xmpp::Kind, el: &minidom::Element) -> Stanza {
        use crate::xmpp::Kind;
        Stanza {
            kind: match kind {
                Kind::Message => StanzaKind::Message,
                Kind::Presence => StanzaKind::Presence,
                Kind::Iq => StanzaKind::Iq,
            },
            type_: el.attr("type").unwrap_or("").to_string(),
            id: el.attr("id").map(str::to_string),
            from: el.attr("from").map(str::to_string),
            to: el.attr("to").map(str::to_string),
            xml: crate::xmpp::to_xml(el),
        }
    }
}

/// Policies built against `pizzja:policy@0.1.0`, and what turns the host's
/// 0.2.0 events into theirs and their actions into 0.2.0 ones. 0.2.0 only
/// adds: a 0.1.0 policy's `send-foreign` asks for no request ties.
pub mod v1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "policy",
        additional_derives: [PartialEq, Eq],
    });

    use super as now;
    use pizzja::policy::types as old;

    fn kind(k: now::StanzaKind) -> old::StanzaKind {
        match k {
            now::StanzaKind::Message => old::StanzaKind::Message,
            now::StanzaKind::Presence => old::StanzaKind::Presence,
            now::StanzaKind::Iq => old::StanzaKind::Iq,
        }
    }

    fn stanza(s: &now::Stanza) -> old::Stanza {
        old::Stanza {
            kind: kind(s.kind),
            type_: s.type_.clone(),
            id: s.id.clone(),
            from: s.from.clone(),
            to: s.to.clone(),
            xml: s.xml.clone(),
        }
    }

    fn request(r: &now::IqRequest) -> old::IqRequest {
        old::IqRequest {
            requester: r.requester.clone(),
            peer: r.peer.clone(),
            payload_ns: r.payload_ns.clone(),
        }
    }

    fn state(s: now::SessionState) -> old::SessionState {
        match s {
            now::SessionState::Connecting => old::SessionState::Connecting,
            now::SessionState::Online => old::SessionState::Online,
            now::SessionState::Reconnecting => old::SessionState::Reconnecting,
            now::SessionState::Failed => old::SessionState::Failed,
            now::SessionState::Closed => old::SessionState::Closed,
        }
    }

    /// The event as a 0.1.0 policy knows it.
    pub fn event(e: &now::Event) -> old::Event {
        match e {
            now::Event::Local(l) => old::Event::Local(old::LocalStanza {
                stanza: stanza(&l.stanza),
                sender_resource: l.sender_resource.clone(),
                answers: l.answers.as_ref().map(request),
            }),
            now::Event::Foreign(f) => old::Event::Foreign(old::ForeignStanza {
                session: f.session.clone(),
                stanza: stanza(&f.stanza),
                answers: f.answers.as_ref().map(request),
            }),
            now::Event::Session(c) => old::Event::Session(old::SessionChange {
                session: c.session.clone(),
                state: state(c.state),
                reason: c.reason.clone(),
            }),
        }
    }

    /// The facts as a 0.1.0 policy knows them.
    pub fn facts(f: &now::Facts) -> old::Facts {
        old::Facts {
            local_jid: f.local_jid.clone(),
            foreign_jid: f.foreign_jid.clone(),
            gateway: f.gateway.clone(),
            controllers: f
                .controllers
                .iter()
                .map(|c| old::Controller {
                    resource: c.resource.clone(),
                    show: c.show.clone(),
                    status: c.status.clone(),
                    priority: c.priority,
                    online_since_ms: c.online_since_ms,
                    last_active_ms: c.last_active_ms,
                })
                .collect(),
            sessions: f
                .sessions
                .iter()
                .map(|s| old::Session {
                    resource: s.resource.clone(),
                    state: state(s.state),
                })
                .collect(),
            now_ms: f.now_ms,
        }
    }

    fn content(c: old::Content) -> now::Content {
        match c {
            old::Content::Original => now::Content::Original,
            old::Content::Xml(x) => now::Content::Xml(x),
        }
    }

    /// A 0.1.0 policy's action, in the host's terms.
    pub fn action(a: old::Action) -> now::Action {
        match a {
            old::Action::SendForeign(s) => now::Action::SendForeign(now::SendForeign {
                session: s.session,
                to: s.to,
                content: content(s.content),
                ties: Vec::new(),
            }),
            old::Action::SendLocal(s) => now::Action::SendLocal(now::SendLocal {
                to_resource: s.to_resource,
                from_node: s.from_node,
                from_resource: s.from_resource,
                content: content(s.content),
            }),
            old::Action::OpenSession(a) => now::Action::OpenSession(a),
            old::Action::CloseSession(a) => now::Action::CloseSession(a),
            old::Action::ReplyError(e) => now::Action::ReplyError(now::StanzaError {
                type_: match e.type_ {
                    old::ErrorType::Auth => now::ErrorType::Auth,
                    old::ErrorType::Cancel => now::ErrorType::Cancel,
                    old::ErrorType::Continue => now::ErrorType::Continue,
                    old::ErrorType::Modify => now::ErrorType::Modify,
                    old::ErrorType::Wait => now::ErrorType::Wait,
                },
                condition: e.condition,
                text: e.text,
            }),
            old::Action::Log(l) => now::Action::Log(now::LogLine {
                level: match l.level {
                    old::LogLevel::Trace => now::LogLevel::Trace,
                    old::LogLevel::Debug => now::LogLevel::Debug,
                    old::LogLevel::Info => now::LogLevel::Info,
                    old::LogLevel::Warn => now::LogLevel::Warn,
                    old::LogLevel::Error => now::LogLevel::Error,
                },
                message: l.message,
            }),
        }
    }
}

/// A loaded policy, in the version of the world it was built against.
pub enum AnyPolicyPre<T: 'static> {
    /// `pizzja:policy@0.2.0`.
    Now(PolicyPre<T>),
    /// `pizzja:policy@0.1.0`, adapted.
    V1(v1::PolicyPre<T>),
}

/// An instance of either version.
pub enum AnyPolicy {
    /// `pizzja:policy@0.2.0`.
    Now(Policy),
    /// `pizzja:policy@0.1.0`, adapted.
    V1(v1::Policy),
}

impl<T: Send + 'static> AnyPolicyPre<T> {
    /// Which version of the world the policy was built against.
    pub fn version(&self) -> &'static str {
        match self {
            AnyPolicyPre::Now(_) => "0.2.0",
            AnyPolicyPre::V1(_) => "0.1.0",
        }
    }

    /// A fresh instance.
    pub fn instantiate(
        &self,
        store: impl wasmtime::AsContextMut<Data = T>,
    ) -> wasmtime::Result<AnyPolicy> {
        Ok(match self {
            AnyPolicyPre::Now(pre) => AnyPolicy::Now(pre.instantiate(store)?),
            AnyPolicyPre::V1(pre) => AnyPolicy::V1(pre.instantiate(store)?),
        })
    }
}

impl AnyPolicy {
    /// The world's `init`.
    pub fn call_init<S: wasmtime::AsContextMut>(
        &self,
        store: S,
        config: &[(String, String)],
    ) -> wasmtime::Result<Result<(), String>>
    where
        S::Data: Send,
    {
        match self {
            AnyPolicy::Now(p) => p.call_init(store, config),
            AnyPolicy::V1(p) => p.call_init(store, config),
        }
    }

    /// The world's `decide`, in the host's (0.2.0) terms.
    pub fn call_decide<S: wasmtime::AsContextMut>(
        &self,
        store: S,
        event: &Event,
        facts: &Facts,
    ) -> wasmtime::Result<Vec<Action>>
    where
        S::Data: Send,
    {
        match self {
            AnyPolicy::Now(p) => p.call_decide(store, event, facts),
            AnyPolicy::V1(p) => Ok(p
                .call_decide(store, &v1::event(event), &v1::facts(facts))?
                .into_iter()
                .map(v1::action)
                .collect()),
        }
    }
}
