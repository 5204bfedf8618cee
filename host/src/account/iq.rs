//! IQ id bookkeeping, both ways (docs/behaviour.md sections 4 and 5): a
//! request crossing the gateway gets a fresh id, so that controllers with
//! colliding ids never mix; its answer finds the asker by that id, and only
//! from where the request went; no answer in time is an error to the asker.

use crate::policy::bindings as wit;
use crate::xmpp::{NS_CLIENT, error_element, set_attr};
use jid::{BareJid, Jid};
use minidom::Element;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A controller's request forwarded to the foreign side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// The foreign session (A) it left through.
    pub session: String,
    /// The controller (`A/B`) that asked.
    pub requester: String,
    /// The controller's own id, restored on the answer.
    pub original_id: Option<String>,
    /// Where it went: the answer must come from there.
    pub peer: Option<String>,
    /// The address the controller wrote (`x@T/r`), for the timeout error.
    pub local_to: Option<String>,
    /// The request's payload namespace, for the policy.
    pub payload_ns: Option<String>,
}

/// A foreign request forwarded to a controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The foreign session (A) it came in on.
    pub session: String,
    /// Who asked, on the foreign side.
    pub foreign_from: Option<String>,
    /// The foreign asker's own id, restored on the answer.
    pub original_id: Option<String>,
    /// The controller (`A/B`) it went to: only it may answer.
    pub controller: String,
    /// The request's payload namespace, for the policy.
    pub payload_ns: Option<String>,
}

/// A message flow tied to a controller's request until its answer comes
/// (the results of an archive query, or a flow a policy named): messages
/// carrying the request's id where the tie says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tie {
    /// Where the id is, in the request and in each tied message.
    pub spec: wit::RequestTie,
    /// The asker's own value there, restored on each tied message.
    pub original: Option<String>,
}

/// Requests in flight through one account, keyed by the ids the gateway
/// gave them.
#[derive(Debug, Default)]
pub struct IqTracker {
    outbound: HashMap<String, Outbound>,
    inbound: HashMap<String, Inbound>,
    ties: HashMap<String, Vec<Tie>>,
}

/// A new id: process-wide, so ids never repeat across accounts or task
/// restarts.
pub fn fresh_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("pz-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl IqTracker {
    /// Tracks a controller's request; returns the id it leaves with.
    pub fn track_outbound(&mut self, request: Outbound) -> String {
        let id = fresh_id();
        self.outbound.insert(id.clone(), request);
        id
    }

    /// The request a foreign answer (id `id`, from `from`, on `session`)
    /// belongs to, if it fits: same session, and from where the request went
    /// (see [`same_peer`]). A stranger's answer with a guessed id is not one.
    pub fn outbound_answer(
        &mut self,
        id: &str,
        session: &str,
        from: Option<&str>,
        account: &BareJid,
    ) -> Option<Outbound> {
        let fits = self
            .outbound
            .get(id)
            .is_some_and(|p| p.session == session && same_peer(p.peer.as_deref(), from, account));
        if !fits {
            return None;
        }
        self.ties.remove(id);
        self.outbound.remove(id)
    }

    /// A request that timed out, if still unanswered.
    pub fn expire_outbound(&mut self, id: &str) -> Option<Outbound> {
        self.ties.remove(id);
        self.outbound.remove(id)
    }

    /// Ties messages carrying `id` as `tie` says to the tracked request
    /// `id` until its answer comes.
    pub fn tie(&mut self, id: &str, tie: Tie) {
        if self.outbound.contains_key(id) {
            self.ties.entry(id.to_string()).or_default().push(tie);
        }
    }

    /// The request `message` (on `session`, from `from`) is tied to, with
    /// the tie it matched, if it fits like an answer would: same session,
    /// from where the request went.
    pub fn tied(
        &self,
        message: &Element,
        session: &str,
        from: Option<&str>,
        account: &BareJid,
    ) -> Option<(&Outbound, &Tie)> {
        self.ties.iter().find_map(|(id, ties)| {
            let tie = ties
                .iter()
                .find(|t| super::devices::reply_tag(message, &t.spec) == Some(id.as_str()))?;
            let request = self.outbound.get(id)?;
            (request.session == session && same_peer(request.peer.as_deref(), from, account))
                .then_some((request, tie))
        })
    }

    /// Tracks a foreign request sent to a controller; returns its new id.
    pub fn track_inbound(&mut self, request: Inbound) -> String {
        let id = fresh_id();
        self.inbound.insert(id.clone(), request);
        id
    }

    /// The foreign request a controller's answer belongs to, if that
    /// controller is the one it was sent to.
    pub fn inbound_answer(&mut self, id: &str, resource: Option<&str>) -> Option<Inbound> {
        let fits = self
            .inbound
            .get(id)
            .is_some_and(|p| Some(p.controller.as_str()) == resource);
        if fits { self.inbound.remove(id) } else { None }
    }

    /// A foreign request that timed out, if still unanswered.
    pub fn expire_inbound(&mut self, id: &str) -> Option<Inbound> {
        self.inbound.remove(id)
    }
}

