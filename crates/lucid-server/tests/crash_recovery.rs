//! Crash recovery of `lucid serve`: a server killed with SIGKILL in the middle of a session,
//! then restarted on the same data directory, still has every event its WebSocket client was
//! shown, marks the chat inactive and the session `interrupted` (with a stored event), no
//! longer lists the session as alive, replays the history over WebSocket, removes the
//! container its previous run left behind, and continues the session on a message: the model
//! gets the conversation it had, and a replay from seq 0 returns every event exactly once.

mod cli_support;

use std::time::{Duration, Instant};

use cli_support::*;
use futures::{SinkExt, StreamExt};
use lucid_testkit::llm::{Format, ScriptedLlm, Step};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const STEPS: usize = 5;

fn script() -> Vec<Step> {
    let mut steps: Vec<Step> = (1..=STEPS)
        .map(|n| {
            Step::tool_call(
                "execute_bash",
                json!({ "command": format!("echo step {n}") }),
            )
        })
        .collect();
    steps.push(Step::tool_call(
        "execute_bash",
        json!({"command": "sleep 30"}),
    ));
    steps.push(Step::tool_call(
        "finish",
        json!({"message": "never reached"}),
    ));
    steps
}

/// Next frame as JSON; `Err(code)` once the server closed (1006 for a dropped connection).
async fn recv(ws: &mut Ws) -> Result<Value, u16> {
    let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
        .await
        .expect("no frame within 60 s");
    match msg {
        Some(Ok(Message::Text(t))) => Ok(serde_json::from_str(t.as_str()).expect("JSON frame")),
        Some(Ok(Message::Close(frame))) => Err(frame.map(|f| u16::from(f.code)).unwrap_or(1005)),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Box::pin(recv(ws)).await,
        Some(Ok(other)) => panic!("unexpected frame {other:?}"),
        Some(Err(_)) | None => Err(1006),
    }
}

/// What a frame with a `seq` says, in the stored message's terms: (seq, eventType, content).
fn frame_view(frame: &Value) -> (u64, String, String) {
    let seq = frame["seq"].as_u64().expect("seq");
    if frame["type"] == "status" {
        (
            seq,
            "AgentStateChanged".to_string(),
            frame["message"].as_str().unwrap_or_default().to_string(),
        )
    } else {
        (
            seq,
            frame["eventType"].as_str().unwrap_or_default().to_string(),
            frame["content"].as_str().unwrap_or_default().to_string(),
        )
    }
}

