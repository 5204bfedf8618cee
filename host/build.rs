//! Builds the workspace's policies for wasm32-wasip2 and embeds the default
//! one as `builtin:default`, so users never build it by hand. The others
//! (used by tests) are found through `pizzja_host::testing::policy_path`.

use std::path::PathBuf;
use std::process::Command;

/// Every policy crate in the workspace: the default (embedded) first.
const POLICIES: &[&str] = &[
    "pizzja-policy-default",
    "pizzja-policy-test-hostile",
    "pizzja-policy-allow-list",
    "pizzja-policy-single-writer",
    "pizzja-policy-mirror-presence",
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest
        .parent()
        .expect("host/ lives in the workspace")
        .to_path_buf();
    // The Rust policies and what the CLI embeds; not the other languages'
    // projects, whose toolchains (node_modules, a venv) change often.
    for dir in [
        "policies/default",
        "policies/test-hostile",
        "policies/examples/allow-list",
        "policies/examples/single-writer",
        "policies/examples/mirror-presence",
        "policies/template",
        "policies/template-js",
        "guest-sdk-js/src",
        "guest-sdk-js/native",
        "guest-sdk-js/build.mjs",
        "guest-sdk-js/default-policy.js",
        "policies/template-python",
        "guest-sdk-python/pizzja_sdk",
        "guest-sdk-python/pizzja_pytest.py",
        "policies/toolchains/requirements.txt",
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
    require_wasm_target();
    // One at a time: built together, cargo would unify the default policy's
    // `export` feature into the policies that embed it.
    let built = target_dir.join("wasm32-wasip2/policy");
    let collected = target_dir.join("collected");
    std::fs::create_dir_all(&collected).expect("creating the policy output directory");
    for policy in POLICIES {
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
                policy,
            ])
            .arg("--target-dir")
            .arg(&target_dir)
            // Flags meant for the host build must not leak into the wasm build.
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .status()
            .expect("failed to run cargo for the policies");
        if !status.success() {
            panic!("building {policy} for wasm32-wasip2 failed (its errors are above)");
        }
        // Copied at once: a later build may rewrite this crate's artifact
        // with other features (as a dependency of another policy).
        let file = format!("{}.wasm", policy.replace('-', "_"));
        std::fs::copy(built.join(&file), collected.join(&file))
            .unwrap_or_else(|e| panic!("failed to copy {file}: {e}"));
    }
    println!("cargo:rustc-env=PIZZJA_POLICY_DIR={}", collected.display());
    let wasm = collected.join("pizzja_policy_default.wasm");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("default_policy.wasm");
    std::fs::copy(&wasm, &out).unwrap_or_else(|e| panic!("failed to copy {}: {e}", wasm.display()));
    templates(&root);
}

/// Writes `templates.rs` into OUT_DIR: for `pizzja policy new --lang
/// rust|js|python`, every file of the project it creates, as (path, text,
/// rendered), so that an installed binary needs no source tree. Template
/// files lose their `.tmpl` and have their `{{…}}` placeholders replaced;
/// the SDKs, the WIT world and the pinned toolchain are copied as they are.
fn templates(root: &std::path::Path) {
    let mut js = Vec::new();
    collect(&root.join("policies/template-js"), "", &mut js);
    for dir in ["src", "native"] {
        collect(
            &root.join("guest-sdk-js").join(dir),
            &format!("pizzja-sdk/{dir}/"),
            &mut js,
        );
    }
    for file in ["build.mjs", "default-policy.js"] {
        js.push((
            format!("pizzja-sdk/{file}"),
            root.join("guest-sdk-js").join(file),
        ));
    }
    js.push((
        "pizzja-sdk/wit/policy.wit".into(),
        root.join("wit/policy.wit"),
    ));
    let mut python = Vec::new();
    collect(&root.join("policies/template-python"), "", &mut python);
    collect(
        &root.join("guest-sdk-python/pizzja_sdk"),
        "pizzja_sdk/",
        &mut python,
    );
    python.push((
        "pizzja_pytest.py".into(),
        root.join("guest-sdk-python/pizzja_pytest.py"),
    ));
    python.push((
        "pizzja_sdk/wit/policy.wit".into(),
        root.join("wit/policy.wit"),
    ));
    python.push((
        "requirements.txt".into(),
        root.join("policies/toolchains/requirements.txt"),
    ));
    let mut rust = Vec::new();
    collect(&root.join("policies/template"), "", &mut rust);
    let mut code = String::new();
    for (name, files) in [
        ("RUST_TEMPLATE", rust),
        ("JS_TEMPLATE", js),
        ("PYTHON_TEMPLATE", python),
    ] {
        code.push_str(&format!(
            "/// A policy project (see build.rs).\npub const {name}: &[(&str, &str, bool)] = &[\n"
        ));
        let mut files = files;
        files.sort();
        for (file, path) in files {
            let (file, rendered) = match file.strip_suffix(".tmpl") {
                Some(n) if n.ends_with("gitignore") => (n.replace("gitignore", ".gitignore"), true),
                Some(n) => (n.to_string(), true),
                None => (file, false),
            };
            code.push_str(&format!(
                "    ({file:?}, include_str!({:?}), {rendered}),\n",
                path.display().to_string()
            ));
        }
        code.push_str("];\n");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("templates.rs");
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("failed to write {}: {e}", out.display()));
}

/// Every file under `dir`, named `prefix` + its path below `dir`.
fn collect(dir: &std::path::Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("UTF-8 names");
        if path.is_dir() {
            // Toolchains' and tests' leftovers are not part of a project.
            if !["node_modules", "__pycache__", ".pytest_cache", ".bindings"].contains(&name) {
                collect(&path, &format!("{prefix}{name}/"), out);
            }
        } else {
            out.push((format!("{prefix}{name}"), path.clone()));
        }
    }
}

/// Stops the build with the command to run when the wasm32-wasip2 standard
/// library is not installed, instead of cargo's error about `core`.
fn require_wasm_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let libdir = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", "wasm32-wasip2"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    // Without an answer, the build itself will say what is wrong.
    if libdir.is_some_and(|dir| !dir.is_dir()) {
        panic!(
            "the wasm32-wasip2 target is not installed; the policies are built for it. \
             Run `rustup toolchain install` in the repository (rust-toolchain.toml names \
             the target), or `rustup target add wasm32-wasip2`."
        );
    }
}
