//! A token-protected git smart-HTTP server for tests.
//!
//! [`GitServer::start`] serves bare repositories from a temporary directory on
//! `127.0.0.1:<random port>` by running git's own `git http-backend` as a CGI program, so
//! clones (upload-pack) and pushes (receive-pack) are real git traffic. Every request must
//! carry HTTP Basic credentials equal to the configured username and token; otherwise the
//! answer is `401` with `WWW-Authenticate: Basic realm="…"`, which makes git ask its askpass
//! helper. Each request is recorded (method, path and query, the `Authorization` header
//! seen) so tests can assert how the client authenticated.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Realm announced in `WWW-Authenticate`.
pub const REALM: &str = "lucid-test-git";
/// Largest request body accepted (pushes of test repositories are far smaller).
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;
/// Identity of the commits [`GitServer::create_repo`] makes.
pub const SEED_AUTHOR_NAME: &str = "Lucid Test Seed";
pub const SEED_AUTHOR_EMAIL: &str = "seed@lucid.test";

/// One HTTP request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, e.g. `/app.git/info/refs?service=git-upload-pack`.
    pub path_and_query: String,
    /// The raw `Authorization` header, if any.
    pub authorization: Option<String>,
    /// Whether the credentials matched.
    pub authorized: bool,
}

struct Inner {
    root: PathBuf,
    expected_authorization: String,
    backend: PathBuf,
    requests: Mutex<Vec<RecordedRequest>>,
}

/// A running git HTTP server; stops when dropped.
pub struct GitServer {
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
    _root: tempfile::TempDir,
}

impl GitServer {
    /// Starts a server on 127.0.0.1 that accepts exactly `username` / `token`.
    pub async fn start(username: &str, token: &str) -> std::io::Result<GitServer> {
        let exec_path = run_git(&["--exec-path"], None).await?;
        let backend = PathBuf::from(exec_path.trim()).join("git-http-backend");
        if !backend.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("git-http-backend not found at {}", backend.display()),
            ));
        }
        let root = tempfile::Builder::new()
            .prefix("lucid-git-server-")
            .tempdir()?;
        let inner = Arc::new(Inner {
            root: root.path().to_path_buf(),
            expected_authorization: format!(
                "Basic {}",
                base64_encode(format!("{username}:{token}").as_bytes())
            ),
            backend,
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(inner.clone())
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "test git server stopped");
            }
        });
        Ok(GitServer {
            addr,
            inner,
            task,
            _root: root,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The clone URL of repository `name`: `http://127.0.0.1:<port>/<name>.git`.
    pub fn url_for(&self, name: &str) -> String {
        format!("{}/{name}.git", self.base_url())
    }

    /// Where the bare repository `name` lives on disk.
    pub fn bare_path(&self, name: &str) -> PathBuf {
        self.inner.root.join(format!("{name}.git"))
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The `Authorization` header value the server accepts.
    pub fn expected_authorization(&self) -> &str {
        &self.inner.expected_authorization
    }

    /// Creates bare repository `name` whose `main` branch has one commit with `files`
    /// (`(path, content)`, parent directories created). Each name in `branches` becomes a
    /// branch one commit ahead of `main` that adds `BRANCH.txt` containing the branch name.
    /// Pushing over HTTP is enabled.
    pub async fn create_repo(
        &self,
        name: &str,
        files: &[(&str, &str)],
        branches: &[&str],
    ) -> std::io::Result<()> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(format!("invalid repository name {name:?}")));
        }
        let work = tempfile::Builder::new()
            .prefix("seed-")
            .tempdir_in(&self.inner.root)?;
        let w = work.path();
        run_git(&["init", "--quiet", "--initial-branch=main"], Some(w)).await?;
        for (path, content) in files {
            let target = w.join(path);
            if !target.starts_with(w) || path.contains("..") {
                return Err(invalid(format!("invalid file path {path:?}")));
            }
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&target, content)?;
        }
        run_git(&["add", "-A"], Some(w)).await?;
        seed_commit(w, "Initial commit").await?;
        for branch in branches {
            run_git(&["switch", "--quiet", "--create", branch], Some(w)).await?;
            std::fs::write(w.join("BRANCH.txt"), branch)?;
            run_git(&["add", "-A"], Some(w)).await?;
            seed_commit(w, &format!("Branch {branch}")).await?;
            run_git(&["switch", "--quiet", "main"], Some(w)).await?;
        }
        let bare = self.bare_path(name);
        let bare_str = bare.to_string_lossy().into_owned();
        let work_str = w.to_string_lossy().into_owned();
        run_git(
            &["clone", "--quiet", "--bare", "--", &work_str, &bare_str],
            None,
        )
        .await?;
        run_git(&["config", "http.receivepack", "true"], Some(&bare)).await?;
        Ok(())
    }

    /// Runs git in bare repository `name` (`git <args>` with the bare repository as cwd) and
    /// returns its stdout; an error carrying stderr when git fails.
    pub async fn git_in_repo(&self, name: &str, args: &[&str]) -> std::io::Result<String> {
        run_git(args, Some(&self.bare_path(name))).await
    }

    /// The commit `refs/heads/<branch>` points at in repository `name`, if the branch exists.
    pub async fn branch_sha(&self, name: &str, branch: &str) -> std::io::Result<Option<String>> {
        let reference = format!("refs/heads/{branch}");
        match self
            .git_in_repo(name, &["rev-parse", "--verify", "--quiet", &reference])
            .await
        {
            Ok(sha) => Ok(Some(sha.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn seed_commit(work: &Path, message: &str) -> std::io::Result<String> {
    run_git(
        &[
            "-c",
            &format!("user.name={SEED_AUTHOR_NAME}"),
            "-c",
            &format!("user.email={SEED_AUTHOR_EMAIL}"),
            "commit",
            "--quiet",
            "--no-verify",
            "-m",
            message,
        ],
        Some(work),
    )
    .await
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, message)
}

/// A `Command` with the inherited git environment removed, so the test process's own
/// settings cannot leak into the server side.
fn clean_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1").env("LC_ALL", "C");
    cmd
}

/// Runs `git args` (in `cwd`); stdout on success. Exit code 1 with empty output maps to
/// `NotFound` (used by `rev-parse --verify --quiet`), any other failure to `Other`.
async fn run_git(args: &[&str], cwd: Option<&Path>) -> std::io::Result<String> {
    let mut cmd = clean_command(Path::new("git"));
    cmd.args(args).stdin(Stdio::null());
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    let out = cmd.output().await?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let kind = if out.status.code() == Some(1) && stderr.trim().is_empty() {
        std::io::ErrorKind::NotFound
    } else {
        std::io::ErrorKind::Other
    };
    Err(std::io::Error::new(
        kind,
        format!("git {} failed: {}", args.join(" "), stderr.trim()),
    ))
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let authorized = authorization.as_deref() == Some(inner.expected_authorization.as_str());
    inner
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(RecordedRequest {
            method: method.to_string(),
            path_and_query: uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| uri.path().to_string()),
            authorization,
            authorized,
        });
    if !authorized {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("www-authenticate", format!("Basic realm=\"{REALM}\""))
            .body(Body::from("authentication required\n"))
            .unwrap_or_default();
    }
    if uri.path().contains("..") {
        return plain(StatusCode::BAD_REQUEST, "bad path\n");
    }
    match run_backend(&inner, &method, &uri, &headers, body).await {
        Ok(response) => response,
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("git http-backend failed: {e}\n"),
        ),
    }
}

