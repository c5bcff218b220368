//! The axum application: routes, CORS from `ALLOWED_ORIGINS`, body limit, tracing.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::routing::{get, post};
use axum::Router;
use lucid_engine::Engine;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::json::MAX_BODY_BYTES;
use crate::routes::{chats, files, health, integrations, sessions, sign_in, status};

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
}

/// The whole HTTP API over an engine.
pub fn router(engine: Arc<Engine>) -> Router {
    let cors = cors_layer(&engine.config().allowed_origins);
    let state = AppState { engine };
    Router::new()
        .route("/", get(crate::ui::root))
        .route("/ui", get(crate::ui::ui_index))
        .route("/ui/", get(crate::ui::ui_index))
        .route("/ui/{*path}", get(crate::ui::ui_path))
        .route("/api/v1/status", get(status::status))
        .route("/health", get(health::health))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .route(
            "/api/v1/sessions",
            post(sessions::create).get(sessions::list),
        )
        .route(
            "/api/v1/sessions/{session_id}",
            get(sessions::get_one).delete(sessions::delete),
        )
        .route(
            "/api/v1/sessions/{session_id}/messages",
            post(sessions::follow_up),
        )
        .route("/api/v1/chats", get(chats::list))
        .route(
            "/api/v1/chats/{chat_id}",
            get(chats::get_one)
                .patch(chats::rename)
                .delete(chats::delete),
        )
        .route("/api/v1/files/list", get(files::list))
        .route("/api/v1/files/read", get(files::read))
        .route(
            "/api/v1/integrations",
            post(integrations::save).get(integrations::list),
        )
        .route(
            "/api/v1/integrations/{provider}",
            axum::routing::delete(integrations::delete),
        )
        .route(
            "/api/v1/integrations/{provider}/repos",
            get(integrations::repos),
        )
        .route(
            "/api/v1/integrations/{provider}/repos/{repo}/branches",
            get(integrations::branches),
        )
        .route(
            "/api/v1/integrations/{provider}/pr",
            post(integrations::create_pr),
        )
        .route("/api/v1/ws", get(crate::ws::upgrade))
        .route("/api/v1/auth/options", get(sign_in::options))
        .route("/api/v1/auth/sign-in/{provider}", get(sign_in::start))
        .route("/api/v1/auth/callback", get(sign_in::callback))
        .route("/api/v1/auth/refresh", post(sign_in::refresh))
        .route("/api/v1/auth/sign-out", post(sign_in::sign_out))
        .fallback(health::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(cors)
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// The request span records the method and the path only: query strings may carry a token
/// (`/api/v1/ws?token=...`) and must never reach the logs.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            HeaderName::from_static("authorization"),
            HeaderName::from_static("content-type"),
            HeaderName::from_static("x-user-id"),
            HeaderName::from_static("x-internal-key"),
        ]);
    if origins.iter().any(|o| o == "*") {
        // Any origin, without credentials (browsers refuse `*` with credentials).
        return layer.allow_origin(AllowOrigin::any());
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    layer
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
}
