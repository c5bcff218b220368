//! Fake GitHub and GitLab REST APIs on `127.0.0.1:0`, speaking the real response formats.
//!
//! Both fakes serve the current user, the user's repositories/projects with real pagination
//! (GitHub: `Link` header with `rel="next"`; GitLab: `X-Next-Page`/`X-Total-Pages`), branches,
//! and PR/MR creation (201 with realistic bodies). A wrong token gets the forge's real 401
//! body. [`FakeGithub::set_failure`]/[`FakeGitlab::set_failure`] make every following request
//! fail (5xx) or be rate limited. Every request is recorded (method, raw path, raw query,
//! headers, JSON body) so tests can assert on what the client sent.
//!
//! ```ignore
//! let gh = FakeGithub::start("ghp_valid", 250).await;
//! let client = GithubClient::new(http, &gh.base_url());
//! assert_eq!(gh.requests()[0].header("authorization"), Some("Bearer ghp_valid"));
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// One request as the fake received it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// The raw (still percent-encoded) path, e.g. `/api/v4/projects/group%2Fproj/repository/branches`.
    pub path: String,
    /// The raw query string without `?`.
    pub query: Option<String>,
    /// Header names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON, when it was JSON.
    pub body: Option<Value>,
}

impl RecordedRequest {
    /// First value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A decoded query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        parse_query(self.query.as_deref().unwrap_or(""))
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// How the fake should fail the following requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeFailure {
    /// Answer with this status and the forge's usual error body (e.g. 500, 502, 503).
    Status(u16),
    /// The forge's rate-limit answer: GitHub 403 with `x-ratelimit-remaining: 0`,
    /// GitLab 429 with `Retry-After`.
    RateLimit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Github,
    Gitlab,
}

struct Inner {
    requests: Vec<RecordedRequest>,
    /// token → username.
    tokens: HashMap<String, String>,
    repos: usize,
    branches_per_repo: usize,
    /// Requests still answered normally before `failure` applies.
    failure_skip: usize,
    failure: Option<FakeFailure>,
    /// Created PRs / MRs (the forge's response bodies).
    created: Vec<Value>,
    /// Base of GitHub repositories' `clone_url` (default `https://github.com`).
    clone_base: Option<String>,
    /// Where git (smart HTTP) requests to this fake are forwarded (a test git server).
    git_backend: Option<String>,
}

struct Shared {
    flavor: Flavor,
    /// `http://127.0.0.1:PORT` (plus the path prefix for GitLab).
    base_url: String,
    /// The primary user's name: owner of every fixture repository.
    owner: String,
    /// The path prefix of the whole fake (GitLab on a sub-path), `""` at the root.
    prefix: String,
    http: reqwest::Client,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running server; aborted when dropped.
struct Server {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(
        flavor: Flavor,
        valid_token: &str,
        owner: &str,
        repos: usize,
        path_prefix: &str,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let prefix = path_prefix.trim_end_matches('/');
        let shared = Arc::new(Shared {
            flavor,
            base_url: format!("http://{addr}{prefix}"),
            owner: owner.to_string(),
            prefix: prefix.to_string(),
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("an HTTP client"),
            inner: Mutex::new(Inner {
                requests: Vec::new(),
                tokens: HashMap::from([(valid_token.to_string(), owner.to_string())]),
                repos,
                branches_per_repo: 3,
                failure_skip: 0,
                failure: None,
                created: Vec::new(),
                clone_base: None,
                git_backend: None,
            }),
        });
        let router = match flavor {
            Flavor::Github => github_router(),
            Flavor::Gitlab => Router::new()
                .nest(&format!("{prefix}/api/v4"), gitlab_router())
                .fallback(gitlab_not_found),
        }
        .layer(middleware::from_fn_with_state(shared.clone(), record))
        // Outermost: git traffic is forwarded before it is recorded as an API request.
        .layer(middleware::from_fn_with_state(shared.clone(), forward_git))
        .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Server { shared, task, addr }
    }

    fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    fn set_failure(&self, failure: Option<FakeFailure>) {
        let mut inner = self.shared.lock();
        inner.failure_skip = 0;
        inner.failure = failure;
    }

    fn set_failure_after(&self, ok_requests: usize, failure: FakeFailure) {
        let mut inner = self.shared.lock();
        inner.failure_skip = ok_requests;
        inner.failure = Some(failure);
    }
}

macro_rules! fake_api {
    ($name:ident) => {
        impl $name {
            /// Adds another accepted token, belonging to `username`.
            pub fn add_user(&self, token: &str, username: &str) {
                self.server
                    .shared
                    .lock()
                    .tokens
                    .insert(token.to_string(), username.to_string());
            }

            /// The primary user's login/username (owner of every fixture repository).
            pub fn username(&self) -> String {
                self.server.shared.owner.clone()
            }

            /// Base URL to configure the client with, e.g. `http://127.0.0.1:41234`.
            pub fn base_url(&self) -> String {
                self.server.shared.base_url.clone()
            }

            /// The socket address the fake listens on.
            pub fn addr(&self) -> SocketAddr {
                self.server.addr
            }

            /// Every request received so far, oldest first.
            pub fn requests(&self) -> Vec<RecordedRequest> {
                self.server.requests()
            }

            /// Forgets the recorded requests.
            pub fn clear_requests(&self) {
                self.server.shared.lock().requests.clear();
            }

            /// Makes every following request fail (`Some`) or succeed again (`None`).
            pub fn set_failure(&self, failure: Option<FakeFailure>) {
                self.server.set_failure(failure);
            }

            /// Answers `ok_requests` more requests normally, then fails every following one.
            pub fn set_failure_after(&self, ok_requests: usize, failure: FakeFailure) {
                self.server.set_failure_after(ok_requests, failure);
            }

            /// Number of branches of every repository (`main` first). Default 3.
            pub fn set_branches_per_repo(&self, n: usize) {
                self.server.shared.lock().branches_per_repo = n.max(1);
            }

            /// Makes GitHub repositories' `clone_url` `{base}/{owner}/{repo}.git` (e.g. a
            /// test git server) instead of `https://github.com/...`.
            pub fn set_clone_base(&self, base: &str) {
                self.server.shared.lock().clone_base = Some(base.trim_end_matches('/').to_string());
            }

            /// Serves git (smart HTTP) for repositories at this fake's own address, as a forge
            /// does: `{base_url}/{name}.git` is forwarded to `git`. A token saved for this
            /// forge then matches clone URLs by host *and* port, as it must.
            pub fn serve_git_from(&self, git: &crate::git_server::GitServer) {
                self.server.shared.lock().git_backend = Some(git.base_url());
            }

            /// The clone URL of repository `name` at this fake (see `serve_git_from`).
            pub fn git_url_for(&self, name: &str) -> String {
                format!("{}/{name}.git", self.base_url())
            }

            /// Bodies of the PRs/MRs created so far (as the forge answered them).
            pub fn created(&self) -> Vec<Value> {
                self.server.shared.lock().created.clone()
            }
        }
    };
}

/// A fake `api.github.com`.
pub struct FakeGithub {
    server: Server,
}

impl FakeGithub {
    /// Starts a fake accepting `valid_token` (user `octocat`) with `repos` repositories
    /// `octocat/repo-001`… on the current tokio runtime.
    pub async fn start(valid_token: &str, repos: usize) -> Self {
        Self {
            server: Server::start(Flavor::Github, valid_token, "octocat", repos, "").await,
        }
    }

    /// Full name (`owner/name`) of fixture repository `i` (1-based).
    pub fn repo_full_name(&self, i: usize) -> String {
        format!("{}/{}", self.username(), github_repo_name(i))
    }
}
fake_api!(FakeGithub);

/// A fake GitLab instance (API under `{base_url}/api/v4`).
pub struct FakeGitlab {
    server: Server,
}

impl FakeGitlab {
    /// Starts a fake accepting `valid_token` (user `gitlab-user`) with `projects` projects in
    /// the nested group `lucid-group/backend`.
    pub async fn start(valid_token: &str, projects: usize) -> Self {
        Self::start_at(valid_token, projects, "").await
    }

