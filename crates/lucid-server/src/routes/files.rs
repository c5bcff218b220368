//! `/api/v1/files`: a session's workspace tree and files.

use axum::extract::State;
use axum::Json;
use lucid_engine::files::{FileContent, FileTree};
use serde::Deserialize;

use crate::api_error::ApiResult;
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::json::Query;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListParams {
    pub session_id: String,
}

#[utoipa::path(get, path = "/api/v1/files/list", params(ListParams), responses((status = 200, body = FileTree), (status = 403), (status = 404)))]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<FileTree>> {
    Ok(Json(
        state.engine.list_files(&user, &params.session_id).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ReadParams {
    pub session_id: String,
    /// `/x` or `/workspace/x`.
    pub path: String,
}

#[utoipa::path(get, path = "/api/v1/files/read", params(ReadParams), responses((status = 200, body = FileContent), (status = 400), (status = 403), (status = 404)))]
pub async fn read(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Query(params): Query<ReadParams>,
) -> ApiResult<Json<FileContent>> {
    Ok(Json(
        state
            .engine
            .read_file(&user, &params.session_id, &params.path)
            .await?,
    ))
}
