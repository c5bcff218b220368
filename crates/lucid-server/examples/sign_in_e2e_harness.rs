//! Harness for the browser sign-in test (`ui/e2e/sign-in.mjs`): starts a local Supabase project
//! with its Auth (lucid-testkit `SupabaseProject::start_with_auth`: the fake Supabase Auth in
//! front of Postgres and the PostgREST stand-in; access tokens live 63 s so the page's silent
//! refresh, 60 s before expiry, happens during the test) and the real `lucid serve` (given with
//! `--lucid PATH`) in Supabase mode on a free loopback port (store: the project through
//! PostgREST; sandbox: local processes, unused here). Prints one JSON line `{"base", "control"}`, then serves a control API:
//! `GET /auth/stats` → `{"liveSessions", "refreshes", "logouts"}`.
//!
//! Ends (stopping `lucid serve` with SIGTERM) when stdin closes.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use lucid_testkit::supabase::SupabaseProject;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

async fn stats(State(project): State<Arc<SupabaseProject>>) -> Json<Value> {
    let auth = project.auth();
    Json(json!({
        "liveSessions": auth.live_sessions(),
        "refreshes": auth.count("refresh_token"),
        "logouts": auth.count("logout"),
    }))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let lucid = args
        .iter()
        .position(|a| a == "--lucid")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .expect("usage: sign_in_e2e_harness --lucid PATH");

    let project = Arc::new(SupabaseProject::start_with_auth().await);
    let auth = project.auth();
    auth.set_access_token_ttl(Duration::from_secs(63));
    auth.set_redirect_allow_list(Some(vec!["http://127.0.0.1:".into()]), "http://127.0.0.1:1");

    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::create_dir_all(&home).expect("home dir");
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    let mut env: Vec<(&str, String)> = vec![
        ("PATH", path),
        ("HOME", home.display().to_string()),
        ("LUCID_DATA_DIR", data.display().to_string()),
        ("SANDBOX_MODE", "local".into()),
        (
            "ENCRYPTION_KEY",
            "fake-e2e-encryption-key-0123456789".into(),
        ),
    ];
    env.extend(project.env());
    let mut child = tokio::process::Command::new(&lucid)
        .args(["serve", "--port", "0"])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(&home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn lucid serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let base = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("{line}");
            if let Some(rest) = line.split("Lucid listening on ").nth(1) {
                return rest.split_whitespace().next().map(str::to_string);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("lucid serve did not say where it listens");
    // Keep draining (and showing) its stderr so it never blocks on a full pipe.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("{line}");
        }
    });

    let control = Router::new()
        .route("/auth/stats", get(stats))
        .with_state(Arc::clone(&project));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind control");
    let control_url = format!("http://{}", listener.local_addr().expect("control addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, control).await;
    });
    println!("{}", json!({ "base": base, "control": control_url }));

    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}

    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    if tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
    }
}