async fn get_json(url: &str, token: &str) -> Value {
    let r = http().get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET {url}");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_keeps_history_and_its_restart_reaps_the_orphan() {
    let llm = ScriptedLlm::start(Format::OpenAi, script()).await;
    let dirs = TestDirs::new();
    let env = lucid_env(&dirs, Some(&llm)).await;
    let token = print_token(&env, &dirs).await;
    let mut first = Served::start(&env, &dirs).await;
    let instance = dirs.instance_id();

    // A client follows a task live and keeps every frame that carries a seq.
    let (mut ws, _) = tokio_tungstenite::connect_async(first.ws_url(&token))
        .await
        .expect("WebSocket connect");
    ws.send(Message::Text(
        json!({"task": "echo a few steps, then wait"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let mut received: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let frame = recv(&mut ws)
            .await
            .unwrap_or_else(|code| panic!("closed {code}; got {received:#?}"));
        let sleeping = frame["eventType"] == "CmdRunAction" && frame["command"] == "sleep 30";
        if frame.get("seq").is_some() {
            received.push(frame);
        }
        if sleeping {
            break;
        }
        assert!(Instant::now() < deadline, "no sleep step: {received:#?}");
    }
    let outputs: Vec<String> = received
        .iter()
        .filter(|f| f["eventType"] == "CmdOutputObservation")
        .map(|f| f["content"].as_str().unwrap().trim().to_string())
        .collect();
    let expected: Vec<String> = (1..=STEPS).map(|n| format!("step {n}")).collect();
    assert_eq!(outputs, expected);
    let session_id = received[0]["sessionId"].as_str().unwrap().to_string();
    let chat_id = received[0]["chatId"].as_str().unwrap().to_string();
    let seqs: Vec<u64> = received
        .iter()
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gap-free"
    );

    // The sandbox is busy with `sleep 30` when the server dies without any clean-up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = dirs.containers().await;
    assert_eq!(before.len(), 1, "{before:#?}");
    assert_eq!(
        before[0].state.map(|s| s.to_string()).as_deref(),
        Some("running")
    );
    first.process.signal("KILL");
    let status = first.process.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(code_of(status), 128 + 9);
    assert_eq!(recv(&mut ws).await.err(), Some(1006), "connection dropped");
    assert_eq!(
        dirs.containers().await.len(),
        1,
        "the orphan is still there"
    );
    let llm_requests = llm.request_count();

    // Restart on the same data directory: same instance, orphan gone once it serves.
    let mut second = Served::start(&env, &dirs).await;
    assert_eq!(dirs.instance_id(), instance);
    let left = dirs.containers().await;
    assert!(left.is_empty(), "orphan not reaped: {left:#?}");

    // Every event the client saw is in the history, with the same content.
    let chat = get_json(&second.url(&format!("/api/v1/chats/{chat_id}")), &token).await;
    assert_eq!(chat["isActive"], false, "{chat:#}");
    assert_eq!(chat["agentSessionId"], session_id.as_str());
    let messages = chat["messages"].as_array().unwrap();
    let stored: Vec<(u64, String, String)> = messages
        .iter()
        .map(|m| {
            (
                m["metadataJson"]["seq"].as_u64().expect("stored seq"),
                m["eventType"].as_str().unwrap_or_default().to_string(),
                m["content"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let stored_seqs: Vec<u64> = stored.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(
        stored_seqs,
        (1..=stored.len() as u64).collect::<Vec<_>>(),
        "stored history is gap-free"
    );
    assert!(stored.len() >= received.len());
    for frame in &received {
        let view = frame_view(frame);
        assert_eq!(
            stored[(view.0 - 1) as usize],
            view,
            "stored event differs from what the client saw"
        );
    }

    // The session is not alive any more, but still known.
    let sessions = get_json(&second.url("/api/v1/sessions"), &token).await;
    assert!(
        !sessions["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["sessionId"] == session_id.as_str() && s["isAlive"] == true),
        "{sessions:#}"
    );
    let one = get_json(
        &second.url(&format!("/api/v1/sessions/{session_id}")),
        &token,
    )
    .await;
    assert_eq!(one["isAlive"], false, "{one:#}");
    assert_eq!(one["status"], "interrupted", "{one:#}");
    let (last_seq, last_type, last_content) = stored.last().unwrap().clone();
    assert_eq!(last_seq, stored.len() as u64);
    assert_eq!(last_type, "AgentStateChanged");
    assert!(last_content.contains("continue"), "{last_content}");
    let chats = get_json(&second.url("/api/v1/chats"), &token).await;
    assert_eq!(chats["chats"][0]["id"], chat_id.as_str());
    assert_eq!(chats["chats"][0]["isActive"], false);

    // Attaching replays the stored history, then says the session is not live.
    let (mut again, _) = tokio_tungstenite::connect_async(second.ws_url(&token))
        .await
        .expect("WebSocket connect");
    again
        .send(Message::Text(
            json!({"type": "attach", "sessionId": session_id, "since": 0})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let mut replayed = Vec::new();
    let not_live = loop {
        match recv(&mut again).await {
            Ok(frame) if frame.get("seq").is_some() => replayed.push(frame_view(&frame)),
            Ok(frame) if frame["type"] == "status" => break frame,
            Ok(_) => {}
            Err(code) => panic!("closed {code}"),
        }
    };
    assert_eq!(not_live["isAlive"], false, "{not_live:#}");
    assert_eq!(not_live["status"], "interrupted");
    assert_eq!(replayed, stored);

    // The restarted server neither resumed the agent nor created a sandbox.
    assert_eq!(llm.request_count(), llm_requests);
    assert!(dirs.containers().await.is_empty());

    // A message continues it on the same connection: the model gets the conversation it had
    // (the interrupted step answered as not run), the events continue after the last seq.
    let before = llm.requests().last().cloned().unwrap();
    again
        .send(Message::Text(
            json!({"type": "message", "content": "please finish up"})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let mut continued = Vec::new();
    loop {
        let frame = recv(&mut again)
            .await
            .unwrap_or_else(|code| panic!("closed {code}; got {continued:#?}"));
        let done = frame["type"] == "status"
            && frame.get("seq").is_some()
            && ["completed", "failed"].contains(&frame["status"].as_str().unwrap_or(""));
        if frame.get("seq").is_some() {
            continued.push(frame);
        }
        if done {
            break;
        }
    }
    assert_eq!(
        continued.last().unwrap()["status"],
        "completed",
        "{continued:#?}"
    );
    let new_seqs: Vec<u64> = continued
        .iter()
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        new_seqs,
        (last_seq + 1..=last_seq + new_seqs.len() as u64).collect::<Vec<_>>()
    );
    let after = llm.requests()[llm_requests].clone();
    let (before, after) = (
        before["messages"].as_array().unwrap().clone(),
        after["messages"].as_array().unwrap().clone(),
    );
    assert_eq!(
        after[..before.len()],
        before[..],
        "the conversation is the same"
    );
    let added = &after[before.len()..];
    // The model's `sleep 30` call, its result saying it never ran, the new message.
    assert_eq!(added.len(), 3, "{added:#?}");
    assert_eq!(added[0]["role"], "assistant");
    assert_eq!(
        added[0]["tool_calls"][0]["function"]["name"],
        "execute_bash"
    );
    assert_eq!(added[1]["role"], "tool");
    assert!(added[1]["content"]
        .as_str()
        .unwrap()
        .contains("interrupted"));
    assert_eq!(added[2]["role"], "user");
    assert_eq!(added[2]["content"], "please finish up");
    drop(again);

    // A replay from 0 returns every event exactly once.
    let (mut replay, _) = tokio_tungstenite::connect_async(second.ws_url(&token))
        .await
        .expect("WebSocket connect");
    replay
        .send(Message::Text(
            json!({"type": "attach", "sessionId": session_id, "since": 0})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let mut all = Vec::new();
    let total = last_seq + new_seqs.len() as u64;
    while all.len() < total as usize {
        let frame = recv(&mut replay).await.expect("replay");
        if let Some(seq) = frame.get("seq").and_then(Value::as_u64) {
            all.push(seq);
        }
    }
    assert_eq!(all, (1..=total).collect::<Vec<_>>());
    let chat = get_json(&second.url(&format!("/api/v1/chats/{chat_id}")), &token).await;
    assert_eq!(chat["messages"].as_array().unwrap().len() as u64, total);
    drop(replay);

    second.process.signal("TERM");
    let status = second.process.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{}", second.process.stderr());
}

/// Supabase mode: the database goes away mid-session (events wait in the outbox on disk), then
/// `lucid serve` is killed. The restarted server, with the database back, sends what the dead
/// one left in its outbox, marks the chat inactive through its own list of active chats, and
/// the history holds every event the client was shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_supabase_server_with_unsent_events_loses_none_of_them() {
    let project = lucid_testkit::supabase::SupabaseProject::start().await;
    let llm = ScriptedLlm::start(Format::OpenAi, script()).await;
    let dirs = TestDirs::new();
    let mut env = lucid_env(&dirs, Some(&llm)).await;
    env.extend(project.env().into_iter().map(|(k, v)| (k.to_string(), v)));
    let user = project.user_named("alice");
    let token = project.token(&user, Duration::from_secs(3600));
    let mut first = Served::start(&env, &dirs).await;

    let (mut ws, _) = tokio_tungstenite::connect_async(first.ws_url(&token))
        .await
        .expect("WebSocket connect");
    ws.send(Message::Text(
        json!({"task": "echo a few steps, then wait"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let mut received: Vec<Value> = Vec::new();
    let mut outage = false;
    loop {
        let frame = recv(&mut ws)
            .await
            .unwrap_or_else(|code| panic!("closed {code}; got {received:#?}"));
        let sleeping = frame["eventType"] == "CmdRunAction" && frame["command"] == "sleep 30";
        let first_output = frame["eventType"] == "CmdOutputObservation";
        if frame.get("seq").is_some() {
            received.push(frame);
        }
        if first_output && !outage {
            project.rest.set_database_down(true);
            outage = true;
        }
        if sleeping {
            break;
        }
    }
    let chat_id = received[0]["chatId"].as_str().unwrap().to_string();
    let chat: uuid::Uuid = chat_id.parse().unwrap();
    let count = || async {
        project
            .admin()
            .query_one(
                "select count(*) from chat_messages where session_id = $1",
                &[&chat],
            )
            .await
            .unwrap()
            .get::<_, i64>(0) as usize
    };
    assert!(
        count().await < received.len(),
        "the outage held events back"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.process.signal("KILL");
    first.process.wait_exit(Duration::from_secs(15)).await;
    let outbox = dirs.data().join("supabase/outbox");
    assert!(
        std::fs::read_dir(&outbox).unwrap().any(|e| e
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "json")),
        "the dead server left its unsent events on disk"
    );

    project.rest.set_database_down(false);
    let mut second = Served::start(&env, &dirs).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while count().await < received.len() {
        assert!(
            Instant::now() < deadline,
            "outbox not sent after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let detail = get_json(&second.url(&format!("/api/v1/chats/{chat_id}")), &token).await;
    assert_eq!(detail["isActive"], false, "{detail:#}");
    let stored: Vec<(u64, String, String)> = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["metadataJson"]["seq"].as_u64().expect("stored seq"),
                m["eventType"].as_str().unwrap_or_default().to_string(),
                m["content"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let stored_seqs: Vec<u64> = stored.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(
        stored_seqs,
        (1..=stored.len() as u64).collect::<Vec<_>>(),
        "stored history is gap-free"
    );
    for frame in &received {
        let view = frame_view(frame);
        assert_eq!(stored[(view.0 - 1) as usize], view);
    }
    assert!(dirs.containers().await.is_empty(), "orphan reaped");
    second.process.signal("TERM");
    let status = second.process.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{}", second.process.stderr());
}
