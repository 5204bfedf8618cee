//! `pizzja-bench`: the gateway at scale, next to a direct connection, on
//! real Prosody servers (run it with `cargo xtask bench`).
//!
//! Two throwaway Prosodys on loopback (Nagle off): the local server L, with
//! the gateway's component, and the foreign server F. The gateway is the
//! real `pizzja` binary in its own process, so `/proc` gives its CPU and
//! memory alone. Load comes from real XMPP clients in this process, all
//! stamped by one clock:
//!
//! - flow 0: bob@F → me@F/bench, through the gateway to lat@L/bench/c;
//! - flow 1: bob@F → me@F/direct, a client logged in to F directly;
//! - flow 2: lat@L/bench/c → bob, through the gateway (out as me@F/bench);
//! - flow 3: me@F/direct → bob, directly.
//!
//! Flows 0 and 1 (and 2 and 3) run interleaved in the same run, so each
//! gateway figure has its direct baseline measured under the same load.
//! Nothing here asserts a time: it measures and reports.

mod load;
mod procfs;

use anyhow::{Context, Result, bail};
use clap::Parser;
use load::{Clock, Peer, Samples, Seen};
use pizzja_host::config::Secret;
use pizzja_host::storage::{Registration, Storage};
use pizzja_tests::{
    BulkUser, Client, FOREIGN, GW, LOCAL, Options, PASSWORD, Prosody, command_note,
    execute_command, gw_jid, stats_counter,
};
use procfs::GatewayProcess;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_xmpp::jid::Jid;

#[derive(Parser)]
#[command(about = "Pizzja's benchmark suite (see BENCHMARKS.md)")]
struct Args {
    /// The `pizzja` binary to measure.
    #[arg(long)]
    gateway: PathBuf,
    /// Tiny sizes: checks that the suite works, measures nothing useful.
    #[arg(long)]
    smoke: bool,
    /// Write the report into this file, between the suite's markers.
    #[arg(long)]
    report: Option<PathBuf>,
    /// A report of the policy micro-benchmark to include as it is.
    #[arg(long)]
    policy_report: Option<PathBuf>,
    /// Only these phases (for profiling one thing): `traffic` (latency,
    /// CPU, saturation) or `memory` (idle sessions, login storm).
    #[arg(long)]
    only: Option<String>,
    /// At most this many idle sessions (default 10,000; smoke: 20).
    #[arg(long)]
    sessions: Option<usize>,
    /// Runs of each latency and CPU measurement (default 5; smoke: 1).
    #[arg(long)]
    runs: Option<usize>,
    /// The gateway's `runtime.threads` (default: the gateway's default).
    #[arg(long)]
    threads: Option<usize>,
    /// A policy component to run instead of the built-in default one, to
    /// compare builds of a policy without rebuilding the gateway.
    #[arg(long)]
    policy: Option<PathBuf>,
}

/// How much of everything.
struct Sizes {
    runs: usize,
    startups: usize,
    latency_rate: u64,
    latency_time: Duration,
    cpu_time: Duration,
    saturation_rates: Vec<u64>,
    saturation_time: Duration,
    sessions: Vec<usize>,
}

impl Sizes {
    fn new(smoke: bool) -> Sizes {
        if smoke {
            Sizes {
                runs: 1,
                startups: 2,
                latency_rate: 200,
                latency_time: Duration::from_millis(300),
                cpu_time: Duration::from_millis(300),
                saturation_rates: vec![200, 400],
                saturation_time: Duration::from_millis(300),
                sessions: vec![5, 20],
            }
        } else {
            Sizes {
                runs: 5,
                startups: 7,
                latency_rate: 1000,
                latency_time: Duration::from_secs(3),
                cpu_time: Duration::from_secs(5),
                saturation_rates: vec![2000, 4000, 6000, 8000, 12000, 16000, 24000, 32000],
                saturation_time: Duration::from_secs(3),
                sessions: vec![1000, 10000],
            }
        }
    }
}

const ME: &str = "me@foreign.test";
/// Flows 0-3 (see the crate documentation), plus 4: peer@L → lat@L/bench/c
/// and 5: lat → peer@L, one hop through L alone, the hop the gateway path
/// has on top of the direct one.
const FLOWS: usize = 6;
const BOB: &str = "bob@foreign.test/load";
/// Logins to L in flight while bringing controllers up.
const CONNECT_CONCURRENCY: usize = 64;

fn jid(s: &str) -> Jid {
    s.parse().expect("benchmark JIDs are valid")
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    raise_fd_limit(&args)?;
    let mut sizes = Sizes::new(args.smoke);
    if let Some(runs) = args.runs {
        sizes.runs = runs.max(1);
    }
    if let Some(most) = args.sessions {
        sizes.sessions.retain(|&n| n < most);
        sizes.sessions.push(most);
    }
    let mut report = Report {
        saturation_time: sizes.saturation_time,
        ..Report::default()
    };
    let started = Instant::now();
    bench(&args, &sizes, &mut report).await?;
    let text = report.render(&args, started.elapsed())?;
    println!("{text}");
    if let Some(path) = &args.report {
        write_report(path, &text)?;
        eprintln!("pizzja-bench: report written to {}", path.display());
    }
    Ok(())
}

