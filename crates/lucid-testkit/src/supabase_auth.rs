//! A fake Supabase Auth (GoTrue) on 127.0.0.1 speaking GoTrue's real endpoints and JSON, for
//! the sign-in tests:
//!
//! - `GET /auth/v1/authorize?provider=&redirect_to=&code_challenge=&code_challenge_method=s256`
//!   stands in for GoTrue *and* the OAuth provider: it records a flow state and redirects
//!   (303) to `redirect_to` with `?code=<auth code>` added (the query `redirect_to` already has
//!   is kept, as GoTrue does), or with `?error=…&error_code=…&error_description=…` when the
//!   provider is set to refuse ([`FakeSupabaseAuth::set_provider_refuses`]).
//! - `POST /auth/v1/token?grant_type=pkce` (`{"auth_code","code_verifier"}`): the verifier must
//!   hash to the saved challenge; a code works once and expires after 5 minutes.
//! - `POST /auth/v1/token?grant_type=refresh_token` (`{"refresh_token"}`): rotation: each
//!   token works once; reusing a spent one (outside the reuse interval, 0 s here by default,
//!   10 s in GoTrue) is refused and revokes the whole session, as GoTrue's reuse detection does.
//! - `GET /auth/v1/user`, `POST /auth/v1/logout?scope=global|local|others` (204),
//!   `GET /auth/v1/.well-known/jwks.json`.
//!
//! [`FakeSupabaseAuth::start_for_project`] puts the fake in front of a whole project
//! (`lucid_testkit::supabase::SupabaseProject::start_with_auth`): a user it signs up is also
//! inserted into the project's `auth.users` (same id as the tokens' `sub`), and `/rest/v1/*` is
//! forwarded to the project's PostgREST, so one `SUPABASE_URL` serves both, as in Supabase.
//!
//! Every request needs the project's `apikey` header (Supabase's API gateway refuses requests
//! without one). Errors use GoTrue's bodies: `{"code":<status>,"error_code":…,"msg":…}`, or
//! `{"code":<error code>,"message":…}` when the request asks for API version 2024-01-01 (the
//! response then echoes `X-Supabase-Api-Version`), exactly like GoTrue's `HandleResponseError`.
//! Access tokens carry GoTrue's claims and are signed HS256 with the project's JWT secret or,
//! with [`FakeSupabaseAuth::start_with_key`], ES256/RS256 with a key published in the JWKS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};

use crate::jwks::TestKey;

/// The API version header GoTrue reads (and echoes) to choose its error format.
pub const API_VERSION_HEADER: &str = "x-supabase-api-version";
/// How long an auth code (flow state) stays valid in GoTrue.
pub const FLOW_STATE_TTL: Duration = Duration::from_secs(300);

/// The person the simulated provider signs in.
#[derive(Debug, Clone)]
pub struct FakeIdentity {
    /// The provider's own id of the person (GoTrue's `provider_id` / `sub`).
    pub provider_id: String,
    pub email: String,
    pub name: String,
    pub avatar_url: String,
}

impl FakeIdentity {
    pub fn new(provider_id: &str, email: &str, name: &str) -> Self {
        Self {
            provider_id: provider_id.into(),
            email: email.into(),
            name: name.into(),
            avatar_url: format!("https://avatars.example.test/{provider_id}.png"),
        }
    }
}

/// A user the fake just signed up, as GoTrue inserts it into the project's `auth.users`.
#[derive(Debug, Clone)]
pub struct SignedUpUser {
    /// The user id (the `sub` of the user's access tokens).
    pub id: String,
    pub email: String,
    /// GoTrue's `raw_user_meta_data` (the provider's identity data).
    pub user_metadata: Value,
}

/// Records a signed-up user in the project's database; an error fails the sign-in.
pub type SignUpHook =
    Arc<dyn Fn(SignedUpUser) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The rest of the Supabase project behind the fake Auth.
