//! `GET /`, `GET /health` and the JSON 404.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use lucid_engine::engine::ServiceInfo;
use serde_json::{json, Value};

use crate::api_error::ApiError;
use crate::app::AppState;

/// Service information (the original's shape).
#[utoipa::path(get, path = "/", responses((status = 200, body = ServiceInfo)))]
pub async fn root(State(state): State<AppState>) -> Json<ServiceInfo> {
    Json(state.engine.service_info().await)
}

#[utoipa::path(get, path = "/health", responses((status = 200, description = "`{\"status\":\"ok\"}`")))]
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "Not Found")
}
