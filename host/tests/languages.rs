//! Policies in every language get the same sandbox (deadline, memory cap,
//! traps that fail one decision, no clock, no network), the same store and
//! the same rollback: one set of tests runs against the hostile policy in
//! Rust, JavaScript and Python, which answer the same words the same way.
//! The JavaScript and Python ports of the default and allow-list policies
//! pass the Rust ones' scenario files.
//!
//! The JavaScript and Python components are built by `cargo xtask test`
//! (guest-sdk-js/build.sh, guest-sdk-python/build.sh) into
//! `target/policies`; a missing one fails the test with the command that
//! builds it. The Rust ones come with the host's build.

use pizzja_host::policy::bindings::Facts;
use pizzja_host::policy::{DecideError, EngineOptions, Limits, PolicyEngine, scenario};
use pizzja_host::testing::{
    assert_recovers, facts_of, guest_build, log_lines as logs, message_with_body as message,
    policy_path,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn limits() -> Limits {
    Limits {
        deadline: Duration::from_millis(500),
        memory: 64 << 20,
    }
}

/// Compiled code is cached across tests: a 12 MB component takes seconds
/// to compile.
fn cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("policy-cache")
}

fn options() -> EngineOptions {
    EngineOptions {
        cache_dir: Some(cache()),
        ..EngineOptions::with_limits(limits())
    }
}

/// The build of `policy` (`test-hostile`, `default`, `allow-list`) in
/// `lang`.
fn build_of(policy: &str, lang: &str) -> PathBuf {
    match lang {
        "rust" => policy_path(&format!("pizzja_policy_{}", policy.replace('-', "_"))),
        _ => guest_build(&format!("{policy}-{lang}")),
    }
}

fn load(policy: &str, lang: &str, config: &[(&str, &str)]) -> anyhow::Result<PolicyEngine> {
    let name = format!("{policy}-{lang}");
    let bytes = std::fs::read(build_of(policy, lang)).expect("readable");
    let config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    PolicyEngine::new(&name, &bytes, config, options())
}

fn facts() -> Facts {
    facts_of("alice@l.test")
}

/// The one log line of a decision that succeeded.
fn said(engine: &PolicyEngine, word: &str, facts: &Facts) -> String {
    let actions = engine
        .decide(&message(word), facts)
        .unwrap_or_else(|e| panic!("`{word}` decides: {e}"));
    logs(&actions).join("\n")
}

/// Runs `scenarios` against the component `module` and against Rust's
/// `builtin:default`-or-example equivalent, returning (passed, failures).
fn run_scenarios(module: &Path, scenarios: &Path) -> (usize, Vec<String>) {
    let module = module.display().to_string();
    let outcome = scenario::run_file(&module, scenarios, Some(&cache()))
        .unwrap_or_else(|e| panic!("{}: {e:#}", scenarios.display()));
    (outcome.passed, outcome.failures)
}

fn scenario_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scenarios in {}", dir.display());
    files
}

