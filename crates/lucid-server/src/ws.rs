//! `WS /api/v1/ws`: the original protocol, fixed and extended.
//!
//! Auth: `?token=`, an `Authorization: Bearer` header, or `token` in the first frame (close
//! 4010 on failure). First frame: a task (`task`, `repoUrl`, `branch`, `modelProvider`,
//! `model`, `apiKey`, `projectId`) starts a session (close 4001 without a task), or
//! `{"type":"attach","sessionId","since"}` follows an existing one from `since`. Then every
//! event of the session as `status` / `agent_event` frames with `seq` and `sessionId`, plus
//! `file_tree` after file-changing steps. While the model writes, its partial text arrives as
//! `agent_delta` frames (`eventType` `AssistantDelta` with the next piece in `content`, or
//! `AssistantRestart` when the answer starts over; `afterSeq` = the stored event they follow);
//! they are live only, never replayed, and the complete `MessageAction` event follows. Client frames: `message` (follow-up), `stop`
//! (interrupts the running step), `ping` → `pong`, `attach`. Malformed frames get an `error`
//! frame and the connection stays usable. Disconnecting does not stop the session.
//!
//! A session that is not live (finished and released, or from before an engine restart)
//! replays its history, then the server sends `{"type":"status","status":<last status>,
//! "isAlive":false,"sessionId"}` (no `seq`) and keeps the connection open: a `message` frame
//! (optionally with `apiKey`, for a session started with its own key) continues the session
//! and its new events follow on the same connection.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use lucid_engine::auth::Credentials;
use lucid_engine::sessions::event_log::{LiveItem, LiveStream};
use lucid_engine::sessions::{AttachGuard, Attachment, StartSession};
use lucid_engine::{Engine, User};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::AppState;

/// How long the server waits for the first frame.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest accepted frame.
const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// How often the server pings a connected client.
const PING_EVERY: Duration = Duration::from_secs(30);
/// A client silent for this long (no frame, no pong) is considered gone.
const CLIENT_SILENCE_LIMIT: Duration = Duration::from_secs(90);
/// A send that takes longer (client not reading) drops the connection.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

const CLOSE_AUTH: u16 = 4010;
const CLOSE_MISSING_TASK: u16 = 4001;

#[derive(Debug, Deserialize)]
pub struct WsQuery {
    token: Option<String>,
}

pub async fn upgrade(
    State(state): State<AppState>,
    Query(query): Query<WsQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let header_token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let token = query.token.filter(|t| !t.is_empty()).or(header_token);
    ws.max_message_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| Connection::new(state.engine, socket).run(token))
}

type Sender = futures::stream::SplitSink<WebSocket, Message>;
type Receiver = futures::stream::SplitStream<WebSocket>;

struct Connection {
    engine: std::sync::Arc<Engine>,
    tx: Sender,
    rx: Receiver,
    /// When the client last sent anything (frames, pings, pongs).
    last_seen: std::time::Instant,
}

impl Connection {
    fn new(engine: std::sync::Arc<Engine>, socket: WebSocket) -> Self {
        let (tx, rx) = socket.split();
        Self {
            engine,
            tx,
            rx,
            last_seen: std::time::Instant::now(),
        }
    }

    async fn send(&mut self, value: Value) -> bool {
        self.tx
            .send(Message::Text(Utf8Bytes::from(value.to_string())))
            .await
            .is_ok()
    }

