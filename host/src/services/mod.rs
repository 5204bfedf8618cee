//! T's own services, one XEP a file. Each file holds its handler and the
//! disco#info features it adds ([`features`] assembles them), so that what
//! T announces and what it answers cannot drift apart.

pub mod commands;
pub mod disco;
pub mod gateway;
pub mod ping;
pub mod probe;
pub mod register;
pub mod version;

use crate::account::Handle;
use crate::account::controllers::ProbeWindow;
use crate::policy::{PolicyEngine, reload};
use crate::storage::Storage;
use crate::xmpp::foreign::Dialer;
use crate::xmpp::{NS_CLIENT, error_reply, set_attr};
use jid::BareJid;
use minidom::Element;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::warn;

/// Every feature T announces in disco#info, service by service.
pub fn features() -> impl Iterator<Item = &'static str> {
    [
        disco::FEATURES,
        register::FEATURES,
        gateway::FEATURES,
        ping::FEATURES,
        version::FEATURES,
        commands::FEATURES,
    ]
    .into_iter()
    .flatten()
    .copied()
}

/// What a finished registration tells the router.
#[derive(Debug)]
pub enum Control {
    /// L registered (or registered again): restart its account task.
    Registered(BareJid),
    /// L removed its registration.
    Removed(BareJid),
    /// The link to the local server has been down for the grace period
    /// (which outage, counted by the router).
    GraceOver(u64),
}

/// What T's services work with.
pub struct Services {
    /// T.
    pub gateway: String,
    /// Registrations.
    pub storage: Arc<Storage>,
    /// Stanzas for the local server.
    pub to_local: mpsc::Sender<Element>,
    /// Registrations done and removed, for the router.
    pub control: mpsc::UnboundedSender<Control>,
    /// How the registration's login check reaches a foreign server.
    pub dialer: Dialer,
    /// `[component] admins`.
    pub admins: Vec<BareJid>,
    /// Asks for a policy reload.
    pub reloads: mpsc::Sender<reload::Request>,
    /// The policy sandbox, for its counters.
    pub engine: PolicyEngine,
    /// Opened when T probes registered users.
    pub probes: Arc<ProbeWindow>,
    /// Deadline of the registration's login check.
    pub login_timeout: std::time::Duration,
    /// Stanzas refused because a queue was full, gateway-wide.
    pub overload: Arc<std::sync::atomic::AtomicU64>,
    /// What Prometheus is shown.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The account tasks running, by local account.
pub type Accounts = HashMap<BareJid, Handle>;

impl Services {
    /// Sends a stanza to the local server.
    pub async fn send(&self, el: Element) {
        self.metrics.stanza("to_local", &el);
        if self.to_local.send(el).await.is_err() {
            warn!("component link gone; dropping stanza");
        }
    }

    /// Answers `stanza` with an error, if it may be answered.
    pub async fn reply_error(&self, stanza: &Element, type_: &str, condition: &str, text: &str) {
        if let Some(reply) = error_reply(stanza, type_, condition, Some(text)) {
            self.send(reply).await;
        }
    }

    /// The answer when the registration store fails.
    pub async fn store_unavailable(&self, stanza: &Element) {
        let text = "registration store unavailable";
        self.reply_error(stanza, "wait", "internal-server-error", text)
            .await;
    }

    /// An IQ addressed to T itself, from local account `local`.
    pub async fn iq(self: &Arc<Self>, el: Element, local: BareJid, accounts: &Accounts) {
        let type_ = el.attr("type").unwrap_or("");
        let Some(payload) = el.children().next() else {
            self.reply_error(&el, "modify", "bad-request", "an IQ needs a payload")
                .await;
            return;
        };
        let (ns, name) = (payload.ns(), payload.name().to_string());
        match (type_, ns.as_str(), name.as_str()) {
            ("get", register::NS, "query") => register::form(self, &el, &local).await,
            ("set", register::NS, "query") => register::set(self, el, local).await,
            ("get", gateway::NS, "query") => gateway::prompt(self, &el).await,
            ("set", gateway::NS, "query") => gateway::translate(self, &el).await,
            ("get", disco::NS_INFO, "query") => disco::info(self, &el, &local).await,
            ("get", disco::NS_ITEMS, "query") => disco::items(self, &el, &local).await,
            ("set", commands::NS, "command") => commands::execute(self, el, local, accounts).await,
            ("get", ping::NS, "ping") => ping::pong(self, &el).await,
            ("get", version::NS, "query") => version::answer(self, &el).await,
            _ => {
                let text = "the gateway does not offer this";
                self.reply_error(&el, "cancel", "service-unavailable", text)
                    .await
            }
        }
    }

    /// Whether `local` may use the admin commands.
    pub fn is_admin(&self, local: &BareJid) -> bool {
        self.admins.contains(local)
    }
}

/// The result answering IQ `request`, with `payload` if any.
pub fn result(request: &Element, payload: Option<Element>) -> Element {
    let mut iq = Element::bare("iq", NS_CLIENT);
    set_attr(&mut iq, "type", Some("result".into()));
    set_attr(&mut iq, "id", request.attr("id").map(str::to_string));
    set_attr(&mut iq, "from", request.attr("to").map(str::to_string));
    set_attr(&mut iq, "to", request.attr("from").map(str::to_string));
    if let Some(p) = payload {
        iq.append_child(p);
    }
    iq
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_announces_each_service_s_features_once() {
        let all: Vec<&str> = features().collect();
        for ns in [
            disco::NS_INFO,
            disco::NS_ITEMS,
            register::NS,
            gateway::NS,
            ping::NS,
            version::NS,
            commands::NS,
        ] {
            assert_eq!(all.iter().filter(|f| **f == ns).count(), 1, "{ns}");
        }
        assert_eq!(all.len(), 7);
    }

    #[test]
    fn a_result_answers_its_request() {
        let iq: Element = "<iq xmlns='jabber:client' type='get' id='p1' from='a@example.org/r' to='gw.example.org'><ping xmlns='urn:xmpp:ping'/></iq>"
            .parse()
            .expect("xml");
        let r = result(&iq, None);
        assert_eq!(
            (r.attr("type"), r.attr("id"), r.attr("from"), r.attr("to")),
            (
                Some("result"),
                Some("p1"),
                Some("gw.example.org"),
                Some("a@example.org/r")
            )
        );
        assert_eq!(r.children().count(), 0);
    }
}