#[derive(Clone)]
pub struct ProjectBackend {
    /// Base URL of the project's PostgREST (`/rest/v1/*` is forwarded there).
    pub rest_url: String,
    pub on_sign_up: SignUpHook,
}

struct FakeUser {
    id: String,
    identity_id: String,
    email: String,
    provider: String,
    identity: FakeIdentity,
    created_at: DateTime<Utc>,
    last_sign_in_at: DateTime<Utc>,
}

struct FlowState {
    challenge: String,
    method: String,
    provider: String,
    user_id: String,
    created_at: DateTime<Utc>,
}

struct RefreshToken {
    session_id: String,
    user_id: String,
    revoked_at: Option<DateTime<Utc>>,
    /// The token that replaced this one.
    child: Option<String>,
}

struct AuthSession {
    user_id: String,
    not_after: Option<DateTime<Utc>>,
}

struct AuthState {
    base_url: String,
    anon_key: String,
    jwt_secret: Vec<u8>,
    key: Option<Arc<TestKey>>,
    access_token_ttl: Duration,
    reuse_interval: Duration,
    session_timebox: Option<Duration>,
    redirect_allow_list: Option<Vec<String>>,
    site_url: String,
    identities: HashMap<String, FakeIdentity>,
    refusing_provider: Option<String>,
    users: HashMap<String, FakeUser>,
    flows: HashMap<String, FlowState>,
    refresh_tokens: HashMap<String, RefreshToken>,
    sessions: HashMap<String, AuthSession>,
    counts: HashMap<&'static str, usize>,
    backend: Option<ProjectBackend>,
    http: reqwest::Client,
    /// An outage: every Auth endpoint answers 503 ([`FakeSupabaseAuth::set_unavailable`]).
    unavailable: bool,
}

