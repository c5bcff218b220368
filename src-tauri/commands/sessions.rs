//! Sessions: start, follow up, stop, list, and their events through a channel.

use lucid_engine::sessions::event_log::LiveItem;
use lucid_engine::sessions::{Attachment, SessionSummary, StartSession, StartedSession};
use serde_json::{json, Value};
use tauri::ipc::Channel;
use tauri::State;

use crate::error::CommandResult;
use crate::state::Shell;

#[tauri::command]
#[specta::specta]
pub async fn start_session(
    shell: State<'_, Shell>,
    req: StartSession,
) -> CommandResult<StartedSession> {
    let user = shell.user().await?;
    let req = with_app_defaults(&shell, req)?;
    let started = shell.engine.sessions().start(&user, req).await?;
    shell.still_signed_in(&user).await?;
    Ok(started)
}

#[tauri::command]
#[specta::specta]
pub async fn list_sessions(shell: State<'_, Shell>) -> CommandResult<Vec<SessionSummary>> {
    let user = shell.user().await?;
    Ok(shell.engine.sessions().list(&user))
}

#[tauri::command]
#[specta::specta]
pub async fn get_session(
    shell: State<'_, Shell>,
    session_id: String,
) -> CommandResult<SessionSummary> {
    let user = shell.user().await?;
    Ok(shell.engine.sessions().get(&user, &session_id).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn follow_up(
    shell: State<'_, Shell>,
    session_id: String,
    content: String,
) -> CommandResult<()> {
    let user = shell.user().await?;
    shell
        .engine
        .sessions()
        .follow_up(&user, &session_id, &content)
        .await?;
    shell.still_signed_in(&user).await
}

#[tauri::command]
#[specta::specta]
pub async fn stop_session(shell: State<'_, Shell>, session_id: String) -> CommandResult<()> {
    let user = shell.user().await?;
    Ok(shell.engine.sessions().stop(&user, &session_id)?)
}

/// Streams the session's events after `since` (replayed from the log, then live) to
/// `on_event`, each in the WebSocket's wire form: stored events as `agent_event`/`status`
/// frames with their `seq`, the model's partial text as `agent_delta` frames (live only, no
/// `seq`, never replayed), all with `chatId`; then `{"type":"end"}` when the session's log
/// ends. Returns an id for [`unsubscribe`]. A window reload simply subscribes again from its
/// last `seq`.
#[tauri::command]
#[specta::specta]
pub async fn subscribe_session(
    shell: State<'_, Shell>,
    session_id: String,
    since: u64,
    on_event: Channel<Value>,
) -> CommandResult<u64> {
    let user = shell.user().await?;
    let attachment = shell
        .engine
        .sessions()
        .attach(&user, &session_id, since)
        .await?;
    let task = tokio::spawn(forward_events(attachment, move |v| {
        on_event.send(v).is_ok()
    }));
    let id = shell.add_subscription(&user.id, task.abort_handle());
    shell.still_signed_in(&user).await?;
    Ok(id)
}

#[tauri::command]
#[specta::specta]
pub async fn unsubscribe(shell: State<'_, Shell>, subscription: u64) -> CommandResult<bool> {
    Ok(shell.end_subscription(subscription))
}

/// Sends every item of `attachment`'s live stream (stored events and the transient partial
/// text between them) to `send`, in the WebSocket's frame format, until the log ends or
/// `send` says the receiver is gone. The attachment (and its "client attached" guard) lives
/// as long as this.
pub async fn forward_events(attachment: Attachment, send: impl Fn(Value) -> bool) {
    let Attachment {
        summary,
        events,
        guard,
        ..
    } = attachment;
    let chat_id = json!(summary.chat_id);
    let mut events = events.live();
    loop {
        let mut frame = match events.next().await {
            Ok(Some(LiveItem::Stored(event))) => event.to_wire(),
            Ok(Some(LiveItem::Transient(partial))) => partial.to_wire(),
            Ok(None) => {
                send(json!({"type": "end"}));
                break;
            }
            Err(e) => {
                send(json!({"type": "error", "message": e.message}));
                break;
            }
        };
        frame["chatId"] = chat_id.clone();
        if !send(frame) {
            break;
        }
    }
    drop(guard);
}

/// Fills what the request leaves open from the app's settings: the provider and model (the
/// provider's key comes from the engine's key store, i.e. the credential store, at each use).
fn with_app_defaults(shell: &Shell, mut req: StartSession) -> CommandResult<StartSession> {
    let settings = shell.settings();
    let requested = req.model_provider.clone().filter(|p| !p.trim().is_empty());
    let provider = requested
        .clone()
        .or_else(|| settings.default_provider.clone())
        .unwrap_or_else(|| shell.engine.config().default_provider.clone());
    if requested.is_none() {
        req.model_provider = Some(provider);
        if req.model.as_deref().is_none_or(|m| m.trim().is_empty()) {
            req.model = settings.default_model.clone();
        }
    }
    Ok(req)
}
