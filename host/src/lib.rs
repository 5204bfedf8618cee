//! Pizzja: one foreign XMPP connection, many local controllers.
//!
//! The host runs the XEP-0114 component link to the local server
//! ([`xmpp::component`]), whose stanzas the [`router`] hands to T's own
//! [`services`] or to one task per local account ([`account`]). An account
//! task asks a sandboxed WebAssembly policy ([`policy`]) what to do with
//! each event, and the address rules ([`account::rules`]) turn its answer
//! into stanzas for the local server or for the account's foreign sessions
//! ([`xmpp::foreign`]) under the host's security invariants. Registrations
//! and policy state live in [`storage`].
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let config = pizzja_host::config::Config::load("pizzja.toml".as_ref())?;
//! let prepared = pizzja_host::prepare(config)?;
//! let (_stop, shutdown) = tokio::sync::watch::channel(false);
//! pizzja_host::run(prepared, shutdown, None).await
//! # }
//! ```
#![warn(missing_docs)]

pub mod account;
pub mod config;
pub mod metrics;
pub mod policy;
pub mod router;
pub mod services;
pub mod storage;
pub mod xmpp;

use anyhow::{Context, Result};
use config::{Config, PolicySource};
use policy::{EngineOptions, Limits, PolicyEngine};
use router::Router;
use std::sync::Arc;
use storage::Storage;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::info;
use xmpp::component::{LinkConfig, LinkEvent};

/// For tests: where the workspace's policies were built.
#[doc(hidden)]
pub mod testing {
    /// The built `.wasm` of workspace policy crate `name` (underscores).
    pub fn policy_path(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("PIZZJA_POLICY_DIR")).join(format!("{name}.wasm"))
    }

    /// A chat message from `alice@l.test/Work/phone` to `bob@f.test`
    /// through the gateway `gw.l.test`: the hostile policies read its
    /// `body` as the word that makes them misbehave.
    pub fn message_with_body(body: &str) -> crate::policy::bindings::Event {
        use crate::policy::bindings::{Event, LocalStanza, Stanza, StanzaKind};
        Event::Local(LocalStanza {
            stanza: Stanza {
                kind: StanzaKind::Message,
                type_: "chat".into(),
                id: Some("m".into()),
                from: Some("alice@l.test/Work/phone".into()),
                to: Some(r"bob\40f.test@gw.l.test".into()),
                xml: format!("<message><body>{body}</body></message>"),
            },
            sender_resource: Some("Work/phone".into()),
            answers: None,
        })
    }

    /// The text of each `log` action in `actions`: what the hostile
    /// policies answer with.
    pub fn log_lines(actions: &[crate::policy::bindings::Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                crate::policy::bindings::Action::Log(l) => Some(l.message.clone()),
                _ => None,
            })
            .collect()
    }

    /// Asserts that `engine` decides an ordinary message again (after a
    /// trap, say): the default behaviour answers it.
    pub fn assert_recovers(engine: &crate::policy::PolicyEngine) {
        let actions = engine
            .decide(&message_with_body("hello"), &facts_of("alice@l.test"))
            .expect("a fresh instance decides");
        assert!(
            !actions.is_empty(),
            "the default behaviour answers (service-unavailable)"
        );
    }

    /// The facts of account `local` (foreign account `me@f.test`, gateway
    /// `gw.l.test`), with no controller and no session.
    pub fn facts_of(local: &str) -> crate::policy::bindings::Facts {
        crate::policy::bindings::Facts {
            local_jid: local.into(),
            foreign_jid: "me@f.test".into(),
            gateway: "gw.l.test".into(),
            controllers: vec![],
            sessions: vec![],
            now_ms: 0,
        }
    }

    /// The built `.wasm` of a policy in another language (`default-js`,
    /// `test-hostile-js`, …): `$PIZZJA_POLICY_BUILDS/name.wasm`, by default
    /// `target/policies`, where `cargo xtask test` builds them. Panics with
    /// the command that builds it when it is missing: a test that needs it
    /// fails loudly, it never skips.
    pub fn guest_build(name: &str) -> std::path::PathBuf {
        let dir = std::env::var_os("PIZZJA_POLICY_BUILDS").map_or_else(
            || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/policies"),
            std::path::PathBuf::from,
        );
        let path = dir.join(format!("{name}.wasm"));
        assert!(
            path.is_file(),
            "`{}` is missing: build the policies in other languages with `cargo xtask test`, \
             or `guest-sdk-js/build.sh {dir}` / `guest-sdk-python/build.sh {dir}`",
            path.display(),
            dir = dir.display(),
        );
        path
    }
}

/// Everything checked and loaded, not yet connected.
pub struct Prepared {
    config: Config,
    storage: Arc<Storage>,
    engine: PolicyEngine,
    tls: Arc<tokio_rustls::rustls::ClientConfig>,
    /// Where foreign domains' SRV records come from: DNS, or a test's
    /// answers.
    pub resolver: xmpp::dns::Resolver,
}

