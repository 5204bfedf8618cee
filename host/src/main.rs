//! `pizzja`: run or check the gateway (see INTERFACE.md).

use clap::{Parser, Subcommand};
use pizzja_host::config::Config;
use std::path::PathBuf;
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
    /// Validate the configuration and the policy module, then exit.
    Check {
        /// The configuration file.
        #[arg(long, default_value = "pizzja.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (Command::Run { config } | Command::Check { config }) = &cli.command;
    let prepared = match Config::load(config).and_then(pizzja_host::prepare) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pizzja: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Command::Check { .. } = cli.command {
        println!("pizzja: `{}` is fine", config.display());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pizzja: failed to start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            let _ = stop.send(true);
        });
        pizzja_host::run(prepared, shutdown, None).await
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
