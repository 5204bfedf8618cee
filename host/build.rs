//! Builds the default policy for wasm32-wasip2 and embeds it as
//! `builtin:default`, so users never build it by hand.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest
        .parent()
        .expect("host/ lives in the workspace")
        .to_path_buf();
    for dir in [
        "policies/default/src",
        "policies/default/Cargo.toml",
        "guest-sdk/src",
        "guest-sdk/Cargo.toml",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    // A target directory of its own: the outer build holds the lock on its own.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-policies");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "-p",
            "pizzja-policy-default",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "policy",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        // Flags meant for the host build must not leak into the wasm build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .expect("failed to run cargo for the default policy");
    if !status.success() {
        panic!(
            "building the default policy for wasm32-wasip2 failed; is the target installed? \
             (rustup target add wasm32-wasip2)"
        );
    }
    let wasm = target_dir.join("wasm32-wasip2/policy/pizzja_policy_default.wasm");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("default_policy.wasm");
    std::fs::copy(&wasm, &out).unwrap_or_else(|e| panic!("failed to copy {}: {e}", wasm.display()));
}
