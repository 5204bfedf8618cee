//! What a foreign session has handed its stream and not yet seen
//! acknowledged, and what waits while the stream is down
//! (docs/behaviour.md section 7).
//!
//! tokio-xmpp resends what the server had not acknowledged when a stream
//! is resumed (XEP-0198), but when resumption fails it binds afresh and
//! discards those stanzas without a word (docs/dependencies.md). So the
//! session keeps each stanza until its token says the server has it, and
//! after a rebind sends again, in order, what was lost: first F/A's last
//! broadcast presence (the new session has none), then the lost stanzas,
//! then what waited meanwhile. (Stanzas the stream still had queued,
//! unwritten, at the cut go out on the new stream first, by themselves.)
//!
//! Stanzas wait in the session's own outbox, bounded, and are handed to the
//! stream only while it is up and has room: a session that waited on a
//! full stream would stop reading the stream's events, and the stream
//! would wait for it to read them.

use super::foreign::Outgoing;
use futures::FutureExt;
use minidom::Element;
use std::collections::VecDeque;
use tokio_xmpp::stanzastream::{StanzaStage, StanzaState, StanzaToken};

/// Where a stanza handed to the stream stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not settled yet: queued, or sent and waiting for the server's ack.
    Pending,
    /// The server has it (acknowledged, or sent on a stream without
    /// XEP-0198, where that is all anyone can know).
    Delivered,
    /// It cannot be sent (why).
    Failed(String),
    /// The stream discarded it unacknowledged: it must be sent again.
    Lost,
}

/// A handle on a stanza's progress through the stream.
pub trait Tracked {
    /// Its outcome now; `sm` says whether it went out on a stream with
    /// XEP-0198.
    fn outcome(&mut self, sm: bool) -> Outcome;
    /// Whether it is still in the stream's queue, not written yet.
    fn queued(&self) -> bool;
}

impl Tracked for StanzaToken {
    fn outcome(&mut self, sm: bool) -> Outcome {
        // Resolves at once when the stanza is acked (or failed), or when the
        // stream dropped its tracking before that; pending otherwise.
        match self.wait_for(StanzaStage::Acked).now_or_never() {
            None => Outcome::Pending,
            Some(Some(StanzaState::Acked { .. })) => Outcome::Delivered,
            Some(Some(StanzaState::Failed { error })) => Outcome::Failed(error.to_string()),
            Some(Some(StanzaState::Dropped)) => Outcome::Failed("the stream dropped it".into()),
            Some(Some(_)) => Outcome::Pending,
            Some(None) => match self.state() {
                StanzaState::Sent { .. } if !sm => Outcome::Delivered,
                StanzaState::Acked { .. } => Outcome::Delivered,
                _ => Outcome::Lost,
            },
        }
    }

    fn queued(&self) -> bool {
        // A token whose stream dropped it unsent is not waiting any more.
        matches!(self.state(), StanzaState::Queued)
            && self
                .clone()
                .wait_for(StanzaStage::Sent)
                .now_or_never()
                .is_none()
    }
}

struct InFlight<T> {
    out: Outgoing,
    token: T,
    sm: bool,
}

/// One session's stanzas in flight and waiting.
pub struct Delivery<T> {
    inflight: VecDeque<InFlight<T>>,
    /// Waiting to be handed to the stream, in order.
    waiting: VecDeque<Outgoing>,
    last_presence: Option<Element>,
    limit: usize,
}

/// Broadcast presence: a presence without 'to' (available or not).
fn is_broadcast_presence(el: &Element) -> bool {
    el.name() == "presence"
        && el.attr("to").is_none()
        && matches!(el.attr("type"), None | Some("unavailable"))
}

impl<T: Tracked> Delivery<T> {
    /// At most `limit` stanzas wait while the stream is down.
    pub fn new(limit: usize) -> Self {
        Delivery {
            inflight: VecDeque::new(),
            waiting: VecDeque::new(),
            last_presence: None,
            limit: limit.max(1),
        }
    }

