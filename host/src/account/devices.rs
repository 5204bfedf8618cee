//! Today's clients (docs/behaviour.md section 10): a local account is
//! several devices with carbons (XEP-0280) and an archive (XEP-0313) on the
//! local server, and F/A must look like a modern client to its contacts.
//!
//! - Each copy the gateway hands a controller is marked so that the local
//!   server copies it to no other resource and archives only one copy of a
//!   stanza ([`mark_copy`]).
//! - An archive query a controller sends through F/A leaves with the
//!   gateway's own `queryid`, so that its result messages find the asker
//!   like an IQ answer does ([`archive_tie`], [`tie_request`],
//!   [`reply_tag`]); a policy may tie other flows the same way.
//! - F/A's available presence carries XEP-0115 capabilities
//!   ([`add_caps`]), and the gateway answers disco#info for them itself
//!   ([`caps_answer`]): that is what makes contacts' servers send PEP
//!   notifications (avatars, nicknames) to F/A.

use super::archive::NS_MAM;
use crate::policy::bindings as wit;
use crate::xmpp::{NS_CLIENT, ncname, set_attr};
use minidom::Element;
use std::sync::LazyLock;
use xmpp_parsers::caps::{Caps, compute_disco, hash_caps};
use xmpp_parsers::disco::{DiscoInfoResult, Identity};
use xmpp_parsers::hashes::Algo;

/// XEP-0280: Message Carbons.
pub const NS_CARBONS: &str = "urn:xmpp:carbons:2";
/// XEP-0334: Message Processing Hints.
pub const NS_HINTS: &str = "urn:xmpp:hints";
/// XEP-0115: Entity Capabilities.
pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";
/// XEP-0030: Service Discovery, info.
pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// The node F/A's capabilities are published under.
pub const CAPS_NODE: &str = "https://pizzja.org/caps";

/// What F/A tells contacts it supports: what controllers use and the
/// gateway passes through untouched, and PEP notifications (`+notify`)
/// for avatars (XEP-0084) and nicknames (XEP-0172).
pub const FEATURES: &[&str] = &[
    NS_CAPS,
    NS_DISCO_INFO,
    "http://jabber.org/protocol/chatstates",
    "http://jabber.org/protocol/nick",
    "http://jabber.org/protocol/nick+notify",
    "urn:xmpp:avatar:metadata+notify",
    "urn:xmpp:chat-markers:0",
    "urn:xmpp:message-correct:0",
    "urn:xmpp:reactions:0",
    "urn:xmpp:receipts",
    "urn:xmpp:reply:0",
];

/// F/A's disco#info, and the XEP-0115 hash of it (computed once).
static CAPS: LazyLock<(DiscoInfoResult, Caps)> = LazyLock::new(|| {
    let info = DiscoInfoResult {
        node: None,
        identities: vec![Identity::new("client", "pc", "", "Pizzja")],
        features: FEATURES.iter().map(|f| f.to_string()).collect(),
        extensions: vec![],
    };
    let hash = hash_caps(&compute_disco(&info), Algo::Sha_1)
        .unwrap_or_else(|e| unreachable!("SHA-1 is always available: {e}"));
    (info.clone(), Caps::new(CAPS_NODE, hash))
});

/// Marks a message the gateway hands to one controller: the local server's
/// carbons must not copy it to the account's other resources (each gets
/// its own copy, or none), and only the `first` copy of a stanza goes to
/// the account's archive.
pub fn mark_copy(message: &mut Element, first: bool) {
    add_once(message, "private", NS_CARBONS);
    add_once(message, "no-copy", NS_HINTS);
    if !first {
        add_once(message, "no-store", NS_HINTS);
    }
}

fn add_once(el: &mut Element, name: &str, ns: &str) {
    if !el.has_child(name, ns) {
        el.append_child(Element::bare(name, ns));
    }
}

