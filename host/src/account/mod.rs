//! One task per registered local account: it keeps the account's facts,
//! asks the policy about each event in order, and carries out what the
//! address rules ([`rules`]) make of its answer.
//!
//! The task is the shell; its parts are plain state, tested on their own:
//! who is online and what waits for them ([`controllers`]), requests in
//! flight both ways ([`iq`]), and the host's invariants over the policy's
//! actions ([`rules`], docs/behaviour.md section 8). `decide.rs` is where
//! an event meets the policy and its actions are carried out.

pub mod archive;
pub mod controllers;
mod decide;
pub mod devices;
pub mod iq;
pub mod rules;
mod sessions;
mod shown;

use crate::metrics::Metrics;
use crate::policy::PolicyEngine;
use crate::policy::bindings as wit;
use crate::storage::{KeptSalted, Registration, Storage};
use crate::xmpp::foreign::{Command, Dialer, Outgoing, Report};
use crate::xmpp::scram::SaltedCache;
use crate::xmpp::{Kind, error_reply, set_attr};
use controllers::{Controllers, Origin, ProbeWindow};
use iq::IqTracker;
use minidom::Element;
use rules::{Current, Side};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

pub use controllers::HELD_LIMIT;

/// What the router tells an account besides its stanzas.
#[derive(Debug)]
pub enum Input {
    /// The link to the local server came back: controllers must confirm
    /// they are still online (the start-up probe makes the server answer).
    LinkReset,
    /// The link to the local server has been down for the grace period:
    /// controllers are as good as gone.
    LinkLost,
    /// A controller's unavailable presence that found the stanza queue
    /// full: it must not be lost, or the account would never learn that
    /// the controller left.
    Presence(Element),
    /// Describe the account's controllers and sessions (ad-hoc commands).
    Status(tokio::sync::oneshot::Sender<String>),
    /// Close everything and stop.
    Shutdown,
}

/// How the router reaches an account's task: its stanzas through a
/// bounded queue, so that one account's flood cannot hold up the router
/// (and every other account); what else it says beside them.
#[derive(Debug, Clone)]
pub struct Handle {
    stanzas: mpsc::Sender<Element>,
    control: mpsc::UnboundedSender<Input>,
}

/// Why a stanza was not handed to an account's task.
#[derive(Debug)]
pub enum NotQueued {
    /// Its queue is full: the account is sending faster than it is served.
    Full(Element),
    /// The task has ended.
    Gone(Element),
}

impl Handle {
    /// Tells the task `input`; false when the task has ended.
    pub fn tell(&self, input: Input) -> bool {
        self.control.send(input).is_ok()
    }

    /// Queues a stanza from one of the account's resources, addressed
    /// under T, without waiting.
    pub fn stanza(&self, el: Element) -> Result<(), NotQueued> {
        self.stanzas.try_send(el).map_err(|e| match e {
            mpsc::error::TrySendError::Full(el) => NotQueued::Full(el),
            mpsc::error::TrySendError::Closed(el) => NotQueued::Gone(el),
        })
    }

    /// Whether the task has ended.
    pub fn is_closed(&self) -> bool {
        self.control.is_closed()
    }
}

/// Counts one stanza refused for overload; says whether to log it (the
/// first, and every hundredth after: a flood must not flood the log too).
pub fn count_overload(counter: &std::sync::atomic::AtomicU64) -> Option<u64> {
    let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    (n == 1 || n.is_multiple_of(100)).then_some(n)
}

/// What every account task needs from the gateway.
pub struct Env {
    /// T.
    pub gateway: String,
    /// The policy sandbox.
    pub engine: PolicyEngine,
    /// Stanzas for the local server (the component link).
    pub to_local: mpsc::Sender<Element>,
    /// How foreign sessions are opened.
    pub dialer: Dialer,
    /// Deadline for an answer to a forwarded IQ request.
    pub iq_timeout: Duration,
    /// Whether T's start-up probes may still be answered.
    pub probes: Arc<ProbeWindow>,
    /// Where the salted passwords of foreign logins are read from.
    pub storage: Arc<Storage>,
    /// Salted passwords for the database writer.
    pub keep_salted: mpsc::UnboundedSender<KeptSalted>,
    /// Archive positions for the database writer: (L, A, stanza id).
    pub positions: mpsc::UnboundedSender<(jid::BareJid, String, String)>,
    /// Stanzas of one account that may wait for its task.
    pub queue: usize,
    /// Stanzas of one account held for their senders' presence.
    pub held_limit: usize,
    /// Stanzas refused because a queue was full, gateway-wide.
    pub overload: Arc<std::sync::atomic::AtomicU64>,
    /// What Prometheus is shown.
    pub metrics: Arc<Metrics>,
}