/// A fake Supabase Auth on 127.0.0.1; stopped when dropped.
pub struct FakeSupabaseAuth {
    base_url: String,
    state: Arc<Mutex<AuthState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSupabaseAuth {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The providers the fake project has enabled, each with the person it signs in by default.
fn default_identities() -> HashMap<String, FakeIdentity> {
    [
        (
            "google",
            FakeIdentity::new("g-1001", "ada@example.test", "Ada Lovelace"),
        ),
        (
            "github",
            FakeIdentity::new("1002", "grace@example.test", "Grace Hopper"),
        ),
        (
            "gitlab",
            FakeIdentity::new("1003", "alan@example.test", "Alan Turing"),
        ),
    ]
    .into_iter()
    .map(|(p, i)| (p.to_string(), i))
    .collect()
}

impl FakeSupabaseAuth {
    /// A project whose access tokens are HS256-signed with `jwt_secret` (its JWKS is empty, as
    /// GoTrue publishes no symmetric keys).
    pub async fn start(anon_key: &str, jwt_secret: &[u8]) -> Self {
        Self::launch(anon_key, jwt_secret, None, None).await
    }

    /// The Auth of a whole project: sign-ups also go to `backend`'s database and `/rest/v1/*`
    /// is forwarded to its PostgREST (see `SupabaseProject::start_with_auth`).
    pub async fn start_for_project(
        anon_key: &str,
        jwt_secret: &[u8],
        key: Option<TestKey>,
        backend: ProjectBackend,
    ) -> Self {
        Self::launch(anon_key, jwt_secret, key.map(Arc::new), Some(backend)).await
    }

    /// A project with an asymmetric signing key (ES256 or RS256), published in its JWKS.
    pub async fn start_with_key(anon_key: &str, jwt_secret: &[u8], key: TestKey) -> Self {
        Self::launch(anon_key, jwt_secret, Some(Arc::new(key)), None).await
    }

    async fn launch(
        anon_key: &str,
        jwt_secret: &[u8],
        key: Option<Arc<TestKey>>,
        backend: Option<ProjectBackend>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Supabase Auth");
        let base_url = format!("http://{}", listener.local_addr().expect("local address"));
        let state = Arc::new(Mutex::new(AuthState {
            base_url: base_url.clone(),
            anon_key: anon_key.into(),
            jwt_secret: jwt_secret.to_vec(),
            key,
            access_token_ttl: Duration::from_secs(3600),
            reuse_interval: Duration::ZERO,
            session_timebox: None,
            redirect_allow_list: None,
            site_url: "http://localhost:3000".into(),
            identities: default_identities(),
            refusing_provider: None,
            users: HashMap::new(),
            flows: HashMap::new(),
            refresh_tokens: HashMap::new(),
            sessions: HashMap::new(),
            counts: HashMap::new(),
            backend,
            http: reqwest::Client::new(),
            unavailable: false,
        }));
        let router = Router::new()
            .route("/auth/v1/authorize", get(authorize))
            .route("/auth/v1/token", post(token))
            .route("/auth/v1/user", get(user))
            .route("/auth/v1/logout", post(logout))
            .route("/auth/v1/.well-known/jwks.json", get(jwks))
            .fallback(forward_to_project)
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                answer_503_during_an_outage,
            ))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            base_url,
            state,
            task,
        }
    }

    /// The project URL (`SUPABASE_URL`); Auth lives under `{url}/auth/v1`.
    pub fn url(&self) -> &str {
        &self.base_url
    }

    /// Lifetime of issued access tokens (`expires_in`; GoTrue's default is 3600 s).
    pub fn set_access_token_ttl(&self, ttl: Duration) {
        self.lock().access_token_ttl = ttl;
    }

    /// How long a just-spent refresh token may still be presented (GoTrue's
    /// `REFRESH_TOKEN_REUSE_INTERVAL`); within it, the same child token is answered again.
    pub fn set_reuse_interval(&self, interval: Duration) {
        self.lock().reuse_interval = interval;
    }

    /// Sessions end this long after sign-in (GoTrue's `SESSIONS_TIMEBOX`); a refresh after
    /// that is refused with `session_expired`. Applies to sessions created afterwards.
    pub fn set_session_timebox(&self, timebox: Option<Duration>) {
        self.lock().session_timebox = timebox;
    }

    /// Only these `redirect_to` prefixes are accepted; others fall back to the site URL, as
    /// GoTrue's `URI_ALLOW_LIST` does. `None` (the default) accepts any.
    pub fn set_redirect_allow_list(&self, allowed: Option<Vec<String>>, site_url: &str) {
        let mut s = self.lock();
        s.redirect_allow_list = allowed;
        s.site_url = site_url.into();
    }

    /// The person `provider` signs in next.
    pub fn set_identity(&self, provider: &str, identity: FakeIdentity) {
        self.lock().identities.insert(provider.into(), identity);
    }

    /// Makes `provider` refuse the sign-in (the user pressed "Cancel" at the provider).
    pub fn set_provider_refuses(&self, provider: Option<&str>) {
        self.lock().refusing_provider = provider.map(str::to_string);
    }

    /// An outage of Supabase Auth: while `true`, every request is answered 503, as the API
    /// gateway does when Auth is down.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }

    /// Ends every session at once (e.g. an administrator signed the user out everywhere).
    pub fn revoke_all_sessions(&self) {
        let mut s = self.lock();
        s.sessions.clear();
        s.refresh_tokens.clear();
    }

    /// How many requests an endpoint (`authorize`, `pkce`, `refresh_token`, `user`, `logout`,
    /// `jwks`) served; `unavailable`: how many were answered 503 during an outage.
    pub fn count(&self, endpoint: &str) -> usize {
        self.lock().counts.get(endpoint).copied().unwrap_or(0)
    }

    /// Number of live sessions.
    pub fn live_sessions(&self) -> usize {
        self.lock().sessions.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AuthState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Shared = State<Arc<Mutex<AuthState>>>;

fn lock(state: &Arc<Mutex<AuthState>>) -> std::sync::MutexGuard<'_, AuthState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// GoTrue's `HandleResponseError` for an `HTTPError`, in the format the request's API version
/// asks for.
fn gotrue_error(headers: &HeaderMap, status: StatusCode, code: &str, msg: &str) -> Response {
    let v2024 = headers
        .get(API_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v >= "2024-01-01");
    if v2024 {
        let mut response = (status, Json(json!({ "code": code, "message": msg }))).into_response();
        response
            .headers_mut()
            .insert(API_VERSION_HEADER, HeaderValue::from_static("2024-01-01"));
        response
    } else {
        (
            status,
            Json(json!({ "code": status.as_u16(), "error_code": code, "msg": msg })),
        )
            .into_response()
    }
}

/// The API gateway in front of GoTrue refuses requests without the project's key.
fn check_apikey(state: &AuthState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let given = headers.get("apikey").and_then(|v| v.to_str().ok());
    match given {
        None => Err(Box::new((
            StatusCode::UNAUTHORIZED,
            Json(json!({ "message": "No API key found in request", "hint": "No `apikey` request header or url param was found." })),
        )
            .into_response())),
        Some(key) if key != state.anon_key => Err(Box::new((
            StatusCode::UNAUTHORIZED,
            Json(json!({ "message": "Invalid API key", "hint": "Double check your Supabase `anon` or `service_role` API key." })),
        )
            .into_response())),
        Some(_) => Ok(()),
    }
}

fn count(state: &mut AuthState, endpoint: &'static str) {
    *state.counts.entry(endpoint).or_default() += 1;
}

fn random_token(len: usize) -> String {
    let mut out = String::new();
    while out.len() < len {
        out.extend(
            uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric()),
        );
    }
    out.truncate(len);
    out
}

