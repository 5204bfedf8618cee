//! Dispatch of everything the local server sends to T: access control
//! (only the configured local domains), then T's own services or the
//! sender's account task, started on first use.

use crate::account::{self, Input};
use crate::services::{self, Accounts, Control, Services, gateway, probe};
use crate::xmpp::{Kind, error_reply, presence};
use jid::{BareJid, Jid};
use minidom::Element;
use std::sync::Arc;
use tracing::{debug, warn};

/// Routes stanzas from the local server to T's services or account tasks.
pub struct Router {
    services: Arc<Services>,
    env: Arc<account::Env>,
    local_domains: Vec<String>,
    accounts: Accounts,
    /// How long foreign sessions outlive a link outage.
    grace: std::time::Duration,
    /// Link outages so far, and whether the link is up.
    outages: u64,
    link_up: bool,
}

impl Router {
    /// A router with no account task running yet.
    pub fn new(
        services: Arc<Services>,
        env: Arc<account::Env>,
        local_domains: Vec<String>,
        grace: std::time::Duration,
    ) -> Router {
        Router {
            services,
            env,
            local_domains,
            accounts: Accounts::new(),
            grace,
            outages: 0,
            link_up: false,
        }
    }

    /// The gateway's domain, T.
    pub fn gateway(&self) -> &str {
        &self.services.gateway
    }

    /// The link is up (first, or again): after a loss, account tasks
    /// re-check their controllers; then every registered user is probed.
    pub fn link_up(&mut self, again: bool) {
        self.link_up = true;
        if again {
            self.accounts.retain(|_, tx| tx.tell(Input::LinkReset));
        }
        probe::probe_registered(&self.services);
    }

