//! The policy-facing types: the WIT types re-exported, plus helpers.

use crate::jid::JidParts;

pub use crate::wit::pizzja::policy::types::{
    Action, Content, Controller, ErrorType, Event, Facts, ForeignStanza, IqRequest, LocalStanza,
    LogLevel, LogLine, RequestTie, SendForeign, SendLocal, Session, SessionChange, SessionState,
    Stanza, StanzaError, StanzaKind,
};

/// A policy: made once per instance from the operator's configuration, then
/// asked to decide each event of any account.
///
/// An instance may be thrown away and made again at any time (after a trap,
/// on reload), so keep nothing in `self` that must survive that.
pub trait Policy: Sized + 'static {
    /// Builds the policy from `[policy.config]`; an error refuses the module.
    fn new(config: &Config) -> Result<Self, String>;

    /// Decides one event of one account.
    fn decide(&mut self, event: &Event, facts: &Facts) -> Vec<Action>;
}

/// Exports a type implementing [`Policy`] as the component's `init` and
/// `decide`.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[doc(hidden)]
        pub struct __PizzjaPolicyExport;

        impl $crate::wit::Guest for __PizzjaPolicyExport {
            fn init(config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>)
                -> ::std::result::Result<(), ::std::string::String> {
                $crate::__private::init::<$policy>(config)
            }
            fn decide(event: $crate::Event, facts: $crate::Facts) -> ::std::vec::Vec<$crate::Action> {
                $crate::__private::decide::<$policy>(event, facts)
            }
        }

        // The component's exports exist only on wasm; natively (tests, and
        // policies embedding another policy) there is nothing to export.
        #[cfg(target_arch = "wasm32")]
        $crate::wit::__export_policy_world!(__PizzjaPolicyExport with_types_in $crate::wit);
    };
}

/// The operator's `[policy.config]`, as key/value strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pairs: Vec<(String, String)>,
}

impl Config {
    /// Makes a configuration from key/value pairs (as the host hands them).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Config { pairs }
    }

    /// Every key and value, in the order the host gave them.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl Stanza {
    /// True for a stanza of type `error`.
    pub fn is_error(&self) -> bool {
        self.type_ == "error"
    }

    /// True for an IQ of type `get` or `set` (a request).
    pub fn is_iq_request(&self) -> bool {
        self.kind == StanzaKind::Iq && (self.type_ == "get" || self.type_ == "set")
    }

    /// True for an IQ of type `result` or `error` (an answer).
    pub fn is_iq_response(&self) -> bool {
        self.kind == StanzaKind::Iq && (self.type_ == "result" || self.type_ == "error")
    }

    /// The `to` address split into parts.
    pub fn to_parts(&self) -> Option<JidParts<'_>> {
        self.to.as_deref().and_then(JidParts::parse)
    }

    /// The `from` address split into parts.
    pub fn from_parts(&self) -> Option<JidParts<'_>> {
        self.from.as_deref().and_then(JidParts::parse)
    }
}

impl Facts {
    /// The controller with this exact local resource, if online.
    pub fn controller(&self, resource: &str) -> Option<&Controller> {
        self.controllers.iter().find(|c| c.resource == resource)
    }

    /// The online controllers of foreign resource `a` (local resources
    /// `a/*`, and `a` itself), most recently active first.
    pub fn controllers_of<'a>(&'a self, a: &'a str) -> impl Iterator<Item = &'a Controller> + 'a {
        self.controllers
            .iter()
            .filter(move |c| crate::split_resource(&c.resource).0 == a)
    }

    /// The foreign session with resource `a`, if it exists.
    pub fn session(&self, a: &str) -> Option<&Session> {
        self.sessions.iter().find(|s| s.resource == a)
    }

    /// The gateway localpart naming the foreign account itself: `esc(F)`.
    pub fn foreign_node(&self) -> String {
        crate::escape(&self.foreign_jid)
    }
}

impl Action {
    /// Sends the event's stanza through foreign session `session` to `to`.
    pub fn forward_foreign(session: &str, to: Option<String>) -> Action {
        Action::SendForeign(SendForeign {
            session: session.to_string(),
            to,
            content: Content::Original,
            ties: Vec::new(),
        })
    }

    /// The same action, with the messages answering its request tied to
    /// the controller that sent it (see `request-tie` in the WIT): for
    /// example a search whose request holds `<search xmlns='urn:example'
    /// tag='…'/>` and whose hits come as messages with `<hit
    /// xmlns='urn:example' tag='…'/>`. Archive queries (XEP-0313) are tied
    /// by the host already. Only a [`Action::SendForeign`] takes ties.
    pub fn tied(mut self, tie: RequestTie) -> Action {
        if let Action::SendForeign(send) = &mut self {
            send.ties.push(tie);
        }
        self
    }

    /// Sends a stanza the policy wrote through foreign session `session`.
    pub fn send_foreign_xml(session: &str, to: Option<String>, xml: String) -> Action {
        Action::SendForeign(SendForeign {
            session: session.to_string(),
            to,
            content: Content::Xml(xml),
            ties: Vec::new(),
        })
    }

