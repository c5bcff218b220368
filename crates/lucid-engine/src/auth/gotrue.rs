//! A small client for Supabase Auth (GoTrue) at `{SUPABASE_URL}/auth/v1`: the authorize URL
//! of the PKCE flow, the code exchange (`/token?grant_type=pkce`), refresh
//! (`/token?grant_type=refresh_token`), the current user (`/user`) and sign-out (`/logout`).
//!
//! Requests carry the project's `apikey` and ask for API version 2024-01-01, so errors come
//! back as `{"code": "<error code>", "message": …}`; older bodies (`error_code` + `msg`, or
//! OAuth's `error` + `error_description`) are understood too. Tokens never appear in URLs,
//! logs or error messages.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// The Supabase Auth API version Lucid speaks (selects GoTrue's error format).
pub const API_VERSION: &str = "2024-01-01";
const API_VERSION_HEADER: &str = "X-Supabase-Api-Version";
/// Timeout of one Supabase Auth request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Bodies larger than this are refused.
const MAX_BODY_BYTES: usize = 256 * 1024;

/// What went wrong talking to Supabase Auth. Messages never contain tokens.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum GoTrueError {
    /// Supabase Auth answered with an error (its own sentence, and its error code).
    #[error("{message}")]
    Api {
        status: u16,
        code: Option<String>,
        message: String,
    },
    #[error("Supabase Auth could not be reached: {0}")]
    Unreachable(String),
    #[error("Supabase Auth sent an answer Lucid does not understand: {0}")]
    Unexpected(String),
}

impl GoTrueError {
    /// GoTrue's error code (`bad_code_verifier`, `refresh_token_already_used`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            GoTrueError::Api { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// True when trying again later can succeed: no answer, a server-side failure, rate
    /// limiting, or an answer that is not Supabase Auth's (a proxy's error page).
    pub fn is_transient(&self) -> bool {
        match self {
            GoTrueError::Api { status, .. } => *status >= 500 || *status == 429,
            GoTrueError::Unreachable(_) | GoTrueError::Unexpected(_) => true,
        }
    }

    /// True when Supabase Auth refused a refresh token for good (spent, revoked, session
    /// ended): the session is over and the user has to sign in again.
    pub fn ends_session(&self) -> bool {
        match self {
            GoTrueError::Api { code, .. } => {
                matches!(
                    code.as_deref(),
                    Some(
                        "refresh_token_not_found"
                            | "refresh_token_already_used"
                            | "session_expired"
                            | "session_not_found"
                            | "user_not_found"
                            | "user_banned"
                            | "invalid_grant"
                    )
                )
            }
            _ => false,
        }
    }
}

impl From<GoTrueError> for crate::error::EngineError {
    fn from(e: GoTrueError) -> Self {
        use crate::error::{EngineError, ErrorKind};
        let kind = match &e {
            GoTrueError::Api { status, .. }
                if e.ends_session() || *status == 401 || *status == 403 =>
            {
                ErrorKind::InvalidCredentials
            }
            GoTrueError::Api { status, .. } if (400..500).contains(status) => ErrorKind::BadRequest,
            _ => ErrorKind::Upstream,
        };
        EngineError::new(kind, e.to_string())
    }
}

/// A signed-in user, as the UI shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct AuthUser {
    pub id: String,
    pub email: Option<String>,
    /// Display name from the provider (`full_name` / `name`).
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    /// `google`, `github`, `gitlab`, …
    pub provider: Option<String>,
}

impl AuthUser {
    /// Reads GoTrue's user object.
    pub fn from_gotrue(user: &Value) -> Result<Self, GoTrueError> {
        let id = user
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| GoTrueError::Unexpected("the user has no id".into()))?;
        let text = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let meta = user.get("user_metadata");
        let meta_field = |name: &str| text(meta.and_then(|m| m.get(name)));
        Ok(AuthUser {
            id: id.to_string(),
            email: text(user.get("email")).or_else(|| meta_field("email")),
            name: meta_field("full_name")
                .or_else(|| meta_field("name"))
                .or_else(|| meta_field("user_name")),
            avatar_url: meta_field("avatar_url")
                .or_else(|| meta_field("picture"))
                .filter(|u| u.starts_with("https://")),
            provider: text(user.get("app_metadata").and_then(|m| m.get("provider"))),
        })
    }
}

