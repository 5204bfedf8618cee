//! One task per registered local account: it keeps the account's facts,
//! asks the policy about each event in order, and applies the actions
//! under the host's invariants (SPEC section 8):
//!
//! - stanzas leave only through this account's own foreign sessions (the
//!   only sessions this task can name);
//! - stanzas reach only this account: every local `to` is built here from
//!   the account's bare JID;
//! - everything sent to the local server is from T or a JID under T: every
//!   local `from` is built here from T;
//! - the password stays in [`Registration`], which the policy never sees.

use crate::gateway::Shared;
use crate::policy::bindings as wit;
use crate::storage::{KeptSalted, Registration};
use crate::xmpp::foreign::{
    self, Command, LoginFailure, LoginSecret, Outgoing, Report, SessionParams,
};
use crate::xmpp::scram::SaltedCache;
use crate::xmpp::{Kind, error_reply, parse_stanza, payload_ns, set_attr, to_xml};
use jid::{BareJid, FullJid, Jid};
use minidom::Element;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tracing::{debug, error, info, trace, warn};

/// What the router hands an account.
#[derive(Debug)]
pub enum Input {
    /// A stanza from one of the account's resources, addressed under T.
    Local(Element),
    /// The link to the local server came back: controllers must confirm
    /// they are still online (the start-up probe makes the server answer).
    LinkReset,
    /// Describe the account's controllers and sessions (ad-hoc commands).
    Status(tokio::sync::oneshot::Sender<String>),
    /// Close everything and stop.
    Shutdown,
}

enum Timer {
    /// A request sent to the foreign side got no answer in time.
    Outbound(String),
    /// A request sent to a controller got no answer in time.
    Inbound(String),
    /// The grace period after a link reset is over.
    Sweep(u64),
    /// A stanza held for its sender's presence has waited long enough.
    Held,
}

/// How long controllers have to confirm themselves after the link to the
/// local server came back (the server answers T's probe at once); also how
/// long a stanza from a controller not confirmed yet waits for its presence.
pub(crate) const CONFIRM_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// At most this many stanzas of one account wait for their senders'
/// presence; more are refused (with `wait`: try again).
pub const HELD_LIMIT: usize = 64;

/// A local stanza waiting for its sender's presence (see [`Account::holds`]).
struct Held {
    origin: Origin,
    el: Element,
    until: std::time::Instant,
}

/// Who a local stanza is from and whether it is addressed to T itself:
/// read once per stanza, since parsing a JID is not free.
struct Origin {
    /// The sender's resource (`A/B`), none for the bare JID.
    resource: Option<String>,
    to_gateway: bool,
}

impl Origin {
    fn of(el: &Element) -> Origin {
        let jid = |attr| el.attr(attr).and_then(|a| Jid::new(a).ok());
        Origin {
            resource: jid("from").and_then(|f| f.resource().map(|r| r.to_string())),
            to_gateway: jid("to").is_some_and(|t| t.node().is_none()),
        }
    }
}

struct Controller {
    resource: String,
    show: Option<String>,
    status: Option<String>,
    priority: i8,
    online_since_ms: u64,
    last_active_ms: u64,
}

struct Session {
    tx: mpsc::Sender<Command>,
    state: wit::SessionState,
    generation: u64,
}

/// A controller's request forwarded to the foreign side.
struct PendingOut {
    session: String,
    requester: String,
    original_id: Option<String>,
    /// Where it went: the answer must come from there.
    peer: Option<String>,
    /// The address the controller wrote (`x@T/r`), for the timeout error.
    local_to: Option<String>,
    payload_ns: Option<String>,
}

/// A foreign request forwarded to a controller.
struct PendingIn {
    session: String,
    foreign_from: Option<String>,
    original_id: Option<String>,
    controller: String,
    payload_ns: Option<String>,
}

/// The event being decided, with the stanza the policy may forward.
struct Current {
    stanza: Option<Element>,
    side: Side,
}

#[derive(Clone, PartialEq, Eq)]
enum Side {
    Local { resource: Option<String> },
    Foreign { session: String },
    Internal,
}

type Tag = (String, u64);

