//! `lucid run "task"` as a real child process: the agent in a real container, once per LLM
//! wire format, with live terminal output, the workspace and history left behind and no
//! container; an LLM 401 ends the run with one request; Ctrl-C stops it with exit code 130.

mod cli_support;

use std::time::Duration;

use cli_support::*;
use lucid_engine::store::{SqliteStore, Store};
use lucid_engine::User;
use lucid_testkit::llm::{Format, ScriptedLlm, Step};
use serde_json::json;

const COMMAND: &str = "cd /workspace && sh hello.sh";

/// Creates `hello.sh` with the editor, runs it, then (after a pause, so output is seen to
/// arrive before the end) finishes.
fn hello_script() -> Vec<Step> {
    vec![
        Step::tool_call(
            "str_replace_editor",
            json!({"command": "create", "path": "/workspace/hello.sh", "file_text": "echo hello from lucid\n"}),
        ),
        Step::tool_call("execute_bash", json!({ "command": COMMAND })),
        Step::Delay(
            Duration::from_millis(1500),
            Box::new(Step::tool_call(
                "finish",
                json!({"message": "Created and ran hello.sh"}),
            )),
        ),
    ]
}

/// `session <id> (chat <id>)` from `lucid run`'s stderr.
fn session_and_chat(stderr: &str) -> (String, String) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("session "))
        .unwrap_or_else(|| panic!("no session line in stderr:\n{stderr}"));
    let mut words = line.split_whitespace();
    let session = words.nth(1).expect("session id").to_string();
    let chat = words
        .nth(1)
        .expect("chat id")
        .trim_end_matches(')')
        .to_string();
    (session, chat)
}