/// The tie every archive query gets (XEP-0313): `<query queryid=…/>` in
/// the request, `<result queryid=…/>` in each result message.
pub fn archive_tie() -> wit::RequestTie {
    wit::RequestTie {
        namespace: NS_MAM.into(),
        request: "query".into(),
        reply: "result".into(),
        attribute: "queryid".into(),
    }
}

/// If `iq`'s payload holds the element `tie` names, gives its attribute
/// `tag` (the gateway's id for the request) and returns the asker's own
/// value (none when it had none, so its replies carry none either).
pub fn tie_request(iq: &mut Element, tie: &wit::RequestTie, tag: &str) -> Option<Option<String>> {
    let payload = iq.children_mut().next()?;
    let element = if payload.is(tie.request.as_str(), tie.namespace.as_str()) {
        payload
    } else {
        payload
            .children_mut()
            .find(|c| c.is(tie.request.as_str(), tie.namespace.as_str()))?
    };
    let original = element.attr(tie.attribute.as_str()).map(str::to_string);
    set_attr(element, &tie.attribute, Some(tag.to_string()));
    Some(original)
}

/// The tag a message carries for `tie`, if it carries one.
pub fn reply_tag<'a>(message: &'a Element, tie: &'a wit::RequestTie) -> Option<&'a str> {
    message
        .get_child(tie.reply.as_str(), tie.namespace.as_str())?
        .attr(tie.attribute.as_str())
}

/// Puts the asker's own value back on a tied message.
pub fn restore_tag(message: &mut Element, tie: &wit::RequestTie, original: Option<String>) {
    if let Some(reply) = message
        .children_mut()
        .find(|c| c.is(tie.reply.as_str(), tie.namespace.as_str()))
    {
        set_attr(reply, &tie.attribute, original);
    }
}

/// Adds F/A's capabilities to an available presence it sends.
pub fn add_caps(presence: &mut Element) {
    if presence.name() == "presence"
        && presence.attr("type").is_none()
        && !presence.has_child("c", NS_CAPS)
    {
        presence.append_child(Element::from(CAPS.1.clone()));
    }
}

/// The answer to a disco#info request for F/A's capabilities node
/// (`node#ver`), if `iq` is one; other disco#info requests are the
/// controllers' to answer.
pub fn caps_answer(iq: &Element) -> Option<Element> {
    if iq.name() != "iq" || iq.attr("type") != Some("get") {
        return None;
    }
    let query = iq.get_child("query", NS_DISCO_INFO)?;
    let (info, caps) = &*CAPS;
    let node = format!("{CAPS_NODE}#{}", base64_ver(caps));
    if query.attr("node") != Some(node.as_str()) {
        return None;
    }
    let mut answer = DiscoInfoResult {
        node: Some(node),
        ..info.clone()
    };
    answer.extensions.clear();
    let mut reply = Element::builder("iq", NS_CLIENT)
        .attr(ncname("type"), "result")
        .append(Element::from(answer))
        .build();
    set_attr(&mut reply, "id", iq.attr("id").map(str::to_string));
    set_attr(&mut reply, "to", iq.attr("from").map(str::to_string));
    Some(reply)
}

