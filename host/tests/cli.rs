//! The command line of INTERFACE.md: `pizzja check` and its exit codes.

use std::process::Command;

fn check(toml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pizzja.toml");
    std::fs::write(&path, toml).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_pizzja"))
        .args(["check", "--config"])
        .arg(&path)
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