/// Opens storage, compiles and validates the policy, loads TLS roots. Any
/// error here is a configuration problem (exit code 2).
pub fn prepare(config: Config) -> Result<Prepared> {
    let storage = Arc::new(Storage::open(&config.database)?);
    let (name, bytes) = policy::module_bytes(&config.policy)?;
    let limits = Limits {
        deadline: config.decision_timeout,
        memory: config.memory_limit,
    };
    // Policy state lives beside the registrations, in the same database.
    let options = EngineOptions {
        limits,
        cache_dir: config.cache_dir.clone(),
        state: storage.clone(),
    };
    let engine = PolicyEngine::new(&name, &bytes, config.policy_config.clone(), options)?;
    let loaded = engine.current();
    info!(policy = %loaded.name, hash = %loaded.hash, wit = loaded.version(), "policy loaded");
    let tls = xmpp::foreign::tls_config(config.ca_file.as_deref())?;
    Ok(Prepared {
        config,
        storage,
        engine,
        tls,
        resolver: xmpp::dns::Resolver::default(),
    })
}

impl Prepared {
    /// Reloads, refusals and rollbacks of the policy from now on.
    pub fn policy_events(&self) -> tokio::sync::broadcast::Receiver<policy::PolicyEvent> {
        self.engine.events()
    }
}

/// Runs the gateway until `shutdown` turns true. `ready` fires once the
/// component link is first up.
pub async fn run(
    prepared: Prepared,
    shutdown: watch::Receiver<bool>,
    ready: Option<oneshot::Sender<()>>,
) -> Result<()> {
    let Prepared {
        config,
        storage,
        engine,
        tls,
        resolver,
    } = prepared;
    // First, so that SIGHUP never meets its default action (terminate).
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("failed to listen for SIGHUP")?;
    let (to_local, outbound) = mpsc::channel(config.link_queue_limit);
    let (events_tx, mut events) = mpsc::channel(config.link_inbound_queue);
    let link = LinkConfig {
        jid: config.jid.clone(),
        server: config.server.clone(),
        secret: config.secret.clone(),
        ping_to: config.local_domains[0].clone(),
        unconfirmed_limit: config.link_unconfirmed_limit,
    };
    let link_task = tokio::spawn(xmpp::component::run(
        link,
        events_tx,
        outbound,
        shutdown.clone(),
    ));
    let (reloads, reload_requests) = mpsc::channel(8);
    let (keep_salted_tx, salted) = mpsc::unbounded_channel();
    let db = storage.clone();
    let salted_writer = tokio::spawn(write_batches(
        salted,
        shutdown.clone(),
        "salted passwords",
        move |items: &[storage::KeptSalted]| db.keep_salted_passwords(items).map(drop),
    ));
    let (positions_tx, positions) = mpsc::unbounded_channel();
    let db = storage.clone();
    let positions_writer = tokio::spawn(write_batches(
        positions,
        shutdown.clone(),
        "archive positions",
        move |items: &[(jid::BareJid, String, String)]| {
            // Only the last position of each session counts.
            let mut last = std::collections::HashMap::new();
            for (local, resource, id) in items {
                last.insert((local.clone(), resource.clone()), id.clone());
            }
            let items: Vec<_> = last.into_iter().map(|((l, r), id)| (l, r, id)).collect();
            db.keep_archive_positions(&items)
        },
    ));
    let dialer = xmpp::foreign::Dialer {
        hosts: config.foreign_hosts.clone(),
        resolver,
        tls: config.foreign_tls,
        tls_config: tls,
        login_timeout: config.login_timeout,
        queue_limit: config.queue_limit,
        logins: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_logins)),
        max_logins: config.max_concurrent_logins,
        scram: Arc::default(),
    };
    let probes = Arc::new(account::controllers::ProbeWindow::new(
        config.confirm_window,
    ));
    let overload = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let metrics = Arc::new(metrics::Metrics::default());
    // Bound before anything else can fail late: a bad address stops the start.
    let metrics_server = match config.metrics_listen {
        Some(addr) => {
            let listener = metrics::bind(addr).await?;
            let registry = metrics::registry(
                &metrics,
                engine.clone(),
                storage.clone(),
                overload.clone(),
                to_local.clone(),
            );
            Some(tokio::spawn(metrics::serve(listener, Arc::new(registry))).abort_handle())
        }
        None => None,
    };
    tokio::spawn(count_reloads(engine.events(), metrics.clone()));
    let env = Arc::new(account::Env {
        gateway: config.jid.clone(),
        engine: engine.clone(),
        to_local: to_local.clone(),
        dialer: dialer.clone(),
        iq_timeout: config.iq_timeout,
        probes: probes.clone(),
        storage: storage.clone(),
        keep_salted: keep_salted_tx,
        positions: positions_tx,
        queue: config.account_queue,
        held_limit: config.held_limit,
        overload: overload.clone(),
        metrics: metrics.clone(),
    });
    let (control_tx, mut control) = mpsc::unbounded_channel();
    let services = Arc::new(services::Services {
        gateway: config.jid.clone(),
        storage,
        to_local,
        control: control_tx,
        dialer,
        admins: config.admins.clone(),
        reloads: reloads.clone(),
        engine: engine.clone(),
        probes,
        login_timeout: config.login_timeout,
        overload,
        metrics: metrics.clone(),
    });
    let target = policy::reload::Target {
        engine,
        source: config.policy.clone(),
        config: config.policy_config.clone(),
    };
    tokio::spawn(policy::reload::serve(target, reload_requests));
    // Kept alive for as long as the gateway runs.
    let _watcher = match (&config.policy, config.policy_watch) {
        (PolicySource::File(path), true) => Some(policy::reload::watch(path, reloads.clone())?),
        _ => None,
    };

    // systemd's WatchdogSec: pinged at half the interval for as long as the
    // runtime runs its tasks (a hung process stops pinging and is restarted).
    let watchdog = sd_notify::watchdog_enabled().map(|interval| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval / 2);
            loop {
                tick.tick().await;
                notify(sd_notify::NotifyState::Watchdog);
            }
        })
        .abort_handle()
    });

    let mut router = Router::new(
        services,
        env,
        config.local_domains.clone(),
        config.link_grace,
    );
    let mut ready = ready;
    let mut first_connect = true;
    let mut shutdown = shutdown;

    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(LinkEvent::Connected) => {
                    metrics.link_up.set(1);
                    router.link_up(!first_connect);
                    if first_connect {
                        first_connect = false;
                        info!(jid = %router.gateway(), "pizzja ready");
                        // systemd (Type=notify): ready once the link is up and
                        // the policy loaded; nothing without NOTIFY_SOCKET.
                        notify(sd_notify::NotifyState::Ready);
                    }
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Some(LinkEvent::Down) => {
                    metrics.link_up.set(0);
                    metrics.link_outages.inc();
                    router.link_down();
                }
                Some(LinkEvent::Stanza(el)) => router.route(el).await,
                None => break,
            },
            Some(c) = control.recv() => router.on_control(c).await,
            Some(()) = hangup.recv() => {
                let _ = reloads.send(policy::reload::Request { origin: "SIGHUP", reply: None }).await;
            }
            _ = shutdown.changed() => if *shutdown.borrow() { break },
        }
    }
    info!("shutting down");
    notify(sd_notify::NotifyState::Stopping);
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    if let Some(server) = metrics_server {
        server.abort();
    }
    router.stop_all();
    let _ = link_task.await;
    let _ = salted_writer.await;
    let _ = positions_writer.await;
    Ok(())
}