    /// The next stanza to hand to the stream, if any.
    pub fn take_next(&mut self) -> Option<Outgoing> {
        self.waiting.pop_front()
    }

    /// Handed to the stream and not written yet: while this many are
    /// there, its queue has this much less room. The stream writes in
    /// order, so they are the newest: counted from the back, the cost is
    /// what is queued, not what is in flight.
    pub fn queued(&self) -> usize {
        self.inflight
            .iter()
            .rev()
            .take_while(|f| f.token.queued())
            .count()
    }

    /// The oldest stanza still in the stream's queue, to wait on.
    pub fn oldest_queued(&self) -> Option<&T> {
        self.inflight
            .iter()
            .rev()
            .take_while(|f| f.token.queued())
            .last()
            .map(|f| &f.token)
    }

    /// Forgets the stanzas at the front the server has: acknowledgements
    /// come in order, so this is cheap enough to do at every step.
    pub fn forget_delivered(&mut self) {
        while let Some(f) = self.inflight.front_mut() {
            if f.token.outcome(f.sm) != Outcome::Delivered {
                break;
            }
            self.inflight.pop_front();
        }
    }

    /// `out` was handed to the stream, on a stream with XEP-0198 or not.
    pub fn sent(&mut self, out: Outgoing, token: T, sm: bool) {
        if is_broadcast_presence(&out.stanza) {
            self.last_presence = Some(out.stanza.clone());
        }
        self.inflight.push_back(InFlight { out, token, sm });
    }

    /// Keeps `out` until the stream can take it; over the limit it comes
    /// back.
    pub fn wait(&mut self, out: Outgoing) -> Result<(), Box<Outgoing>> {
        if self.waiting.len() >= self.limit {
            return Err(Box::new(out));
        }
        self.waiting.push_back(out);
        Ok(())
    }

    /// Stanzas waiting for the stream.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Stanzas handed to the stream and not settled yet.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Forgets what the server has; returns what failed, for its sender.
    /// Lost stanzas stay, for [`Delivery::rebound`].
    pub fn settle(&mut self) -> Vec<(Outgoing, String)> {
        let mut failed = Vec::new();
        let mut kept = VecDeque::with_capacity(self.inflight.len());
        for mut f in self.inflight.drain(..) {
            match f.token.outcome(f.sm) {
                Outcome::Delivered => {}
                Outcome::Failed(why) => failed.push((f.out, why)),
                Outcome::Pending | Outcome::Lost => kept.push_back(f),
            }
        }
        self.inflight = kept;
        failed
    }

    /// The stream came back without its state (resumption failed): puts
    /// first in line, in order, F/A's last broadcast presence and the
    /// stanzas the server never had (except the host's own archive
    /// queries, asked afresh), before what waited; returns how many,
    /// and what failed, for its sender. Stanzas still queued in the stream
    /// go out by themselves.
    pub fn rebound(&mut self) -> (usize, Vec<(Outgoing, String)>) {
        let mut failed = Vec::new();
        let mut again = Vec::new();
        if let Some(p) = &self.last_presence {
            again.push(Outgoing {
                stanza: p.clone(),
                origin: None,
            });
        }
        let mut kept = VecDeque::new();
        for mut f in self.inflight.drain(..) {
            match f.token.outcome(f.sm) {
                Outcome::Delivered => {}
                Outcome::Failed(why) => failed.push((f.out, why)),
                Outcome::Lost if asked_afresh(&f.out) => {}
                Outcome::Lost => again.push(f.out),
                Outcome::Pending => kept.push_back(f),
            }
        }
        self.inflight = kept;
        let n = again.len();
        for out in again.into_iter().rev() {
            self.waiting.push_front(out);
        }
        (n, failed)
    }

    /// The stream is back with its state (resumed): when `announce`
    /// (controllers were told it had gone), F/A's last broadcast presence
    /// goes first in line, so that they see it come back.
    pub fn resumed(&mut self, announce: bool) {
        if announce && let Some(p) = &self.last_presence {
            self.waiting.push_front(Outgoing {
                stanza: p.clone(),
                origin: None,
            });
        }
    }

