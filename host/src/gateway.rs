//! The gateway entity T: dispatch of everything the local server sends,
//! T's own services (XEP-0077 registration, XEP-0100 handshake and JID
//! translation, disco, ping, version) and access control.

use crate::account::{self, Input};
use crate::config::{Config, Secret};
use crate::policy::PolicyEngine;
use crate::storage::{KeptSalted, Registration, Storage};
use crate::xmpp::foreign::{Connector, LoginSecret, check_credentials};
use crate::xmpp::scram::SaltedCache;
use crate::xmpp::{Kind, NS_CLIENT, error_reply, set_attr};
use jid::{BareJid, Jid};
use minidom::Element;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tracing::{debug, info, warn};

const NS_REGISTER: &str = "jabber:iq:register";
const NS_GATEWAY: &str = "jabber:iq:gateway";
const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const NS_PING: &str = "urn:xmpp:ping";
const NS_VERSION: &str = "jabber:iq:version";
const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";
const NS_DATA: &str = "jabber:x:data";

/// What every part of the gateway shares.
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// Registrations (and policy state).
    pub storage: Arc<Storage>,
    /// The policy sandbox.
    pub engine: PolicyEngine,
    /// Stanzas for the local server (the component link).
    pub to_local: mpsc::Sender<Element>,
    /// TLS roots for foreign sessions.
    pub tls: Arc<rustls::ClientConfig>,
    /// Asks for a policy reload (file watch, SIGHUP, admins).
    pub reloads: mpsc::Sender<crate::policy::reload::Request>,
    /// Foreign login slots (`[foreign] max_concurrent_logins`).
    pub logins: Arc<tokio::sync::Semaphore>,
    /// SCRAM salted passwords derived and reused by foreign logins.
    pub scram: Arc<crate::xmpp::scram::Counters>,
    /// Salted passwords for the database (see [`crate::keep_salted`]).
    pub keep_salted: mpsc::UnboundedSender<crate::storage::KeptSalted>,
    /// Until when the local server may still be answering T's probes: a
    /// stanza from a controller not confirmed yet waits for its presence
    /// until then.
    pub confirm_until: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Shared {
    /// Whether the answers to T's probes may still be on their way.
    pub fn confirming(&self) -> bool {
        let until = *self.confirm_until.lock().unwrap_or_else(|p| p.into_inner());
        until.is_some_and(|u| std::time::Instant::now() < u)
    }

    /// The probes' answers may come for another grace period from now.
    fn confirm_from_now(&self) {
        let until = std::time::Instant::now() + crate::account::CONFIRM_GRACE;
        *self.confirm_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(until);
    }

    /// How to reach a foreign domain.
    pub fn connector_for(&self, domain: &str) -> Connector {
        Connector {
            addr: self.config.foreign_hosts.get(domain).copied(),
            tls: self.config.foreign_tls,
            tls_config: self.tls.clone(),
        }
    }
}

/// What finished registrations tell the router.
#[derive(Debug)]
pub enum Control {
    /// L registered (or registered again): restart its account task.
    Registered(BareJid),
    /// L removed its registration.
    Removed(BareJid),
}

/// Routes stanzas from the local server to T's services or account tasks.
pub struct Router {
    shared: Arc<Shared>,
    accounts: HashMap<BareJid, mpsc::UnboundedSender<Input>>,
    control: mpsc::UnboundedSender<Control>,
}

impl Router {
    /// A router with no account task running yet.
    pub fn new(shared: Arc<Shared>, control: mpsc::UnboundedSender<Control>) -> Router {
        Router {
            shared,
            accounts: HashMap::new(),
            control,
        }
    }

    /// The gateway's domain, T.
    pub fn gateway(&self) -> &str {
        &self.shared.config.jid
    }

    async fn send(&self, el: Element) {
        if self.shared.to_local.send(el).await.is_err() {
            warn!("component link gone; dropping stanza");
        }
    }

    async fn reply_error(&self, stanza: &Element, type_: &str, condition: &str, text: &str) {
        if let Some(reply) = error_reply(stanza, type_, condition, Some(text)) {
            self.send(reply).await;
        }
    }

