//! `cargo xtask soak --minutes N`: steady two-way traffic through several
//! accounts while faults are injected at random (resumable cuts, outages
//! longer than the foreign server's hibernation, component link outages),
//! then every message is accounted for: sent, delivered, errored, lost
//! (neither: must be 0), duplicated (must be 0). Exits non-zero when
//! anything was lost or doubled, except what XEP-0114 cannot know about,
//! which is counted apart:
//! - a controller's message that the local server routed into the cut
//!   component link: it handles a client's stanzas in order, and it
//!   bounced a later one of the same client, sent after the same cut,
//!   because the component was gone (Prosody's `not-connected`), while
//!   this one got nothing; a busy server notices a cut late. (The proxy
//!   also keeps what the server wrote into the cut link until it read the
//!   end, and the report says how many of these it saw.) Or a message sent
//!   after the cut and before the server closed the cut link (the proxy
//!   sees it close once it has read the end), which it still routed
//!   there, and that the proxy never passed on from the server. Or a
//!   message sent in the [`CUT_WINDOW`] before a cut, on its way over the
//!   link;
//! - a contact's message that the gateway wrote once on each of two link
//!   connections, the first cut before a ping confirmed it (the proxy
//!   keeps what the gateway writes, a transcript a connection), and that
//!   the server had delivered both times.
//!
//! Faults: 0 a cut the foreign server resumes; 1 a foreign outage longer
//! than its hibernation; 2 an outage of the component link
//! (`--faults 01` runs only the first two).

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use minidom::Element;
use pizzja_tests::proxy::{FaultProxy, Mode};
use pizzja_tests::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_xmpp::Stanza;
use tokio_xmpp::stanzastream::Event;

const ACCOUNTS: usize = 3;
/// Each client sends one message every this long.
const PACE: Duration = Duration::from_millis(100);
const HIBERNATION_SECS: u32 = 2;
/// A loss counts as the component link cut's when the message was sent
/// this long before it.
const CUT_WINDOW: Duration = Duration::from_secs(1);

/// The kinds of fault, by number (`--faults`).
const FAULTS: [&str; 3] = [
    "foreign cut, resumed",
    "foreign outage past hibernation",
    "component link outage",
];

/// What became of the messages, across every client.
struct Ledger {
    /// When the soak started: the report gives times from it.
    start: Instant,
    /// When each message was sent.
    sent: BTreeMap<String, Instant>,
    /// When each message arrived, every time it did.
    delivered: BTreeMap<String, Vec<Instant>>,
    errored: BTreeSet<String>,
    /// Those the local server bounced because the component was gone.
    bounced: BTreeSet<String>,
    /// When each fault began, and its kind.
    faults: Vec<(Instant, usize)>,
    /// When the component link was cut, and when the proxy let the
    /// gateway connect again.
    link_outages: Vec<(Instant, Instant)>,
}

impl Ledger {
    fn new() -> Ledger {
        Ledger {
            start: Instant::now(),
            sent: BTreeMap::new(),
            delivered: BTreeMap::new(),
            errored: BTreeSet::new(),
            bounced: BTreeSet::new(),
            faults: Vec::new(),
            link_outages: Vec::new(),
        }
    }

    /// `at` for the report: seconds from the start, and from the nearest
    /// fault of each kind (`-0.2s` is 0.2 s before it).
    fn when(&self, at: Instant) -> String {
        let mut out = format!("{:.3}s", (at - self.start).as_secs_f64());
        for (kind, name) in FAULTS.iter().enumerate() {
            let nearest = self
                .faults
                .iter()
                .filter(|(_, k)| *k == kind)
                .map(|(t, _)| *t)
                .min_by_key(|t| if *t > at { *t - at } else { at - *t });
            match nearest {
                Some(t) if t >= at => {
                    out += &format!(" ({:.3}s before a {name})", (t - at).as_secs_f64())
                }
                Some(t) => out += &format!(" ({:.3}s after a {name})", (at - t).as_secs_f64()),
                None => {}
            }
        }
        out
    }

    /// Whether `at` falls within [`CUT_WINDOW`] before a link cut.
    fn just_before_a_link_cut(&self, at: Instant) -> bool {
        self.link_outages
            .iter()
            .any(|(cut, _)| at <= *cut && *cut - at <= CUT_WINDOW)
    }