fn s256(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn redirect(location: &str) -> Response {
    // GoTrue answers its redirects with 303 See Other.
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

fn with_query(url: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        Err(_) => url.to_string(),
    }
}

/// What `/authorize` did, or the user it must sign up in the project's database first.
enum Authorize {
    Done(Response),
    SignUp(Box<FakeUser>),
}

/// During an outage (see [`FakeSupabaseAuth::set_unavailable`]) nothing reaches Auth.
async fn answer_503_during_an_outage(
    State(state): Shared,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let down = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        let down = s.unavailable && request.uri().path().starts_with("/auth/v1/");
        if down {
            *s.counts.entry("unavailable").or_default() += 1;
        }
        down
    };
    if down {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"message": "name resolution failed"})),
        )
            .into_response();
    }
    next.run(request).await
}

async fn authorize(
    State(state): Shared,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    // The browser follows this link, so it carries no apikey header; GoTrue's `/authorize`
    // is reachable without one.
    count(&mut lock(&state), "authorize");
    let first = authorize_in(&mut lock(&state), &headers, &q, None);
    let user = match first {
        Authorize::Done(response) => return response,
        Authorize::SignUp(user) => user,
    };
    let hook = lock(&state)
        .backend
        .as_ref()
        .map(|b| b.on_sign_up.clone())
        .expect("a sign-up hook");
    let signed_up = SignedUpUser {
        id: user.id.clone(),
        email: user.email.clone(),
        user_metadata: identity_data(&user),
    };
    if let Err(e) = hook(signed_up).await {
        return gotrue_error(
            &headers,
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected_failure",
            &format!("Database error saving new user: {e}"),
        );
    }
    match authorize_in(&mut lock(&state), &headers, &q, Some(*user)) {
        Authorize::Done(response) => response,
        Authorize::SignUp(_) => gotrue_error(
            &headers,
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected_failure",
            "the signed-up user was not kept",
        ),
    }
}