    /// Same, with the instance served under a sub-path (e.g. `/gitlab`), like a self-hosted
    /// GitLab behind a reverse proxy.
    pub async fn start_at(valid_token: &str, projects: usize, path_prefix: &str) -> Self {
        Self {
            server: Server::start(
                Flavor::Gitlab,
                valid_token,
                "gitlab-user",
                projects,
                path_prefix,
            )
            .await,
        }
    }

    /// `path_with_namespace` of fixture project `i` (1-based).
    pub fn project_path(&self, i: usize) -> String {
        gitlab_project_path(i)
    }
}
fake_api!(FakeGitlab);

// ---------------------------------------------------------------------------------------------
// Recording and failure injection

/// Forwards git's smart-HTTP requests (`…/<repo>.git/info/refs`, `git-upload-pack`,
/// `git-receive-pack`) to the git server set with `serve_git_from`, headers (credentials
/// included) and body as they came; everything else goes on to the API.
async fn forward_git(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let is_git = [
        ".git/info/refs",
        ".git/git-upload-pack",
        ".git/git-receive-pack",
    ]
    .iter()
    .any(|end| path.ends_with(end));
    let backend = shared.lock().git_backend.clone();
    let Some(backend) = backend.filter(|_| is_git) else {
        return next.run(req).await;
    };
    let rest = path.strip_prefix(shared.prefix.as_str()).unwrap_or(path);
    let url = match req.uri().query() {
        Some(query) => format!("{backend}{rest}?{query}"),
        None => format!("{backend}{rest}"),
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 256 << 20).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let hop_by_hop = |name: &str| {
        matches!(
            name,
            "host" | "content-length" | "connection" | "transfer-encoding"
        )
    };
    let mut forwarded = shared.http.request(parts.method, &url).body(bytes);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name.as_str()) {
            forwarded = forwarded.header(name, value);
        }
    }
    let Ok(answer) = forwarded.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !hop_by_hop(name.as_str()) {
            response = response.header(name, value);
        }
    }
    let body = answer.bytes().await.unwrap_or_default();
    response
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

async fn record(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 4 << 20)
        .await
        .unwrap_or_default();
    let failure = {
        let mut inner = shared.lock();
        inner.requests.push(RecordedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: serde_json::from_slice(&bytes).ok(),
        });
        if inner.failure_skip > 0 {
            inner.failure_skip -= 1;
            None
        } else {
            inner.failure
        }
    };
    match failure {
        Some(f) => failure_response(shared.flavor, f),
        None => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    }
}