    /// Whether `at` falls after a link cut and before the local server
    /// closed the cut link, having read its end (`closed`, as the proxy
    /// saw it): the server still routed into it then. The next link
    /// carries nothing before that close (the server refuses a second
    /// connection for the component with `conflict`).
    fn while_the_server_held_a_cut_link(&self, at: Instant, closed: &[Instant]) -> bool {
        self.link_outages.iter().any(|(cut, _)| {
            *cut <= at
                && closed
                    .iter()
                    .filter(|c| **c > *cut)
                    .min()
                    .is_some_and(|c| at < *c)
        })
    }

    /// Whether the local server routed `id` into a cut link: a later
    /// message of the same client, sent after the last cut before `id`
    /// and before the next, was bounced because the component was gone
    /// (so the server had not noticed that cut when it routed `id`).
    fn routed_into_a_cut_link(&self, id: &str) -> bool {
        let sent = self.sent[id];
        let cuts = || self.link_outages.iter().map(|(cut, _)| *cut);
        let Some(cut) = cuts().filter(|cut| *cut <= sent).max() else {
            return false;
        };
        let next = cuts().filter(|c| *c > cut).min();
        let (client, n) = split_id(id);
        self.bounced.iter().any(|b| {
            let (c, m) = split_id(b);
            c == client
                && m > n
                && self
                    .sent
                    .get(b)
                    .is_some_and(|at| *at >= cut && next.is_none_or(|next| *at < next))
        })
    }
}

type Shared = Arc<Mutex<Ledger>>;

fn ledger(l: &Shared) -> std::sync::MutexGuard<'_, Ledger> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}

/// One client: sends a numbered message to `to` at every tick while
/// `sending`, and records what it receives from `expect_from`.
async fn drive(
    client: Client,
    name: String,
    to: String,
    expect_from: String,
    mut sending: watch::Receiver<bool>,
    ledger_: Shared,
) {
    let mut stream = client.into_stream();
    let mut tick = tokio::time::interval(PACE);
    let mut n = 0u64;
    loop {
        tokio::select! {
            ev = stream.next() => match ev {
                Some(Event::Stanza(s)) => {
                    let el = Element::from(s);
                    if el.name() != "message" {
                        continue;
                    }
                    let id = el.attr("id").unwrap_or_default().to_string();
                    if el.attr("type") == Some("error") {
                        let mut l = ledger(&ledger_);
                        // Prosody's bounce for a component that is gone.
                        if el.children().any(|c| c.is("error", "jabber:client") && c.has_child("not-connected", "xmpp:prosody.im/protocol/component")) {
                            l.bounced.insert(id.clone());
                        }
                        l.errored.insert(id);
                    } else if el.attr("from").is_some_and(|f| f.starts_with(expect_from.as_str()))
                        && let Some(b) = body(&el)
                    {
                        ledger(&ledger_).delivered.entry(b).or_default().push(Instant::now());
                    }
                }
                Some(Event::Stream(_)) => {}
                None => return,
            },
            _ = tick.tick() => {
                if !*sending.borrow() {
                    continue;
                }
                n += 1;
                let id = format!("{name}-{n}");
                let xml = format!(
                    "<message xmlns='jabber:client' type='chat' to='{to}' id='{id}'><body>{id}</body></message>"
                );
                let stanza = Stanza::try_from(parse(&xml)).expect("a valid stanza");
                ledger(&ledger_).sent.insert(id, Instant::now());
                stream.send(Box::new(stanza)).await;
            }
            _ = sending.changed() => {}
        }
    }
}