/// The `ver` attribute of F/A's caps, as it appears on the wire.
fn base64_ver(caps: &Caps) -> String {
    Element::from(caps.clone())
        .attr("ver")
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        xml.parse().expect("test XML")
    }

    #[test]
    fn every_copy_is_private_and_only_the_first_is_archived() {
        let mut first = parse("<message xmlns='jabber:client'><body>hi</body></message>");
        let mut second = first.clone();
        mark_copy(&mut first, true);
        mark_copy(&mut second, false);
        for m in [&first, &second] {
            assert!(m.has_child("private", NS_CARBONS));
            assert!(m.has_child("no-copy", NS_HINTS));
        }
        assert!(!first.has_child("no-store", NS_HINTS));
        assert!(second.has_child("no-store", NS_HINTS));
        // Marking twice adds nothing twice.
        mark_copy(&mut second, false);
        assert_eq!(second.children().count(), 4);
    }

    #[test]
    fn an_archive_query_leaves_with_the_gateway_s_queryid_and_results_get_the_asker_s_back() {
        let mam = archive_tie();
        let mut iq = parse(
            "<iq xmlns='jabber:client' type='set' id='q'><query xmlns='urn:xmpp:mam:2' queryid='mine'/></iq>",
        );
        assert_eq!(
            tie_request(&mut iq, &mam, "pz-7"),
            Some(Some("mine".into()))
        );
        assert_eq!(
            iq.get_child("query", NS_MAM)
                .and_then(|q| q.attr("queryid")),
            Some("pz-7")
        );
        let mut result = parse(
            "<message xmlns='jabber:client'><result xmlns='urn:xmpp:mam:2' queryid='pz-7' id='1'/></message>",
        );
        assert_eq!(reply_tag(&result, &mam), Some("pz-7"));
        restore_tag(&mut result, &mam, Some("mine".into()));
        assert_eq!(reply_tag(&result, &mam), Some("mine"));
        // Without a queryid of its own, the asker's results carry none.
        restore_tag(&mut result, &mam, None);
        assert_eq!(reply_tag(&result, &mam), None);
        let mut other = parse(
            "<iq xmlns='jabber:client' type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>",
        );
        assert_eq!(tie_request(&mut other, &mam, "pz-8"), None);
    }

    #[test]
    fn a_policy_s_tie_finds_its_element_in_the_payload_or_just_under_it() {
        let tie = wit::RequestTie {
            namespace: "urn:example:search".into(),
            request: "search".into(),
            reply: "hit".into(),
            attribute: "tag".into(),
        };
        let mut iq = parse(
            "<iq xmlns='jabber:client' type='set' id='s'><x xmlns='urn:example:wrap'><search xmlns='urn:example:search'/></x></iq>",
        );
        assert_eq!(tie_request(&mut iq, &tie, "pz-9"), Some(None));
        let hit = parse(
            "<message xmlns='jabber:client'><hit xmlns='urn:example:search' tag='pz-9'/></message>",
        );
        assert_eq!(reply_tag(&hit, &tie), Some("pz-9"));
    }

    #[test]
    fn available_presence_carries_caps_and_their_disco_info_is_answered_here() {
        let mut p = parse("<presence xmlns='jabber:client'/>");
        add_caps(&mut p);
        let c = p.get_child("c", NS_CAPS).expect("caps").clone();
        assert_eq!(c.attr("node"), Some(CAPS_NODE));
        assert_eq!(c.attr("hash"), Some("sha-1"));
        let ver = c.attr("ver").expect("ver").to_string();
        let mut gone = parse("<presence xmlns='jabber:client' type='unavailable'/>");
        add_caps(&mut gone);
        assert!(!gone.has_child("c", NS_CAPS));

        let ask = parse(&format!(
            "<iq xmlns='jabber:client' type='get' id='d' from='bob@remote.net/x'><query xmlns='{NS_DISCO_INFO}' node='{CAPS_NODE}#{ver}'/></iq>"
        ));
        let answer = caps_answer(&ask).expect("answered");
        assert_eq!(answer.attr("to"), Some("bob@remote.net/x"));
        assert_eq!(answer.attr("id"), Some("d"));
        let info = DiscoInfoResult::try_from(
            answer
                .get_child("query", NS_DISCO_INFO)
                .expect("a query")
                .clone(),
        )
        .expect("a disco#info result");
        // What is answered hashes to what is advertised (XEP-0115 5.1).
        let again = hash_caps(&compute_disco(&info), Algo::Sha_1).expect("hash");
        assert_eq!(base64_ver(&Caps::new(CAPS_NODE, again)), ver);
        assert!(info.features.contains("urn:xmpp:avatar:metadata+notify"));
        assert!(
            info.features
                .contains("http://jabber.org/protocol/nick+notify")
        );

        let plain = parse(&format!(
            "<iq xmlns='jabber:client' type='get' id='e'><query xmlns='{NS_DISCO_INFO}'/></iq>"
        ));
        assert!(caps_answer(&plain).is_none(), "the controllers answer that");
    }
}
