//! Browser sign-in (Supabase mode), over the engine's PKCE sign-in:
//!
//! - `GET /api/v1/auth/options`: the mode and the providers offered (none in local mode).
//! - `GET /api/v1/auth/sign-in/{provider}`: 302 to Supabase Auth's authorize URL. The PKCE
//!   verifier stays in the engine under the sign-in's `state`; the `state` is bound to this
//!   browser with an HttpOnly cookie, so a callback link opened in another browser is refused.
//! - `GET /api/v1/auth/callback`: exchanges the code, then 302 to `/#session=…` (the page
//!   takes the session from the fragment, which never reaches a server) or an error page.
//! - `POST /api/v1/auth/refresh` (`{"refreshToken"}`) → a fresh session.
//! - `POST /api/v1/auth/sign-out` (bearer): revokes the session at Supabase Auth.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use lucid_engine::auth::{AuthSession, Callback, Credentials, Provider};
use lucid_engine::EngineError;
use serde::{Deserialize, Serialize};

use crate::api_error::{ApiError, ApiResult};
use crate::app::AppState;
use crate::json::Json as JsonBody;

/// The cookie binding a started sign-in to the browser that started it.
const STATE_COOKIE: &str = "lucid_sign_in";
const CALLBACK_PATH: &str = "/api/v1/auth/callback";

/// How this server signs people in.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuthOptions {
    /// `local` (a link with a token, no accounts) or `supabase` (sign-in with a provider).
    pub mode: String,
    /// Providers offered (`google`, `github`, `gitlab`); empty in local mode.
    pub providers: Vec<String>,
}

#[utoipa::path(get, path = "/api/v1/auth/options", security(()), responses((status = 200, body = AuthOptions)))]
pub async fn options(State(state): State<AppState>) -> Json<AuthOptions> {
    let supabase = state.engine.sign_in().is_ok();
    Json(AuthOptions {
        mode: if supabase { "supabase" } else { "local" }.into(),
        providers: if supabase {
            Provider::ALL
                .iter()
                .map(|p| p.as_str().to_string())
                .collect()
        } else {
            Vec::new()
        },
    })
}

/// Where Supabase Auth sends the browser back to: `LUCID_PUBLIC_URL`, or, for a request to a
/// loopback address, that address.
fn callback_url(state: &AppState, headers: &HeaderMap) -> ApiResult<String> {
    if let Some(public) = &state.engine.config().public_url {
        return Ok(format!("{public}{CALLBACK_PATH}"));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let candidate = format!("http://{host}{CALLBACK_PATH}");
    match url::Url::parse(&candidate) {
        Ok(u) if !host.is_empty() && lucid_engine::config::is_loopback_host(&u) => Ok(candidate),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Set LUCID_PUBLIC_URL to the address browsers reach Lucid at (sign-in needs it to come back here).",
        )),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/auth/sign-in/{provider}",
    params(("provider" = String, Path, description = "google, github or gitlab")),
    security(()),
    responses((status = 302, description = "To the provider's sign-in, through Supabase Auth"))
)]
pub async fn start(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let sign_in = state.engine.sign_in()?;
    let provider = Provider::parse(&provider).map_err(EngineError::from)?;
    let redirect_to = callback_url(&state, &headers)?;
    let started = sign_in
        .start(provider, &redirect_to)
        .map_err(EngineError::from)?;
    let secure = if redirect_to.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{STATE_COOKIE}={}; Path=/api/v1/auth; HttpOnly; SameSite=Lax; Max-Age=600{secure}",
        started.state
    );
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, started.url),
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[utoipa::path(
    get,
    path = "/api/v1/auth/callback",
    security(()),
    responses(
        (status = 302, description = "Signed in: to `/#session=<JSON of AuthSession>`"),
        (status = 400, description = "An HTML page saying why the sign-in failed")
    )
)]
pub async fn callback(
    State(state): State<AppState>,
    Query(q): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Response {
    let clear = format!("{STATE_COOKIE}=; Path=/api/v1/auth; HttpOnly; SameSite=Lax; Max-Age=0");
    let result = async {
        let sign_in = state.engine.sign_in()?;
        let cb = Callback {
            state: q.state,
            code: q.code,
            error: q.error,
            error_description: q.error_description,
        };
        // A browser without the cookie is not the one that started this sign-in.
        let bound = cookie_value(&headers, STATE_COOKIE).unwrap_or("");
        sign_in
            .complete(&cb, Some(bound))
            .await
            .map_err(EngineError::from)
    }
    .await;
    let mut response = match result {
        Ok(session) => {
            let json = serde_json::to_string(&session).unwrap_or_default();
            let fragment: String =
                percent_encoding::utf8_percent_encode(&json, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            (
                StatusCode::FOUND,
                [(header::LOCATION, format!("/#session={fragment}"))],
            )
                .into_response()
        }
        Err(e) => {
            tracing::info!(error = %e.message, "a browser sign-in was refused");
            (StatusCode::BAD_REQUEST, Html(error_page(&e.message))).into_response()
        }
    };
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&clear) {
        headers.insert(header::SET_COOKIE, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn escape_html(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

fn error_page(message: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign-in failed · Lucid</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head>\
         <body style=\"font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem\">\
         <main><h1>Sign-in failed</h1><p id=\"reason\">{}</p><p><a href=\"/\">Back to sign-in</a></p></main></body></html>",
        escape_html(message)
    )
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    request_body = RefreshRequest,
    security(()),
    responses((status = 200, body = AuthSession), (status = 401, description = "The session has ended: sign in again"))
)]
pub async fn refresh(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> ApiResult<Json<AuthSession>> {
    let sign_in = state.engine.sign_in()?;
    if body.refresh_token.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "refreshToken is empty",
        ));
    }
    let session = sign_in
        .refresh(body.refresh_token.trim())
        .await
        .map_err(EngineError::from)?;
    Ok(Json(session))
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/sign-out",
    responses((status = 204, description = "The session is revoked"))
)]
pub async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<StatusCode> {
    let sign_in = state.engine.sign_in()?;
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Credentials::Bearer(token) = Credentials::from_headers(authorization, None, None) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Authentication required",
        ));
    };
    sign_in.sign_out(token).await.map_err(EngineError::from)?;
    Ok(StatusCode::NO_CONTENT)
}