/// Everything measured, for the report.
#[derive(Default)]
struct Report {
    startup_cold: Option<Duration>,
    startup_warm: Vec<Duration>,
    registrations: usize,
    latency: Vec<LatencyRun>,
    cpu: Vec<CpuRun>,
    saturation: Vec<CpuRun>,
    memory: Vec<(usize, u64, Duration)>,
    rss_idle: u64,
    /// Sessions, time until all were up, RSS then, and the CPU time of the
    /// gateway, L and F meanwhile.
    storm: Option<(usize, Duration, u64, [Duration; 3])>,
    saturation_time: Duration,
}

/// Medians and p99 of one latency run, in nanoseconds, per flow.
struct LatencyRun {
    median: [u64; FLOWS],
    p99: [u64; FLOWS],
    count: [usize; FLOWS],
}

/// One traffic phase at a fixed rate on one path.
#[derive(Clone)]
struct CpuRun {
    gateway_path: bool,
    rate: u64,
    sent: u64,
    delivered: u64,
    wall: Duration,
    p99: u64,
    gateway: Duration,
    local: Duration,
    foreign: Duration,
    load: Duration,
    policy: Duration,
    decisions: u64,
}

impl CpuRun {
    fn sustained(&self) -> bool {
        // No loss, and no backlog building up behind the sender.
        self.delivered == self.sent && self.p99 < 100_000_000
    }

    /// The policy's CPU as % of the gateway's.
    fn policy_share(&self) -> f64 {
        100.0 * self.policy.as_secs_f64() / self.gateway.as_secs_f64().max(1e-9)
    }
}

/// The servers, the gateway and the latency clients.
struct Bench {
    local: Prosody,
    foreign: Prosody,
    dir: tempfile::TempDir,
    config: PathBuf,
    binary: PathBuf,
    clock: Clock,
    seen: mpsc::UnboundedReceiver<Seen>,
    seen_tx: mpsc::UnboundedSender<Seen>,
}

impl Bench {
    fn gateway(&self) -> Result<GatewayProcess> {
        GatewayProcess::start(&self.binary, &self.config)
    }

    /// Starts the gateway off the runtime's threads (it blocks until ready).
    async fn start_gateway(&self) -> Result<GatewayProcess> {
        let (binary, config) = (self.binary.clone(), self.config.clone());
        tokio::task::spawn_blocking(move || GatewayProcess::start(&binary, &config)).await?
    }
}

async fn stop(gateway: GatewayProcess) -> Result<()> {
    tokio::task::spawn_blocking(move || gateway.stop()).await?
}

async fn bench(args: &Args, sizes: &Sizes, report: &mut Report) -> Result<()> {
    let n = *sizes.sessions.last().context("no session counts")?;
    eprintln!("pizzja-bench: writing {n} accounts on each server");
    let with_gateway = |user: String| BulkUser {
        user,
        domain: LOCAL.into(),
        roster: vec![GW.into()],
    };
    let mut local_users = vec![
        BulkUser {
            user: "admin".into(),
            domain: LOCAL.into(),
            roster: vec![],
        },
        with_gateway("lat".into()),
        BulkUser {
            user: "peer".into(),
            domain: LOCAL.into(),
            roster: vec![],
        },
    ];
    local_users.extend((0..n).map(|i| with_gateway(format!("u{i}"))));
    let mut foreign_users: Vec<BulkUser> = ["me", "bob"]
        .into_iter()
        .map(String::from)
        .chain((0..n).map(|i| format!("f{i}")))
        .map(|user| BulkUser {
            user,
            domain: FOREIGN.into(),
            roster: vec![],
        })
        .collect();
    let options = |bulk_users| Options {
        log_level: "warn",
        bulk_users,
        ..Options::default()
    };
    let local = Prosody::start_options(&[], &options(local_users)).await?;
    let foreign = Prosody::start_options(&[], &options(std::mem::take(&mut foreign_users))).await?;

    let dir = tempfile::tempdir()?;
    let db = dir.path().join("pizzja.sqlite3");
    let cache = dir.path().join("cache");
    let mut extra = format!("[policy]\ncache_dir = \"{}\"\n", cache.display());
    if let Some(module) = &args.policy {
        let module = std::path::absolute(module)?;
        let module = toml::Value::String(module.display().to_string());
        extra.push_str(&format!("module = {module}\n"));
    }
    if let Some(threads) = args.threads {
        extra.push_str(&format!("[runtime]\nthreads = {threads}\n"));
    }
    let toml = local
        .gateway_toml_to(&foreign, &db, &extra)
        .replace("login_timeout_secs = 10", "login_timeout_secs = 60");
    let config = dir.path().join("pizzja.toml");
    std::fs::write(&config, toml)?;
    let reg = |l: String, f: String| -> Result<Registration> {
        Ok(Registration {
            local: l.parse()?,
            foreign: f.parse()?,
            password: Secret(PASSWORD.into()),
        })
    };
    let mut regs = vec![reg(format!("lat@{LOCAL}"), ME.into())?];
    for i in 0..n {
        regs.push(reg(format!("u{i}@{LOCAL}"), format!("f{i}@{FOREIGN}"))?);
    }
    Storage::open(&db)?.put_all(&regs)?;
    report.registrations = regs.len();

    let (seen_tx, seen) = mpsc::unbounded_channel();
    let mut b = Bench {
        local,
        foreign,
        dir,
        config,
        binary: args.gateway.clone(),
        clock: Clock::new(),
        seen,
        seen_tx,
    };

    // 5. Start-up: the first start compiles the policy into the cache.
    eprintln!("pizzja-bench: start-up");
    let cold = b.gateway()?;
    report.startup_cold = Some(cold.ready_after);
    stop(cold).await?;
    let mut gateway = None;
    for i in 0..sizes.startups {
        let g = b.start_gateway().await?;
        report.startup_warm.push(g.ready_after);
        if i + 1 == sizes.startups {
            gateway = Some(g);
        } else {
            stop(g).await?;
        }
    }
    let gateway = gateway.context("no start-up run")?;

    let result = match args.only.as_deref() {
        Some("memory") => Ok(()),
        _ => traffic(&mut b, &gateway, sizes, report).await,
    };
    if let Err(e) = &result {
        eprintln!(
            "pizzja-bench: the gateway's last log lines:\n{}",
            gateway.log_tail()
        );
        return Err(anyhow::anyhow!("{e:#}"));
    }
    stop(gateway).await?;

    if args.only.as_deref() != Some("traffic") {
        memory(&mut b, sizes, report).await?;
    }
    drop(b.dir);
    Ok(())
}

