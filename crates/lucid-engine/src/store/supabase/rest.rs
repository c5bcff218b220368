//! The PostgREST client of the Supabase store: which key a request carries, timeouts, and
//! PostgREST's JSON error bodies turned into [`RestError`].
//!
//! A request made for a signed-in user carries the user's access token as the bearer and the
//! anon key as `apikey`, so row-level security applies. The service key (bearer and `apikey`)
//! is used only where no valid user token exists: the internal-key path, the event writer of a
//! session that outlived its user's token, the outbox replayed after a restart, and start-up
//! recovery. The callers then always filter on `user_id` themselves.

use std::sync::Arc;
use std::time::Duration;

use postgrest::{Builder, Postgrest};
use reqwest011::header::{HeaderValue, AUTHORIZATION};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::User;
use crate::store::StoreError;

/// Who a request is made as.
#[derive(Clone)]
pub enum Caller {
    /// A signed-in user's Supabase access token (row-level security applies).
    User(Arc<str>),
    /// The service key (bypasses row-level security; callers filter on `user_id`).
    Service,
}

impl Caller {
    /// The user's own token while one is valid (a fresh one from the user's token source
    /// first, then the token they came with), else the service key.
    pub fn for_user(user: &User) -> Caller {
        let now = chrono::Utc::now().timestamp();
        user.token_source
            .as_ref()
            .and_then(|source| source.current())
            .filter(|token| !token_expired(token, now))
            .or_else(|| {
                user.raw_jwt
                    .clone()
                    .filter(|token| !token_expired(token, now))
            })
            .map_or(Caller::Service, |token| Caller::User(token.into()))
    }

    pub fn is_service(&self) -> bool {
        matches!(self, Caller::Service)
    }
}

/// Whether a (previously verified) token's `exp` has passed, within a margin. A token whose
/// payload cannot be read counts as expired, so the caller falls back to the service key.
pub fn token_expired(token: &str, now: i64) -> bool {
    use base64::Engine;
    #[derive(Deserialize)]
    struct Exp {
        exp: Option<i64>,
    }
    let exp = token
        .split('.')
        .nth(1)
        .and_then(|payload| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload.trim_end_matches('='))
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<Exp>(&bytes).ok())
        .and_then(|claims| claims.exp);
    match exp {
        Some(exp) => exp - crate::auth::TOKEN_EXPIRY_MARGIN_SECS <= now,
        None => true,
    }
}

/// A failed PostgREST request.
#[derive(Debug, Clone, PartialEq)]
pub enum RestError {
    /// No answer (connection refused, reset, timeout).
    Transport(String),
    /// An HTTP error status with PostgREST's error body.
    Api {
        status: u16,
        code: String,
        message: String,
    },
}

impl RestError {
    /// The PostgreSQL SQLSTATE or `PGRST…` code of an API error.
    pub fn code(&self) -> Option<&str> {
        match self {
            RestError::Api { code, .. } => Some(code),
            RestError::Transport(_) => None,
        }
    }

    /// True when retrying later can succeed (no answer, a server-side failure, or credentials
    /// refused, e.g. a token that expired in flight).
    pub fn is_transient(&self) -> bool {
        match self {
            RestError::Transport(_) => true,
            RestError::Api { status, .. } => *status >= 500 || *status == 401 || *status == 429,
        }
    }

    /// An invalid value for the column's type (e.g. an id that is not a UUID).
    pub fn is_invalid_value(&self) -> bool {
        matches!(self.code(), Some("22P02"))
    }

    /// A row-level security or privilege refusal, or a missing referenced row: the chat is
    /// not (any more) the caller's.
    pub fn is_not_owned(&self) -> bool {
        matches!(self.code(), Some("42501" | "23503"))
    }
}

impl std::fmt::Display for RestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestError::Transport(m) => write!(f, "Supabase unreachable: {m}"),
            RestError::Api {
                status,
                code,
                message,
            } => write!(f, "PostgREST answered {status} ({code}): {message}"),
        }
    }
}

