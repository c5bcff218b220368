//! `/api/v1/integrations`: forge tokens (encrypted at rest), repositories, branches, PRs.

use axum::extract::{Path, State};
use axum::Json;
use lucid_engine::integrations::{
    BranchesResponse, CreatePrRequest, CreatePrResponse, IntegrationInfo, ReposResponse,
    SaveIntegrationRequest, SaveIntegrationResponse,
};
use serde_json::{json, Value};

use crate::api_error::ApiResult;
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::json::Json as JsonBody;

#[utoipa::path(post, path = "/api/v1/integrations", request_body = SaveIntegrationRequest, responses((status = 200, body = SaveIntegrationResponse), (status = 400), (status = 422)))]
pub async fn save(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    JsonBody(req): JsonBody<SaveIntegrationRequest>,
) -> ApiResult<Json<SaveIntegrationResponse>> {
    Ok(Json(state.engine.integrations().save(&user, req).await?))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct IntegrationList {
    pub integrations: Vec<IntegrationInfo>,
}

#[utoipa::path(get, path = "/api/v1/integrations", responses((status = 200, body = IntegrationList)))]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> ApiResult<Json<IntegrationList>> {
    Ok(Json(IntegrationList {
        integrations: state.engine.integrations().list(&user).await?,
    }))
}

#[utoipa::path(delete, path = "/api/v1/integrations/{provider}", responses((status = 200), (status = 400), (status = 404)))]
pub async fn delete(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(provider): Path<String>,
) -> ApiResult<Json<Value>> {
    let provider = state.engine.integrations().delete(&user, &provider).await?;
    Ok(Json(
        json!({ "status": "disconnected", "provider": provider }),
    ))
}

#[utoipa::path(get, path = "/api/v1/integrations/{provider}/repos", responses((status = 200, body = ReposResponse), (status = 404), (status = 502)))]
pub async fn repos(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(provider): Path<String>,
) -> ApiResult<Json<ReposResponse>> {
    Ok(Json(
        state.engine.integrations().repos(&user, &provider).await?,
    ))
}

/// Branches of a repository; `repo` is the URL-encoded full name (`owner%2Frepo`).
#[utoipa::path(get, path = "/api/v1/integrations/{provider}/repos/{repo}/branches", responses((status = 200, body = BranchesResponse), (status = 404), (status = 502)))]
pub async fn branches(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((provider, repo)): Path<(String, String)>,
) -> ApiResult<Json<BranchesResponse>> {
    Ok(Json(
        state
            .engine
            .integrations()
            .branches(&user, &provider, &repo)
            .await?,
    ))
}

/// Opens a PR/MR; with `sessionId` the session's changes are committed and pushed first.
#[utoipa::path(post, path = "/api/v1/integrations/{provider}/pr", request_body = CreatePrRequest, responses((status = 200, body = CreatePrResponse), (status = 400), (status = 404), (status = 502)))]
pub async fn create_pr(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(provider): Path<String>,
    JsonBody(req): JsonBody<CreatePrRequest>,
) -> ApiResult<Json<CreatePrResponse>> {
    Ok(Json(state.engine.create_pr(&user, &provider, req).await?))
}