fn failure_response(flavor: Flavor, failure: FakeFailure) -> Response {
    match (flavor, failure) {
        (Flavor::Github, FakeFailure::RateLimit) => {
            let mut resp = github_error(
                StatusCode::FORBIDDEN,
                "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID 0000:0000:0000000:0000000:00000000.",
            );
            let h = resp.headers_mut();
            h.insert("x-ratelimit-limit", HeaderValue::from_static("5000"));
            h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            h.insert("x-ratelimit-used", HeaderValue::from_static("5000"));
            h.insert("x-ratelimit-reset", HeaderValue::from_static("1893456000"));
            h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
            resp
        }
        (Flavor::Gitlab, FakeFailure::RateLimit) => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("retry-after", "60"),
                ("content-type", "text/plain"),
                ("ratelimit-remaining", "0"),
            ],
            "Retry later\n",
        )
            .into_response(),
        (flavor, FakeFailure::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let reason = status.canonical_reason().unwrap_or("Error");
            match flavor {
                Flavor::Github => github_error(status, reason),
                Flavor::Gitlab => {
                    (status, Json(json!({"message": format!("{code} {reason}")}))).into_response()
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `page` and `per_page` from a query, with the forges' defaults and limits.
fn page_params(query: &[(String, String)], default_per_page: usize) -> (usize, usize) {
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<usize>().ok())
    };
    let per_page = get("per_page").unwrap_or(default_per_page).clamp(1, 100);
    let page = get("page").unwrap_or(1).max(1);
    (page, per_page)
}

/// The same query with `page` replaced.
fn with_page(query: &[(String, String)], page: usize) -> String {
    let mut parts: Vec<String> = query
        .iter()
        .filter(|(k, _)| k != "page")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    parts.push(format!("page={page}"));
    parts.join("&")
}

/// An RFC 8288 `Link` header in the forges' format; `None` for a single page.
fn link_header(
    base_url: &str,
    path: &str,
    query: &[(String, String)],
    page: usize,
    pages: usize,
) -> Option<String> {
    if pages <= 1 {
        return None;
    }
    let link =
        |p: usize, rel: &str| format!("<{base_url}{path}?{}>; rel=\"{rel}\"", with_page(query, p));
    let mut links = Vec::new();
    if page > 1 {
        links.push(link(page - 1, "prev"));
    }
    if page < pages {
        links.push(link(page + 1, "next"));
    }
    links.push(link(1, "first"));
    links.push(link(pages, "last"));
    Some(links.join(", "))
}

fn slice_page<T: Clone>(items: &[T], page: usize, per_page: usize) -> Vec<T> {
    let start = (page - 1).saturating_mul(per_page);
    items.iter().skip(start).take(per_page).cloned().collect()
}

fn total_pages(total: usize, per_page: usize) -> usize {
    total.div_ceil(per_page)
}

fn fake_sha(seed: &str) -> String {
    // Deterministic 40-hex "commit id" derived from the seed (FNV-1a, repeated).
    let mut h: u64 = 0xcbf29ce484222325;
    let mut out = String::with_capacity(40);
    while out.len() < 40 {
        for b in seed.bytes().chain(out.len().to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out.truncate(40);
    out
}

fn branch_names(count: usize) -> Vec<String> {
    std::iter::once("main".to_string())
        .chain((1..count).map(|j| format!("feature-{j:03}")))
        .collect()
}

fn parse_json_body(body: &[u8]) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

fn str_field<'a>(body: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    body.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

// ---------------------------------------------------------------------------------------------
// GitHub

const GITHUB_DOCS: &str = "https://docs.github.com/rest";

fn github_router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/user", get(github_user))
        .route("/user/repos", get(github_repos))
        .route("/repos/{owner}/{repo}/branches", get(github_branches))
        .route("/repos/{owner}/{repo}/pulls", post(github_create_pull))
        .fallback(|| async { github_error(StatusCode::NOT_FOUND, "Not Found") })
}

fn github_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({
            "message": message,
            "documentation_url": GITHUB_DOCS,
            "status": status.as_u16().to_string(),
        })),
    )
        .into_response()
}

/// The login of the token's owner, or the 401 GitHub sends.
fn github_auth(shared: &Shared, headers: &HeaderMap) -> Result<String, Box<Response>> {
    let value = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("token "));
    match token {
        None => Err(Box::new(github_error(
            StatusCode::UNAUTHORIZED,
            "Requires authentication",
        ))),
        Some(t) => shared
            .lock()
            .tokens
            .get(t)
            .cloned()
            .ok_or_else(|| Box::new(github_error(StatusCode::UNAUTHORIZED, "Bad credentials"))),
    }
}

fn github_repo_name(i: usize) -> String {
    format!("repo-{i:03}")
}

