//! Every policy's scenario files, run against its built module.

use pizzja_host::policy::scenario::run_file;
use pizzja_host::testing::policy_path;
use std::path::{Path, PathBuf};

fn scenario_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scenarios in {}", dir.display());
    files
}

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn run_all(module: &str, dir: &Path) -> usize {
    let mut passed = 0;
    let mut failures = Vec::new();
    for file in scenario_files(dir) {
        let outcome =
            run_file(module, &file, None).unwrap_or_else(|e| panic!("{}: {e:#}", file.display()));
        passed += outcome.passed;
        failures.extend(outcome.failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    passed
}

#[test]
fn the_default_policy_passes_its_scenarios() {
    let passed = run_all("builtin:default", &policies_dir().join("default/scenarios"));
    assert!(passed >= 25, "only {passed} cases ran");
}

#[test]
fn the_embedded_default_is_the_built_default() {
    // The same scenarios against the module file the build produced.
    let module = policy_path("pizzja_policy_default");
    run_all(
        &module.display().to_string(),
        &policies_dir().join("default/scenarios"),
    );
}

#[test]
fn every_example_policy_passes_its_scenarios() {
    for (dir, module) in [
        ("allow-list", "pizzja_policy_allow_list"),
        ("single-writer", "pizzja_policy_single_writer"),
        ("mirror-presence", "pizzja_policy_mirror_presence"),
    ] {
        let module = policy_path(module).display().to_string();
        let passed = run_all(
            &module,
            &policies_dir().join("examples").join(dir).join("scenarios"),
        );
        assert!(passed >= 3, "{dir}: only {passed} cases ran");
    }
}
