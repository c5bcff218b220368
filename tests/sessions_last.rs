//! Sessions that last (real Docker, scripted LLM): back-to-back sessions never hit the
//! per-user limit, idle detached sessions release their containers, and any session can be
//! continued over WebSocket and REST (live-idle or released): the model gets the earlier
//! conversation, the sandbox sees the earlier files, `seq` continues without a gap.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::{SinkExt, StreamExt};
use lucid_engine::sessions::StartSession;
use lucid_engine::User;
use lucid_testkit::llm::{Format, ScriptedLlm, Step};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn short_task(n: usize) -> [Step; 2] {
    [
        Step::tool_call("execute_bash", json!({"command": format!("echo run {n}")})),
        Step::tool_call("finish", json!({"message": format!("done {n}")})),
    ]
}

/// Twelve short sessions, one after the other, as one user with the default limit (8): every
/// one starts. Idle sessions nobody follows give their sandbox to the next ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_back_to_back_sessions_all_start() {
    let llm = ScriptedLlm::start(Format::OpenAi, Vec::new()).await;
    // A long idle time: only the limit makes sessions give their sandboxes back here.
    let h = Harness::start(
        Some(&llm),
        &[
            ("LUCID_SANDBOX_IDLE_SECS", "600"),
            ("LUCID_WARM_SANDBOX", "false"),
        ],
    )
    .await;
    assert_eq!(h.engine.config().max_sessions_per_user, 8);
    let user = User::with_id("back-to-back");
    let mut ids = Vec::new();
    for n in 0..12 {
        llm.push_steps(short_task(n));
        let (started, events) = run_session(
            &h,
            &user,
            StartSession {
                task: format!("task {n}"),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            final_status(&events),
            lucid_engine::events::SessionStatus::Completed
        );
        ids.push(started.session_id);
        let live = h.engine.sessions().list(&user).len();
        assert!(live <= 8, "{live} live sessions");
    }
    // The four oldest gave their sandboxes to the four newest; the others are still there.
    for (n, id) in ids.iter().enumerate() {
        let expected = if n < 4 { 0 } else { 1 };
        assert_eq!(containers_of_session(id).await, expected, "session {n}");
    }
    // A released session is still known, with its last status and its workspace.
    let first = h.engine.sessions().get(&user, &ids[0]).await.unwrap();
    assert!(!first.is_alive);
    assert_eq!(first.status, lucid_engine::events::SessionStatus::Completed);
    assert!(h
        .engine
        .sessions()
        .workspace_of(&user, &ids[0])
        .await
        .unwrap()
        .is_dir());
    h.engine.sessions().shutdown_all().await;
}

/// With a short idle time, finished sessions nobody follows release their containers on their
/// own; their workspaces stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_detached_sessions_release_their_containers() {
    let llm = ScriptedLlm::start(Format::OpenAi, Vec::new()).await;
    let h = Harness::start(
        Some(&llm),
        &[
            ("LUCID_SANDBOX_IDLE_SECS", "2"),
            ("LUCID_WARM_SANDBOX", "false"),
        ],
    )
    .await;
    let user = User::with_id("idle-release");
    let mut ids = Vec::new();
    for n in 0..3 {
        llm.push_steps(short_task(n));
        let (started, _) = run_session(
            &h,
            &user,
            StartSession {
                task: format!("task {n}"),
                ..Default::default()
            },
        )
        .await;
        ids.push(started.session_id);
    }
    // A client still attached keeps its session's sandbox.
    llm.push_steps(short_task(9));
    let (kept, _) = run_session(
        &h,
        &user,
        StartSession {
            task: "followed".into(),
            ..Default::default()
        },
    )
    .await;
    let watcher = h.attach_from_start(&user, &kept.session_id).await;
    for id in &ids {
        let released = eventually(Duration::from_secs(20), || async {
            containers_of_session(id).await == 0
        })
        .await;
        assert!(released, "session {id} kept its container");
        let summary = h.engine.sessions().get(&user, id).await.unwrap();
        assert!(!summary.is_alive);
        assert!(h
            .engine
            .sessions()
            .workspace_of(&user, id)
            .await
            .unwrap()
            .is_dir());
    }
    assert_eq!(containers_of_session(&kept.session_id).await, 1);
    drop(watcher);
    let released = eventually(Duration::from_secs(20), || async {
        containers_of_session(&kept.session_id).await == 0
    })
    .await;
    assert!(
        released,
        "the session kept its container after the client left"
    );
}