/// `/authorize` under the state lock; `signed_up` is a user already recorded in the project's
/// database (the second pass after [`Authorize::SignUp`]).
fn authorize_in(
    s: &mut AuthState,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    signed_up: Option<FakeUser>,
) -> Authorize {
    let provider = q.get("provider").map(String::as_str).unwrap_or("");
    if provider.is_empty() {
        return Authorize::Done(gotrue_error(
            headers,
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "Unsupported provider: Provider  could not be found",
        ));
    }
    let Some(identity) = s.identities.get(provider).cloned() else {
        return Authorize::Done(gotrue_error(
            headers,
            StatusCode::BAD_REQUEST,
            "validation_failed",
            &format!("Unsupported provider: Provider {provider} could not be found"),
        ));
    };
    let mut redirect_to = q.get("redirect_to").cloned().unwrap_or_default();
    let allowed = match &s.redirect_allow_list {
        None => !redirect_to.is_empty(),
        Some(list) => list.iter().any(|p| redirect_to.starts_with(p)),
    };
    if !allowed {
        redirect_to = s.site_url.clone();
    }
    let challenge = q.get("code_challenge").cloned().unwrap_or_default();
    let method = q
        .get("code_challenge_method")
        .cloned()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if challenge.is_empty() {
        return Authorize::Done(gotrue_error(
            headers,
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "PKCE flow requires code_challenge (the implicit flow is not simulated)",
        ));
    }
    if method != "s256" && method != "plain" {
        return Authorize::Done(gotrue_error(
            headers,
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "code challenge method not supported",
        ));
    }
    if s.refusing_provider.as_deref() == Some(provider) {
        return Authorize::Done(redirect(&with_query(
            &redirect_to,
            &[
                ("error", "access_denied"),
                ("error_code", "provider_email_needs_verification"),
                (
                    "error_description",
                    "The user denied the request at the provider",
                ),
            ],
        )));
    }
    // The provider signed the person in: find or create the user for this identity.
    let now = Utc::now();
    let existing = s
        .users
        .values()
        .find(|u| u.provider == provider && u.identity.provider_id == identity.provider_id)
        .map(|u| u.id.clone());
    let user_id = match (existing, signed_up) {
        (Some(id), _) => id,
        (None, Some(user)) => {
            let id = user.id.clone();
            s.users.insert(id.clone(), user);
            id
        }
        (None, None) => {
            let id = uuid::Uuid::new_v4().to_string();
            let user = FakeUser {
                id: id.clone(),
                identity_id: uuid::Uuid::new_v4().to_string(),
                email: identity.email.clone(),
                provider: provider.to_string(),
                identity: identity.clone(),
                created_at: now,
                last_sign_in_at: now,
            };
            if s.backend.is_some() {
                return Authorize::SignUp(Box::new(user));
            }
            s.users.insert(id.clone(), user);
            id
        }
    };
    let code = uuid::Uuid::new_v4().to_string();
    s.flows.insert(
        code.clone(),
        FlowState {
            challenge,
            method,
            provider: provider.to_string(),
            user_id,
            created_at: now,
        },
    );
    Authorize::Done(redirect(&with_query(&redirect_to, &[("code", &code)])))
}

async fn token(
    State(state): Shared,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let mut s = lock(&state);
    if let Err(r) = check_apikey(&s, &headers) {
        return *r;
    }
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return gotrue_error(
                    &headers,
                    StatusCode::BAD_REQUEST,
                    "bad_json",
                    &format!("Could not parse request body as JSON: {e}"),
                )
            }
        }
    };
    let field = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    match q.get("grant_type").map(String::as_str) {
        Some("pkce") => {
            count(&mut s, "pkce");
            pkce_grant(
                &mut s,
                &headers,
                &field("auth_code"),
                &field("code_verifier"),
            )
        }
        Some("refresh_token") => {
            count(&mut s, "refresh_token");
            refresh_grant(&mut s, &headers, &field("refresh_token"))
        }
        _ => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "unsupported_grant_type", "error_description": "" })),
        )
            .into_response(),
    }
}