    /// SPEC section 2: on start (and after the link comes back) T probes
    /// every registered user, so sessions come back for controllers online.
    /// The probes go out from a task of their own: the router must keep
    /// reading what the link receives meanwhile (the answers), or with
    /// thousands of users both queues fill and the link and the router wait
    /// on each other for ever.
    pub fn probe_registered(&self) {
        let shared = self.shared.clone();
        shared.confirm_from_now();
        tokio::spawn(async move {
            let locals = match shared.storage.locals() {
                Ok(l) => l,
                Err(e) => {
                    warn!(error = %e, "could not list registrations to probe");
                    return;
                }
            };
            info!(count = locals.len(), "probing registered users");
            for local in locals {
                let probe = presence(&shared.config.jid, local.as_str(), Some("probe"));
                if shared.to_local.send(probe).await.is_err() {
                    return;
                }
            }
            // The last answers come a little after the last probe.
            shared.confirm_from_now();
        });
    }

    /// Handles what a finished registration says.
    pub async fn on_control(&mut self, control: Control) {
        match control {
            Control::Registered(local) => {
                self.stop_account(&local);
                // XEP-0100 section 4.1.1: the gateway subscribes to the user.
                self.send(presence(self.gateway(), local.as_str(), Some("subscribe")))
                    .await;
            }
            Control::Removed(local) => {
                self.stop_account(&local);
                for t in ["unsubscribe", "unsubscribed", "unavailable"] {
                    self.send(presence(self.gateway(), local.as_str(), Some(t)))
                        .await;
                }
            }
        }
    }

    fn stop_account(&mut self, local: &BareJid) {
        if let Some(tx) = self.accounts.remove(local) {
            let _ = tx.send(Input::Shutdown);
        }
    }

    /// The link came back after a loss: account tasks re-check controllers.
    pub fn link_reset(&mut self) {
        self.accounts
            .retain(|_, tx| tx.send(Input::LinkReset).is_ok());
    }

    /// Stops every account task (shutdown).
    pub fn stop_all(&mut self) {
        for (_, tx) in self.accounts.drain() {
            let _ = tx.send(Input::Shutdown);
        }
    }

    /// Dispatches one stanza from the local server.
    pub async fn route(&mut self, el: Element) {
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
                self.reply_error(
                    &el,
                    "modify",
                    "jid-malformed",
                    "the 'to' address is not a valid JID",
                )
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
            .shared
            .config
            .local_domains
            .iter()
            .any(|d| d == from.domain().as_str());
        if !local_domain || from.node().is_none() {
            let is_register = kind == Kind::Iq && el.get_child("query", NS_REGISTER).is_some();
            let condition = if is_register {
                "not-allowed"
            } else {
                "forbidden"
            };
            self.reply_error(
                &el,
                "cancel",
                condition,
                "this gateway serves only accounts of its local domains",
            )
            .await;
            return;
        }
        let local = from.to_bare();

        if to.node().is_none() {
            match kind {
                Kind::Iq => return self.gateway_iq(el, local).await,
                Kind::Presence
                    if matches!(
                        type_.as_str(),
                        "subscribe" | "subscribed" | "unsubscribe" | "unsubscribed"
                    ) =>
                {
                    return self.gateway_subscription(&el, &local, &type_).await;
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
                    self.send(presence(
                        self.gateway(),
                        local.as_str(),
                        Some("unavailable"),
                    ))
                    .await;
                } else if !(kind == Kind::Presence && type_ == "unavailable") {
                    self.reply_error(
                        &el,
                        "auth",
                        "registration-required",
                        "register with the gateway first",
                    )
                    .await;
                }
                return;
            }
            Err(e) => {
                warn!(error = %e, "registration lookup failed");
                self.store_unavailable(&el).await;
                return;
            }
        };
        if tx.send(Input::Local(el)).is_err() {
            // The task ended on its own (it never should); start afresh next time.
            self.accounts.remove(&local);
        }
    }

    fn running(&self, local: &BareJid) -> bool {
        self.accounts.get(local).is_some_and(|tx| !tx.is_closed())
    }

    fn account(&mut self, local: &BareJid) -> anyhow::Result<Option<mpsc::UnboundedSender<Input>>> {
        if let Some(tx) = self.accounts.get(local)
            && !tx.is_closed()
        {
            return Ok(Some(tx.clone()));
        }
        let Some(reg) = self.shared.storage.get(local)? else {
            return Ok(None);
        };
        let tx = account::spawn(reg, self.shared.clone());
        self.accounts.insert(local.clone(), tx.clone());
        Ok(Some(tx))
    }