/// The latency clients: bob and me/direct on F, lat/bench/c through the
/// gateway, and an admin on L for the gateway's counters.
struct Clients {
    bob: Peer,
    direct: Peer,
    lat: Peer,
    peer: Peer,
    admin: Client,
}

async fn connect_latency_clients(b: &mut Bench) -> Result<Clients> {
    let session = jid(&gw_jid(&format!("{ME}/bench")));
    let drive = |c: Client, index: usize, session: Option<Jid>, b: &Bench| {
        Peer::drive(c.into_stream(), index, session, b.clock, b.seen_tx.clone())
    };
    let bob = Client::connect(&b.foreign, "bob", FOREIGN, "load").await?;
    let direct = Client::connect(&b.foreign, "me", FOREIGN, "direct").await?;
    let lat = Client::connect(&b.local, "lat", LOCAL, "bench/c").await?;
    let peer = Client::connect(&b.local, "peer", LOCAL, "p").await?;
    let admin = Client::connect(&b.local, "admin", LOCAL, "console").await?;
    let clients = Clients {
        bob: drive(bob, usize::MAX, None, b),
        direct: drive(direct, usize::MAX, None, b),
        lat: drive(lat, 0, Some(session), b),
        peer: drive(peer, usize::MAX, None, b),
        admin,
    };
    clients.peer.available();
    clients.bob.available();
    clients.direct.available();
    clients.lat.available();
    load::sessions_up(&mut b.seen, 0..1, Duration::from_secs(30), &b.clock)
        .await
        .context("lat's foreign session")?;
    Ok(clients)
}