/// Timers the task arms for itself.
enum Timer {
    /// A request sent to the foreign side got no answer in time.
    Outbound(String),
    /// A request sent to a controller got no answer in time.
    Inbound(String),
    /// The grace period after a link reset is over.
    Sweep(u64),
    /// A stanza held for its sender's presence has waited long enough.
    Held,
    /// An archive query of the host's own got no answer in time.
    Archive(String),
}

struct Session {
    tx: mpsc::Sender<Command>,
    state: wit::SessionState,
    generation: u64,
}

/// A session's resource A and which opening of it a report is from.
type Tag = (String, u64);

/// The account task's state.
struct Account {
    reg: Registration,
    env: Arc<Env>,
    controllers: Controllers,
    sessions: HashMap<String, Session>,
    iqs: IqTracker,
    generation: u64,
    reports_tx: mpsc::UnboundedSender<(Tag, Report)>,
    timers_tx: mpsc::UnboundedSender<Timer>,
    /// The SCRAM salted password of the foreign logins, read from the
    /// database when the first session opens.
    salted: Option<SaltedCache>,
    /// Archive queries of the host's own in flight, by query id.
    catchups: HashMap<String, archive::Query>,
    /// Per session: the archive ids delivered last.
    seen: HashMap<String, archive::Seen>,
    /// What this account adds to the gateway's gauges now.
    shown: shown::Shown,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Starts the task of `reg`'s account.
pub fn spawn(reg: Registration, env: Arc<Env>) -> Handle {
    let (stanzas, stanzas_rx) = mpsc::channel(env.queue);
    let (control, rx) = mpsc::unbounded_channel();
    let (reports_tx, reports_rx) = mpsc::unbounded_channel();
    let (timers_tx, timers_rx) = mpsc::unbounded_channel();
    let account = Account {
        reg,
        env,
        controllers: Controllers::default(),
        sessions: HashMap::new(),
        iqs: IqTracker::default(),
        generation: 0,
        reports_tx,
        timers_tx,
        salted: None,
        catchups: HashMap::new(),
        seen: HashMap::new(),
        shown: shown::Shown::default(),
    };
    tokio::spawn(account.run(rx, stanzas_rx, reports_rx, timers_rx));
    Handle { stanzas, control }
}

impl Account {
    async fn run(
        mut self,
        mut inputs: mpsc::UnboundedReceiver<Input>,
        mut stanzas: mpsc::Receiver<Element>,
        mut reports: mpsc::UnboundedReceiver<(Tag, Report)>,
        mut timers: mpsc::UnboundedReceiver<Timer>,
    ) {
        debug!(local = %self.reg.local, "account task started");
        /// The rest, taken in turn: a flood on one side must not starve
        /// the other.
        enum Next {
            Stanza(Element),
            Report(Tag, Report),
            Timer(Timer),
        }
        loop {
            tokio::select! {
                // What the router said is taken before the stanzas queued
                // after it (a link reset before the probe answers that
                // follow it).
                biased;
                input = inputs.recv() => match input {
                    Some(Input::LinkReset) => {
                        let reset = self.controllers.link_reset();
                        self.arm_after(self.env.probes.confirm(), Timer::Sweep(reset));
                    }
                    Some(Input::LinkLost) => {
                        let reset = self.controllers.link_reset();
                        self.sweep(reset).await;
                    }
                    Some(Input::Presence(el)) => self.on_local_input(el).await,
                    Some(Input::Status(reply)) => {
                        let _ = reply.send(self.status());
                    },
                    Some(Input::Shutdown) | None => break,
                },
                next = async {
                    tokio::select! {
                        Some(el) = stanzas.recv() => Next::Stanza(el),
                        Some((tag, report)) = reports.recv() => Next::Report(tag, report),
                        Some(timer) = timers.recv() => Next::Timer(timer),
                        // The task holds the senders of reports and timers.
                        else => std::future::pending().await,
                    }
                } => match next {
                    Next::Stanza(el) => self.on_local_input(el).await,
                    Next::Report(tag, report) => self.on_report(tag, report).await,
                    Next::Timer(timer) => self.on_timer(timer).await,
                },
            }
            self.show(false);
        }
        self.show(true);
        // What was still queued, or held, is answered: never dropped.
        stanzas.close();
        let text = "the gateway stopped serving this account; send it again";
        while let Ok(el) = stanzas.try_recv() {
            if let Some(reply) = error_reply(&el, "wait", "service-unavailable", Some(text)) {
                self.to_local(reply).await;
            }
        }
        for held in self.controllers.take_held() {
            if let Some(reply) = error_reply(&held.el, "wait", "service-unavailable", Some(text)) {
                self.to_local(reply).await;
            }
        }
        for (_, s) in self.sessions.drain() {
            let _ = s.tx.send(Command::Close).await;
        }
        debug!(local = %self.reg.local, "account task stopped");
    }