/// A Supabase session: the tokens and who they belong to.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSession {
    /// The Supabase access token (a JWT; the bearer token of Lucid's API).
    pub access_token: String,
    /// Single-use: every refresh returns a new one.
    pub refresh_token: String,
    /// When the access token expires (Unix seconds).
    pub expires_at: i64,
    pub user: AuthUser,
}

impl std::fmt::Debug for AuthSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSession")
            .field("expires_at", &self.expires_at)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    expires_at: Option<i64>,
    user: Value,
}

/// The client. Cheap to clone.
#[derive(Clone)]
pub struct GoTrueClient {
    auth_url: String,
    anon_key: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for GoTrueClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoTrueClient")
            .field("auth_url", &self.auth_url)
            .finish_non_exhaustive()
    }
}

impl GoTrueClient {
    /// `supabase_url` is the project URL (`SUPABASE_URL`), `anon_key` its public API key.
    pub fn new(supabase_url: &str, anon_key: &str, http: reqwest::Client) -> Self {
        Self {
            auth_url: format!("{}/auth/v1", supabase_url.trim_end_matches('/')),
            anon_key: anon_key.to_string(),
            http,
        }
    }

    /// `{SUPABASE_URL}/auth/v1`.
    pub fn auth_url(&self) -> &str {
        &self.auth_url
    }

    /// The URL the browser opens to sign in with `provider` (PKCE, S256 challenge).
    pub fn authorize_url(&self, provider: &str, redirect_to: &str, code_challenge: &str) -> String {
        let mut url = url::Url::parse(&format!("{}/authorize", self.auth_url))
            .expect("the Supabase URL was validated by the configuration");
        url.query_pairs_mut()
            .append_pair("provider", provider)
            .append_pair("redirect_to", redirect_to)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "s256");
        url.to_string()
    }

    /// Exchanges the code from the callback for a session (`grant_type=pkce`).
    pub async fn exchange_code(
        &self,
        auth_code: &str,
        code_verifier: &str,
    ) -> Result<AuthSession, GoTrueError> {
        let body = serde_json::json!({ "auth_code": auth_code, "code_verifier": code_verifier });
        self.token("pkce", &body).await
    }

    /// A new session for a refresh token; the refresh token is spent.
    pub async fn refresh(&self, refresh_token: &str) -> Result<AuthSession, GoTrueError> {
        let body = serde_json::json!({ "refresh_token": refresh_token });
        self.token("refresh_token", &body).await
    }

    /// The user an access token belongs to (checked by Supabase Auth, so a revoked session
    /// is refused).
    pub async fn user(&self, access_token: &str) -> Result<AuthUser, GoTrueError> {
        let request = self
            .request(reqwest::Method::GET, "/user")
            .bearer_auth(access_token);
        let value = self.send(request).await?;
        AuthUser::from_gotrue(&value.unwrap_or(Value::Null))
    }

    /// Signs out: revokes the session of `access_token` (`scope` `local`), or every session
    /// of its user (`global`).
    pub async fn logout(&self, access_token: &str, scope: LogoutScope) -> Result<(), GoTrueError> {
        let request = self
            .request(reqwest::Method::POST, "/logout")
            .query(&[("scope", scope.as_str())])
            .bearer_auth(access_token);
        self.send(request).await.map(|_| ())
    }

    async fn token(&self, grant_type: &str, body: &Value) -> Result<AuthSession, GoTrueError> {
        let request = self
            .request(reqwest::Method::POST, "/token")
            .query(&[("grant_type", grant_type)])
            .bearer_auth(&self.anon_key)
            .json(body);
        let value = self
            .send(request)
            .await?
            .ok_or_else(|| GoTrueError::Unexpected("an empty token response".into()))?;
        let token: TokenResponse = serde_json::from_value(value)
            .map_err(|e| GoTrueError::Unexpected(format!("token response: {e}")))?;
        let expires_at = match (token.expires_at, token.expires_in) {
            (Some(at), _) => at,
            (None, Some(ttl)) => chrono::Utc::now().timestamp() + ttl,
            (None, None) => {
                return Err(GoTrueError::Unexpected(
                    "the token response has no expiry".into(),
                ))
            }
        };
        Ok(AuthSession {
            access_token: token.access_token,
            refresh_token: token.refresh_token,
            expires_at,
            user: AuthUser::from_gotrue(&token.user)?,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.auth_url))
            .timeout(REQUEST_TIMEOUT)
            .header("apikey", &self.anon_key)
            .header(API_VERSION_HEADER, API_VERSION)
    }

    /// Sends a request; `Ok(None)` for an empty success body (204).
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Option<Value>, GoTrueError> {
        let response = request.send().await.map_err(|e| {
            // Without the URL: it is the configured project URL, but keep messages short.
            GoTrueError::Unreachable(e.without_url().to_string())
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| GoTrueError::Unreachable(e.without_url().to_string()))?;
        if bytes.len() > MAX_BODY_BYTES {
            return Err(GoTrueError::Unexpected("an oversized response".into()));
        }
        let body: Option<Value> = if bytes.is_empty() {
            None
        } else {
            serde_json::from_slice(&bytes).ok()
        };
        if status.is_success() {
            if body.is_none() && !bytes.is_empty() {
                return Err(GoTrueError::Unexpected(
                    "a response that is not JSON".into(),
                ));
            }
            return Ok(body);
        }
        Err(api_error(status.as_u16(), body.as_ref()))
    }
}