    async fn send_error(&mut self, message: &str) -> bool {
        self.send(json!({ "type": "error", "message": message }))
            .await
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let _ = self
            .tx
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from(reason),
            })))
            .await;
        let _ = self.tx.close().await;
    }

    /// Reads the next JSON object frame, answering pings and reporting malformed frames.
    /// `None` when the client went away.
    async fn next_frame(&mut self) -> Option<Result<Value, String>> {
        loop {
            let message = self.rx.next().await?;
            self.last_seen = std::time::Instant::now();
            match message {
                Ok(Message::Text(text)) => return Some(parse_frame(text.as_str())),
                Ok(Message::Binary(_)) => {
                    return Some(Err(
                        "Binary frames are not supported; send JSON text.".into()
                    ))
                }
                Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
                Ok(Message::Close(_)) | Err(_) => return None,
            }
        }
    }

    async fn run(mut self, token: Option<String>) {
        // Authenticate from the query/header token first: a bad one is final.
        let mut user = match token.as_deref() {
            Some(t) => match self.engine.authenticate(Credentials::Bearer(t)).await {
                Ok(u) => Some(u),
                Err(e) => {
                    self.close(CLOSE_AUTH, &e.to_string()).await;
                    return;
                }
            },
            None => None,
        };

        let first = match tokio::time::timeout(INIT_TIMEOUT, self.first_object()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(_) => {
                self.send_error("Timeout waiting for initial configuration.")
                    .await;
                self.close(1008, "Timeout").await;
                return;
            }
        };

        if user.is_none() {
            if let Some(t) = first.get("token").and_then(Value::as_str) {
                user = self.engine.authenticate(Credentials::Bearer(t)).await.ok();
            }
        }
        let Some(user) = user else {
            self.send_error("Authentication required. Provide a valid JWT token.")
                .await;
            self.close(CLOSE_AUTH, "Authentication required").await;
            return;
        };

        let attachment = if frame_type(&first) == Some("attach") {
            match self.attach_from(&user, &first).await {
                Some(a) => a,
                None => return,
            }
        } else {
            match self.start_from(&user, first).await {
                Some(a) => a,
                None => return,
            }
        };
        self.stream(user, attachment).await;
    }

    /// The first frame that is a JSON object; malformed frames get an error and are skipped.
    async fn first_object(&mut self) -> Option<Value> {
        loop {
            match self.next_frame().await? {
                Ok(v) if frame_type(&v) == Some("ping") => {
                    if !self.send(json!({"type": "pong"})).await {
                        return None;
                    }
                }
                Ok(v) => return Some(v),
                Err(message) => {
                    if !self.send_error(&message).await {
                        return None;
                    }
                }
            }
        }
    }

    async fn start_from(&mut self, user: &User, frame: Value) -> Option<Attachment> {
        let task = frame
            .get("task")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_string();
        if task.is_empty() {
            self.send_error("Missing required field: 'task'").await;
            self.close(CLOSE_MISSING_TASK, "Missing task").await;
            return None;
        }
        let text = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| frame.get(*n).and_then(Value::as_str))
                .map(str::to_string)
                .filter(|s| !s.is_empty())
        };
        let req = StartSession {
            task,
            repo_url: text(&["repoUrl", "repo_url"]),
            branch: text(&["branch"]),
            model_provider: text(&["modelProvider", "model_provider"]),
            model: text(&["model"]),
            api_key: text(&["apiKey", "api_key"]),
            project_id: text(&["projectId", "project_id"]),
            git_token: text(&["gitToken", "git_token"]),
        };
        // No frame of our own here: the session's first event is its `initializing` status
        // (with a seq), then `ready`, then the task; saying it here too would say it twice.
        let started = match self.engine.sessions().start(user, req).await {
            Ok(s) => s,
            Err(e) => {
                self.send_error(&e.message).await;
                self.close(1011, "Session could not start").await;
                return None;
            }
        };
        match self
            .engine
            .sessions()
            .attach(user, &started.session_id, 0)
            .await
        {
            Ok(a) => Some(a),
            Err(e) => {
                self.send_error(&e.message).await;
                None
            }
        }
    }

    async fn attach_from(&mut self, user: &User, frame: &Value) -> Option<Attachment> {
        let session_id = frame.get("sessionId").and_then(Value::as_str).unwrap_or("");
        let since = frame.get("since").and_then(Value::as_u64).unwrap_or(0);
        if session_id.is_empty() {
            self.send_error("Missing required field: 'sessionId'").await;
            self.close(CLOSE_MISSING_TASK, "Missing sessionId").await;
            return None;
        }
        match self.engine.sessions().attach(user, session_id, since).await {
            Ok(a) => Some(a),
            Err(e) => {
                self.send_error(&e.message).await;
                self.close(4004, "Session not available").await;
                None
            }
        }
    }

    /// Forwards the session's events and handles client frames until either side ends.
    async fn stream(mut self, user: User, attachment: Attachment) {
        let (mut session_id, mut chat_id, mut replay_until, mut events, mut _guard, mut was_live) =
            split(attachment);
        let mut tree_after_replay = false;
        // The session is not live and everything was delivered: waiting for a `message`.
        let mut ended = false;
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                _ = ping.tick() => {
                    // Half-open connections would otherwise keep the session attached forever.
                    if self.last_seen.elapsed() > CLIENT_SILENCE_LIMIT {
                        tracing::info!(session = %session_id, "closing a silent WebSocket client");
                        self.close(1001, "No response").await;
                        return;
                    }
                    let ping = self.tx.send(Message::Ping(Default::default()));
                    if !matches!(tokio::time::timeout(SEND_TIMEOUT, ping).await, Ok(Ok(()))) {
                        return;
                    }
                }
                event = events.next(), if !ended => match event {
                    Ok(Some(LiveItem::Transient(partial))) => {
                        let mut frame = partial.to_wire();
                        frame["chatId"] = json!(chat_id);
                        if !self.send(frame).await {
                            return;
                        }
                    }
                    Ok(Some(LiveItem::Stored(event))) => {
                        let mut frame = event.to_wire();
                        frame["chatId"] = json!(chat_id);
                        if !self.send(frame).await {
                            return;
                        }
                        // Replayed history gets one tree once caught up, not one per event.
                        let replaying = event.seq < replay_until;
                        let tree_due = if replaying {
                            tree_after_replay |= event.may_change_files();
                            false
                        } else {
                            let due = event.may_change_files() || tree_after_replay;
                            tree_after_replay = false;
                            due
                        };
                        if tree_due && !self.send_tree(&user, &session_id).await {
                            return;
                        }
                    }
                    Ok(None) => {
                        // A replay of a session that was not live, continued meanwhile (a
                        // message arrived during the replay)? Follow it. A live session that
                        // ended is not followed again.
                        let since = events.last_seq();
                        if !was_live && self.engine.sessions().status(&user, &session_id).is_ok() {
                            if let Ok(a) =
                                self.engine.sessions().attach(&user, &session_id, since).await
                            {
                                (session_id, chat_id, replay_until, events, _guard, was_live) =
                                    split(a);
                                continue;
                            }
                        }
                        ended = true;
                        if !self.send_not_live(&user, &session_id).await {
                            return;
                        }
                    }
                    Err(e) => {
                        if !self.send_error(&e.message).await {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                },
                frame = self.next_frame() => {
                    let Some(frame) = frame else { return };
                    match frame {
                        Err(message) => {
                            if !self.send_error(&message).await {
                                return;
                            }
                        }
                        Ok(frame) => {
                            let resume_from = ended.then(|| events.last_seq());
                            match self
                                .handle_client_frame(&user, &session_id, &frame, resume_from)
                                .await
                            {
                                FrameOutcome::Continue => {}
                                FrameOutcome::Gone => return,
                                FrameOutcome::Reattach(a) => {
                                    (
                                        session_id,
                                        chat_id,
                                        replay_until,
                                        events,
                                        _guard,
                                        was_live,
                                    ) = split(*a);
                                    tree_after_replay = false;
                                    ended = false;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Tells the client that the session is not live (after its history): a `message`
    /// continues it.
    async fn send_not_live(&mut self, user: &User, session_id: &str) -> bool {
        let status = match self.engine.sessions().get(user, session_id).await {
            Ok(summary) => summary.status,
            Err(e) => {
                self.send_error(&e.message).await;
                self.close(4004, "Session not available").await;
                return false;
            }
        };
        self.send(json!({
            "type": "status",
            "status": status.as_str(),
            "isAlive": false,
            "message": "The session is not running; send a message to continue it.",
            "sessionId": session_id,
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
        }))
        .await
    }

    async fn send_tree(&mut self, user: &User, session_id: &str) -> bool {
        match self.engine.list_files(user, session_id).await {
            Ok(tree) => {
                self.send(json!({
                    "type": "file_tree",
                    "tree": tree.tree,
                    "truncated": tree.truncated,
                    "sessionId": session_id,
                    "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
                }))
                .await
            }
            Err(e) => {
                tracing::debug!(error = %e.message, "file tree not sent");
                true
            }
        }
    }

    async fn handle_client_frame(
        &mut self,
        user: &User,
        session_id: &str,
        frame: &Value,
        resume_from: Option<u64>,
    ) -> FrameOutcome {
        let sessions = self.engine.sessions();
        let kind = frame_type(frame).unwrap_or("message");
        let ok = match kind {
            "ping" => self.send(json!({ "type": "pong" })).await,
            "stop" => {
                use lucid_engine::events::SessionStatus;
                let idle = matches!(
                    sessions.status(user, session_id),
                    Ok(SessionStatus::Completed | SessionStatus::Stopped | SessionStatus::Failed)
                );
                match sessions.stop(user, session_id) {
                    // Nothing runs: say so, so a client waiting for a final status is not stuck.
                    Ok(()) if idle => {
                        let status = sessions.status(user, session_id).ok();
                        self.send(json!({
                            "type": "status",
                            "status": status.map(|s| s.as_str()).unwrap_or("stopped"),
                            "message": "Nothing is running.",
                            "sessionId": session_id,
                        }))
                        .await
                    }
                    Ok(()) => {
                        self.send(json!({
                            "type": "status",
                            "status": "stopping",
                            "message": "Stopping agent...",
                            "sessionId": session_id,
                        }))
                        .await
                    }
                    Err(e) => self.send_error(&e.message).await,
                }
            }
            "message" => {
                let content = frame.get("content").and_then(Value::as_str).unwrap_or("");
                let api_key = ["apiKey", "api_key"]
                    .iter()
                    .find_map(|n| frame.get(*n).and_then(Value::as_str));
                match sessions
                    .follow_up_with_key(user, session_id, content, api_key)
                    .await
                {
                    // The session was continued: follow its new events from where we are.
                    Ok(()) => match resume_from {
                        Some(since) => match sessions.attach(user, session_id, since).await {
                            Ok(a) => return FrameOutcome::Reattach(Box::new(a)),
                            Err(e) => self.send_error(&e.message).await,
                        },
                        None => true,
                    },
                    Err(e) => self.send_error(&e.message).await,
                }
            }
            "attach" => {
                let target = frame
                    .get("sessionId")
                    .and_then(Value::as_str)
                    .unwrap_or(session_id);
                let since = frame.get("since").and_then(Value::as_u64).unwrap_or(0);
                match sessions.attach(user, target, since).await {
                    Ok(a) => return FrameOutcome::Reattach(Box::new(a)),
                    Err(e) => self.send_error(&e.message).await,
                }
            }
            other => {
                self.send_error(&format!("Unknown message type '{other}'."))
                    .await
            }
        };
        if ok {
            FrameOutcome::Continue
        } else {
            FrameOutcome::Gone
        }
    }
}

/// Session id, chat id, replay end, the live event stream, the attachment guard and whether
/// the session was live when attached.
fn split(attachment: Attachment) -> (String, String, u64, LiveStream, AttachGuard, bool) {
    let Attachment {
        summary,
        events,
        guard,
        replay_until,
    } = attachment;
    (
        summary.session_id,
        summary.chat_id,
        replay_until,
        events.live(),
        guard,
        summary.is_alive,
    )
}

enum FrameOutcome {
    Continue,
    Gone,
    Reattach(Box<Attachment>),
}

fn frame_type(v: &Value) -> Option<&str> {
    v.get("type").and_then(Value::as_str)
}

fn parse_frame(text: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("Frames must be JSON objects.".into()),
        Err(e) => Err(format!("Malformed JSON frame: {e}")),
    }
}