fn github_repo_json(shared: &Shared, i: usize) -> Value {
    let owner = &shared.owner;
    let name = github_repo_name(i);
    let full = format!("{owner}/{name}");
    let private = i.is_multiple_of(2);
    let clone_base = shared
        .lock()
        .clone_base
        .clone()
        .unwrap_or_else(|| "https://github.com".to_string());
    json!({
        "id": 100_000 + i,
        "node_id": format!("R_kgDO{i:08}"),
        "name": name,
        "full_name": full,
        "private": private,
        "owner": {"login": owner, "id": 1, "type": "User", "site_admin": false},
        "html_url": format!("https://github.com/{full}"),
        "description": if i.is_multiple_of(3) { Value::Null } else { json!(format!("Fixture repository {i}")) },
        "fork": false,
        "url": format!("{}/repos/{full}", shared.base_url),
        "git_url": format!("git://github.com/{full}.git"),
        "ssh_url": format!("git@github.com:{full}.git"),
        "clone_url": format!("{clone_base}/{full}.git"),
        "homepage": null,
        "size": 108,
        "stargazers_count": i % 7,
        "language": "Rust",
        "archived": false,
        "visibility": if private { "private" } else { "public" },
        "default_branch": "main",
        "created_at": "2024-01-02T03:04:05Z",
        "updated_at": "2025-06-07T08:09:10Z",
        "pushed_at": "2025-06-07T08:09:10Z",
        "permissions": {"admin": true, "maintain": true, "push": true, "triage": true, "pull": true},
    })
}

/// Index of an existing fixture repository `owner/repo`.
fn github_find_repo(shared: &Shared, owner: &str, repo: &str) -> Option<usize> {
    if owner != shared.owner {
        return None;
    }
    let i: usize = repo.strip_prefix("repo-")?.parse().ok()?;
    (1..=shared.lock().repos).contains(&i).then_some(i)
}

fn paginated_json(
    shared: &Shared,
    path: &str,
    query: &[(String, String)],
    items: Vec<Value>,
    default_per_page: usize,
) -> Response {
    let (page, per_page) = page_params(query, default_per_page);
    let pages = total_pages(items.len(), per_page);
    let body = slice_page(&items, page, per_page);
    let mut resp = Json(Value::Array(body)).into_response();
    let h = resp.headers_mut();
    match shared.flavor {
        Flavor::Github => {
            if let Some(link) = link_header(&shared.base_url, path, query, page, pages) {
                h.insert("link", HeaderValue::from_str(&link).expect("ascii link"));
            }
        }
        Flavor::Gitlab => {
            let num = |n: usize| HeaderValue::from_str(&n.to_string()).expect("number");
            let opt = |cond: bool, n: usize| {
                if cond {
                    num(n)
                } else {
                    HeaderValue::from_static("")
                }
            };
            h.insert("x-page", num(page));
            h.insert("x-per-page", num(per_page));
            h.insert("x-total", num(items.len()));
            h.insert("x-total-pages", num(pages.max(1)));
            h.insert("x-next-page", opt(page < pages, page + 1));
            h.insert("x-prev-page", opt(page > 1 && page <= pages + 1, page - 1));
            let api_path = format!("/api/v4{path}");
            if let Some(link) = link_header(&shared.base_url, &api_path, query, page, pages) {
                h.insert("link", HeaderValue::from_str(&link).expect("ascii link"));
            }
        }
    }
    resp
}

async fn github_user(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let login = match github_auth(&shared, &headers) {
        Ok(l) => l,
        Err(resp) => return *resp,
    };
    Json(json!({
        "login": login,
        "id": 1,
        "node_id": "MDQ6VXNlcjE=",
        "avatar_url": "https://avatars.githubusercontent.com/u/1?v=4",
        "html_url": format!("https://github.com/{login}"),
        "type": "User",
        "site_admin": false,
        "name": "The Octocat",
        "company": null,
        "email": null,
        "public_repos": 8,
        "created_at": "2011-01-25T18:44:36Z",
    }))
    .into_response()
}

async fn github_repos(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    if let Err(resp) = github_auth(&shared, &headers) {
        return *resp;
    }
    let query = parse_query(req.uri().query().unwrap_or(""));
    let n = shared.lock().repos;
    let items = (1..=n).map(|i| github_repo_json(&shared, i)).collect();
    paginated_json(&shared, "/user/repos", &query, items, 30)
}