/// The sandbox's tests, for each language (see [`build_of`]).
macro_rules! for_each_language {
    ($($lang:ident),* $(,)?) => {$(
        mod $lang {
            use super::*;

            const LANG: &str = stringify!($lang);

            fn hostile() -> PolicyEngine {
                load("test-hostile", LANG, &[]).expect("the hostile policy loads")
            }

            #[test]
            fn an_uncaught_error_fails_only_that_decision_and_says_what_it_was() {
                let engine = hostile();
                let err = engine.decide(&message("trap"), &facts()).expect_err("it throws");
                assert!(matches!(err, DecideError::Trap { .. }), "{err}");
                // What the guest wrote comes with the error, escaped: it
                // cannot make lines of the log.
                let text = format!("{err}");
                let wrote = text.split("it wrote: ").nth(1).expect("what it wrote");
                assert!(wrote.contains("on purpose"), "the exception's message: {text}");
                assert!(!wrote.contains('\n'), "{text}");
                assert_recovers(&engine);
            }

            #[test]
            fn what_it_prints_reaches_only_the_failed_call_s_error() {
                let engine = hostile();
                // A decision that prints and succeeds: the output is dropped with it.
                let actions = engine.decide(&message("print"), &facts()).expect("decides");
                assert!(!actions.is_empty());
                let err = engine
                    .decide(&message("print-and-trap"), &facts())
                    .expect_err("it throws");
                let text = format!("{err}");
                assert!(text.contains("to stderr"), "what it printed: {text}");
                assert!(text.contains("thrown on purpose"), "the exception: {text}");
                assert!(!text.contains("to stdout"), "only this call's output: {text}");
            }

            #[test]
            fn an_endless_loop_is_stopped_at_the_deadline() {
                let engine = hostile();
                let start = Instant::now();
                let err = engine.decide(&message("loop"), &facts()).expect_err("interrupted");
                let elapsed = start.elapsed();
                assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
                assert!(elapsed >= limits().deadline, "stopped after {elapsed:?}");
                assert!(format!("{err}").contains("deadline"), "{err}");
                assert_recovers(&engine);
            }

            #[test]
            fn a_memory_bomb_hits_the_cap() {
                let engine = hostile();
                let err = engine.decide(&message("grow"), &facts()).expect_err("capped");
                assert!(matches!(err, DecideError::Trap { .. }), "{err}");
                assert_recovers(&engine);
            }

            #[test]
            fn the_network_is_refused() {
                let engine = hostile();
                match engine.decide(&message("net"), &facts()) {
                    Ok(actions) => {
                        let text = logs(&actions).join("\n");
                        assert!(text.starts_with("net:"), "{text}");
                        assert!(!text.contains("connected"), "{text}");
                    }
                    Err(e) => assert!(
                        format!("{e}").contains("policies have no files, sockets or HTTP"),
                        "the refusal says why: {e}"
                    ),
                }
                assert_recovers(&engine);
            }

            #[test]
            fn its_clocks_stand_still() {
                let engine = hostile();
                let text = said(&engine, "clock", &facts());
                let numbers: Vec<f64> = text
                    .trim_start_matches("clock: ")
                    .split_whitespace()
                    .map(|n| n.parse().unwrap_or_else(|_| panic!("a number in {text:?}")))
                    .collect();
                assert!(!numbers.is_empty() && numbers.iter().all(|n| *n == 0.0), "{text}");
            }

            #[test]
            fn the_store_is_per_account_and_survives_traps_and_swaps() {
                let engine = hostile();
                let (alice, bob) = (facts_of("alice@l.test"), facts_of("bob@l.test"));
                assert_eq!(said(&engine, "remember lunch at noon", &alice), "stored");
                assert_eq!(said(&engine, "recall", &bob), "memo: null");
                engine.decide(&message("trap"), &alice).expect_err("traps");
                assert_eq!(said(&engine, "recall", &alice), "memo: \"lunch at noon\"");
                let bytes = std::fs::read(build_of("test-hostile", LANG)).expect("built");
                engine.replace("again", &bytes, vec![]).expect("swaps");
                assert_eq!(said(&engine, "recall", &alice), "memo: \"lunch at noon\"");
            }

            #[test]
            fn the_store_is_bounded() {
                let engine = hostile();
                let text = said(&engine, "fill", &facts());
                assert!(text.starts_with("refused:") && text.contains("limit"), "{text}");
            }

            #[test]
            fn a_configuration_init_refuses_refuses_the_policy() {
                let err = load("default", LANG, &[("initial_presence", "sometimes")])
                    .err()
                    .expect("refused");
                let text = format!("{err:#}");
                assert!(text.contains("initial_presence must be"), "{text}");
            }

            #[test]
            fn a_new_policy_that_keeps_trapping_is_rolled_back() {
                use pizzja_host::policy::{PolicyEvent, ROLLBACK_TRAPS};
                let engine = PolicyEngine::new(
                    "builtin:default",
                    pizzja_host::policy::BUILTIN_DEFAULT,
                    vec![],
                    options(),
                )
                .expect("loads");
                let mut events = engine.events();
                let bytes = std::fs::read(build_of("test-hostile", LANG)).expect("built");
                let always_trap = vec![("always".to_string(), "trap".to_string())];
                engine.replace("always-traps", &bytes, always_trap).expect("it loads");
                assert!(matches!(events.try_recv(), Ok(PolicyEvent::Loaded { .. })));
                for _ in 0..ROLLBACK_TRAPS {
                    engine.decide(&message("hello"), &facts()).expect_err("the new policy traps");
                }
                match events.try_recv().expect("an event") {
                    PolicyEvent::RolledBack { from, to } => {
                        assert_eq!((from.as_str(), to.as_str()), ("always-traps", "builtin:default"))
                    }
                    other => panic!("expected RolledBack, got {other:?}"),
                }
                assert_eq!(engine.current().name, "builtin:default");
                assert_recovers(&engine);
            }
        }
    )*};
}