async fn traffic(
    b: &mut Bench,
    gateway: &GatewayProcess,
    sizes: &Sizes,
    report: &mut Report,
) -> Result<()> {
    let mut c = connect_latency_clients(b).await?;
    let me_bench = jid(&format!("{ME}/bench"));
    let me_direct = jid(&format!("{ME}/direct"));
    let bob = jid(BOB);
    let bob_gw = jid(&gw_jid(BOB));
    let lat = jid(&format!("lat@{LOCAL}/bench/c"));
    let peer = jid(&format!("peer@{LOCAL}/p"));
    let clock = b.clock;

    // Warm-up: connections, allocator and caches, on every path.
    let warm = load::paced(sizes.latency_rate, Duration::from_millis(500), |_| {
        c.bob.message(&me_bench, 0, &clock);
        c.bob.message(&me_direct, 1, &clock);
        c.lat.message(&bob_gw, 2, &clock);
        c.direct.message(&bob, 3, &clock);
        c.peer.message(&lat, 4, &clock);
        c.lat.message(&peer, 5, &clock);
    })
    .await;
    collect_all(&mut b.seen, &[warm; FLOWS], "warm-up").await?;

    // 1. Added latency: each direction, both paths interleaved.
    eprintln!("pizzja-bench: latency");
    for run in 0..sizes.runs {
        // The gateway and the direct path, interleaved, each at the rate.
        let sent_in = load::paced(sizes.latency_rate, sizes.latency_time, |i| {
            for gateway in in_turn(i) {
                if gateway {
                    c.bob.message(&me_bench, 0, &clock);
                } else {
                    c.bob.message(&me_direct, 1, &clock);
                }
            }
        })
        .await;
        let expected = [sent_in, sent_in, 0, 0, 0, 0];
        let inbound = collect_all(&mut b.seen, &expected, "latency, inbound").await?;
        let sent_out = load::paced(sizes.latency_rate, sizes.latency_time, |i| {
            for gateway in in_turn(i) {
                if gateway {
                    c.lat.message(&bob_gw, 2, &clock);
                } else {
                    c.direct.message(&bob, 3, &clock);
                }
            }
        })
        .await;
        let expected = [0, 0, sent_out, sent_out, 0, 0];
        let outbound = collect_all(&mut b.seen, &expected, "latency, outbound").await?;
        // L alone, both ways at the rate: the hop the gateway path adds.
        let sent_l = load::paced(sizes.latency_rate, sizes.latency_time, |i| {
            if i % 2 == 0 {
                c.peer.message(&lat, 4, &clock);
            } else {
                c.lat.message(&peer, 5, &clock);
            }
        })
        .await;
        let expected = [0, 0, 0, 0, sent_l.div_ceil(2), sent_l / 2];
        let local = collect_all(&mut b.seen, &expected, "latency, L alone").await?;
        let mut flows = [
            inbound.flows[0].clone(),
            inbound.flows[1].clone(),
            outbound.flows[2].clone(),
            outbound.flows[3].clone(),
            local.flows[4].clone(),
            local.flows[5].clone(),
        ];
        let median = flows.each_mut().map(|f| percentile(f, 50.0));
        let p99 = flows.each_mut().map(|f| percentile(f, 99.0));
        report.latency.push(LatencyRun {
            median,
            p99,
            count: flows.each_ref().map(Vec::len),
        });
        eprintln!("  run {run}: median ns {median:?}, p99 ns {p99:?}");
    }

    // 2 and 4. CPU per stanza at a steady rate: direct, then the gateway.
    eprintln!(
        "pizzja-bench: CPU per stanza at {} stanzas/s",
        sizes.latency_rate
    );
    let flows = Flows {
        me_bench: &me_bench,
        me_direct: &me_direct,
        bob: &bob,
        bob_gw: &bob_gw,
    };
    for _ in 0..sizes.runs {
        for gateway_path in [false, true] {
            let run = phase(
                b,
                gateway,
                &mut c,
                &flows,
                gateway_path,
                sizes.latency_rate,
                sizes.cpu_time,
            )
            .await?;
            // Lost stanzas are a fault; a slow machine is not (the suite
            // asserts nothing about time).
            if run.delivered != run.sent {
                bail!(
                    "only {} of {} stanzas arrived at the steady rate on the {} path",
                    run.delivered,
                    run.sent,
                    if gateway_path { "gateway" } else { "direct" }
                );
            }
            report.cpu.push(run);
        }
    }

    // 2. Saturation: double up until a path loses stanzas or falls behind.
    eprintln!("pizzja-bench: saturation");
    for gateway_path in [false, true] {
        for &rate in &sizes.saturation_rates {
            let run = phase(
                b,
                gateway,
                &mut c,
                &flows,
                gateway_path,
                rate,
                sizes.saturation_time,
            )
            .await?;
            let sustained = run.sustained();
            eprintln!(
                "  {} {rate}/s: {}/{} delivered, p99 {:.1} ms, gateway {:.0}% F {:.0}% L {:.0}% load {:.0}%",
                if gateway_path { "gateway" } else { "direct" },
                run.delivered,
                run.sent,
                run.p99 as f64 / 1e6,
                util(run.gateway, run.wall),
                util(run.foreign, run.wall),
                util(run.local, run.wall),
                util(run.load, run.wall),
            );
            report.saturation.push(run);
            if !sustained {
                // Let the backlog drain before the next path starts.
                let _ =
                    Samples::collect(&mut b.seen, &[u64::MAX; FLOWS], Duration::from_secs(3)).await;
                break;
            }
        }
    }

    c.bob.close().await;
    c.direct.close().await;
    c.lat.close().await;
    c.admin.disconnect().await;
    Ok(())
}

struct Flows<'a> {
    me_bench: &'a Jid,
    me_direct: &'a Jid,
    bob: &'a Jid,
    bob_gw: &'a Jid,
}