/// Peak resident memory of this process (the gateway runs in it), KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let minutes: f64 = std::env::args()
        .skip_while(|a| a != "--minutes")
        .nth(1)
        .map(|m| m.parse().context("--minutes takes a number"))
        .transpose()?
        .unwrap_or(1.0);
    init_tracing();
    let mut users = vec![];
    let names: Vec<(String, String, String)> = (0..ACCOUNTS)
        .map(|i| (format!("alice{i}"), format!("me{i}"), format!("bob{i}")))
        .collect();
    for (a, m, b) in &names {
        users.push((a.as_str(), LOCAL));
        users.push((m.as_str(), FOREIGN));
        users.push((b.as_str(), FOREIGN));
    }
    // `--server-log debug` keeps Prosody's log at that level, for reading
    // beside the gateway's (RUST_LOG).
    let server_log: Option<&'static str> = std::env::args()
        .skip_while(|a| a != "--server-log")
        .nth(1)
        .map(|l| &*l.leak());
    let options = Options {
        hibernation_secs: HIBERNATION_SECS,
        mam: true,
        log_level: server_log.unwrap_or("warn"),
        ..Options::default()
    };
    let prosody = Prosody::start_options(&users, &options).await?;
    let foreign = FaultProxy::start(format!("127.0.0.1:{}", prosody.c2s).parse()?).await?;
    let link = FaultProxy::start(format!("127.0.0.1:{}", prosody.component).parse()?).await?;
    link.record();
    let db = prosody.dir.path().join("pizzja.sqlite3");
    let mut config = prosody.gateway_config(&db, "");
    config.foreign_hosts.insert(FOREIGN.into(), foreign.addr);
    config.server = link.addr.to_string();
    let gateway = Gateway::start(config).await?;

    let ledger_: Shared = Arc::new(Mutex::new(Ledger::new()));
    println!("  started at {} (the logs' clock)", utc_time_of_day());
    let (sending_tx, sending) = watch::channel(true);
    let mut tasks = Vec::new();
    for (a, m, b) in &names {
        let mut phone = Client::connect(&prosody, a, LOCAL, "Work/phone").await?;
        phone.go_online().await;
        register_ok(&mut phone, &format!("{m}@{FOREIGN}")).await;
        let work = gw_jid(&format!("{m}@{FOREIGN}/Work"));
        phone
            .expect("the foreign session up", |e| {
                e.name() == "presence" && e.attr("from") == Some(work.as_str())
            })
            .await;
        let mut bob = Client::connect(&prosody, b, FOREIGN, "pc").await?;
        bob.go_online().await;
        let bob_gw = gw_jid(&format!("{b}@{FOREIGN}/pc"));
        tasks.push(tokio::spawn(drive(
            phone,
            a.to_string(),
            bob_gw.clone(),
            bob_gw,
            sending.clone(),
            ledger_.clone(),
        )));
        tasks.push(tokio::spawn(drive(
            bob,
            b.to_string(),
            format!("{m}@{FOREIGN}/Work"),
            format!("{m}@{FOREIGN}/Work"),
            sending.clone(),
            ledger_.clone(),
        )));
    }

    // `--faults 01` limits the faults to those kinds (default: all three).
    let kinds: Vec<u64> = std::env::args()
        .skip_while(|a| a != "--faults")
        .nth(1)
        .unwrap_or_else(|| "012".into())
        .chars()
        .filter_map(|c| c.to_digit(10).map(u64::from))
        .filter(|k| *k < 3)
        .collect();
    if kinds.is_empty() {
        bail!("--faults takes digits 0, 1 and 2");
    }
    let end = tokio::time::Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let mut faults = BTreeMap::<&str, u32>::new();
    let mut seed = 0x2545_F491_4F6C_DD1D_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(2000 + next() % 3000)).await;
        let kind = kinds[(next() % kinds.len() as u64) as usize];
        {
            let mut l = ledger(&ledger_);
            let now = Instant::now();
            println!(
                "  fault {kind} at {:.3}s, after {} sent",
                (now - l.start).as_secs_f64(),
                l.sent.len()
            );
            l.faults.push((now, kind as usize));
        }
        match kind {
            0 => {
                // Resumable: cut, the reconnect goes through at once.
                foreign.cut();
                *faults.entry(FAULTS[0]).or_default() += 1;
            }
            1 => {
                // Longer than hibernation: nothing can be resumed.
                foreign.set_mode(Mode::Refuse);
                foreign.cut();
                tokio::time::sleep(Duration::from_secs(u64::from(HIBERNATION_SECS) + 2)).await;
                foreign.set_mode(Mode::Pass);
                *faults.entry(FAULTS[1]).or_default() += 1;
            }
            _ => {
                link.set_mode(Mode::Refuse);
                link.cut();
                let cut = Instant::now();
                tokio::time::sleep(Duration::from_millis(500 + next() % 1500)).await;
                link.set_mode(Mode::Pass);
                ledger(&ledger_).link_outages.push((cut, Instant::now()));
                *faults.entry(FAULTS[2]).or_default() += 1;
            }
        }
    }
    // Stop sending and let everything settle: until nothing has moved for
    // a while (the foreign reconnect backoff can reach 8 s).
    sending_tx.send_replace(false);
    let mut last = (0, 0);
    let mut quiet = 0;
    while quiet < 15 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = {
            let l = ledger(&ledger_);
            (l.delivered.len(), l.errored.len())
        };
        quiet = if now == last { quiet + 1 } else { 0 };
        last = now;
    }
    gateway.stop().await?;
    for t in tasks {
        t.abort();
    }
    if server_log.is_some() {
        let kept = std::env::temp_dir().join("pizzja-soak-prosody.log");
        std::fs::copy(prosody.dir.path().join("prosody.log"), &kept)?;
        println!("  Prosody's log: {}", kept.display());
    }

    let l = ledger(&ledger_);
    // Controllers are alice*, contacts bob*.
    // What the local server wrote into the component link after a cut,
    // until it read the end: its ids are lost to XEP-0114.
    let written_into_cut_link = String::from_utf8_lossy(&link.written_after_cuts()).into_owned();
    let closed_after_cuts = link.closed_after_cuts();
    // What the proxy passed on from the local server, a connection each.
    let server_wrote: Vec<String> = link
        .server_transcripts()
        .iter()
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect();
    let written_by_server = |id: &str| {
        server_wrote
            .iter()
            .any(|t| t.contains(&format!("id='{id}'")))
    };
    // What the gateway wrote to the local server, a connection each.
    let transcripts: Vec<String> = link
        .client_transcripts()
        .iter()
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect();
    let (lost_at_cuts, lost): (Vec<&String>, Vec<&String>) = l
        .sent
        .iter()
        .filter(|(id, _)| !l.delivered.contains_key(*id) && !l.errored.contains(*id))
        .map(|(id, at)| {
            let at_cut = l.just_before_a_link_cut(*at)
                || written_into_cut_link.contains(&format!("id='{id}'"))
                || l.routed_into_a_cut_link(id)
                || (l.while_the_server_held_a_cut_link(*at, &closed_after_cuts)
                    && !written_by_server(id));
            (id, id.starts_with("alice") && at_cut)
        })
        .fold((vec![], vec![]), |(mut cut, mut other), (id, at_cut)| {
            if at_cut {
                cut.push(id)
            } else {
                other.push(id)
            }
            (cut, other)
        });
    let (duplicated_at_cuts, duplicated): (Vec<_>, Vec<_>) = l
        .delivered
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .partition(|(id, at)| {
            let written: Vec<usize> = transcripts
                .iter()
                .map(|t| {
                    t.matches(&format!("id='{id}'")).count()
                        + t.matches(&format!("id=\"{id}\"")).count()
                })
                .filter(|n| *n > 0)
                .collect();
            id.starts_with("bob") && written.iter().all(|n| *n == 1) && written.len() >= at.len()
        });
    for id in lost.iter().take(20) {
        println!("  lost {id}, sent at {}", l.when(l.sent[*id]));
    }
    for (id, at) in duplicated.iter().take(20) {
        println!("  {id} sent at {}", l.when(l.sent[*id]));
        for t in at.iter() {
            println!("    delivered at {}", l.when(*t));
        }
    }
    let (duplicated_at_cuts, duplicated) = (duplicated_at_cuts.len(), duplicated.len());
    println!("soak: {minutes} min, {ACCOUNTS} accounts, both ways");
    for (fault, n) in &faults {
        println!("  fault: {fault}: {n}");
    }
    println!("  sent: {}", l.sent.len());
    println!("  delivered: {}", l.delivered.len());
    println!("  errored: {}", l.errored.len());
    println!("  lost: {}", lost.len());
    println!("  duplicated: {duplicated}");
    let into_cut_link = lost_at_cuts
        .iter()
        .filter(|id| written_into_cut_link.contains(&format!("id='{id}'")))
        .count();
    let before_the_server_closed = lost_at_cuts
        .iter()
        .filter(|id| l.while_the_server_held_a_cut_link(l.sent[**id], &closed_after_cuts))
        .count();
    println!(
        "  lost at component link cuts (XEP-0114 limit): {} ({into_cut_link} written by the local server into the cut link, {before_the_server_closed} sent before it closed the cut link)",
        lost_at_cuts.len()
    );
    println!("  written again after component link cuts, so duplicated: {duplicated_at_cuts}");
    println!(
        "  peak RSS (gateway, Prosody's clients and the harness): {} KiB",
        peak_rss_kib()
    );
    if !lost.is_empty() || duplicated > 0 {
        let some: Vec<&&String> = lost.iter().take(20).collect();
        bail!(
            "lost {} (first: {some:?}), duplicated {duplicated}",
            lost.len()
        );
    }
    Ok(())
}

/// Now in UTC, `HH:MM:SS.mmm`, to find a moment in the gateway's and the
/// server's logs.
fn utc_time_of_day() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        since.subsec_millis()
    )
}

/// `alice0-17` as (`alice0`, 17).
fn split_id(id: &str) -> (&str, u64) {
    id.rsplit_once('-')
        .map(|(c, n)| (c, n.parse().unwrap_or(0)))
        .unwrap_or((id, 0))
}
