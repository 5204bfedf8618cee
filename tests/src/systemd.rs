//! A real systemd for the package's test: systemd as PID 1 of new PID,
//! mount, cgroup, UTS and IPC namespaces, so that a unit runs with the
//! sandboxing systemd gives it (namespaces, the system call filter,
//! capabilities, `Type=notify`), on a machine whose own init is not
//! systemd. The network is the machine's, so a unit reaches the test
//! servers on loopback.
//!
//! It boots a target of its own that pulls in nothing: a booting system's
//! `sysinit.target` would clean /tmp, apply sysctls and add users, and
//! the file system here is the machine's. /run, /tmp and /var/tmp are
//! its own, empty. Units started in it should not pull in
//! `sysinit.target` either ([`Systemd::without_default_dependencies`]).
//! Needs root.

use anyhow::{Context, Result, bail};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What the namespaces run: private mounts, then systemd.
const BOOT: &str = r#"
set -e
mount --make-rprivate /
for dir in /run /tmp /var/tmp; do mount -t tmpfs tmpfs "$dir"; done
mkdir -p /run/systemd/system
printf '[Unit]\nDescription=The test boot: nothing\nDefaultDependencies=no\n' \
  > /run/systemd/system/pizzja-test.target
exec /lib/systemd/systemd --system --unit=pizzja-test.target --show-status=no
"#;

/// systemd booted in namespaces of its own; killed, with everything it
/// started, when dropped.
pub struct Systemd {
    unshare: std::process::Child,
    /// systemd's process id, as this machine sees it.
    pid: u32,
}

impl Systemd {
    /// Boots it and waits until it has started what it boots.
    pub fn boot() -> Result<Systemd> {
        let mut unshare = Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--kill-child",
                "--mount",
                "--mount-proc",
                "--cgroup",
                "--uts",
                "--ipc",
                "sh",
                "-c",
                BOOT,
            ])
            .env("container", "pizzja-test")
            // Its output would keep a caller's pipes open after it is gone.
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("running unshare (util-linux)")?;
        let children = format!("/proc/{0}/task/{0}/children", unshare.id());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let pid = loop {
            let found = std::fs::read_to_string(&children)
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()));
            if let Some(pid) = found {
                break pid;
            }
            if let Some(status) = unshare.try_wait()? {
                bail!("unshare ended before systemd started: {status}");
            }
            if std::time::Instant::now() > deadline {
                let _ = unshare.kill();
                bail!("systemd did not start in its namespaces within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let systemd = Systemd { unshare, pid };
        // systemctl talks to it over this socket, made early in its boot.
        let socket = format!("/proc/{pid}/root/run/systemd/private");
        while !std::path::Path::new(&socket).exists() {
            if std::time::Instant::now() > deadline {
                bail!("systemd made no control socket within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Blocks until the boot is done (or has failed).
        let state = systemd.systemctl(&["is-system-running", "--wait"])?;
        if state.trim() != "running" {
            bail!("systemd booted into `{}`", state.trim());
        }
        Ok(systemd)
    }

    /// Runs `command` with `args` inside the namespaces; its standard
    /// output, or an error with what it wrote when it fails.
    pub fn run(&self, command: &str, args: &[&str]) -> Result<String> {
        let pid = self.pid.to_string();
        let output = Command::new("timeout")
            .args(["120", "nsenter", "-t", &pid, "-m", "-p", command])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running nsenter")?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "`{command} {}` failed ({}): {stdout}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(stdout)
    }

    /// `systemctl args...` inside the namespaces.
    pub fn systemctl(&self, args: &[&str]) -> Result<String> {
        self.run("systemctl", args)
    }

    /// One property of `unit` (`systemctl show -P`).
    pub fn property(&self, unit: &str, name: &str) -> Result<String> {
        Ok(self
            .systemctl(&["show", "-P", name, unit])?
            .trim()
            .to_string())
    }

    /// A drop-in for `unit` that keeps it out of `sysinit.target` (see the
    /// module's text); the rest of the unit is as installed.
    pub fn without_default_dependencies(&self, unit: &str) -> Result<()> {
        let dir = format!("/run/systemd/system/{unit}.d");
        let conf = "[Unit]\nDefaultDependencies=no\n";
        self.run(
            "sh",
            &[
                "-c",
                &format!("mkdir -p {dir} && printf '{conf}' > {dir}/test.conf"),
            ],
        )?;
        self.systemctl(&["daemon-reload"])?;
        Ok(())
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        // PID 1 of a PID namespace takes every process in it when it goes.
        let _ = Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status();
        let _ = self.unshare.wait();
    }
}
