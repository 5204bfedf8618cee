//! The command line (docs/configuration.md): `pizzja check` and its exit codes.

use std::process::Command;

fn check(toml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pizzja.toml");
    std::fs::write(&path, toml).expect("write config");
    pizzja(&["check", "--config", &path.display().to_string()])
}

const BASE: &str = r#"
[component]
jid = "gw.example.org"
server = "127.0.0.1:5347"
secret = "s3cret"
"#;

#[test]
fn a_good_configuration_checks_fine() {
    let (code, text) = check(BASE);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("is fine"), "{text}");
    assert!(!text.contains("s3cret"), "the secret was printed: {text}");
}

#[test]
fn a_bad_key_exits_2_and_names_it() {
    let (code, text) = check(&format!("{BASE}\n[foreign]\ntls = \"sometimes\"\n"));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("foreign.tls"), "{text}");
}

#[test]
fn a_missing_policy_file_exits_2_and_names_it() {
    let (code, text) = check(&format!("{BASE}\n[policy]\nmodule = \"nowhere.wasm\"\n"));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("nowhere.wasm"), "{text}");
}

#[test]
fn a_policy_configuration_the_policy_refuses_exits_2() {
    let (code, text) = check(&format!(
        "{BASE}\n[policy.config]\ninitial_presence = \"sometimes\"\n"
    ));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("initial_presence"), "{text}");
}

#[test]
fn a_missing_configuration_file_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_pizzja"))
        .args(["check", "--config", "/nonexistent/pizzja.toml"])
        .output()
        .expect("run pizzja");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/pizzja.toml"));
}

/// Runs `pizzja` in directory `cwd`, as someone following the README does.
fn pizzja_in(cwd: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pizzja"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run pizzja");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_relative_config_and_no_config_both_check_and_resolve_paths_beside_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = dir.path().join("site");
    std::fs::create_dir(&site).expect("mkdir");
    std::fs::copy(
        pizzja_host::testing::policy_path("pizzja_policy_allow_list"),
        site.join("allow.wasm"),
    )
    .expect("copy a policy");
    let toml = format!(
        "{BASE}\n[storage]\ndatabase = \"gw.sqlite3\"\n[policy]\nmodule = \"allow.wasm\"\n"
    );
    std::fs::write(site.join("pizzja.toml"), toml).expect("write config");

    // From the configuration's own directory: relative, then implied.
    for args in [&["check", "--config", "pizzja.toml"][..], &["check"]] {
        let (code, text) = pizzja_in(&site, args);
        assert_eq!(code, 0, "{args:?}: {text}");
        assert!(text.contains("is fine"), "{args:?}: {text}");
    }
    assert!(
        site.join("gw.sqlite3").is_file(),
        "database beside the file"
    );
    assert!(
        site.join("pizzja-cache").is_dir(),
        "cache beside the database"
    );

    // From elsewhere: the paths still resolve beside the file, not the cwd.
    std::fs::remove_file(site.join("gw.sqlite3")).expect("rm database");
    let (code, text) = pizzja_in(dir.path(), &["check", "--config", "site/pizzja.toml"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        site.join("gw.sqlite3").is_file(),
        "database beside the file"
    );
    assert!(
        !dir.path().join("gw.sqlite3").exists(),
        "nothing in the cwd"
    );
}

fn pizzja(args: &[&str]) -> (i32, String) {
    pizzja_in(&std::env::current_dir().expect("a working directory"), args)
}

/// The default policy's scenarios for docs/behaviour.md section 3.
const SESSIONS_SCENARIOS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../policies/default/scenarios/3-sessions.toml"
);

#[test]
fn policy_test_passes_the_default_scenarios() {
    let (code, text) = pizzja(&["policy", "test", "builtin:default", SESSIONS_SCENARIOS]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(" passed, 0 failed"), "{text}");
}

#[test]
fn policy_test_shows_what_was_expected_and_what_came_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("wrong.toml");
    std::fs::write(
        &file,
        r#"
[[case]]
name = "a deliberately wrong expectation"
controllers = ["Work/phone"]
event.local.stanza = "<presence from='alice@example.org/Work/phone' to='gw.example.org'/>"
expect = [{ close_session = "Work" }]
"#,
    )
    .expect("write scenario");
    let (code, text) = pizzja(&[
        "policy",
        "test",
        "builtin:default",
        &file.display().to_string(),
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("FAILED") && text.contains("a deliberately wrong expectation"),
        "{text}"
    );
    assert!(
        text.contains("CloseSession(\"Work\")") && text.contains("open_session \"Work\""),
        "{text}"
    );
    assert!(text.contains("0 passed, 1 failed"), "{text}");
}

#[test]
fn check_runs_scenarios_against_the_configured_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("pizzja.toml");
    std::fs::write(&config, BASE).expect("write config");
    let scenarios = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policies/default/scenarios/4-local-to-foreign.toml"
    );
    let (code, text) = pizzja(&[
        "check",
        "--config",
        &config.display().to_string(),
        scenarios,
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("is fine") && text.contains(" passed, 0 failed"),
        "{text}"
    );
}

