//! Harness for the UI's browser end-to-end test (`ui/e2e/run.mjs`): starts the wire fakes (a
//! scripted Anthropic-format LLM, a fake GitHub, a fake self-hosted GitLab under a sub-path),
//! seeds a finished 5,000-event session for
//! the replay benchmark, and runs the real `lucid serve` (given with `--lucid PATH`) on a free
//! loopback port with the local test sandbox image and no sandbox network. Prints one JSON
//! line with the sign-in link and URLs, then serves a small control API:
//! - `POST /llm/steps` `[{"text": ".."} | {"tool": "execute_bash", "args": {..}} | {"delayMs": n, "then": step}
//!   | {"pacedMs": n, "then": step} | {"thinking": "..", "then": step}]` appends steps to the
//!   LLM's script (`pacedMs`: the answer streamed with a pause before each event; `thinking`:
//!   the model's thinking before the answer);
//! - `POST /llm/title` `step` sets what chat-title requests get from now on;
//! - `GET /llm/remaining` → number of steps not yet consumed.
//!
//! Ends (stopping `lucid serve` with SIGTERM so it removes its sandboxes) when stdin closes.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use lucid_engine::events::{Event, EventKind, FileEditArgs, SessionStatus, UsageReport};
use lucid_engine::store::{NewChat, SqliteStore, Store};
use lucid_engine::{Config, User};
use lucid_testkit::forge::{FakeGithub, FakeGitlab};
use lucid_testkit::git_server::GitServer;
use lucid_testkit::llm::{Format, ScriptedLlm, Step};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// The token the fake GitHub accepts (obviously fake; see lucid-testkit).
const GITHUB_TOKEN: &str = "fake-e2e-github-token-0000";
/// The token the fake GitLab accepts.
const GITLAB_TOKEN: &str = "fake-e2e-gitlab-token-0000";
const LLM_KEY: &str = "fake-e2e-llm-key-0000";
/// Session id of the seeded 5,000-event transcript.
const BENCH_SESSION: &str = "bench-5000-events";
const BENCH_EVENTS: u64 = 5000;

fn parse_step(v: &Value) -> Result<Step, String> {
    if let Some(text) = v.get("text").and_then(Value::as_str) {
        return Ok(Step::text(text));
    }
    if let Some(name) = v.get("tool").and_then(Value::as_str) {
        return Ok(Step::tool_call(
            name,
            v.get("args").cloned().unwrap_or(json!({})),
        ));
    }
    if let Some(ms) = v.get("delayMs").and_then(Value::as_u64) {
        let then = parse_step(v.get("then").ok_or("delayMs needs then")?)?;
        return Ok(Step::Delay(Duration::from_millis(ms), Box::new(then)));
    }
    if let Some(thinking) = v.get("thinking").and_then(Value::as_str) {
        let then = parse_step(v.get("then").ok_or("thinking needs then")?)?;
        return Ok(then.thinking(thinking));
    }
    if let Some(ms) = v.get("pacedMs").and_then(Value::as_u64) {
        let then = parse_step(v.get("then").ok_or("pacedMs needs then")?)?;
        return Ok(then.paced(Duration::from_millis(ms)));
    }
    Err(format!("unknown step {v}"))
}

async fn push_steps(
    State(llm): State<Arc<ScriptedLlm>>,
    Json(steps): Json<Vec<Value>>,
) -> Result<Json<Value>, (axum::http::StatusCode, String)> {
    let parsed = steps
        .iter()
        .map(parse_step)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| (axum::http::StatusCode::BAD_REQUEST, e))?;
    llm.push_steps(parsed);
    Ok(Json(json!({ "remaining": llm.remaining_steps() })))
}

async fn set_title(
    State(llm): State<Arc<ScriptedLlm>>,
    Json(step): Json<Value>,
) -> Result<Json<Value>, (axum::http::StatusCode, String)> {
    let step = parse_step(&step).map_err(|e| (axum::http::StatusCode::BAD_REQUEST, e))?;
    llm.set_title_answer(step);
    Ok(Json(json!({ "titleRequests": llm.title_requests().len() })))
}