    async fn gateway_subscription(&self, el: &Element, local: &BareJid, type_: &str) {
        if type_ != "subscribe" {
            return;
        }
        // XEP-0100 section 4.1.1: approve the registered user's subscription.
        let registered = matches!(self.shared.storage.get(local), Ok(Some(_)));
        let answer = if registered {
            "subscribed"
        } else {
            "unsubscribed"
        };
        let mut p = presence(self.gateway(), local.as_str(), Some(answer));
        set_attr(&mut p, "id", el.attr("id").map(str::to_string));
        self.send(p).await;
        if registered {
            self.send(presence(self.gateway(), local.as_str(), None))
                .await;
        }
    }

    async fn gateway_iq(&self, el: Element, local: BareJid) {
        let type_ = el.attr("type").unwrap_or("");
        let Some(payload) = el.children().next() else {
            self.reply_error(&el, "modify", "bad-request", "an IQ needs a payload")
                .await;
            return;
        };
        match (type_, payload.ns().as_str(), payload.name()) {
            ("get", NS_REGISTER, "query") => self.register_form(&el, &local).await,
            ("set", NS_REGISTER, "query") => self.register_set(el, local).await,
            ("get", NS_GATEWAY, "query") => {
                let query = Element::builder("query", NS_GATEWAY)
                    .append(text_el(
                        "desc",
                        NS_GATEWAY,
                        "Enter the address of a contact on the foreign network",
                    ))
                    .append(text_el("prompt", NS_GATEWAY, "XMPP address"))
                    .build();
                self.send(result(&el, Some(query))).await;
            }
            ("set", NS_GATEWAY, "query") => {
                let prompt = payload
                    .get_child("prompt", NS_GATEWAY)
                    .map(Element::text)
                    .unwrap_or_default();
                match BareJid::new(prompt.trim()) {
                    Ok(j) => {
                        let translated =
                            format!("{}@{}", pizzja_sdk::escape(j.as_str()), self.gateway());
                        // XEP-0100 section 6.3: <jid/> (older clients read <prompt/>).
                        let query = Element::builder("query", NS_GATEWAY)
                            .append(text_el("jid", NS_GATEWAY, translated.clone()))
                            .append(text_el("prompt", NS_GATEWAY, translated))
                            .build();
                        self.send(result(&el, Some(query))).await;
                    }
                    Err(_) => {
                        self.reply_error(&el, "modify", "jid-malformed", "not a bare JID")
                            .await
                    }
                }
            }
            ("get", NS_DISCO_INFO, "query") if payload.attr("node").is_none() => {
                let mut query = Element::builder("query", NS_DISCO_INFO)
                    .append(
                        Element::builder("identity", NS_DISCO_INFO)
                            .attr(nc("category"), "gateway")
                            .attr(nc("type"), "xmpp")
                            .attr(nc("name"), "Pizzja")
                            .build(),
                    )
                    .build();
                for var in [
                    NS_DISCO_INFO,
                    NS_DISCO_ITEMS,
                    NS_REGISTER,
                    NS_GATEWAY,
                    NS_PING,
                    NS_VERSION,
                    NS_COMMANDS,
                ] {
                    query.append_child(
                        Element::builder("feature", NS_DISCO_INFO)
                            .attr(nc("var"), var)
                            .build(),
                    );
                }
                self.send(result(&el, Some(query))).await;
            }
            ("get", NS_DISCO_ITEMS, "query") if payload.attr("node") == Some(NS_COMMANDS) => {
                let mut query = Element::builder("query", NS_DISCO_ITEMS)
                    .attr(nc("node"), NS_COMMANDS)
                    .build();
                for (node, name) in self.commands_for(&local) {
                    query.append_child(
                        Element::builder("item", NS_DISCO_ITEMS)
                            .attr(nc("jid"), self.gateway())
                            .attr(nc("node"), node)
                            .attr(nc("name"), name)
                            .build(),
                    );
                }
                self.send(result(&el, Some(query))).await;
            }
            ("get", NS_DISCO_ITEMS, "query") => {
                self.send(result(&el, Some(Element::bare("query", NS_DISCO_ITEMS))))
                    .await;
            }
            ("set", NS_COMMANDS, "command") => self.command(el, local).await,
            ("get", NS_PING, "ping") => self.send(result(&el, None)).await,
            ("get", NS_VERSION, "query") => {
                let query = Element::builder("query", NS_VERSION)
                    .append(text_el("name", NS_VERSION, "Pizzja"))
                    .append(text_el("version", NS_VERSION, env!("CARGO_PKG_VERSION")))
                    .build();
                self.send(result(&el, Some(query))).await;
            }
            _ => {
                self.reply_error(
                    &el,
                    "cancel",
                    "service-unavailable",
                    "the gateway does not offer this",
                )
                .await
            }
        }
    }