/// Reads any of GoTrue's error bodies.
fn api_error(status: u16, body: Option<&Value>) -> GoTrueError {
    let text = |name: &str| {
        body.and_then(|b| b.get(name))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let code = text("code")
        .or_else(|| text("error_code"))
        .or_else(|| text("error"));
    let message = text("message")
        .or_else(|| text("msg"))
        .or_else(|| text("error_description"))
        .or_else(|| text("error"))
        .unwrap_or_else(|| format!("Supabase Auth answered HTTP {status}"));
    GoTrueError::Api {
        status,
        code,
        message,
    }
}

/// Which sessions a sign-out ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutScope {
    /// Only this session (this device).
    Local,
    /// Every session of the user.
    Global,
}

impl LogoutScope {
    fn as_str(self) -> &'static str {
        match self {
            LogoutScope::Local => "local",
            LogoutScope::Global => "global",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_bodies_of_every_version_are_read() {
        let v2024 = api_error(
            400,
            Some(&json!({"code": "bad_code_verifier", "message": "code challenge does not match"})),
        );
        assert_eq!(v2024.code(), Some("bad_code_verifier"));
        assert_eq!(v2024.to_string(), "code challenge does not match");
        let legacy = api_error(
            400,
            Some(
                &json!({"code": 400, "error_code": "refresh_token_already_used", "msg": "Invalid Refresh Token: Already Used"}),
            ),
        );
        assert_eq!(legacy.code(), Some("refresh_token_already_used"));
        assert!(legacy.ends_session());
        let oauth = api_error(
            400,
            Some(&json!({"error": "invalid_grant", "error_description": "Invalid Refresh Token"})),
        );
        assert_eq!(oauth.code(), Some("invalid_grant"));
        assert_eq!(oauth.to_string(), "Invalid Refresh Token");
        let bare = api_error(502, None);
        assert_eq!(bare.to_string(), "Supabase Auth answered HTTP 502");
        assert!(!bare.ends_session());
    }

    #[test]
    fn users_are_read_from_gotrue_json() {
        let user = AuthUser::from_gotrue(&json!({
            "id": "u1", "email": "a@example.test",
            "app_metadata": {"provider": "github"},
            "user_metadata": {"full_name": "Ada", "avatar_url": "https://x.test/a.png"}
        }))
        .unwrap();
        assert_eq!(user.name.as_deref(), Some("Ada"));
        assert_eq!(user.provider.as_deref(), Some("github"));
        assert_eq!(user.avatar_url.as_deref(), Some("https://x.test/a.png"));
        // A non-https avatar is not shown (no mixed content, no javascript: URLs).
        let user = AuthUser::from_gotrue(&json!({
            "id": "u1", "user_metadata": {"avatar_url": "javascript:alert(1)"}
        }))
        .unwrap();
        assert_eq!(user.avatar_url, None);
        assert!(AuthUser::from_gotrue(&json!({"email": "x"})).is_err());
    }

    #[test]
    fn the_authorize_url_carries_the_pkce_challenge() {
        let c = GoTrueClient::new("https://p.supabase.co/", "anon", reqwest::Client::new());
        let url = c.authorize_url("gitlab", "lucid://auth/callback?state=s1", "CHAL");
        assert!(url.starts_with("https://p.supabase.co/auth/v1/authorize?provider=gitlab&"));
        assert!(url.contains("redirect_to=lucid%3A%2F%2Fauth%2Fcallback%3Fstate%3Ds1"));
        assert!(url.contains("code_challenge=CHAL&code_challenge_method=s256"));
    }
}
