//! Prometheus metrics (`[metrics] listen`, docs/operations.md).
//!
//! prometheus-client keeps a registry per gateway rather than a process-wide
//! recorder (the `metrics` facade's model): the test suites run many
//! gateways in one process, and each must count only its own traffic.
//! Counters the gateway keeps anyway (policy decisions and CPU, overload
//! refusals, registrations) are read at scrape time by a collector; the
//! rest are counted where they happen. hyper serves `GET /metrics`.

use crate::policy::PolicyEngine;
use crate::storage::Storage;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

/// Where a stanza crossed the gateway.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Crossing {
    /// `from_local`, `to_local`, `from_foreign` or `to_foreign`.
    pub direction: &'static str,
    /// `message`, `presence` or `iq`.
    pub kind: &'static str,
}

/// One label naming why or how.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Why {
    /// The reason, condition or outcome.
    pub reason: String,
}

/// A session state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct State {
    /// `connecting`, `online`, `reconnecting`, `failed`.
    pub state: &'static str,
}

/// What the gateway counts as it goes.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Stanzas across the gateway, by direction and kind.
    pub stanzas: Family<Crossing, Counter>,
    /// Stanza errors sent to local users, by condition.
    pub errors_sent: Family<Why, Counter>,
    /// Foreign logins: `ok`, or the failure's condition.
    pub logins: Family<Why, Counter>,
    /// Foreign sessions by state.
    pub sessions: Family<State, Gauge>,
    /// Gaps of foreign sessions: `resumed` (XEP-0198) or `rebound`.
    pub reconnects: Family<Why, Counter>,
    /// Controllers online.
    pub controllers: Gauge,
    /// Account tasks running.
    pub accounts_running: Gauge,
    /// Policy reloads: `loaded`, `refused`, `rolled-back`, `unchanged`.
    pub reloads: Family<Why, Counter>,
    /// Decisions that failed: `trap` or `instantiate`.
    pub policy_failures: Family<Why, Counter>,
    /// Whether the component link is up (1) or not (0).
    pub link_up: Gauge,
    /// Times the component link went down.
    pub link_outages: Counter,
}

impl Metrics {
    /// Counts one stanza crossing the gateway.
    pub fn stanza(&self, direction: &'static str, el: &minidom::Element) {
        let kind = match el.name() {
            "message" => "message",
            "presence" => "presence",
            "iq" => "iq",
            _ => return,
        };
        self.stanzas
            .get_or_create(&Crossing { direction, kind })
            .inc();
        if direction == "to_local"
            && el.attr("type") == Some("error")
            && let Some(condition) = condition(el)
        {
            self.errors_sent
                .get_or_create(&Why { reason: condition })
                .inc();
        }
    }

    /// Counts one of `family` under `reason`.
    pub fn count(family: &Family<Why, Counter>, reason: &str) {
        family
            .get_or_create(&Why {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// A session moved from `from` (none: it is new) to `to` (none: it is
    /// gone).
    pub fn session_moved(&self, from: Option<&'static str>, to: Option<&'static str>) {
        if let Some(state) = from {
            self.sessions.get_or_create(&State { state }).dec();
        }
        if let Some(state) = to {
            self.sessions.get_or_create(&State { state }).inc();
        }
    }
}

/// The defined condition of an error stanza.
fn condition(el: &minidom::Element) -> Option<String> {
    el.get_child("error", crate::xmpp::NS_CLIENT)?
        .children()
        .find(|c| c.ns() == crate::xmpp::NS_STANZAS && c.name() != "text")
        .map(|c| c.name().to_string())
}

/// What is read at scrape time from where the gateway keeps it.
struct Kept {
    engine: PolicyEngine,
    storage: Arc<Storage>,
    overload: Arc<AtomicU64>,
    link_queue: tokio::sync::mpsc::Sender<minidom::Element>,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kept")
    }
}

impl Collector for Kept {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let policy = self.engine.stats();
        let counters: [(&str, &str, u64); 2] = [
            (
                "policy_decisions",
                "Decisions the policy made",
                policy.decisions,
            ),
            (
                "overload_refused",
                "Stanzas refused because a queue was full",
                self.overload.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(metric)?;
        }
        let metric = encoder.encode_descriptor(
            "policy_cpu_seconds",
            "CPU time spent in policy decisions (estimated from one in eight)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(policy.cpu_ns as f64 / 1e9).encode(metric)?;
        let registered = self.storage.count().unwrap_or(0) as i64;
        let metric = encoder.encode_descriptor(
            "accounts_registered",
            "Registered accounts",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(registered).encode(metric)?;
        let depth = self.link_queue.max_capacity() - self.link_queue.capacity();
        let metric = encoder.encode_descriptor(
            "component_link_queue",
            "Stanzas waiting for the component link",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(depth as i64).encode(metric)?;
        Ok(())
    }
}

/// The registry of one gateway: its [`Metrics`] and what is read at scrape.
pub fn registry(
    metrics: &Metrics,
    engine: PolicyEngine,
    storage: Arc<Storage>,
    overload: Arc<AtomicU64>,
    link_queue: tokio::sync::mpsc::Sender<minidom::Element>,
) -> Registry {
    let mut r = Registry::with_prefix("pizzja");
    r.register(
        "stanzas",
        "Stanzas across the gateway",
        metrics.stanzas.clone(),
    );
    r.register(
        "errors_sent",
        "Stanza errors sent to local users, by condition",
        metrics.errors_sent.clone(),
    );
    r.register(
        "foreign_logins",
        "Foreign logins, by outcome",
        metrics.logins.clone(),
    );
    r.register(
        "foreign_sessions",
        "Foreign sessions, by state",
        metrics.sessions.clone(),
    );
    r.register(
        "foreign_reconnects",
        "Gaps of foreign sessions, by how they ended",
        metrics.reconnects.clone(),
    );
    r.register(
        "controllers",
        "Controllers online",
        metrics.controllers.clone(),
    );
    r.register(
        "accounts_running",
        "Account tasks running",
        metrics.accounts_running.clone(),
    );
    r.register(
        "policy_reloads",
        "Policy reloads, by outcome",
        metrics.reloads.clone(),
    );
    r.register(
        "policy_failures",
        "Policy decisions that failed, by kind",
        metrics.policy_failures.clone(),
    );
    r.register(
        "component_link_up",
        "Whether the component link is up",
        metrics.link_up.clone(),
    );
    r.register(
        "component_link_outages",
        "Times the component link went down",
        metrics.link_outages.clone(),
    );
    r.register_collector(Box::new(Kept {
        engine,
        storage,
        overload,
        link_queue,
    }));
    r
}

/// Serves the registry as Prometheus text at `GET /metrics` on `listener`
/// until the task is dropped.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "serving metrics at /metrics");
    }
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "metrics listener failed to accept");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let registry = registry.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&req, &registry)) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(io, service)
                .await;
            if let Err(e) = served {
                debug!(%peer, error = %e, "metrics connection ended");
            }
        });
    }
}

fn answer<B>(req: &Request<B>, registry: &Registry) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(v) = content_type.parse() {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, v);
        }
        response
    };
    if req.method() != hyper::Method::GET || req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "only GET /metrics is served here\n".into(),
        );
    }
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, registry) {
        Ok(()) => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            text,
        ),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("encoding the metrics failed: {e}\n"),
        ),
    }
}

/// Binds the metrics listener (so that a bad address fails at start-up).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("failed to listen for metrics on {addr}: {e}"))
}
