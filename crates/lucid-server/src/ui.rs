//! The web UI, embedded in the binary (rust-embed; see `build.rs`), on the same server as the
//! API: `GET /` answers browsers (`Accept: text/html`) with the UI and everyone else with the
//! JSON service info; `/ui/assets/...` are content-hashed files cached for a year;
//! `/ui/...` client-side routes get `index.html` (never cached) so a refresh loads the app.

use axum::extract::{Path, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;

#[derive(rust_embed::RustEmbed)]
#[folder = "$LUCID_UI_DIR"]
struct UiFiles;

/// Whether the real UI (not the "how to build it" placeholder) is embedded.
pub const UI_BUILT: bool = matches!(env!("LUCID_UI_BUILT").as_bytes(), b"1");

const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
const CACHE_NONE: &str = "no-cache";
/// The UI talks only to this origin (REST and WebSocket); no inline scripts.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data: https:; connect-src 'self' ws: wss:; frame-ancestors 'none'; \
                   base-uri 'self'; form-action 'self'";

/// `GET /`: the UI for browsers, the service info for API clients.
pub async fn root(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let mut response = if wants_html(&headers) {
        index()
    } else {
        crate::routes::health::root(State(state))
            .await
            .into_response()
    };
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept"));
    response
}

/// `GET /ui/{*path}`: an asset, or `index.html` for client-side routes.
pub async fn ui_path(Path(path): Path<String>) -> Response {
    if path.starts_with("assets/") || path.contains('.') {
        return asset(&path);
    }
    index()
}

/// `GET /ui`: the UI.
pub async fn ui_index() -> Response {
    index()
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with("text/html")))
}

fn index() -> Response {
    match UiFiles::get("index.html") {
        Some(file) => with_headers(
            file.data.into_owned(),
            "text/html; charset=utf-8",
            CACHE_NONE,
        ),
        None => (StatusCode::NOT_FOUND, "UI not available").into_response(),
    }
}

fn asset(path: &str) -> Response {
    let Some(file) = UiFiles::get(path) else {
        return crate::api_error::ApiError::new(StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    let mime = file.metadata.mimetype().to_string();
    let cache = if path.starts_with("assets/") {
        // Vite puts a content hash in every file name under assets/.
        CACHE_IMMUTABLE
    } else {
        CACHE_NONE
    };
    with_headers(file.data.into_owned(), &mime, cache)
}

fn with_headers(body: Vec<u8>, content_type: &str, cache: &'static str) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