async fn github_branches(
    State(shared): State<Arc<Shared>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    if let Err(resp) = github_auth(&shared, &headers) {
        return *resp;
    }
    if github_find_repo(&shared, &owner, &repo).is_none() {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let query = parse_query(req.uri().query().unwrap_or(""));
    let count = shared.lock().branches_per_repo;
    let items = branch_names(count)
        .into_iter()
        .map(|name| {
            let sha = fake_sha(&format!("{owner}/{repo}@{name}"));
            json!({
                "name": name,
                "commit": {
                    "sha": sha,
                    "url": format!("{}/repos/{owner}/{repo}/commits/{sha}", shared.base_url),
                },
                "protected": name == "main",
            })
        })
        .collect();
    let path = format!("/repos/{owner}/{repo}/branches");
    paginated_json(&shared, &path, &query, items, 30)
}

async fn github_create_pull(
    State(shared): State<Arc<Shared>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let login = match github_auth(&shared, &headers) {
        Ok(l) => l,
        Err(resp) => return *resp,
    };
    if github_find_repo(&shared, &owner, &repo).is_none() {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let Some(body) = parse_json_body(&body) else {
        return github_error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let missing: Vec<Value> = ["title", "head", "base"]
        .iter()
        .filter(|f| str_field(&body, f).is_none())
        .map(|f| json!({"resource": "PullRequest", "field": f, "code": "missing_field"}))
        .collect();
    if !missing.is_empty() {
        return github_validation_failed(missing);
    }
    let (title, head, base) = (
        str_field(&body, "title").unwrap_or_default(),
        str_field(&body, "head").unwrap_or_default(),
        str_field(&body, "base").unwrap_or_default(),
    );
    if head == base {
        return github_validation_failed(vec![json!({
            "resource": "PullRequest", "code": "custom",
            "message": format!("No commits between {base} and {head}"),
        })]);
    }
    let full = format!("{owner}/{repo}");
    let mut inner = shared.lock();
    let duplicate = inner.created.iter().any(|pr| {
        pr["base"]["repo"]["full_name"] == json!(full)
            && pr["head"]["ref"] == json!(head)
            && pr["state"] == json!("open")
    });
    if duplicate {
        drop(inner);
        return github_validation_failed(vec![json!({
            "resource": "PullRequest", "code": "custom",
            "message": format!("A pull request already exists for {owner}:{head}."),
        })]);
    }
    let number = inner
        .created
        .iter()
        .filter(|pr| pr["base"]["repo"]["full_name"] == json!(full))
        .count()
        + 1;
    let pr = json!({
        "url": format!("{}/repos/{full}/pulls/{number}", shared.base_url),
        "id": 2_000_000 + number,
        "node_id": format!("PR_kwDO{number:08}"),
        "html_url": format!("https://github.com/{full}/pull/{number}"),
        "diff_url": format!("https://github.com/{full}/pull/{number}.diff"),
        "number": number,
        "state": "open",
        "locked": false,
        "title": title,
        "user": {"login": login, "id": 1, "type": "User"},
        "body": body.get("body").cloned().unwrap_or(Value::Null),
        "created_at": "2025-06-07T08:09:10Z",
        "updated_at": "2025-06-07T08:09:10Z",
        "draft": body.get("draft").and_then(Value::as_bool).unwrap_or(false),
        "head": {"label": format!("{owner}:{head}"), "ref": head, "sha": fake_sha(head), "repo": {"full_name": full}},
        "base": {"label": format!("{owner}:{base}"), "ref": base, "sha": fake_sha(base), "repo": {"full_name": full}},
        "merged": false,
        "mergeable": null,
    });
    inner.created.push(pr.clone());
    (StatusCode::CREATED, Json(pr)).into_response()
}

fn github_validation_failed(errors: Vec<Value>) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({
            "message": "Validation Failed",
            "errors": errors,
            "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
            "status": "422",
        })),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// GitLab

fn gitlab_router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/user", get(gitlab_user))
        .route("/projects", get(gitlab_projects))
        .route("/projects/{id}/repository/branches", get(gitlab_branches))
        .route("/projects/{id}/merge_requests", post(gitlab_create_mr))
        .fallback(gitlab_not_found)
}

async fn gitlab_not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "404 Not Found"})),
    )
        .into_response()
}