/// Writes what tasks hand it to the database, many items per transaction:
/// the first start with thousands of registrations derives thousands of
/// salted passwords at once, and a transaction (an fsync) each would hold
/// the database for seconds. At shutdown it writes what is queued, then
/// ends. What is lost all the same (a crash, a full disk) costs little:
/// a salted password is derived again; an archive position lags, and the
/// catch-up after it drops what it already delivered only while the
/// gateway runs.
async fn write_batches<T: Send + 'static>(
    mut items: mpsc::UnboundedReceiver<T>,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
    write: impl Fn(&[T]) -> Result<()> + Send + Sync + Clone + 'static,
) {
    let flush = |batch: Vec<T>| {
        let write = write.clone();
        async move {
            match tokio::task::spawn_blocking(move || write(&batch)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let error = format!("{e:#}");
                    tracing::warn!(%error, what, "could not write to the database");
                }
                Err(e) => tracing::warn!(error = %e, what, "writing to the database failed"),
            }
        }
    };
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            n = items.recv_many(&mut batch, 1024) => {
                if n == 0 {
                    return;
                }
                flush(std::mem::take(&mut batch)).await;
            }
            _ = async { drop(shutdown.wait_for(|stop| *stop).await) } => {
                while let Ok(item) = items.try_recv() {
                    batch.push(item);
                }
                if !batch.is_empty() {
                    flush(batch).await;
                }
                return;
            }
        }
    }
}

/// Counts the policy's reloads by outcome, for as long as the engine lives.
async fn count_reloads(
    mut events: tokio::sync::broadcast::Receiver<policy::PolicyEvent>,
    metrics: Arc<metrics::Metrics>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let outcome = match events.recv().await {
            Ok(policy::PolicyEvent::Loaded { .. }) => "loaded",
            Ok(policy::PolicyEvent::Refused { .. }) => "refused",
            Ok(policy::PolicyEvent::Unchanged { .. }) => "unchanged",
            Ok(policy::PolicyEvent::RolledBack { .. }) => "rolled-back",
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        metrics::Metrics::count(&metrics.reloads, outcome);
    }
}

/// Tells systemd `state` when it runs the gateway (`NOTIFY_SOCKET`).
fn notify(state: sd_notify::NotifyState) {
    if let Err(e) = sd_notify::notify(&[state]) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}
