//! docs/behaviour.md section 7: nothing lost, nothing silent. A proxy
//! between the gateway and the foreign server cuts the connection with
//! stanzas in flight; every test counts what the controller sent, what bob
//! received, what came back as an error, and asserts that nothing was lost
//! silently and nothing arrived twice.

use crate::bob_subscribes;
use pizzja_tests::proxy::{FaultProxy, Mode};
use pizzja_tests::*;
use std::collections::BTreeMap;

/// me's foreign session, as bob writes to it.
const WORK: &str = "me@foreign.test/Work";

/// A cut XEP-0198 session lives this long on the foreign server.
const HIBERNATION_SECS: u32 = 2;

struct Setup {
    // Dropped last: the gateway and clients go first.
    _prosody: Prosody,
    proxy: FaultProxy,
    gateway: Option<Gateway>,
    phone: Client,
    bob: Client,
}

impl Setup {
    /// Stops the gateway (and with it, the foreign sessions).
    async fn stop(mut self) {
        self.stop_gateway().await;
    }

    async fn stop_gateway(&mut self) {
        self.gateway
            .take()
            .expect("running")
            .stop()
            .await
            .expect("stops");
    }

    /// Starts the gateway again on the same database, through the proxy
    /// on `cut`, its configuration adjusted by `adjust`.
    async fn start_gateway(
        &mut self,
        cut: Cut,
        adjust: impl FnOnce(&mut pizzja_host::config::Config),
    ) {
        let config = gateway_config(&self._prosody, &self.proxy, cut, adjust);
        self.gateway = Some(Gateway::start(config).await.expect("gateway starts"));
    }

    /// Sends `n` messages to bob while the proxy holds them: in flight
    /// when the next cut comes.
    async fn send_held(&mut self, tally: &mut Tally, prefix: &str, n: usize) {
        self.proxy.hold();
        send_batch(&self.phone, tally, prefix, n).await;
        self.proxy
            .wait_held(&format!("{prefix}-{}", n - 1), WAIT)
            .await
            .expect("the batch is in flight");
    }

    /// Bob writes to me/Work once and the phone receives it (so the session
    /// has a position in the archive); then the foreign server is cut off
    /// until it ends the session.
    async fn live_then_cut_past_hibernation(&mut self) {
        bob_writes(&mut self.bob, WORK, "live", 1).await;
        next_from_bob(&mut self.phone, 1, "the live message").await;
        self.cut_past_hibernation().await;
    }

    /// Cuts the foreign server off, refusing reconnects, until it ends the
    /// session (bob sees me/Work go).
    async fn cut_past_hibernation(&mut self) {
        self.proxy.set_mode(Mode::Refuse);
        self.proxy.cut();
        self.bob
            .expect("me/Work's session ended by the server", |e| {
                me_work(e, Some("unavailable"))
            })
            .await;
    }

    /// Bob writes once more, and that is what the phone receives next.
    async fn after_0_comes_next(&mut self) {
        bob_writes(&mut self.bob, WORK, "after", 1).await;
        let next = next_from_bob(&mut self.phone, 1, "the next live message").await;
        assert_eq!(bodies(&next), ["after-0"], "nothing twice");
    }

