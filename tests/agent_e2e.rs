//! The real agent in a real container, once per LLM wire format: it creates a file with the
//! editor, runs it with `execute_bash`, reads the output and finishes.

mod common;

use std::time::{Duration, Instant};

use common::*;
use lucid_engine::events::{EventKind, SessionStatus};
use lucid_engine::sessions::StartSession;
use lucid_engine::User;
use lucid_testkit::llm::{Format, ScriptedLlm, Step};
use serde_json::json;

fn hello_script() -> Vec<Step> {
    vec![
        Step::tool_call(
            "str_replace_editor",
            json!({"command": "create", "path": "/workspace/hello.sh", "file_text": "echo hello from lucid\n"}),
        ),
        Step::tool_call(
            "execute_bash",
            json!({"command": "cd /workspace && sh hello.sh"}),
        ),
        Step::tool_call("finish", json!({"message": "Created and ran hello.sh"})),
    ]
}

async fn run_hello(format: Format) {
    let llm = ScriptedLlm::start(format, hello_script()).await;
    let h = Harness::start(Some(&llm), &[]).await;
    let user = User::with_id("e2e-user");
    let started = h.start_task(&user, "Create hello.sh and run it").await;
    let mut attachment = h.attach_from_start(&user, &started.session_id).await;
    let events = collect_until_done(&mut attachment.events, Duration::from_secs(120)).await;
    assert_gap_free(&events);

    // The expected steps, in order.
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type()).collect();
    let order = [
        "InitialTask",
        "FileWriteAction",
        "FileWriteObservation",
        "CmdRunAction",
        "CmdOutputObservation",
        "AgentFinishAction",
    ];
    let mut pos = 0;
    for k in &kinds {
        if pos < order.len() && *k == order[pos] {
            pos += 1;
        }
    }
    assert_eq!(pos, order.len(), "steps out of order: {kinds:?}");
    let output = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::CommandOutput {
                output, exit_code, ..
            } => Some((output.clone(), *exit_code)),
            _ => None,
        })
        .unwrap();
    assert_eq!(output.0.trim(), "hello from lucid");
    assert_eq!(output.1, Some(0));
    assert!(matches!(
        events.last().unwrap().kind,
        EventKind::Status {
            status: SessionStatus::Completed,
            ..
        }
    ));
    assert!(
        events.iter().any(|e| matches!(e.kind, EventKind::Usage(_))),
        "usage recorded"
    );

    // The model saw the command's output.
    let requests = llm.requests();
    assert_eq!(requests.len(), 3);
    assert!(
        requests[2].to_string().contains("hello from lucid"),
        "{}",
        requests[2]
    );

    // Releasing the session removes the container and keeps the workspace.
    drop(attachment);
    h.engine
        .sessions()
        .destroy(&user, &started.session_id)
        .await
        .unwrap();
    assert_eq!(containers_of_session(&started.session_id).await, 0);
    let workspace = h
        .engine
        .sessions()
        .workspace_of(&user, &started.session_id)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(workspace.join("hello.sh")).unwrap(),
        "echo hello from lucid\n"
    );

    // The history holds every event.
    let chat = h.engine.chats().get(&user, &started.chat_id).await.unwrap();
    assert!(
        chat.messages.len() >= events.len(),
        "{} < {}",
        chat.messages.len(),
        events.len()
    );
    assert!(!chat.chat.is_active);
    h.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_agent_creates_and_runs_a_file() {
    run_hello(Format::Anthropic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_agent_creates_and_runs_a_file() {
    run_hello(Format::Gemini).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_compatible_agent_creates_and_runs_a_file() {
    run_hello(Format::OpenAi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_during_sleep_returns_within_two_seconds() {
    let llm = ScriptedLlm::start(
        Format::Anthropic,
        vec![Step::tool_call(
            "execute_bash",
            json!({"command": "sleep 30"}),
        )],
    )
    .await;
    let h = Harness::start(Some(&llm), &[]).await;
    let user = User::with_id("stopper");
    let started = h.start_task(&user, "sleep").await;
    let mut attachment = h.attach_from_start(&user, &started.session_id).await;
    // Wait for the command to start.
    loop {
        let e = attachment.events.next().await.unwrap().unwrap();
        if matches!(e.kind, EventKind::CommandRun { .. }) {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    h.engine
        .sessions()
        .stop(&user, &started.session_id)
        .unwrap();
    let rest = collect_until_done(&mut attachment.events, Duration::from_secs(10)).await;
    let elapsed = t.elapsed();
    assert!(elapsed < Duration::from_secs(2), "stop took {elapsed:?}");
    assert!(matches!(
        rest.last().unwrap().kind,
        EventKind::Status {
            status: SessionStatus::Stopped,
            ..
        }
    ));
    let interrupted = rest.iter().any(|e| {
        matches!(
            e.kind,
            EventKind::CommandOutput {
                interrupted: true,
                ..
            }
        )
    });
    assert!(interrupted, "{rest:#?}");

    // The session is still usable: a follow-up runs in the same conversation.
    llm.push_steps([
        Step::tool_call("execute_bash", json!({"command": "echo still here"})),
        Step::text("ok"),
    ]);
    h.engine
        .sessions()
        .follow_up(&user, &started.session_id, "say hi")
        .await
        .unwrap();
    let more = collect_until_done(&mut attachment.events, Duration::from_secs(60)).await;
    let out = more.iter().find_map(|e| match &e.kind {
        EventKind::CommandOutput { output, .. } => Some(output.clone()),
        _ => None,
    });
    assert_eq!(out.as_deref().map(str::trim), Some("still here"));
    drop(attachment);
    h.engine
        .sessions()
        .destroy(&user, &started.session_id)
        .await
        .unwrap();
    assert_eq!(containers_of_session(&started.session_id).await, 0);
    h.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_401_ends_the_run_after_one_request() {
    let llm = ScriptedLlm::start(
        Format::OpenAi,
        vec![Step::provider_error(
            Format::OpenAi,
            401,
            "Incorrect API key provided",
        )],
    )
    .await;
    let h = Harness::start(Some(&llm), &[]).await;
    let user = User::with_id("u401");
    let started = h.start_task(&user, "anything").await;
    let mut attachment = h.attach_from_start(&user, &started.session_id).await;
    let events = collect_until_done(&mut attachment.events, Duration::from_secs(60)).await;
    assert!(matches!(
        events.last().unwrap().kind,
        EventKind::Status {
            status: SessionStatus::Failed,
            ..
        }
    ));
    let error = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Error { message } => Some(message.clone()),
            _ => None,
        })
        .unwrap();
    assert!(error.contains("API key"), "{error}");
    assert!(!error.contains(LLM_KEY));
    assert_eq!(llm.request_count(), 1);
    drop(attachment);
    h.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_429_then_success_is_retried() {
    let llm = ScriptedLlm::start(
        Format::Anthropic,
        vec![
            Step::retry_after(Format::Anthropic, 429, 1),
            Step::tool_call("finish", json!({"message": "done"})),
        ],
    )
    .await;
    let h = Harness::start(Some(&llm), &[]).await;
    let user = User::with_id("u429");
    let started = h.start_task(&user, "finish").await;
    let mut attachment = h.attach_from_start(&user, &started.session_id).await;
    let events = collect_until_done(&mut attachment.events, Duration::from_secs(60)).await;
    assert!(matches!(
        events.last().unwrap().kind,
        EventKind::Status {
            status: SessionStatus::Completed,
            ..
        }
    ));
    assert_eq!(llm.request_count(), 2);
    drop(attachment);
    h.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_state_exit_codes_and_huge_output_reach_the_model_correctly() {
    let llm = ScriptedLlm::start(
        Format::OpenAi,
        vec![
            Step::tool_call("execute_bash", json!({"command": "mkdir -p /tmp/w && cd /tmp/w && export FOO=bar"})),
            Step::tool_call("execute_bash", json!({"command": "pwd; echo \"foo=$FOO\"; exit_with() { return $1; }; exit_with 3"})),
            Step::tool_call("execute_bash", json!({"command": "head -c 10000000 /dev/zero | tr '\\0' 'a'"})),
            Step::tool_call("finish", json!({"message": "done"})),
        ],
    )
    .await;
    let h = Harness::start(Some(&llm), &[]).await;
    let user = User::with_id("shell-user");
    let started = h.start_task(&user, "shell").await;
    let mut attachment = h.attach_from_start(&user, &started.session_id).await;
    let events = collect_until_done(&mut attachment.events, Duration::from_secs(120)).await;
    assert!(matches!(
        events.last().unwrap().kind,
        EventKind::Status {
            status: SessionStatus::Completed,
            ..
        }
    ));
    let requests = llm.requests();
    // Request 3 carries the result of command 2: cwd and exported variable persisted, exit 3.
    let third = requests[2].to_string();
    assert!(third.contains("/tmp/w"), "{third}");
    assert!(third.contains("foo=bar"), "{third}");
    assert!(third.contains("[exit code: 3]"), "{third}");
    // Request 4 carries the 10 MB output, truncated for the model (head and tail kept).
    let fourth = &requests[3];
    let tool_msg = fourth["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "tool")
        .unwrap();
    let content = tool_msg["content"].as_str().unwrap();
    assert!(content.len() < 40_000, "model saw {} bytes", content.len());
    assert!(
        content.contains("characters omitted"),
        "{}",
        &content[..200]
    );
    assert!(
        content.contains("10000000 bytes"),
        "tells the model how big it was"
    );
    // The stored event keeps the output up to the cap and the real size.
    let (stored, total) = events
        .iter()
        .rev()
        .filter_map(|e| match &e.kind {
            EventKind::CommandOutput {
                output,
                total_bytes,
                ..
            } => Some((output.len(), *total_bytes)),
            _ => None,
        })
        .next()
        .unwrap();
    assert_eq!(total, 10_000_000);
    assert_eq!(stored, lucid_engine::sandbox::OUTPUT_STORE_CAP_BYTES);
    drop(attachment);
    h.engine
        .sessions()
        .destroy(&user, &started.session_id)
        .await
        .unwrap();
    h.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_is_clearly_labelled_and_works_without_docker_isolation() {
    // A secret in the engine's own environment must not reach the agent's commands.
    // (Other tests in this binary build their config from maps, not the environment.)
    std::env::set_var("ANTHROPIC_API_KEY", "sk-engine-secret-must-not-leak");
    let llm = ScriptedLlm::start(
        Format::Anthropic,
        vec![
            Step::tool_call(
                "str_replace_editor",
                json!({"command": "create", "path": "note.txt", "file_text": "local\n"}),
            ),
            Step::tool_call(
                "execute_bash",
                json!({"command": "cat note.txt; echo \"key=${ANTHROPIC_API_KEY:-unset}\""}),
            ),
            Step::tool_call("finish", json!({"message": "ok"})),
        ],
    )
    .await;
    let h = Harness::start(Some(&llm), &[("SANDBOX_MODE", "local")]).await;
    let user = User::with_id("local-user");
    let started = h.start_task(&user, "local").await;
    let mut attachment = h.attach_from_start(&user, &started.session_id).await;
    let events = collect_until_done(&mut attachment.events, Duration::from_secs(60)).await;
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::Progress { message } if message.contains("without a sandbox"))));
    let output = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::CommandOutput { output, .. } => Some(output.clone()),
            _ => None,
        })
        .unwrap();
    assert!(output.contains("local"), "{output}");
    assert!(
        output.contains("key=unset"),
        "engine secrets must not reach commands: {output}"
    );
    assert_eq!(containers_of_session(&started.session_id).await, 0);
    drop(attachment);
    h.engine.shutdown().await;
}

fn slow_script() -> Vec<Step> {
    vec![
        Step::tool_call(
            "execute_bash",
            json!({"command": "sleep 25; echo ran-anyway"}),
        ),
        Step::tool_call("finish", json!({"message": "done"})),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_right_after_start_ends_the_session_during_setup() {
    let llm = ScriptedLlm::start(Format::Anthropic, slow_script()).await;
    let h = Harness::start(Some(&llm), &[]).await;
    let user = User::with_id("early-destroy");
    let started = h.start_task(&user, "t").await;
    let t0 = Instant::now();
    h.engine
        .sessions()
        .destroy(&user, &started.session_id)
        .await
        .unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "destroy took {:?}",
        t0.elapsed()
    );
    let summary = h
        .engine
        .sessions()
        .get(&user, &started.session_id)
        .await
        .unwrap();
    assert!(!summary.is_alive);
    assert_eq!(llm.request_count(), 0, "the agent never ran");
    assert_eq!(containers_of_session(&started.session_id).await, 0);
    h.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_right_after_start_is_honoured() {
    let llm = ScriptedLlm::start(Format::Anthropic, slow_script()).await;
    let h = Harness::start(Some(&llm), &[]).await;
    let user = User::with_id("early-stop");
    let started = h.start_task(&user, "t").await;
    h.engine
        .sessions()
        .stop(&user, &started.session_id)
        .unwrap();
    let mut a = h.attach_from_start(&user, &started.session_id).await;
    let events = collect_until_done(&mut a.events, Duration::from_secs(60)).await;
    assert!(matches!(
        events.last().unwrap().kind,
        EventKind::Status {
            status: SessionStatus::Stopped,
            ..
        }
    ));
    assert_eq!(llm.request_count(), 0, "the agent ran after stop");
    drop(a);
    h.engine
        .sessions()
        .destroy(&user, &started.session_id)
        .await
        .unwrap();
    h.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_chat_of_a_starting_session_ends_it() {
    let llm = ScriptedLlm::start(Format::Anthropic, slow_script()).await;
    let h = Harness::start(Some(&llm), &[]).await;
    let user = User::with_id("early-delete");
    let started = h.start_task(&user, "t").await;
    h.engine.delete_chat(&user, &started.chat_id).await.unwrap();
    let ended = tokio::time::timeout(
        Duration::from_secs(20),
        h.engine.sessions().wait_ended(&started.session_id),
    )
    .await
    .is_ok();
    assert!(ended);
    assert!(h.engine.sessions().list(&user).is_empty());
    assert_eq!(containers_of_session(&started.session_id).await, 0);
    h.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_sessions_per_user_are_capped() {
    let llm = ScriptedLlm::start(Format::Anthropic, slow_script()).await;
    let h = Harness::start(Some(&llm), &[("LUCID_MAX_SESSIONS_PER_USER", "1")]).await;
    let user = User::with_id("capped");
    let first = h.start_task(&user, "one").await;
    let err = h
        .engine
        .sessions()
        .start(
            &user,
            StartSession {
                task: "two".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, lucid_engine::ErrorKind::Conflict);
    assert!(err.message.contains("limit is 1"), "{}", err.message);
    // Another user is not affected.
    let other = User::with_id("not-capped");
    let second = h.start_task(&other, "three").await;
    h.engine
        .sessions()
        .destroy(&user, &first.session_id)
        .await
        .unwrap();
    h.engine
        .sessions()
        .destroy(&other, &second.session_id)
        .await
        .unwrap();
    h.engine.shutdown().await;
}
