//! The Debian package (docs/operations.md): installed with dpkg on this
//! machine, it puts the binary, a conffile, the unit and a `pizzja` user in
//! place; what the unit starts, run as that user with those paths (systemd
//! itself does not run here), serves the test Prosody; purged, it is gone.
//! Needs root and `target/package/pizzja_*.deb` (`cargo xtask test` builds
//! it first; `cargo xtask package --debug` alone).

use pizzja_tests::process::Process;
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

    // What the unit starts, as its user, on the installed configuration
    // pointed at the test server.
    let prosody = Prosody::start(&[("alice", LOCAL), ("me", FOREIGN)])
        .await
        .expect("prosody starts");
    let toml = prosody.gateway_toml(Path::new("/var/lib/pizzja/pizzja.sqlite3"), "")
        + "\n[policy]\ncache_dir = \"/var/lib/pizzja/cache\"\n";
    // Written in place, keeping the conffile's owner and mode.
    std::fs::write("/etc/pizzja/pizzja.toml", toml).expect("configured");
    let exec: Vec<String> = value("ExecStart")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let mut command = tokio::process::Command::new("setpriv");
    command
        .args([
            "--reuid=pizzja",
            "--regid=pizzja",
            "--init-groups",
            "--no-new-privs",
        ])
        .args(&exec);
    let gateway = Process::start_command(command).await;
    // A registration: the database under /var/lib/pizzja is writable.
    registered_phone(&prosody).await;
    let (code, lines) = gateway.stop().await;
    assert_eq!(code, Some(0), "{lines:#?}");
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
