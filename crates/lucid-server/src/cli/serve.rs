//! `lucid serve`: the HTTP API on HOST:PORT (default 127.0.0.1:8000).

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use lucid_engine::engine::LOCAL_USER_ID;
use lucid_engine::{Config, Engine};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to bind (default HOST or 127.0.0.1). Binding beyond loopback exposes the API.
    #[arg(long)]
    pub host: Option<String>,
    /// Port (default PORT or 8000).
    #[arg(long)]
    pub port: Option<u16>,
    /// Print a bearer token for local mode and exit. In Supabase mode Lucid issues no
    /// tokens (they come from Supabase Auth): the command says so on stderr and exits with
    /// status 3.
    #[arg(long)]
    pub print_token: bool,
    /// User id of the printed token.
    #[arg(long, default_value = LOCAL_USER_ID, requires = "print_token")]
    pub user: String,
    /// Validity of the printed token, in days.
    #[arg(long, default_value_t = 30, requires = "print_token")]
    pub days: u64,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<i32> {
    let mut config = Config::from_env().context("invalid configuration")?;
    if let Some(host) = args.host {
        config.host = host;
    }
    if let Some(port) = args.port {
        config.port = port;
    }
    if args.print_token {
        if let Some(supabase) = &config.supabase {
            eprintln!(
                "lucid serve --print-token: Supabase mode (SUPABASE_URL is set): Lucid issues \
                 no tokens; access tokens come from Supabase Auth ({}/auth/v1). Sign in through \
                 the web UI that `lucid serve` shows, and send a Supabase access token as \
                 `Authorization: Bearer <token>` to the API.",
                supabase.url
            );
            return Ok(EXIT_NO_TOKEN_IN_SUPABASE_MODE);
        }
        // Only the secret is needed; avoid touching Docker.
        let token = print_token(&config, &args.user, Duration::from_secs(args.days * 86_400))?;
        println!("{token}");
        return Ok(0);
    }
    let engine = Engine::start(config.clone())
        .await
        .context("engine failed to start")?;
    let addr = format!("{}:{}", config.host, config.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        tracing::warn!(%local, "listening beyond loopback: the API is reachable from the network");
    }
    eprintln!(
        "Lucid listening on http://{local} ({} mode, data in {})",
        if config.is_local_mode() {
            "local"
        } else {
            "Supabase"
        },
        config.data_dir.display()
    );
    match &config.supabase {
        None => print_sign_in_link(&config, local),
        Some(supabase) => print_supabase_sign_in(&supabase.url, local),
    }
    let app = crate::router(engine.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    eprintln!("Shutting down: stopping sessions and removing sandboxes...");
    engine.shutdown().await;
    Ok(0)
}

/// Exit status of `lucid serve --print-token` in Supabase mode, where Lucid issues no tokens
/// (scripts/run.sh tells it apart from a real failure).
pub const EXIT_NO_TOKEN_IN_SUPABASE_MODE: i32 = 3;

/// How long the printed sign-in link stays valid.
const LINK_TOKEN_TTL: Duration = Duration::from_secs(7 * 86_400);

/// Prints a link that opens the UI and signs the browser in (the token travels in the URL
/// fragment, which browsers never send to the server). Only on stdout, never in the logs.
fn print_sign_in_link(config: &Config, local: std::net::SocketAddr) {
    let host = display_host(local);
    match print_token(config, LOCAL_USER_ID, LINK_TOKEN_TTL) {
        Ok(token) => {
            if !crate::ui::UI_BUILT {
                println!("(The web UI was not built into this binary: see ui/README.md.)");
            }
            println!(
                "Open Lucid in your browser (this link signs you in for 7 days; keep it private):"
            );
            println!("  http://{host}:{}/#token={token}", local.port());
        }
        Err(e) => eprintln!("no sign-in link: {e}"),
    }
}

/// Supabase mode: the UI's address and where tokens come from (no token is printed: Lucid
/// does not issue them in this mode).
fn print_supabase_sign_in(supabase_url: &str, local: std::net::SocketAddr) {
    if !crate::ui::UI_BUILT {
        println!("(The web UI was not built into this binary: see ui/README.md.)");
    }
    println!("Supabase mode: open Lucid in your browser and sign in with your Supabase account:");
    println!("  http://{}:{}/", display_host(local), local.port());
    println!(
        "Access tokens are issued by Supabase Auth ({supabase_url}/auth/v1); API clients send \
         one as `Authorization: Bearer <access token>`."
    );
}

/// The host part of a URL for the bound address (loopback for a wildcard bind).
fn display_host(local: std::net::SocketAddr) -> String {
    if local.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        match local.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        }
    }
}

fn print_token(config: &Config, user: &str, ttl: Duration) -> anyhow::Result<String> {
    lucid_engine::engine::issue_local_token(config, user, ttl)
        .map_err(|e| anyhow::anyhow!(e.message))
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
