//! `cargo xtask setup | demo | test | package | soak | bench`: what the
//! README's quickstart runs, the Debian package, the soak under injected
//! faults, and the benchmarks.
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
            // The package test installs the package as built from this tree.
            package(true)?;
            guest_policies()?;
            run(policy_env(
                Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args([
                    "test",
                    "--workspace",
                    "--all-targets",
                ]),
            ))?;
            // The end-to-end suite again, ejabberd as both servers, without
            // what needs Prosody (certificates, bulk accounts, the package
            // test, which ran above) and what ejabberd does differently
            // (docs/dependencies.md).
            run(policy_env(
                Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                    .args(["test", "-p", "pizzja-tests", "--test", "all", "--"])
                    .args(EJABBERD_SKIPS.iter().flat_map(|s| ["--skip", s]))
                    .env("PIZZJA_TEST_SERVER", "ejabberd"),
            ))
        }
        "package" => {
            setup()?;
            package(std::env::args().any(|a| a == "--debug"))
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
                "usage: cargo xtask <setup|demo|test|package [--debug]|soak [--minutes N] [--faults 012] [--server-log LEVEL]|bench [--smoke]>"
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
    // Section 4 of the policy benchmark, and the runs below, load the
    // other languages' builds.
    guest_policies()?;
    let target = target_dir();
    let mut suite = Command::new(target.join(dir).join("pizzja-bench"));
    suite.arg("--gateway").arg(target.join(dir).join("pizzja"));
    if smoke {
        suite
            .arg("--smoke")
            .arg("--report")
            .arg(target.join("bench-smoke.md"));
    } else {
        let out = policy_env(&mut Command::new(
            std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
        ))
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
    run(&mut suite)?;
    // The JavaScript and Python ports of the default policy inside the
    // gateway: the traffic phase once each, its report in
    // target/bench-LANG.md (BENCHMARKS.md, "Policies in other languages").
    for language in ["js", "python"] {
        let report = target.join(if smoke {
            format!("bench-{language}-smoke.md")
        } else {
            format!("bench-{language}.md")
        });
        let mut run_one = Command::new(target.join(dir).join("pizzja-bench"));
        run_one
            .arg("--gateway")
            .arg(target.join(dir).join("pizzja"))
            .arg("--policy")
            .arg(policy_builds().join(format!("default-{language}.wasm")))
            .args(["--only", "traffic", "--runs", "1", "--report"])
            .arg(&report);
        if smoke {
            run_one.arg("--smoke");
        }
        run(&mut run_one)?;
        let text = std::fs::read_to_string(&report).context("the language's report")?;
        if let Some(line) = text.lines().find(|l| l.contains("of the gateway's CPU")) {
            eprintln!("xtask: default-{language}: {line}");
        }
    }
    Ok(())
}

/// The Debian package: `target/package/pizzja_VERSION_ARCH.deb`, with
/// `/usr/bin/pizzja`, the commented `/etc/pizzja/pizzja.toml` (a conffile),
/// the systemd unit, and maintainer scripts that make the `pizzja` system
/// user and its `/var/lib/pizzja`. dpkg-deb builds it (Debian's own tool:
/// no packaging tool to install). `--debug` packages the debug build, for
/// the test that installs it.
fn package(debug: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut build = vec!["build", "--quiet", "-p", "pizzja-host", "--bin", "pizzja"];
    if !debug {
        build.push("--release");
    }
    cargo(&build)?;
    let binary = target_dir()
        .join(if debug { "debug" } else { "release" })
        .join("pizzja");
    let version = env!("CARGO_PKG_VERSION");
    let arch = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .context("dpkg is needed to build the package")?;
    let arch = String::from_utf8_lossy(&arch.stdout).trim().to_string();
    let out = target_dir().join("package");
    let name = format!("pizzja_{version}_{arch}");
    let stage = out.join(&name);
    if stage.exists() {
        std::fs::remove_dir_all(&stage)?;
    }
    let put = |path: &str, from: FileFrom, mode: u32| -> Result<()> {
        let dest = stage.join(path);
        std::fs::create_dir_all(dest.parent().context("a parent")?)?;
        match from {
            FileFrom::Copy(src) => {
                std::fs::copy(&src, &dest).with_context(|| format!("copying {}", src.display()))?;
            }
            FileFrom::Text(text) => std::fs::write(&dest, text)?,
        }
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    put("usr/bin/pizzja", FileFrom::Copy(binary), 0o755)?;
    put(
        "etc/pizzja/pizzja.toml",
        FileFrom::Copy(root.join("contrib/pizzja.toml")),
        0o640,
    )?;
    put(
        "lib/systemd/system/pizzja.service",
        FileFrom::Copy(root.join("contrib/pizzja.service")),
        0o644,
    )?;
    for doc in ["README.md", "docs/operations.md", "docs/configuration.md"] {
        let file = std::path::Path::new(doc).file_name().context("a name")?;
        put(
            &format!("usr/share/doc/pizzja/{}", file.to_string_lossy()),
            FileFrom::Copy(root.join(doc)),
            0o644,
        )?;
    }
    let control = format!(
        "Package: pizzja\nVersion: {version}\nArchitecture: {arch}\nMaintainer: Pizzja developers <pizzja@example.invalid>\nDepends: libc6 (>= 2.34), passwd\nSection: net\nPriority: optional\nDescription: XMPP gateway: one foreign account, many local clients\n Pizzja lets one foreign XMPP account connection be controlled by several\n local clients at once, with routing decided by a sandboxed WebAssembly\n policy that can be replaced without a restart.\n"
    );
    put("DEBIAN/control", FileFrom::Text(control), 0o644)?;
    put(
        "DEBIAN/conffiles",
        FileFrom::Text("/etc/pizzja/pizzja.toml\n".into()),
        0o644,
    )?;
    put("DEBIAN/postinst", FileFrom::Text(POSTINST.into()), 0o755)?;
    put("DEBIAN/prerm", FileFrom::Text(PRERM.into()), 0o755)?;
    put("DEBIAN/postrm", FileFrom::Text(POSTRM.into()), 0o755)?;
    let deb = out.join(format!("{name}.deb"));
    run(Command::new("dpkg-deb")
        // The debug build is for a test on this machine: not worth compressing.
        .args([
            "--root-owner-group",
            if debug { "-Znone" } else { "-Zxz" },
            "--build",
        ])
        .arg(&stage)
        .arg(&deb))?;
    println!("{}", deb.display());
    Ok(())
}

enum FileFrom {
    Copy(std::path::PathBuf),
    Text(String),
}

/// Makes the `pizzja` system user and its state directory; lets the
/// group read the configuration (it holds the component secret).
const POSTINST: &str = r#"#!/bin/sh
set -e
if [ "$1" = "configure" ]; then
    if ! getent passwd pizzja >/dev/null; then
        useradd --system --user-group --home-dir /var/lib/pizzja --no-create-home \
            --shell /usr/sbin/nologin --comment "Pizzja XMPP gateway" pizzja
    fi
    install -d -o pizzja -g pizzja -m 0750 /var/lib/pizzja
    chown root:pizzja /etc/pizzja/pizzja.toml
    chmod 0640 /etc/pizzja/pizzja.toml
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null 2>&1 || true
        systemctl enable pizzja.service >/dev/null 2>&1 || true
    fi
fi
"#;

const PRERM: &str = r#"#!/bin/sh
set -e
if [ "$1" = "remove" ] && [ -d /run/systemd/system ]; then
    systemctl stop pizzja.service >/dev/null 2>&1 || true
    systemctl disable pizzja.service >/dev/null 2>&1 || true
fi
"#;

/// Purging removes the state too; the user stays (Debian policy: its
/// files may live on elsewhere).
const POSTRM: &str = r#"#!/bin/sh
set -e
if [ "$1" = "purge" ]; then
    rm -rf /var/lib/pizzja
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
"#;

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

/// Tests of the end-to-end suite that do not run against ejabberd.
const EJABBERD_SKIPS: &[&str] = &[
    // Prosody-only harness features.
    "package::",
    "tls::",
    "faults::thousands_of_registered_users",
    // Open differences (docs/dependencies.md): ejabberd sends F/A no PEP
    // notifications here; after its restart a contact who comes online
    // does not see F/A's presence within the wait.
    "devices::a_contact_s_nickname_and_avatar",
    "faults::a_controller_gone_during_an_outage",
    // ejabberd hands a client's burst to the component slowly enough that
    // a queue of one does not always overflow (not a gateway behaviour).
    "delivery::a_burst_past_an_account_s_queue",
    // The policy's language is the host's business, not the server's: the
    // Prosody run covers them.
    "hostile::js::",
    "hostile::python::",
    "reload::a_python_policy_replaces",
];

/// Installs Prosody, ejabberd, openssl, node and Python (Debian's
/// packages), the wasm32-wasip2 target, and the policy toolchains when
/// missing.
fn setup() -> Result<()> {
    // Prosody for the end-to-end tests and the demo, ejabberd for the suite
    // against it, openssl for the TLS tests, node and Python (below) for
    // policies in those languages.
    let missing: Vec<&str> = [
        ("prosody", "prosody"),
        ("ejabberdctl", "ejabberd"),
        ("openssl", "openssl"),
        ("node", "nodejs"),
        ("npm", "npm"),
        ("python3", "python3"),
    ]
    .into_iter()
    .filter(|(c, _)| !have(c))
    .map(|(_, package)| package)
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
        // The tests start their own servers; the system services are not needed.
        let _ = Command::new("sh")
            .args([
                "-c",
                "service prosody stop >/dev/null 2>&1; service ejabberd stop >/dev/null 2>&1; true",
            ])
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
    js_toolchain()?;
    python_toolchain()
}

/// The Python policy toolchain (componentize-py and pytest, pinned by
/// policies/toolchains/requirements.txt) in a venv of its own,
/// target/toolchains/python, installed again when the requirements change.
fn python_toolchain() -> Result<()> {
    let venv = python_venv();
    let requirements = root().join("policies/toolchains/requirements.txt");
    let stamp = venv.join("installed-requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).context("requirements.txt")?;
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(());
    }
    if !venv.join("bin/pip").is_file() {
        // Debian's python3 makes venvs only with python3-venv.
        if !have_venv() {
            if !is_root() {
                bail!("python3 cannot make a venv: run `sudo apt-get install -y python3-venv`");
            }
            eprintln!("xtask: installing python3-venv (apt-get)");
            run(Command::new("apt-get")
                .args(["install", "-y", "-qq", "python3-venv"])
                .env("DEBIAN_FRONTEND", "noninteractive"))?;
        }
        eprintln!("xtask: making the Python policy toolchain's venv");
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    eprintln!("xtask: installing the Python policy toolchain (pip)");
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements))?;
    std::fs::write(&stamp, wanted).context("writing the toolchain stamp")?;
    Ok(())
}

fn have_venv() -> bool {
    Command::new("python3")
        .args(["-c", "import ensurepip, venv"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn python_venv() -> std::path::PathBuf {
    target_dir().join("toolchains/python")
}

/// The JavaScript policy toolchain (componentize-js, pinned by
/// policies/toolchains/package-lock.json), installed with `npm ci` when the
/// lock file is newer than what is installed.
fn js_toolchain() -> Result<()> {
    let dir = root().join("policies/toolchains");
    let lock = dir.join("package-lock.json");
    let installed = dir.join("node_modules/.package-lock.json");
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&installed).is_some() && modified(&installed) >= modified(&lock) {
        return Ok(());
    }
    // componentize-js's dependencies (oxc-parser, jco-node-fs) need Node.js
    // 20; Debian 12's own nodejs is 18.
    let version = Command::new("node")
        .arg("--version")
        .output()
        .context("node is needed")?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 20 {
        bail!(
            "the JavaScript policy toolchain needs Node.js 20 or later; this machine has {version}"
        );
    }
    eprintln!("xtask: installing the JavaScript policy toolchain (npm ci)");
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir))
}

/// The workspace's root directory.
fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the policies written in other languages into `target/policies`,
/// testing them natively first.
fn guest_policies() -> Result<()> {
    for language in ["js", "python"] {
        run(policy_env(
            Command::new(root().join(format!("guest-sdk-{language}/build.sh")))
                .arg(policy_builds()),
        ))?;
    }
    Ok(())
}

fn policy_builds() -> std::path::PathBuf {
    target_dir().join("policies")
}

/// Tells the tests that load policies in other languages where they and
/// their toolchains are.
fn policy_env(cmd: &mut Command) -> &mut Command {
    cmd.env("PIZZJA_POLICY_BUILDS", policy_builds())
        .env("PIZZJA_JS_TOOLCHAIN", root().join("policies/toolchains"))
        .env("PIZZJA_PYTHON_TOOLCHAIN", python_venv())
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