async fn run_hello(format: Format) {
    let llm = ScriptedLlm::start(format, hello_script()).await;
    let dirs = TestDirs::new();
    let env = lucid_env(&dirs, Some(&llm)).await;
    let mut run = Lucid::spawn(&["run", "Create hello.sh and run it"], &env, &dirs);

    // The command line shows up while the agent is still working.
    let (command_seen, _) = run
        .wait_for_line(
            Stream::Stdout,
            |l| l.ends_with(&format!("] $ {COMMAND}")),
            Duration::from_secs(90),
        )
        .await;
    let status = run.wait_exit(Duration::from_secs(60)).await;
    let stdout = run.stdout();
    let stderr = run.stderr();
    assert_eq!(
        status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let ended = run.exit_time().expect("exit time");
    assert!(
        ended.duration_since(command_seen) >= Duration::from_secs(1),
        "the output was not streamed live: `$` line {:?} before exit",
        ended.duration_since(command_seen)
    );

    // The steps, in order, with an output excerpt and the usage line.
    let lines: Vec<&str> = stdout.lines().collect();
    let position = |pred: &dyn Fn(&str) -> bool, what: &str| {
        lines
            .iter()
            .position(|l| pred(l))
            .unwrap_or_else(|| panic!("no {what} line in stdout:\n{stdout}"))
    };
    let task = position(&|l| l.contains("] > Create hello.sh and run it"), "task");
    let edit = position(
        &|l| l.contains("] edit: create /workspace/hello.sh"),
        "edit",
    );
    let command = position(&|l| l.ends_with(&format!("] $ {COMMAND}")), "command");
    let output = position(&|l| l == "    hello from lucid", "output excerpt");
    let exit = position(&|l| l == "    [exit 0]", "exit status");
    let finished = position(
        &|l| l.contains("] finished: Created and ran hello.sh"),
        "finish",
    );
    let tokens = position(
        &|l| l.contains("] tokens: ") && l.contains(" out"),
        "tokens",
    );
    assert!(
        task < edit && edit < command && command < output && output < exit && exit < finished,
        "steps out of order:\n{stdout}"
    );
    assert!(tokens > task, "{stdout}");
    assert!(stdout.contains("[completed]"), "{stdout}");
    assert!(stderr.contains("done in "), "{stderr}");
    assert!(!stdout.contains(LLM_KEY) && !stderr.contains(LLM_KEY));
    assert_eq!(llm.request_count(), 3);

    // The workspace keeps the file; no container of this instance is left.
    let (session_id, chat_id) = session_and_chat(&stderr);
    let file = dirs
        .data()
        .join("workspaces")
        .join("local")
        .join(&session_id)
        .join("hello.sh");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())),
        "echo hello from lucid\n"
    );
    assert_eq!(dirs.containers().await.len(), 0, "container left behind");

    // The history is in the store, for the local user, with every step.
    let store = SqliteStore::open(&dirs.data().join("lucid.sqlite3")).expect("open the store");
    let user = User::with_id("local");
    let chats = store.list_chats(&user, 10, 0).await.unwrap();
    assert_eq!(chats.len(), 1, "{chats:#?}");
    let chat = store
        .get_chat(&user, &chat_id)
        .await
        .unwrap()
        .expect("chat");
    assert_eq!(chat.agent_session_id.as_deref(), Some(session_id.as_str()));
    assert!(!chat.is_active);
    let messages = store.chat_messages(&user, &chat_id).await.unwrap();
    let seqs: Vec<u64> = messages.iter().filter_map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=messages.len() as u64).collect::<Vec<_>>());
    let types: Vec<&str> = messages
        .iter()
        .filter_map(|m| m.event_type.as_deref())
        .collect();
    for expected in [
        "InitialTask",
        "FileWriteAction",
        "CmdRunAction",
        "CmdOutputObservation",
        "AgentFinishAction",
        "UsageUpdate",
    ] {
        assert!(types.contains(&expected), "{expected} missing: {types:?}");
    }
    let output = messages
        .iter()
        .find(|m| m.event_type.as_deref() == Some("CmdOutputObservation"))
        .unwrap();
    assert_eq!(output.content.trim(), "hello from lucid");
    // Another user sees nothing of it.
    let other = User::with_id("someone-else");
    assert!(store.get_chat(&other, &chat_id).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_anthropic_creates_runs_and_finishes() {
    run_hello(Format::Anthropic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_google_creates_runs_and_finishes() {
    run_hello(Format::Gemini).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_openai_compatible_creates_runs_and_finishes() {
    run_hello(Format::OpenAi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_a_rejected_key_fails_after_one_request() {
    let llm = ScriptedLlm::start(
        Format::Anthropic,
        vec![Step::provider_error(
            Format::Anthropic,
            401,
            "invalid x-api-key",
        )],
    )
    .await;
    let dirs = TestDirs::new();
    let env = lucid_env(&dirs, Some(&llm)).await;
    let mut run = Lucid::spawn(&["run", "anything"], &env, &dirs);
    let status = run.wait_exit(Duration::from_secs(90)).await;
    let (stdout, stderr) = (run.stdout(), run.stderr());
    assert_eq!(
        status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let error = stdout
        .lines()
        .find(|l| l.contains("] error: "))
        .unwrap_or_else(|| panic!("no error line:\n{stdout}"));
    assert!(error.contains("API key"), "{error}");
    assert!(error.contains("401"), "{error}");
    assert!(stdout.contains("[failed]"), "{stdout}");
    assert!(stderr.contains("failed after"), "{stderr}");
    assert!(!stdout.contains(LLM_KEY) && !stderr.contains(LLM_KEY));
    assert_eq!(llm.request_count(), 1, "a rejected key is not retried");
    assert_eq!(dirs.containers().await.len(), 0, "container left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_the_agent_and_removes_the_sandbox() {
    let llm = ScriptedLlm::start(
        Format::OpenAi,
        vec![
            Step::tool_call("execute_bash", json!({"command": "sleep 30"})),
            Step::text("should not be needed"),
        ],
    )
    .await;
    let dirs = TestDirs::new();
    let env = lucid_env(&dirs, Some(&llm)).await;
    let mut run = Lucid::spawn(&["run", "sleep a while"], &env, &dirs);
    run.wait_for_line(
        Stream::Stdout,
        |l| l.ends_with("] $ sleep 30"),
        Duration::from_secs(90),
    )
    .await;
    // The sandbox exists while the command runs.
    assert_eq!(dirs.containers().await.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = std::time::Instant::now();
    run.signal("INT");
    let status = run.wait_exit(Duration::from_secs(15)).await;
    let took = sent.elapsed();
    let (stdout, stderr) = (run.stdout(), run.stderr());
    assert_eq!(code_of(status), 130, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
    assert!(stderr.contains("stopping the agent"), "{stderr}");
    assert!(stdout.contains("[interrupted]"), "{stdout}");
    assert!(stdout.contains("[stopped]"), "{stdout}");
    assert_eq!(dirs.containers().await.len(), 0, "container left behind");
    assert_eq!(llm.request_count(), 1);

    // The stopped run is in the history, inactive.
    let store = SqliteStore::open(&dirs.data().join("lucid.sqlite3")).expect("open the store");
    let chats = store
        .list_chats(&User::with_id("local"), 10, 0)
        .await
        .unwrap();
    assert_eq!(chats.len(), 1);
    assert!(!chats[0].is_active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_without_a_provider_key_fails_before_starting() {
    let dirs = TestDirs::new();
    let env = lucid_env(&dirs, None).await;
    let mut run = Lucid::spawn(&["run", "anything"], &env, &dirs);
    let status = run.wait_exit(Duration::from_secs(60)).await;
    let (stdout, stderr) = (run.stdout(), run.stderr());
    assert_eq!(
        status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("no API key for anthropic: set ANTHROPIC_API_KEY"),
        "{stderr}"
    );
    assert!(!stderr.contains("session "), "no session started: {stderr}");
    assert_eq!(dirs.containers().await.len(), 0);
    // Nothing half-written: no chat was recorded.
    let store = SqliteStore::open(&dirs.data().join("lucid.sqlite3")).expect("open the store");
    let chats = store
        .list_chats(&User::with_id("local"), 10, 0)
        .await
        .unwrap();
    assert!(chats.is_empty(), "{chats:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_without_docker_fails_clearly() {
    let llm = ScriptedLlm::start(Format::Anthropic, vec![Step::text("unused")]).await;
    let dirs = TestDirs::new();
    let mut env = lucid_env(&dirs, Some(&llm)).await;
    env.push((
        "DOCKER_HOST".to_string(),
        "unix:///nonexistent.sock".to_string(),
    ));
    let mut run = Lucid::spawn(&["run", "anything"], &env, &dirs);
    let status = run.wait_exit(Duration::from_secs(60)).await;
    let (stdout, stderr) = (run.stdout(), run.stderr());
    assert_eq!(
        status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let error = stdout
        .lines()
        .find(|l| l.contains("] error: "))
        .unwrap_or_else(|| panic!("no error line:\n{stdout}"));
    assert!(error.contains("Docker is not available"), "{error}");
    assert_eq!(
        error.matches("Docker is not available").count(),
        1,
        "said once: {error}"
    );
    assert!(error.contains("Start Docker"), "{error}");
    assert!(stderr.contains("failed after"), "{stderr}");
    assert_eq!(llm.request_count(), 0, "no LLM call without a sandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_beside_a_running_serve_leaves_its_sessions_alone() {
    // One script for both: the server's session sleeps, then the run finishes at once.
    let llm = ScriptedLlm::start(
        Format::Anthropic,
        vec![
            Step::tool_call("execute_bash", json!({"command": "sleep 30"})),
            Step::tool_call("finish", json!({"message": "quick one"})),
        ],
    )
    .await;
    let dirs = TestDirs::new();
    let env = lucid_env(&dirs, Some(&llm)).await;
    let token = print_token(&env, &dirs).await;
    let mut served = Served::start(&env, &dirs).await;
    let client = http();
    let started: serde_json::Value = client
        .post(served.url("/api/v1/sessions"))
        .bearer_auth(&token)
        .json(&json!({"task": "sleep a while"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session_id = started["sessionId"]
        .as_str()
        .expect("sessionId")
        .to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while llm.request_count() < 1 || dirs.containers().await.len() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the session never ran"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server_container = dirs.containers().await[0].id.clone();

    // A `lucid run` on the same data directory, to its end.
    let out = Lucid::run(&["run", "quick"], &env, &dirs, Duration::from_secs(60)).await;
    assert_eq!(out.code(), Some(0), "{out:#?}");

    // The server's session and its sandbox are untouched.
    let left = dirs.containers().await;
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_eq!(left[0].id, server_container);
    assert_eq!(
        left[0].state.map(|s| s.to_string()).as_deref(),
        Some("running")
    );
    let one: serde_json::Value = client
        .get(served.url(&format!("/api/v1/sessions/{session_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["isAlive"], true, "{one:#}");
    let store = SqliteStore::open(&dirs.data().join("lucid.sqlite3")).expect("open the store");
    let chat = store
        .chat_by_session(&User::with_id("local"), &session_id)
        .await
        .unwrap()
        .expect("chat");
    assert!(chat.is_active, "the server's live chat was marked inactive");

    served.process.signal("TERM");
    let status = served.process.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0));
    assert!(dirs.containers().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_agent_and_removes_the_sandbox() {
    let llm = ScriptedLlm::start(
        Format::Gemini,
        vec![Step::tool_call(
            "execute_bash",
            json!({"command": "sleep 30"}),
        )],
    )
    .await;
    let dirs = TestDirs::new();
    let env = lucid_env(&dirs, Some(&llm)).await;
    let mut run = Lucid::spawn(&["run", "sleep a while"], &env, &dirs);
    run.wait_for_line(
        Stream::Stdout,
        |l| l.ends_with("] $ sleep 30"),
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(dirs.containers().await.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    run.signal("TERM");
    let status = run.wait_exit(Duration::from_secs(15)).await;
    let (stdout, stderr) = (run.stdout(), run.stderr());
    assert_ne!(code_of(status), 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("[stopped]"), "{stdout}");
    assert_eq!(dirs.containers().await.len(), 0, "container left behind");
}

/// The model's text is printed as it streams: its first line shows up while the rest of the
/// answer is still being written, and the whole answer is printed once. (No Docker needed:
/// the answer runs no command.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_prints_the_answer_as_it_streams() {
    const ANSWER: &str =
        "Streaming works.\nLine two of the answer.\nLine three of the answer.\nLast line.";
    for format in [Format::Anthropic, Format::Gemini, Format::OpenAi] {
        let llm = ScriptedLlm::start(
            format,
            vec![Step::text(ANSWER).paced(Duration::from_millis(300))],
        )
        .await;
        let dirs = TestDirs::new();
        let mut env = base_env(&dirs);
        env.extend(provider_env(&llm));
        env.push(("SANDBOX_MODE".into(), "local".into()));
        let mut run = Lucid::spawn(&["run", "Say something"], &env, &dirs);
        let (first_seen, _) = run
            .wait_for_line(
                Stream::Stdout,
                |l| l.ends_with("] lucid: Streaming works."),
                Duration::from_secs(60),
            )
            .await;
        let (last_seen, _) = run
            .wait_for_line(
                Stream::Stdout,
                |l| l == "Last line.",
                Duration::from_secs(60),
            )
            .await;
        let status = run.wait_exit(Duration::from_secs(60)).await;
        let stdout = run.stdout();
        assert_eq!(
            status.code(),
            Some(0),
            "{format:?}:\n{stdout}\n{}",
            run.stderr()
        );
        assert!(
            last_seen.duration_since(first_seen) >= Duration::from_millis(900),
            "{format:?}: the answer was not printed as it streamed:\n{stdout}\n{}\n{:?}",
            run.stderr(),
            llm.recorded()
                .iter()
                .map(|r| (r.path_and_query.clone(), r.body.get("stream").cloned()))
                .collect::<Vec<_>>()
        );
        assert_eq!(stdout.matches("Streaming works.").count(), 1, "{stdout}");
        assert_eq!(stdout.matches("Last line.").count(), 1, "{stdout}");
        assert!(
            stdout.contains("Line two of the answer.\nLine three"),
            "{stdout}"
        );
    }
}