    /// Once the gateway has answered a ping from the phone, nothing more
    /// with a body has come: pages the gateway asked for before the ping
    /// are answered ahead of it. Returns the archive queries the gateway
    /// sent since [`FaultProxy::record`], each from its `queryid`.
    async fn nothing_more_then_archive_queries(&mut self) -> Vec<String> {
        let ping = format!(
            "<iq type='get' id='barrier' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
            gw_jid(FOREIGN)
        );
        self.phone.send(&ping).await;
        self.phone
            .expect("the ping's answer", |e| e.attr("id") == Some("barrier"))
            .await;
        let again: Vec<String> = self.phone.inbox().filter_map(body).collect();
        assert!(again.is_empty(), "nothing twice: {again:?}");
        self.proxy
            .client_transcripts()
            .iter()
            .flat_map(|t| {
                let t = String::from_utf8_lossy(t).into_owned();
                t.match_indices("queryid=")
                    .map(|(i, _)| t[i..(i + 300).min(t.len())].to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The phone hears that me/Work is gone.
    async fn phone_sees_work_gone(&mut self) -> minidom::Element {
        self.phone
            .expect("me/Work unavailable", |e| {
                presence_of_work(e, Some("unavailable"))
            })
            .await
    }

    /// The phone hears that me/Work is back.
    async fn phone_sees_work_back(&mut self) -> minidom::Element {
        self.phone
            .expect("me/Work available again", |e| presence_of_work(e, None))
            .await
    }

    /// Reads until `n` of the phone's messages have settled: at bob, or
    /// as a `resource-constraint` error at the phone.
    async fn settle(&mut self, tally: &mut Tally, n: usize) {
        settle(&mut self.bob, &mut self.phone, tally, n).await;
    }
}

/// Reads until `n` of `phone`'s messages have settled: at `bob`, or as a
/// `resource-constraint` error at `phone`.
async fn settle(bob: &mut Client, phone: &mut Client, tally: &mut Tally, n: usize) {
    for _ in 0..n {
        let e = tokio::select! {
            m = bob.expect("a message", |e| e.name() == "message") => m,
            e = phone.expect("an error", |e| e.attr("type") == Some("error")) => e,
        };
        if e.attr("type") == Some("error") {
            assert_eq!(
                error_condition(&e).as_deref(),
                Some("resource-constraint"),
                "{}",
                xml(&e)
            );
            tally
                .errored
                .push(e.attr("id").unwrap_or_default().to_string());
        } else {
            let body = body(&e).unwrap_or_default();
            *tally.delivered.entry(body.clone()).or_default() += 1;
            tally.arrived.push(body);
        }
    }
}

/// The gateway's configuration for `prosody`, reaching it through `proxy`
/// on `cut`, adjusted by `adjust`.
fn gateway_config(
    prosody: &Prosody,
    proxy: &FaultProxy,
    cut: Cut,
    adjust: impl FnOnce(&mut pizzja_host::config::Config),
) -> pizzja_host::config::Config {
    let db = prosody.dir.path().join("pizzja.sqlite3");
    let mut config = prosody.gateway_config(&db, "");
    adjust(&mut config);
    match cut {
        Cut::Foreign => {
            config.foreign_hosts.insert(FOREIGN.into(), proxy.addr);
        }
        Cut::Component => config.server = proxy.addr.to_string(),
    }
    config
}

/// Which link the fault proxy sits on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Between the gateway and the foreign server.
    Foreign,
    /// Between the gateway and the local server (the component link).
    Component,
}

/// Prosody with a short hibernation, the gateway reaching foreign.test
/// through a fault proxy, alice's phone controlling me/Work, and bob (a
/// contact of me, connected directly) online.
async fn setup() -> Setup {
    setup_on(Cut::Foreign, |_| {}).await
}

/// Like [`setup`], with the proxy on `cut`, the gateway's configuration
/// adjusted by `adjust`.
async fn setup_on(cut: Cut, adjust: impl FnOnce(&mut pizzja_host::config::Config)) -> Setup {
    setup_with(cut, &[], adjust).await
}

/// Like [`setup_on`], with `more` users on the server too.
async fn setup_with(
    cut: Cut,
    more: &[(&str, &str)],
    adjust: impl FnOnce(&mut pizzja_host::config::Config),
) -> Setup {
    init_tracing();
    let options = Options {
        hibernation_secs: HIBERNATION_SECS,
        mam: true,
        ..Options::default()
    };
    let mut users = vec![("alice", LOCAL), ("me", FOREIGN), ("bob", FOREIGN)];
    users.extend_from_slice(more);
    let prosody = Prosody::start_options(&users, &options)
        .await
        .expect("prosody starts");
    let port = match cut {
        Cut::Foreign => prosody.c2s,
        Cut::Component => prosody.component,
    };
    let upstream = format!("127.0.0.1:{port}").parse().expect("an address");
    let proxy = FaultProxy::start(upstream).await.expect("proxy starts");
    let config = gateway_config(&prosody, &proxy, cut, adjust);
    let gateway = Gateway::start(config).await.expect("gateway starts");
    let mut phone = registered_phone(&prosody).await;
    let mut bob = bob_online(&prosody).await;
    bob_subscribes(&mut bob, &mut phone, "Work").await;
    phone.clear();
    Setup {
        _prosody: prosody,
        proxy,
        gateway: Some(gateway),
        phone,
        bob,
    }
}

/// What became of each message the phone sent.
#[derive(Debug, Default)]
struct Tally {
    sent: Vec<String>,
    delivered: BTreeMap<String, usize>,
    /// What bob received, in arrival order.
    arrived: Vec<String>,
    errored: Vec<String>,
}

impl Tally {
    fn lost_silently(&self) -> Vec<&String> {
        self.sent
            .iter()
            .filter(|id| !self.delivered.contains_key(*id) && !self.errored.contains(id))
            .collect()
    }

    fn duplicated(&self) -> Vec<(&String, &usize)> {
        self.delivered.iter().filter(|(_, n)| **n > 1).collect()
    }

    /// Bob got every message the phone sent, once each, in the order sent.
    fn assert_all_delivered_once_in_order(&self) {
        self.assert_nothing_lost_or_doubled();
        assert!(self.errored.is_empty(), "errors: {:?}", self.errored);
        assert_eq!(self.arrived, self.sent, "arrival order");
    }

    fn assert_nothing_lost_or_doubled(&self) {
        assert!(
            self.lost_silently().is_empty(),
            "lost silently: {:?}",
            self.lost_silently()
        );
        assert!(
            self.duplicated().is_empty(),
            "duplicated: {:?}",
            self.duplicated()
        );
    }
}

async fn send_batch(phone: &Client, tally: &mut Tally, prefix: &str, n: usize) {
    let to = gw_jid("bob@foreign.test/pc");
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        phone
            .send(&format!(
                "<message type='chat' to='{to}' id='{id}'><body>{id}</body></message>"
            ))
            .await;
        tally.sent.push(id);
    }
}

/// Reads until every sent message is accounted for, at bob or as an error
/// at the phone; then reads on until bob has seen `marker` (sent last, on
/// its own), so that a late duplicate would be counted too.
async fn collect(setup: &mut Setup, tally: &mut Tally, marker: &str) {
    let to = gw_jid("bob@foreign.test/pc");
    setup
        .phone
        .send(&format!(
            "<message type='chat' to='{to}' id='{marker}'><body>{marker}</body></message>"
        ))
        .await;
    loop {
        let m = setup
            .bob
            .expect("a message from me", |e| {
                e.name() == "message" && e.attr("from") == Some("me@foreign.test/Work")
            })
            .await;
        let body = body(&m).unwrap_or_default();
        if body == marker {
            break;
        }
        *tally.delivered.entry(body.clone()).or_default() += 1;
        tally.arrived.push(body);
    }
    let errors: Vec<String> = setup
        .phone
        .inbox()
        .filter(|e| e.name() == "message" && e.attr("type") == Some("error"))
        .filter_map(|e| e.attr("id").map(str::to_string))
        .collect();
    tally.errored.extend(errors);
}

/// me/Work's own presence of `type_`, as bob sees it.
fn me_work(e: &minidom::Element, type_: Option<&str>) -> bool {
    e.name() == "presence" && e.attr("from") == Some(WORK) && e.attr("type") == type_
}

/// me/Work's presence of `type_`, as the controllers see it (from T).
fn presence_of_work(e: &minidom::Element, type_: Option<&str>) -> bool {
    let from = gw_jid(&format!("{ME}/Work"));
    e.name() == "presence" && e.attr("from") == Some(from.as_str()) && e.attr("type") == type_
}

#[tokio::test]
async fn a_cut_the_server_can_resume_loses_nothing_and_shows_nothing() {
    let mut s = setup().await;
    let mut tally = Tally::default();
    s.send_held(&mut tally, "r", 10).await;
    s.proxy.cut();
    collect(&mut s, &mut tally, "r-end").await;
    tally.assert_all_delivered_once_in_order();
    assert_eq!(tally.delivered.len(), 10);
    assert!(
        !s.phone
            .inbox()
            .any(|e| presence_of_work(e, Some("unavailable"))),
        "a resumed session is not announced as gone"
    );
    s.stop().await;
}

#[tokio::test]
async fn an_outage_longer_than_hibernation_resends_what_the_server_never_had_once_in_order() {
    let mut s = setup().await;
    let mut tally = Tally::default();
    s.send_held(&mut tally, "h", 10).await;
    s.proxy.set_mode(Mode::Refuse);
    s.proxy.cut();

    // The controllers hear that F/A is gone, and why.
    let gone = s.phone_sees_work_gone().await;
    assert!(
        gone.children().any(|c| c.name() == "status"),
        "with the reason: {}",
        xml(&gone)
    );
    // The foreign server gives up the hibernating session: bob sees me/Work go.
    s.bob
        .expect("me/Work's session ended by the server", |e| {
            me_work(e, Some("unavailable"))
        })
        .await;
    // Bob writes while me/Work is gone: only the archive has it.
    let missed = bob_writes(&mut s.bob, ME, "gap", 3).await;
    s.proxy.set_mode(Mode::Pass);

    // Back: bound again, its presence restored, the batch sent again, and
    // what bob wrote meanwhile caught up from the archive.
    s.phone_sees_work_back().await;
    s.bob
        .expect("me/Work's presence restored", |e| me_work(e, None))
        .await;
    collect(&mut s, &mut tally, "h-end").await;
    tally.assert_all_delivered_once_in_order();
    assert_eq!(tally.delivered.len(), 10);
    let caught = next_from_bob(&mut s.phone, missed.len(), "what bob wrote during the gap").await;
    for m in &caught {
        assert!(m.children().any(|c| c.name() == "delay"), "{}", xml(m));
    }
    assert_eq!(bodies(&caught), missed, "each once, in order");
    s.stop().await;
}

/// A stream bound afresh passes on what arrives before stream management
/// is enabled ahead of telling the session it is back (tokio-xmpp's
/// "pre-SM data"). Such a message is newer than the gap: it must not make
/// the catch-up start after the gap.
#[tokio::test]
async fn a_message_that_beats_the_rebound_stream_s_reset_does_not_skip_the_gap() {
    let mut s = setup().await;
    s.live_then_cut_past_hibernation().await;
    let missed = bob_writes(&mut s.bob, ME, "gap", 3).await;

    // The reconnect binds me/Work, and its `<enable/>` waits in the proxy:
    // what bob writes now reaches the new stream before it is ready.
    s.proxy.hold_client_from("<enable");
    s.proxy.set_mode(Mode::Pass);
    s.proxy
        .wait_held("<enable", WAIT * 2)
        .await
        .expect("the reconnect binds and asks for stream management");
    let early = bob_writes(&mut s.bob, WORK, "early", 2).await;
    let seen = next_from_bob(&mut s.phone, early.len(), "bob's early messages").await;
    assert_eq!(bodies(&seen), early);
    s.proxy.release();

    // Ready: the catch-up starts where the session was before the gap.
    let caught = next_from_bob(&mut s.phone, missed.len(), "what bob wrote during the gap").await;
    assert_eq!(bodies(&caught), missed, "each once, in order");
    s.after_0_comes_next().await;
    s.stop().await;
}

/// A catch-up reads the archive to its end, and while it reads, the end
/// moves on with what the session receives live, more than a page of it
/// here (and on a busy account, more than the session remembers ids of):
/// the catch-up stops at the first message the session had live, so
/// nothing comes twice and no page past it is asked for.
#[tokio::test]
async fn a_catch_up_stops_where_live_delivery_took_over() {
    const BUSY: usize = 150;
    let mut s = setup().await;
    s.live_then_cut_past_hibernation().await;
    let missed = bob_writes(&mut s.bob, ME, "gap", 3).await;

    // The reconnect's archive query waits in the proxy while bob writes
    // to the bound session, live.
    s.proxy.record();
    s.proxy.hold_client_from("urn:xmpp:mam:2");
    s.proxy.set_mode(Mode::Pass);
    s.proxy
        .wait_held("urn:xmpp:mam:2", WAIT * 2)
        .await
        .expect("the reconnect asks the archive");
    let busy = bob_writes(&mut s.bob, WORK, "busy", BUSY).await;
    let live = next_from_bob(&mut s.phone, BUSY, "bob's live messages").await;
    assert_eq!(bodies(&live), busy);
    s.proxy.release();

    let caught = next_from_bob(&mut s.phone, missed.len(), "what bob wrote during the gap").await;
    assert_eq!(bodies(&caught), missed, "each once, in order");
    // The archive answered the query before it routed after-0, so a next
    // page, if the gateway asked for one, left before after-0 came.
    s.after_0_comes_next().await;
    let queries = s.nothing_more_then_archive_queries().await;
    assert_eq!(
        queries.len(),
        1,
        "one page, and no page past live delivery: {queries:#?}"
    );
    s.stop().await;
}

/// A catch-up cut short by the next gap starts again from where it had got
/// to, behind the period the session was up in between. It skips that
/// period with a query from its last message, however long it was: each
/// gap comes once, and nothing the session had live comes again.
#[tokio::test]
async fn a_catch_up_cut_short_by_the_next_gap_skips_what_came_live_in_between() {
    const BUSY: usize = 150;
    let mut s = setup().await;
    s.live_then_cut_past_hibernation().await;
    let first_gap = bob_writes(&mut s.bob, ME, "gap1", 3).await;

    // The reconnect's archive query waits in the proxy while bob writes
    // to the bound session, live; the next cut takes the query with it.
    s.proxy.record();
    s.proxy.hold_client_from("urn:xmpp:mam:2");
    s.proxy.set_mode(Mode::Pass);
    s.proxy
        .wait_held("urn:xmpp:mam:2", WAIT * 2)
        .await
        .expect("the reconnect asks the archive");
    s.bob
        .expect("me/Work bound again", |e| me_work(e, None))
        .await;
    let busy = bob_writes(&mut s.bob, WORK, "busy", BUSY).await;
    let live = next_from_bob(&mut s.phone, BUSY, "bob's live messages").await;
    assert_eq!(bodies(&live), busy);
    s.cut_past_hibernation().await;
    let second_gap = bob_writes(&mut s.bob, ME, "gap2", 3).await;
    s.proxy.set_mode(Mode::Pass);

    let caught = next_from_bob(&mut s.phone, 6, "what bob wrote during the gaps").await;
    assert_eq!(
        bodies(&caught),
        [first_gap, second_gap].concat(),
        "each once, in order"
    );
    s.after_0_comes_next().await;
    // The held query, the catch-up from before the first gap, and the one
    // from the end of the busy period; paging through it would take more.
    let queries = s.nothing_more_then_archive_queries().await;
    assert_eq!(
        queries.len(),
        3,
        "no page through what the session had live: {queries:#?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn stanzas_sent_during_an_outage_wait_and_go_out_when_it_ends() {
    let mut s = setup().await;
    let mut tally = Tally::default();
    s.proxy.set_mode(Mode::Refuse);
    s.proxy.cut();
    s.phone_sees_work_gone().await;
    send_batch(&s.phone, &mut tally, "w", 5).await;
    s.proxy.set_mode(Mode::Pass);
    s.phone_sees_work_back().await;
    collect(&mut s, &mut tally, "w-end").await;
    tally.assert_all_delivered_once_in_order();
    assert_eq!(tally.delivered.len(), 5);
    s.stop().await;
}

/// Waits until the proxy has refused `n` more connections: the gateway is
/// trying to reconnect, so the link is down.
async fn refused_attempts(proxy: &FaultProxy, n: u64) {
    let target = proxy.accepted() + n;
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    while proxy.accepted() < target {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway did not try to reconnect"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The next `n` messages from bob/pc that `phone` gets, in arrival order.
async fn next_from_bob(phone: &mut Client, n: usize, what: &str) -> Vec<minidom::Element> {
    let from = gw_jid("bob@foreign.test/pc");
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let m = phone
            .expect(what, |e| {
                e.name() == "message" && e.attr("from") == Some(from.as_str())
            })
            .await;
        got.push(m);
    }
    got
}

/// Their bodies.
fn bodies(messages: &[minidom::Element]) -> Vec<String> {
    messages
        .iter()
        .map(|m| body(m).unwrap_or_default())
        .collect()
}

/// Bob writes `n` messages to `to` (me/Work, or me's bare JID when no
/// resource of me is online and only the archive keeps them) and knows the
/// server has routed them (its ping's answer comes after them).
async fn bob_writes(bob: &mut Client, to: &str, prefix: &str, n: usize) -> Vec<String> {
    let mut sent = Vec::new();
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        bob.send(&format!(
            "<message type='chat' to='{to}' id='{id}'><body>{id}</body></message>"
        ))
        .await;
        sent.push(id);
    }
    let ping = format!("{prefix}-ping");
    bob.send(&format!(
        "<iq type='get' id='{ping}' to='{FOREIGN}'><ping xmlns='urn:xmpp:ping'/></iq>"
    ))
    .await;
    bob.expect("the server's answer", |e| {
        e.attr("id") == Some(ping.as_str())
    })
    .await;
    sent
}

#[tokio::test]
async fn while_the_component_link_is_down_sessions_stay_and_what_they_receive_waits() {
    let mut s = setup_on(Cut::Component, |_| {}).await;
    s.proxy.set_mode(Mode::Refuse);
    s.proxy.cut();
    refused_attempts(&s.proxy, 1).await;
    let sent = bob_writes(&mut s.bob, WORK, "c", 10).await;
    // Received by the session while the link is down, then waiting for it.
    refused_attempts(&s.proxy, 1).await;
    s.proxy.set_mode(Mode::Pass);
    let arrived = next_from_bob(&mut s.phone, sent.len(), "bob's messages").await;
    assert_eq!(bodies(&arrived), sent, "each once, in order");
    let from = gw_jid("bob@foreign.test/pc");
    // And me/Work never went away for bob.
    let marker = "c-after";
    s.phone
        .send(&format!(
            "<message type='chat' to='{from}' id='{marker}'><body>{marker}</body></message>"
        ))
        .await;
    s.bob
        .expect("the phone's message after the outage", |e| {
            body(e).as_deref() == Some(marker)
        })
        .await;
    assert!(
        !s.bob.inbox().any(|e| me_work(e, Some("unavailable"))),
        "the foreign session stayed up"
    );
    s.stop().await;
}

/// XEP-0114 has no acknowledgements: what the gateway wrote to the local
/// server just before the link dropped may never have arrived. Answers to
/// its pings prove what did; the rest is written again after the
/// reconnect. Here bob's messages are held in the proxy and lost with the
/// cut, and still reach the phone, each once, in order.
#[tokio::test]
async fn what_the_gateway_wrote_to_the_local_server_just_before_a_cut_is_written_again() {
    let mut s = setup_on(Cut::Component, |_| {}).await;
    s.proxy.hold();
    let sent = bob_writes(&mut s.bob, WORK, "w", 5).await;
    s.proxy
        .wait_held("w-4", WAIT)
        .await
        .expect("written to the local server, not arrived");
    s.proxy.cut();
    let from = gw_jid("bob@foreign.test/pc");
    let from_bob =
        |e: &minidom::Element| e.name() == "message" && e.attr("from") == Some(from.as_str());
    let arrived = next_from_bob(&mut s.phone, sent.len(), "bob's messages").await;
    assert_eq!(bodies(&arrived), sent, "each once, in order");
    bob_writes(&mut s.bob, WORK, "after", 1).await;
    let next = s.phone.expect("the next message", from_bob).await;
    assert_eq!(body(&next).as_deref(), Some("after-0"), "nothing twice");
    s.stop().await;
}

#[tokio::test]
async fn past_the_grace_period_sessions_close_and_come_back_with_the_link() {
    let mut s = setup_on(Cut::Component, |_| {}).await;
    // The setup's gateway has the default grace; this one a second.
    s.stop_gateway().await;
    s.start_gateway(Cut::Component, |c| {
        c.link_grace = std::time::Duration::from_secs(1)
    })
    .await;
    let online = |e: &minidom::Element| me_work(e, None);
    s.bob.expect("me/Work back after the restart", online).await;
    // The first gateway's stop took me/Work offline once already.
    s.bob.clear();
    s.proxy.set_mode(Mode::Refuse);
    s.proxy.cut();
    s.bob
        .expect("me/Work closed after the grace period", |e| {
            me_work(e, Some("unavailable"))
        })
        .await;
    s.proxy.set_mode(Mode::Pass);
    s.bob
        .expect("me/Work again once the link is back", online)
        .await;
    s.stop().await;
}

#[tokio::test]
async fn past_the_bound_stanzas_waiting_for_a_session_are_refused_with_resource_constraint() {
    let mut s = setup_on(Cut::Foreign, |c| c.queue_limit = 4).await;
    let mut tally = Tally::default();
    s.proxy.set_mode(Mode::Refuse);
    s.proxy.cut();
    s.phone_sees_work_gone().await;
    send_batch(&s.phone, &mut tally, "q", 10).await;
    for i in 4..10 {
        let id = format!("q-{i}");
        s.phone.expect_error(&id, "resource-constraint").await;
        tally.errored.push(id);
    }
    s.proxy.set_mode(Mode::Pass);
    s.phone_sees_work_back().await;
    collect(&mut s, &mut tally, "q-end").await;
    tally.assert_nothing_lost_or_doubled();
    assert_eq!(
        tally.arrived,
        ["q-0", "q-1", "q-2", "q-3"],
        "the four that waited, in order"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_burst_past_an_account_s_queue_is_answered_and_counted_not_lost() {
    use pizzja_host::config::PolicySource;
    // A policy that can be made slow on purpose, and a queue of one: while
    // one decision runs to its deadline, the rest of the burst arrives.
    let mut world = crate::World::with(|c| {
        c.policy = PolicySource::File(pizzja_host::testing::policy_path(
            "pizzja_policy_test_hostile",
        ));
        c.account_queue = 1;
    })
    .await;
    let mut bob = world.bob().await;
    let to = gw_jid("bob@foreign.test/pc");
    world
        .phone
        .send(&format!(
            "<message type='chat' to='{to}' id='slow'><body>loop</body></message>"
        ))
        .await;
    let mut tally = Tally::default();
    send_batch(&world.phone, &mut tally, "b", 20).await;
    world
        .phone
        .expect_error("slow", "internal-server-error")
        .await;
    // Every message ends at bob or as resource-constraint at the phone.
    settle(&mut bob, &mut world.phone, &mut tally, 20).await;
    tally.assert_nothing_lost_or_doubled();
    assert!(!tally.errored.is_empty(), "the burst overflowed the queue");
    // The admin's counters say so.
    let mut admin = world.client("admin", LOCAL, "console").await;
    admin.go_online().await;
    let answer = execute_command(&mut admin, "st", "stats").await;
    let (_, note) = command_note(&answer).expect("a note");
    assert_eq!(
        stats_counter(&note, "overload-refused"),
        Some(tally.errored.len() as u64),
        "{note}"
    );
}

#[tokio::test]
async fn what_arrives_while_the_gateway_is_down_comes_from_the_archive_once_with_its_time() {
    let mut s = setup().await;
    let from = gw_jid("bob@foreign.test/pc");
    let from_bob =
        |e: &minidom::Element| e.name() == "message" && e.attr("from") == Some(from.as_str());
    // A live message first: the session learns where it is in the archive.
    bob_writes(&mut s.bob, WORK, "live", 1).await;
    s.phone.expect("the live message", from_bob).await;

    s.stop_gateway().await;
    s.bob
        .expect("me/Work gone with the gateway", |e| {
            me_work(e, Some("unavailable"))
        })
        .await;
    let written = bob_writes(&mut s.bob, ME, "away", 5).await;

    s.start_gateway(Cut::Foreign, |_| {}).await;
    let arrived = next_from_bob(&mut s.phone, written.len(), "a message bob wrote meanwhile").await;
    for m in &arrived {
        assert!(
            m.children()
                .any(|c| c.name() == "delay" && c.attr("stamp").is_some()),
            "with its original time: {}",
            xml(m)
        );
    }
    let arrived = bodies(&arrived);
    assert_eq!(arrived, written, "each once, in order");
    // Nothing more from the archive: a live message comes next, and the
    // one before the restart did not come again.
    bob_writes(&mut s.bob, WORK, "after", 1).await;
    let next = s.phone.expect("the next live message", from_bob).await;
    assert_eq!(body(&next).as_deref(), Some("after-0"));
    assert!(
        !s.phone
            .inbox()
            .any(|e| body(e).is_some_and(|b| b.starts_with("live") || b.starts_with("away"))),
        "nothing twice"
    );
    s.stop().await;
}

/// docs/behaviour.md section 7, "bounded and fair": one account whose
/// foreign server has stalled, flooded by its controller, holds up no other
/// account. carol's foreign account, dave@local.test, is on a server the
/// gateway reaches directly: her messages reach erin while not one byte of
/// alice's has reached hers; then everything alice sent ends delivered or
/// answered.
#[tokio::test]
async fn a_flood_into_a_stalled_foreign_server_holds_up_no_other_account() {
    let mut s = setup_with(
        Cut::Foreign,
        &[("carol", LOCAL), ("dave", LOCAL), ("erin", LOCAL)],
        |c| {
            let direct = c.foreign_hosts[FOREIGN];
            c.foreign_hosts.insert(LOCAL.into(), direct);
            // The flood overflows what waits for alice's session.
            c.queue_limit = 50;
        },
    )
    .await;
    let mut laptop = Client::connect(&s._prosody, "carol", LOCAL, "Home/laptop")
        .await
        .expect("carol logs in");
    laptop.go_online().await;
    register_ok(&mut laptop, "dave@local.test").await;
    let home = gw_jid("dave@local.test/Home");
    laptop
        .expect("carol's foreign session up", |e| {
            e.name() == "presence" && e.attr("from") == Some(home.as_str())
        })
        .await;
    let mut erin = Client::connect(&s._prosody, "erin", LOCAL, "pc")
        .await
        .expect("erin logs in");
    erin.go_online().await;

    // alice's foreign server stops reading, and her phone floods it.
    s.proxy.hold();
    let mut tally = Tally::default();
    send_batch(&s.phone, &mut tally, "flood", 300).await;
    s.proxy
        .wait_held("flood-0", WAIT)
        .await
        .expect("the flood reaches the stalled server");

    let to_erin = gw_jid("erin@local.test/pc");
    for i in 0..5 {
        laptop
            .send(&format!(
                "<message type='chat' to='{to_erin}' id='c-{i}'><body>c-{i}</body></message>"
            ))
            .await;
    }
    let mut got = Vec::new();
    while got.len() < 5 {
        let m = erin
            .expect("carol's messages", |e| e.name() == "message")
            .await;
        got.push(body(&m).unwrap_or_default());
    }
    assert_eq!(got, ["c-0", "c-1", "c-2", "c-3", "c-4"]);

    // The flood overflows what may wait for alice's stalled session: the
    // phone hears so while nothing reaches her server.
    let first = s
        .phone
        .expect("the first refusal", |e| e.attr("type") == Some("error"))
        .await;
    assert_eq!(
        error_condition(&first).as_deref(),
        Some("resource-constraint"),
        "{}",
        xml(&first)
    );
    tally
        .errored
        .push(first.attr("id").unwrap_or_default().to_string());

    // Released: each flood message reaches bob or comes back as an error.
    s.proxy.release();
    let unsettled = tally.sent.len() - 1;
    s.settle(&mut tally, unsettled).await;
    tally.assert_nothing_lost_or_doubled();
    s.stop().await;
}

#[tokio::test]
async fn a_foreign_server_that_accepts_and_never_answers_ends_in_errors_not_silence() {
    // Every connection to the foreign server hangs from the start: the
    // first login meets its deadline.
    let s = setup_on(Cut::Foreign, |c| {
        c.login_timeout = std::time::Duration::from_secs(2)
    })
    .await;
    s.proxy.set_mode(Mode::Blackhole);
    // A second foreign resource, opened while the server hangs.
    let mut desk = Client::connect(&s._prosody, "alice", LOCAL, "Home/desk")
        .await
        .expect("desk logs in");
    desk.go_online().await;
    let to = gw_jid("bob@foreign.test/pc");
    desk.send(&format!(
        "<message type='chat' to='{to}' id='hang-1'><body>hello?</body></message>"
    ))
    .await;
    desk.expect_error("hang-1", "service-unavailable").await;
    let told = desk
        .expect("why, from the gateway", |e| {
            e.name() == "message" && e.attr("from") == Some(GW)
        })
        .await;
    assert!(
        body(&told).is_some_and(|b| b.contains("me@foreign.test/Home")),
        "{}",
        xml(&told)
    );
    s.stop().await;
}
