//! Who of the account is online at T (its controllers), and the stanzas
//! held for a sender whose presence the local server has not confirmed
//! yet. Plain state, no I/O: the account task feeds it what the local
//! server says and asks it who may speak.

use crate::policy::bindings as wit;
use crate::xmpp::{Kind, NS_CLIENT, error_reply};
use jid::Jid;
use minidom::Element;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long controllers have to confirm themselves after the link to the
/// local server came back (the server answers T's probe at once); also how
/// long a stanza from a controller not confirmed yet waits for its presence.
/// The default of `[component] confirm_secs`.
pub const CONFIRM_GRACE: Duration = Duration::from_secs(5);

/// At most this many stanzas of one account wait for their senders'
/// presence; more are refused (with `wait`: try again). The default of
/// `[runtime] held_limit`.
pub const HELD_LIMIT: usize = 64;

/// Until when the local server may still be answering T's presence probes
/// (docs/behaviour.md section 2): T opens the window when it probes, every
/// account task reads it.
#[derive(Debug)]
pub struct ProbeWindow {
    until: Mutex<Option<Instant>>,
    confirm: Duration,
}

impl Default for ProbeWindow {
    fn default() -> Self {
        ProbeWindow::new(CONFIRM_GRACE)
    }
}

impl ProbeWindow {
    /// A closed window that opens for `confirm` at a time.
    pub fn new(confirm: Duration) -> Self {
        ProbeWindow {
            until: Mutex::new(None),
            confirm,
        }
    }

    /// How long the window stays open, which is also how long a stanza of
    /// a sender not confirmed yet waits for its presence.
    pub fn confirm(&self) -> Duration {
        self.confirm
    }

    /// The probes' answers may come for another [`Self::confirm`] from now.
    pub fn open_from_now(&self) {
        let until = Instant::now() + self.confirm;
        *self.until.lock().unwrap_or_else(|p| p.into_inner()) = Some(until);
    }

    /// Whether the answers to T's probes may still be on their way.
    pub fn is_open(&self) -> bool {
        let until = *self.until.lock().unwrap_or_else(|p| p.into_inner());
        until.is_some_and(|u| Instant::now() < u)
    }
}

/// Who a local stanza is from and whether it is addressed to T itself:
/// read once per stanza, since parsing a JID is not free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The sender's resource (`A/B`), none for the bare JID.
    pub resource: Option<String>,
    /// Addressed to T's domain itself, not to a JID under it.
    pub to_gateway: bool,
}

impl Origin {
    /// Reads the sender and the addressee of `el`.
    pub fn of(el: &Element) -> Origin {
        let jid = |attr| el.attr(attr).and_then(|a| Jid::new(a).ok());
        Origin {
            resource: jid("from").and_then(|f| f.resource().map(|r| r.to_string())),
            to_gateway: jid("to").is_some_and(|t| t.node().is_none()),
        }
    }
}

/// One online local resource `A/B` of the account.
#[derive(Debug, Clone, PartialEq)]
pub struct Controller {
    /// `A/B`.
    pub resource: String,
    /// Its presence's `<show/>`.
    pub show: Option<String>,
    /// Its presence's `<status/>`.
    pub status: Option<String>,
    /// Its presence's `<priority/>`.
    pub priority: i8,
    /// When it came online (Unix ms).
    pub online_since_ms: u64,
    /// When it last sent anything to T (Unix ms).
    pub last_active_ms: u64,
}

/// A local stanza waiting for its sender's presence.
#[derive(Debug)]
pub struct Held {
    /// Who sent it.
    pub origin: Origin,
    /// The stanza.
    pub el: Element,
    /// When it stops waiting and is decided whatever is known by then.
    pub until: Instant,
}

/// The account's controllers and held stanzas.
#[derive(Debug, Default)]
pub struct Controllers {
    online: Vec<Controller>,
    /// Controllers not seen since the last link reset.
    unconfirmed: Vec<String>,
    /// Link resets so far: a sweep names the reset it follows.
    resets: u64,
    /// Whether the local server has told of the account's presence since
    /// the task started or the link came back (the probe's answer).
    presence_known: bool,
    /// Local stanzas waiting for their senders' presence, in arrival order.
    held: VecDeque<Held>,
}