struct Server {
    h: Harness,
    base: String,
    http: reqwest::Client,
    _task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(llm: &ScriptedLlm) -> Server {
        let h = Harness::start(
            Some(llm),
            &[
                ("LUCID_SANDBOX_IDLE_SECS", "2"),
                ("LUCID_WARM_SANDBOX", "false"),
            ],
        )
        .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let app = lucid_server::router(h.engine.clone());
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Server {
            h,
            base,
            http,
            _task: task,
        }
    }

    fn token(&self, user: &str) -> String {
        lucid_engine::auth::issue_token(user, SECRET.as_bytes(), Duration::from_secs(3600))
    }

    async fn ws(&self, user: &str) -> Ws {
        let url = format!("ws://{}/api/v1/ws?token={}", self.base, self.token(user));
        tokio_tungstenite::connect_async(url).await.unwrap().0
    }

    async fn get(&self, path: &str, user: &str) -> Value {
        let r = self
            .http
            .get(format!("http://{}{path}", self.base))
            .bearer_auth(self.token(user))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    async fn post(&self, path: &str, user: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("http://{}{path}", self.base))
            .bearer_auth(self.token(user))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Waits until the session is not live and its container is gone.
    async fn wait_released(&self, session_id: &str, user: &str) {
        let released = eventually(Duration::from_secs(30), || async {
            containers_of_session(session_id).await == 0
                && self
                    .get(&format!("/api/v1/sessions/{session_id}"), user)
                    .await["isAlive"]
                    == false
        })
        .await;
        assert!(released, "session {session_id} was not released");
    }

    /// Waits until the (live) session's last turn has ended with `status`.
    async fn wait_status(&self, session_id: &str, user: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let last = self
                .get(&format!("/api/v1/sessions/{session_id}"), user)
                .await;
            if last["status"] == status {
                return last;
            }
            assert!(
                Instant::now() < deadline,
                "status {status} not reached: {last:#}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every stored event of the session's chat: (seq, eventType).
    async fn stored(&self, chat_id: &str, user: &str) -> Vec<(u64, String)> {
        let chat = self.get(&format!("/api/v1/chats/{chat_id}"), user).await;
        chat["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["metadataJson"]["seq"].as_u64().unwrap(),
                    m["eventType"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

async fn recv(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("no frame within 60 s");
        match msg {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The chat messages of an OpenAI-format request (system prompt first).
fn messages(request: &Value) -> Vec<Value> {
    request["messages"].as_array().cloned().unwrap_or_default()
}

/// Asserts that the request after a continuation carries the conversation of the request
/// before it unchanged, followed by the model's last answer, its result and the new message.
fn assert_continues(before: &Value, after: &Value, new_message: &str) {
    let (before, after) = (messages(before), messages(after));
    assert!(
        after.len() > before.len() + 1,
        "the new request is not longer: {after:#?}"
    );
    assert_eq!(
        after[..before.len()],
        before[..],
        "the earlier conversation is not what the model saw"
    );
    let last = after.last().unwrap();
    assert_eq!(last["role"], "user");
    assert_eq!(last["content"], new_message);
}

fn seqs(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .filter_map(|f| f.get("seq").and_then(Value::as_u64))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_sessions_continue_over_rest_and_websocket() {
    let llm = ScriptedLlm::start(
        Format::OpenAi,
        vec![
            Step::tool_call(
                "execute_bash",
                json!({"command": "echo first-turn-file > notes.txt && cat notes.txt"}),
            ),
            Step::tool_call("finish", json!({"message": "wrote notes.txt"})),
        ],
    )
    .await;
    let s = Server::start(&llm).await;
    let user = "carol";

    // A task over REST, nobody attached; it completes.
    let (code, started) = s
        .post("/api/v1/sessions", user, json!({"task": "write notes.txt"}))
        .await;
    assert_eq!(code, 200, "{started:#}");
    let session_id = started["sessionId"].as_str().unwrap().to_string();
    let chat_id = started["chatId"].as_str().unwrap().to_string();
    let summary = s.wait_status(&session_id, user, "completed").await;
    assert_eq!(summary["repository"], Value::Null);

    // 1. Continued over REST while still live (idle), right away.
    let before = llm.requests().last().cloned().unwrap();
    llm.push_steps([
        Step::tool_call("execute_bash", json!({"command": "cat notes.txt"})),
        Step::tool_call("finish", json!({"message": "read it"})),
    ]);
    let requests_before = llm.request_count();
    let (code, body) = s
        .post(
            &format!("/api/v1/sessions/{session_id}/messages"),
            user,
            json!({"content": "read notes.txt back"}),
        )
        .await;
    assert_eq!(code, 200, "{body:#}");
    let reached = eventually(Duration::from_secs(60), || async {
        llm.request_count() >= requests_before + 2
            && s.get(&format!("/api/v1/sessions/{session_id}"), user).await["status"] == "completed"
    })
    .await;
    let now = s.get(&format!("/api/v1/sessions/{session_id}"), user).await;
    let stored = s.stored(&chat_id, user).await;
    assert!(
        reached,
        "{} requests (from {requests_before}); {now:#}; {stored:?}",
        llm.request_count()
    );
    assert_continues(
        &before,
        &llm.requests()[requests_before].clone(),
        "read notes.txt back",
    );

    // 2. Released (idle, nobody attached), then continued over WebSocket: attach replays the
    // history, says the session is not live, and a message continues it on this connection.
    s.wait_released(&session_id, user).await;
    let stored_before = s.stored(&chat_id, user).await;
    let last_seq = stored_before.last().unwrap().0;
    assert_eq!(
        stored_before
            .iter()
            .map(|(seq, _)| *seq)
            .collect::<Vec<_>>(),
        (1..=last_seq).collect::<Vec<_>>()
    );
    let before = llm.requests().last().cloned().unwrap();
    llm.push_steps([
        Step::tool_call("execute_bash", json!({"command": "cat notes.txt"})),
        Step::tool_call("finish", json!({"message": "still there"})),
    ]);
    let mut ws = s.ws(user).await;
    send(
        &mut ws,
        json!({"type": "attach", "sessionId": session_id, "since": 0}),
    )
    .await;
    let mut replayed = Vec::new();
    let idle = loop {
        let f = recv(&mut ws).await;
        if f.get("seq").is_none() && f["type"] == "status" {
            break f;
        }
        if f.get("seq").is_some() {
            replayed.push(f);
        }
    };
    assert_eq!(idle["isAlive"], false, "{idle:#}");
    assert_eq!(idle["status"], "completed");
    assert_eq!(seqs(&replayed), (1..=last_seq).collect::<Vec<_>>());
    let requests_before = llm.request_count();
    send(
        &mut ws,
        json!({"type": "message", "content": "is notes.txt still there?"}),
    )
    .await;
    let mut continued = Vec::new();
    loop {
        let f = recv(&mut ws).await;
        let done = f["type"] == "status" && f.get("seq").is_some() && f["status"] == "completed";
        if f.get("seq").is_some() {
            continued.push(f);
        }
        if done {
            break;
        }
    }
    let new_seqs = seqs(&continued);
    assert_eq!(
        new_seqs,
        (last_seq + 1..last_seq + 1 + new_seqs.len() as u64).collect::<Vec<_>>(),
        "seq continues without a gap: {continued:#?}"
    );
    assert_eq!(continued[0]["status"], "initializing");
    let output = continued
        .iter()
        .find(|f| f["eventType"] == "CmdOutputObservation")
        .expect("a command ran");
    assert!(
        output["content"]
            .as_str()
            .unwrap()
            .contains("first-turn-file"),
        "the new sandbox sees the earlier files: {output:#}"
    );
    assert_continues(
        &before,
        &llm.requests()[requests_before].clone(),
        "is notes.txt still there?",
    );
    drop(ws);

    // 3. Released again, then continued over REST.
    s.wait_released(&session_id, user).await;
    let last_seq = s.stored(&chat_id, user).await.last().unwrap().0;
    let before = llm.requests().last().cloned().unwrap();
    llm.push_steps([Step::text("Yes, all three turns are in my context.")]);
    let requests_before = llm.request_count();
    let (code, body) = s
        .post(
            &format!("/api/v1/sessions/{session_id}/messages"),
            user,
            json!({"content": "summarise what we did"}),
        )
        .await;
    assert_eq!(code, 200, "{body:#}");
    let live = s.get(&format!("/api/v1/sessions/{session_id}"), user).await;
    assert_eq!(live["isAlive"], true, "{live:#}");
    s.wait_status(&session_id, user, "completed").await;
    assert_continues(
        &before,
        &llm.requests()[requests_before].clone(),
        "summarise what we did",
    );
    let stored = s.stored(&chat_id, user).await;
    let all: Vec<u64> = stored.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(all, (1..=all.len() as u64).collect::<Vec<_>>(), "gap-free");
    assert!(all.len() as u64 > last_seq);
    // The continued chat is active again while live.
    let chat = s.get(&format!("/api/v1/chats/{chat_id}"), user).await;
    assert_eq!(chat["isActive"], true);

    // Another user can neither continue nor see it.
    let (code, _) = s
        .post(
            &format!("/api/v1/sessions/{session_id}/messages"),
            "mallory",
            json!({"content": "hi"}),
        )
        .await;
    assert!(code == 403 || code == 404, "{code}");
    s.h.engine.sessions().shutdown_all().await;
}

/// The warm sandbox: a new session gets the pre-started one (its sandbox is ready at once),
/// a replacement is started for the next, and nothing of one session is seen by the next
/// (another user's) session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_sandboxes_serve_one_new_session_each() {
    let llm = ScriptedLlm::start(Format::OpenAi, Vec::new()).await;
    let h = Harness::start(Some(&llm), &[("LUCID_WARM_SANDBOX", "true")]).await;
    let warm_dir = h
        .engine
        .config()
        .workspace_base
        .join(lucid_engine::sessions::warm::WARM_DIR);
    let ready = eventually(Duration::from_secs(60), || async {
        h.engine.sessions().warm_sandbox_ready()
    })
    .await;
    assert!(ready, "no warm sandbox");
    let warm_dirs = || {
        std::fs::read_dir(&warm_dir)
            .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let first_warm = warm_dirs();
    assert_eq!(first_warm.len(), 1);
    assert_eq!(
        std::fs::read_dir(&first_warm[0]).unwrap().count(),
        0,
        "empty"
    );

    let alice = User::with_id("warm-alice");
    llm.push_steps([
        Step::tool_call(
            "execute_bash",
            json!({"command": "echo alice-secret > mine.txt && ls"}),
        ),
        Step::tool_call("finish", json!({"message": "ok"})),
    ]);
    let (a, events) = run_session(
        &h,
        &alice,
        StartSession {
            task: "write".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        final_status(&events),
        lucid_engine::events::SessionStatus::Completed
    );
    let alice_ws = h
        .engine
        .sessions()
        .workspace_of(&alice, &a.session_id)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(alice_ws.join("mine.txt")).unwrap(),
        "alice-secret\n",
        "the warm sandbox worked on the session's workspace"
    );
    assert!(
        !first_warm[0].exists(),
        "the warm workspace became the session's"
    );

    // A fresh one replaces it; another user's session gets that one and sees nothing of
    // Alice's.
    let ready = eventually(Duration::from_secs(60), || async {
        h.engine.sessions().warm_sandbox_ready()
    })
    .await;
    assert!(ready, "no replacement");
    let second_warm = warm_dirs();
    assert_eq!(second_warm.len(), 1);
    assert_ne!(second_warm, first_warm);
    let bob = User::with_id("warm-bob");
    llm.push_steps([
        Step::tool_call(
            "execute_bash",
            json!({"command": "ls -A /workspace | wc -l; cat /workspace/mine.txt"}),
        ),
        Step::tool_call("finish", json!({"message": "ok"})),
    ]);
    let (_, events) = run_session(
        &h,
        &bob,
        StartSession {
            task: "look".into(),
            ..Default::default()
        },
    )
    .await;
    let output = events
        .iter()
        .find_map(|e| match &e.kind {
            lucid_engine::events::EventKind::CommandOutput { output, .. } => Some(output.clone()),
            _ => None,
        })
        .unwrap();
    assert!(output.starts_with("0\n"), "{output}");
    assert!(!output.contains("alice-secret"), "{output}");

    // A continued session starts its own sandbox (the warm one stays for new sessions).
    let ready = eventually(Duration::from_secs(60), || async {
        h.engine.sessions().warm_sandbox_ready()
    })
    .await;
    assert!(ready);
    let warm_before = warm_dirs();
    h.engine
        .sessions()
        .destroy(&alice, &a.session_id)
        .await
        .unwrap();
    let since = h.engine.store().last_seq(&alice, &a.chat_id).await.unwrap();
    llm.push_steps([
        Step::tool_call("execute_bash", json!({"command": "cat mine.txt"})),
        Step::text("continued"),
    ]);
    h.engine
        .sessions()
        .follow_up(&alice, &a.session_id, "again")
        .await
        .unwrap();
    let mut attachment = h
        .engine
        .sessions()
        .attach(&alice, &a.session_id, since)
        .await
        .unwrap();
    let events = collect_until_done(&mut attachment.events, Duration::from_secs(60)).await;
    assert_eq!(events[0].seq, since + 1);
    assert!(events.iter().any(|e| matches!(&e.kind,
        lucid_engine::events::EventKind::CommandOutput { output, .. } if output.contains("alice-secret"))));
    assert_eq!(
        warm_dirs(),
        warm_before,
        "the warm sandbox was left for new sessions"
    );
    drop(attachment);
    h.engine.sessions().shutdown_all().await;
    assert!(warm_dirs().is_empty(), "shutdown releases the warm sandbox");
}

/// A session started with its own API key (never stored) can be continued once the key is
/// given again; without it the refusal says so (422), and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_started_with_its_own_key_is_continued_with_it_again() {
    const KEY: &str = "per-session-key-0123";
    let llm = ScriptedLlm::start_with_key(Format::Anthropic, vec![Step::text("first")], KEY).await;
    // The engine has no Anthropic key of its own.
    let h = Harness::start(Some(&llm), &[("ANTHROPIC_API_KEY", "")]).await;
    let user = User::with_id("own-key");
    let (started, events) = run_session(
        &h,
        &user,
        StartSession {
            task: "hello".into(),
            model_provider: Some("anthropic".into()),
            api_key: Some(KEY.into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        final_status(&events),
        lucid_engine::events::SessionStatus::Completed
    );
    let sid = started.session_id;
    h.engine.sessions().destroy(&user, &sid).await.unwrap();
    let since = h
        .engine
        .store()
        .last_seq(&user, &started.chat_id)
        .await
        .unwrap();

    let err = h
        .engine
        .sessions()
        .follow_up(&user, &sid, "and again")
        .await
        .unwrap_err();
    assert_eq!(
        err.kind,
        lucid_engine::ErrorKind::Unprocessable,
        "{}",
        err.message
    );
    assert!(err.message.contains("apiKey"), "{}", err.message);
    assert!(!err.message.contains(KEY));
    assert_eq!(
        h.engine
            .store()
            .last_seq(&user, &started.chat_id)
            .await
            .unwrap(),
        since,
        "a refused message changes nothing"
    );

    llm.push_steps([Step::text("second")]);
    h.engine
        .sessions()
        .follow_up_with_key(&user, &sid, "and again", Some(KEY))
        .await
        .unwrap();
    let mut attachment = h
        .engine
        .sessions()
        .attach(&user, &sid, since)
        .await
        .unwrap();
    let events = collect_until_done(&mut attachment.events, Duration::from_secs(60)).await;
    assert_eq!(events[0].seq, since + 1);
    assert_eq!(
        final_status(&events),
        lucid_engine::events::SessionStatus::Completed
    );
    assert!(events.iter().any(|e| matches!(&e.kind,
        lucid_engine::events::EventKind::AssistantMessage { content } if content == "second")));
    drop(attachment);
    h.engine.sessions().shutdown_all().await;
}