for_each_language!(rust, js, python);

/// The ports' tests, for each language but Rust.
macro_rules! ports {
    ($($lang:ident),* $(,)?) => {$(
        mod $lang {
            use super::*;

            const LANG: &str = stringify!($lang);

            #[test]
            fn the_default_port_passes_the_rust_default_s_scenarios() {
                let port = build_of("default", LANG);
                for file in scenario_files("policies/default/scenarios") {
                    let (rust, _) = run_scenarios(Path::new("builtin:default"), &file);
                    let (passed, failures) = run_scenarios(&port, &file);
                    assert!(failures.is_empty(), "{}:\n{}", file.display(), failures.join("\n"));
                    assert_eq!(passed, rust, "{}", file.display());
                }
            }

            #[test]
            fn the_allow_list_port_passes_the_rust_example_s_scenarios() {
                let port = build_of("allow-list", LANG);
                for file in scenario_files("policies/examples/allow-list/scenarios") {
                    let (passed, failures) = run_scenarios(&port, &file);
                    assert!(failures.is_empty(), "{}:\n{}", file.display(), failures.join("\n"));
                    assert!(passed >= 3, "{}: {passed} cases", file.display());
                }
            }
        }
    )*};
}

mod ports {
    use super::*;
    ports!(js, python);
}

/// JavaScript has no way to wait synchronously; Rust's `thread::sleep` and
/// Python's `time.sleep` ask WASI to, and are stopped at once with the
/// reason.
#[test]
fn a_policy_that_sleeps_is_stopped_at_once_with_the_reason() {
    for lang in ["rust", "python"] {
        let engine = load("test-hostile", lang, &[]).expect("loads");
        let start = Instant::now();
        let err = engine
            .decide(&message("sleep"), &facts())
            .expect_err("a policy cannot wait");
        assert!(
            format!("{err}").contains("policies cannot wait"),
            "{lang}: {err}"
        );
        assert!(
            start.elapsed() < limits().deadline,
            "{lang}: took {:?}",
            start.elapsed()
        );
        assert_recovers(&engine);
    }
}

/// Where `cargo xtask setup` installed the JavaScript toolchain.
fn js_toolchain() -> PathBuf {
    std::env::var_os("PIZZJA_JS_TOOLCHAIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/toolchains"),
        PathBuf::from,
    )
}

fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    pizzja_tests::output_of(
        std::process::Command::new(program)
            .args(args)
            .current_dir(dir),
    )
}

