//! `/api/v1/chats`: the caller's chat history.

use axum::extract::{Path, State};
use axum::Json;
use lucid_engine::chats::ChatDetail;
use lucid_engine::store::ChatSession;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api_error::ApiResult;
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::json::{Json as JsonBody, Query};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct Page {
    /// 1..=100, default 50.
    pub limit: Option<i64>,
    /// >= 0, default 0.
    pub offset: Option<i64>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ChatList {
    pub chats: Vec<ChatSession>,
}

#[utoipa::path(get, path = "/api/v1/chats", params(Page), responses((status = 200, body = ChatList)))]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Query(page): Query<Page>,
) -> ApiResult<Json<ChatList>> {
    let chats = state
        .engine
        .chats()
        .list(&user, page.limit, page.offset)
        .await?;
    Ok(Json(ChatList { chats }))
}

#[utoipa::path(get, path = "/api/v1/chats/{chat_id}", responses((status = 200, body = ChatDetail), (status = 404)))]
pub async fn get_one(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(chat_id): Path<String>,
) -> ApiResult<Json<ChatDetail>> {
    Ok(Json(state.engine.chats().get(&user, &chat_id).await?))
}

/// Body of a rename: `{"title": "..."}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Rename {
    pub title: Option<Value>,
}

#[utoipa::path(patch, path = "/api/v1/chats/{chat_id}", request_body = Rename, responses((status = 200), (status = 400), (status = 404)))]
pub async fn rename(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(chat_id): Path<String>,
    JsonBody(body): JsonBody<serde_json::Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    // A non-string title is treated like a missing one (the original's 400 "Missing 'title'").
    let title = body.get("title").and_then(Value::as_str);
    let title = state.engine.chats().rename(&user, &chat_id, title).await?;
    Ok(Json(
        json!({ "status": "updated", "id": chat_id, "title": title }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/chats/{chat_id}", responses((status = 200), (status = 404)))]
pub async fn delete(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(chat_id): Path<String>,
) -> ApiResult<Json<Value>> {
    state.engine.delete_chat(&user, &chat_id).await?;
    Ok(Json(json!({ "status": "deleted", "id": chat_id })))
}