async fn remaining(State(llm): State<Arc<ScriptedLlm>>) -> Json<Value> {
    Json(json!({ "remaining": llm.remaining_steps(), "requests": llm.request_count() }))
}

/// A finished session of `BENCH_EVENTS` events in the data directory's store (a realistic
/// mix: commands with multi-line coloured output, edits, thoughts, Markdown answers, usage).
async fn seed_benchmark(config: &Config) {
    let store = SqliteStore::open(&config.database_path()).expect("open the store");
    let user = User::with_id("local");
    let chat = store
        .create_chat(
            &user,
            NewChat {
                id: "bench-chat-5000".into(),
                agent_session_id: Some(BENCH_SESSION.into()),
                title: Some("Replay benchmark: 5,000 events".into()),
                model_provider: Some("anthropic".into()),
                ..Default::default()
            },
        )
        .await
        .expect("create the benchmark chat");
    let workspace =
        lucid_engine::workspace::session_workspace(&config.workspace_base, &user.id, BENCH_SESSION)
            .expect("workspace path");
    std::fs::create_dir_all(&workspace).expect("benchmark workspace");
    std::fs::write(workspace.join("main.py"), "print('benchmark')\n").expect("benchmark file");
    let mut events: Vec<Event> = Vec::new();
    let push = |kind: EventKind, events: &mut Vec<Event>| {
        let seq = events.len() as u64 + 1;
        events.push(Event::new(BENCH_SESSION, seq, kind));
    };
    push(
        EventKind::UserMessage {
            content: "Replay benchmark task".into(),
            follow_up: false,
        },
        &mut events,
    );
    let mut i = 0u64;
    while (events.len() as u64) < BENCH_EVENTS - 1 {
        let call = format!("call-{i}");
        let kind = match i % 6 {
            0 => EventKind::Thought {
                call_id: call,
                thought: format!("Step {i}: look at the failing test and decide what to change."),
            },
            1 => EventKind::CommandRun {
                call_id: call,
                command: format!("python -m pytest -q tests/test_{i}.py"),
            },
            2 => EventKind::CommandOutput {
                call_id: format!("call-{}", i - 1),
                command: format!("python -m pytest -q tests/test_{}.py", i - 1),
                output: (0..60)
                    .map(|l| format!("\u{1b}[32mPASSED\u{1b}[0m tests/test_{i}.py::case_{l}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                exit_code: Some(if i.is_multiple_of(4) { 1 } else { 0 }),
                total_bytes: 3000,
                timed_out: false,
                interrupted: false,
            },
            3 => EventKind::FileEdit {
                call_id: call,
                command: "str_replace".into(),
                path: "/workspace/main.py".into(),
                edit: Some(FileEditArgs {
                    old_str: Some(format!("def f{i}():\n    return {i}\n")),
                    new_str: Some(format!("def f{i}():\n    # fixed\n    return {}\n", i + 1)),
                    ..Default::default()
                }),
            },
            4 => EventKind::AssistantMessage {
                content: format!(
                    "Step **{i}** done. Next:\n\n```python\ndef f{i}():\n    return {i}\n```\n"
                ),
            },
            _ => EventKind::Usage(UsageReport {
                model: "claude-test".into(),
                input_tokens: 100,
                output_tokens: 20,
                total_input_tokens: 100 * i,
                total_output_tokens: 20 * i,
                total_cost_usd: Some(0.0001 * i as f64),
                ..Default::default()
            }),
        };
        push(kind, &mut events);
        i += 1;
    }
    push(
        EventKind::Status {
            status: SessionStatus::Completed,
            message: "Task completed.".into(),
        },
        &mut events,
    );
    for batch in events.chunks(500) {
        store
            .append_events(&user, &chat.id, batch)
            .await
            .expect("append benchmark events");
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let lucid = args
        .iter()
        .position(|a| a == "--lucid")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .expect("usage: ui_e2e_harness --lucid PATH");

    let image = lucid_testkit::image::ensure_test_image().await;
    let llm = Arc::new(ScriptedLlm::start_with_key(Format::Anthropic, vec![], LLM_KEY).await);
    let github = FakeGithub::start(GITHUB_TOKEN, 5).await;
    // A self-hosted GitLab behind a reverse proxy path.
    let gitlab = FakeGitlab::start_at(GITLAB_TOKEN, 3, "/gitlab").await;
    // `octocat/repo-001` really exists (on a local git server accepting the GitHub token,
    // served at the fake GitHub's own address as on GitHub), so a session on it can clone,
    // and its pull request can push.
    let git = GitServer::start(lucid_engine::git::TOKEN_ONLY_USERNAME, GITHUB_TOKEN)
        .await
        .expect("git server");
    create_nested_repo(&git, &github.repo_full_name(1)).await;
    github.serve_git_from(&git);
    github.set_clone_base(&github.base_url());
    let dirs = tempfile::tempdir().expect("temp dir");
    let data = dirs.path().join("data");
    let home = dirs.path().join("home");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::create_dir_all(&home).expect("home dir");

    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    let env: Vec<(String, String)> = vec![
        ("PATH".into(), path),
        ("HOME".into(), home.display().to_string()),
        ("LUCID_DATA_DIR".into(), data.display().to_string()),
        ("SANDBOX_IMAGE".into(), image),
        ("DOCKER_NETWORK".into(), "none".into()),
        ("SANDBOX_MEMORY_LIMIT".into(), "256m".into()),
        (
            "ENCRYPTION_KEY".into(),
            "fake-e2e-encryption-key-0123456789".into(),
        ),
        ("DEFAULT_MODEL_PROVIDER".into(), "anthropic".into()),
        ("ANTHROPIC_BASE_URL".into(), llm.base_url()),
        ("ANTHROPIC_API_KEY".into(), LLM_KEY.into()),
        ("LUCID_GITHUB_API_URL".into(), github.base_url()),
    ];
    let config = Config::from_map(&env.iter().cloned().collect::<HashMap<_, _>>())
        .expect("harness configuration");
    seed_benchmark(&config).await;

    let mut child = tokio::process::Command::new(&lucid)
        .args(["serve", "--port", "0"])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn lucid serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let link = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(at) = line.find("http://") {
                if line.contains("#token=") {
                    return Some(line[at..].trim().to_string());
                }
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("lucid serve printed no sign-in link");
    // Keep draining its stdout so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let base = link.split("/#").next().unwrap_or_default().to_string();

    let control = Router::new()
        .route("/llm/steps", post(push_steps))
        .route("/llm/title", post(set_title))
        .route("/llm/remaining", get(remaining))
        .with_state(Arc::clone(&llm));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind control");
    let control_url = format!("http://{}", listener.local_addr().expect("control addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, control).await;
    });

    println!(
        "{}",
        json!({
            "link": link,
            "base": base,
            "control": control_url,
            "githubToken": GITHUB_TOKEN,
            "gitlabUrl": gitlab.base_url(),
            "gitlabToken": GITLAB_TOKEN,
            "benchSession": BENCH_SESSION,
            "benchEvents": BENCH_EVENTS,
        })
    );

    // Until the driver closes stdin (or goes away).
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
    drop(github);
    drop(gitlab);
    drop(git);
}

/// Creates `full_name` (`owner/repo`) on the git server: a README on `main` and a `dev` branch.
async fn create_nested_repo(git: &GitServer, full_name: &str) {
    let seed = "seed-repo";
    git.create_repo(
        seed,
        &[(
            "README.md",
            "# Demo\n\nA repository for Lucid's UI tests.\n",
        )],
        &["dev"],
    )
    .await
    .expect("seed repository");
    let target = git.bare_path(full_name);
    std::fs::create_dir_all(target.parent().expect("parent")).expect("owner directory");
    let out = tokio::process::Command::new("git")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(["clone", "--quiet", "--bare", "--"])
        .arg(git.bare_path(seed))
        .arg(&target)
        .output()
        .await
        .expect("run git");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    git.git_in_repo(full_name, &["config", "http.receivepack", "true"])
        .await
        .expect("enable pushes");
}