    /// Everything not known to have reached the server, for the session's
    /// end: unsettled stanzas in flight, then what waited.
    pub fn unsent(mut self) -> Vec<Outgoing> {
        let _ = self.settle();
        self.inflight
            .into_iter()
            .map(|f| f.out)
            .chain(self.waiting)
            .collect()
    }
}

/// The host's own archive query (XEP-0313): after a rebind the catch-up
/// asks afresh from the kept position, and the answer to one from the lost
/// stream would find no one waiting for it.
fn asked_afresh(out: &Outgoing) -> bool {
    out.origin.is_none()
        && out.stanza.name() == "iq"
        && out
            .stanza
            .get_child("query", crate::account::archive::NS_MAM)
            .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A token whose outcome the test sets.
    /// Its outcome, and whether it is still in the stream's queue.
    #[derive(Clone)]
    struct Fake(Rc<RefCell<Outcome>>, Rc<std::cell::Cell<bool>>);

    impl Fake {
        fn new() -> Fake {
            Fake(
                Rc::new(RefCell::new(Outcome::Pending)),
                Rc::new(std::cell::Cell::new(false)),
            )
        }
        fn queue(&self, q: bool) {
            self.1.set(q);
        }
        fn set(&self, o: Outcome) {
            *self.0.borrow_mut() = o;
        }
    }

    impl Tracked for Fake {
        fn outcome(&mut self, _sm: bool) -> Outcome {
            self.0.borrow().clone()
        }
        fn queued(&self) -> bool {
            *self.0.borrow() == Outcome::Pending && self.1.get()
        }
    }

    fn drain(d: &mut Delivery<Fake>) -> Vec<Outgoing> {
        std::iter::from_fn(|| d.take_next()).collect()
    }

    fn out(xml: &str) -> Outgoing {
        let stanza: Element = xml.parse().expect("test XML");
        Outgoing {
            origin: Some(stanza.clone()),
            stanza,
        }
    }

    fn message(n: u32) -> Outgoing {
        out(&format!(
            "<message xmlns='jabber:client' id='m{n}' to='bob@remote.net'><body>{n}</body></message>"
        ))
    }

    fn ids(v: &[Outgoing]) -> Vec<String> {
        v.iter()
            .map(|o| o.stanza.attr("id").unwrap_or("-").to_string())
            .collect()
    }

    #[test]
    fn after_a_rebind_presence_then_lost_then_waiting_go_out_in_order_once() {
        let mut d = Delivery::new(8);
        let presence = out("<presence xmlns='jabber:client' id='p'><show>away</show></presence>");
        let tokens: Vec<Fake> = (0..5).map(|_| Fake::new()).collect();
        d.sent(presence, tokens[0].clone(), true);
        for n in 1..=4 {
            d.sent(message(n), tokens[n as usize].clone(), true);
        }
        // The server had the presence and m1; m2..m4 were discarded.
        tokens[0].set(Outcome::Delivered);
        tokens[1].set(Outcome::Delivered);
        for t in &tokens[2..] {
            t.set(Outcome::Lost);
        }
        d.wait(message(5)).expect("room");
        let (n, failed) = d.rebound();
        assert!(failed.is_empty());
        assert_eq!(n, 4);
        let again = drain(&mut d);
        assert_eq!(ids(&again), ["p", "m2", "m3", "m4", "m5"]);
        assert!(
            again[0].origin.is_none(),
            "the restored presence is the host's own"
        );
        assert_eq!(d.in_flight(), 0);
        assert_eq!(d.waiting(), 0);
        // Nothing is sent twice by a second rebind: only the presence again.
        d.rebound();
        assert_eq!(ids(&drain(&mut d)), ["p"]);
    }

    #[test]
    fn the_host_s_own_archive_query_is_not_sent_again_after_a_rebind() {
        let mut d = Delivery::new(8);
        let query =
            "<iq xmlns='jabber:client' type='set' id='q'><query xmlns='urn:xmpp:mam:2'/></iq>";
        let own = Outgoing {
            origin: None,
            ..out(query)
        };
        let (t1, t2, t3) = (Fake::new(), Fake::new(), Fake::new());
        d.sent(own, t1.clone(), true);
        // A controller's own archive query is its, and goes out again.
        d.sent(out(query), t2.clone(), true);
        d.sent(message(1), t3.clone(), true);
        for t in [&t1, &t2, &t3] {
            t.set(Outcome::Lost);
        }
        assert_eq!(d.rebound().0, 2);
        let again = drain(&mut d);
        assert_eq!(ids(&again), ["q", "m1"]);
        assert!(again[0].origin.is_some());
    }

    #[test]
    fn stanzas_still_queued_in_the_stream_are_not_sent_again() {
        let mut d = Delivery::new(8);
        let (lost, queued) = (Fake::new(), Fake::new());
        d.sent(message(1), lost.clone(), true);
        d.sent(message(2), queued.clone(), true);
        lost.set(Outcome::Lost);
        d.rebound();
        assert_eq!(ids(&drain(&mut d)), ["m1"]);
        assert_eq!(d.in_flight(), 1, "m2 is still the stream's");
        queued.set(Outcome::Delivered);
        assert!(d.settle().is_empty());
        assert_eq!(d.in_flight(), 0);
    }

    #[test]
    fn failures_come_back_for_their_senders() {
        let mut d = Delivery::new(8);
        let t = Fake::new();
        d.sent(message(1), t.clone(), true);
        t.set(Outcome::Failed("no".into()));
        let failed = d.settle();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].1, "no");
        assert_eq!(d.in_flight(), 0);
    }

    #[test]
    fn waiting_is_bounded() {
        let mut d: Delivery<Fake> = Delivery::new(2);
        d.wait(message(1)).expect("room");
        d.wait(message(2)).expect("room");
        let back = d.wait(message(3)).expect_err("full");
        assert_eq!(back.stanza.attr("id"), Some("m3"));
    }

    #[test]
    fn only_broadcast_presence_is_restored() {
        let mut d = Delivery::new(8);
        let t = Fake::new();
        t.set(Outcome::Delivered);
        d.sent(
            out("<presence xmlns='jabber:client' id='p1'/>"),
            t.clone(),
            true,
        );
        d.sent(
            out("<presence xmlns='jabber:client' id='d' to='bob@remote.net'/>"),
            t.clone(),
            true,
        );
        d.sent(
            out("<presence xmlns='jabber:client' id='s' type='subscribe' to='bob@remote.net'/>"),
            t.clone(),
            true,
        );
        d.resumed(false);
        assert!(drain(&mut d).is_empty());
        d.resumed(true);
        assert_eq!(ids(&drain(&mut d)), ["p1"]);
    }

    #[test]
    fn at_the_end_everything_unsettled_is_returned_in_order() {
        let mut d = Delivery::new(8);
        let (done, pending) = (Fake::new(), Fake::new());
        done.set(Outcome::Delivered);
        d.sent(message(1), done, true);
        d.sent(message(2), pending, true);
        d.wait(message(3)).expect("room");
        assert_eq!(ids(&d.unsent()), ["m2", "m3"]);
    }

    #[test]
    fn delivered_stanzas_leave_from_the_front_and_queued_ones_count_from_the_back() {
        let mut d = Delivery::new(8);
        let t: Vec<Fake> = (0..4).map(|_| Fake::new()).collect();
        for (n, token) in t.iter().enumerate() {
            d.sent(message(n as u32), token.clone(), true);
        }
        t[0].set(Outcome::Delivered);
        t[2].set(Outcome::Delivered);
        t[3].queue(true);
        d.forget_delivered();
        assert_eq!(d.in_flight(), 3, "only the acknowledged prefix goes");
        assert_eq!(d.queued(), 1);
        assert!(d.oldest_queued().is_some());
        t[3].queue(false);
        t[1].set(Outcome::Delivered);
        d.forget_delivered();
        assert_eq!(d.in_flight(), 1, "m3 is written, not yet acknowledged");
        assert_eq!(d.queued(), 0);
    }
}
