//! Builds the policy micro-benchmark's probe component (`probe/`) for
//! wasm32-wasip2; the benchmark finds it at `PIZZJA_PROBE_WASM`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest
        .parent()
        .expect("benches/ lives in the workspace")
        .to_path_buf();
    for dir in [
        "benches/probe",
        "policies/default/src",
        "policies/default/Cargo.toml",
        "guest-sdk/src",
        "guest-sdk/Cargo.toml",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    // A target directory of its own: the outer build holds the lock on its
    // own, and the probe's build of the default policy (without `export`)
    // never meets the host's.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-probe");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "policy",
            "-p",
            "pizzja-probe",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        // Flags meant for the host build must not leak into the wasm build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .expect("failed to run cargo for the probe");
    if !status.success() {
        panic!(
            "building pizzja-probe for wasm32-wasip2 failed (its errors are above); \
             without the target, run `rustup toolchain install` in the repository \
             or `rustup target add wasm32-wasip2`"
        );
    }
    let wasm = target_dir.join("wasm32-wasip2/policy/pizzja_probe.wasm");
    println!("cargo:rustc-env=PIZZJA_PROBE_WASM={}", wasm.display());
}
