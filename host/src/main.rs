//! `pizzja`: run or check the gateway, test policies (docs/configuration.md).

use clap::{Parser, Subcommand};
use pizzja_host::config::{Config, LogFormat, PolicySource};
use pizzja_host::policy::scenario;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "pizzja",
    version,
    about = "One foreign XMPP connection, many local controllers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// The configuration file.
        #[arg(long, default_value = "pizzja.toml")]
        config: PathBuf,
    },
    /// Validate the configuration and the policy module, then exit; with
    /// scenario files, also run them against the configured policy.
    Check {
        /// The configuration file.
        #[arg(long, default_value = "pizzja.toml")]
        config: PathBuf,
        /// Also open the component link with the configured secret, and
        /// greet each `[foreign.hosts]` entry.
        #[arg(long)]
        connect: bool,
        /// Scenario files (TOML) to run against the configured policy.
        scenarios: Vec<PathBuf>,
    },
    /// Work with policy modules.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run a policy against scenario files: events in, expected actions out.
    Test {
        /// `builtin:default` or the path of a `.wasm` component.
        module: String,
        /// Scenario files (TOML).
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
    /// Start a new policy from a template: a Rust crate, or a JavaScript
    /// or Python project, in directory NAME.
    New {
        /// The directory (and project) to create.
        name: PathBuf,
        /// The language the policy is written in.
        #[arg(long, value_enum, default_value_t = Lang::Rust)]
        lang: Lang,
        /// Where pizzja's `guest-sdk` and `policies/default` are (defaults to
        /// the source tree this binary was built from).
        #[arg(long)]
        pizzja_source: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` logs as its configuration says (read first); the rest as text.
    if !matches!(cli.command, Command::Run { .. }) {
        init_logging(LogFormat::Text);
    }
    match cli.command {
        Command::Run { config } => run(&config),
        Command::Check {
            config,
            connect,
            scenarios,
        } => check(&config, connect, &scenarios),
        Command::Policy {
            command: PolicyCommand::Test { module, scenarios },
        } => run_scenarios(&module, &scenarios, None),
        Command::Policy {
            command:
                PolicyCommand::New {
                    name,
                    lang,
                    pizzja_source,
                },
        } => match new_policy(&name, lang, pizzja_source) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pizzja: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

/// Log lines to stderr, filtered by `RUST_LOG` (default `info`).
///
/// tokio-xmpp's stream layer logs every element it reads and writes at
/// trace level, the SASL exchange and registration passwords included: it
/// stays at info whatever `RUST_LOG` says. The raw XML of each link is
/// logged by the gateway itself, passwords removed (`pizzja::xml::…`).
fn init_logging(format: LogFormat) {
    let mut filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    for quiet in [
        "tokio_xmpp::xmlstream=info",
        "tokio_xmpp::stanzastream=debug",
    ] {
        if let Ok(directive) = quiet.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load(config: &Path) -> Result<(Config, pizzja_host::Prepared), ExitCode> {
    let parsed = read_config(config)?;
    Ok((parsed.clone(), prepare(parsed)?))
}

fn read_config(config: &Path) -> Result<Config, ExitCode> {
    Config::load(config).map_err(unusable)
}

fn prepare(config: Config) -> Result<pizzja_host::Prepared, ExitCode> {
    pizzja_host::prepare(config).map_err(unusable)
}

/// Says what is wrong with the configuration or the policy: exit code 2.
fn unusable(e: anyhow::Error) -> ExitCode {
    eprintln!("pizzja: {e:#}");
    ExitCode::from(2)
}

fn check(path: &Path, connect: bool, scenarios: &[PathBuf]) -> ExitCode {
    let (config, _prepared) = match load(path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    println!("pizzja: `{}` is fine", path.display());
    if connect && !check_connections(&config) {
        return ExitCode::from(1);
    }
    if scenarios.is_empty() {
        return ExitCode::SUCCESS;
    }
    let module = match &config.policy {
        PolicySource::BuiltinDefault => "builtin:default".to_string(),
        PolicySource::File(p) => p.display().to_string(),
    };
    run_scenarios(&module, scenarios, config.cache_dir.as_deref())
}

/// `check --connect`: opens the component link and greets each foreign
/// host, a line each; whether all answered.
fn check_connections(config: &Config) -> bool {
    use pizzja_host::xmpp::component;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pizzja: failed to start the runtime: {e}");
            return false;
        }
    };
    runtime.block_on(async {
        let mut all = true;
        let link = component::LinkConfig {
            jid: config.jid.clone(),
            server: config.server.clone(),
            secret: config.secret.clone(),
            ping_to: config.local_domains[0].clone(),
            unconfirmed_limit: config.link_unconfirmed_limit,
        };
        let within = std::time::Duration::from_secs(10);
        match tokio::time::timeout(within, component::probe(&link)).await {
            Ok(Ok(())) => println!(
                "ok     component link to {} as {}: the server took the secret",
                config.server, config.jid
            ),
            Ok(Err(e)) => {
                all = false;
                println!(
                    "FAILED component link to {} as {}: {e:#} (check `component.server`, `component.jid` and `component.secret` against the server's Component entry)",
                    config.server, config.jid
                );
            }
            Err(_) => {
                all = false;
                println!(
                    "FAILED component link to {}: no answer within {within:?} (check `component.server`)",
                    config.server
                );
            }
        }
        for (domain, addr) in &config.foreign_hosts {
            match component::greets(*addr, domain, within).await {
                Ok(()) => println!("ok     foreign host {domain} at {addr}: an XMPP server answers"),
                Err(e) => {
                    all = false;
                    println!(
                        "FAILED foreign host {domain} at {addr}: {e:#} (check `foreign.hosts.\"{domain}\"`)"
                    );
                }
            }
        }
        all
    })
}

