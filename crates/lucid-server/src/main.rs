//! `lucid`: `serve` (REST + WebSocket API), `run` (one task in the terminal), `doctor`.

use clap::Parser;
use lucid_server::cli::{self, Cli};

#[tokio::main]
async fn main() {
    let args = Cli::parse();
    cli::init_tracing(&args);
    let code = match cli::dispatch(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
