//! Readings of other processes from `/proc`, and the gateway as a process
//! of its own (so that its CPU and memory are its alone).

use anyhow::{Context, Result, bail};
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// User plus system CPU time of a whole process (every thread, living or
/// gone), from `/proc/PID/stat`. Its unit is the kernel's clock tick
/// (10 ms here), so phases run long enough for that to be small.
pub fn cpu(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses; fields follow the
    // last ')'. utime and stime are fields 14 and 15 of the whole line.
    let rest = &stat[stat.rfind(')').context("malformed stat")? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11)
        .zip(fields.get(12))
        .and_then(|(u, s)| Some(u.parse::<u64>().ok()? + s.parse::<u64>().ok()?))
        .context("malformed stat fields")?;
    Ok(Duration::from_nanos(ticks * tick_ns()))
}

fn tick_ns() -> u64 {
    static TICK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or(10_000_000, |hz| 1_000_000_000 / hz.max(1))
    })
}

/// Resident set size in bytes (`VmRSS` of `/proc/PID/status`).
pub fn rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .context("no VmRSS")
}

/// The `pizzja` binary, running.
pub struct GatewayProcess {
    child: Child,
    /// From spawn to the `pizzja ready` log line.
    pub ready_after: Duration,
    log: Arc<Mutex<Vec<String>>>,
}

impl GatewayProcess {
    /// Starts `pizzja run --config CONFIG` and waits for `pizzja ready`.
    pub fn start(binary: &Path, config: &Path) -> Result<GatewayProcess> {
        let started = Instant::now();
        let mut child = Command::new(binary)
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("failed to start {}", binary.display()))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let keep = log.clone();
        // Reads the log for as long as the process lives: a full pipe would
        // stall the gateway.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("pizzja ready") {
                    let _ = ready_tx.send(Instant::now());
                }
                let mut log = keep.lock().unwrap_or_else(|p| p.into_inner());
                if log.len() >= 200 {
                    log.remove(0);
                }
                log.push(line);
            }
        });
        let ready_at = match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(at) => at,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = log.lock().unwrap_or_else(|p| p.into_inner()).join("\n");
                bail!("the gateway did not become ready within 60 s; its log:\n{log}");
            }
        };
        Ok(GatewayProcess {
            child,
            ready_after: ready_at - started,
            log,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines it logged.
    pub fn log_tail(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) -> Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("failed to run kill")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("the gateway exited with {status}:\n{}", self.log_tail());
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("the gateway did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