fn pkce_grant(s: &mut AuthState, headers: &HeaderMap, code: &str, verifier: &str) -> Response {
    if code.is_empty() || verifier.is_empty() {
        return gotrue_error(
            headers,
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "invalid request: both auth code and code verifier should be non-empty",
        );
    }
    let Some(flow) = s.flows.get(code) else {
        return gotrue_error(
            headers,
            StatusCode::NOT_FOUND,
            "flow_state_not_found",
            "invalid flow state, no valid flow state found",
        );
    };
    let age = Utc::now() - flow.created_at;
    if age.to_std().unwrap_or_default() > FLOW_STATE_TTL {
        return gotrue_error(
            headers,
            StatusCode::UNPROCESSABLE_ENTITY,
            "flow_state_expired",
            "invalid flow state, flow state has expired",
        );
    }
    let matches = match flow.method.as_str() {
        "s256" => s256(verifier) == flow.challenge,
        _ => verifier == flow.challenge,
    };
    if !matches {
        // GoTrue keeps the flow state on a mismatch (the right verifier may still come).
        return gotrue_error(
            headers,
            StatusCode::BAD_REQUEST,
            "bad_code_verifier",
            "code challenge does not match previously saved code verifier",
        );
    }
    let flow = s.flows.remove(code).expect("flow state present");
    let session_id = uuid::Uuid::new_v4().to_string();
    let not_after = s
        .session_timebox
        .and_then(|t| chrono::Duration::from_std(t).ok())
        .map(|t| Utc::now() + t);
    s.sessions.insert(
        session_id.clone(),
        AuthSession {
            user_id: flow.user_id.clone(),
            not_after,
        },
    );
    if let Some(user) = s.users.get_mut(&flow.user_id) {
        user.last_sign_in_at = Utc::now();
    }
    let _ = flow.provider;
    let refresh = random_token(12);
    s.refresh_tokens.insert(
        refresh.clone(),
        RefreshToken {
            session_id: session_id.clone(),
            user_id: flow.user_id.clone(),
            revoked_at: None,
            child: None,
        },
    );
    session_response(s, &flow.user_id, &session_id, &refresh)
}

fn refresh_grant(s: &mut AuthState, headers: &HeaderMap, presented: &str) -> Response {
    if presented.is_empty() {
        return gotrue_error(
            headers,
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "refresh_token required",
        );
    }
    let Some(token) = s.refresh_tokens.get(presented) else {
        return gotrue_error(
            headers,
            StatusCode::BAD_REQUEST,
            "refresh_token_not_found",
            "Invalid Refresh Token: Refresh Token Not Found",
        );
    };
    let session_id = token.session_id.clone();
    let user_id = token.user_id.clone();
    let Some(session) = s.sessions.get(&session_id) else {
        return gotrue_error(
            headers,
            StatusCode::BAD_REQUEST,
            "refresh_token_not_found",
            "Invalid Refresh Token: Refresh Token Not Found",
        );
    };
    if session.not_after.is_some_and(|t| Utc::now() > t) {
        return gotrue_error(
            headers,
            StatusCode::BAD_REQUEST,
            "session_expired",
            "Invalid Refresh Token: Session Expired",
        );
    }
    if let Some(revoked_at) = token.revoked_at {
        let within_reuse =
            (Utc::now() - revoked_at).to_std().unwrap_or_default() < s.reuse_interval;
        if let (true, Some(child)) = (within_reuse, token.child.clone()) {
            if s.refresh_tokens
                .get(&child)
                .is_some_and(|c| c.revoked_at.is_none())
            {
                return session_response(s, &user_id, &session_id, &child);
            }
        }
        // Reuse detection: the whole token family (the session) is revoked.
        s.sessions.remove(&session_id);
        s.refresh_tokens.retain(|_, t| t.session_id != session_id);
        return gotrue_error(
            headers,
            StatusCode::BAD_REQUEST,
            "refresh_token_already_used",
            "Invalid Refresh Token: Already Used",
        );
    }
    let child = random_token(12);
    if let Some(t) = s.refresh_tokens.get_mut(presented) {
        t.revoked_at = Some(Utc::now());
        t.child = Some(child.clone());
    }
    s.refresh_tokens.insert(
        child.clone(),
        RefreshToken {
            session_id: session_id.clone(),
            user_id: user_id.clone(),
            revoked_at: None,
            child: None,
        },
    );
    session_response(s, &user_id, &session_id, &child)
}