/// Prints each failed case with what was expected and what came, then
/// `N passed, M failed`; exit 1 when anything failed, 2 on unusable input.
fn run_scenarios(module: &str, files: &[PathBuf], cache: Option<&Path>) -> ExitCode {
    let (mut passed, mut failed) = (0, 0);
    for file in files {
        match scenario::run_file(module, file, cache) {
            Ok(outcome) => {
                passed += outcome.passed;
                failed += outcome.failures.len();
                for failure in &outcome.failures {
                    println!("FAILED {failure}");
                }
                if outcome.failures.is_empty() {
                    println!("ok     {} ({} cases)", file.display(), outcome.passed);
                }
            }
            Err(e) => {
                eprintln!("pizzja: {e:#}");
                return ExitCode::from(2);
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The languages `pizzja policy new` writes a project in.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Lang {
    /// A Rust crate using pizzja-sdk (built with cargo).
    Rust,
    /// A JavaScript module with its SDK (built with componentize-js).
    Js,
    /// A Python module with its SDK (built with componentize-py).
    Python,
}

mod templates {
    include!(concat!(env!("OUT_DIR"), "/templates.rs"));
}

fn new_policy(dir: &Path, lang: Lang, source: Option<PathBuf>) -> anyhow::Result<()> {
    use anyhow::{Context, bail};
    if dir.exists() {
        bail!("`{}` already exists", dir.display());
    }
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .with_context(|| {
            format!(
                "`{}`: use letters, digits, - and _ for a policy name",
                dir.display()
            )
        })?;
    let (files, created) = match lang {
        Lang::Rust => (templates::RUST_TEMPLATE, "the policy"),
        Lang::Js => (templates::JS_TEMPLATE, "the JavaScript policy"),
        Lang::Python => (templates::PYTHON_TEMPLATE, "the Python policy"),
    };
    // Only the Rust crate names its dependencies by path, in this tree.
    let mut placeholders = vec![("{{name}}", name.to_string())];
    let mut shown = name.to_string();
    if let Lang::Rust = lang {
        let source = source.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
        let source = source
            .canonicalize()
            .with_context(|| format!("pizzja source `{}` not found", source.display()))?;
        let crate_name = format!("pizzja-policy-{name}").replace('_', "-");
        shown.clone_from(&crate_name);
        placeholders.extend([
            ("{{lib}}", crate_name.replace('-', "_")),
            ("{{crate}}", crate_name),
            ("{{sdk}}", source.join("guest-sdk").display().to_string()),
            (
                "{{default}}",
                source.join("policies/default").display().to_string(),
            ),
        ]);
    }
    for (file, text, rendered) in files {
        let mut text = text.to_string();
        if *rendered {
            for (placeholder, value) in &placeholders {
                text = text.replace(placeholder, value);
            }
        }
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
        std::fs::write(&path, text)
            .with_context(|| format!("failed to write `{}`", path.display()))?;
    }
    println!(
        "pizzja: created {created} `{shown}` in `{}`; see its README.md",
        dir.display()
    );
    Ok(())
}

fn run(config: &Path) -> ExitCode {
    // The file first, for the number of threads; reading TOML is quick, so a
    // SIGHUP that early is as unlikely as it is harmless to miss.
    let parsed = match read_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(parsed.log_format);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if parsed.threads > 0 {
        builder.worker_threads(parsed.threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pizzja: failed to start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // Before loading (compiling a policy takes a while): from here on SIGHUP
    // never meets its default action, which would end the process. A reload
    // asked for meanwhile is moot: the module is being read now.
    let _early_hangup = {
        let _context = runtime.enter();
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("pizzja: failed to listen for SIGHUP: {e}");
                return ExitCode::from(1);
            }
        }
    };
    tracing::info!(config = %config.display(), threads = parsed.threads, "pizzja starting");
    let prepared = match prepare(parsed) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            let _ = stop.send(true);
        });
        // The router runs as a task on a worker thread, beside the account
        // tasks it feeds; from block_on it would run on this thread, and
        // every stanza would cross threads once more.
        match tokio::spawn(pizzja_host::run(prepared, shutdown, None)).await {
            Ok(result) => result,
            Err(e) => Err(anyhow::anyhow!("the gateway task failed: {e}")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pizzja: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
