//! XEP-0100: Gateway Interaction. JID translation (`jabber:iq:gateway`)
//! and the subscription handshake between T and its registered users.

use super::{Services, result};
use crate::xmpp::{presence, set_attr};
use jid::BareJid;
use minidom::Element;

/// The namespace of JID translation.
pub const NS: &str = "jabber:iq:gateway";
/// What T announces for it.
pub const FEATURES: &[&str] = &[NS];

fn text_el(name: &str, text: impl Into<String>) -> Element {
    Element::builder(name, NS).append(text.into()).build()
}

/// XEP-0100 section 6.3: the description and prompt of the translation.
pub async fn prompt(services: &Services, request: &Element) {
    let query = Element::builder("query", NS)
        .append(text_el(
            "desc",
            "Enter the address of a contact on the foreign network",
        ))
        .append(text_el("prompt", "XMPP address"))
        .build();
    services.send(result(request, Some(query))).await;
}

/// `esc(J)@T` for the bare JID a user gave, or `None` when it is not one.
pub fn translated(prompt: &str, gateway: &str) -> Option<String> {
    let j = BareJid::new(prompt.trim()).ok()?;
    Some(format!("{}@{gateway}", pizzja_sdk::escape(j.as_str())))
}

/// XEP-0100 section 6.3: a contact's address translated to T's.
pub async fn translate(services: &Services, request: &Element) {
    let prompt = request
        .get_child("query", NS)
        .and_then(|q| q.get_child("prompt", NS))
        .map(Element::text)
        .unwrap_or_default();
    match translated(&prompt, &services.gateway) {
        Some(jid) => {
            // <jid/>, and <prompt/> for older clients that read that.
            let query = Element::builder("query", NS)
                .append(text_el("jid", jid.clone()))
                .append(text_el("prompt", jid))
                .build();
            services.send(result(request, Some(query))).await;
        }
        None => {
            services
                .reply_error(request, "modify", "jid-malformed", "not a bare JID")
                .await
        }
    }
}

/// XEP-0100 section 4.1.1: a registered user's subscription to T is
/// approved (and T shows itself available); anyone else's is refused.
/// Other subscription presences need no answer.
pub async fn subscription(services: &Services, request: &Element, local: &BareJid) {
    if request.attr("type") != Some("subscribe") {
        return;
    }
    let registered = matches!(services.storage.get(local), Ok(Some(_)));
    let answer = if registered {
        "subscribed"
    } else {
        "unsubscribed"
    };
    let mut p = presence(&services.gateway, local.as_str(), Some(answer));
    set_attr(&mut p, "id", request.attr("id").map(str::to_string));
    services.send(p).await;
    if registered {
        services
            .send(presence(&services.gateway, local.as_str(), None))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_jid_translates_to_its_escaped_gateway_address() {
        assert_eq!(
            translated(" bob@remote.net ", "gw.example.org").as_deref(),
            Some("bob\\40remote.net@gw.example.org")
        );
        assert_eq!(
            translated("remote.net", "gw.example.org").as_deref(),
            Some("remote.net@gw.example.org")
        );
        assert_eq!(translated("not a jid@@", "gw.example.org"), None);
        assert_eq!(translated("bob@remote.net/res", "gw.example.org"), None);
    }
}