    async fn store_unavailable(&self, stanza: &Element) {
        self.reply_error(
            stanza,
            "wait",
            "internal-server-error",
            "registration store unavailable",
        )
        .await;
    }

    fn is_admin(&self, local: &BareJid) -> bool {
        self.shared.config.admins.contains(local)
    }

    /// XEP-0050 commands this user may run: (node, name).
    fn commands_for(&self, local: &BareJid) -> Vec<(&'static str, &'static str)> {
        let mut commands = vec![("sessions", "Show my foreign sessions")];
        if self.is_admin(local) {
            commands.push(("reload-policy", "Reload the policy module"));
            commands.push(("list-sessions", "List all accounts and sessions"));
            commands.push(("stats", "Show the gateway's counters"));
        }
        commands
    }

    /// XEP-0050: executes a one-stage command; the answer is a completed
    /// command with a note. Runs off the router's path (it waits for
    /// account tasks or a reload).
    async fn command(&self, el: Element, local: BareJid) {
        let Some(cmd) = el.get_child("command", NS_COMMANDS) else {
            return;
        };
        let node = cmd.attr("node").unwrap_or("").to_string();
        if cmd
            .attr("action")
            .is_some_and(|a| a != "execute" && a != "complete")
        {
            return self
                .reply_error(
                    &el,
                    "modify",
                    "bad-request",
                    "these commands have one stage",
                )
                .await;
        }
        if !self.commands_for(&local).iter().any(|(n, _)| *n == node) {
            let known =
                ["sessions", "reload-policy", "list-sessions", "stats"].contains(&node.as_str());
            let (condition, text) = if known {
                ("forbidden", "admins only")
            } else {
                ("item-not-found", "no such command")
            };
            return self.reply_error(&el, "cancel", condition, text).await;
        }
        let accounts: Vec<(BareJid, mpsc::UnboundedSender<Input>)> = match node.as_str() {
            "sessions" => self
                .accounts
                .get(&local)
                .map(|tx| (local.clone(), tx.clone()))
                .into_iter()
                .collect(),
            "list-sessions" => self
                .accounts
                .iter()
                .map(|(l, tx)| (l.clone(), tx.clone()))
                .collect(),
            _ => Vec::new(),
        };
        let shared = self.shared.clone();
        let accounts_online = self.accounts.len();
        tokio::spawn(async move {
            let (kind, note) = match node.as_str() {
                "reload-policy" => reload_for_admin(&shared, &local).await,
                "stats" => ("info", stats_of(&shared, accounts_online)),
                _ => ("info", status_of(accounts).await),
            };
            let mut reply = result(&el, None);
            let mut command = Element::builder("command", NS_COMMANDS)
                .attr(nc("node"), node.as_str())
                .attr(nc("status"), "completed")
                .attr(nc("sessionid"), el.attr("id").unwrap_or("s"))
                .build();
            command.append_child(
                Element::builder("note", NS_COMMANDS)
                    .attr(nc("type"), kind)
                    .append(note)
                    .build(),
            );
            reply.append_child(command);
            let _ = shared.to_local.send(reply).await;
        });
    }

