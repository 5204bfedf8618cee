//! Foreign sessions: one client connection per (account, resource A),
//! driven from one task through tokio-xmpp's `StanzaStream`, with a
//! deadline on the first login and failures reported to the account
//! (docs/dependencies.md, tokio-xmpp pitfalls 2 and 4).

use super::delivery::Delivery;
use super::login::{classify, login};
use futures::StreamExt;
use minidom::Element;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_xmpp::Stanza;
use tokio_xmpp::jid::{FullJid, Jid};
use tokio_xmpp::stanzastream::{
    Connection, Event, StanzaStage, StanzaStream, StanzaToken, StreamEvent,
};
use tokio_xmpp::xmlstream::Timeouts;
use tracing::{debug, info, trace, warn};

pub use super::login::{
    Connector, Dialer, LoginFailure, LoginSecret, check_credentials, tls_config,
};

/// A stanza to send, with the local stanza to bounce if it cannot be.
#[derive(Debug)]
pub struct Outgoing {
    /// The stanza for the foreign server.
    pub stanza: Element,
    /// What the controller sent, answered with an error on failure.
    pub origin: Option<Element>,
}

/// Commands from the account to its session.
#[derive(Debug)]
pub enum Command {
    /// Send (queued while logging in).
    Send(Box<Outgoing>),
    /// Close cleanly.
    Close,
}

/// Reports from a session to its account.
#[derive(Debug)]
pub enum Report {
    /// Bound and usable for the first time.
    Online,
    /// Lost the connection; it may still be resumed, nobody needs telling.
    Suspended,
    /// Down for longer than a blip (a reconnect failed, or the server could
    /// not resume the session): the controllers should know, and why.
    Reconnecting(String),
    /// Resumed without loss (XEP-0198) before anyone was told.
    Resumed,
    /// Usable again after a gap the controllers were told of: resumed, or
    /// bound again with what the server had lost sent again.
    Back {
        /// Why it was gone, and how it came back.
        why: String,
        /// Bound afresh: what arrived meanwhile is only in the archive.
        rebound: bool,
    },
    /// Could not log in; the stanzas that were waiting come back.
    Failed {
        /// Why.
        reason: LoginFailure,
        /// Stanzas never sent.
        unsent: Vec<Outgoing>,
    },
    /// A stanza arrived (in `jabber:client`).
    Stanza(Element),
    /// A stanza could not be sent: the RFC 6120 condition and why.
    Rejected(Outgoing, &'static str, String),
    /// Closed on request.
    Closed,
}

/// Parameters of one session.
pub struct SessionParams {
    /// F/A.
    pub jid: FullJid,
    /// F's password and what was derived from it.
    pub secret: LoginSecret,
    /// How to connect.
    pub connector: Connector,
    /// Deadline for the first login.
    pub login_timeout: Duration,
    /// Stanzas that may wait while logging in.
    pub queue_limit: usize,
    /// Logins (TCP, SASL, bind) in flight across the whole gateway: a login
    /// storm after a restart must not flatten the foreign server.
    pub logins: Arc<tokio::sync::Semaphore>,
}

/// Starts a session; reports come through `reports` as `(tag, Report)`.
pub fn spawn<T: Clone + Send + Sync + 'static>(
    params: SessionParams,
    tag: T,
    reports: mpsc::UnboundedSender<(T, Report)>,
) -> mpsc::Sender<Command> {
    let (tx, rx) = mpsc::channel(params.queue_limit.max(1));
    tokio::spawn(run(params, rx, move |r| {
        let _ = reports.send((tag.clone(), r));
    }));
    tx
}

