//! The account's foreign sessions: opening them, sending through them,
//! and what their reports mean for the account.

use super::{Account, Session, Side, Tag, archive, devices, rules::Current, wit};
use crate::metrics::Metrics;
use crate::storage::KeptSalted;
use crate::xmpp::foreign::{self, Command, Outgoing, Report, SessionParams};
use crate::xmpp::scram::SaltedCache;
use crate::xmpp::{Kind, error_reply, set_attr};
use jid::FullJid;
use minidom::Element;
use tracing::{debug, info, warn};

impl Account {
    pub(super) async fn on_report(&mut self, (session, generation): Tag, report: Report) {
        let current = self
            .sessions
            .get(&session)
            .is_some_and(|s| s.generation == generation);
        if !current {
            // A report from a session already replaced or closed: what it
            // could not send is still answered.
            match report {
                Report::Failed { unsent, .. } => {
                    let why = "the foreign session was closed";
                    self.bounce(unsent, "service-unavailable", why).await;
                }
                Report::Rejected(out, condition, why) => {
                    self.bounce(vec![out], condition, &why).await;
                }
                _ => {}
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
        let metrics = self.env.metrics.clone();
        match &report {
            Report::Stanza(el) => metrics.stanza("from_foreign", el),
            Report::Online => Metrics::count(&metrics.logins, "ok"),
            Report::Failed { reason, .. } => Metrics::count(&metrics.logins, reason.condition()),
            Report::Resumed => Metrics::count(&metrics.reconnects, "resumed"),
            Report::Back { rebound, .. } => {
                let how = if *rebound { "rebound" } else { "resumed" };
                Metrics::count(&metrics.reconnects, how);
            }
            _ => {}
        }
        match report {
            Report::Stanza(el) => self.on_foreign(session, el).await,
            Report::Resumed => self.set_state(&session, wit::SessionState::Online),
            Report::Suspended => {
                self.set_state(&session, wit::SessionState::Reconnecting);
                self.went_down(&session);
            }
            Report::Online => {
                self.set_state(&session, wit::SessionState::Online);
                self.decide_internal(change(wit::SessionState::Online, None))
                    .await;
                // After a restart (or a close), what came meanwhile.
                self.catch_up(&session).await;
            }
            Report::Back { why, rebound } => {
                self.set_state(&session, wit::SessionState::Online);
                self.decide_internal(change(wit::SessionState::Online, Some(why)))
                    .await;
                if rebound {
                    // Queries asked on the stream before are never answered.
                    self.catchups.retain(|_, q| q.session != session);
                    self.catch_up(&session).await;
                }
            }
            Report::Reconnecting(why) => {
                self.set_state(&session, wit::SessionState::Reconnecting);
                self.went_down(&session);
                self.decide_internal(change(wit::SessionState::Reconnecting, Some(why)))
                    .await;
            }
            Report::Failed { reason, unsent } => {
                self.set_state(&session, wit::SessionState::Failed);
                let why = reason.to_string();
                let text = format!("the foreign session could not log in: {why}");
                self.bounce(unsent, "service-unavailable", &text).await;
                self.decide_internal(change(wit::SessionState::Failed, Some(why)))
                    .await;
            }
            Report::Rejected(out, condition, why) => {
                if condition == "resource-constraint"
                    && let Some(total) = super::count_overload(&self.env.overload)
                {
                    warn!(local = %self.reg.local, %session, total, "foreign session's queue is full; refusing stanzas");
                }
                self.bounce(vec![out], condition, &why).await
            }
            Report::Closed => {
                self.sessions.remove(&session);
                self.forget_archive(&session);
            }
        }
    }

    fn set_state(&mut self, session: &str, state: wit::SessionState) {
        if let Some(s) = self.sessions.get_mut(session) {
            s.state = state;
        }
    }

    /// Answers each controller's stanza that could not be sent, with
    /// `condition` (type `wait`: it may work later) and why.
    async fn bounce(&self, unsent: Vec<Outgoing>, condition: &str, why: &str) {
        for out in unsent {
            if let Some(reply) = out
                .origin
                .as_ref()
                .and_then(|o| error_reply(o, "wait", condition, Some(why)))
            {
                self.to_local(reply).await;
            }
        }
    }

    /// Asks F's archive what session A missed since its position; a session
    /// with no position yet looks up where the archive ends instead, so
    /// that a later gap has a position to catch up from.
    async fn catch_up(&mut self, session: &str) {
        match self.env.storage.archive_position(&self.reg.local, session) {
            Ok(Some(p)) => {
                self.ask_archive(session, archive::Purpose::CatchUp, p)
                    .await
            }
            Ok(None) => {
                self.ask_archive(session, archive::Purpose::Locate, String::new())
                    .await
            }
            Err(e) => {
                warn!(local = %self.reg.local, session, error = %e, "could not read the archive position; not catching up");
            }
        }
    }

    async fn ask_archive(&mut self, session: &str, purpose: archive::Purpose, after: String) {
        // Random, not the IQ counter: a contact who sees our IQ ids must
        // not be able to guess a query's and forge its results.
        let id = format!("pz-mam-{:016x}", rand::random::<u64>());
        let stanza = match purpose {
            archive::Purpose::Locate => archive::locate(&id),
            _ => {
                debug!(local = %self.reg.local, session, after, "asking the archive what came after");
                archive::query(&id, &after)
            }
        };
        let query = archive::Query {
            session: session.to_string(),
            purpose,
            after,
            done: false,
        };
        self.catchups.insert(id.clone(), query);
        self.arm(super::Timer::Archive(id));
        let out = Outgoing {
            stanza,
            origin: None,
        };
        self.send_session(session, out).await;
    }

    /// Keeps where session A is in the archive (through the writer, in the
    /// database).
    fn keep_position(&mut self, session: &str, id: String) {
        let _ = self
            .env
            .positions
            .send((self.reg.local.clone(), session.to_string(), id));
    }

    /// Whether a catch-up of session A is under way: live messages then do
    /// not move its position (the pages still to come are older).
    fn catching_up(&self, session: &str) -> bool {
        self.catchups
            .values()
            .any(|q| q.session == session && q.purpose == archive::Purpose::CatchUp && !q.done)
    }

    /// Session A went down: what it receives live from now on is after a
    /// gap.
    fn went_down(&mut self, session: &str) {
        if let Some(seen) = self.seen.get_mut(session) {
            seen.went_down();
        }
    }

    /// Forgets the archive state of a session that ended.
    pub(super) fn forget_archive(&mut self, session: &str) {
        self.catchups.retain(|_, q| q.session != session);
        self.seen.remove(session);
    }

    /// Answers to the host's own archive queries: result messages are
    /// unwrapped and decided like live ones; the final answer asks for the
    /// next page or ends the catch-up. Whether `el` was one. Only the
    /// account's own server answers for its archive: anything else with a
    /// matching query id is not an answer.
    async fn on_archive(&mut self, session: &str, el: &Element) -> bool {
        if !super::iq::same_peer(None, el.attr("from"), &self.reg.foreign) {
            return false;
        }
        match Kind::of(el) {
            Some(Kind::Message) => {
                let Some(qid) = archive::result_queryid(el).map(str::to_string) else {
                    return false;
                };
                let Some((purpose, done)) = self
                    .catchups
                    .get(&qid)
                    .filter(|q| q.session == session)
                    .map(|q| (q.purpose, q.done))
                else {
                    return false;
                };
                let Some(found) = archive::unwrap(el) else {
                    return true;
                };
                if done {
                    return true;
                }
                if purpose != archive::Purpose::CatchUp {
                    if let Some(q) = self.catchups.get_mut(&qid) {
                        q.purpose = archive::Purpose::Located;
                    }
                    self.keep_position(session, found.id);
                    return true;
                }
                let seen = self.seen.entry(session.to_string()).or_default();
                if let Some(reached) = seen.reached(&found.id) {
                    // The session had it live from here: the rest of this
                    // page is not asked again.
                    if let Some(q) = self.catchups.get_mut(&qid) {
                        q.done = true;
                    }
                    debug!(local = %self.reg.local, session, id = %found.id, ?reached, "the catch-up reached live delivery");
                    match reached {
                        archive::Reached::Now(latest) => self.keep_position(session, latest),
                        archive::Reached::Then(latest) => {
                            self.keep_position(session, latest.clone());
                            self.ask_archive(session, archive::Purpose::CatchUp, latest)
                                .await;
                        }
                    }
                    return true;
                }
                let fresh = seen.first_time(&found.id);
                let own = archive::is_own(&found.message, &self.reg.foreign);
                debug!(local = %self.reg.local, session, id = %found.id, fresh, own, from = ?found.message.attr("from"), "archived message");
                if fresh && !own {
                    let event = wit::Event::Foreign(wit::ForeignStanza {
                        session: session.to_string(),
                        stanza: wit::Stanza::of(Kind::Message, &found.message),
                        answers: None,
                    });
                    let current = Current {
                        stanza: Some(found.message),
                        side: Side::Foreign {
                            session: session.to_string(),
                        },
                    };
                    self.decide_and_apply(event, current).await;
                }
                self.keep_position(session, found.id);
                true
            }
            Some(Kind::Iq) => {
                let type_ = el.attr("type").unwrap_or("");
                if !(type_ == "result" || type_ == "error") {
                    return false;
                }
                let id = el.attr("id").unwrap_or("");
                if self.catchups.get(id).is_none_or(|q| q.session != session) {
                    return false;
                }
                let Some(q) = self.catchups.remove(id) else {
                    return false;
                };
                match (q.purpose, type_, archive::fin(el)) {
                    _ if q.done => {
                        debug!(local = %self.reg.local, session, "caught up with live delivery")
                    }
                    // An empty archive: later gaps catch up from its start.
                    (archive::Purpose::Locate, "result", _) => {
                        self.keep_position(session, archive::FROM_THE_START.to_string());
                    }
                    (archive::Purpose::CatchUp, "result", Some((false, Some(last))))
                        if last != q.after =>
                    {
                        self.ask_archive(session, archive::Purpose::CatchUp, last)
                            .await;
                    }
                    (archive::Purpose::CatchUp, "error", _) => {
                        // The position is gone from the archive (expired, or
                        // another account's): start again from its end.
                        warn!(local = %self.reg.local, session, "the archive refused the position; starting from its end");
                        self.ask_archive(session, archive::Purpose::Locate, String::new())
                            .await;
                    }
                    _ => debug!(local = %self.reg.local, session, "done with the archive"),
                }
                true
            }
            _ => false,
        }
    }

    async fn on_foreign(&mut self, session: String, mut el: Element) {
        let Some(kind) = Kind::of(&el) else { return };
        if !self.catchups.is_empty() && self.on_archive(&session, &el).await {
            return;
        }
        // A live message the archive holds too: delivered once, and where
        // the session is in the archive is kept.
        let archived = match kind {
            Kind::Message => archive::stanza_id(&el, &self.reg.foreign),
            _ => None,
        };
        if let Some(id) = &archived {
            let seen = self.seen.entry(session.clone()).or_default();
            if !seen.first_time(id) {
                return;
            }
            if !archive::delayed(&el) {
                seen.live(id);
            }
        }
        // Asked about F/A's capabilities: the gateway's to answer.
        if kind == Kind::Iq
            && let Some(reply) = devices::caps_answer(&el)
        {
            let out = Outgoing {
                stanza: reply,
                origin: None,
            };
            self.send_session(&session, out).await;
            return;
        }
        let mut answers = None;
        if kind == Kind::Message
            && let Some((request, tie)) =
                self.iqs
                    .tied(&el, &session, el.attr("from"), &self.reg.foreign)
        {
            answers = Some(wit::IqRequest {
                requester: request.requester.clone(),
                peer: None,
                payload_ns: request.payload_ns.clone(),
            });
            let tie = tie.clone();
            devices::restore_tag(&mut el, &tie.spec, tie.original);
        }
        let type_ = el.attr("type").unwrap_or("");
        if kind == Kind::Iq && (type_ == "result" || type_ == "error") {
            let id = el.attr("id").unwrap_or("").to_string();
            let from = el.attr("from").map(str::to_string);
            let answer =
                self.iqs
                    .outbound_answer(&id, &session, from.as_deref(), &self.reg.foreign);
            if let Some(p) = answer {
                set_attr(&mut el, "id", p.original_id);
                answers = Some(wit::IqRequest {
                    requester: p.requester,
                    peer: None,
                    payload_ns: p.payload_ns,
                });
            }
        }
        let event = wit::Event::Foreign(wit::ForeignStanza {
            session: session.clone(),
            stanza: wit::Stanza::of(kind, &el),
            answers,
        });
        let current = Current {
            stanza: Some(el),
            side: Side::Foreign {
                session: session.clone(),
            },
        };
        self.decide_and_apply(event, current).await;
        if let Some(id) = archived
            && self.moves_position(&session)
        {
            self.keep_position(&session, id);
        }
    }

    /// Whether a live message moves session A's archive position: only
    /// while A is online and not catching up. A stream bound afresh hands
    /// over what arrives before stream management is enabled ahead of its
    /// reset (tokio-xmpp's "pre-SM data"); such a message is newer than the
    /// gap, and keeping its id would make the catch-up start past the gap.
    fn moves_position(&self, session: &str) -> bool {
        self.sessions
            .get(session)
            .is_some_and(|s| s.state == wit::SessionState::Online)
            && !self.catching_up(session)
    }

    /// Opens F/A unless it is already open or on its way.
    pub(super) fn open_session(&mut self, a: String, jid: FullJid) {
        if self
            .sessions
            .get(&a)
            .is_some_and(|s| s.state != wit::SessionState::Failed)
        {
            return;
        }
        self.went_down(&a);
        self.generation += 1;
        let generation = self.generation;
        let env = self.env.clone();
        let dialer = &env.dialer;
        let params = SessionParams {
            jid,
            secret: foreign::LoginSecret {
                password: self.reg.password.clone(),
                salted: self.salted_cache(),
            },
            connector: dialer.connector(self.reg.foreign.domain().as_str()),
            login_timeout: dialer.login_timeout,
            queue_limit: dialer.queue_limit,
            logins: dialer.logins.clone(),
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
        let (env, reg) = (&self.env, &self.reg);
        self.salted
            .get_or_insert_with(|| {
                let kept = env.storage.salted_password(&reg.local).unwrap_or_else(|e| {
                    warn!(local = %reg.local, error = %e, "could not read the salted password; deriving it again");
                    None
                });
                let (writer, reg) = (env.keep_salted.clone(), reg.clone());
                SaltedCache::new(kept, env.dialer.scram.clone(), move |salted| {
                    let _ = writer.send(KeptSalted {
                        registration: reg.clone(),
                        salted,
                    });
                })
            })
            .clone()
    }

    /// Queues `out` on session A; answers its controller when there is no
    /// such session.
    pub(super) async fn send_session(&self, session: &str, out: Outgoing) {
        match self.sessions.get(session) {
            // The session task never waits on its stream and bounds what
            // waits for it itself (answering resource-constraint past the
            // bound), so this waits only for it to take the command.
            Some(s) => {
                self.env.metrics.stanza("to_foreign", &out.stanza);
                if s.tx.send(Command::Send(Box::new(out))).await.is_err() {
                    debug!(
                        session,
                        "foreign session ended before the stanza could be queued"
                    );
                }
            }
            None => {
                let why = "the foreign session is not open";
                self.bounce(vec![out], "service-unavailable", why).await
            }
        }
    }
}