    /// XEP-0077 section 3.1: the form, or what is registered.
    async fn register_form(&self, el: &Element, local: &BareJid) {
        let mut query = Element::bare("query", NS_REGISTER);
        match self.shared.storage.get(local) {
            Ok(Some(reg)) => {
                query.append_child(Element::bare("registered", NS_REGISTER));
                query.append_child(text_el("username", NS_REGISTER, reg.foreign.to_string()));
            }
            Ok(None) => {
                query.append_child(
                    text_el("instructions", NS_REGISTER, "Enter the address (user@domain) and password of the account this gateway should connect to."),
                );
                query.append_child(Element::bare("username", NS_REGISTER));
                query.append_child(Element::bare("password", NS_REGISTER));
                let field = |var: &str, type_: &str, label: &str| {
                    Element::builder("field", NS_DATA)
                        .attr(nc("var"), var)
                        .attr(nc("type"), type_)
                        .attr(nc("label"), label)
                        .append(Element::bare("required", NS_DATA))
                        .build()
                };
                let form = Element::builder("x", NS_DATA)
                    .attr(nc("type"), "form")
                    .append(text_el("title", NS_DATA, "Register a foreign account"))
                    .append(field(
                        "username",
                        "text-single",
                        "Foreign address (user@domain)",
                    ))
                    .append(field("password", "text-private", "Password"))
                    .build();
                query.append_child(form);
            }
            Err(e) => {
                warn!(error = %e, "registration lookup failed");
                return self.store_unavailable(el).await;
            }
        }
        self.send(result(el, Some(query))).await;
    }

    /// XEP-0077 sections 3.1 and 3.2: register (checked by a real login),
    /// or remove.
    async fn register_set(&self, el: Element, local: BareJid) {
        let Some(query) = el.get_child("query", NS_REGISTER) else {
            return;
        };
        if query.has_child("remove", NS_REGISTER) {
            match self.shared.storage.remove(&local) {
                Ok(true) => {
                    info!(%local, "registration removed");
                    self.send(result(&el, None)).await;
                    let _ = self.control.send(Control::Removed(local));
                }
                Ok(false) => {
                    self.reply_error(&el, "cancel", "item-not-found", "not registered")
                        .await
                }
                Err(e) => {
                    warn!(error = %e, "removing a registration failed");
                    self.store_unavailable(&el).await;
                }
            }
            return;
        }
        let (username, password) = registration_fields(query);
        let (Some(username), Some(password)) = (username, password) else {
            return self
                .reply_error(
                    &el,
                    "modify",
                    "not-acceptable",
                    "username and password are required",
                )
                .await;
        };
        let foreign = match BareJid::new(username.trim()) {
            Ok(j) if j.node().is_some() => j,
            _ => {
                return self
                    .reply_error(
                        &el,
                        "modify",
                        "jid-malformed",
                        "the username must be a bare JID user@domain",
                    )
                    .await;
            }
        };
        let password = Secret(password);
        let shared = self.shared.clone();
        let control = self.control.clone();
        // The login check takes a while: off the router's path.
        tokio::spawn(async move {
            let connector = shared.connector_for(foreign.domain().as_str());
            let secret = LoginSecret {
                password,
                salted: SaltedCache::new(None, shared.scram.clone(), |_| {}),
            };
            let check = check_credentials(
                &connector,
                &Jid::from(foreign.clone()),
                &secret,
                shared.config.login_timeout,
            )
            .await;
            let reply = match check {
                Ok(()) => {
                    let reg = Registration {
                        local: local.clone(),
                        foreign: foreign.clone(),
                        password: secret.password.clone(),
                    };
                    match shared.storage.put(&reg) {
                        Ok(()) => {
                            // The check's login derived the salted password:
                            // kept now, the first session does not derive it
                            // again.
                            if let Some(salted) = secret.salted.current() {
                                let kept = KeptSalted {
                                    registration: reg.clone(),
                                    salted,
                                };
                                if let Err(e) = shared.storage.keep_salted_passwords(&[kept]) {
                                    warn!(error = %format!("{e:#}"), "could not keep the salted password; the session derives it again");
                                }
                            }
                            info!(%local, %foreign, "registered");
                            let _ = control.send(Control::Registered(local));
                            result(&el, None)
                        }
                        Err(e) => {
                            warn!(error = %e, "storing a registration failed");
                            error_reply(
                                &el,
                                "wait",
                                "internal-server-error",
                                Some("could not store the registration"),
                            )
                            .unwrap_or_else(|| result(&el, None))
                        }
                    }
                }
                Err(failure) => {
                    info!(%local, %foreign, %failure, "registration refused");
                    let type_ = if failure.condition() == "not-authorized" {
                        "auth"
                    } else {
                        "wait"
                    };
                    let text = failure.to_string();
                    error_reply(&el, type_, failure.condition(), Some(&text))
                        .unwrap_or_else(|| result(&el, None))
                }
            };
            let _ = shared.to_local.send(reply).await;
        });
    }
}