fn plain(status: StatusCode, text: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Body::from(text.to_string()))
        .unwrap_or_default()
}

/// Runs `git http-backend` for one request (CGI/1.1) and converts its output to a response.
async fn run_backend(
    inner: &Inner,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> std::io::Result<Response> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut cmd = clean_command(&inner.backend);
    cmd.current_dir(&inner.root)
        .env("HOME", &inner.root)
        .env("GIT_PROJECT_ROOT", &inner.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", "lucid-test")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("HTTP_GIT_PROTOCOL", header("git-protocol"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no stdin"))?;
    let feed = async move {
        let _ = stdin.write_all(&body).await;
        let _ = stdin.shutdown().await;
    };
    let (_, output) = tokio::join!(feed, child.wait_with_output());
    let output = output?;
    if !output.stderr.is_empty() {
        tracing::debug!(stderr = %String::from_utf8_lossy(&output.stderr), "git http-backend");
    }
    parse_cgi_response(&output.stdout)
}

/// Splits CGI output into a status, headers and body.
fn parse_cgi_response(raw: &[u8]) -> std::io::Result<Response> {
    let (head_end, sep_len) = [&b"\r\n\r\n"[..], &b"\n\n"[..]]
        .iter()
        .filter_map(|sep| {
            raw.windows(sep.len())
                .position(|w| w == *sep)
                .map(|p| (p, sep.len()))
        })
        .min_by_key(|(p, _)| *p)
        .ok_or_else(|| std::io::Error::other("git http-backend printed no CGI headers"))?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut builder = Response::builder().status(StatusCode::OK);
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            builder = builder.status(code);
        } else if let Ok(v) = HeaderValue::from_str(value) {
            builder = builder.header(name.trim(), v);
        }
    }
    builder
        .body(Body::from(raw[head_end + sep_len..].to_vec()))
        .map_err(std::io::Error::other)
}

/// Standard base64 with padding (RFC 4648), for the expected `Authorization` header.
pub fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), expected);
        }
    }

    #[test]
    fn cgi_output_is_parsed() {
        let resp =
            parse_cgi_response(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope")
                .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(resp.headers()["content-type"], "text/plain");
        let resp = parse_cgi_response(b"Content-Type: x\n\nbody").unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(parse_cgi_response(b"no headers").is_err());
    }

    #[tokio::test]
    async fn requires_basic_auth_and_serves_clones() {
        let server = GitServer::start("alice", "t0ken").await.unwrap();
        server
            .create_repo("demo", &[("README.md", "hello\n")], &["dev"])
            .await
            .unwrap();
        let dest = tempfile::tempdir().unwrap();
        let target = dest.path().join("c");
        let out = clean_command(Path::new("git"))
            .args(["-c", "credential.helper=", "clone", "--quiet", "--"])
            .arg(server.url_for("demo"))
            .arg(&target)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "clone without credentials succeeded");
        let reqs = server.requests();
        assert!(!reqs.is_empty());
        assert!(reqs.iter().all(|r| !r.authorized));

        let url = server
            .url_for("demo")
            .replace("http://", "http://alice:t0ken@");
        let out = clean_command(Path::new("git"))
            .args(["-c", "credential.helper=", "clone", "--quiet", "--"])
            .arg(&url)
            .arg(&target)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(target.join("README.md")).unwrap(),
            "hello\n"
        );
        assert!(server
            .requests()
            .iter()
            .any(|r| r.authorized
                && r.path_and_query == "/demo.git/info/refs?service=git-upload-pack"));
        assert!(server.branch_sha("demo", "dev").await.unwrap().is_some());
        assert!(server.branch_sha("demo", "nope").await.unwrap().is_none());
    }
}
