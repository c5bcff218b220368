//! Session start with and without the warm sandbox (`LUCID_WARM_SANDBOX`), against the real
//! Docker daemon and a scripted LLM (plain `Instant`, medians).
//!
//! (a) session start → sandbox ready: from `Sessions::start` to the session's `ready` status
//!     (workspace, chat row, event log, sandbox with its persistent shell, system prompt);
//!     with the warm sandbox, each start waits until a warm one is ready first (sessions
//!     started a few seconds apart, the usual case);
//! (b) a 10-step scripted run: start → `completed` for 9 `execute_bash` steps and `finish`.
//!
//! Run: `cargo bench -p lucid-engine --bench session_start`. Target: (a) < 50 ms with the warm
//! sandbox.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lucid_engine::events::{EventKind, SessionStatus};
use lucid_engine::sessions::StartSession;
use lucid_engine::{Config, Engine, User};
use lucid_testkit::llm::{Format, ScriptedLlm, Step};
use serde_json::json;

const RUNS: usize = 15;
const STEPS: usize = 10;

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn engine(llm: &ScriptedLlm, data: &std::path::Path, warm: bool) -> Arc<Engine> {
    let image = lucid_testkit::image::ensure_test_image().await;
    let vars: HashMap<String, String> = [
        ("LUCID_DATA_DIR", data.display().to_string()),
        (
            "LUCID_JWT_SECRET",
            "bench-secret-0123456789-0123456789-abcd".into(),
        ),
        ("SANDBOX_IMAGE", image),
        ("DOCKER_NETWORK", "none".into()),
        ("SANDBOX_MEMORY_LIMIT", "256m".into()),
        ("LUCID_MAX_SESSIONS_PER_USER", "100".into()),
        ("LUCID_WARM_SANDBOX", warm.to_string()),
        ("DEFAULT_MODEL_PROVIDER", "openai".into()),
        ("LLM_BASE_URL", llm.base_url()),
        ("LLM_API_KEY", "bench-key".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Engine::start(Config::from_map(&vars).expect("config"))
        .await
        .expect("engine")
}

/// One session: (start → ready, start → completed).
async fn one_run(engine: &Engine, llm: &ScriptedLlm, user: &User) -> (Duration, Duration) {
    let mut steps: Vec<Step> = (1..STEPS)
        .map(|i| Step::tool_call("execute_bash", json!({"command": format!("echo step {i}")})))
        .collect();
    steps.push(Step::tool_call("finish", json!({"message": "done"})));
    llm.push_steps(steps);
    let started_at = Instant::now();
    let started = engine
        .sessions()
        .start(
            user,
            StartSession {
                task: "ten steps".into(),
                ..Default::default()
            },
        )
        .await
        .expect("start");
    let mut attachment = engine
        .sessions()
        .attach(user, &started.session_id, 0)
        .await
        .expect("attach");
    let mut ready = None;
    let completed = loop {
        let event = tokio::time::timeout(Duration::from_secs(120), attachment.events.next())
            .await
            .expect("stalled")
            .expect("event")
            .expect("stream ended");
        if let EventKind::Status { status, message } = &event.kind {
            match status {
                SessionStatus::Ready if ready.is_none() => ready = Some(started_at.elapsed()),
                SessionStatus::Completed => break started_at.elapsed(),
                SessionStatus::Failed | SessionStatus::Stopped => panic!("{message}"),
                _ => {}
            }
        }
    };
    drop(attachment);
    engine
        .sessions()
        .destroy(user, &started.session_id)
        .await
        .expect("destroy");
    (ready.expect("ready"), completed)
}

async fn measure(warm: bool) -> (Duration, Duration) {
    let llm = ScriptedLlm::start(Format::OpenAi, Vec::new()).await;
    let data = tempfile::tempdir().expect("temp dir");
    let engine = engine(&llm, data.path(), warm).await;
    let user = User::with_id("bench");
    // One unmeasured run: the image and the network are ready afterwards.
    let _ = one_run(&engine, &llm, &user).await;
    let (mut ready, mut completed) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        if warm {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !engine.sessions().warm_sandbox_ready() {
                assert!(Instant::now() < deadline, "no warm sandbox");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let (r, c) = one_run(&engine, &llm, &user).await;
        ready.push(r);
        completed.push(c);
    }
    engine.shutdown().await;
    (median(&mut ready), median(&mut completed))
}

#[tokio::main]
async fn main() {
    let (cold_ready, cold_run) = measure(false).await;
    let (warm_ready, warm_run) = measure(true).await;
    println!("session start -> sandbox ready, n={RUNS} (median)");
    println!("  without warm sandbox  {:>9.1} ms", ms(cold_ready));
    println!("  with warm sandbox     {:>9.1} ms", ms(warm_ready));
    println!(
        "  ratio                 {:>9.1}x",
        cold_ready.as_secs_f64() / warm_ready.as_secs_f64()
    );
    println!("{STEPS}-step scripted run, start -> completed, n={RUNS} (median)");
    println!("  without warm sandbox  {:>9.1} ms", ms(cold_run));
    println!("  with warm sandbox     {:>9.1} ms", ms(warm_run));
    println!(
        "  ratio                 {:>9.2}x",
        cold_run.as_secs_f64() / warm_run.as_secs_f64()
    );
    assert!(
        warm_ready < Duration::from_millis(50),
        "target: sandbox ready < 50 ms with the warm sandbox"
    );
}
