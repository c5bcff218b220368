//! Authentication shared by every front door: bearer JWTs (`exp` and `sub` required; local
//! mode: HS256 with the local secret; Supabase mode: Supabase access tokens, HS256 or ES256/RS256
//! from the project's JWKS, see [`supabase`]) and the internal-key path (`X-User-ID` +
//! `X-Internal-Key`, only when a key is configured). Supabase sign-in (PKCE through Supabase
//! Auth): [`gotrue`] (the HTTP client), [`sign_in`] (start and complete a sign-in),
//! [`session_keeper`] (keep an app's session refreshed, also after the machine slept).

pub mod gotrue;
mod jwt;
mod local_secret;
pub mod session_keeper;
pub mod sign_in;
pub mod supabase;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use thiserror::Error;

pub use gotrue::{AuthSession, AuthUser, GoTrueClient, GoTrueError};
pub use jwt::{issue_token, verify_token, Claims};
pub use local_secret::{load_or_create_local_secret, load_or_create_secret_file};
pub use session_keeper::{SessionKeeper, SignedIn, TokenVault};
pub use sign_in::{Callback, Provider, SignIn, SignInError, StartedSignIn};
pub use supabase::{JwksPolicy, SupabaseTokenVerifier};

/// An access token this close to its `exp` counts as expired: requests made with it may take
/// a while, and Supabase must not see it expire in flight.
pub const TOKEN_EXPIRY_MARGIN_SECS: i64 = 30;

/// The authenticated caller. Every engine call takes one; ownership is checked against `id`.
#[derive(Clone, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub email: Option<String>,
    /// The bearer token the user came with (forwarded to PostgREST in Supabase mode);
    /// `None` on the internal-key path.
    #[serde(skip)]
    pub raw_jwt: Option<String>,
    /// Where work that outlives `raw_jwt` (a long session's writes) gets a fresh access token
    /// for this user: the desktop app's session keeper. Preferred over `raw_jwt` while it
    /// has a valid token.
    #[serde(skip)]
    pub token_source: Option<TokenSource>,
}

impl PartialEq for User {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.email == other.email && self.raw_jwt == other.raw_jwt
    }
}

impl Eq for User {}

/// A user's current access token, from whatever keeps it fresh (see [`User::token_source`]);
/// `None` when it has none for that user now.
#[derive(Clone)]
pub struct TokenSource(Arc<dyn Fn() -> Option<String> + Send + Sync>);

impl TokenSource {
    pub fn new(current: impl Fn() -> Option<String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(current))
    }

    pub fn current(&self) -> Option<String> {
        (self.0)()
    }
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .finish()
    }
}

impl User {
    /// A user known by id only (internal-key path, local CLI).
    pub fn with_id(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            email: None,
            raw_jwt: None,
            token_source: None,
        }
    }
}

/// Why a request is not authenticated. `Missing` maps to 403, everything else to 401.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("Authentication required")]
    Missing,
    #[error("Invalid token")]
    InvalidToken,
    #[error("Token expired")]
    Expired,
    #[error("Token missing sub claim")]
    MissingSub,
    #[error("Invalid internal API key")]
    InvalidInternalKey,
    #[error("Internal API key authentication is not enabled on this server")]
    InternalKeyDisabled,
}

impl AuthError {
    /// True for "no credentials at all" (403), false for "bad credentials" (401).
    pub fn is_missing(&self) -> bool {
        matches!(self, AuthError::Missing)
    }
}

/// Credentials as a front door found them.
#[derive(Debug, Clone, Copy)]
pub enum Credentials<'a> {
    Bearer(&'a str),
    Internal {
        user_id: &'a str,
        key: Option<&'a str>,
    },
    None,
}

impl<'a> Credentials<'a> {
    /// Reads the original's header rules: `Authorization: Bearer` first (a present but invalid
    /// bearer is final), then `X-User-ID` (+ `X-Internal-Key`), else nothing.
    pub fn from_headers(
        authorization: Option<&'a str>,
        x_user_id: Option<&'a str>,
        x_internal_key: Option<&'a str>,
    ) -> Self {
        if let Some(token) = authorization.and_then(|h| h.strip_prefix("Bearer ")) {
            return Credentials::Bearer(token.trim());
        }
        match x_user_id.map(str::trim).filter(|s| !s.is_empty()) {
            Some(user_id) => Credentials::Internal {
                user_id,
                key: x_internal_key,
            },
            None => Credentials::None,
        }
    }
}

/// Verifies credentials. Built once from the configuration.
#[derive(Clone)]
pub struct Authenticator {
    jwt_secret: Vec<u8>,
    internal_key: Option<String>,
    /// Supabase mode: bearer tokens are Supabase access tokens.
    supabase: Option<Arc<SupabaseTokenVerifier>>,
}

impl Authenticator {
    pub fn new(jwt_secret: impl Into<Vec<u8>>, internal_key: Option<String>) -> Self {
        Self {
            jwt_secret: jwt_secret.into(),
            internal_key: internal_key.filter(|k| !k.is_empty()),
            supabase: None,
        }
    }

    /// Supabase mode: bearer tokens are verified as Supabase access tokens (`aud` =
    /// `authenticated`, HS256 with the project secret or ES256/RS256 from its JWKS).
    pub fn with_supabase(mut self, verifier: SupabaseTokenVerifier) -> Self {
        self.supabase = Some(Arc::new(verifier));
        self
    }

