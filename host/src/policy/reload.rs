//! Hot reload: a file watch, SIGHUP and admin requests all end up here.
//! Reloads run one at a time; the module is read and compiled off the
//! async threads, validated, and only then swapped in (see
//! [`super::PolicyEngine::replace`]).

use super::{Loaded, PolicyEngine, PolicyEvent};
use crate::config::PolicySource;
use sha1::{Digest, Sha1};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// Who asked for a reload, and where the outcome goes.
pub struct Request {
    /// For the log.
    pub origin: &'static str,
    /// The outcome, for an admin who asked.
    pub reply: Option<oneshot::Sender<Result<PolicyEvent, String>>>,
}

/// What a reload reads and swaps: the configured module and its
/// `[policy.config]`, into this engine.
pub struct Target {
    /// The engine whose policy is replaced.
    pub engine: PolicyEngine,
    /// `[policy] module`.
    pub source: PolicySource,
    /// `[policy.config]`.
    pub config: Vec<(String, String)>,
}

/// Runs reloads one at a time as requests come in.
pub async fn serve(target: Target, mut requests: mpsc::Receiver<Request>) {
    let target = Arc::new(target);
    while let Some(req) = requests.recv().await {
        let outcome = reload(&target, req.origin).await;
        if let Some(reply) = req.reply {
            let _ = reply.send(outcome);
        }
    }
}

async fn reload(target: &Arc<Target>, origin: &'static str) -> Result<PolicyEvent, String> {
    let engine = &target.engine;
    let PolicySource::File(path) = &target.source else {
        info!(
            origin,
            "the built-in policy is part of the binary; nothing to reload"
        );
        return Ok(PolicyEvent::Unchanged {
            hash: engine.current().hash.clone(),
        });
    };
    let bytes = tokio::fs::read(path).await.map_err(|e| {
        let error = format!("failed to read policy `{}`: {e}", path.display());
        warn!(origin, %error, "policy reload failed; the running one stays");
        error
    })?;
    if hex::encode(Sha1::digest(&bytes)) == engine.current().hash {
        engine.report_unchanged();
        return Ok(PolicyEvent::Unchanged {
            hash: engine.current().hash.clone(),
        });
    }
    info!(origin, path = %path.display(), "reloading policy");
    let name = path.display().to_string();
    let target = target.clone();
    let swapped: Result<Arc<Loaded>, String> = tokio::task::spawn_blocking(move || {
        let config = target.config.clone();
        target
            .engine
            .replace(&name, &bytes, config)
            .map_err(|e| format!("{e:#}"))
    })
    .await
    .map_err(|e| format!("reload task failed: {e}"))?;
    swapped.map(|l| PolicyEvent::Loaded {
        name: l.name.clone(),
        hash: l.hash.clone(),
    })
}

/// Watches the module's directory and asks for a reload when the file is
/// replaced (written elsewhere and renamed over, as deploy tools do) or
/// rewritten. Events within 50 ms are taken together.
pub fn watch(
    path: &Path,
    requests: mpsc::Sender<Request>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let file = path.file_name().map(|f| f.to_os_string());
    let dir: PathBuf = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ".".into());
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        let ours = event
            .paths
            .iter()
            .any(|p| p.file_name().map(|f| f.to_os_string()) == file);
        let changes = event.kind.is_create() || event.kind.is_modify();
        if ours && changes {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Let a burst of events (a write in pieces, a rename) settle.
            while let Ok(Some(())) =
                tokio::time::timeout(Duration::from_millis(50), rx.recv()).await
            {}
            if requests
                .send(Request {
                    origin: "file watch",
                    reply: None,
                })
                .await
                .is_err()
            {
                return;
            }
        }
    });
    info!(path = %path.display(), "watching the policy module");
    Ok(watcher)
}
