//! The authenticated caller of a REST request (the engine verifies; this only reads headers).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use lucid_engine::auth::Credentials;
use lucid_engine::User;

use crate::api_error::ApiError;
use crate::app::AppState;

pub struct AuthUser(pub User);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let credentials = Credentials::from_headers(
            header("authorization"),
            header("x-user-id"),
            header("x-internal-key"),
        );
        Ok(AuthUser(state.engine.authenticate(credentials).await?))
    }
}