fn gitlab_message(status: StatusCode, message: Value) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

/// The username of the token's owner, or the 401 GitLab sends.
fn gitlab_auth(shared: &Shared, headers: &HeaderMap) -> Result<String, Box<Response>> {
    let token = headers
        .get("private-token")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        });
    token
        .and_then(|t| shared.lock().tokens.get(t).cloned())
        .ok_or_else(|| {
            Box::new(gitlab_message(
                StatusCode::UNAUTHORIZED,
                json!("401 Unauthorized"),
            ))
        })
}

fn gitlab_project_path(i: usize) -> String {
    format!("lucid-group/backend/project-{i:03}")
}

fn gitlab_project_json(shared: &Shared, i: usize) -> Value {
    let path = gitlab_project_path(i);
    let name = format!("project-{i:03}");
    let visibility = ["private", "internal", "public"][i % 3];
    let base = &shared.base_url;
    let host = base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    json!({
        "id": 1000 + i,
        "description": if i.is_multiple_of(4) { Value::Null } else { json!(format!("Fixture project {i}")) },
        "name": name,
        "name_with_namespace": format!("Lucid Group / backend / {name}"),
        "path": name,
        "path_with_namespace": path,
        "created_at": "2024-01-02T03:04:05.000Z",
        // Empty projects have no default branch.
        "default_branch": if i.is_multiple_of(5) { Value::Null } else { json!("main") },
        "tag_list": [],
        "topics": [],
        "ssh_url_to_repo": format!("git@{host}:{path}.git"),
        "http_url_to_repo": format!("{base}/{path}.git"),
        "web_url": format!("{base}/{path}"),
        "readme_url": null,
        "forks_count": 0,
        "star_count": i % 5,
        "last_activity_at": "2025-06-07T08:09:10.000Z",
        "namespace": {"id": 7, "name": "backend", "path": "backend", "kind": "group", "full_path": "lucid-group/backend"},
        "visibility": visibility,
        "empty_repo": i.is_multiple_of(5),
        "archived": false,
    })
}

/// Index of a fixture project by numeric id or (decoded) `path_with_namespace`.
fn gitlab_find_project(shared: &Shared, id: &str) -> Option<usize> {
    let n = shared.lock().repos;
    let i = match id.parse::<usize>() {
        Ok(num) => num.checked_sub(1000)?,
        Err(_) => id
            .strip_prefix("lucid-group/backend/project-")?
            .parse()
            .ok()?,
    };
    (1..=n).contains(&i).then_some(i)
}

async fn gitlab_user(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let username = match gitlab_auth(&shared, &headers) {
        Ok(u) => u,
        Err(resp) => return *resp,
    };
    Json(json!({
        "id": 42,
        "username": username,
        "name": "GitLab User",
        "state": "active",
        "locked": false,
        "avatar_url": "https://secure.gravatar.com/avatar/0?s=80&d=identicon",
        "web_url": format!("{}/{username}", shared.base_url),
        "created_at": "2020-01-01T00:00:00.000Z",
        "public_email": null,
    }))
    .into_response()
}

async fn gitlab_projects(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    if let Err(resp) = gitlab_auth(&shared, &headers) {
        return *resp;
    }
    let query = parse_query(req.uri().query().unwrap_or(""));
    let n = shared.lock().repos;
    let items = (1..=n).map(|i| gitlab_project_json(&shared, i)).collect();
    paginated_json(&shared, "/projects", &query, items, 20)
}