    /// Sends the event's stanza to the account's resource `to_resource`,
    /// from `from_node@T/from_resource`.
    pub fn forward_local(
        to_resource: Option<String>,
        from_node: Option<String>,
        from_resource: Option<String>,
    ) -> Action {
        Action::SendLocal(SendLocal {
            to_resource,
            from_node,
            from_resource,
            content: Content::Original,
        })
    }

    /// Sends a stanza the policy wrote to the account's resource
    /// `to_resource` (or bare JID), from the gateway itself.
    pub fn send_local_from_gateway(to_resource: Option<String>, xml: String) -> Action {
        Action::SendLocal(SendLocal {
            to_resource,
            from_node: None,
            from_resource: None,
            content: Content::Xml(xml),
        })
    }

    /// Answers the event's stanza with an error.
    pub fn reply_error(type_: ErrorType, condition: &str, text: impl Into<String>) -> Action {
        Action::ReplyError(StanzaError {
            type_,
            condition: condition.to_string(),
            text: Some(text.into()),
        })
    }

    /// A line for the host's log.
    pub fn log(level: LogLevel, message: String) -> Action {
        Action::Log(LogLine { level, message })
    }

    /// A debug line for the host's log.
    pub fn debug(message: impl Into<String>) -> Action {
        Action::log(LogLevel::Debug, message.into())
    }
}

/// Builders for the stanzas a policy writes itself.
pub mod xml {
    /// Escapes text for an XML text node or attribute value.
    pub fn escape_text(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&apos;"),
                c => out.push(c),
            }
        }
        out
    }

    /// A presence stanza: `type_` empty for available; optional show,
    /// status and priority.
    pub fn presence(
        type_: &str,
        show: Option<&str>,
        status: Option<&str>,
        priority: Option<i8>,
    ) -> String {
        let mut out = String::from("<presence xmlns='jabber:client'");
        if !type_.is_empty() {
            out.push_str(&format!(" type='{}'", escape_text(type_)));
        }
        out.push('>');
        if let Some(show) = show {
            out.push_str(&format!("<show>{}</show>", escape_text(show)));
        }
        if let Some(status) = status {
            out.push_str(&format!("<status>{}</status>", escape_text(status)));
        }
        if let Some(priority) = priority {
            out.push_str(&format!("<priority>{priority}</priority>"));
        }
        out.push_str("</presence>");
        out
    }

    /// A chat message with a body.
    pub fn chat(body: &str) -> String {
        format!(
            "<message xmlns='jabber:client' type='chat'><body>{}</body></message>",
            escape_text(body)
        )
    }
}

/// The account's store, kept by the host: survives instance replacement,
/// reloads and restarts (see the WIT `store` interface for its limits).
/// Off wasm (unit tests) it is an in-memory map shared by all accounts.
pub mod store {
    /// The value under `key`, if any.
    pub fn get(key: &str) -> Option<Vec<u8>> {
        imp::get(key)
    }

    /// Stores `value` under `key`; refused past the limits, with the reason.
    pub fn set(key: &str, value: &[u8]) -> Result<(), String> {
        imp::set(key, value)
    }

    /// Removes `key`.
    pub fn delete(key: &str) {
        imp::delete(key)
    }

    #[cfg(target_arch = "wasm32")]
    mod imp {
        use crate::wit::pizzja::policy::store as host;
        pub fn get(key: &str) -> Option<Vec<u8>> {
            host::get(key)
        }
        pub fn set(key: &str, value: &[u8]) -> Result<(), String> {
            host::set(key, value)
        }
        pub fn delete(key: &str) {
            host::delete(key)
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    mod imp {
        use std::cell::RefCell;
        use std::collections::HashMap;
        thread_local! {
            static MAP: RefCell<HashMap<String, Vec<u8>>> = RefCell::new(HashMap::new());
        }
        pub fn get(key: &str) -> Option<Vec<u8>> {
            MAP.with(|m| m.borrow().get(key).cloned())
        }
        pub fn set(key: &str, value: &[u8]) -> Result<(), String> {
            MAP.with(|m| m.borrow_mut().insert(key.to_string(), value.to_vec()));
            Ok(())
        }
        pub fn delete(key: &str) {
            MAP.with(|m| m.borrow_mut().remove(key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_go_on_sends_through_foreign_sessions_only() {
        let tie = RequestTie {
            namespace: "urn:example".into(),
            request: "search".into(),
            reply: "hit".into(),
            attribute: "tag".into(),
        };
        match Action::forward_foreign("Work", None).tied(tie.clone()) {
            Action::SendForeign(s) => assert_eq!(s.ties, vec![tie.clone()]),
            other => panic!("{other:?}"),
        }
        let local = Action::forward_local(None, None, None);
        assert_eq!(local.clone().tied(tie), local);
    }
}