/// The account task's state.
pub struct Account {
    reg: Registration,
    shared: Arc<Shared>,
    controllers: Vec<Controller>,
    sessions: HashMap<String, Session>,
    pending_out: HashMap<String, PendingOut>,
    pending_in: HashMap<String, PendingIn>,
    generation: u64,
    reports_tx: mpsc::UnboundedSender<(Tag, Report)>,
    timers_tx: mpsc::UnboundedSender<Timer>,
    /// Controllers not seen since the last link reset, and which reset.
    unconfirmed: Vec<String>,
    resets: u64,
    /// Whether the local server has told us of the account's presence since
    /// this task started or the link came back (the probe's answer).
    presence_known: bool,
    /// Local stanzas waiting for their senders' presence, in arrival order.
    held: std::collections::VecDeque<Held>,
    /// The SCRAM salted password of the foreign logins, read from the
    /// database when the first session opens.
    salted: Option<SaltedCache>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Starts the task of `reg`'s account.
pub fn spawn(reg: Registration, shared: Arc<Shared>) -> mpsc::UnboundedSender<Input> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (reports_tx, reports_rx) = mpsc::unbounded_channel();
    let (timers_tx, timers_rx) = mpsc::unbounded_channel();
    let account = Account {
        reg,
        shared,
        controllers: Vec::new(),
        sessions: HashMap::new(),
        pending_out: HashMap::new(),
        pending_in: HashMap::new(),
        generation: 0,
        reports_tx,
        timers_tx,
        unconfirmed: Vec::new(),
        resets: 0,
        presence_known: false,
        held: std::collections::VecDeque::new(),
        salted: None,
    };
    tokio::spawn(account.run(rx, reports_rx, timers_rx));
    tx
}