/// One path at one rate, half inbound and half outbound, with every
/// process's CPU time read before and after.
async fn phase(
    b: &mut Bench,
    gateway: &GatewayProcess,
    c: &mut Clients,
    f: &Flows<'_>,
    gateway_path: bool,
    rate: u64,
    time: Duration,
) -> Result<CpuRun> {
    let pids = [
        gateway.pid(),
        b.local.pid(),
        b.foreign.pid(),
        std::process::id(),
    ];
    let stats_before = counters(&mut c.admin, "s0").await?;
    let before = pids.map(procfs::cpu);
    let start = Instant::now();
    let clock = b.clock;
    let sent = load::paced(rate, time, |i| match (gateway_path, i % 2 == 0) {
        (true, true) => c.bob.message(f.me_bench, 0, &clock),
        (true, false) => c.lat.message(f.bob_gw, 2, &clock),
        (false, true) => c.bob.message(f.me_direct, 1, &clock),
        (false, false) => c.direct.message(f.bob, 3, &clock),
    })
    .await;
    let (a, z) = (sent.div_ceil(2), sent / 2);
    let expected = if gateway_path {
        [a, 0, z, 0, 0, 0]
    } else {
        [0, a, 0, z, 0, 0]
    };
    // Generous: a stall of the machine (seen once: the L hop alone at 600 ms
    // p99) delays stanzas without losing them.
    let mut got = Samples::collect(&mut b.seen, &expected, Duration::from_secs(30)).await;
    let wall = start.elapsed();
    let after = pids.map(procfs::cpu);
    let stats_after = counters(&mut c.admin, "s1").await?;
    let delta = |i: usize| -> Result<Duration> {
        let (Ok(x), Ok(y)) = (&before[i], &after[i]) else {
            bail!("could not read the CPU time of process {}", pids[i]);
        };
        Ok(y.saturating_sub(*x))
    };
    let mut all: Vec<u64> = got.flows.iter_mut().flat_map(std::mem::take).collect();
    Ok(CpuRun {
        gateway_path,
        rate,
        sent,
        delivered: all.len() as u64,
        wall,
        p99: percentile(&mut all, 99.0),
        gateway: delta(0)?,
        local: delta(1)?,
        foreign: delta(2)?,
        load: delta(3)?,
        policy: Duration::from_micros(stats_after.1.saturating_sub(stats_before.1)),
        decisions: stats_after.0.saturating_sub(stats_before.0),
    })
}

/// (policy decisions, policy CPU µs) from the admin `stats` command.
async fn counters(admin: &mut Client, id: &str) -> Result<(u64, u64)> {
    let answer = execute_command(admin, id, "stats").await;
    let (_, note) = command_note(&answer).context("stats without a note")?;
    let value =
        |name: &str| stats_counter(&note, name).with_context(|| format!("no {name} in {note}"));
    // Each `stats` is a message to forget: this phase's reading is between.
    admin.clear();
    Ok((value("policy-decisions")?, value("policy-cpu-us")?))
}

/// Which path sends first at tick `i` (the gateway's is `true`): it
/// alternates, so that neither always waits behind the other.
fn in_turn(i: u64) -> [bool; 2] {
    if i.is_multiple_of(2) {
        [true, false]
    } else {
        [false, true]
    }
}

/// Waits for the messages `expected` counts per flow; a missing one is a
/// fault (lost), not a measurement.
async fn collect_all(
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    expected: &[u64],
    what: &str,
) -> Result<Samples> {
    let got = Samples::collect(seen, expected, Duration::from_secs(10)).await;
    for (flow, (f, &n)) in got.flows.iter().zip(expected).enumerate() {
        if (f.len() as u64) < n {
            bail!("{what}: flow {flow} delivered {} of {n}", f.len());
        }
    }
    Ok(got)
}

/// Memory per idle foreign session, then a login storm after a restart.
async fn memory(b: &mut Bench, sizes: &Sizes, report: &mut Report) -> Result<()> {
    eprintln!("pizzja-bench: memory per session");
    let gateway = b.start_gateway().await?;
    settle(b).await?;
    report.rss_idle = procfs::rss(gateway.pid())?;
    let mut peers: Vec<Peer> = Vec::new();
    let mut from = 0;
    for &target in &sizes.sessions {
        let t0 = Instant::now();
        let connected = connect_controllers(b, from..target).await?;
        peers.extend(connected);
        load::sessions_up(
            &mut b.seen,
            from..target,
            Duration::from_secs(600),
            &b.clock,
        )
        .await?;
        let rss = procfs::rss(gateway.pid())?;
        eprintln!("  {target} sessions: RSS {} MiB", rss >> 20);
        report.memory.push((target, rss, t0.elapsed()));
        from = target;
    }

    eprintln!("pizzja-bench: login storm after a restart");
    stop(gateway).await?;
    load::drain(&mut b.seen);
    let servers = [procfs::cpu(b.local.pid())?, procfs::cpu(b.foreign.pid())?];
    let t0 = b.clock.now();
    let gateway = b.start_gateway().await?;
    let up = load::sessions_up(&mut b.seen, 0..from, Duration::from_secs(600), &b.clock).await?;
    let last = up.iter().copied().max().unwrap_or(t0);
    let took = Duration::from_nanos(last.saturating_sub(t0));
    let rss = procfs::rss(gateway.pid())?;
    let cpu = [
        procfs::cpu(gateway.pid())?,
        procfs::cpu(b.local.pid())?.saturating_sub(servers[0]),
        procfs::cpu(b.foreign.pid())?.saturating_sub(servers[1]),
    ];
    report.storm = Some((from, took, rss, cpu));
    eprintln!(
        "  {from} sessions up {:.1} s after the restart",
        (last - t0) as f64 / 1e9
    );
    futures::future::join_all(peers.into_iter().map(Peer::close)).await;
    stop(gateway).await
}

/// Logs the admin in and out once: the gateway has answered its probes
/// (stanzas are handled in order) when the command comes back.
async fn settle(b: &Bench) -> Result<()> {
    let mut admin = Client::connect(&b.local, "admin", LOCAL, "console").await?;
    counters(&mut admin, "settle").await?;
    admin.disconnect().await;
    Ok(())
}