#[test]
fn policy_new_makes_a_policy_that_builds_and_passes_its_scenarios() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("my-first");
    let (code, text) = pizzja(&["policy", "new", &policy.display().to_string()]);
    assert_eq!(code, 0, "{text}");
    // Built as a user would; a target directory shared across runs keeps it quick.
    let target = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/template-check");
    let built = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--target", "wasm32-wasip2", "--release"])
        .env("CARGO_TARGET_DIR", target)
        .current_dir(&policy)
        .status()
        .expect("run cargo");
    assert!(built.success(), "the new policy does not build");
    let module = format!("{target}/wasm32-wasip2/release/pizzja_policy_my_first.wasm");
    let scenarios = policy.join("scenarios/basics.toml");
    let (code, text) = pizzja(&["policy", "test", &module, &scenarios.display().to_string()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("1 passed, 0 failed"), "{text}");
    // And it refuses to overwrite.
    let (code, text) = pizzja(&["policy", "new", &policy.display().to_string()]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("already exists"), "{text}");
}

#[test]
fn sighup_reloads_the_policy_and_sigterm_exits_cleanly() {
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;
    use std::time::Duration;
    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("policy.wasm");
    std::fs::write(&module, pizzja_host::policy::BUILTIN_DEFAULT).expect("install a module");
    // Nobody listens on the component port: the gateway keeps retrying the
    // link, and reloads work regardless.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let config = dir.path().join("pizzja.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[policy]\nmodule = \"policy.wasm\"\n",
            BASE.replace("127.0.0.1:5347", &closed.to_string())
        ),
    )
    .expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pizzja"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start pizzja");
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_for = |what: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match lines.recv_timeout(left) {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("pizzja never logged {what:?}");
    };
    // SIGHUP while the policy is still being loaded must not end it.
    wait_for("pizzja starting");
    let pid = child.id().to_string();
    let signal = |name: &str| {
        assert!(
            Command::new("kill")
                .args([name, &pid])
                .status()
                .expect("kill")
                .success()
        )
    };
    signal("-HUP");
    wait_for("policy loaded");
    wait_for("component link failed");
    let hostile = std::fs::read(pizzja_host::testing::policy_path(
        "pizzja_policy_test_hostile",
    ))
    .expect("built");
    std::fs::write(&module, hostile).expect("replace the module");
    signal("-HUP");
    let swapped = wait_for("policy swapped in");
    assert!(swapped.contains("policy.wasm"), "{swapped}");
    signal("-TERM");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean shutdown");
}

/// Runs `pizzja policy test` on the default policy's scenarios, with
/// `PIZZJA_PERF_MAP` as given, and returns the perf map the process left.
fn perf_map_of_a_run(perf_map: Option<&str>) -> Option<String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pizzja"));
    command
        .args(["policy", "test", "builtin:default", SESSIONS_SCENARIOS])
        .env("RUST_LOG", "warn")
        .env_remove("PIZZJA_PERF_MAP");
    if let Some(value) = perf_map {
        command.env("PIZZJA_PERF_MAP", value);
    }
    let child = command
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run pizzja");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait for pizzja");
    assert!(out.status.success(), "pizzja policy test failed");
    let path = format!("/tmp/perf-{pid}.map");
    let map = std::fs::read_to_string(&path).ok();
    let _ = std::fs::remove_file(&path);
    map
}

#[test]
fn pizzja_perf_map_names_the_policy_s_code_for_perf() {
    let map = perf_map_of_a_run(Some("1")).expect("PIZZJA_PERF_MAP=1 wrote no perf map");
    // perf's format: start address, size (hex), name; one line per
    // function (`0x7f7c8b38d000 42 wasm[0]::function[19]`).
    let functions: Vec<&str> = map.lines().filter(|l| l.contains("wasm")).collect();
    assert!(
        functions.len() > 10,
        "too few of the policy's functions in the map:\n{map}"
    );
    for line in &functions {
        let fields: Vec<&str> = line.splitn(3, ' ').collect();
        assert_eq!(fields.len(), 3, "not a perf map line: {line}");
        let start = fields[0].trim_start_matches("0x");
        assert!(u64::from_str_radix(start, 16).is_ok(), "{line}");
        assert!(u64::from_str_radix(fields[1], 16).is_ok(), "{line}");
    }
    assert_eq!(perf_map_of_a_run(None), None, "a perf map without asking");
}

/// `pizzja check --connect`: the component link opened with the secret,
/// each foreign host greeted, a clear line for each failure and exit 1.
#[tokio::test]
async fn check_connect_opens_the_link_and_greets_each_foreign_host() {
    use pizzja_tests::*;
    let prosody = Prosody::start(&[("alice", LOCAL)]).await.expect("prosody");
    let dir = prosody.dir.path();
    let db = dir.join("pizzja.sqlite3");
    let run = |toml: String| {
        let path = dir.join("connect.toml");
        std::fs::write(&path, toml).expect("config written");
        pizzja(&[
            "check",
            "--connect",
            "--config",
            &path.display().to_string(),
        ])
    };

    let (code, text) = run(prosody.gateway_toml(&db, ""));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("ok     component link"), "{text}");
    assert!(text.contains("ok     foreign host foreign.test"), "{text}");

    // A wrong secret, and a foreign host where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let toml = prosody
        .gateway_toml(&db, &format!("\"nowhere.test\" = \"{closed}\"\n"))
        .replace(&format!("secret = \"{SECRET}\""), "secret = \"wrong\"");
    let (code, text) = run(toml);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("FAILED component link") && text.contains("component.secret"),
        "{text}"
    );
    assert!(
        text.contains(&format!("FAILED foreign host nowhere.test at {closed}")),
        "{text}"
    );
    assert!(text.contains("ok     foreign host foreign.test"), "{text}");
    assert!(!text.contains("wrong"), "the secret was printed: {text}");
}