/// `<name xmlns=ns>text</name>`
fn text_el(name: &str, ns: &str, text: impl Into<String>) -> Element {
    Element::builder(name, ns).append(text.into()).build()
}

/// Asks the reload task, and says how it went, for the admin who asked.
async fn reload_for_admin(shared: &Arc<Shared>, admin: &BareJid) -> (&'static str, String) {
    use crate::policy::PolicyEvent;
    let (reply, outcome) = tokio::sync::oneshot::channel();
    let request = crate::policy::reload::Request {
        origin: "admin command",
        reply: Some(reply),
    };
    if shared.reloads.send(request).await.is_err() {
        return ("error", "the reload task is gone".into());
    }
    info!(%admin, "policy reload requested by an admin");
    match outcome.await {
        Ok(Ok(PolicyEvent::Loaded { name, hash })) => {
            ("info", format!("policy {name} loaded (sha1 {hash})"))
        }
        Ok(Ok(PolicyEvent::Unchanged { hash })) => (
            "info",
            format!("policy unchanged (sha1 {hash}); nothing to do"),
        ),
        Ok(Ok(other)) => ("info", format!("{other:?}")),
        Ok(Err(error)) => (
            "error",
            format!("policy refused; the running one stays: {error}"),
        ),
        Err(_) => ("error", "the reload task did not answer".into()),
    }
}

/// Each account's status, from its task.
async fn status_of(accounts: Vec<(BareJid, mpsc::UnboundedSender<Input>)>) -> String {
    let mut lines = Vec::new();
    for (local, tx) in accounts {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if tx.send(Input::Status(reply)).is_ok()
            && let Ok(status) = answer.await
        {
            lines.push(status);
        } else {
            lines.push(format!("{local}: stopped"));
        }
    }
    if lines.is_empty() {
        "no foreign sessions".to_string()
    } else {
        lines.join("\n")
    }
}

fn nc(name: &str) -> rxml::NcName {
    rxml::NcName::try_from(name).expect("static attribute names are NCNames")
}

/// Username and password from the plain fields or from the data form.
fn registration_fields(query: &Element) -> (Option<String>, Option<String>) {
    let plain = |name: &str| {
        query
            .get_child(name, NS_REGISTER)
            .map(Element::text)
            .filter(|s| !s.is_empty())
    };
    let form = |var: &str| {
        query.get_child("x", NS_DATA).and_then(|x| {
            x.children()
                .find(|f| f.name() == "field" && f.attr("var") == Some(var))
                .and_then(|f| f.get_child("value", NS_DATA))
                .map(Element::text)
        })
    };
    (
        plain("username").or_else(|| form("username")),
        plain("password").or_else(|| form("password")),
    )
}

fn presence(from: &str, to: &str, type_: Option<&str>) -> Element {
    let mut p = Element::bare("presence", NS_CLIENT);
    set_attr(&mut p, "from", Some(from.to_string()));
    set_attr(&mut p, "to", Some(to.to_string()));
    set_attr(&mut p, "type", type_.map(str::to_string));
    p
}

fn result(request: &Element, payload: Option<Element>) -> Element {
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

/// The admin `stats` command's note: one `name: value` per line, so that
/// people and scripts (the benchmark suite) can both read it.
fn stats_of(shared: &Shared, accounts_running: usize) -> String {
    let policy = shared.engine.stats();
    let registered = shared.storage.count().unwrap_or(0);
    let (derived, reused) = shared.scram.read();
    format!(
        "registered: {registered}\naccounts-running: {accounts_running}\nlogins-in-flight: {}\nscram-keys-derived: {derived}\nscram-keys-reused: {reused}\npolicy-decisions: {}\npolicy-cpu-us: {}",
        shared.config.max_concurrent_logins - shared.logins.available_permits(),
        policy.decisions,
        policy.cpu_ns / 1000,
    )
}