    pub async fn authenticate(&self, credentials: Credentials<'_>) -> Result<User, AuthError> {
        match credentials {
            Credentials::Bearer(token) => self.verify_bearer(token).await,
            Credentials::Internal { user_id, key } => self.verify_internal(user_id, key),
            Credentials::None => Err(AuthError::Missing),
        }
    }

    pub async fn verify_bearer(&self, token: &str) -> Result<User, AuthError> {
        let claims = match &self.supabase {
            Some(verifier) => verifier.verify(token).await?,
            None => verify_token(token, &self.jwt_secret)?,
        };
        Ok(User {
            id: claims.sub,
            email: claims.email,
            raw_jwt: Some(token.to_string()),
            token_source: None,
        })
    }

    fn verify_internal(&self, user_id: &str, key: Option<&str>) -> Result<User, AuthError> {
        let expected = self
            .internal_key
            .as_deref()
            .ok_or(AuthError::InternalKeyDisabled)?;
        let given = key.unwrap_or("");
        let same_len = given.len() == expected.len();
        // Compare in constant time; the length check leaks only the length.
        let equal = same_len && bool::from(given.as_bytes().ct_eq(expected.as_bytes()));
        if !equal {
            return Err(AuthError::InvalidInternalKey);
        }
        Ok(User::with_id(user_id))
    }

    /// Issues a token for `user_id` (local mode's `--print-token`, tests).
    pub fn issue(&self, user_id: &str, ttl: std::time::Duration) -> String {
        issue_token(user_id, &self.jwt_secret, ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn auth() -> Authenticator {
        Authenticator::new(
            b"test-secret-0123456789".to_vec(),
            Some("internal-key".into()),
        )
    }

    #[test]
    fn header_order_prefers_bearer() {
        let c = Credentials::from_headers(Some("Bearer abc"), Some("u"), Some("k"));
        assert!(matches!(c, Credentials::Bearer("abc")));
        let c = Credentials::from_headers(Some("bearer abc"), Some("u"), None);
        assert!(matches!(
            c,
            Credentials::Internal {
                user_id: "u",
                key: None
            }
        ));
        assert!(matches!(
            Credentials::from_headers(None, Some(" "), None),
            Credentials::None
        ));
    }

    #[tokio::test]
    async fn issued_tokens_verify() {
        let a = auth();
        let t = a.issue("user-1", Duration::from_secs(60));
        let u = a.authenticate(Credentials::Bearer(&t)).await.unwrap();
        assert_eq!(u.id, "user-1");
        assert_eq!(u.raw_jwt.as_deref(), Some(t.as_str()));
    }

    #[tokio::test]
    async fn internal_key_rules() {
        let a = auth();
        let ok = a
            .authenticate(Credentials::Internal {
                user_id: "u1",
                key: Some("internal-key"),
            })
            .await;
        assert_eq!(ok.unwrap().id, "u1");
        let bad = a
            .authenticate(Credentials::Internal {
                user_id: "u1",
                key: Some("internal-kex"),
            })
            .await;
        assert_eq!(bad.unwrap_err(), AuthError::InvalidInternalKey);
        let none = a
            .authenticate(Credentials::Internal {
                user_id: "u1",
                key: None,
            })
            .await;
        assert_eq!(none.unwrap_err(), AuthError::InvalidInternalKey);
        let disabled = Authenticator::new(b"s".to_vec(), None)
            .authenticate(Credentials::Internal {
                user_id: "u1",
                key: Some(""),
            })
            .await;
        assert_eq!(disabled.unwrap_err(), AuthError::InternalKeyDisabled);
    }

    #[tokio::test]
    async fn supabase_mode_takes_supabase_access_tokens() {
        use lucid_testkit::jwks::{JwksServer, TestKey};
        let key = TestKey::es256("project-key");
        let server = JwksServer::start(&[&key]).await;
        let secret = b"fake-supabase-project-secret".to_vec();
        let a = Authenticator::new(secret.clone(), Some("internal-key".into())).with_supabase(
            SupabaseTokenVerifier::new(server.base_url(), secret, reqwest::Client::new()),
        );
        let exp = chrono::Utc::now().timestamp() + 600;
        let token = key.sign(&serde_json::json!({
            "sub": "supabase-user", "aud": "authenticated", "exp": exp, "email": "s@example.test"
        }));
        let user = a.authenticate(Credentials::Bearer(&token)).await.unwrap();
        assert_eq!(user.id, "supabase-user");
        assert_eq!(user.email.as_deref(), Some("s@example.test"));
        assert_eq!(user.raw_jwt.as_deref(), Some(token.as_str()));
        // A local-style token (no audience) is not a Supabase access token.
        let local = a.issue("u", Duration::from_secs(60));
        assert_eq!(
            a.authenticate(Credentials::Bearer(&local))
                .await
                .unwrap_err(),
            AuthError::InvalidToken
        );
        let expired = key.sign(&serde_json::json!({
            "sub": "supabase-user", "aud": "authenticated", "exp": exp - 7200
        }));
        assert_eq!(
            a.authenticate(Credentials::Bearer(&expired))
                .await
                .unwrap_err(),
            AuthError::Expired
        );
        // The internal-key path is unchanged.
        let internal = a
            .authenticate(Credentials::Internal {
                user_id: "u1",
                key: Some("internal-key"),
            })
            .await;
        assert_eq!(internal.unwrap().id, "u1");
    }

    #[tokio::test]
    async fn no_credentials_is_missing() {
        let e = auth().authenticate(Credentials::None).await.unwrap_err();
        assert!(e.is_missing());
    }
}
