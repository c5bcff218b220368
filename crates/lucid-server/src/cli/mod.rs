//! The `lucid` command line: argument parsing and dispatch to the subcommands.

mod doctor;
mod run;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "lucid",
    version,
    about = "Lucid: an AI software engineer in a Docker sandbox"
)]
pub struct Cli {
    /// More logging (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the REST + WebSocket API (local mode needs no settings).
    Serve(serve::ServeArgs),
    /// Run one task in the terminal with live progress.
    Run(run::RunArgs),
    /// Check configuration, data directory (or, in Supabase mode, the project: reachability,
    /// keys, applied migrations), Docker and LLM providers.
    Doctor,
}

pub fn init_tracing(cli: &Cli) {
    let default = match (cli.verbose, &cli.command) {
        (0, Command::Run(_)) | (0, Command::Doctor) => "warn",
        (0, _) => "info,tower_http=warn",
        (1, _) => "debug,hyper=info,bollard=info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LUCID_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs a subcommand and returns the process exit code.
pub async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Serve(args) => serve::serve(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Doctor => doctor::doctor().await,
    }
}