impl Controllers {
    /// Takes in what a local stanza says of its sender: available or
    /// unavailable presence to T, or merely activity.
    pub fn on_stanza(&mut self, kind: Kind, origin: &Origin, el: &Element, now_ms: u64) {
        let type_ = el.attr("type").unwrap_or("");
        let presence_to_t = kind == Kind::Presence && origin.to_gateway;
        // The server's word on the account's presence (a probe from the
        // account's server says nothing of its resources).
        if presence_to_t && (type_.is_empty() || type_ == "unavailable") {
            self.presence_known = true;
        }
        let Some(r) = &origin.resource else { return };
        if presence_to_t && type_.is_empty() {
            self.unconfirmed.retain(|u| u != r);
            self.available(r, el, now_ms);
        } else if presence_to_t && type_ == "unavailable" {
            self.online.retain(|c| &c.resource != r);
        }
        if let Some(c) = self.online.iter_mut().find(|c| &c.resource == r) {
            c.last_active_ms = now_ms;
        }
    }

    fn available(&mut self, resource: &str, el: &Element, now_ms: u64) {
        let child = |name: &str| el.get_child(name, NS_CLIENT).map(Element::text);
        let show = child("show");
        let status = child("status");
        let priority = child("priority")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0);
        match self.online.iter_mut().find(|c| c.resource == resource) {
            Some(c) => {
                c.show = show;
                c.status = status;
                c.priority = priority;
            }
            None => self.online.push(Controller {
                resource: resource.to_string(),
                show,
                status,
                priority,
                online_since_ms: now_ms,
                last_active_ms: now_ms,
            }),
        }
    }

    /// A resource is online; a stanza without one (from the bare JID) is
    /// as good as online while any controller is.
    pub fn is_online(&self, resource: Option<&str>) -> bool {
        match resource {
            Some(r) => self.online.iter().any(|c| c.resource == r),
            None => !self.online.is_empty(),
        }
    }

    /// Whether a stanza must wait for its sender's presence. After the
    /// gateway starts (or its link comes back) it probes every registered
    /// user, and a controller that was online all along may speak before
    /// the server's answer says so: its stanza waits for that answer, up to
    /// [`ProbeWindow::confirm`], instead of being refused as from a resource that is
    /// not online (docs/behaviour.md section 4). Its later stanzas queue
    /// behind it, so that order is kept.
    pub fn must_hold(&self, el: &Element, origin: &Origin, probes: &ProbeWindow) -> bool {
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
        !self.presence_known && probes.is_open() && !self.is_online(resource)
    }

    /// Holds a stanza until `until`; past `limit` held ones it is refused, with
    /// the `resource-constraint` error for its sender when it may be
    /// answered (an error or an IQ result is dropped).
    pub fn hold(
        &mut self,
        origin: Origin,
        el: Element,
        until: Instant,
        limit: usize,
    ) -> Result<(), Option<Element>> {
        if self.held.len() >= limit {
            let text = "too many stanzas waiting for their senders' presence";
            return Err(error_reply(&el, "wait", "resource-constraint", Some(text)));
        }
        self.held.push_back(Held { origin, el, until });
        Ok(())
    }

    /// The first held stanza whose sender is online now or which has
    /// waited long enough; call until `None` to release in order.
    pub fn next_released(&mut self, now: Instant) -> Option<Held> {
        let i = self
            .held
            .iter()
            .position(|h| h.until <= now || self.is_online(h.origin.resource.as_deref()))?;
        self.held.remove(i)
    }

    /// Every held stanza, for the account's end.
    pub fn take_held(&mut self) -> VecDeque<Held> {
        std::mem::take(&mut self.held)
    }

    /// The link to the local server came back: whoever left meanwhile never
    /// said so, so every controller must confirm itself again. Returns the
    /// reset's number, for [`Controllers::unconfirmed_after`].
    pub fn link_reset(&mut self) -> u64 {
        self.resets += 1;
        self.presence_known = false;
        self.unconfirmed = self.online.iter().map(|c| c.resource.clone()).collect();
        self.resets
    }

    /// The controllers still online that did not confirm since reset
    /// `reset`; nothing if another reset came since.
    pub fn unconfirmed_after(&mut self, reset: u64) -> Vec<String> {
        if reset != self.resets {
            return Vec::new();
        }
        let online = &self.online;
        std::mem::take(&mut self.unconfirmed)
            .into_iter()
            .filter(|r| online.iter().any(|c| &c.resource == r))
            .collect()
    }

    /// How many are online.
    pub fn count(&self) -> usize {
        self.online.len()
    }

    /// The policy's view: most recently active first.
    pub fn facts(&self) -> Vec<wit::Controller> {
        let mut online: Vec<&Controller> = self.online.iter().collect();
        online.sort_by_key(|c| std::cmp::Reverse(c.last_active_ms));
        online
            .into_iter()
            .map(|c| wit::Controller {
                resource: c.resource.clone(),
                show: c.show.clone(),
                status: c.status.clone(),
                priority: c.priority,
                online_since_ms: c.online_since_ms,
                last_active_ms: c.last_active_ms,
            })
            .collect()
    }

    /// The controllers of foreign resource `a` (`a/*`, or `a` itself).
    pub fn of_session(&self, a: &str) -> Vec<&str> {
        self.online
            .iter()
            .filter(|c| pizzja_sdk::split_resource(&c.resource).0 == a)
            .map(|c| c.resource.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(xml: &str) -> Element {
        xml.parse().expect("test XML")
    }

    fn presence(resource: &str, type_: &str, body: &str) -> Element {
        let type_ = if type_.is_empty() {
            String::new()
        } else {
            format!(" type='{type_}'")
        };
        stanza(&format!(
            "<presence xmlns='jabber:client' from='alice@example.org/{resource}' to='gw.example.org'{type_}>{body}</presence>"
        ))
    }

    fn message(resource: &str) -> Element {
        numbered(resource, 0)
    }

    fn numbered(resource: &str, n: u32) -> Element {
        stanza(&format!(
            "<message xmlns='jabber:client' id='m{n}' from='alice@example.org/{resource}' to='bob\\40remote.net@gw.example.org'><body>hi</body></message>"
        ))
    }

    fn probing() -> ProbeWindow {
        let w = ProbeWindow::default();
        w.open_from_now();
        w
    }

    fn feed(c: &mut Controllers, el: &Element, now: u64) {
        let kind = Kind::of(el).expect("a stanza");
        c.on_stanza(kind, &Origin::of(el), el, now);
    }

    #[test]
    fn origin_reads_the_sender_s_resource_and_whether_t_itself_is_addressed() {
        let o = Origin::of(&presence("Work/phone", "", ""));
        assert_eq!(o.resource.as_deref(), Some("Work/phone"));
        assert!(o.to_gateway);
        let o = Origin::of(&message("Work"));
        assert_eq!(o.resource.as_deref(), Some("Work"));
        assert!(!o.to_gateway);
    }

    #[test]
    fn presence_to_t_brings_a_controller_online_with_its_show_status_and_priority() {
        let mut c = Controllers::default();
        let p = presence(
            "Work/phone",
            "",
            "<show>away</show><status>lunch</status><priority>5</priority>",
        );
        feed(&mut c, &p, 10);
        let facts = c.facts();
        assert_eq!(facts.len(), 1);
        assert_eq!(facts[0].resource, "Work/phone");
        assert_eq!(facts[0].show.as_deref(), Some("away"));
        assert_eq!(facts[0].status.as_deref(), Some("lunch"));
        assert_eq!((facts[0].priority, facts[0].online_since_ms), (5, 10));
        feed(&mut c, &presence("Work/phone", "unavailable", ""), 20);
        assert!(c.facts().is_empty());
        assert!(!c.is_online(Some("Work/phone")));
    }

    #[test]
    fn the_most_recently_active_controller_comes_first() {
        let mut c = Controllers::default();
        feed(&mut c, &presence("Work/phone", "", ""), 1);
        feed(&mut c, &presence("Work/laptop", "", ""), 2);
        feed(&mut c, &message("Work/phone"), 3);
        let order: Vec<String> = c.facts().into_iter().map(|f| f.resource).collect();
        assert_eq!(order, ["Work/phone", "Work/laptop"]);
        assert_eq!(c.of_session("Work"), ["Work/phone", "Work/laptop"]);
        assert!(c.of_session("Home").is_empty());
    }

    #[test]
    fn a_stanza_from_an_unconfirmed_sender_is_held_only_while_probes_are_answered() {
        let mut c = Controllers::default();
        let m = message("Work/phone");
        let o = Origin::of(&m);
        assert!(c.must_hold(&m, &o, &probing()));
        let idle = ProbeWindow::default();
        assert!(!c.must_hold(&m, &o, &idle), "no probe running: decide now");
        // Presence to T itself is never held: it is what releases the rest.
        let p = presence("Work/phone", "", "");
        assert!(!c.must_hold(&p, &Origin::of(&p), &probing()));
        feed(&mut c, &p, 1);
        assert!(!c.must_hold(&m, &o, &probing()), "online now");
    }

    #[test]
    fn held_stanzas_are_released_in_order_once_their_sender_is_online() {
        let mut c = Controllers::default();
        let now = Instant::now();
        let later = now + CONFIRM_GRACE;
        for n in 1..=3 {
            let m = numbered("Work/phone", n);
            c.hold(Origin::of(&m), m, later, HELD_LIMIT).expect("room");
        }
        let idle = ProbeWindow::default();
        let other = message("Home");
        assert!(!c.must_hold(&other, &Origin::of(&other), &idle));
        // A later stanza of a sender with held stanzas queues behind them.
        let m = message("Work/phone");
        assert!(c.must_hold(&m, &Origin::of(&m), &idle));
        assert!(c.next_released(now).is_none(), "sender not online yet");
        feed(&mut c, &presence("Work/phone", "", ""), 1);
        let ids: Vec<String> = std::iter::from_fn(|| c.next_released(now))
            .map(|h| h.el.attr("id").unwrap_or_default().to_string())
            .collect();
        assert_eq!(ids, ["m1", "m2", "m3"]);
    }

    #[test]
    fn held_stanzas_are_released_when_their_time_is_up_even_if_nobody_came() {
        let mut c = Controllers::default();
        let now = Instant::now();
        let m = message("Work/phone");
        c.hold(Origin::of(&m), m, now, HELD_LIMIT).expect("room");
        assert!(c.next_released(now).is_some());
    }

    #[test]
    fn past_the_limit_a_held_stanza_is_answered_with_resource_constraint() {
        let mut c = Controllers::default();
        let until = Instant::now() + CONFIRM_GRACE;
        for _ in 0..HELD_LIMIT {
            let m = message("Work/phone");
            c.hold(Origin::of(&m), m, until, HELD_LIMIT).expect("room");
        }
        let m = message("Work/phone");
        let refused = c
            .hold(Origin::of(&m), m, until, HELD_LIMIT)
            .expect_err("full")
            .expect("a message is answered");
        assert_eq!(refused.attr("type"), Some("error"));
        assert_eq!(refused.attr("to"), Some("alice@example.org/Work/phone"));
        let error = refused.get_child("error", NS_CLIENT).expect("error");
        assert_eq!(error.attr("type"), Some("wait"));
        assert!(error.has_child("resource-constraint", crate::xmpp::NS_STANZAS));
        // An error stanza past the limit is dropped, never echoed back.
        let bounced = stanza(
            "<message xmlns='jabber:client' type='error' from='alice@example.org/Work/phone' to='gw.example.org'/>",
        );
        let refused = c.hold(Origin::of(&bounced), bounced, until, HELD_LIMIT);
        assert!(matches!(refused, Err(None)), "{refused:?}");
        assert_eq!(c.take_held().len(), HELD_LIMIT);
    }

    #[test]
    fn after_a_link_reset_only_controllers_that_did_not_confirm_are_swept() {
        let mut c = Controllers::default();
        feed(&mut c, &presence("Work/phone", "", ""), 1);
        feed(&mut c, &presence("Work/laptop", "", ""), 1);
        let reset = c.link_reset();
        feed(&mut c, &presence("Work/phone", "", ""), 2);
        assert_eq!(c.unconfirmed_after(reset), ["Work/laptop"]);
        assert!(c.unconfirmed_after(reset).is_empty(), "swept once");
        // A sweep of an older reset finds nothing.
        let old = c.link_reset();
        let _new = c.link_reset();
        assert!(c.unconfirmed_after(old).is_empty());
    }

    #[test]
    fn the_probe_window_opens_when_t_probes() {
        let w = ProbeWindow::default();
        assert!(!w.is_open());
        w.open_from_now();
        assert!(w.is_open());
    }
}
