//! XEP-0030: Service Discovery. T's identity and the features its services
//! declare; its items are the ad-hoc commands a user may run.

use super::{Services, commands, features, result};
use jid::{BareJid, Jid};
use minidom::Element;
use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult, Identity, Item};

/// The namespace of disco#info.
pub const NS_INFO: &str = "http://jabber.org/protocol/disco#info";
/// The namespace of disco#items.
pub const NS_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// What T announces for it.
pub const FEATURES: &[&str] = &[NS_INFO, NS_ITEMS];

/// T's own disco#info: the identity `gateway/xmpp` and every service's
/// features.
pub fn info_of_t() -> DiscoInfoResult {
    DiscoInfoResult {
        node: None,
        identities: vec![Identity::new("gateway", "xmpp", "en", "Pizzja")],
        features: features().map(str::to_string).collect(),
        extensions: Vec::new(),
    }
}

/// Answers disco#info: T's own, or a command node's (XEP-0050 section
/// 2.3) for someone who may run it.
pub async fn info(services: &Services, request: &Element, local: &BareJid) {
    let node = request
        .get_child("query", NS_INFO)
        .and_then(|q| q.attr("node"));
    let answer = match node {
        None => info_of_t(),
        Some(node) => match commands::info(node, services.is_admin(local)) {
            Some(info) => info,
            None => {
                let text = "no such node";
                return services
                    .reply_error(request, "cancel", "item-not-found", text)
                    .await;
            }
        },
    };
    services.send(result(request, Some(answer.into()))).await;
}

/// Answers disco#items: the commands node lists the user's commands; T
/// itself has no items.
pub async fn items(services: &Services, request: &Element, local: &BareJid) {
    let node = request
        .get_child("query", NS_ITEMS)
        .and_then(|q| q.attr("node"));
    let answer = match node {
        Some(commands::NS) => {
            let t = Jid::new(&services.gateway).ok();
            DiscoItemsResult {
                node: Some(commands::NS.into()),
                items: commands::available(services.is_admin(local))
                    .filter_map(|(node, name)| {
                        Some(Item {
                            jid: t.clone()?,
                            node: Some(node.into()),
                            name: Some(name.into()),
                        })
                    })
                    .collect(),
                rsm: None,
            }
        }
        _ => DiscoItemsResult {
            node: node.map(str::to_string),
            items: Vec::new(),
            rsm: None,
        },
    };
    services.send(result(request, Some(answer.into()))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_is_a_gateway_with_every_service_s_features() {
        let el: Element = info_of_t().into();
        let identity = el.get_child("identity", NS_INFO).expect("identity");
        assert_eq!(
            (identity.attr("category"), identity.attr("type")),
            (Some("gateway"), Some("xmpp"))
        );
        let vars: Vec<&str> = el
            .children()
            .filter(|c| c.name() == "feature")
            .filter_map(|c| c.attr("var"))
            .collect();
        for ns in features() {
            assert!(vars.contains(&ns), "{ns} missing from {vars:?}");
        }
        assert!(vars.contains(&"jabber:iq:register") && vars.contains(&"urn:xmpp:ping"));
    }
}