impl From<RestError> for StoreError {
    fn from(e: RestError) -> Self {
        match &e {
            _ if e.is_transient() => StoreError::Unavailable(e.to_string()),
            RestError::Api { code, .. } if code == "23505" => StoreError::Conflict(e.to_string()),
            _ => StoreError::Database(e.to_string()),
        }
    }
}

/// PostgREST's error body (`{"code", "message", "details", "hint"}`).
#[derive(Deserialize)]
struct ErrorBody {
    code: Option<String>,
    message: Option<String>,
    details: Option<Value>,
}

/// The two PostgREST clients (user requests, service requests) of one project.
pub struct Rest {
    as_user: Postgrest,
    as_service: Postgrest,
    timeout: Duration,
}

impl Rest {
    /// `url` is the project URL (`SUPABASE_URL`); the REST API is at `{url}/rest/v1`.
    pub fn new(url: &str, anon_key: &str, service_key: &str, timeout: Duration) -> Rest {
        let base = format!("{}/rest/v1", url.trim_end_matches('/'));
        let as_user = Postgrest::new(base.clone()).insert_header("apikey", anon_key);
        let as_service = Postgrest::new(base)
            .insert_header("apikey", service_key)
            .insert_header(AUTHORIZATION, format!("Bearer {service_key}"));
        Rest {
            as_user,
            as_service,
            timeout,
        }
    }

    /// A query on `table` made as `caller`.
    pub fn from(&self, caller: &Caller, table: &str) -> Builder {
        match caller {
            Caller::User(token) => self.as_user.from(table).auth(&**token),
            Caller::Service => self.as_service.from(table),
        }
    }