/// RFC 6120 section 10.1.4: an answer comes from where the request went; a
/// request without 'to' (or to the account's own bare JID) is answered by
/// the account's server, from the account or without 'from'.
pub fn same_peer(sent_to: Option<&str>, from: Option<&str>, account: &BareJid) -> bool {
    let is_account = |j: &str| Jid::new(j).is_ok_and(|j| j.to_bare() == *account);
    match (sent_to, from) {
        (Some(to), Some(from)) => to == from,
        (None, None) => true,
        (None, Some(from)) => is_account(from),
        (Some(to), None) => is_account(to),
    }
}

/// An IQ error of type `wait` with condition `remote-server-timeout`.
fn timeout(text: &str) -> Element {
    let mut iq = Element::bare("iq", NS_CLIENT);
    set_attr(&mut iq, "type", Some("error".into()));
    iq.append_child(error_element("wait", "remote-server-timeout", Some(text)));
    iq
}

impl Outbound {
    /// The error the asking controller gets when no answer came: from the
    /// address it wrote to (or T), to the controller of `local`.
    pub fn timeout_error(self, local: &BareJid, gateway: &str) -> Element {
        let mut iq = timeout("no answer from the foreign side in time");
        set_attr(&mut iq, "id", self.original_id);
        set_attr(
            &mut iq,
            "from",
            Some(self.local_to.unwrap_or_else(|| gateway.to_string())),
        );
        set_attr(&mut iq, "to", Some(format!("{local}/{}", self.requester)));
        iq
    }
}

