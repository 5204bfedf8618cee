//! `cargo xtask setup | demo | test | soak | bench`: what the README's
//! quickstart runs, the soak under injected faults, and the benchmarks.
//!
//! `setup` installs what a fresh Debian machine lacks (Prosody, the
//! wasm32-wasip2 target); `demo`, `test` and `bench` run it first, so each
//! is one command on a fresh machine.

use anyhow::{Context, Result, bail};
use std::process::Command;

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "setup" => setup(),
        "demo" => {
            setup()?;
            cargo(&[
                "build",
                "--quiet",
                "-p",
                "pizzja-host",
                "-p",
                "pizzja-tests",
                "--bins",
            ])?;
            run(&mut Command::new(target_dir().join("debug/demo")))
        }
        "test" => {
            setup()?;
            cargo(&["test", "--workspace", "--all-targets"])
        }
        "soak" => {
            setup()?;
            cargo(&["build", "--quiet", "-p", "pizzja-tests", "--bin", "soak"])?;
            // Its own arguments (--minutes N, --faults 012) go through.
            run(Command::new(target_dir().join("debug/soak")).args(std::env::args().skip(2)))
        }
        "bench" => {
            setup()?;
            bench(std::env::args().any(|a| a == "--smoke"))
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <setup|demo|test|soak [--minutes N] [--faults 012]|bench [--smoke]>"
            );
            std::process::exit(2);
        }
    }
}

/// The benchmark suite (`benches/`): the policy micro-benchmark, then the
/// gateway at scale against real Prosodys; the report goes to
/// BENCHMARKS.md. `--smoke` runs tiny sizes on a debug build (CI keeps the
/// suite working with it) and writes `target/bench-smoke.md` instead.
fn bench(smoke: bool) -> Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (profile, dir) = if smoke {
        (&[][..], "debug")
    } else {
        (&["--release"][..], "release")
    };
    // One package at a time: `--bin pizzja` would limit pizzja-bench too.
    for package in [
        &["-p", "pizzja-host", "--bin", "pizzja"][..],
        &["-p", "pizzja-bench"],
    ] {
        cargo(&[&["build", "--quiet"][..], package, profile].concat())?;
    }
    let target = target_dir();
    let mut suite = Command::new(target.join(dir).join("pizzja-bench"));
    suite.arg("--gateway").arg(target.join(dir).join("pizzja"));
    if smoke {
        suite
            .arg("--smoke")
            .arg("--report")
            .arg(target.join("bench-smoke.md"));
    } else {
        let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "bench",
                "--quiet",
                "-p",
                "pizzja-bench",
                "--bench",
                "policy",
            ])
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("failed to run the policy benchmark")?;
        if !out.status.success() {
            bail!("the policy benchmark failed");
        }
        let policy = target.join("bench-policy.txt");
        std::fs::write(&policy, &out.stdout)?;
        suite
            .arg("--report")
            .arg(root.join("BENCHMARKS.md"))
            .arg("--policy-report")
            .arg(policy);
    }
    run(&mut suite)
}

fn target_dir() -> std::path::PathBuf {
    let dir: std::path::PathBuf = std::env::var_os("CARGO_TARGET_DIR")
        .map(Into::into)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    // Reports and messages show it: without `xtask/..` in it.
    dir.canonicalize().unwrap_or(dir)
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}

/// Installs Prosody and openssl (Debian's packages) and the wasm32-wasip2
/// target when missing.
fn setup() -> Result<()> {
    // Prosody for the end-to-end tests and the demo, openssl for the TLS tests.
    let missing: Vec<&str> = ["prosody", "openssl"]
        .into_iter()
        .filter(|c| !have(c))
        .collect();
    if !missing.is_empty() {
        if !is_root() {
            bail!(
                "missing {missing:?}: run `sudo apt-get install -y {}`, then try again",
                missing.join(" ")
            );
        }
        eprintln!("xtask: installing {missing:?} (apt-get)");
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        // The tests start their own Prosody; the system service is not needed.
        let _ = Command::new("sh")
            .args(["-c", "service prosody stop >/dev/null 2>&1 || true"])
            .status();
    }
    let targets = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is needed")?;
    if !String::from_utf8_lossy(&targets.stdout)
        .lines()
        .any(|l| l.trim() == "wasm32-wasip2")
    {
        eprintln!("xtask: adding the wasm32-wasip2 target (rustup)");
        run(Command::new("rustup").args(["target", "add", "wasm32-wasip2"]))?;
    }
    Ok(())
}

fn cargo(args: &[&str]) -> Result<()> {
    run(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args(args))
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("failed to run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}