/// Logs controllers `uI@L/s/c` in (bounded concurrency) and makes them
/// available; each reports when its session `fI@F/s` is up.
async fn connect_controllers(b: &Bench, range: std::ops::Range<usize>) -> Result<Vec<Peer>> {
    use futures::StreamExt;
    let local = &b.local;
    let results: Vec<Result<(usize, Client)>> = futures::stream::iter(range)
        .map(|i| async move {
            let c = Client::connect(local, &format!("u{i}"), LOCAL, "s/c").await?;
            Ok((i, c))
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    let mut peers = Vec::new();
    for r in results {
        let (i, client) = r?;
        let session = jid(&gw_jid(&format!("f{i}@{FOREIGN}/s")));
        let peer = Peer::drive(
            client.into_stream(),
            i,
            Some(session),
            b.clock,
            b.seen_tx.clone(),
        );
        peer.available();
        peers.push(peer);
    }
    Ok(peers)
}

/// Every idle session is a socket in the gateway and one in F, and every
/// controller one here and one in L: lift the soft limit to the hard one
/// (children inherit it) and say plainly if that is not enough.
fn raise_fd_limit(args: &Args) -> Result<()> {
    let most = args
        .sessions
        .unwrap_or(*Sizes::new(args.smoke).sessions.last().unwrap_or(&0)) as u64;
    let need = most + 512;
    let got = rlimit::increase_nofile_limit(need).context("reading the file-descriptor limit")?;
    if got < need {
        bail!(
            "{most} sessions need about {need} open files per process; the hard limit is {got} \
             (raise it, e.g. `ulimit -Hn {need}` as root, or in /etc/security/limits.conf)"
        );
    }
    Ok(())
}

/// Nearest-rank percentile; sorts `v`. 0 for no samples.
fn percentile(v: &mut [u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn median_f(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn range_f(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

fn util(cpu: Duration, wall: Duration) -> f64 {
    100.0 * cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9)
}

fn per_stanza_us(cpu: Duration, stanzas: u64) -> f64 {
    cpu.as_secs_f64() * 1e6 / stanzas.max(1) as f64
}

const BEGIN: &str = "<!-- pizzja-bench: begin -->";
const END: &str = "<!-- pizzja-bench: end -->";

fn write_report(path: &Path, text: &str) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let section = format!("{BEGIN}\n{text}\n{END}");
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(a), Some(z)) if a < z => format!("{}{section}{}", &old[..a], &old[z + END.len()..]),
        _ => format!("{}\n{section}\n", old.trim_end()),
    };
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib >> 20);
    format!(
        "{cores} × {model}, {mem} GiB, Linux {}; Prosody {}; {}",
        command_output("uname", &["-r"]),
        command_output("dpkg-query", &["-W", "-f=${Version}", "prosody"]),
        command_output("rustc", &["-V"]),
    )
}

impl Report {
    fn render(&self, args: &Args, took: Duration) -> Result<String> {
        let mut o = String::new();
        let commit = command_output("git", &["rev-parse", "--short", "HEAD"]);
        let dirty = if command_output("git", &["status", "--porcelain", "--untracked-files=no"])
            == "unknown"
        {
            ""
        } else {
            " (with uncommitted changes)"
        };
        writeln!(
            o,
            "## At scale: the gateway next to a direct connection (issue 4)\n"
        )?;
        writeln!(
            o,
            "`cargo xtask bench`{} — generated by `benches/` (`pizzja-bench`); every figure below comes from one run of it.\n",
            if args.smoke {
                " --smoke (tiny sizes: these numbers mean nothing)"
            } else {
                ""
            }
        )?;
        writeln!(o, "- Machine: {}", machine())?;
        writeln!(
            o,
            "- Date: {}. Commit: `{commit}`{dirty}. The suite took {:.0} s.",
            command_output("date", &["-u", "+%F"]),
            took.as_secs_f64()
        )?;
        let policy = match &args.policy {
            Some(p) => format!("the policy `{}`", p.display()),
            None => "the built-in default policy".into(),
        };
        writeln!(
            o,
            "- Set-up: two Prosodys on loopback (L with the component, F the foreign server; Nagle off, `internal_hashed` accounts as in production, logging at `warn`); the `pizzja` binary ({}) in its own process with {} (logging at `info`, `runtime.threads` = {}); the load clients (tokio-xmpp) in one more process. {} registrations.\n",
            args.gateway.display(),
            policy,
            args.threads.map_or("default".into(), |t| t.to_string()),
            self.registrations
        )?;

        // 1. Latency.
        if !self.latency.is_empty() {
            let runs = self.latency.len();
            let n = self.latency[0].count[0];
            writeln!(o, "### 1. One-way latency at the steady rate\n")?;
            writeln!(
                o,
                "{runs} runs; in each, {n} messages per flow, each path at the same rate, the two paths interleaved. Sender and receiver share one clock. Figures are the median over runs of each run's median or p99, with the range over runs.\n"
            )?;
            writeln!(
                o,
                "| direction | statistic | through the gateway | direct | added by the gateway | ratio | one hop through L alone | gateway − direct − L hop |"
            )?;
            writeln!(o, "|---|---|---|---|---|---|---|---|")?;
            for (name, g, d, l) in [("foreign → local", 0, 1, 4), ("local → foreign", 2, 3, 5)]
            {
                for (stat, pick) in [("median", 0), ("p99", 1)] {
                    let val = |r: &LatencyRun, f: usize| {
                        (if pick == 0 { r.median[f] } else { r.p99[f] }) as f64 / 1e3
                    };
                    let over = |f: &dyn Fn(&LatencyRun) -> f64| -> Vec<f64> {
                        self.latency.iter().map(f).collect()
                    };
                    let added = over(&|r| val(r, g) - val(r, d));
                    let (alo, ahi) = range_f(&added);
                    writeln!(
                        o,
                        "| {name} | {stat} | {:.0} µs | {:.0} µs | **{:.0} µs** ({alo:.0}…{ahi:.0}) | {:.2}× | {:.0} µs | {:.0} µs |",
                        median_f(over(&|r| val(r, g))),
                        median_f(over(&|r| val(r, d))),
                        median_f(added),
                        median_f(over(&|r| val(r, g) / val(r, d).max(1e-9))),
                        median_f(over(&|r| val(r, l))),
                        median_f(over(&|r| val(r, g) - val(r, d) - val(r, l))),
                    )?;
                }
            }
            writeln!(
                o,
                "\nThe gateway path crosses two servers where the direct one crosses one: the L-hop column is that extra server alone, measured in the same runs (peer@L ↔ lat@L/bench/c at the same rate, after each direction's pair). The last column is what remains for the gateway itself (a lower bound: one client's send and receive overhead is subtracted with it).\n"
            )?;
        }

        // 2 and 4. CPU.
        if !self.cpu.is_empty() {
            let direct: Vec<&CpuRun> = self.cpu.iter().filter(|r| !r.gateway_path).collect();
            let gw: Vec<&CpuRun> = self.cpu.iter().filter(|r| r.gateway_path).collect();
            let m = |runs: &[&CpuRun], f: &dyn Fn(&CpuRun) -> f64| {
                median_f(runs.iter().map(|r| f(r)).collect())
            };
            let rate = self.cpu[0].rate;
            writeln!(o, "### 2. CPU per stanza at {rate} stanzas/s\n")?;
            writeln!(
                o,
                "User + system CPU time from `/proc/PID/stat` over each phase (clock ticks of 10 ms; phases of several seconds), divided by the stanzas delivered; half the stanzas inbound, half outbound. Direct and gateway phases alternate, {} of each; medians.\n",
                direct.len()
            )?;
            writeln!(
                o,
                "| process | direct path, µs/stanza | gateway path, µs/stanza |"
            )?;
            writeln!(o, "|---|---|---|")?;
            let row = |o: &mut String, name: &str, f: &dyn Fn(&CpuRun) -> Duration| -> Result<()> {
                writeln!(
                    o,
                    "| {name} | {:.1} | {:.1} |",
                    m(&direct, &|r| per_stanza_us(f(r), r.delivered)),
                    m(&gw, &|r| per_stanza_us(f(r), r.delivered))
                )?;
                Ok(())
            };
            row(&mut o, "gateway (`pizzja`)", &|r| r.gateway)?;
            row(&mut o, "Prosody F (foreign server)", &|r| r.foreign)?;
            row(&mut o, "Prosody L (local server)", &|r| r.local)?;
            row(&mut o, "load clients", &|r| r.load)?;
            let gw_cost = m(&gw, &|r| per_stanza_us(r.gateway, r.delivered));
            let prosody_cost = m(&direct, &|r| per_stanza_us(r.foreign, r.delivered));
            writeln!(
                o,
                "\n**Gateway CPU per forwarded stanza: {gw_cost:.1} µs, against {prosody_cost:.1} µs of Prosody's per stanza it routes on the direct path: {:.2}× Prosody's.**\n",
                gw_cost / prosody_cost.max(1e-9)
            )?;
            let share = m(&gw, &CpuRun::policy_share);
            let per_decision = m(&gw, &|r| {
                r.policy.as_secs_f64() * 1e6 / r.decisions.max(1) as f64
            });
            let decisions = m(&gw, &|r| r.decisions as f64 / r.delivered.max(1) as f64);
            writeln!(o, "### 4. Policy cost\n")?;
            writeln!(
                o,
                "From the host's own timing (the thread CPU clock around one policy call in 8, or the wall clock read inside it when less, chosen pseudo-randomly and counted 8 times, read with the admin `stats` command): **{share:.1}% of the gateway's CPU** at {rate} stanzas/s; {decisions:.2} decisions per stanza, {per_decision:.1} µs each (instance checkout, copying event and facts in and actions out, the guest's code).\n"
            )?;
            if let Some(p) = &args.policy_report {
                let text = std::fs::read_to_string(p).unwrap_or_default();
                writeln!(
                    o,
                    "The decision next to a native build of the same decision (`cargo bench -p pizzja-bench --bench policy`, same run):\n\n```\n{}\n```\n",
                    text.trim()
                )?;
            }
        }

        // 2. Saturation.
        if !self.saturation.is_empty() {
            writeln!(o, "### 2b. Saturation\n")?;
            writeln!(
                o,
                "Each path alone at rising rates ({:.1} s each); sustained means every stanza arrived and the p99 stayed under 100 ms (no backlog). CPU as % of one core; the policy share as in section 4.\n",
                self.saturation_time.as_secs_f64()
            )?;
            writeln!(
                o,
                "| path | offered/s | delivered | p99 | gateway | Prosody F | Prosody L | load clients | gateway µs/stanza | policy share | sustained |"
            )?;
            writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|")?;
            for r in &self.saturation {
                writeln!(
                    o,
                    "| {} | {} | {}/{} | {:.1} ms | {:.0}% | {:.0}% | {:.0}% | {:.0}% | {:.1} | {} | {} |",
                    if r.gateway_path { "gateway" } else { "direct" },
                    r.rate,
                    r.delivered,
                    r.sent,
                    r.p99 as f64 / 1e6,
                    util(r.gateway, r.wall),
                    util(r.foreign, r.wall),
                    util(r.local, r.wall),
                    util(r.load, r.wall),
                    per_stanza_us(r.gateway, r.delivered),
                    if r.gateway_path {
                        format!("{:.1}%", r.policy_share())
                    } else {
                        "".into()
                    },
                    if r.sustained() { "yes" } else { "**no**" }
                )?;
            }
            for path in [false, true] {
                let best = self
                    .saturation
                    .iter()
                    .filter(|r| r.gateway_path == path && r.sustained())
                    .map(|r| r.rate)
                    .max();
                writeln!(
                    o,
                    "{}- Highest sustained rate, {}: {}",
                    if path { "" } else { "\n" },
                    if path {
                        "through the gateway"
                    } else {
                        "direct"
                    },
                    best.map_or("none of the rates tried".into(), |r| format!(
                        "{r} stanzas/s"
                    ))
                )?;
            }
            writeln!(o)?;
        }

        // 3. Memory.
        if !self.memory.is_empty() {
            writeln!(o, "### 3. Memory per idle foreign session\n")?;
            writeln!(
                o,
                "Gateway RSS (`VmRSS`) with N controllers online, each with its own account and foreign session (idle: initial presence only).\n"
            )?;
            writeln!(
                o,
                "| sessions | gateway RSS | per session over idle | time to bring them up (controller logins included) |"
            )?;
            writeln!(o, "|---|---|---|---|")?;
            writeln!(o, "| 0 | {:.1} MiB | | |", self.rss_idle as f64 / 1048576.0)?;
            for (n, rss, t) in &self.memory {
                writeln!(
                    o,
                    "| {n} | {:.1} MiB | **{:.1} KiB** | {:.1} s |",
                    *rss as f64 / 1048576.0,
                    (rss.saturating_sub(self.rss_idle)) as f64 / 1024.0 / *n as f64,
                    t.as_secs_f64()
                )?;
            }
            if let Some((n, t, rss, cpu)) = self.storm {
                writeln!(
                    o,
                    "\n**Login storm: {n} sessions up {:.1} s after the gateway was started again** (from spawning the process to the last session's presence reaching its controller; `max_concurrent_logins` = 32, controllers already online at L). RSS afterwards: {:.1} MiB, {:.1} KiB per session.\n",
                    t.as_secs_f64(),
                    rss as f64 / 1048576.0,
                    rss.saturating_sub(self.rss_idle) as f64 / 1024.0 / n as f64
                )?;
                writeln!(
                    o,
                    "CPU meanwhile, as % of one core: gateway {:.0}%, Prosody F {:.0}%, Prosody L {:.0}%; per session: gateway {:.2} ms, F {:.2} ms, L {:.2} ms.\n",
                    util(cpu[0], t),
                    util(cpu[2], t),
                    util(cpu[1], t),
                    cpu[0].as_secs_f64() * 1e3 / n as f64,
                    cpu[2].as_secs_f64() * 1e3 / n as f64,
                    cpu[1].as_secs_f64() * 1e3 / n as f64,
                )?;
            }
        }

        // 5. Start-up.
        if let Some(cold) = self.startup_cold {
            let warm: Vec<f64> = self
                .startup_warm
                .iter()
                .map(|d| d.as_secs_f64() * 1e3)
                .collect();
            let (lo, hi) = range_f(&warm);
            writeln!(o, "### 5. Start-up\n")?;
            writeln!(
                o,
                "From spawning `pizzja run` to its `pizzja ready` line (configuration, database, policy loaded, component link up, {} registered users probed): **{:.0} ms** with the compiled policy in the cache (median of {}, {lo:.0}…{hi:.0}); {:.0} ms the first time, compiling it.\n",
                self.registrations,
                median_f(warm),
                self.startup_warm.len(),
                cold.as_secs_f64() * 1e3
            )?;
        }
        Ok(o)
    }
}
