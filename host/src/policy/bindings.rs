//! The `bindgen!` of the WIT world `policy` (the host's own WASI is in
//! [`super::wasi`]).
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
