//! `GET /api/v1/status`: the engine's state and what is wrong with the setup, with fixes.

use axum::extract::State;
use axum::Json;
use lucid_engine::engine::EngineStatus;

use crate::app::AppState;
use crate::auth::AuthUser;

#[utoipa::path(get, path = "/api/v1/status", responses((status = 200, body = EngineStatus)))]
pub async fn status(
    State(state): State<AppState>,
    AuthUser(_user): AuthUser,
) -> Json<EngineStatus> {
    Json(state.engine.status().await)
}
