//! The gateway as a process of its own (`pizzja run`), with its log lines:
//! for tests of what only the real binary does (signals, SIGKILL, its log
//! format, systemd's notifications).

use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// A running `pizzja run`.
pub struct Process {
    child: Child,
    log: mpsc::UnboundedReceiver<String>,
    /// Every log line read so far.
    pub lines: Vec<String>,
}

impl Process {
    /// Starts `binary run --config config` with `env` added, and waits for
    /// its `pizzja ready` line.
    pub async fn start(binary: &Path, config: &Path, env: &[(&str, &str)]) -> Process {
        let mut command = Command::new(binary);
        command.arg("run").arg("--config").arg(config);
        for (k, v) in env {
            command.env(k, v);
        }
        Process::start_command(command).await
    }

    /// Starts `command` (a `pizzja run`, however wrapped) and waits for its
    /// `pizzja ready` line.
    pub async fn start_command(mut command: Command) -> Process {
        let set = command.as_std().get_envs().any(|(k, _)| k == "RUST_LOG");
        if !set {
            command.env("RUST_LOG", "info,pizzja_host::account=debug");
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("pizzja starts");
        // Read for as long as it runs: a full pipe would stop it.
        let (tx, log) = mpsc::unbounded_channel();
        let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut p = Process {
            child,
            log,
            lines: Vec::new(),
        };
        p.wait_for("pizzja ready").await;
        p
    }

    /// Waits for a log line containing `text`.
    pub async fn wait_for(&mut self, text: &str) -> String {
        let found = tokio::time::timeout(crate::WAIT, async {
            while let Some(line) = self.log.recv().await {
                self.lines.push(line.clone());
                if line.contains(text) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            Ok(None) => panic!("pizzja exited before logging {text:?}"),
            Err(_) => panic!("pizzja did not log {text:?} within {:?}", crate::WAIT),
        }
    }

    /// SIGTERM, then every remaining log line until it exits: its exit
    /// code and all its log lines.
    pub async fn stop(mut self) -> (Option<i32>, Vec<String>) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let status = tokio::time::timeout(crate::WAIT, self.child.wait())
            .await
            .expect("pizzja exits after SIGTERM")
            .expect("waited");
        while let Some(line) = self.log.recv().await {
            self.lines.push(line);
        }
        (status.code(), self.lines)
    }

    /// SIGKILL: no shutdown, no flushing, nothing.
    pub async fn kill_9(mut self) {
        self.child.kill().await.expect("killed");
    }
}