async fn gitlab_branches(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    if let Err(resp) = gitlab_auth(&shared, &headers) {
        return *resp;
    }
    let Some(i) = gitlab_find_project(&shared, &id) else {
        return gitlab_message(StatusCode::NOT_FOUND, json!("404 Project Not Found"));
    };
    let path = gitlab_project_path(i);
    let query = parse_query(req.uri().query().unwrap_or(""));
    let count = shared.lock().branches_per_repo;
    let items = branch_names(count)
        .into_iter()
        .map(|name| {
            let sha = fake_sha(&format!("{path}@{name}"));
            json!({
                "name": name,
                "merged": false,
                "protected": name == "main",
                "default": name == "main",
                "developers_can_push": false,
                "developers_can_merge": false,
                "can_push": true,
                "web_url": format!("{}/{path}/-/tree/{name}", shared.base_url),
                "commit": {
                    "id": sha,
                    "short_id": &sha[..8],
                    "title": "Initial commit",
                    "author_name": "GitLab User",
                    "committed_date": "2025-06-07T08:09:10.000Z",
                },
            })
        })
        .collect();
    let encoded = path.replace('/', "%2F");
    let list_path = format!("/projects/{encoded}/repository/branches");
    paginated_json(&shared, &list_path, &query, items, 20)
}

async fn gitlab_create_mr(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let username = match gitlab_auth(&shared, &headers) {
        Ok(u) => u,
        Err(resp) => return *resp,
    };
    let Some(i) = gitlab_find_project(&shared, &id) else {
        return gitlab_message(StatusCode::NOT_FOUND, json!("404 Project Not Found"));
    };
    let Some(body) = parse_json_body(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "source_branch is missing, target_branch is missing, title is missing"})),
        )
            .into_response();
    };
    let missing: Vec<String> = ["source_branch", "target_branch", "title"]
        .iter()
        .filter(|f| str_field(&body, f).is_none())
        .map(|f| format!("{f} is missing"))
        .collect();
    if !missing.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": missing.join(", ")})),
        )
            .into_response();
    }
    let source = str_field(&body, "source_branch").unwrap_or_default();
    let target = str_field(&body, "target_branch").unwrap_or_default();
    let title = str_field(&body, "title").unwrap_or_default();
    if source == target {
        return gitlab_message(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!(["You can't use same project/branch for source and target"]),
        );
    }
    let project_id = 1000 + i;
    let path = gitlab_project_path(i);
    let mut inner = shared.lock();
    let existing: Vec<&Value> = inner
        .created
        .iter()
        .filter(|mr| mr["project_id"] == json!(project_id))
        .collect();
    if let Some(dup) = existing
        .iter()
        .find(|mr| mr["source_branch"] == json!(source) && mr["state"] == json!("opened"))
    {
        let message = format!(
            "Another open merge request already exists for this source branch: !{}",
            dup["iid"]
        );
        drop(inner);
        return gitlab_message(StatusCode::CONFLICT, json!([message]));
    }
    let iid = existing.len() + 1;
    let mr = json!({
        "id": 50_000 + iid,
        "iid": iid,
        "project_id": project_id,
        "title": title,
        "description": body.get("description").cloned().unwrap_or(Value::Null),
        "state": "opened",
        "created_at": "2025-06-07T08:09:10.000Z",
        "updated_at": "2025-06-07T08:09:10.000Z",
        "target_branch": target,
        "source_branch": source,
        "author": {"id": 42, "username": username, "name": "GitLab User", "state": "active"},
        "draft": false,
        "merge_status": "checking",
        "detailed_merge_status": "checking",
        "sha": fake_sha(source),
        "references": {"short": format!("!{iid}"), "full": format!("{path}!{iid}")},
        "web_url": format!("{}/{path}/-/merge_requests/{iid}", shared.base_url),
    });
    inner.created.push(mr.clone());
    (StatusCode::CREATED, Json(mr)).into_response()
}
