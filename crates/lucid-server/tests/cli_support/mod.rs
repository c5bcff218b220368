//! Shared set-up for the tests that drive the real `lucid` binary as a child process: a clean
//! environment (nothing of the developer's leaks in), live capture of its output, signals,
//! a `lucid serve` on a free loopback port, and the Docker containers of a data directory's
//! engine instance.
#![allow(dead_code)]

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::models::ContainerSummary;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use lucid_testkit::llm::{Format, ScriptedLlm};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// The API key the binary sends to the scripted LLM.
pub const LLM_KEY: &str = "cli-test-llm-key-0123456789";
/// Container label of the engine instance owning a sandbox.
pub const LABEL_INSTANCE: &str = "lucid.instance";
/// Container label of every sandbox Lucid creates.
pub const LABEL_MANAGED: &str = "lucid.managed";

/// A temporary root holding the binary's data directory and home. On drop, any container a
/// failed test left behind for this data directory's instance is removed.
pub struct TestDirs {
    root: tempfile::TempDir,
}

impl TestDirs {
    pub fn new() -> TestDirs {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join("data")).expect("data dir");
        std::fs::create_dir_all(root.path().join("home")).expect("home dir");
        TestDirs { root }
    }

    /// `LUCID_DATA_DIR`.
    pub fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// `HOME` of the child, and its working directory (holds no `.env`).
    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    /// The engine instance id the binary stored in the data directory.
    pub fn instance_id(&self) -> String {
        let path = self.data().join("instance-id");
        let id = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        id.trim().to_string()
    }

    /// Containers (any state) of this data directory's engine instance.
    pub async fn containers(&self) -> Vec<ContainerSummary> {
        instance_containers(&self.instance_id()).await
    }
}

impl Default for TestDirs {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDirs {
    fn drop(&mut self) {
        let Ok(id) = std::fs::read_to_string(self.data().join("instance-id")) else {
            return;
        };
        let id = id.trim().to_string();
        // Runs on its own runtime: drop may happen inside (or outside) the test's runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(docker) = lucid_testkit::image::connect_docker().await else {
                    return;
                };
                for c in instance_containers(&id).await {
                    if let Some(cid) = c.id {
                        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
                        let _ = docker.remove_container(&cid, Some(opts)).await;
                    }
                }
            });
        })
        .join();
    }
}

/// Containers (any state) labelled as Lucid sandboxes of engine instance `instance_id`.
pub async fn instance_containers(instance_id: &str) -> Vec<ContainerSummary> {
    let docker = lucid_testkit::image::require_docker().await;
    let filters: HashMap<String, Vec<String>> = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{LABEL_MANAGED}=true"),
            format!("{LABEL_INSTANCE}={instance_id}"),
        ],
    )]);
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    docker
        .list_containers(Some(opts))
        .await
        .expect("list containers")
}

/// The child's whole environment: data dir and home in `dirs`, the local test sandbox image,
/// no network for sandboxes, `PATH`, and (with `llm`) that provider's base URL and key.
pub async fn lucid_env(dirs: &TestDirs, llm: Option<&ScriptedLlm>) -> Vec<(String, String)> {
    let image = lucid_testkit::image::ensure_test_image().await;
    let mut vars = base_env(dirs);
    vars.extend([
        ("SANDBOX_IMAGE".to_string(), image),
        ("DOCKER_NETWORK".to_string(), "none".to_string()),
        ("SANDBOX_MEMORY_LIMIT".to_string(), "256m".to_string()),
        (
            "ENCRYPTION_KEY".to_string(),
            "cli-test-encryption-key-0123456789".to_string(),
        ),
        // Tests count the instance's containers: no pre-started sandbox beside the sessions'.
        ("LUCID_WARM_SANDBOX".to_string(), "false".to_string()),
    ]);
    if let Some(llm) = llm {
        vars.extend(provider_env(llm));
    }
    vars
}

/// Only `PATH`, `HOME` and `LUCID_DATA_DIR`: no Docker settings, no provider.
pub fn base_env(dirs: &TestDirs) -> Vec<(String, String)> {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    vec![
        ("PATH".to_string(), path),
        ("HOME".to_string(), dirs.home().display().to_string()),
        (
            "LUCID_DATA_DIR".to_string(),
            dirs.data().display().to_string(),
        ),
    ]
}

/// Provider selection, base URL and key for a scripted LLM.
pub fn provider_env(llm: &ScriptedLlm) -> Vec<(String, String)> {
    let (provider, url_var, key_var) = match llm.format() {
        Format::Anthropic => ("anthropic", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"),
        Format::Gemini => ("google", "GOOGLE_BASE_URL", "GOOGLE_API_KEY"),
        Format::OpenAi => ("openai", "LLM_BASE_URL", "LLM_API_KEY"),
    };
    vec![
        ("DEFAULT_MODEL_PROVIDER".to_string(), provider.to_string()),
        (url_var.to_string(), llm.base_url()),
        (key_var.to_string(), LLM_KEY.to_string()),
    ]
}

/// Lines a child printed on one stream, with the time each arrived.
#[derive(Default)]
struct Captured {
    lines: Mutex<Vec<(Instant, String)>>,
    closed: Mutex<bool>,
    changed: Notify,
}

impl Captured {
    fn text(&self) -> String {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn find(&self, pred: &dyn Fn(&str) -> bool) -> Option<(Instant, String)> {
        let lines = self.lines.lock().unwrap();
        lines.iter().find(|(_, l)| pred(l)).cloned()
    }

    fn is_closed(&self) -> bool {
        *self.closed.lock().unwrap()
    }
}

fn capture(stream: impl AsyncRead + Unpin + Send + 'static) -> Arc<Captured> {
    let captured = Arc::new(Captured::default());
    let sink = Arc::clone(&captured);
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lines.lock().unwrap().push((Instant::now(), line));
            sink.changed.notify_waiters();
        }
        *sink.closed.lock().unwrap() = true;
        sink.changed.notify_waiters();
    });
    captured
}