    /// The link dropped: foreign sessions stay up for the grace period,
    /// what they receive waiting for the link; after it, accounts let their
    /// controllers go (and so their sessions), until the probes that follow
    /// the link's return bring them back.
    pub fn link_down(&mut self) {
        self.link_up = false;
        self.outages += 1;
        let (outage, grace) = (self.outages, self.grace);
        let control = self.services.control.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = control.send(Control::GraceOver(outage));
        });
    }

    /// Handles what a finished registration or a timer says.
    pub async fn on_control(&mut self, control: Control) {
        match control {
            Control::GraceOver(outage) => {
                if !self.link_up && outage == self.outages {
                    warn!(grace = ?self.grace, "the local server's link is still down; letting controllers go");
                    self.accounts.retain(|_, tx| tx.tell(Input::LinkLost));
                }
            }
            Control::Registered(local) => {
                self.stop_account(&local);
                // XEP-0100 section 4.1.1: the gateway subscribes to the user.
                self.services
                    .send(presence(self.gateway(), local.as_str(), Some("subscribe")))
                    .await;
            }
            Control::Removed(local) => {
                self.stop_account(&local);
                for t in ["unsubscribe", "unsubscribed", "unavailable"] {
                    self.services
                        .send(presence(self.gateway(), local.as_str(), Some(t)))
                        .await;
                }
            }
        }
    }

    fn stop_account(&mut self, local: &BareJid) {
        if let Some(tx) = self.accounts.remove(local) {
            tx.tell(Input::Shutdown);
        }
        self.show_accounts();
    }

    /// Stops every account task (shutdown).
    pub fn stop_all(&mut self) {
        for (_, tx) in self.accounts.drain() {
            tx.tell(Input::Shutdown);
        }
    }

    /// Dispatches one stanza from the local server.
    pub async fn route(&mut self, el: Element) {
        self.env.metrics.stanza("from_local", &el);
        self.dispatch(el).await;
        self.show_accounts();
    }

    /// How many account tasks run, for the metrics.
    fn show_accounts(&self) {
        self.env
            .metrics
            .accounts_running
            .set(self.accounts.len() as i64);
    }

    async fn dispatch(&mut self, el: Element) {
        let Some(kind) = Kind::of(&el) else {
            debug!(name = el.name(), "ignoring a non-stanza element");
            return;
        };
        let type_ = el.attr("type").unwrap_or("").to_string();
        let Some(from) = el.attr("from").and_then(|f| Jid::new(f).ok()) else {
            warn!("dropping a stanza without a valid 'from'");
            return;
        };
        let to = match el.attr("to").map(Jid::new) {
            Some(Ok(to)) => to,
            _ => {
                let text = "the 'to' address is not a valid JID";
                self.services
                    .reply_error(&el, "modify", "jid-malformed", text)
                    .await;
                return;
            }
        };
        if to.domain().as_str() != self.gateway() {
            debug!(%to, "dropping a stanza not addressed to the gateway");
            return;
        }
        // Keepalive answers and other results addressed to T itself.
        if kind == Kind::Iq && (type_ == "result" || type_ == "error") && to.node().is_none() {
            return;
        }
        let local_domain = self
            .local_domains
            .iter()
            .any(|d| d == from.domain().as_str());
        if !local_domain || from.node().is_none() {
            let is_register =
                kind == Kind::Iq && el.get_child("query", services::register::NS).is_some();
            let condition = if is_register {
                "not-allowed"
            } else {
                "forbidden"
            };
            let text = "this gateway serves only accounts of its local domains";
            self.services
                .reply_error(&el, "cancel", condition, text)
                .await;
            return;
        }
        let local = from.to_bare();

        if to.node().is_none() {
            match kind {
                Kind::Iq => return self.services.iq(el, local, &self.accounts).await,
                Kind::Presence
                    if matches!(
                        type_.as_str(),
                        "subscribe" | "subscribed" | "unsubscribe" | "unsubscribed"
                    ) =>
                {
                    return gateway::subscription(&self.services, &el, &local).await;
                }
                _ => {}
            }
        }

        // Unavailable presence for an account with no task: nobody of it is
        // online and it has no session, so there is nothing to decide. (After
        // a restart every offline user answers the probe this way; a task
        // each would hold memory for thousands of idle accounts.)
        if kind == Kind::Presence && type_ == "unavailable" && !self.running(&local) {
            return;
        }
        let tx = match self.account(&local) {
            Ok(Some(tx)) => tx,
            Ok(None) => {
                if kind == Kind::Presence && type_ == "probe" {
                    let p = presence(self.gateway(), local.as_str(), Some("unavailable"));
                    self.services.send(p).await;
                } else if !(kind == Kind::Presence && type_ == "unavailable") {
                    let text = "register with the gateway first";
                    self.services
                        .reply_error(&el, "auth", "registration-required", text)
                        .await;
                }
                return;
            }
            Err(e) => {
                warn!(error = %e, "registration lookup failed");
                self.services.store_unavailable(&el).await;
                return;
            }
        };
        match tx.stanza(el) {
            Ok(()) => {}
            Err(account::NotQueued::Full(el))
                if kind == Kind::Presence && type_ == "unavailable" =>
            {
                // A controller leaving is never refused.
                tx.tell(Input::Presence(el));
            }
            Err(account::NotQueued::Full(el)) => {
                if let Some(total) = account::count_overload(&self.services.overload) {
                    warn!(%local, total, "an account's queue is full; refusing stanzas");
                }
                // Without waiting: the link may be waiting on the router, and
                // a flood's refusals are not worth a stall.
                let text = "the gateway is busy with this account's stanzas; send it again later";
                if let Some(reply) = error_reply(&el, "wait", "resource-constraint", Some(text)) {
                    let _ = self.services.to_local.try_send(reply);
                }
            }
            Err(account::NotQueued::Gone(_)) => {
                // The task ended on its own (it never should); start afresh next time.
                self.accounts.remove(&local);
            }
        }
    }

    fn running(&self, local: &BareJid) -> bool {
        self.accounts.get(local).is_some_and(|tx| !tx.is_closed())
    }

    /// The account's task, started if it is registered and not running.
    fn account(&mut self, local: &BareJid) -> anyhow::Result<Option<account::Handle>> {
        if let Some(tx) = self.accounts.get(local)
            && !tx.is_closed()
        {
            return Ok(Some(tx.clone()));
        }
        let Some(reg) = self.services.storage.get(local)? else {
            return Ok(None);
        };
        debug!(%local, "starting the account task");
        let tx = account::spawn(reg, self.env.clone());
        self.accounts.insert(local.clone(), tx.clone());
        Ok(Some(tx))
    }
}
