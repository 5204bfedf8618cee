//! Catching up from the foreign account's archive (XEP-0313) after a gap
//! (docs/behaviour.md section 7): each foreign session remembers the
//! server's id (XEP-0359) of the last archived message it delivered; after
//! a gap it asks the archive for what came after, page by page, and hands
//! each message on as if it had just arrived, with its original time
//! (XEP-0203) and never twice.

use crate::xmpp::{NS_CLIENT, ncname, set_attr};
use jid::{BareJid, Jid};
use minidom::Element;
use std::collections::VecDeque;

/// XEP-0313: Message Archive Management.
pub const NS_MAM: &str = "urn:xmpp:mam:2";
/// XEP-0359: Unique and Stable Stanza IDs.
pub const NS_SID: &str = "urn:xmpp:sid:0";
/// XEP-0297: Stanza Forwarding.
pub const NS_FORWARD: &str = "urn:xmpp:forward:0";
/// XEP-0203: Delayed Delivery.
pub const NS_DELAY: &str = "urn:xmpp:delay";
/// XEP-0059: Result Set Management.
pub const NS_RSM: &str = "http://jabber.org/protocol/rsm";
const NS_DATA: &str = "jabber:x:data";

/// Messages asked for per page.
const PAGE: usize = 100;

/// How many delivered ids a session remembers to drop duplicates (a live
/// message that the catch-up's page also holds).
const REMEMBERED: usize = 512;

/// How many earlier periods of live delivery a session remembers.
const PERIODS: usize = 16;

/// The id F's server gave a message it archived for F (XEP-0359: a
/// `<stanza-id/>` whose `by` is F's bare JID; any other is a claim anyone
/// could make).
pub fn stanza_id(message: &Element, account: &BareJid) -> Option<String> {
    message
        .children()
        .filter(|c| c.is("stanza-id", NS_SID))
        .find(|c| c.attr("by").and_then(|b| BareJid::new(b).ok()).as_ref() == Some(account))
        .and_then(|c| c.attr("id"))
        .map(str::to_string)
}

/// What a query of the host's own is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Delivering what the session missed.
    CatchUp,
    /// Finding where the archive ends, for a session with no position yet.
    Locate,
    /// Located: the archive's last message came.
    Located,
}

/// An archive query of the host's own, in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The session it went through.
    pub session: String,
    /// What it is for.
    pub purpose: Purpose,
    /// The position it asked from (empty for [`Purpose::Locate`]).
    pub after: String,
    /// A catch-up that reached what the session received live: the rest of
    /// its page is dropped and no next page is asked for.
    pub done: bool,
}

/// The position of a session whose archive was empty when it looked: a
/// catch-up then asks for everything there is.
pub const FROM_THE_START: &str = "";

/// The query for the archive's last message (where a session that has
/// seen nothing archived yet starts from), tagged `id`.
pub fn locate(id: &str) -> Element {
    paged(id, Some(Element::builder("before", NS_RSM).build()), 1)
}

/// The query for what the archive holds after `after` (or from its start,
/// [`FROM_THE_START`]), one page, tagged `id` (as IQ id and `queryid`).
pub fn query(id: &str, after: &str) -> Element {
    let from =
        (after != FROM_THE_START).then(|| Element::builder("after", NS_RSM).append(after).build());
    paged(id, from, PAGE)
}

fn paged(id: &str, from: Option<Element>, max: usize) -> Element {
    let form = Element::builder("x", NS_DATA)
        .attr(ncname("type"), "submit")
        .append(
            Element::builder("field", NS_DATA)
                .attr(ncname("var"), "FORM_TYPE")
                .attr(ncname("type"), "hidden")
                .append(Element::builder("value", NS_DATA).append(NS_MAM).build())
                .build(),
        )
        .build();
    let mut set = Element::builder("set", NS_RSM)
        .append(
            Element::builder("max", NS_RSM)
                .append(max.to_string())
                .build(),
        )
        .build();
    if let Some(from) = from {
        set.append_child(from);
    }
    let query = Element::builder("query", NS_MAM)
        .attr(ncname("queryid"), id)
        .append(form)
        .append(set)
        .build();
    let mut iq = Element::bare("iq", NS_CLIENT);
    set_attr(&mut iq, "type", Some("set".into()));
    set_attr(&mut iq, "id", Some(id.into()));
    iq.append_child(query);
    iq
}

/// The `queryid` of an archive result message, if `message` is one.
pub fn result_queryid(message: &Element) -> Option<&str> {
    message.get_child("result", NS_MAM)?.attr("queryid")
}

/// One archived message, unwrapped.
#[derive(Debug, PartialEq)]
pub struct Archived {
    /// Its archive id (the position to go on from).
    pub id: String,
    /// The message as it was, with its original time (XEP-0203).
    pub message: Element,
}