/// Which output stream of the child.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A running `lucid` child process (killed if dropped while still running).
pub struct Lucid {
    child: Child,
    pub pid: u32,
    stdout: Arc<Captured>,
    stderr: Arc<Captured>,
    exited: Option<(ExitStatus, Instant)>,
}

impl Lucid {
    /// Starts `lucid ARGS` with exactly `env` as its environment, in `dirs.home()`.
    pub fn spawn(args: &[&str], env: &[(String, String)], dirs: &TestDirs) -> Lucid {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lucid"))
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(dirs.home())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the lucid binary");
        let pid = child.id().expect("child pid");
        let stdout = capture(child.stdout.take().expect("stdout"));
        let stderr = capture(child.stderr.take().expect("stderr"));
        Lucid {
            child,
            pid,
            stdout,
            stderr,
            exited: None,
        }
    }

    /// Runs `lucid ARGS` to its end (at most `limit`).
    pub async fn run(
        args: &[&str],
        env: &[(String, String)],
        dirs: &TestDirs,
        limit: Duration,
    ) -> Finished {
        let mut p = Lucid::spawn(args, env, dirs);
        let status = p.wait_exit(limit).await;
        Finished {
            status,
            stdout: p.stdout(),
            stderr: p.stderr(),
        }
    }

    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    fn describe(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout(),
            self.stderr()
        )
    }

    /// Waits until a line of `stream` satisfies `pred`; returns it with its arrival time.
    /// Panics (with everything printed so far) on timeout or when the stream ends first.
    pub async fn wait_for_line(
        &self,
        stream: Stream,
        pred: impl Fn(&str) -> bool,
        limit: Duration,
    ) -> (Instant, String) {
        let captured = match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        };
        let deadline = Instant::now() + limit;
        loop {
            let changed = captured.changed.notified();
            if let Some(found) = captured.find(&pred) {
                return found;
            }
            if captured.is_closed() {
                panic!(
                    "{stream:?} ended without the expected line\n{}",
                    self.describe()
                );
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "no expected line on {stream:?} within {limit:?}\n{}",
                    self.describe()
                );
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), changed).await;
        }
    }

    /// Sends a signal (`INT`, `TERM`, `KILL`) with the `kill` command.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid);
    }

    /// Whether the process has exited (without waiting).
    pub fn has_exited(&mut self) -> bool {
        if self.exited.is_some() {
            return true;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.exited = Some((status, Instant::now()));
                true
            }
            _ => false,
        }
    }

    /// Waits for the process to exit (panics after `limit`, killing it) and for its output
    /// to be fully read.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        if let Some((status, _)) = self.exited {
            return status;
        }
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.expect("wait for lucid"),
            Err(_) => {
                let _ = self.child.start_kill();
                panic!("lucid did not exit within {limit:?}\n{}", self.describe());
            }
        };
        self.exited = Some((status, Instant::now()));
        // The pipes close when the process is gone; give the readers a moment to drain.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !(self.stdout.is_closed() && self.stderr.is_closed()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        status
    }

    /// When the process was seen to exit (after [`Lucid::wait_exit`]).
    pub fn exit_time(&self) -> Option<Instant> {
        self.exited.map(|(_, t)| t)
    }
}

/// What a finished `lucid` command returned.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Exit code, or `128 + signal` for a process killed by a signal.
pub fn code_of(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// An HTTP client that only ever talks to loopback addresses given to it (no proxies).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// A `lucid serve` child on a free loopback port.
pub struct Served {
    pub process: Lucid,
    pub port: u16,
}

impl Served {
    /// Starts `lucid serve --port P` and waits until `/health` answers.
    pub async fn start(env: &[(String, String)], dirs: &TestDirs) -> Served {
        let port = free_port();
        let process = Lucid::spawn(&["serve", "--port", &port.to_string()], env, dirs);
        let mut served = Served { process, port };
        served.wait_healthy(Duration::from_secs(60)).await;
        served
    }

    async fn wait_healthy(&mut self, limit: Duration) {
        let client = http();
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(r) = client.get(self.url("/health")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            if self.process.has_exited() {
                panic!(
                    "lucid serve exited before it was healthy\n{}",
                    self.process.describe()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "lucid serve not healthy within {limit:?}\n{}",
                    self.process.describe()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://127.0.0.1:{}/api/v1/ws?token={token}", self.port)
    }
}

/// `lucid serve --print-token` for the data directory of `env`; returns the token.
pub async fn print_token(env: &[(String, String)], dirs: &TestDirs) -> String {
    let out = Lucid::run(
        &["serve", "--print-token"],
        env,
        dirs,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.code(), Some(0), "{out:#?}");
    let token = out.stdout.trim().to_string();
    assert_eq!(token.lines().count(), 1, "one line: {out:#?}");
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    token
}

/// The value of `name` in `env`.
pub fn env_value<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}