/// Logs in, retrying transient failures until `deadline`; a refused
/// password ends it at once.
async fn first_login(
    params: &SessionParams,
    deadline: tokio::time::Instant,
) -> Result<Connection, LoginFailure> {
    let identity = Jid::from(params.jid.clone());
    let mut delay = Duration::from_millis(250);
    loop {
        let attempt = login(
            &params.connector,
            &identity,
            &params.secret,
            Timeouts::tight(),
        );
        let failure = match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok((features, stream))) => {
                return Ok(Connection {
                    stream: stream.box_stream(),
                    features,
                    identity,
                });
            }
            Ok(Err(e)) => classify(&e),
            Err(_) => {
                let why = format!("no login within {:?}", params.login_timeout);
                return Err(LoginFailure::Unreachable(why));
            }
        };
        let fatal = matches!(failure, LoginFailure::NotAuthorized(_));
        if fatal || tokio::time::Instant::now() + delay >= deadline {
            return Err(failure);
        }
        debug!(jid = %params.jid, %failure, "foreign login attempt failed; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

async fn run(
    params: SessionParams,
    mut commands: mpsc::Receiver<Command>,
    report: impl Fn(Report),
) {
    let jid = params.jid.clone();

    // Logging in: queue what controllers send, bounded, until logged in or
    // failed. tokio-xmpp's own reconnector would retry a bad password
    // forever and say nothing (docs/dependencies.md, pitfall 4). The login
    // deadline starts once a login slot is free: waiting for one is the
    // gateway's own queue, not the foreign server being slow.
    let mut delivery = Delivery::new(params.queue_limit);
    let logging_in = async {
        let permit = params.logins.clone().acquire_owned().await.ok();
        let deadline = tokio::time::Instant::now() + params.login_timeout;
        (first_login(&params, deadline).await, permit, deadline)
    };
    tokio::pin!(logging_in);
    let (connection, permit, deadline) = loop {
        tokio::select! {
            result = &mut logging_in => match result {
                (Ok(conn), permit, deadline) => break (conn, permit, deadline),
                (Err(reason), ..) => {
                    warn!(%jid, %reason, "foreign login failed");
                    report(Report::Failed { reason, unsent: delivery.unsent() });
                    return;
                }
            },
            cmd = commands.recv() => match cmd {
                Some(Command::Send(out)) => queue(&mut delivery, *out, &report),
                Some(Command::Close) | None => {
                    report(Report::Closed);
                    return;
                }
            },
        }
    };

    // Authenticated: StanzaStream binds the resource and owns the stream
    // from here, calling the reconnector whenever the connection drops.
    let (fail_tx, fail_rx) = mpsc::unbounded_channel::<LoginFailure>();
    let mut first = Some(connection);
    // Connections handed over since the session was last up. After a server
    // restart, XEP-0198 resumption fails and Prosody 0.12 answers
    // `<failed xmlns='urn:xmpp:sm:3'/>` without `h`, which xmpp-parsers
    // rejects: tokio-xmpp then drops the connection and tries to resume
    // again, forever. So only the first reconnect offers stream management
    // (a cut socket still resumes); later ones bind afresh.
    let handed = Arc::new(AtomicU32::new(0));
    let handed_in_reconnector = handed.clone();
    let connector = params.connector.clone();
    let secret = params.secret.clone();
    let logins = params.logins.clone();
    let identity = Jid::from(jid.clone());
    let reconnector = Box::new(
        move |_: Option<String>, slot: oneshot::Sender<Connection>| {
            if let Some(conn) = first.take() {
                let _ = slot.send(conn);
                return;
            }
            let (connector, secret, identity, fail_tx, logins) = (
                connector.clone(),
                secret.clone(),
                identity.clone(),
                fail_tx.clone(),
                logins.clone(),
            );
            let without_sm = handed_in_reconnector.fetch_add(1, Ordering::SeqCst) >= 1;
            tokio::spawn(async move {
                // Keep trying while the session is wanted (docs/behaviour.md section 7): the
                // account closes it when its controllers leave. The slot is
                // dropped only once nobody listens any more, since tokio-xmpp's
                // worker treats a dropped slot as fatal.
                let mut delay = Duration::from_secs(1);
                loop {
                    // A server restart drops every session at once: reconnects
                    // queue for the same login slots as first logins.
                    let permit = logins.acquire().await;
                    let attempt = login(&connector, &identity, &secret, Timeouts::tight()).await;
                    drop(permit);
                    match attempt {
                        Ok((mut features, stream)) => {
                            if without_sm {
                                features.stream_management = None;
                            }
                            let conn = Connection {
                                stream: stream.box_stream(),
                                features,
                                identity,
                            };
                            let _ = slot.send(conn);
                            return;
                        }
                        Err(e) => {
                            if fail_tx.send(classify(&e)).is_err() {
                                return;
                            }
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(30));
                        }
                    }
                }
            });
        },
    );
    let mut stream = StanzaStream::new(reconnector, params.queue_limit.max(1));

    // Binding the resource, still under the login deadline.
    let bound = loop {
        tokio::select! {
            ev = stream.next() => match ev {
                Some(Event::Stream(StreamEvent::Reset { features, .. })) => {
                    break Ok(features.stream_management.is_some());
                }
                Some(Event::Stream(_)) => {}
                Some(Event::Stanza(s)) => report(Report::Stanza(received(&jid, s))),
                None => break Err(LoginFailure::Unreachable("the stream ended while binding".into())),
            },
            cmd = commands.recv() => match cmd {
                Some(Command::Send(out)) => queue(&mut delivery, *out, &report),
                Some(Command::Close) | None => {
                    stream.close().await;
                    report(Report::Closed);
                    return;
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                let why = format!("resource not bound within {:?}", params.login_timeout);
                break Err(LoginFailure::Unreachable(why));
            }
        }
    };
    let sm = match bound {
        Ok(sm) => sm,
        Err(reason) => {
            warn!(%jid, %reason, "foreign login failed");
            drop(fail_rx);
            stream.close().await;
            report(Report::Failed {
                reason,
                unsent: delivery.unsent(),
            });
            return;
        }
    };
    drop(permit);
    info!(%jid, "foreign session online");
    report(Report::Online);
    let mut online = Online {
        jid: jid.clone(),
        stream,
        delivery,
        depth: params.queue_limit.max(1),
        sm,
        up: true,
        gap: None,
        told: false,
    };
    online.flush(&report).await;
    online.serve(&jid, commands, fail_rx, handed, &report).await;
}

/// A session once bound: its stream, what is in flight on it and what
/// waits for it, and what is known of the current gap, if the stream is
/// down.
struct Online {
    /// F/A, for the log.
    jid: FullJid,
    stream: StanzaStream,
    delivery: Delivery<StanzaToken>,
    /// The depth of the stream's own queue: never more of ours in it, so
    /// that handing it a stanza never waits.
    depth: usize,
    /// Whether the current stream has XEP-0198.
    sm: bool,
    /// Whether the stream is usable; while not, stanzas wait.
    up: bool,
    /// Why the stream is down, while it is.
    gap: Option<String>,
    /// Whether the account was told of this gap (it tells the controllers).
    told: bool,
}

/// Resolves once the stanza behind `token` has left the stream's queue;
/// never without one.
async fn written(token: Option<StanzaToken>) {
    match token {
        Some(mut t) => {
            t.wait_for(StanzaStage::Sent).await;
        }
        None => std::future::pending().await,
    }
}

impl Online {
    /// Hands what waits to the stream while it is up and has room; each
    /// stanza stays tracked until the server has it.
    async fn flush(&mut self, report: &impl Fn(Report)) {
        self.delivery.forget_delivered();
        // A server that never acknowledges must not make the stanzas in
        // flight grow without bound: past four times the stream's depth,
        // what is left waits (and past the outbox's bound, is refused).
        while self.up
            && self.delivery.queued() < self.depth
            && self.delivery.in_flight() < self.depth * 4
        {
            let Some(out) = self.delivery.take_next() else {
                break;
            };
            trace!(target: "pizzja::xml::foreign::out", jid = %self.jid, xml = %super::to_logged_xml(&out.stanza));
            match Stanza::try_from(out.stanza.clone()) {
                Ok(stanza) => {
                    let token = self.stream.send(Box::new(stanza)).await;
                    self.delivery.sent(out, token, self.sm);
                }
                Err(e) => report(Report::Rejected(
                    out,
                    "bad-request",
                    format!("not a valid stanza: {e}"),
                )),
            }
        }
    }

    fn bounce(failed: Vec<(Outgoing, String)>, report: &impl Fn(Report)) {
        for (out, why) in failed {
            report(Report::Rejected(out, "service-unavailable", why));
        }
    }

    /// Tells the account of the gap, once per gap.
    fn tell(&mut self, why: String, report: &impl Fn(Report)) {
        if !self.told {
            self.told = true;
            report(Report::Reconnecting(why));
        }
    }

    async fn serve(
        mut self,
        jid: &FullJid,
        mut commands: mpsc::Receiver<Command>,
        mut fail_rx: mpsc::UnboundedReceiver<LoginFailure>,
        handed: Arc<AtomicU32>,
        report: &impl Fn(Report),
    ) {
        // Acknowledgements settle stanzas in flight; looked at now and then,
        // since nothing waits on them but memory.
        let mut settle = tokio::time::interval(Duration::from_millis(500));
        settle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // With stanzas waiting for room in the stream, wake up when it
            // has written the oldest of ours.
            let room = match self.delivery.waiting() {
                0 => None,
                _ => self.delivery.oldest_queued().cloned(),
            };
            tokio::select! {
                ev = self.stream.next() => match ev {
                    Some(Event::Stanza(s)) => report(Report::Stanza(received(jid, s))),
                    Some(Event::Stream(StreamEvent::Reset { features, .. })) => {
                        handed.store(0, Ordering::SeqCst);
                        self.sm = features.stream_management.is_some();
                        self.up = true;
                        let gap = self.gap.take().unwrap_or_else(|| "the connection was lost".into());
                        let why = format!("{gap}; the session could not be resumed");
                        self.tell(why.clone(), report);
                        self.told = false;
                        let (resent, failed) = self.delivery.rebound();
                        Self::bounce(failed, report);
                        info!(%jid, resent, "foreign session bound again");
                        report(Report::Back {
                            why: format!("bound again ({why})"),
                            rebound: true,
                        });
                    }
                    Some(Event::Stream(StreamEvent::Suspended)) => {
                        self.up = false;
                        self.gap = Some("connection lost".into());
                        report(Report::Suspended);
                    }
                    Some(Event::Stream(StreamEvent::Resumed)) => {
                        handed.store(0, Ordering::SeqCst);
                        self.up = true;
                        let announced = std::mem::take(&mut self.told);
                        let gap = self.gap.take();
                        self.delivery.resumed(announced);
                        if announced {
                            let gap = gap.unwrap_or_default();
                            report(Report::Back {
                                why: format!("resumed ({gap})"),
                                rebound: false,
                            });
                        } else {
                            report(Report::Resumed);
                        }
                    }
                    None => {
                        let reason = LoginFailure::Unreachable("the foreign stream ended".into());
                        let unsent = self.delivery.unsent();
                        report(Report::Failed { reason, unsent });
                        return;
                    }
                },
                f = fail_rx.recv() => if let Some(f) = f {
                    warn!(%jid, failure = %f, "foreign reconnect attempt failed");
                    self.gap = Some(f.to_string());
                    self.tell(f.to_string(), report);
                },
                cmd = commands.recv() => match cmd {
                    Some(Command::Send(out)) => queue(&mut self.delivery, *out, report),
                    Some(Command::Close) | None => {
                        drop(fail_rx);
                        self.stream.close().await;
                        info!(%jid, "foreign session closed");
                        // A clean close writes what the stream had; what
                        // still waited for it was never sent.
                        let why = "the foreign session was closed before it could send this";
                        while let Some(out) = self.delivery.take_next() {
                            report(Report::Rejected(out, "service-unavailable", why.into()));
                        }
                        report(Report::Closed);
                        return;
                    }
                },
                _ = written(room) => {}
                _ = settle.tick() => Self::bounce(self.delivery.settle(), report),
            }
            if self.delivery.waiting() > 0 {
                self.flush(report).await;
            }
        }
    }
}

/// A stanza the foreign server sent, logged raw at trace level under its
/// own target (docs/operations.md).
fn received(jid: &FullJid, s: Stanza) -> Element {
    let el = Element::from(s);
    trace!(target: "pizzja::xml::foreign::in", %jid, xml = %super::to_logged_xml(&el));
    el
}

/// Puts `out` in line; past the bound its sender gets
/// `resource-constraint`.
fn queue(delivery: &mut Delivery<StanzaToken>, out: Outgoing, report: &impl Fn(Report)) {
    if let Err(out) = delivery.wait(out) {
        let why = "too many stanzas waiting for the foreign session";
        report(Report::Rejected(*out, "resource-constraint", why.into()));
    }
}