    async fn to_local(&self, el: Element) {
        self.env.metrics.stanza("to_local", &el);
        if self.env.to_local.send(el).await.is_err() {
            warn!("component link gone; dropping stanza to local server");
        }
    }

    // ---- local side ------------------------------------------------------

    /// A stanza from the local server: decided now, or held for its
    /// sender's presence (see [`Controllers::must_hold`]), then whatever
    /// it let through.
    async fn on_local_input(&mut self, el: Element) {
        let origin = Origin::of(&el);
        if self.controllers.must_hold(&el, &origin, &self.env.probes) {
            let resource = origin.resource.clone();
            let confirm = self.env.probes.confirm();
            let until = std::time::Instant::now() + confirm;
            match self
                .controllers
                .hold(origin, el, until, self.env.held_limit)
            {
                Ok(()) => {
                    debug!(local = %self.reg.local, ?resource, "holding a stanza until its sender's presence is known");
                    self.arm_after(confirm, Timer::Held);
                }
                Err(Some(refusal)) => self.to_local(refusal).await,
                Err(None) => {}
            }
            return;
        }
        self.on_local(el, origin).await;
        self.release_held().await;
    }

    /// Decides the held stanzas whose sender is online now or which have
    /// waited long enough, in order.
    async fn release_held(&mut self) {
        while let Some(held) = self.controllers.next_released(std::time::Instant::now()) {
            self.on_local(held.el, held.origin).await;
        }
    }

    async fn on_local(&mut self, mut el: Element, origin: Origin) {
        let Some(kind) = Kind::of(&el) else { return };
        self.controllers.on_stanza(kind, &origin, &el, now_ms());
        let resource = origin.resource;

        // Answers to requests that came from the foreign side.
        let type_ = el.attr("type").unwrap_or("");
        let mut answers = None;
        if kind == Kind::Iq && (type_ == "result" || type_ == "error") {
            let id = el.attr("id").unwrap_or("").to_string();
            if let Some(p) = self.iqs.inbound_answer(&id, resource.as_deref()) {
                set_attr(&mut el, "id", p.original_id);
                answers = Some(wit::IqRequest {
                    requester: p.session,
                    peer: p.foreign_from,
                    payload_ns: p.payload_ns,
                });
            }
        }

        let event = wit::Event::Local(wit::LocalStanza {
            stanza: wit::Stanza::of(kind, &el),
            sender_resource: resource.clone(),
            answers,
        });
        let current = Current {
            stanza: Some(el),
            side: Side::Local { resource },
        };
        self.decide_and_apply(event, current).await;
    }

    // ---- timers ----------------------------------------------------------

    async fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::Sweep(reset) => self.sweep(reset).await,
            Timer::Held => self.release_held().await,
            Timer::Archive(id) => {
                self.catchups.remove(&id);
            }
            Timer::Outbound(id) => {
                if let Some(p) = self.iqs.expire_outbound(&id) {
                    let error = p.timeout_error(&self.reg.local, &self.env.gateway);
                    self.to_local(error).await;
                }
            }
            Timer::Inbound(id) => {
                if let Some(p) = self.iqs.expire_inbound(&id) {
                    let session = p.session.clone();
                    let stanza = p.timeout_error();
                    let out = Outgoing {
                        stanza,
                        origin: None,
                    };
                    self.send_session(&session, out).await;
                }
            }
        }
    }

    /// Takes the controllers that did not confirm after a link reset
    /// offline, through the same event their own unavailable presence
    /// would have been.
    async fn sweep(&mut self, reset: u64) {
        for resource in self.controllers.unconfirmed_after(reset) {
            info!(local = %self.reg.local, %resource, "controller did not come back after the link reset");
            let from = format!("{}/{resource}", self.reg.local);
            let p = crate::xmpp::presence(&from, &self.env.gateway, Some("unavailable"));
            let origin = Origin::of(&p);
            self.on_local(p, origin).await;
        }
    }

    fn arm(&self, timer: Timer) {
        self.arm_after(self.env.iq_timeout, timer);
    }

    fn arm_after(&self, after: Duration, timer: Timer) {
        let tx = self.timers_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tx.send(timer);
        });
    }

    fn status(&self) -> String {
        let mut sessions: Vec<_> = self.sessions.iter().collect();
        sessions.sort_by_key(|(a, _)| a.as_str());
        let mut out = format!("{} as {}:", self.reg.local, self.reg.foreign);
        if sessions.is_empty() {
            out.push_str(" no foreign sessions");
        }
        for (a, s) in sessions {
            let controllers = self.controllers.of_session(a);
            out.push_str(&format!(
                " {a} {:?} (controllers: {});",
                s.state,
                controllers.join(", ")
            ));
        }
        out
    }
}
