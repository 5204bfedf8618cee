//! Proof that what the gateway wrote to the local server arrived
//! (see [`Unconfirmed`]).

use super::{LinkConfig, NS_COMPONENT};
use minidom::Element;
use std::time::Duration;

/// What the gateway wrote to the local server and has no proof of yet.
///
/// XEP-0114 has no acknowledgements: a stanza written just before the link
/// drops may sit in a socket buffer and never reach the server. The server
/// handles a stream's stanzas in order, so its answer to a ping proves that
/// everything written before the ping arrived. One ping is out at a time,
/// covering what was written up to it, and at most one every
/// [`ACK_INTERVAL`]: a ping per stanza cost the gateway 13% more CPU per
/// stanza at 1,000 stanzas/s (BENCHMARKS.md). After a drop, what no answer covered
/// is written again, first and in order. A stanza the server had handled
/// but whose ping's answer was lost with the link arrives twice, with the
/// same id (docs/operations.md).
pub(super) struct Unconfirmed {
    written: std::collections::VecDeque<Element>,
    /// At most this many stanzas wait for proof; past it the oldest count
    /// as arrived (a server that answers no ping for that long has bigger
    /// problems, and memory must stay bounded).
    limit: usize,
    /// The ping out, and how many of `written` it covers.
    asked: Option<(u64, usize)>,
    seq: u64,
    /// When the last ping went out.
    last: Option<std::time::Instant>,
}

/// Pings go out at most this often.
const ACK_INTERVAL: Duration = Duration::from_millis(10);

/// Answers to acknowledgement pings have ids that start with this.
const ACK_PREFIX: &str = "pizzja-ack-";

impl Unconfirmed {
    pub(super) fn new(limit: usize) -> Self {
        Unconfirmed {
            written: Default::default(),
            limit: limit.max(1),
            asked: None,
            seq: 0,
            last: None,
        }
    }

    pub(super) fn wrote(&mut self, el: Element) {
        if self.written.len() >= self.limit {
            self.written.pop_front();
            if let Some((_, covered)) = &mut self.asked {
                *covered = covered.saturating_sub(1);
            }
        }
        self.written.push_back(el);
    }

    /// When a ping is due: none is out, something waits, and the last one
    /// went out [`ACK_INTERVAL`] ago.
    pub(super) fn due(&self) -> Option<std::time::Instant> {
        if self.asked.is_some() || self.written.is_empty() {
            return None;
        }
        Some(match self.last {
            Some(t) => t + ACK_INTERVAL,
            None => std::time::Instant::now(),
        })
    }

    /// The ping to send at `now`, if one is due.
    pub(super) fn ping(&mut self, cfg: &LinkConfig, now: std::time::Instant) -> Option<Element> {
        if self.asked.is_some() || self.written.is_empty() {
            return None;
        }
        if self.last.is_some_and(|t| now < t + ACK_INTERVAL) {
            return None;
        }
        self.seq += 1;
        self.asked = Some((self.seq, self.written.len()));
        self.last = Some(now);
        let mut iq = Element::builder("iq", NS_COMPONENT)
            .append(Element::bare("ping", "urn:xmpp:ping"))
            .build();
        for (name, value) in [
            ("type", "get".to_string()),
            ("id", format!("{ACK_PREFIX}{}", self.seq)),
            ("from", cfg.jid.clone()),
            ("to", cfg.ping_to.clone()),
        ] {
            crate::xmpp::set_attr(&mut iq, name, Some(value));
        }
        Some(iq)
    }

    /// Whether `el` answers one of our pings (it is then the link's own);
    /// the stanzas its ping covered are confirmed. Only the server, which
    /// `pinged` names, answers: a user's forged answer confirms nothing.
    pub(super) fn answered(&mut self, el: &Element, pinged: &str) -> bool {
        if el.attr("from") != Some(pinged) {
            return false;
        }
        let Some(seq) = el
            .attr("id")
            .and_then(|id| id.strip_prefix(ACK_PREFIX))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            return false;
        };
        if el.name() != "iq" {
            return false;
        }
        if let Some((asked, covered)) = self.asked
            && asked == seq
        {
            self.written.drain(..covered.min(self.written.len()));
            self.asked = None;
        }
        true
    }

    /// The link dropped: everything unconfirmed is to be written again.
    pub(super) fn take(&mut self) -> std::collections::VecDeque<Element> {
        self.asked = None;
        std::mem::take(&mut self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LinkConfig {
        LinkConfig {
            jid: "gw.example.org".into(),
            server: "127.0.0.1:5347".into(),
            secret: crate::config::Secret("s".into()),
            ping_to: "example.org".into(),
            unconfirmed_limit: 4096,
        }
    }

    fn stanza(id: &str) -> Element {
        format!("<message xmlns='jabber:client' id='{id}'/>")
            .parse()
            .expect("xml")
    }

    fn answer(ping: &Element, from: &str) -> Element {
        format!(
            "<iq xmlns='jabber:component:accept' type='result' id='{}' from='{from}' to='gw.example.org'/>",
            ping.attr("id").expect("an id")
        )
        .parse()
        .expect("xml")
    }

    fn ids(q: &std::collections::VecDeque<Element>) -> Vec<&str> {
        q.iter().filter_map(|e| e.attr("id")).collect()
    }

    #[test]
    fn a_ping_s_answer_confirms_what_was_written_before_it_and_no_more() {
        let t0 = std::time::Instant::now();
        let later = |ms| t0 + Duration::from_millis(ms);
        let mut u = Unconfirmed::new(4096);
        u.wrote(stanza("a"));
        let first = u.ping(&cfg(), t0).expect("a ping is due");
        u.wrote(stanza("b"));
        assert!(
            u.ping(&cfg(), later(50)).is_none(),
            "one ping out at a time"
        );
        // Someone else's answer with our id confirms nothing.
        assert!(!u.answered(&answer(&first, "mallory@example.org/x"), "example.org"));
        assert!(u.answered(&answer(&first, "example.org"), "example.org"));
        assert_eq!(ids(&u.written), ["b"]);
        assert!(
            u.ping(&cfg(), later(5)).is_none(),
            "at most one ping a 10 ms"
        );
        assert_eq!(u.due(), Some(later(10)));
        let second = u.ping(&cfg(), later(10)).expect("b waits for proof");
        u.wrote(stanza("c"));
        // The link drops before the answer: b and c are written again, in
        // order, and a late answer to the old ping confirms nothing.
        assert_eq!(ids(&u.take()), ["b", "c"]);
        assert!(u.answered(&answer(&second, "example.org"), "example.org"));
        assert!(u.written.is_empty());
        assert!(!u.answered(&stanza("x"), "example.org"));
    }

    #[test]
    fn past_the_limit_the_oldest_count_as_arrived_and_the_ping_covers_the_rest() {
        let t0 = std::time::Instant::now();
        let mut u = Unconfirmed::new(2);
        u.wrote(stanza("a"));
        u.wrote(stanza("b"));
        let ping = u.ping(&cfg(), t0).expect("a ping is due");
        u.wrote(stanza("c"));
        assert_eq!(ids(&u.written), ["b", "c"]);
        // The answer covers b (a was dropped from the ping's share), not c.
        assert!(u.answered(&answer(&ping, "example.org"), "example.org"));
        assert_eq!(ids(&u.written), ["c"]);
    }
}