/// The provider's identity data (GoTrue's `identity_data` and the user's `raw_user_meta_data`).
fn identity_data(user: &FakeUser) -> Value {
    json!({
        "avatar_url": user.identity.avatar_url,
        "email": user.email,
        "email_verified": true,
        "full_name": user.identity.name,
        "iss": format!("https://{}.example.test", user.provider),
        "name": user.identity.name,
        "phone_verified": false,
        "provider_id": user.identity.provider_id,
        "sub": user.identity.provider_id,
    })
}

fn user_json(s: &AuthState, user: &FakeUser) -> Value {
    let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let identity_data = identity_data(user);
    let _ = s;
    json!({
        "id": user.id,
        "aud": "authenticated",
        "role": "authenticated",
        "email": user.email,
        "email_confirmed_at": ts(user.created_at),
        "phone": "",
        "confirmed_at": ts(user.created_at),
        "last_sign_in_at": ts(user.last_sign_in_at),
        "app_metadata": { "provider": user.provider, "providers": [user.provider] },
        "user_metadata": identity_data,
        "identities": [{
            "identity_id": user.identity_id,
            "id": user.identity.provider_id,
            "user_id": user.id,
            "identity_data": identity_data,
            "provider": user.provider,
            "last_sign_in_at": ts(user.last_sign_in_at),
            "created_at": ts(user.created_at),
            "updated_at": ts(user.last_sign_in_at),
            "email": user.email,
        }],
        "created_at": ts(user.created_at),
        "updated_at": ts(user.last_sign_in_at),
        "is_anonymous": false,
    })
}

fn session_response(s: &AuthState, user_id: &str, session_id: &str, refresh: &str) -> Response {
    let Some(user) = s.users.get(user_id) else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"code": 500, "error_code": "unexpected_failure", "msg": "user vanished"})),
        )
            .into_response();
    };
    let now = Utc::now().timestamp();
    let ttl = s.access_token_ttl.as_secs() as i64;
    let user_value = user_json(s, user);
    let claims = json!({
        "iss": format!("{}/auth/v1", s.base_url),
        "sub": user.id,
        "aud": "authenticated",
        "exp": now + ttl,
        "iat": now,
        "email": user.email,
        "phone": "",
        "app_metadata": user_value["app_metadata"],
        "user_metadata": user_value["user_metadata"],
        "role": "authenticated",
        "aal": "aal1",
        "amr": [{ "method": "oauth", "timestamp": now }],
        "session_id": session_id,
        "is_anonymous": false,
    });
    let access_token = match &s.key {
        Some(key) => key.sign(&claims),
        None => encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&s.jwt_secret),
        )
        .expect("sign an access token"),
    };
    Json(json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": ttl,
        "expires_at": now + ttl,
        "refresh_token": refresh,
        "user": user_value,
    }))
    .into_response()
}

