//! Stanza plumbing shared by both links: namespaces, the routing header,
//! attribute edits and stanza errors (RFC 6120 section 8).

pub mod component;
pub mod delivery;
pub mod dns;
pub mod foreign;
pub mod login;
pub mod scram;

use minidom::{Element, Node};
use rxml::{Namespace, NcName};

/// RFC 6120: the client namespace, the one the host works in.
pub const NS_CLIENT: &str = "jabber:client";
/// XEP-0114: the namespace of stanzas on the component link.
pub const NS_COMPONENT: &str = "jabber:component:accept";
/// RFC 6120 section 8.3: stanza error conditions.
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// Which stanza an element is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `<message/>`
    Message,
    /// `<presence/>`
    Presence,
    /// `<iq/>`
    Iq,
}

impl Kind {
    /// The kind of `el`, if it is a stanza in the client namespace.
    pub fn of(el: &Element) -> Option<Kind> {
        if el.ns() != NS_CLIENT {
            return None;
        }
        match el.name() {
            "message" => Some(Kind::Message),
            "presence" => Some(Kind::Presence),
            "iq" => Some(Kind::Iq),
            _ => None,
        }
    }
}

/// Moves every element of namespace `from` in the tree to namespace `to`.
///
/// The component link speaks `jabber:component:accept` and the foreign
/// sessions `jabber:client`; stanzas cross between them here. (tokio-xmpp's
/// `component` feature would switch the namespace for the whole build and
/// break the client sessions: docs/dependencies.md, tokio-xmpp pitfall 1.)
pub fn rename_ns(mut el: Element, from: &str, to: &str) -> Element {
    let ns = el.ns();
    let target = if ns == from { to.to_string() } else { ns };
    let mut out = Element::bare(el.name(), target);
    *out.attrs_mut() = std::mem::take(el.attrs_mut());
    for node in el.take_nodes() {
        match node {
            Node::Element(child) => {
                out.append_child(rename_ns(child, from, to));
            }
            Node::Text(text) => out.append_text_node(text),
        }
    }
    out
}

/// A static attribute name as rxml wants it.
pub fn ncname(name: &str) -> NcName {
    NcName::try_from(name).expect("attribute names used by the host are valid NCNames")
}

/// Sets or removes (`None`) an unqualified attribute.
pub fn set_attr(el: &mut Element, name: &str, value: Option<String>) {
    let key = ncname(name);
    match value {
        Some(v) => {
            el.attrs_mut().insert(Namespace::NONE, key, v);
        }
        None => {
            el.attrs_mut().remove(&Namespace::NONE, &key);
        }
    }
}

/// The element serialised for the raw XML log lines: passwords
/// (XEP-0077's `<password/>`, and data form fields named `password`)
/// replaced by `***`.
pub fn to_logged_xml(el: &Element) -> String {
    fn has_password(el: &Element) -> bool {
        el.children().any(|c| {
            c.name() == "password"
                || (c.name() == "field" && c.attr("var") == Some("password"))
                || has_password(c)
        })
    }
    fn redact(el: &mut Element) {
        for c in el.children_mut() {
            if c.name() == "password" {
                *c = Element::builder("password", c.ns()).append("***").build();
            } else if c.name() == "field" && c.attr("var") == Some("password") {
                let mut field = Element::bare("field", c.ns());
                set_attr(&mut field, "var", Some("password".into()));
                field.append_child(Element::builder("value", c.ns()).append("***").build());
                *c = field;
            } else {
                redact(c);
            }
        }
    }
    if !has_password(el) {
        return to_xml(el);
    }
    let mut copy = el.clone();
    redact(&mut copy);
    to_xml(&copy)
}