impl Account {
    async fn run(
        mut self,
        mut inputs: mpsc::UnboundedReceiver<Input>,
        mut reports: mpsc::UnboundedReceiver<(Tag, Report)>,
        mut timers: mpsc::UnboundedReceiver<Timer>,
    ) {
        debug!(local = %self.reg.local, "account task started");
        loop {
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(Input::Local(el)) => self.on_local_input(el).await,
                    Some(Input::LinkReset) => self.on_link_reset(),
                    Some(Input::Status(reply)) => {
                        let _ = reply.send(self.status());
                    },
                    Some(Input::Shutdown) | None => break,
                },
                Some((tag, report)) = reports.recv() => self.on_report(tag, report).await,
                Some(timer) = timers.recv() => self.on_timer(timer).await,
            }
        }
        for held in std::mem::take(&mut self.held) {
            if let Some(reply) = error_reply(
                &held.el,
                "wait",
                "service-unavailable",
                Some("the gateway stopped serving this account; send it again"),
            ) {
                self.to_local(reply).await;
            }
        }
        for (_, s) in self.sessions.drain() {
            let _ = s.tx.send(Command::Close).await;
        }
        debug!(local = %self.reg.local, "account task stopped");
    }

    fn gateway(&self) -> &str {
        &self.shared.config.jid
    }

    fn fresh_id(&self) -> String {
        // Process-wide, so ids never repeat across accounts or task restarts.
        static NEXT: AtomicU64 = AtomicU64::new(1);
        format!("pz-{}", NEXT.fetch_add(1, Ordering::Relaxed))
    }

    async fn to_local(&self, el: Element) {
        if self.shared.to_local.send(el).await.is_err() {
            warn!("component link gone; dropping stanza to local server");
        }
    }

    // ---- local side ------------------------------------------------------

    /// A stanza from the local server: decided now, or held for its
    /// sender's presence, then whatever it let through.
    async fn on_local_input(&mut self, el: Element) {
        let origin = Origin::of(&el);
        if self.holds(&el, &origin) {
            if self.held.len() >= HELD_LIMIT {
                let text = "too many stanzas waiting for their senders' presence";
                if let Some(reply) = error_reply(&el, "wait", "resource-constraint", Some(text)) {
                    self.to_local(reply).await;
                }
                return;
            }
            debug!(local = %self.reg.local, resource = ?origin.resource, "holding a stanza until its sender's presence is known");
            self.held.push_back(Held {
                origin,
                el,
                until: std::time::Instant::now() + CONFIRM_GRACE,
            });
            self.arm_after(CONFIRM_GRACE, Timer::Held);
            return;
        }
        self.on_local(el, origin).await;
        self.release_held().await;
    }

    /// Whether a stanza must wait for its sender's presence. After the
    /// gateway starts (or its link comes back) it probes every registered
    /// user, and a controller that was online all along may speak before
    /// the server's answer says so: its stanza waits for that answer, up to
    /// [`CONFIRM_GRACE`], instead of being refused as from a resource that is
    /// not online (SPEC section 4). Its later stanzas queue behind it.
    fn holds(&self, el: &Element, origin: &Origin) -> bool {
        if el.name() == "presence" && origin.to_gateway {
            return false;
        }
        let resource = origin.resource.as_deref();
        if self
            .held
            .iter()
            .any(|h| h.origin.resource.as_deref() == resource)
        {
            return true;
        }
        !self.presence_known && self.shared.confirming() && !self.is_online(resource)
    }

    /// A resource is online; a stanza without one (from the bare JID) is
    /// as good as online while any controller is.
    fn is_online(&self, resource: Option<&str>) -> bool {
        match resource {
            Some(r) => self.controllers.iter().any(|c| c.resource == r),
            None => !self.controllers.is_empty(),
        }
    }

    /// Decides the held stanzas whose sender is online now or which have
    /// waited long enough, in order.
    async fn release_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let now = std::time::Instant::now();
        while let Some(i) = self
            .held
            .iter()
            .position(|h| h.until <= now || self.is_online(h.origin.resource.as_deref()))
        {
            let Some(held) = self.held.remove(i) else {
                break;
            };
            self.on_local(held.el, held.origin).await;
        }
    }

    async fn on_local(&mut self, mut el: Element, origin: Origin) {
        let Some(kind) = Kind::of(&el) else { return };
        let Origin {
            resource,
            to_gateway,
        } = origin;
        let now = now_ms();
        let type_ = el.attr("type").unwrap_or("").to_string();

        // The server's word on the account's presence (a probe from the
        // account's server says nothing of its resources).
        if kind == Kind::Presence && to_gateway && (type_.is_empty() || type_ == "unavailable") {
            self.presence_known = true;
        }
        if let Some(r) = &resource {
            if kind == Kind::Presence && to_gateway && type_.is_empty() {
                self.unconfirmed.retain(|u| u != r);
                self.controller_online(r, &el, now);
            } else if kind == Kind::Presence && to_gateway && type_ == "unavailable" {
                self.controllers.retain(|c| &c.resource != r);
            }
            if let Some(c) = self.controllers.iter_mut().find(|c| &c.resource == r) {
                c.last_active_ms = now;
            }
        }

        // Answers to requests that came from the foreign side.
        let mut answers = None;
        if kind == Kind::Iq && (type_ == "result" || type_ == "error") {
            let id = el.attr("id").unwrap_or("").to_string();
            let matches = self
                .pending_in
                .get(&id)
                .is_some_and(|p| Some(&p.controller) == resource.as_ref());
            if matches && let Some(p) = self.pending_in.remove(&id) {
                set_attr(&mut el, "id", p.original_id.clone());
                answers = Some(wit::IqRequest {
                    requester: p.session,
                    peer: p.foreign_from,
                    payload_ns: p.payload_ns,
                });
            }
        }

        let event = wit::Event::Local(wit::LocalStanza {
            stanza: wit_stanza(kind, &el),
            sender_resource: resource.clone(),
            answers,
        });
        let current = Current {
            stanza: Some(el),
            side: Side::Local { resource },
        };
        self.decide_and_apply(event, current).await;
    }

    fn controller_online(&mut self, resource: &str, el: &Element, now: u64) {
        let child = |name: &str| {
            el.get_child(name, crate::xmpp::NS_CLIENT)
                .map(Element::text)
        };
        let show = child("show");
        let status = child("status");
        let priority = child("priority")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0);
        match self.controllers.iter_mut().find(|c| c.resource == resource) {
            Some(c) => {
                c.show = show;
                c.status = status;
                c.priority = priority;
            }
            None => self.controllers.push(Controller {
                resource: resource.to_string(),
                show,
                status,
                priority,
                online_since_ms: now,
                last_active_ms: now,
            }),
        }
    }

    // ---- foreign side ----------------------------------------------------

    async fn on_report(&mut self, (session, generation): Tag, report: Report) {
        let current = self
            .sessions
            .get(&session)
            .is_some_and(|s| s.generation == generation);
        if !current {
            // A report from a session already replaced or closed.
            if let Report::Failed { unsent, .. } = report {
                self.bounce(unsent, "the foreign session was closed").await;
            }
            return;
        }
        let change = |state, reason| {
            wit::Event::Session(wit::SessionChange {
                session: session.clone(),
                state,
                reason,
            })
        };
        match report {
            Report::Stanza(el) => self.on_foreign(session, el).await,
            Report::Resumed => self.set_state(&session, wit::SessionState::Online),
            Report::Online => {
                self.set_state(&session, wit::SessionState::Online);
                self.decide_internal(change(wit::SessionState::Online, None))
                    .await;
            }
            Report::Reconnecting(why) => {
                self.set_state(&session, wit::SessionState::Reconnecting);
                self.decide_internal(change(wit::SessionState::Reconnecting, Some(why)))
                    .await;
            }
            Report::Failed { reason, unsent } => {
                self.set_state(&session, wit::SessionState::Failed);
                let why = reason.to_string();
                let text = format!("the foreign session could not log in: {why}");
                self.bounce(unsent, &text).await;
                self.decide_internal(change(wit::SessionState::Failed, Some(why)))
                    .await;
            }
            Report::Rejected(out, why) => self.bounce(vec![out], &why).await,
            Report::Closed => {
                self.sessions.remove(&session);
            }
        }
    }

    fn set_state(&mut self, session: &str, state: wit::SessionState) {
        if let Some(s) = self.sessions.get_mut(session) {
            s.state = state;
        }
    }

    async fn bounce(&self, unsent: Vec<Outgoing>, why: &str) {
        for out in unsent {
            if let Some(reply) = out
                .origin
                .as_ref()
                .and_then(|o| error_reply(o, "wait", "service-unavailable", Some(why)))
            {
                self.to_local(reply).await;
            }
        }
    }

    async fn on_foreign(&mut self, session: String, mut el: Element) {
        let Some(kind) = Kind::of(&el) else { return };
        let type_ = el.attr("type").unwrap_or("").to_string();
        let mut answers = None;
        if kind == Kind::Iq && (type_ == "result" || type_ == "error") {
            let id = el.attr("id").unwrap_or("").to_string();
            let from = el.attr("from").map(str::to_string);
            let fits = self.pending_out.get(&id).is_some_and(|p| {
                p.session == session && self.same_peer(p.peer.as_deref(), from.as_deref())
            });
            if fits && let Some(p) = self.pending_out.remove(&id) {
                set_attr(&mut el, "id", p.original_id.clone());
                answers = Some(wit::IqRequest {
                    requester: p.requester,
                    peer: None,
                    payload_ns: p.payload_ns,
                });
            }
        }
        let event = wit::Event::Foreign(wit::ForeignStanza {
            session: session.clone(),
            stanza: wit_stanza(kind, &el),
            answers,
        });
        self.decide_and_apply(
            event,
            Current {
                stanza: Some(el),
                side: Side::Foreign { session },
            },
        )
        .await;
    }

    /// RFC 6120 section 10.1.4: an answer comes from where the request
    /// went; a request without 'to' (or to the account's own bare JID) is
    /// answered by the account's server, from the account or without 'from'.
    fn same_peer(&self, sent_to: Option<&str>, from: Option<&str>) -> bool {
        match (sent_to, from) {
            (Some(to), Some(from)) => to == from,
            (None, None) => true,
            (None, Some(from)) => Jid::new(from).is_ok_and(|j| j.to_bare() == self.reg.foreign),
            // A request to the account's own bare JID is answered by its
            // server, which may leave 'from' out.
            (Some(to), None) => Jid::new(to).is_ok_and(|j| j.to_bare() == self.reg.foreign),
        }
    }

    // ---- timers ----------------------------------------------------------

    async fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::Sweep(reset) => self.sweep(reset).await,
            Timer::Held => self.release_held().await,
            Timer::Outbound(id) => {
                let Some(p) = self.pending_out.remove(&id) else {
                    return;
                };
                let mut iq = Element::bare("iq", crate::xmpp::NS_CLIENT);
                set_attr(&mut iq, "type", Some("error".into()));
                set_attr(&mut iq, "id", p.original_id);
                set_attr(
                    &mut iq,
                    "from",
                    Some(p.local_to.unwrap_or_else(|| self.gateway().to_string())),
                );
                set_attr(
                    &mut iq,
                    "to",
                    Some(format!("{}/{}", self.reg.local, p.requester)),
                );
                iq.append_child(crate::xmpp::error_element(
                    "wait",
                    "remote-server-timeout",
                    Some("no answer from the foreign side in time"),
                ));
                self.to_local(iq).await;
            }
            Timer::Inbound(id) => {
                let Some(p) = self.pending_in.remove(&id) else {
                    return;
                };
                let mut iq = Element::bare("iq", crate::xmpp::NS_CLIENT);
                set_attr(&mut iq, "type", Some("error".into()));
                set_attr(&mut iq, "id", p.original_id);
                set_attr(&mut iq, "to", p.foreign_from);
                iq.append_child(crate::xmpp::error_element(
                    "wait",
                    "remote-server-timeout",
                    Some("no controller answered in time"),
                ));
                self.send_session(
                    &p.session,
                    Outgoing {
                        stanza: iq,
                        origin: None,
                    },
                )
                .await;
            }
        }
    }

    fn status(&self) -> String {
        let mut sessions: Vec<_> = self.sessions.iter().collect();
        sessions.sort_by_key(|(a, _)| a.as_str());
        let mut out = format!("{} as {}:", self.reg.local, self.reg.foreign);
        if sessions.is_empty() {
            out.push_str(" no foreign sessions");
        }
        for (a, s) in sessions {
            let controllers: Vec<&str> = self
                .controllers
                .iter()
                .filter(|c| pizzja_sdk::split_resource(&c.resource).0 == a)
                .map(|c| c.resource.as_str())
                .collect();
            out.push_str(&format!(
                " {a} {:?} (controllers: {});",
                s.state,
                controllers.join(", ")
            ));
        }
        out
    }

    fn on_link_reset(&mut self) {
        // Whoever left while the link was down never told us: only the
        // controllers the server reports again (probe answers) stay.
        self.resets += 1;
        self.presence_known = false;
        self.unconfirmed = self
            .controllers
            .iter()
            .map(|c| c.resource.clone())
            .collect();
        self.arm_after(CONFIRM_GRACE, Timer::Sweep(self.resets));
    }

    /// Takes the controllers that did not confirm offline, through the same
    /// event their own unavailable presence would have been.
    async fn sweep(&mut self, reset: u64) {
        if reset != self.resets {
            return;
        }
        for resource in std::mem::take(&mut self.unconfirmed) {
            if !self.controllers.iter().any(|c| c.resource == resource) {
                continue;
            }
            info!(local = %self.reg.local, %resource, "controller did not come back after the link reset");
            let mut p = Element::bare("presence", crate::xmpp::NS_CLIENT);
            set_attr(&mut p, "type", Some("unavailable".into()));
            set_attr(
                &mut p,
                "from",
                Some(format!("{}/{resource}", self.reg.local)),
            );
            set_attr(&mut p, "to", Some(self.gateway().to_string()));
            let origin = Origin::of(&p);
            self.on_local(p, origin).await;
        }
    }

    fn arm(&self, timer: Timer) {
        self.arm_after(self.shared.config.iq_timeout, timer);
    }

    fn arm_after(&self, after: std::time::Duration, timer: Timer) {
        let tx = self.timers_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tx.send(timer);
        });
    }

    // ---- deciding --------------------------------------------------------

    fn facts(&self) -> wit::Facts {
        let mut controllers: Vec<&Controller> = self.controllers.iter().collect();
        controllers.sort_by_key(|c| std::cmp::Reverse(c.last_active_ms));
        wit::Facts {
            local_jid: self.reg.local.to_string(),
            foreign_jid: self.reg.foreign.to_string(),
            gateway: self.gateway().to_string(),
            controllers: controllers
                .into_iter()
                .map(|c| wit::Controller {
                    resource: c.resource.clone(),
                    show: c.show.clone(),
                    status: c.status.clone(),
                    priority: c.priority,
                    online_since_ms: c.online_since_ms,
                    last_active_ms: c.last_active_ms,
                })
                .collect(),
            sessions: self
                .sessions
                .iter()
                .map(|(r, s)| wit::Session {
                    resource: r.clone(),
                    state: s.state,
                })
                .collect(),
            now_ms: now_ms(),
        }
    }

    /// Decides an event that carries no stanza (a session change).
    async fn decide_internal(&mut self, event: wit::Event) {
        let current = Current {
            stanza: None,
            side: Side::Internal,
        };
        self.decide_and_apply(event, current).await;
    }

    async fn decide_and_apply(&mut self, event: wit::Event, current: Current) {
        let facts = self.facts();
        let actions = match self.shared.engine.decide(&event, &facts) {
            Ok(actions) => actions,
            Err(e) => {
                warn!(local = %self.reg.local, error = %e, "policy failed; answering with an error");
                vec![wit::Action::ReplyError(wit::StanzaError {
                    type_: wit::ErrorType::Wait,
                    condition: "internal-server-error".into(),
                    text: Some("the gateway's policy failed on this stanza".into()),
                })]
            }
        };
        trace!(local = %self.reg.local, ?actions, "policy decided");
        for action in actions {
            self.apply(action, &current).await;
        }
    }

    async fn reply_error(
        &self,
        current: &Current,
        type_: &str,
        condition: &str,
        text: Option<&str>,
    ) {
        let Some(stanza) = &current.stanza else {
            return;
        };
        let Some(mut reply) = error_reply(stanza, type_, condition, text) else {
            return;
        };
        match &current.side {
            Side::Local { .. } => self.to_local(reply).await,
            Side::Foreign { session } => {
                set_attr(&mut reply, "from", None);
                self.send_session(
                    session,
                    Outgoing {
                        stanza: reply,
                        origin: None,
                    },
                )
                .await;
            }
            Side::Internal => {}
        }
    }

    async fn apply(&mut self, action: wit::Action, current: &Current) {
        let policy = || self.shared.engine.current().name.clone();
        match action {
            wit::Action::Log(line) => {
                let (local, name) = (&self.reg.local, policy());
                match line.level {
                    wit::LogLevel::Trace => trace!(policy = %name, %local, "{}", line.message),
                    wit::LogLevel::Debug => debug!(policy = %name, %local, "{}", line.message),
                    wit::LogLevel::Info => info!(policy = %name, %local, "{}", line.message),
                    wit::LogLevel::Warn => warn!(policy = %name, %local, "{}", line.message),
                    wit::LogLevel::Error => error!(policy = %name, %local, "{}", line.message),
                }
            }
            wit::Action::ReplyError(e) => {
                let type_ = match e.type_ {
                    wit::ErrorType::Auth => "auth",
                    wit::ErrorType::Cancel => "cancel",
                    wit::ErrorType::Continue => "continue",
                    wit::ErrorType::Modify => "modify",
                    wit::ErrorType::Wait => "wait",
                };
                self.reply_error(current, type_, &e.condition, e.text.as_deref())
                    .await;
            }
            wit::Action::OpenSession(a) => self.open_session(a, current).await,
            wit::Action::CloseSession(a) => {
                if let Some(s) = self.sessions.get_mut(&a) {
                    let _ = s.tx.send(Command::Close).await;
                    s.state = wit::SessionState::Closed;
                }
                // Gone from the facts now; its Closed report is then ignored.
                self.sessions.remove(&a);
            }
            wit::Action::SendForeign(send) => self.send_foreign(send, current).await,
            wit::Action::SendLocal(send) => self.send_local(send, current).await,
        }
    }

    async fn open_session(&mut self, a: String, current: &Current) {
        if self
            .sessions
            .get(&a)
            .is_some_and(|s| s.state != wit::SessionState::Failed)
        {
            return;
        }
        let jid = match FullJid::new(&format!("{}/{a}", self.reg.foreign)) {
            Ok(j) => j,
            Err(e) => {
                warn!(resource = %a, error = %e, "policy asked for a session with an invalid resource");
                self.reply_error(
                    current,
                    "modify",
                    "jid-malformed",
                    Some("invalid foreign resource"),
                )
                .await;
                return;
            }
        };
        self.generation += 1;
        let generation = self.generation;
        let params = SessionParams {
            jid,
            secret: LoginSecret {
                password: self.reg.password.clone(),
                salted: self.salted_cache(),
            },
            connector: self
                .shared
                .connector_for(self.reg.foreign.domain().as_str()),
            login_timeout: self.shared.config.login_timeout,
            queue_limit: self.shared.config.queue_limit,
            logins: self.shared.logins.clone(),
        };
        info!(local = %self.reg.local, foreign = %self.reg.foreign, resource = %a, "opening foreign session");
        let tx = foreign::spawn(params, (a.clone(), generation), self.reports_tx.clone());
        self.sessions.insert(
            a,
            Session {
                tx,
                state: wit::SessionState::Connecting,
                generation,
            },
        );
    }

    /// The account's salted passwords, shared by its sessions; a session
    /// that derives one hands it to the database writer.
    fn salted_cache(&mut self) -> SaltedCache {
        let (shared, reg) = (&self.shared, &self.reg);
        self.salted
            .get_or_insert_with(|| {
                let kept = shared
                    .storage
                    .salted_password(&reg.local)
                    .unwrap_or_else(|e| {
                        warn!(local = %reg.local, error = %e, "could not read the salted password; deriving it again");
                        None
                    });
                let (writer, reg) = (shared.keep_salted.clone(), reg.clone());
                SaltedCache::new(kept, shared.scram.clone(), move |salted| {
                    let _ = writer.send(KeptSalted {
                        registration: reg.clone(),
                        salted,
                    });
                })
            })
            .clone()
    }

    /// The stanza an action sends: the event's, or one the policy wrote.
    fn content(&self, content: wit::Content, current: &Current) -> Result<Element, String> {
        match content {
            wit::Content::Original => current
                .stanza
                .clone()
                .ok_or_else(|| "this event has no stanza to forward".to_string()),
            wit::Content::Xml(xml) => parse_stanza(&xml),
        }
    }

    async fn send_session(&self, session: &str, out: Outgoing) {
        match self.sessions.get(session) {
            Some(s) => {
                if s.tx.send(Command::Send(Box::new(out))).await.is_err() {
                    debug!(
                        session,
                        "foreign session ended before the stanza could be queued"
                    );
                }
            }
            None => {
                self.bounce(vec![out], "the foreign session is not open")
                    .await
            }
        }
    }

    async fn send_foreign(&mut self, send: wit::SendForeign, current: &Current) {
        if !self.sessions.contains_key(&send.session) {
            warn!(session = %send.session, "policy sent through a session that does not exist");
            let text = format!("no foreign session {} is open", send.session);
            self.reply_error(current, "wait", "service-unavailable", Some(&text))
                .await;
            return;
        }
        let is_original = matches!(send.content, wit::Content::Original);
        let mut el = match self.content(send.content, current) {
            Ok(el) => el,
            Err(why) => {
                warn!(error = %why, "policy wrote an unusable stanza");
                self.reply_error(
                    current,
                    "wait",
                    "internal-server-error",
                    Some("the gateway's policy failed"),
                )
                .await;
                return;
            }
        };
        if let Some(to) = &send.to
            && Jid::new(to).is_err()
        {
            self.reply_error(current, "modify", "jid-malformed", Some("not a valid JID"))
                .await;
            return;
        }
        let local_to = el.attr("to").map(str::to_string);
        set_attr(&mut el, "to", send.to.clone());
        set_attr(&mut el, "from", None);

        // Requests from a controller get a fresh id so that answers find it.
        let type_ = el.attr("type").unwrap_or("");
        if Kind::of(&el) == Some(Kind::Iq)
            && (type_ == "get" || type_ == "set")
            && let Side::Local {
                resource: Some(requester),
            } = &current.side
        {
            let id = self.fresh_id();
            let pending = PendingOut {
                session: send.session.clone(),
                requester: requester.clone(),
                original_id: el.attr("id").map(str::to_string),
                peer: send.to.clone(),
                local_to,
                payload_ns: payload_ns(&el),
            };
            set_attr(&mut el, "id", Some(id.clone()));
            self.pending_out.insert(id.clone(), pending);
            self.arm(Timer::Outbound(id));
        }
        let origin = if is_original && matches!(current.side, Side::Local { .. }) {
            current.stanza.clone()
        } else {
            None
        };
        self.send_session(&send.session, Outgoing { stanza: el, origin })
            .await;
    }

    async fn send_local(&mut self, send: wit::SendLocal, current: &Current) {
        let mut el = match self.content(send.content, current) {
            Ok(el) => el,
            Err(why) => {
                warn!(error = %why, "policy wrote an unusable stanza");
                return;
            }
        };
        // Built here, never taken from the policy whole: to is this account,
        // from is T or under T.
        let to = match &send.to_resource {
            Some(r) => FullJid::new(&format!("{}/{r}", self.reg.local)).map(Jid::from),
            None => Ok(Jid::from(self.reg.local.clone())),
        };
        let from = match (&send.from_node, &send.from_resource) {
            (Some(node), Some(res)) => {
                FullJid::new(&format!("{node}@{}/{res}", self.gateway())).map(Jid::from)
            }
            (Some(node), None) => {
                BareJid::new(&format!("{node}@{}", self.gateway())).map(Jid::from)
            }
            (None, Some(res)) => FullJid::new(&format!("{}/{res}", self.gateway())).map(Jid::from),
            (None, None) => BareJid::new(self.gateway()).map(Jid::from),
        };
        let (to, from) = match (to, from) {
            (Ok(to), Ok(from)) => (to, from),
            (to, from) => {
                warn!(
                    ?to,
                    ?from,
                    "policy named an address that is not a valid JID; dropped"
                );
                return;
            }
        };
        set_attr(&mut el, "to", Some(to.to_string()));
        set_attr(&mut el, "from", Some(from.to_string()));

        let type_ = el.attr("type").unwrap_or("");
        if Kind::of(&el) == Some(Kind::Iq)
            && (type_ == "get" || type_ == "set")
            && let (Side::Foreign { session }, Some(controller)) =
                (&current.side, &send.to_resource)
        {
            let id = self.fresh_id();
            let pending = PendingIn {
                session: session.clone(),
                foreign_from: current
                    .stanza
                    .as_ref()
                    .and_then(|s| s.attr("from"))
                    .map(str::to_string),
                original_id: el.attr("id").map(str::to_string),
                controller: controller.clone(),
                payload_ns: payload_ns(&el),
            };
            set_attr(&mut el, "id", Some(id.clone()));
            self.pending_in.insert(id.clone(), pending);
            self.arm(Timer::Inbound(id));
        }
        debug!(to = %to, from = %from, "to local");
        trace!(xml = %to_xml(&el), "to local");
        self.to_local(el).await;
    }
}

/// The policy's view of a stanza: its routing header and its XML.
pub(crate) fn wit_stanza(kind: Kind, el: &Element) -> wit::Stanza {
    wit::Stanza {
        kind: match kind {
            Kind::Message => wit::StanzaKind::Message,
            Kind::Presence => wit::StanzaKind::Presence,
            Kind::Iq => wit::StanzaKind::Iq,
        },
        type_: el.attr("type").unwrap_or("").to_string(),
        id: el.attr("id").map(str::to_string),
        from: el.attr("from").map(str::to_string),
        to: el.attr("to").map(str::to_string),
        xml: to_xml(el),
    }
}

impl LoginFailure {
    /// The RFC 6120 condition for a registration that failed this way.
    pub fn condition(&self) -> &'static str {
        match self {
            LoginFailure::NotAuthorized(_) => "not-authorized",
            LoginFailure::Unreachable(_) => "remote-server-timeout",
        }
    }
}
