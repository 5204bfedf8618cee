//! The Debian package (docs/operations.md): installed with dpkg on this
//! machine, it puts the binary, a conffile, the unit and a `pizzja` user in
//! place; the unit, started by a real systemd (booted in namespaces of its
//! own: this machine's init is not systemd), runs sandboxed as that user,
//! gets ready, serves the test Prosody, reloads and stops; purged, the
//! package is gone. Needs root, util-linux's unshare and nsenter, and
//! `target/package/pizzja_*.deb` (`cargo xtask test` builds it first;
//! `cargo xtask package --debug` alone).

use pizzja_tests::systemd::Systemd;
use pizzja_tests::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn deb() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/package");
    std::fs::read_dir(&dir)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .unwrap_or_else(|| {
            panic!(
                "no package in {}: run `cargo xtask package --debug` (cargo xtask test does)",
                dir.display()
            )
        })
}

fn sh(program: &str, args: &[&str]) -> String {
    output_of(Command::new(program).args(args))
}

fn id_of(user: &str, flag: &str) -> u32 {
    sh("id", &[flag, user]).trim().parse().expect("an id")
}

#[tokio::test]
async fn the_package_installs_runs_as_its_user_and_purges() {
    let uid = sh("id", &["-u"]);
    assert_eq!(uid.trim(), "0", "installing a package needs root");
    let deb = deb();
    sh("dpkg", &["-i", &deb.display().to_string()]);

    // What it put in place.
    let binary = Path::new("/usr/bin/pizzja");
    assert!(binary.metadata().expect("the binary").permissions().mode() & 0o111 != 0);
    let conffiles = sh("dpkg-query", &["-W", "-f=${Conffiles}", "pizzja"]);
    assert!(conffiles.contains("/etc/pizzja/pizzja.toml"), "{conffiles}");
    let (uid, gid) = (id_of("pizzja", "-u"), id_of("pizzja", "-g"));
    let conf = Path::new("/etc/pizzja/pizzja.toml")
        .metadata()
        .expect("config");
    assert_eq!((conf.uid(), conf.gid()), (0, gid), "root:pizzja");
    assert_eq!(conf.permissions().mode() & 0o777, 0o640);
    let state = Path::new("/var/lib/pizzja").metadata().expect("state dir");
    assert_eq!((state.uid(), state.gid()), (uid, gid));
    let unit = std::fs::read_to_string("/lib/systemd/system/pizzja.service").expect("the unit");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in the unit"))
            .to_string()
    };
    assert_eq!(value("Type"), "notify");
    assert_eq!(value("User"), "pizzja");

    // The installed configuration, pointed at the test server, with a
    // policy module of its own (which SIGHUP reloads) and metrics.
    let prosody = Prosody::start(&[("alice", LOCAL), ("me", FOREIGN)])
        .await
        .expect("prosody starts");
    let module = Path::new("/var/lib/pizzja/policy.wasm");
    std::fs::copy(
        pizzja_host::testing::policy_path("pizzja_policy_default"),
        module,
    )
    .expect("policy copied");
    std::os::unix::fs::chown(module, Some(uid), Some(gid)).expect("chown");
    let port = free_port();
    let toml = prosody.gateway_toml(Path::new("/var/lib/pizzja/pizzja.sqlite3"), "")
        + &format!(
            "\n[policy]\nmodule = \"{}\"\ncache_dir = \"/var/lib/pizzja/cache\"\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
            module.display()
        );
    // Written in place, keeping the conffile's owner and mode.
    std::fs::write("/etc/pizzja/pizzja.toml", toml).expect("configured");

    // The unit as installed, under a real systemd: its sandbox, its
    // readiness, its reload and its stop.
    let systemd = Systemd::boot().expect("systemd boots in namespaces of its own");
    systemd
        .without_default_dependencies("pizzja.service")
        .expect("a drop-in");
    // Type=notify: this returns once the gateway said READY=1, which it
    // does with its component link up and its policy loaded.
    systemd
        .systemctl(&["start", "pizzja.service"])
        .expect("it starts under its sandbox and gets ready");
    let property = |name: &str| systemd.property("pizzja.service", name).expect(name);
    assert_eq!(property("ActiveState"), "active");
    // Ready means serving: a registration with a real login, and the
    // database under /var/lib/pizzja is writable.
    registered_phone(&prosody).await;

    // What the kernel says of the process systemd started.
    let pid = property("MainPID");
    let status = systemd
        .run("cat", &[&format!("/proc/{pid}/status")])
        .expect("its status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .trim()
            .to_string()
    };
    assert!(field("Uid").starts_with(&uid.to_string()), "{status}");
    assert_eq!(field("NoNewPrivs"), "1", "NoNewPrivileges");
    assert_eq!(field("Seccomp"), "2", "a system call filter");
    assert_eq!(field("CapEff"), "0000000000000000", "no capabilities");
    assert_eq!(field("CapBnd"), "0000000000000000", "none to gain");

    // ExecReload sends SIGHUP: the policy is read again (the same file,
    // so unchanged), and the gateway goes on.
    systemd
        .systemctl(&["reload", "pizzja.service"])
        .expect("reloads");
    let reloaded = "pizzja_policy_reloads_total{reason=\"unchanged\"}";
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, text) = http_get(port, "/metrics").await;
        if metric(&text, reloaded).is_some_and(|n| n >= 1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload counted: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(property("ActiveState"), "active");
    assert_eq!(property("NRestarts"), "0");

    // How exposed systemd rates the running unit (docs/operations.md).
    let report = systemd
        .run(
            "systemd-analyze",
            &["security", "--no-pager", "pizzja.service"],
        )
        .expect("rated");
    let exposure: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for pizzja.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in {report}"));
    println!("systemd-analyze security, the running unit: {exposure}");
    assert!(exposure <= 2.0, "exposure {exposure}:\n{report}");

    // Stopped: a clean exit.
    systemd
        .systemctl(&["stop", "pizzja.service"])
        .expect("stops");
    assert_eq!(property("Result"), "success");
    assert_eq!(property("ExecMainStatus"), "0");
    drop(systemd);
    let db = Path::new("/var/lib/pizzja/pizzja.sqlite3")
        .metadata()
        .expect("the database");
    assert_eq!(db.uid(), uid, "written by the pizzja user");

    // Purged: gone, state included.
    sh("dpkg", &["--purge", "pizzja"]);
    for gone in [
        "/usr/bin/pizzja",
        "/etc/pizzja/pizzja.toml",
        "/var/lib/pizzja",
        "/lib/systemd/system/pizzja.service",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} left behind");
    }
}