/// The archived message in a result message, with a `<delay/>` carrying
/// its original time if it has none.
pub fn unwrap(result_message: &Element) -> Option<Archived> {
    let result = result_message.get_child("result", NS_MAM)?;
    let id = result.attr("id")?.to_string();
    let forwarded = result.get_child("forwarded", NS_FORWARD)?;
    let mut message = forwarded.get_child("message", NS_CLIENT)?.clone();
    if !message.has_child("delay", NS_DELAY)
        && let Some(delay) = forwarded.get_child("delay", NS_DELAY)
    {
        message.append_child(delay.clone());
    }
    Some(Archived { id, message })
}

/// What the archive's final answer says: whether it was the last page, and
/// the id of the last message on this one.
pub fn fin(iq: &Element) -> Option<(bool, Option<String>)> {
    let fin = iq.get_child("fin", NS_MAM)?;
    let complete = matches!(fin.attr("complete"), Some("true") | Some("1"));
    let last = fin
        .get_child("set", NS_RSM)
        .and_then(|s| s.get_child("last", NS_RSM))
        .map(Element::text);
    Some((complete, last))
}

/// Whether an archived message is F's own (sent by one of F's resources):
/// controllers know what they sent.
pub fn is_own(message: &Element, account: &BareJid) -> bool {
    message
        .attr("from")
        .and_then(|f| Jid::new(f).ok())
        .is_some_and(|f| f.to_bare() == *account)
}

/// What a session delivered: the ids it delivered last, to drop a message
/// seen twice, and the periods in which it received live.
///
/// A catch-up reads the archive up to its end, and the archive's end moves
/// on with what the session receives live meanwhile: busy, the archive
/// holds more live messages after the gap than the session can remember.
/// The first message it received live since it went down is where the
/// catch-up stops: from there on, the session had it all live. A catch-up
/// cut short by the next gap starts again from where it had got to, behind
/// the period the session was up in between: it skips that period, from
/// its first message to its last, with a query from the last.
#[derive(Debug, Default)]
pub struct Seen {
    ids: VecDeque<String>,
    /// The first and last archived message received live in each earlier
    /// period the session was up in, oldest first, at most [`PERIODS`].
    periods: VecDeque<(String, String)>,
    /// The same for the period it is up in now, since it received one.
    current: Option<(String, String)>,
}

/// Where a catch-up reached a period of live delivery.
#[derive(Debug, PartialEq, Eq)]
pub enum Reached {
    /// The period the session is up in: the catch-up is done, and the
    /// session's position is the last message received live.
    Now(String),
    /// An earlier period: the catch-up goes on after its last message.
    Then(String),
}

impl Seen {
    /// Remembers `id`; false if it was already there.
    pub fn first_time(&mut self, id: &str) -> bool {
        if self.ids.iter().any(|s| s == id) {
            return false;
        }
        if self.ids.len() == REMEMBERED {
            self.ids.pop_front();
        }
        self.ids.push_back(id.to_string());
        true
    }

    /// The session went down: what it receives next is live again from a
    /// new start.
    pub fn went_down(&mut self) {
        if let Some(period) = self.current.take() {
            if self.periods.len() == PERIODS {
                self.periods.pop_front();
            }
            self.periods.push_back(period);
        }
    }

    /// The session received archived message `id` live, as it was sent
    /// (not a stored message handed over late, which carries a delay and
    /// may be older than the gap).
    pub fn live(&mut self, id: &str) {
        match &mut self.current {
            Some((_, latest)) => *latest = id.to_string(),
            None => self.current = Some((id.to_string(), id.to_string())),
        }
    }

    /// Whether a catch-up that reached `id` has reached a period of live
    /// delivery, and which. Earlier periods up to that one are then behind
    /// the session's position, and forgotten.
    pub fn reached(&mut self, id: &str) -> Option<Reached> {
        if let Some((first, latest)) = &self.current
            && first == id
        {
            self.periods.clear();
            return Some(Reached::Now(latest.clone()));
        }
        let at = self.periods.iter().position(|(first, _)| first == id)?;
        let (_, latest) = self.periods.drain(..=at).next_back()?;
        Some(Reached::Then(latest))
    }
}

