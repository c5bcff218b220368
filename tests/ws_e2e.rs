//! Live sessions over real HTTP/WebSocket on 127.0.0.1 with the scripted LLM and a real
//! container: ordered gap-free events, history, follow-ups, stop, attach/replay, ping,
//! malformed frames, close codes, cross-user isolation, files API. The tests in
//! `in_both_modes!` run in local mode (SQLite) and in Supabase mode (PostgREST stand-in on a
//! real PostgreSQL with row-level security); Supabase mode also survives a database outage
//! mid-session without losing an event.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures::{SinkExt, StreamExt};
use lucid_testkit::llm::{Format, ScriptedLlm, Step};
use lucid_testkit::supabase::SupabaseProject;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Which store the engine runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Local,
    Supabase,
}

/// Defines `mod <name> { local, supabase }`: the body runs once per [`Mode`].
macro_rules! in_both_modes {
    ($(#[$meta:meta])* async fn $name:ident($mode:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($mode: Mode) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn local() {
                body(Mode::Local).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn supabase() {
                body(Mode::Supabase).await
            }
        }
    };
}

struct Server {
    h: Harness,
    base: String,
    http: reqwest::Client,
    /// The Supabase project (Supabase mode only).
    project: Option<Arc<SupabaseProject>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start_in(mode: Mode, llm: &ScriptedLlm) -> Server {
        let project = match mode {
            Mode::Local => None,
            Mode::Supabase => Some(Arc::new(SupabaseProject::start().await)),
        };
        let mut extra = vec![("LUCID_SANDBOX_IDLE_SECS", "30".to_string())];
        if let Some(project) = &project {
            extra.extend(project.env());
        }
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let h = Harness::start(Some(llm), &extra).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let app = lucid_server::router(h.engine.clone());
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Server {
            h,
            base,
            http,
            project,
            _task: task,
        }
    }

    /// A bearer token of the user called `user` (local, or a Supabase access token).
    fn token(&self, user: &str) -> String {
        match &self.project {
            Some(project) => project.token(&project.user_named(user), Duration::from_secs(3600)),
            None => {
                lucid_engine::auth::issue_token(user, SECRET.as_bytes(), Duration::from_secs(3600))
            }
        }
    }

    async fn ws(&self, token: Option<&str>) -> Ws {
        let url = match token {
            Some(t) => format!("ws://{}/api/v1/ws?token={t}", self.base),
            None => format!("ws://{}/api/v1/ws", self.base),
        };
        tokio_tungstenite::connect_async(url).await.unwrap().0
    }

    fn get(&self, path: &str, user: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("http://{}{path}", self.base))
            .bearer_auth(self.token(user))
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// Next JSON frame; `Err(code)` when the server closed.
async fn recv(ws: &mut Ws) -> Result<Value, u16> {
    let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
        .await
        .expect("no frame within 60 s");
    match msg {
        Some(Ok(Message::Text(t))) => Ok(serde_json::from_str(t.as_str()).unwrap()),
        Some(Ok(Message::Close(frame))) => Err(frame.map(|f| u16::from(f.code)).unwrap_or(1005)),
        Some(Ok(other)) => panic!("unexpected frame {other:?}"),
        Some(Err(_)) | None => Err(1006),
    }
}

/// Frames until a status frame with one of `statuses` (inclusive).
async fn until_status(ws: &mut Ws, statuses: &[&str]) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let f = recv(ws)
            .await
            .unwrap_or_else(|code| panic!("closed {code}; got {out:#?}"));
        let done = f["type"] == "status"
            && f.get("seq").is_some()
            && statuses.contains(&f["status"].as_str().unwrap_or(""));
        out.push(f);
        if done {
            return out;
        }
    }
}

fn seqs(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .filter_map(|f| f.get("seq").and_then(Value::as_u64))
        .collect()
}

fn script() -> Vec<Step> {
    vec![
        Step::tool_call(
            "str_replace_editor",
            json!({"command": "create", "path": "/workspace/app.py", "file_text": "print('hi')\n"}),
        ),
        Step::tool_call(
            "execute_bash",
            json!({"command": "ln -s /etc /workspace/etc-link && cat /workspace/app.py"}),
        ),
        Step::tool_call("finish", json!({"message": "done"})),
    ]
}

