//! `/api/v1/sessions`: start, list, get and stop agent sessions.

use axum::extract::{Path, State};
use axum::Json;
use lucid_engine::sessions::{SessionSummary, StartSession};
use serde_json::{json, Value};

use crate::api_error::ApiResult;
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::json::Json as JsonBody;

/// Creates a session and starts the agent on the task. Attach over `/api/v1/ws` with
/// `{"type":"attach","sessionId":...}` to follow it live.
#[utoipa::path(post, path = "/api/v1/sessions", request_body = StartSession, responses((status = 200, description = "`{status: ready, sessionId, chatId, message}`"), (status = 400)))]
pub async fn create(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    JsonBody(req): JsonBody<StartSession>,
) -> ApiResult<Json<Value>> {
    let started = state.engine.sessions().start(&user, req).await?;
    Ok(Json(json!({
        "status": "ready",
        "sessionId": started.session_id,
        "chatId": started.chat_id,
        "message": "Agent session started. Attach via WebSocket to follow it.",
    })))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionSummary>,
}

#[utoipa::path(get, path = "/api/v1/sessions", responses((status = 200, body = SessionList)))]
pub async fn list(State(state): State<AppState>, AuthUser(user): AuthUser) -> Json<SessionList> {
    Json(SessionList {
        sessions: state.engine.sessions().list(&user),
    })
}

#[utoipa::path(get, path = "/api/v1/sessions/{session_id}", responses((status = 200, body = SessionSummary), (status = 404)))]
pub async fn get_one(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session_id): Path<String>,
) -> ApiResult<Json<SessionSummary>> {
    Ok(Json(state.engine.sessions().get(&user, &session_id).await?))
}

#[utoipa::path(delete, path = "/api/v1/sessions/{session_id}", responses((status = 200), (status = 403), (status = 404)))]
pub async fn delete(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session_id): Path<String>,
) -> ApiResult<Json<Value>> {
    state.engine.sessions().destroy(&user, &session_id).await?;
    Ok(Json(json!({
        "status": "stopped",
        "sessionId": session_id,
        "message": "Session stopped and resources cleaned up.",
    })))
}

/// A follow-up message for a session.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FollowUp {
    pub content: String,
    /// LLM key for continuing a session that was started with its own key (never stored).
    #[serde(default, alias = "api_key")]
    pub api_key: Option<String>,
}

/// Sends a follow-up. A live session runs it after the current step (at most
/// `MAX_QUEUED_FOLLOW_UPS` may wait; beyond that the answer is 429); any other of the
/// caller's sessions (released when idle, from before a restart) is continued on it: a new
/// sandbox on its workspace, its conversation rebuilt, its events continuing. 422 when the
/// session was started with its own API key and none is given again.
#[utoipa::path(post, path = "/api/v1/sessions/{session_id}/messages", request_body = FollowUp, responses((status = 200, description = "`{status: queued, sessionId}`"), (status = 400), (status = 404), (status = 409, description = "The user's session limit is reached"), (status = 422, description = "The session's API key must be sent again"), (status = 429, description = "Too many follow-ups are waiting")))]
pub async fn follow_up(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session_id): Path<String>,
    JsonBody(body): JsonBody<FollowUp>,
) -> ApiResult<Json<Value>> {
    state
        .engine
        .sessions()
        .follow_up_with_key(&user, &session_id, &body.content, body.api_key.as_deref())
        .await?;
    Ok(Json(json!({
        "status": "queued",
        "sessionId": session_id,
    })))
}