impl Inbound {
    /// The error the foreign asker gets when no controller answered.
    pub fn timeout_error(self) -> Element {
        let mut iq = timeout("no controller answered in time");
        set_attr(&mut iq, "id", self.original_id);
        set_attr(&mut iq, "to", self.foreign_from);
        iq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> BareJid {
        BareJid::new("me@remote.net").expect("jid")
    }

    fn outbound(requester: &str, id: &str, peer: Option<&str>) -> Outbound {
        Outbound {
            session: "Work".into(),
            requester: requester.into(),
            original_id: Some(id.into()),
            peer: peer.map(Into::into),
            local_to: peer.map(|_| "bob\\40remote.net@gw.example.org/x".into()),
            payload_ns: Some("jabber:iq:version".into()),
        }
    }

    #[test]
    fn colliding_controller_ids_get_distinct_ids_and_each_answer_finds_its_asker() {
        let mut t = IqTracker::default();
        let a = t.track_outbound(outbound("Work/phone", "1", Some("bob@remote.net/x")));
        let b = t.track_outbound(outbound("Work/laptop", "1", Some("bob@remote.net/x")));
        assert_ne!(a, b);
        let answer = t
            .outbound_answer(&b, "Work", Some("bob@remote.net/x"), &account())
            .expect("fits");
        assert_eq!(answer.requester, "Work/laptop");
        assert_eq!(answer.original_id.as_deref(), Some("1"));
        assert!(
            t.outbound_answer(&b, "Work", Some("bob@remote.net/x"), &account())
                .is_none(),
            "answered once"
        );
        let answer = t
            .outbound_answer(&a, "Work", Some("bob@remote.net/x"), &account())
            .expect("fits");
        assert_eq!(answer.requester, "Work/phone");
        assert_eq!(answer.original_id.as_deref(), Some("1"));
        assert!(t.expire_outbound(&a).is_none(), "nothing left to time out");
    }

    #[test]
    fn tied_messages_find_their_asker_until_the_answer_and_only_from_the_peer() {
        let mut t = IqTracker::default();
        let me = account();
        let a = t.track_outbound(outbound("Work/phone", "q", None));
        let b = t.track_outbound(outbound("Work/laptop", "q", None));
        for id in [&a, &b] {
            t.tie(
                id,
                Tie {
                    spec: super::super::devices::archive_tie(),
                    original: Some("same".into()),
                },
            );
        }
        let result = |tag: &str| -> Element {
            format!("<message xmlns='jabber:client'><result xmlns='urn:xmpp:mam:2' queryid='{tag}'/></message>")
                .parse()
                .expect("test XML")
        };
        let (request, tie) = t
            .tied(&result(&a), "Work", Some("me@remote.net"), &me)
            .expect("tied");
        assert_eq!(request.requester, "Work/phone");
        assert_eq!(tie.original.as_deref(), Some("same"));
        assert_eq!(
            t.tied(&result(&b), "Work", None, &me)
                .map(|(r, _)| r.requester.as_str()),
            Some("Work/laptop")
        );
        // Not from the account's server, or on another session: not tied.
        assert!(
            t.tied(&result(&a), "Work", Some("bob@remote.net/x"), &me)
                .is_none()
        );
        assert!(t.tied(&result(&a), "Home", None, &me).is_none());
        // The answer ends the tie.
        assert!(t.outbound_answer(&a, "Work", None, &me).is_some());
        assert!(t.tied(&result(&a), "Work", None, &me).is_none());
        assert!(t.expire_outbound(&b).is_some());
        assert!(t.tied(&result(&b), "Work", None, &me).is_none());
    }

    #[test]
    fn an_answer_from_elsewhere_or_another_session_is_not_the_answer() {
        let mut t = IqTracker::default();
        let id = t.track_outbound(outbound("Work/phone", "q", Some("bob@remote.net/x")));
        let acct = account();
        assert!(
            t.outbound_answer(&id, "Work", Some("eve@evil.org"), &acct)
                .is_none()
        );
        assert!(
            t.outbound_answer(&id, "Home", Some("bob@remote.net/x"), &acct)
                .is_none()
        );
        assert!(t.outbound_answer("pz-0", "Work", None, &acct).is_none());
        assert!(
            t.outbound_answer(&id, "Work", Some("bob@remote.net/x"), &acct)
                .is_some(),
            "still there for the real answer"
        );
    }

    #[test]
    fn the_account_s_own_server_answers_from_the_account_or_without_from() {
        let acct = account();
        assert!(same_peer(None, None, &acct));
        assert!(same_peer(None, Some("me@remote.net"), &acct));
        assert!(same_peer(None, Some("me@remote.net/Work"), &acct));
        assert!(!same_peer(None, Some("remote.net"), &acct));
        assert!(same_peer(Some("me@remote.net"), None, &acct));
        assert!(!same_peer(Some("bob@remote.net"), None, &acct));
        assert!(same_peer(
            Some("bob@remote.net"),
            Some("bob@remote.net"),
            &acct
        ));
        assert!(!same_peer(
            Some("bob@remote.net"),
            Some("bob@remote.net/r"),
            &acct
        ));
    }

    #[test]
    fn only_the_controller_a_foreign_request_went_to_may_answer_it() {
        let mut t = IqTracker::default();
        let id = t.track_inbound(Inbound {
            session: "Work".into(),
            foreign_from: Some("bob@remote.net/x".into()),
            original_id: Some("f1".into()),
            controller: "Work/phone".into(),
            payload_ns: None,
        });
        assert!(t.inbound_answer(&id, Some("Work/laptop")).is_none());
        assert!(t.inbound_answer(&id, None).is_none());
        let p = t.inbound_answer(&id, Some("Work/phone")).expect("fits");
        assert_eq!(p.original_id.as_deref(), Some("f1"));
        assert!(t.expire_inbound(&id).is_none(), "answered already");
    }

    #[test]
    fn timeouts_answer_the_asker_with_its_own_id_and_remote_server_timeout() {
        let local = BareJid::new("alice@example.org").expect("jid");
        let e = outbound("Work/phone", "v1", Some("bob@remote.net/x"))
            .timeout_error(&local, "gw.example.org");
        assert_eq!(e.attr("type"), Some("error"));
        assert_eq!(e.attr("id"), Some("v1"));
        assert_eq!(e.attr("to"), Some("alice@example.org/Work/phone"));
        assert_eq!(e.attr("from"), Some("bob\\40remote.net@gw.example.org/x"));
        let error = e.get_child("error", NS_CLIENT).expect("error");
        assert!(error.has_child("remote-server-timeout", crate::xmpp::NS_STANZAS));
        let e = outbound("Work/phone", "v2", None).timeout_error(&local, "gw.example.org");
        assert_eq!(e.attr("from"), Some("gw.example.org"), "T when no address");

        let e = Inbound {
            session: "Work".into(),
            foreign_from: Some("bob@remote.net/x".into()),
            original_id: Some("f1".into()),
            controller: "Work/phone".into(),
            payload_ns: None,
        }
        .timeout_error();
        assert_eq!(
            (e.attr("to"), e.attr("id"), e.attr("from")),
            (Some("bob@remote.net/x"), Some("f1"), None)
        );
    }
}