    /// Sends the request (replacing its `Prefer` header when `prefer` is given) and returns
    /// the JSON body (`Null` when empty).
    pub async fn send(&self, builder: Builder, prefer: Option<&str>) -> Result<Value, RestError> {
        let (client, request) = builder.build().build_split();
        let mut request = request.map_err(|e| RestError::Transport(e.to_string()))?;
        if let Some(prefer) = prefer {
            let value = HeaderValue::from_str(prefer)
                .map_err(|e| RestError::Transport(format!("bad Prefer header: {e}")))?;
            request.headers_mut().insert("Prefer", value);
        }
        *request.timeout_mut() = Some(self.timeout);
        let response = client
            .execute(request)
            .await
            .map_err(|e| RestError::Transport(describe_transport(&e)))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| RestError::Transport(describe_transport(&e)))?;
        if (200..300).contains(&status) {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&body).map_err(|e| RestError::Api {
                status,
                code: "invalid-json".into(),
                message: format!("unreadable response body: {e}"),
            });
        }
        let parsed: Option<ErrorBody> = serde_json::from_slice(&body).ok();
        let (code, message) = match parsed {
            Some(b) => {
                let mut message = b.message.unwrap_or_default();
                if let Some(Value::String(details)) = b.details {
                    message.push_str(&format!(" ({details})"));
                }
                (b.code.unwrap_or_default(), message)
            }
            None => (
                String::new(),
                String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            ),
        };
        Err(RestError::Api {
            status,
            code,
            message,
        })
    }

    /// Like [`Rest::send`], expecting a JSON array of rows. A range past the last row (416,
    /// `PGRST103`, PostgREST's answer to an offset beyond the end) is no rows.
    pub async fn rows(
        &self,
        builder: Builder,
        prefer: Option<&str>,
    ) -> Result<Vec<Value>, RestError> {
        match self.send(builder, prefer).await {
            Ok(Value::Array(rows)) => Ok(rows),
            Ok(Value::Null) => Ok(Vec::new()),
            Ok(other) => Ok(vec![other]),
            Err(RestError::Api { status: 416, .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

/// A transport error without the URL (which is harmless, but long) and with its cause.
fn describe_transport(e: &reqwest011::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut text = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn token_with(payload: &str) -> String {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.sig", b.encode("{}"), b.encode(payload))
    }

    #[test]
    fn expiry_is_read_from_the_payload_with_a_margin() {
        let now = 1_000_000;
        assert!(!token_expired(&token_with(r#"{"exp":1000100}"#), now));
        assert!(token_expired(&token_with(r#"{"exp":1000010}"#), now));
        assert!(token_expired(&token_with(r#"{"exp":999999}"#), now));
        assert!(token_expired(&token_with(r#"{"sub":"x"}"#), now));
        assert!(token_expired("not a token", now));
    }

    #[test]
    fn callers_fall_back_to_the_service_key_without_a_valid_token() {
        let mut user = User::with_id("u");
        assert!(Caller::for_user(&user).is_service());
        let far = chrono::Utc::now().timestamp() + 3600;
        user.raw_jwt = Some(token_with(&format!(r#"{{"exp":{far}}}"#)));
        assert!(!Caller::for_user(&user).is_service());
        user.raw_jwt = Some(token_with(r#"{"exp":1}"#));
        assert!(Caller::for_user(&user).is_service());
    }

    #[test]
    fn a_fresh_token_from_the_users_token_source_comes_first() {
        let far = chrono::Utc::now().timestamp() + 3600;
        let fresh = token_with(&format!(r#"{{"exp":{far},"n":"fresh"}}"#));
        let started_with = token_with(&format!(r#"{{"exp":{far},"n":"start"}}"#));
        let source_token = std::sync::Arc::new(std::sync::Mutex::new(Some(fresh.clone())));
        let s = source_token.clone();
        let mut user = User::with_id("u");
        user.raw_jwt = Some(token_with(r#"{"exp":1}"#));
        user.token_source = Some(crate::auth::TokenSource::new(move || {
            s.lock().unwrap().clone()
        }));
        let token_of = |user: &User| match Caller::for_user(user) {
            Caller::User(t) => Some(t.to_string()),
            Caller::Service => None,
        };
        // The token the session started with expired; the source's is used.
        assert_eq!(token_of(&user), Some(fresh));
        // The source has none (signed out) or an expired one: the start token while valid,
        // else the service key.
        *source_token.lock().unwrap() = Some(token_with(r#"{"exp":1}"#));
        assert_eq!(token_of(&user), None);
        *source_token.lock().unwrap() = None;
        user.raw_jwt = Some(started_with.clone());
        assert_eq!(token_of(&user), Some(started_with));
    }

    #[test]
    fn user_requests_carry_the_anon_key_and_service_requests_the_service_key() {
        let rest = Rest::new(
            "http://127.0.0.1:9/",
            "anon-key",
            "service-key",
            Duration::from_secs(1),
        );
        let user = rest
            .from(&Caller::User("user-jwt".into()), "chat_sessions")
            .select("id")
            .eq("user_id", "u")
            .build()
            .build()
            .unwrap();
        assert_eq!(user.headers()["apikey"], "anon-key");
        assert_eq!(user.headers()["authorization"], "Bearer user-jwt");
        assert_eq!(
            user.url().as_str(),
            "http://127.0.0.1:9/rest/v1/chat_sessions?select=id&user_id=eq.u"
        );
        let service = rest
            .from(&Caller::Service, "chat_sessions")
            .build()
            .build()
            .unwrap();
        assert_eq!(service.headers()["apikey"], "service-key");
        assert_eq!(service.headers()["authorization"], "Bearer service-key");
    }

    #[test]
    fn errors_map_to_store_errors() {
        let api = |status, code: &str| RestError::Api {
            status,
            code: code.into(),
            message: "m".into(),
        };
        assert!(matches!(
            StoreError::from(RestError::Transport("x".into())),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            StoreError::from(api(503, "PGRST001")),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            StoreError::from(api(409, "23505")),
            StoreError::Conflict(_)
        ));
        assert!(matches!(
            StoreError::from(api(400, "22P02")),
            StoreError::Database(_)
        ));
        assert!(api(400, "22P02").is_invalid_value());
        assert!(api(403, "42501").is_not_owned());
        assert!(api(409, "23503").is_not_owned());
        assert!(!api(400, "PGRST100").is_transient());
    }
}