in_both_modes! {
    async fn full_session_over_websocket(mode) {
    let llm = ScriptedLlm::start(Format::Anthropic, script()).await;
    let s = Server::start_in(mode, &llm).await;
    let mut ws = s.ws(Some(&s.token("alice"))).await;
    send(
        &mut ws,
        json!({"task": "make app.py", "modelProvider": "anthropic", "projectId": "p1"}),
    )
    .await;

    let first = recv(&mut ws).await.unwrap();
    assert_eq!(first["type"], "status");
    assert_eq!(first["status"], "initializing");
    assert_eq!(
        first["seq"], 1,
        "the session's own (single) initializing status"
    );
    let mut frames = vec![first];
    frames.extend(until_status(&mut ws, &["completed", "failed"]).await);
    assert_eq!(frames.last().unwrap()["status"], "completed", "{frames:#?}");
    let ready = frames
        .iter()
        .find(|f| f["status"] == "ready")
        .expect("ready frame");
    let session_id = ready["sessionId"].as_str().unwrap().to_string();
    let chat_id = ready["chatId"].as_str().unwrap().to_string();
    let s1 = seqs(&frames);
    assert_eq!(
        s1,
        (1..=s1.len() as u64).collect::<Vec<_>>(),
        "gap-free, in order"
    );
    assert!(frames
        .iter()
        .all(|f| f.get("seq").is_none() || f["sessionId"] == session_id.as_str()));
    let cmd = frames
        .iter()
        .find(|f| f["eventType"] == "CmdOutputObservation")
        .unwrap();
    assert_eq!(cmd["event"], "observation");
    assert_eq!(cmd["exitCode"], 0);
    assert!(cmd["content"].as_str().unwrap().contains("print('hi')"));
    assert!(
        frames.iter().any(|f| f["type"] == "file_tree"),
        "file tree pushed after edits"
    );

    // ping / pong and a malformed frame keep the connection usable.
    send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(recv(&mut ws).await.unwrap()["type"], "pong");
    ws.send(Message::Text("{oops".into())).await.unwrap();
    assert_eq!(recv(&mut ws).await.unwrap()["type"], "error");
    send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(recv(&mut ws).await.unwrap()["type"], "pong");

    // Follow-up continues the same conversation and the same seq.
    llm.push_steps([Step::text("Nothing else to do.")]);
    send(
        &mut ws,
        json!({"type": "message", "content": "anything else?"}),
    )
    .await;
    let more = until_status(&mut ws, &["completed", "failed"]).await;
    let s2 = seqs(&more);
    assert_eq!(s2[0], *s1.last().unwrap() + 1);
    assert!(more.iter().any(|f| f["eventType"] == "FollowUp"));
    let last_request = llm.requests().last().unwrap().to_string();
    assert!(last_request.contains("make app.py") && last_request.contains("anything else?"));

    // The history holds every event the client saw.
    let chat: Value = s
        .get(&format!("/api/v1/chats/{chat_id}"), "alice")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored = chat["messages"].as_array().unwrap().len() as u64;
    assert!(stored >= *s2.last().unwrap(), "stored {stored}");

    // Files API on the session, with traversal attempts.
    let read = |path: &str| {
        s.get(
            &format!("/api/v1/files/read?session_id={session_id}&path={path}"),
            "alice",
        )
    };
    let ok: Value = read("/app.py").send().await.unwrap().json().await.unwrap();
    assert_eq!(ok["content"], "print('hi')\n");
    let ok2: Value = read("/workspace/app.py")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok2["content"], "print('hi')\n");
    for bad in [
        "../../etc/passwd",
        "/etc/passwd",
        "/etc-link/passwd",
        "%2e%2e/%2e%2e/etc/passwd",
    ] {
        let r = read(bad).send().await.unwrap();
        assert!(r.status().is_client_error(), "{bad}: {}", r.status());
        let body = r.text().await.unwrap();
        assert!(!body.contains("root:x:0:0"), "{bad} leaked {body}");
    }
    // A link made in the sandbox is named, never followed (400 with a clear detail).
    let r = read("/workspace/etc-link/passwd").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["detail"],
        "/etc-link is a symbolic link; Lucid does not follow links — use the target path."
    );
    let tree: Value = s
        .get(
            &format!("/api/v1/files/list?session_id={session_id}"),
            "alice",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(tree["tree"].to_string().contains("app.py"));
    assert!(
        !tree["tree"].to_string().contains("passwd"),
        "symlink not followed"
    );

    // Another user can neither read, list, attach nor stop.
    let r = s
        .get(
            &format!("/api/v1/files/read?session_id={session_id}&path=/app.py"),
            "mallory",
        )
        .send()
        .await
        .unwrap();
    assert!(r.status() == 403 || r.status() == 404);
    let r = s
        .get(
            &format!("/api/v1/files/list?session_id=../alice/{session_id}"),
            "mallory",
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    let r = s
        .get(
            &format!("/api/v1/files/list?session_id=../alice/{session_id}"),
            "alice",
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    let list: Value = s
        .get("/api/v1/sessions", "mallory")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["sessions"].as_array().unwrap().len(), 0);
    let r = s
        .http
        .delete(format!("http://{}/api/v1/sessions/{session_id}", s.base))
        .bearer_auth(s.token("mallory"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let mut spy = s.ws(Some(&s.token("mallory"))).await;
    send(
        &mut spy,
        json!({"type": "attach", "sessionId": session_id, "since": 0}),
    )
    .await;
    let f = recv(&mut spy).await.unwrap();
    assert_eq!(f["type"], "error");
    assert!(recv(&mut spy).await.is_err(), "closed after refusal");

    // Attach with `since` replays exactly the missed events.
    drop(ws);
    let mut again = s.ws(Some(&s.token("alice"))).await;
    send(
        &mut again,
        json!({"type": "attach", "sessionId": session_id, "since": 3}),
    )
    .await;
    let replay = recv(&mut again).await.unwrap();
    assert_eq!(replay["seq"], 4);
    send(&mut again, json!({"type": "stop"})).await;

    let r = s
        .http
        .delete(format!("http://{}/api/v1/sessions/{session_id}", s.base))
        .bearer_auth(s.token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "stopped");
    assert_eq!(containers_of_session(&session_id).await, 0);
    // Files stay readable after the session ended.
    let after: Value = read("/app.py").send().await.unwrap().json().await.unwrap();
    assert_eq!(after["content"], "print('hi')\n");
    s.h.engine.shutdown().await;
    }
}

in_both_modes! {
    async fn stop_over_websocket_interrupts_sleep(mode) {
    let llm = ScriptedLlm::start(
        Format::OpenAi,
        vec![
            Step::tool_call("execute_bash", json!({"command": "sleep 30"})),
            Step::text("ok"),
        ],
    )
    .await;
    let s = Server::start_in(mode, &llm).await;
    let mut ws = s.ws(Some(&s.token("bob"))).await;
    send(&mut ws, json!({"task": "sleep a while"})).await;
    loop {
        let f = recv(&mut ws).await.unwrap();
        if f["eventType"] == "CmdRunAction" {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    send(&mut ws, json!({"type": "stop"})).await;
    let frames = until_status(&mut ws, &["stopped", "completed", "failed"]).await;
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        t.elapsed()
    );
    assert_eq!(frames.last().unwrap()["status"], "stopped");
    s.h.engine.shutdown().await;
    }
}

in_both_modes! {
    async fn auth_and_task_close_codes(mode) {
    let llm = ScriptedLlm::start(Format::OpenAi, vec![]).await;
    let s = Server::start_in(mode, &llm).await;

    let mut ws = s.ws(Some("not-a-jwt")).await;
    assert_eq!(recv(&mut ws).await, Err(4010));

    let mut ws = s.ws(None).await;
    send(&mut ws, json!({"task": "x"})).await;
    assert_eq!(recv(&mut ws).await.unwrap()["type"], "error");
    assert_eq!(recv(&mut ws).await, Err(4010));

    // Token in the first frame works.
    let mut ws = s.ws(None).await;
    send(&mut ws, json!({"token": s.token("carol")})).await;
    let f = recv(&mut ws).await.unwrap();
    assert_eq!(f["message"], "Missing required field: 'task'");
    assert_eq!(recv(&mut ws).await, Err(4001));

    let mut ws = s.ws(Some(&s.token("carol"))).await;
    send(&mut ws, json!({"task": "   "})).await;
    assert_eq!(recv(&mut ws).await.unwrap()["type"], "error");
    assert_eq!(recv(&mut ws).await, Err(4001));
    s.h.engine.shutdown().await;
    }
}

in_both_modes! {
    /// The model's partial text arrives as `agent_delta` frames (no `seq`) before the complete
    /// `MessageAction`; a replay has the message and no deltas.
    async fn partial_text_streams_over_websocket_and_is_not_replayed(mode) {
    const ANSWER: &str = "Here is what I found: the workspace is empty, so I wrote nothing yet.";
    let llm = ScriptedLlm::start(
        Format::OpenAi,
        vec![Step::text(ANSWER).paced(Duration::from_millis(80))],
    )
    .await;
    let s = Server::start_in(mode, &llm).await;
    let mut ws = s.ws(Some(&s.token("dora"))).await;
    send(&mut ws, json!({"task": "look", "modelProvider": "openai"})).await;
    let frames = until_status(&mut ws, &["completed", "failed"]).await;
    assert_eq!(frames.last().unwrap()["status"], "completed", "{frames:#?}");
    let message = frames
        .iter()
        .position(|f| f["eventType"] == "MessageAction")
        .expect("message frame");
    let deltas: Vec<&Value> = frames
        .iter()
        .filter(|f| f["type"] == "agent_delta")
        .collect();
    assert!(deltas.len() >= 3, "{frames:#?}");
    let first_delta = frames
        .iter()
        .position(|f| f["type"] == "agent_delta")
        .unwrap();
    assert!(first_delta < message);
    let text: String = deltas
        .iter()
        .map(|f| {
            assert_eq!(f["eventType"], "AssistantDelta");
            assert!(f.get("seq").is_none());
            assert!(f["afterSeq"].as_u64().is_some());
            assert!(f["chatId"].is_string());
            f["content"].as_str().unwrap()
        })
        .collect();
    assert_eq!(text, ANSWER);
    assert_eq!(frames[message]["content"], ANSWER);
    let s1 = seqs(&frames);
    assert_eq!(s1, (1..=s1.len() as u64).collect::<Vec<_>>());

    let session_id = frames[message]["sessionId"].as_str().unwrap().to_string();
    let mut again = s.ws(Some(&s.token("dora"))).await;
    send(
        &mut again,
        json!({"type": "attach", "sessionId": session_id, "since": 0}),
    )
    .await;
    let replay = until_status(&mut again, &["completed"]).await;
    assert!(replay.iter().all(|f| f["type"] != "agent_delta"));
    assert!(replay.iter().any(|f| f["eventType"] == "MessageAction"));
    s.h.engine.shutdown().await;
    }
}

/// Supabase mode: the database goes away in the middle of a session. The session goes on, the
/// client sees every event live and in order, and once the database is back every one of
/// them is stored (from the outbox), so the history and a replay are complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supabase_outage_mid_session_loses_no_event() {
    let llm = ScriptedLlm::start(
        Format::Anthropic,
        vec![
            // The outage starts while this command runs.
            Step::tool_call("execute_bash", json!({"command": "sleep 1; echo one"})),
            Step::tool_call("execute_bash", json!({"command": "echo two"})),
            Step::tool_call("finish", json!({"message": "done"})),
        ],
    )
    .await;
    let s = Server::start_in(Mode::Supabase, &llm).await;
    let project = s.project.clone().unwrap();
    let mut ws = s.ws(Some(&s.token("alice"))).await;
    send(&mut ws, json!({"task": "echo twice"})).await;
    let mut frames = Vec::new();
    let mut chat_id = None;
    loop {
        let f = recv(&mut ws).await.unwrap();
        if f["status"] == "ready" {
            chat_id = f["chatId"].as_str().map(str::to_string);
        }
        let sleeping = f["eventType"] == "CmdRunAction";
        frames.push(f);
        if sleeping {
            break;
        }
    }
    let chat_id = chat_id.expect("chat id");
    project.rest.set_database_down(true);
    frames.extend(until_status(&mut ws, &["completed", "failed"]).await);
    assert_eq!(frames.last().unwrap()["status"], "completed", "{frames:#?}");
    let live = seqs(&frames);
    let last = *live.last().unwrap();
    assert_eq!(live, (1..=last).collect::<Vec<_>>(), "gap-free, in order");

    let chat: uuid::Uuid = chat_id.parse().unwrap();
    let stored = || async {
        project
            .admin()
            .query(
                "select seq from chat_messages where session_id = $1 order by seq",
                &[&chat],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, i64>(0) as u64)
            .collect::<Vec<u64>>()
    };
    let during = stored().await;
    assert!(
        (during.len() as u64) < last,
        "the outage held events back: {during:?} of {last}; {frames:#?}"
    );
    let outbox = s.h.data_dir.path().join("supabase/outbox");
    assert!(
        std::fs::read_dir(&outbox).unwrap().any(|e| e
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "json")),
        "the waiting events are on disk"
    );

    // The status page says so.
    let status: Value = s
        .get("/api/v1/status", "alice")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        status["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["what"]
                .as_str()
                .unwrap()
                .contains("wait to be sent to Supabase")),
        "{status}"
    );

    project.rest.set_database_down(false);
    let deadline = Instant::now() + Duration::from_secs(30);
    while stored().await.len() as u64 != last {
        assert!(
            Instant::now() < deadline,
            "not flushed: {:?}",
            stored().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored().await, (1..=last).collect::<Vec<_>>());
    let detail: Value = s
        .get(&format!("/api/v1/chats/{chat_id}"), "alice")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        detail["messages"].as_array().unwrap().len() as u64,
        last,
        "{detail}"
    );
    // A client attaching now replays everything from the store.
    let mut again = s.ws(Some(&s.token("alice"))).await;
    let session_id = frames
        .iter()
        .find_map(|f| f["sessionId"].as_str())
        .unwrap()
        .to_string();
    send(
        &mut again,
        json!({"type": "attach", "sessionId": session_id, "since": 0}),
    )
    .await;
    let replay = until_status(&mut again, &["completed"]).await;
    assert_eq!(seqs(&replay), live);
    s.h.engine.shutdown().await;
}