/// The element serialised (for the policy and for logs).
pub fn to_xml(el: &Element) -> String {
    let mut out = Vec::new();
    match el.write_to(&mut out) {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Parses a stanza a policy wrote: one element, taken as `jabber:client`
/// when it has no namespace.
pub fn parse_stanza(xml: &str) -> Result<Element, String> {
    let el: Element = match xml.parse() {
        Ok(el) => el,
        // minidom wants a namespace on the root; give a bare one the client's
        // (its children may still carry their own).
        Err(_) => {
            let wrapped = format!("<w xmlns='{NS_CLIENT}'>{xml}</w>");
            let mut w: Element = wrapped.parse().map_err(|e| format!("not XML: {e}"))?;
            let mut children = w.take_nodes().into_iter().filter_map(|n| match n {
                Node::Element(e) => Some(e),
                Node::Text(_) => None,
            });
            match (children.next(), children.next()) {
                (Some(el), None) => el,
                _ => return Err("expected exactly one element".into()),
            }
        }
    };
    match Kind::of(&el) {
        Some(_) => Ok(el),
        None => Err(format!(
            "<{}/> in `{}` is not a jabber:client stanza",
            el.name(),
            el.ns()
        )),
    }
}

/// The RFC 6120 defined conditions; anything else becomes
/// `undefined-condition`.
const CONDITIONS: &[&str] = &[
    "bad-request",
    "conflict",
    "feature-not-implemented",
    "forbidden",
    "gone",
    "internal-server-error",
    "item-not-found",
    "jid-malformed",
    "not-acceptable",
    "not-allowed",
    "not-authorized",
    "policy-violation",
    "recipient-unavailable",
    "redirect",
    "registration-required",
    "remote-server-not-found",
    "remote-server-timeout",
    "resource-constraint",
    "service-unavailable",
    "subscription-required",
    "undefined-condition",
    "unexpected-request",
];

/// The `<error/>` child of an error stanza.
pub fn error_element(type_: &str, condition: &str, text: Option<&str>) -> Element {
    let condition = if CONDITIONS.contains(&condition) {
        condition
    } else {
        "undefined-condition"
    };
    let mut error = Element::builder("error", NS_CLIENT)
        .attr(ncname("type"), type_)
        .append(Element::bare(condition, NS_STANZAS))
        .build();
    if let Some(text) = text {
        error.append_child(Element::builder("text", NS_STANZAS).append(text).build());
    }
    error
}

/// The error answering `stanza` (RFC 6120 section 8.3.1): same kind and id,
/// addresses swapped, type `error`. `None` for a stanza that is itself an
/// error or an IQ result (which must never be answered).
pub fn error_reply(
    stanza: &Element,
    type_: &str,
    condition: &str,
    text: Option<&str>,
) -> Option<Element> {
    let kind = Kind::of(stanza)?;
    let t = stanza.attr("type").unwrap_or("");
    if t == "error" || (kind == Kind::Iq && t == "result") {
        return None;
    }
    let mut reply = Element::bare(stanza.name(), NS_CLIENT);
    set_attr(&mut reply, "type", Some("error".into()));
    set_attr(&mut reply, "id", stanza.attr("id").map(str::to_string));
    set_attr(&mut reply, "from", stanza.attr("to").map(str::to_string));
    set_attr(&mut reply, "to", stanza.attr("from").map(str::to_string));
    reply.append_child(error_element(type_, condition, text));
    Some(reply)
}

/// A presence from `from` to `to`, of `type_` (none: available).
pub fn presence(from: &str, to: &str, type_: Option<&str>) -> Element {
    let mut p = Element::bare("presence", NS_CLIENT);
    set_attr(&mut p, "from", Some(from.to_string()));
    set_attr(&mut p, "to", Some(to.to_string()));
    set_attr(&mut p, "type", type_.map(str::to_string));
    p
}

/// The namespace of an IQ's payload (its first child element).
pub fn payload_ns(iq: &Element) -> Option<String> {
    iq.children().find(|c| c.name() != "error").map(Element::ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_xml_never_shows_a_password() {
        let plain: Element = "<iq xmlns='jabber:client' type='set' id='r'><query xmlns='jabber:iq:register'><username>me@r.net</username><password>correct horse</password></query></iq>"
            .parse()
            .expect("xml");
        let form: Element = "<iq xmlns='jabber:client' type='set' id='f'><query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'><field var='password'><value>correct horse</value></field></x></query></iq>"
            .parse()
            .expect("xml");
        for el in [&plain, &form] {
            let logged = to_logged_xml(el);
            assert!(!logged.contains("correct horse"), "{logged}");
            assert!(logged.contains("***"), "{logged}");
        }
        assert!(to_logged_xml(&plain).contains("me@r.net"), "the rest stays");
        let chat: Element = "<message xmlns='jabber:client'><body>hi</body></message>"
            .parse()
            .expect("xml");
        assert_eq!(to_logged_xml(&chat), to_xml(&chat));
    }

    #[test]
    fn renames_the_stream_namespace_and_keeps_others() {
        let el: Element = "<message xmlns='jabber:component:accept' to='a@b' xml:lang='en'><body>hi</body><x xmlns='urn:x'><y/></x></message>"
            .parse()
            .expect("xml");
        let client = rename_ns(el, NS_COMPONENT, NS_CLIENT);
        assert_eq!(client.ns(), NS_CLIENT);
        assert_eq!(client.attr("to"), Some("a@b"));
        assert_eq!(
            client.get_child("body", NS_CLIENT).map(Element::text),
            Some("hi".into())
        );
        let x = client
            .get_child("x", "urn:x")
            .expect("foreign payload kept");
        assert!(x.get_child("y", "urn:x").is_some());
        let back = rename_ns(client, NS_CLIENT, NS_COMPONENT);
        assert!(back.get_child("body", NS_COMPONENT).is_some());
    }

    #[test]
    fn error_replies_swap_addresses_and_keep_the_id() {
        let iq: Element = "<iq xmlns='jabber:client' type='get' id='q1' from='a@l/r' to='x@gw'><query xmlns='urn:q'/></iq>"
            .parse()
            .expect("xml");
        let reply = error_reply(&iq, "cancel", "service-unavailable", Some("why")).expect("reply");
        assert_eq!(reply.attr("type"), Some("error"));
        assert_eq!(
            (reply.attr("from"), reply.attr("to"), reply.attr("id")),
            (Some("x@gw"), Some("a@l/r"), Some("q1"))
        );
        let error = reply.get_child("error", NS_CLIENT).expect("error child");
        assert!(error.has_child("service-unavailable", NS_STANZAS));
        assert_eq!(
            error.get_child("text", NS_STANZAS).map(Element::text),
            Some("why".into())
        );
    }

    #[test]
    fn errors_and_results_are_never_answered() {
        for xml in [
            "<message xmlns='jabber:client' type='error'/>",
            "<iq xmlns='jabber:client' type='result' id='1'/>",
            "<iq xmlns='jabber:client' type='error' id='1'/>",
        ] {
            let el: Element = xml.parse().expect("xml");
            assert!(
                error_reply(&el, "cancel", "bad-request", None).is_none(),
                "{xml}"
            );
        }
    }

    #[test]
    fn unknown_conditions_become_undefined_condition() {
        let e = error_element("cancel", "<script>", None);
        assert!(e.has_child("undefined-condition", NS_STANZAS));
    }

    #[test]
    fn policy_stanzas_without_namespace_are_client_stanzas() {
        let el = parse_stanza("<presence><priority>0</priority></presence>").expect("parses");
        assert_eq!(Kind::of(&el), Some(Kind::Presence));
        assert!(el.has_child("priority", NS_CLIENT));
        let iq = parse_stanza("<iq type='get' id='1'><query xmlns='jabber:iq:version'/></iq>")
            .expect("parses");
        assert_eq!(iq.ns(), NS_CLIENT);
        assert!(iq.has_child("query", "jabber:iq:version"));
        assert!(parse_stanza("<stream:features/>").is_err());
        assert!(parse_stanza("<foo xmlns='jabber:client'/>").is_err());
        assert!(parse_stanza("<message/><message/>").is_err());
        assert!(parse_stanza("not xml").is_err());
    }
}