/// Verifies a bearer access token the way GoTrue's `requireAuthentication` does, returning
/// its claims, or GoTrue's error response.
fn authenticate(s: &AuthState, headers: &HeaderMap) -> Result<Value, Box<Response>> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = bearer else {
        return Err(Box::new(gotrue_error(
            headers,
            StatusCode::UNAUTHORIZED,
            "no_authorization",
            "This endpoint requires a valid Bearer token",
        )));
    };
    let mut validation = Validation::new(match &s.key {
        Some(key) => key.alg,
        None => Algorithm::HS256,
    });
    validation.set_audience(&["authenticated"]);
    let decoding = match &s.key {
        Some(key) => {
            let jwk: jsonwebtoken::jwk::Jwk =
                serde_json::from_value(key.jwk()).expect("the fake's own JWK");
            DecodingKey::from_jwk(&jwk).expect("decoding key from the fake's JWK")
        }
        None => DecodingKey::from_secret(&s.jwt_secret),
    };
    let claims = decode::<Value>(token, &decoding, &validation).map_err(|e| {
        Box::new(gotrue_error(
            headers,
            StatusCode::FORBIDDEN,
            "bad_jwt",
            &format!("invalid JWT: unable to parse or verify signature, {e}"),
        ))
    })?;
    let claims = claims.claims;
    let session_id = claims
        .get("session_id")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !s.sessions.contains_key(session_id) {
        return Err(Box::new(gotrue_error(
            headers,
            StatusCode::FORBIDDEN,
            "session_not_found",
            "Session from session_id claim in JWT does not exist",
        )));
    }
    Ok(claims)
}

async fn user(State(state): Shared, headers: HeaderMap) -> Response {
    let mut s = lock(&state);
    if let Err(r) = check_apikey(&s, &headers) {
        return *r;
    }
    count(&mut s, "user");
    let claims = match authenticate(&s, &headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    match s.users.get(sub) {
        Some(user) => Json(user_json(&s, user)).into_response(),
        None => gotrue_error(
            &headers,
            StatusCode::FORBIDDEN,
            "user_not_found",
            "User from sub claim in JWT does not exist",
        ),
    }
}

async fn logout(
    State(state): Shared,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut s = lock(&state);
    if let Err(r) = check_apikey(&s, &headers) {
        return *r;
    }
    count(&mut s, "logout");
    let scope = q.get("scope").map(String::as_str).unwrap_or("global");
    if !matches!(scope, "global" | "local" | "others") {
        return gotrue_error(
            &headers,
            StatusCode::BAD_REQUEST,
            "validation_failed",
            &format!("Unsupported logout scope {scope:?}"),
        );
    }
    let claims = match authenticate(&s, &headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let session_id = claims["session_id"].as_str().unwrap_or("").to_string();
    let user_id = claims["sub"].as_str().unwrap_or("").to_string();
    let ended: Vec<String> = s
        .sessions
        .iter()
        .filter(|(id, sess)| match scope {
            "local" => **id == session_id,
            "others" => sess.user_id == user_id && **id != session_id,
            _ => sess.user_id == user_id,
        })
        .map(|(id, _)| id.clone())
        .collect();
    for id in &ended {
        s.sessions.remove(id);
    }
    s.refresh_tokens
        .retain(|_, t| !ended.contains(&t.session_id));
    StatusCode::NO_CONTENT.into_response()
}

async fn jwks(State(state): Shared) -> Response {
    let mut s = lock(&state);
    count(&mut s, "jwks");
    let keys: Vec<Value> = s.key.iter().map(|k| k.jwk()).collect();
    Json(json!({ "keys": keys })).into_response()
}

/// Supabase's gateway: `/rest/v1/*` goes to the project's PostgREST (when the fake fronts a
/// project); anything else is not found.
async fn forward_to_project(State(state): Shared, request: Request) -> Response {
    let (backend, http) = {
        let s = lock(&state);
        (s.backend.clone(), s.http.clone())
    };
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let Some(backend) = backend.filter(|_| path.starts_with("/rest/v1/")) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "message": "no Route matched with those values" })),
        )
            .into_response();
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut outgoing = http.request(
        parts.method,
        format!("{}{path}", backend.rest_url.trim_end_matches('/')),
    );
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = match outgoing.body(body).send().await {
        Ok(answer) => answer,
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                Json(json!({ "message": format!("An invalid response was received from the upstream server: {e}") })),
            )
                .into_response()
        }
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}