#[test]
fn policy_new_lang_js_makes_a_project_that_tests_builds_and_passes_its_scenarios() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("my-rules");
    let pizzja = env!("CARGO_BIN_EXE_pizzja");
    let made = run(
        tmp.path(),
        pizzja,
        &["policy", "new", "--lang", "js", "my-rules"],
    );
    assert!(made.contains("created the JavaScript policy"), "{made}");
    for file in [
        "package.json",
        "policy.js",
        "README.md",
        ".gitignore",
        "test/policy.test.js",
        "scenarios/basics.toml",
        "pizzja-sdk/src/escape.js",
        "pizzja-sdk/build.mjs",
        "pizzja-sdk/wit/policy.wit",
    ] {
        assert!(dir.join(file).is_file(), "{file} is missing");
    }
    // The project pins exactly what `cargo xtask setup` installs and tests.
    let json = |path: PathBuf| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON")
    };
    let project = json(dir.join("package.json"));
    let toolchain =
        json(Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/toolchains/package.json"));
    assert_eq!(
        project["devDependencies"], toolchain["dependencies"],
        "the template's pins differ from policies/toolchains"
    );
    // `npm install` would fetch what policies/toolchains holds already.
    let modules = js_toolchain().join("node_modules");
    assert!(
        modules.is_dir(),
        "{} is missing: run `cargo xtask setup`",
        modules.display()
    );
    std::os::unix::fs::symlink(&modules, dir.join("node_modules")).expect("symlink");
    let tested = run(&dir, "npm", &["test"]);
    assert!(
        tested.contains("# pass 1") && tested.contains("# fail 0"),
        "{tested}"
    );
    run(&dir, "npm", &["run", "build"]);
    assert!(dir.join("my-rules.wasm").is_file());
    let scenarios = run(
        &dir,
        pizzja,
        &["policy", "test", "my-rules.wasm", "scenarios/basics.toml"],
    );
    assert!(scenarios.contains("3 passed, 0 failed"), "{scenarios}");
    // A second `new` never overwrites.
    let again = std::process::Command::new(pizzja)
        .args(["policy", "new", "--lang", "js", "my-rules"])
        .current_dir(tmp.path())
        .output()
        .expect("run");
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

/// Where `cargo xtask setup` made the Python toolchain's venv.
fn python_toolchain() -> PathBuf {
    std::env::var_os("PIZZJA_PYTHON_TOOLCHAIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/toolchains/python"),
        PathBuf::from,
    )
}

#[test]
fn policy_new_lang_python_makes_a_project_that_tests_builds_and_passes_its_scenarios() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("my_rules");
    let pizzja = env!("CARGO_BIN_EXE_pizzja");
    let made = run(
        tmp.path(),
        pizzja,
        &["policy", "new", "--lang", "python", "my_rules"],
    );
    assert!(made.contains("created the Python policy"), "{made}");
    for file in [
        "app.py",
        "conftest.py",
        "test_policy.py",
        "requirements.txt",
        "README.md",
        ".gitignore",
        "scenarios/basics.toml",
        "pizzja_pytest.py",
        "pizzja_sdk/escape.py",
        "pizzja_sdk/default.py",
        "pizzja_sdk/wit/policy.wit",
    ] {
        assert!(dir.join(file).is_file(), "{file} is missing");
    }
    assert!(!dir.join("pizzja_sdk/__pycache__").exists());
    let requirements = std::fs::read_to_string(dir.join("requirements.txt")).expect("read");
    assert!(
        requirements.contains("componentize-py==0.25.1"),
        "pinned: {requirements}"
    );
    // The venv the README makes holds what target/toolchains/python holds.
    let bin = python_toolchain().join("bin");
    assert!(
        bin.join("componentize-py").is_file(),
        "{} is missing: run `cargo xtask setup`",
        bin.display()
    );
    let tested = run(&dir, &bin.join("pytest").display().to_string(), &["-q"]);
    assert!(tested.contains("1 passed"), "{tested}");
    run(
        &dir,
        &bin.join("componentize-py").display().to_string(),
        &[
            "-d",
            "pizzja_sdk/wit",
            "-w",
            "policy",
            "componentize",
            "app",
            "-o",
            "my_rules.wasm",
        ],
    );
    let scenarios = run(
        &dir,
        pizzja,
        &["policy", "test", "my_rules.wasm", "scenarios/basics.toml"],
    );
    assert!(scenarios.contains("3 passed, 0 failed"), "{scenarios}");
}
