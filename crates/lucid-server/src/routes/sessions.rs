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

/// A follow-up message for a running session.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct FollowUp {
    pub content: String,
}

/// Queues a follow-up: it runs after the current step. At most
/// `MAX_QUEUED_FOLLOW_UPS` may wait; beyond that the answer is 429.
#[utoipa::path(post, path = "/api/v1/sessions/{session_id}/messages", request_body = FollowUp, responses((status = 200, description = "`{status: queued, sessionId}`"), (status = 400), (status = 404), (status = 429, description = "Too many follow-ups are waiting")))]
pub async fn follow_up(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(session_id): Path<String>,
    JsonBody(body): JsonBody<FollowUp>,
) -> ApiResult<Json<Value>> {
    state
        .engine
        .sessions()
        .follow_up(&user, &session_id, &body.content)?;
    Ok(Json(json!({
        "status": "queued",
        "sessionId": session_id,
    })))
}