/// Whether `message` carries a delay (XEP-0203): stored and handed over
/// late, not live.
pub fn delayed(message: &Element) -> bool {
    message.has_child("delay", NS_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> BareJid {
        BareJid::new("me@remote.net").expect("jid")
    }

    fn parse(xml: &str) -> Element {
        xml.parse().expect("test XML")
    }

    #[test]
    fn only_the_account_s_own_server_names_a_message_s_archive_id() {
        let m = parse(
            "<message xmlns='jabber:client' from='bob@remote.net/x'><body>hi</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='eve@evil.org' id='forged'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='me@remote.net' id='A1'/></message>",
        );
        assert_eq!(stanza_id(&m, &me()).as_deref(), Some("A1"));
        let none = parse("<message xmlns='jabber:client'><body>hi</body></message>");
        assert_eq!(stanza_id(&none, &me()), None);
    }

    #[test]
    fn the_query_asks_for_one_page_after_the_position() {
        let q = query("pz-7", "A1");
        assert_eq!((q.attr("type"), q.attr("id")), (Some("set"), Some("pz-7")));
        let query = q.get_child("query", NS_MAM).expect("query");
        assert_eq!(query.attr("queryid"), Some("pz-7"));
        let set = query.get_child("set", NS_RSM).expect("rsm");
        assert_eq!(
            set.get_child("after", NS_RSM).map(Element::text),
            Some("A1".into())
        );
        assert_eq!(
            set.get_child("max", NS_RSM).map(Element::text),
            Some("100".into())
        );
    }

    #[test]
    fn an_archive_found_empty_is_read_from_its_start() {
        let all = query("pz-9", FROM_THE_START);
        let set = all
            .get_child("query", NS_MAM)
            .and_then(|q| q.get_child("set", NS_RSM))
            .expect("rsm");
        assert!(set.get_child("after", NS_RSM).is_none());
    }

    #[test]
    fn locating_asks_for_the_last_message_only() {
        let q = locate("pz-8");
        let set = q
            .get_child("query", NS_MAM)
            .and_then(|q| q.get_child("set", NS_RSM))
            .expect("rsm");
        assert!(
            set.get_child("before", NS_RSM)
                .is_some_and(|b| b.text().is_empty())
        );
        assert_eq!(
            set.get_child("max", NS_RSM).map(Element::text),
            Some("1".into())
        );
    }

    #[test]
    fn a_result_unwraps_to_the_message_with_its_original_time() {
        let r = parse(
            "<message xmlns='jabber:client' to='me@remote.net/Work'>\
             <result xmlns='urn:xmpp:mam:2' queryid='pz-7' id='A2'>\
             <forwarded xmlns='urn:xmpp:forward:0'>\
             <delay xmlns='urn:xmpp:delay' stamp='2026-12-01T03:00:00Z'/>\
             <message xmlns='jabber:client' from='bob@remote.net/x' to='me@remote.net' type='chat'><body>while you were out</body></message>\
             </forwarded></result></message>",
        );
        assert_eq!(result_queryid(&r), Some("pz-7"));
        let a = unwrap(&r).expect("an archived message");
        assert_eq!(a.id, "A2");
        assert_eq!(a.message.attr("from"), Some("bob@remote.net/x"));
        let delay = a.message.get_child("delay", NS_DELAY).expect("delay");
        assert_eq!(delay.attr("stamp"), Some("2026-12-01T03:00:00Z"));
        assert!(!is_own(&a.message, &me()));
    }

    #[test]
    fn the_final_answer_says_whether_more_pages_follow() {
        let done = parse(
            "<iq xmlns='jabber:client' type='result' id='pz-7'><fin xmlns='urn:xmpp:mam:2' complete='true'>\
             <set xmlns='http://jabber.org/protocol/rsm'><last>A9</last></set></fin></iq>",
        );
        assert_eq!(fin(&done), Some((true, Some("A9".into()))));
        let more = parse(
            "<iq xmlns='jabber:client' type='result' id='pz-7'><fin xmlns='urn:xmpp:mam:2'>\
             <set xmlns='http://jabber.org/protocol/rsm'><last>A5</last></set></fin></iq>",
        );
        assert_eq!(fin(&more), Some((false, Some("A5".into()))));
    }

    #[test]
    fn an_id_is_delivered_once() {
        let mut seen = Seen::default();
        assert!(seen.first_time("A1"));
        assert!(!seen.first_time("A1"));
        for i in 0..REMEMBERED {
            seen.first_time(&format!("x{i}"));
        }
        assert!(seen.first_time("A1"), "forgotten after {REMEMBERED} others");
    }

    #[test]
    fn live_delivery_takes_over_at_the_first_live_message_since_the_session_went_down() {
        let mut seen = Seen::default();
        seen.live("L0");
        seen.went_down();
        seen.live("L1");
        seen.live("L2");
        assert_eq!(seen.reached("L2"), None, "within the period");
        assert_eq!(seen.reached("L1"), Some(Reached::Now("L2".into())));
        assert_eq!(seen.reached("L0"), None, "behind the position now");
    }

    #[test]
    fn a_catch_up_skips_each_earlier_period_of_live_delivery_from_its_first_to_its_last() {
        let mut seen = Seen::default();
        for period in [["A1", "A2"], ["B1", "B2"], ["C1", "C2"]] {
            for id in period {
                seen.live(id);
            }
            seen.went_down();
        }
        assert_eq!(seen.reached("B1"), Some(Reached::Then("B2".into())));
        assert_eq!(seen.reached("A1"), None, "behind B, forgotten");
        assert_eq!(seen.reached("C1"), Some(Reached::Then("C2".into())));
        seen.went_down();
        assert_eq!(seen.reached("C1"), None, "a period counts once");
    }

    #[test]
    fn a_session_remembers_a_bounded_number_of_periods() {
        let mut seen = Seen::default();
        for i in 0..=PERIODS {
            seen.live(&format!("P{i}"));
            seen.went_down();
        }
        assert_eq!(seen.reached("P0"), None, "the oldest is forgotten");
        assert_eq!(seen.reached("P1"), Some(Reached::Then("P1".into())));
    }
}
