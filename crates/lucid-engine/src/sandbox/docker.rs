//! Docker sandboxes: one hardened container per session, commands through a persistent shell.
//!
//! [`DockerSandboxes`] (one per engine) talks to the daemon through its API (bollard, never the
//! CLI), prepares the image, creates containers and reaps the ones a previous run of the same
//! engine instance left behind. Each container carries the labels `lucid.managed=true`,
//! `lucid.session_id`, `lucid.user_id` and `lucid.instance`; cleanup only ever touches
//! containers labelled with this instance's id (see [`load_or_create_instance_id`]).
//!
//! [`DockerSandbox`] runs commands in ONE attached `docker exec` of `/bin/sh` driven by
//! [`PersistentShell`]; an interrupt kills the shell's processes through a short separate exec
//! and a fresh shell takes over with the same cwd and exported variables. If the attached shell cannot be started, it falls back to one exec per command.
//!
//! Container hardening: all capabilities dropped except CHOWN, DAC_OVERRIDE, FOWNER, FSETID,
//! SETUID and SETGID (a root dev shell needs them to write workspace files owned by the host
//! user, to chown/chmod files that package managers unpack, and for tools that drop
//! privileges to a service user); `no-new-privileges`; memory (swap included), CPU and pids
//! limits; an init process; no environment variables from the engine (except `HOME` for a
//! non-root user).
//!
//! Network: `DOCKER_NETWORK` when set (e.g. `none`); otherwise a bridge network Lucid creates
//! and owns ([`ensure_network`], default `lucid-sandbox`) with inter-container traffic
//! disabled, so sandboxes of different sessions cannot reach each other.
//!
//! User: processes run as the engine's own `uid:gid` on Linux (or `SANDBOX_USER`), with a
//! writable `HOME` created before the shell starts, so files the agent creates belong to the
//! desktop user. With `SANDBOX_RUN_AS_ROOT` they run as root and the workspace is handed back
//! to that user when the sandbox is released (see [`super::ownership`]).
//!
//! Creation is race-safe: [`DockerSandboxes::create`] runs in a task of its own that always
//! completes; if the caller gave up meanwhile, the finished sandbox is released at once, so a
//! cancelled start never leaves a container (not even a `Created` one) behind.

use std::collections::HashMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;

use super::ownership::{chown_tree, engine_user};
use super::shell::{PersistentShell, ShellChannels, ShellHost, ShellLaunch, ShellMode};
use super::{ExecOutput, Sandbox, SandboxError, SandboxKind};
use crate::config::SandboxConfig;

pub const LABEL_MANAGED: &str = "lucid.managed";
pub const LABEL_SESSION: &str = "lucid.session_id";
pub const LABEL_USER: &str = "lucid.user_id";
pub const LABEL_INSTANCE: &str = "lucid.instance";
/// The bridge driver option that disables traffic between containers of a network.
pub const NETWORK_ICC_OPTION: &str = "com.docker.network.bridge.enable_icc";
/// `HOME` of a non-root sandbox user (created before the shell starts).
pub const SANDBOX_HOME: &str = "/tmp/lucid-home";

/// Capabilities kept after `cap_drop ALL` (see the module documentation for why).
pub const KEPT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "SETUID",
    "SETGID",
];

/// Keeps the container alive; works with busybox and GNU `sleep` (≈68 years).
const KEEP_ALIVE: [&str; 2] = ["sleep", "2147483647"];
const PING_TIMEOUT: Duration = Duration::from_secs(3);
const STOP_TIMEOUT_SECS: i32 = 2;
/// Longest in-container `chown -R` when a root sandbox hands its workspace back.
const HAND_BACK_TIMEOUT: Duration = Duration::from_secs(30);
/// A pull that prints nothing for this long is abandoned.
const PULL_STALL_TIMEOUT: Duration = Duration::from_secs(120);
/// The file, in the data directory, holding this engine's instance id.
const INSTANCE_ID_FILE: &str = "instance-id";

/// Kills, inside the container, every process of the session `$1`: the exec'd shell (docker
/// makes each exec a session leader) and all it started, unless detached with `setsid`.
/// The shell goes first: the glob below is in lexicographic order (pid 10 before pid 9), and a
/// shell that outlives its killed command would run the rest of its command list.
const KILL_SCRIPT: &str = r#"target=$1
kill -9 "$target" 2>/dev/null
for f in /proc/[0-9]*/stat; do
  pid=${f#/proc/}; pid=${pid%/stat}
  [ "$pid" = "$$" ] && continue
  read -r line < "$f" 2>/dev/null || continue
  set -- ${line##*) }
  [ "$4" = "$target" ] && kill -9 "$pid" 2>/dev/null
done
exit 0
"#;

/// Reads this engine's instance id from `<data_dir>/instance-id`, creating it on first run,
/// so a restarted engine recognises (and reaps) the containers its previous run left.
pub fn load_or_create_instance_id(data_dir: &Path) -> io::Result<String> {
    let path = data_dir.join(INSTANCE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if valid_instance_id(text.trim()) => return Ok(text.trim().to_string()),
        Ok(_) => tracing::warn!(path = %path.display(), "invalid instance id replaced"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data_dir)?;
    let id = uuid::Uuid::new_v4().to_string();
    let tmp = data_dir.join(format!("{INSTANCE_ID_FILE}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

fn valid_instance_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Docker container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn valid_container_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 200
}

fn is_status(error: &DockerError, code: u16) -> bool {
    matches!(error, DockerError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

/// An image reference with an explicit tag (`name` alone would pull every tag).
fn reference_with_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

type Registry = Arc<StdMutex<HashMap<String, Weak<DockerSandbox>>>>;

/// The latest progress line of the sandbox image pull under way, if any (for the engine's
/// status, so a UI can show a pull while it lasts).
#[derive(Debug, Clone, Default)]
pub struct PullProgress(Arc<StdMutex<Option<String>>>);

impl PullProgress {
    /// The latest line of the pull under way; `None` when nothing is being pulled.
    pub fn current(&self) -> Option<String> {
        self.0.lock().map(|p| p.clone()).unwrap_or(None)
    }

    /// A pull starts with `line`: it is under way until the returned guard is dropped.
    pub fn begin(&self, line: &str) -> PullUnderWay {
        self.update(line);
        PullUnderWay(self.clone())
    }

    /// The pull under way got this far.
    pub fn update(&self, line: &str) {
        if let Ok(mut p) = self.0.lock() {
            *p = Some(line.to_string());
        }
    }
}

/// Clears the pull's progress when the pull ends, however it ends.
pub struct PullUnderWay(PullProgress);

impl Drop for PullUnderWay {
    fn drop(&mut self) {
        if let Ok(mut p) = self.0 .0.lock() {
            *p = None;
        }
    }
}

/// Makes sure the Lucid-owned sandbox network `name` exists: a bridge network without
/// inter-container traffic, labelled `lucid.managed=true`. An existing network of that name is
/// reused only if it is such a network; anything else is refused with an explanation.
pub async fn ensure_network(docker: &Docker, name: &str) -> Result<(), SandboxError> {
    for _ in 0..2 {
        match docker.inspect_network(name, None).await {
            Ok(network) => return check_owned_network(name, &network),
            Err(e) if is_status(&e, 404) => {}
            Err(e) => {
                return Err(SandboxError::Container(format!(
                    "cannot inspect the sandbox network {name}: {e}"
                )))
            }
        }
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            options: Some(HashMap::from([(
                NETWORK_ICC_OPTION.to_string(),
                "false".to_string(),
            )])),
            labels: Some(HashMap::from([(
                LABEL_MANAGED.to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        };
        match docker.create_network(request).await {
            Ok(_) => {
                tracing::info!(network = name, "created the sandbox network");
                return Ok(());
            }
            // Created concurrently (another session or engine): inspect it again.
            Err(e) if is_status(&e, 409) => continue,
            Err(e) => {
                return Err(SandboxError::Container(format!(
                    "cannot create the sandbox network {name}: {e}"
                )))
            }
        }
    }
    Err(SandboxError::Container(format!(
        "the sandbox network {name} could not be created or found"
    )))
}

/// What `lucid doctor` finds about the network sandboxes would join (read-only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkCheck {
    /// It exists and is fit for sandboxes.
    Ready(String),
    /// Lucid's own network does not exist yet: it is created on first use.
    CreatedOnFirstUse(String),
    /// `DOCKER_NETWORK=host`: sandboxes share this machine's network stack.
    HostNetwork,
    /// It cannot be used; the reason says what to do.
    Unusable(String),
}

/// Checks the network sandboxes would join, changing nothing: `DOCKER_NETWORK` must exist;
/// Lucid's own network must be absent (created on first use) or a bridge network without
/// inter-container traffic.
pub async fn check_network(docker: &Docker, config: &SandboxConfig) -> NetworkCheck {
    let (name, owned) = match &config.network {
        Some(name) if name == "host" => return NetworkCheck::HostNetwork,
        // Another container's network stack: it exists only while that container runs.
        Some(name) if name.starts_with("container:") => return NetworkCheck::Ready(name.clone()),
        Some(name) => (name.as_str(), false),
        None => (config.owned_network.as_str(), true),
    };
    match docker.inspect_network(name, None).await {
        Ok(network) if owned => match check_owned_network(name, &network) {
            Ok(()) => NetworkCheck::Ready(name.to_string()),
            Err(e) => NetworkCheck::Unusable(e.to_string()),
        },
        Ok(_) => NetworkCheck::Ready(name.to_string()),
        Err(e) if is_status(&e, 404) && owned => NetworkCheck::CreatedOnFirstUse(name.to_string()),
        Err(e) if is_status(&e, 404) => NetworkCheck::Unusable(format!(
            "the network {name} (DOCKER_NETWORK) does not exist: create it (docker network \
             create {name}) or unset DOCKER_NETWORK to let Lucid use its own"
        )),
        Err(e) => NetworkCheck::Unusable(format!("cannot inspect the network {name}: {e}")),
    }
}

fn check_owned_network(
    name: &str,
    network: &bollard::models::NetworkInspect,
) -> Result<(), SandboxError> {
    let bridge = network.driver.as_deref() == Some("bridge");
    let no_icc = network
        .options
        .as_ref()
        .and_then(|o| o.get(NETWORK_ICC_OPTION))
        .is_some_and(|v| v == "false");
    if bridge && no_icc {
        Ok(())
    } else {
        Err(SandboxError::Container(format!(
            "the network {name} exists but is not a bridge network with {NETWORK_ICC_OPTION}=false, \
             so sandboxes could reach each other; remove it (docker network rm {name}) to let \
             Lucid create it, or choose a network with DOCKER_NETWORK"
        )))
    }
}

/// The engine's Docker sandboxes.
#[derive(Clone)]
pub struct DockerSandboxes {
    docker: Docker,
    config: SandboxConfig,
    instance_id: String,
    workspace_base: Option<PathBuf>,
    active: Registry,
    /// The Lucid-owned network once it is known to exist.
    owned_network_ready: Arc<tokio::sync::Mutex<bool>>,
    pull: PullProgress,
}

impl DockerSandboxes {
    /// Connects to the daemon (`DOCKER_HOST`: `unix://` or `tcp://`, e.g. a socket proxy; else
    /// the local socket) and negotiates the API version.
    pub async fn connect(
        config: &SandboxConfig,
        instance_id: String,
    ) -> Result<Self, SandboxError> {
        if !valid_instance_id(&instance_id) {
            return Err(SandboxError::DockerUnavailable(format!(
                "invalid engine instance id {instance_id:?}"
            )));
        }
        let docker = Docker::connect_with_defaults()
            .map_err(|e| SandboxError::DockerUnavailable(e.to_string()))?;
        let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
            .await
            .map_err(|_| {
                SandboxError::DockerUnavailable("the daemon did not answer within 10 s".into())
            })?
            .map_err(|e| SandboxError::DockerUnavailable(e.to_string()))?;
        Ok(DockerSandboxes {
            docker,
            config: config.clone(),
            instance_id,
            workspace_base: None,
            active: Arc::new(StdMutex::new(HashMap::new())),
            owned_network_ready: Arc::new(tokio::sync::Mutex::new(false)),
            pull: PullProgress::default(),
        })
    }

    /// The user files in the workspace belong to: `SANDBOX_USER`, else (on Linux) the
    /// engine's user. `None` elsewhere: Docker Desktop maps ownership itself.
    pub fn file_owner(&self) -> Option<(u32, u32)> {
        self.config.run_as.or_else(|| {
            if cfg!(target_os = "linux") {
                Some(engine_user())
            } else {
                None
            }
        })
    }

    /// The `uid:gid` sandbox processes run as; `None` = the image's own user.
    pub fn process_user(&self) -> Option<(u32, u32)> {
        if self.config.run_as_root {
            Some((0, 0))
        } else {
            self.file_owner()
        }
    }

    /// The network sandboxes join: `DOCKER_NETWORK`, else Lucid's own network (created on
    /// first use, see [`ensure_network`]).
    pub async fn network(&self) -> Result<String, SandboxError> {
        if let Some(network) = &self.config.network {
            return Ok(network.clone());
        }
        let mut ready = self.owned_network_ready.lock().await;
        if !*ready {
            ensure_network(&self.docker, &self.config.owned_network).await?;
            *ready = true;
        }
        Ok(self.config.owned_network.clone())
    }

    /// The engine-side root of all workspaces (`WORKSPACE_BASE_PATH`). Needed when
    /// `host_workspace_path` is set: a workspace `<base>/<rel>` is mounted from `<host>/<rel>`.
    pub fn with_workspace_base(mut self, base: impl Into<PathBuf>) -> Self {
        self.workspace_base = Some(base.into());
        self
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The underlying client.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Whether the daemon answers (at most a few seconds, never blocks a thread).
    pub async fn ping(&self) -> bool {
        matches!(
            tokio::time::timeout(PING_TIMEOUT, self.docker.ping()).await,
            Ok(Ok(_))
        )
    }

    /// The latest progress of the sandbox image pull under way, if any.
    pub fn pull_progress(&self) -> Option<String> {
        self.pull.current()
    }

    /// Makes sure the sandbox image is present, pulling it (with progress messages) if not.
    pub async fn ensure_image(
        &self,
        progress: impl Fn(String) + Send + Sync,
    ) -> Result<(), SandboxError> {
        let image = &self.config.image;
        let image_error = |reason: String| SandboxError::Image {
            image: image.clone(),
            reason,
        };
        if image.trim().is_empty() {
            return Err(image_error("no image name configured".into()));
        }
        if self.docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        let reference = reference_with_tag(image);
        let first = format!("Pulling sandbox image {reference}");
        let under_way = self.pull.begin(&first);
        progress(first);
        let options = CreateImageOptionsBuilder::default()
            .from_image(&reference)
            .build();
        let mut pull = self.docker.create_image(Some(options), None, None);
        loop {
            let next = tokio::time::timeout(PULL_STALL_TIMEOUT, pull.next())
                .await
                .map_err(|_| image_error("the pull made no progress for 120 s".into()))?;
            match next {
                None => break,
                Some(Ok(info)) => {
                    let mut line = info.status.unwrap_or_default();
                    if let Some(id) = info.id {
                        line = format!("{id}: {line}");
                    }
                    if let Some(bollard::models::ProgressDetail {
                        current: Some(current),
                        total: Some(total),
                    }) = info.progress_detail
                    {
                        line = format!("{line} {current}/{total} bytes");
                    }
                    if !line.trim().is_empty() {
                        self.pull.update(&line);
                        progress(line);
                    }
                }
                Some(Err(e)) => return Err(image_error(format!("pull failed: {e}"))),
            }
        }
        drop(under_way);
        self.docker
            .inspect_image(image)
            .await
            .map(|_| ())
            .map_err(|e| image_error(format!("not present after the pull: {e}")))
    }

    /// Where the workspace is mounted from, as the daemon's host sees it.
    fn bind_source(&self, workspace_dir: &Path) -> Result<PathBuf, SandboxError> {
        let workspace = workspace_dir.canonicalize()?;
        let Some(host_root) = &self.config.host_workspace_path else {
            return Ok(workspace);
        };
        let base = self.workspace_base.as_ref().ok_or_else(|| {
            SandboxError::Container(
                "HOST_WORKSPACE_PATH is set but the workspace base path was not given".into(),
            )
        })?;
        let base = base.canonicalize()?;
        let relative = workspace.strip_prefix(&base).map_err(|_| {
            SandboxError::Container(format!(
                "the workspace {} is not under the workspace base {}",
                workspace.display(),
                base.display()
            ))
        })?;
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(SandboxError::Container(format!(
                "unexpected workspace path {}",
                workspace.display()
            )));
        }
        Ok(host_root.join(relative))
    }

    fn container_body(
        &self,
        session_id: &str,
        user_id: &str,
        bind_source: &Path,
        network: &str,
    ) -> ContainerCreateBody {
        let labels = HashMap::from([
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_SESSION.to_string(), session_id.to_string()),
            (LABEL_USER.to_string(), user_id.to_string()),
            (LABEL_INSTANCE.to_string(), self.instance_id.clone()),
        ]);
        let c = &self.config;
        let user = self.process_user();
        let env = match user {
            Some((uid, _)) if uid != 0 => vec![format!("HOME={SANDBOX_HOME}")],
            _ => Vec::new(),
        };
        ContainerCreateBody {
            image: Some(c.image.clone()),
            cmd: Some(KEEP_ALIVE.iter().map(|s| s.to_string()).collect()),
            working_dir: Some(c.mount_path.clone()),
            user: user.map(|(uid, gid)| format!("{uid}:{gid}")),
            labels: Some(labels),
            env: Some(env),
            tty: Some(false),
            open_stdin: Some(false),
            host_config: Some(HostConfig {
                binds: Some(vec![format!(
                    "{}:{}:rw",
                    bind_source.display(),
                    c.mount_path
                )]),
                memory: Some(c.memory_bytes),
                memory_swap: Some(c.memory_bytes),
                nano_cpus: Some((c.cpu_limit * 1e9).round() as i64),
                pids_limit: (c.pids_limit > 0).then_some(c.pids_limit),
                cap_drop: Some(vec!["ALL".to_string()]),
                cap_add: Some(KEPT_CAPABILITIES.iter().map(|s| s.to_string()).collect()),
                security_opt: Some(vec!["no-new-privileges".to_string()]),
                init: Some(true),
                network_mode: Some(network.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Creates and starts the container of a session and its shell.
    ///
    /// The work runs in a task of its own that always completes: if this future is dropped
    /// (the session was destroyed, the caller timed out), the sandbox it produces is released
    /// at once instead of leaving a container behind.
    pub async fn create(
        &self,
        session_id: &str,
        user_id: &str,
        workspace_dir: &Path,
    ) -> Result<Arc<DockerSandbox>, SandboxError> {
        let handoff = Arc::new(Handoff::default());
        let task = {
            let this = self.clone();
            let handoff = Arc::clone(&handoff);
            let (session_id, user_id) = (session_id.to_string(), user_id.to_string());
            let workspace_dir = workspace_dir.to_path_buf();
            async move {
                let result = this.create_now(&session_id, &user_id, &workspace_dir).await;
                handoff.deliver(result).await;
            }
        };
        tokio::spawn(task);
        let mut claim = Claim {
            handoff,
            taken: false,
        };
        claim.wait().await
    }

    async fn create_now(
        &self,
        session_id: &str,
        user_id: &str,
        workspace_dir: &Path,
    ) -> Result<Arc<DockerSandbox>, SandboxError> {
        let name = format!("{}{session_id}", self.config.container_prefix);
        if session_id.is_empty() || !valid_container_name(&name) {
            return Err(SandboxError::Container(format!(
                "invalid container name {name:?} (session ids may only use letters, digits, '_', '.', '-')"
            )));
        }
        std::fs::create_dir_all(workspace_dir).map_err(|e| {
            SandboxError::Io(io::Error::new(
                e.kind(),
                format!(
                    "cannot create the workspace {}: {e}",
                    workspace_dir.display()
                ),
            ))
        })?;
        let source = self.bind_source(workspace_dir)?;
        let network = self.network().await?;
        self.hand_over_workspace(workspace_dir).await;
        let body = self.container_body(session_id, user_id, &source, &network);

        let mut retried = false;
        let id = loop {
            let created = match self.create_container(&name, body.clone()).await {
                Err(e) if is_status(&e, 409) && self.remove_stale(&name).await => {
                    self.create_container(&name, body.clone()).await
                }
                other => other,
            };
            let failure = match created {
                Ok(id) => match self.docker.start_container(&id, None).await {
                    Ok(()) => break id,
                    Err(e) => {
                        self.force_remove(&id).await;
                        (e, "start")
                    }
                },
                Err(e) => (e, "create"),
            };
            // Lucid's network was removed while the engine ran (the daemon says so at create
            // or at start): create it again, once.
            if !retried && is_status(&failure.0, 404) && self.config.network.is_none() {
                retried = true;
                *self.owned_network_ready.lock().await = false;
                self.network().await?;
                continue;
            }
            return Err(SandboxError::Container(format!(
                "cannot {} {name}: {}",
                failure.1, failure.0
            )));
        };
        if self.process_user().is_some_and(|(uid, _)| uid != 0) {
            // A writable HOME for tools that need one, owned by the sandbox user.
            let mkdir = vec!["mkdir".into(), "-p".into(), SANDBOX_HOME.into()];
            match run_exec(&self.docker, &id, mkdir).await {
                Ok((_, Some(0))) => {}
                Ok((output, code)) => {
                    tracing::warn!(container = %name, ?code, output = %output.trim(),
                    "could not create the sandbox HOME")
                }
                Err(e) => tracing::warn!(container = %name, error = %e,
                    "could not create the sandbox HOME"),
            }
        }

        let host: Arc<dyn ShellHost> = Arc::new(DockerShellHost::new(
            self.docker.clone(),
            id.clone(),
            self.config.mount_path.clone(),
        ));
        let shell = match PersistentShell::start(host.clone(), &self.config.mount_path).await {
            Ok(shell) => shell,
            Err(e) => {
                tracing::warn!(container = %name, error = %e,
                    "persistent shell unavailable; running one exec per command");
                let shell = PersistentShell::per_command(host, &self.config.mount_path);
                if let Err(probe) = shell.exec("true", Duration::from_secs(20)).await {
                    self.force_remove(&id).await;
                    return Err(SandboxError::Container(format!(
                        "no shell can run in {name}: {e}; {probe}"
                    )));
                }
                shell
            }
        };

        let sandbox = Arc::new(DockerSandbox {
            docker: self.docker.clone(),
            container_id: id.clone(),
            name,
            session_id: session_id.to_string(),
            mount_path: self.config.mount_path.clone(),
            shell,
            closed: AtomicBool::new(false),
            removed: AtomicBool::new(false),
            registry: self.active.clone(),
            hand_back: self
                .file_owner()
                .filter(|_| self.config.run_as_root)
                .map(|(uid, gid)| (workspace_dir.to_path_buf(), uid, gid)),
        });
        if let Ok(mut active) = self.active.lock() {
            active.insert(id, Arc::downgrade(&sandbox));
        }
        tracing::info!(container = %sandbox.name, session = session_id,
            mode = ?sandbox.shell_mode(), "sandbox started");
        Ok(sandbox)
    }

    /// When the engine runs as root and files should belong to another user (`SANDBOX_USER`),
    /// gives the workspace to that user first so the sandbox can write it.
    pub async fn hand_over_workspace(&self, workspace_dir: &Path) {
        let Some((uid, gid)) = self.file_owner() else {
            return;
        };
        if engine_user().0 != 0 || (uid, gid) == engine_user() {
            return;
        }
        let dir = workspace_dir.to_path_buf();
        match tokio::task::spawn_blocking(move || chown_tree(&dir, uid, gid)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not give the workspace to the sandbox user")
            }
            Err(e) => tracing::warn!(error = %e, "workspace ownership task failed"),
        }
    }

    async fn create_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<String, DockerError> {
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        Ok(self.docker.create_container(Some(options), body).await?.id)
    }

    /// Removes a container with this name if a previous run of this instance left it behind.
    async fn remove_stale(&self, name: &str) -> bool {
        let Ok(info) = self.docker.inspect_container(name, None).await else {
            return false;
        };
        let ours = info
            .config
            .and_then(|c| c.labels)
            .and_then(|labels| labels.get(LABEL_INSTANCE).cloned())
            .is_some_and(|owner| owner == self.instance_id);
        let id = info.id.unwrap_or_default();
        let live = self
            .active
            .lock()
            .map(|active| active.get(&id).is_some_and(|s| s.strong_count() > 0))
            .unwrap_or(true);
        if !ours || live || id.is_empty() {
            return false;
        }
        let removed = self.force_remove(&id).await;
        if removed {
            if let Ok(mut active) = self.active.lock() {
                active.remove(&id);
            }
        }
        removed
    }

    async fn force_remove(&self, id: &str) -> bool {
        remove_container(&self.docker, id).await.is_ok()
    }

    /// Removes the containers of this engine instance that no live sandbox owns (left by a
    /// crash or a kill, or by a [`DockerSandbox`] dropped without [`Sandbox::shutdown`]). Containers of other instances are never touched. Returns how many
    /// were removed.
    pub async fn cleanup_orphans(&self) -> usize {
        let filters = HashMap::from([(
            "label",
            vec![
                format!("{LABEL_MANAGED}=true"),
                format!("{LABEL_INSTANCE}={}", self.instance_id),
            ],
        )]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let containers = match self.docker.list_containers(Some(options)).await {
            Ok(containers) => containers,
            Err(e) => {
                tracing::warn!(error = %e, "could not list sandbox containers");
                return 0;
            }
        };
        // Sandboxes dropped without a shutdown no longer own their container.
        let live: Vec<String> = self
            .active
            .lock()
            .map(|active| {
                active
                    .iter()
                    .filter(|(_, sandbox)| sandbox.strong_count() > 0)
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default();
        let orphans = containers
            .into_iter()
            .filter_map(|c| c.id)
            .filter(|id| !live.contains(id));
        let removed = futures::future::join_all(orphans.map(|id| async move {
            let ok = self.force_remove(&id).await;
            if ok {
                if let Ok(mut active) = self.active.lock() {
                    active.remove(&id);
                }
            } else {
                tracing::warn!(container = %id, "could not remove an orphaned sandbox");
            }
            ok
        }))
        .await;
        let count = removed.into_iter().filter(|ok| *ok).count();
        if count > 0 {
            tracing::info!(count, "removed orphaned sandbox containers");
        }
        count
    }

    /// Shuts down every sandbox this manager created. Returns how many were removed.
    pub async fn shutdown_all(&self) -> usize {
        let entries: Vec<(String, Weak<DockerSandbox>)> = self
            .active
            .lock()
            .map(|active| active.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let results = futures::future::join_all(entries.into_iter().map(|(id, weak)| async move {
            match weak.upgrade() {
                Some(sandbox) => sandbox.shutdown().await.is_ok(),
                None => {
                    let ok = self.force_remove(&id).await;
                    if ok {
                        if let Ok(mut active) = self.active.lock() {
                            active.remove(&id);
                        }
                    }
                    ok
                }
            }
        }))
        .await;
        results.into_iter().filter(|ok| *ok).count()
    }

    /// How many containers this manager created and has not removed yet.
    pub fn active_count(&self) -> usize {
        self.active.lock().map(|active| active.len()).unwrap_or(0)
    }
}

/// A sandbox being created in its own task, on its way to the caller that asked for it.
#[derive(Default)]
struct Handoff {
    state: StdMutex<HandoffState>,
    ready: tokio::sync::Notify,
}

#[derive(Default)]
enum HandoffState {
    #[default]
    Pending,
    Ready(Result<Arc<DockerSandbox>, SandboxError>),
    /// The caller took the result.
    Taken,
    /// The caller went away: whatever arrives is released.
    Abandoned,
}

impl Handoff {
    /// Called by the creating task: hands the result over, or releases the sandbox if the
    /// caller already gave up. The state is decided under one lock, so a sandbox is either
    /// taken by the caller or released here, never lost.
    async fn deliver(&self, result: Result<Arc<DockerSandbox>, SandboxError>) {
        let orphan = {
            let mut state = self.state.lock().expect("handoff poisoned");
            match *state {
                HandoffState::Abandoned => Some(result),
                _ => {
                    *state = HandoffState::Ready(result);
                    None
                }
            }
        };
        match orphan {
            Some(Ok(sandbox)) => {
                tracing::info!(container = %sandbox.name, "releasing a sandbox nobody waits for");
                if let Err(e) = sandbox.shutdown().await {
                    tracing::warn!(container = %sandbox.name, error = %e, "release failed");
                }
            }
            Some(Err(_)) => {}
            None => self.ready.notify_one(),
        }
    }
}

/// The caller's side of a [`Handoff`]; dropping it before taking the result abandons it.
struct Claim {
    handoff: Arc<Handoff>,
    taken: bool,
}

impl Claim {
    async fn wait(&mut self) -> Result<Arc<DockerSandbox>, SandboxError> {
        loop {
            {
                let mut state = self.handoff.state.lock().expect("handoff poisoned");
                if matches!(*state, HandoffState::Ready(_)) {
                    let HandoffState::Ready(result) =
                        std::mem::replace(&mut *state, HandoffState::Taken)
                    else {
                        unreachable!()
                    };
                    self.taken = true;
                    return result;
                }
            }
            // `notify_one` keeps a permit when nobody waits yet: no wake-up is lost.
            self.handoff.ready.notified().await;
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        let ready = {
            let Ok(mut state) = self.handoff.state.lock() else {
                return;
            };
            std::mem::replace(&mut *state, HandoffState::Abandoned)
        };
        // Arrived after the caller's last look: release it here.
        if let HandoffState::Ready(Ok(sandbox)) = ready {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(e) = sandbox.shutdown().await {
                        tracing::warn!(container = %sandbox.name, error = %e, "release failed");
                    }
                });
            }
        }
    }
}

/// Removes a container, killing it if needed; a container already gone is not an error.
async fn remove_container(docker: &Docker, id: &str) -> Result<(), DockerError> {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(options)).await {
        Err(e) if !is_status(&e, 404) => Err(e),
        _ => Ok(()),
    }
}

/// Runs a command in a fresh exec and waits for it; returns its output and exit code.
async fn run_exec(
    docker: &Docker,
    container_id: &str,
    cmd: Vec<String>,
) -> Result<(String, Option<i64>), DockerError> {
    let exec = docker
        .create_exec(
            container_id,
            CreateExecOptions {
                cmd: Some(cmd),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await?;
    let mut text = Vec::new();
    if let StartExecResults::Attached { mut output, .. } = docker.start_exec(&exec.id, None).await?
    {
        while let Some(chunk) = output.next().await {
            text.extend_from_slice(&chunk?.into_bytes());
        }
    }
    let code = docker.inspect_exec(&exec.id).await?.exit_code;
    Ok((String::from_utf8_lossy(&text).into_owned(), code))
}

/// Runs shells in a running container through attached execs.
pub struct DockerShellHost {
    docker: Docker,
    container_id: String,
    workdir: String,
}

impl DockerShellHost {
    /// Shells will start in `workdir` (the workspace mount) of `container_id`.
    pub fn new(
        docker: Docker,
        container_id: impl Into<String>,
        workdir: impl Into<String>,
    ) -> Self {
        DockerShellHost {
            docker,
            container_id: container_id.into(),
            workdir: workdir.into(),
        }
    }

    async fn kill_session(&self, shell_pid: u32) -> Result<(), SandboxError> {
        if shell_pid <= 1 {
            return Err(SandboxError::Container(format!(
                "refusing to kill pid {shell_pid}"
            )));
        }
        let cmd = vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            KILL_SCRIPT.to_string(),
            "sh".to_string(),
            shell_pid.to_string(),
        ];
        run_exec(&self.docker, &self.container_id, cmd)
            .await
            .map(|_| ())
            .map_err(|e| SandboxError::Container(format!("cannot kill processes: {e}")))
    }
}

#[async_trait]
impl ShellHost for DockerShellHost {
    async fn launch(&self, launch: ShellLaunch) -> Result<ShellChannels, SandboxError> {
        let (cmd, attach_stdin) = match launch {
            ShellLaunch::Persistent => (vec!["/bin/sh".to_string()], true),
            ShellLaunch::Script(script) => {
                (vec!["/bin/sh".to_string(), "-c".to_string(), script], false)
            }
        };
        let exec = self
            .docker
            .create_exec(
                &self.container_id,
                CreateExecOptions {
                    cmd: Some(cmd),
                    attach_stdin: Some(attach_stdin),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(false),
                    working_dir: Some(self.workdir.clone()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| SandboxError::ShellGone(format!("cannot create the shell exec: {e}")))?;
        let started = self
            .docker
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: Some(64 * 1024),
                }),
            )
            .await
            .map_err(|e| SandboxError::ShellGone(format!("cannot start the shell exec: {e}")))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(SandboxError::ShellGone(
                "the shell exec is not attached".into(),
            ));
        };
        let output = output
            .map(|item| item.map(LogOutput::into_bytes).map_err(io::Error::other))
            .boxed();
        let docker = self.docker.clone();
        let exec_id = exec.id;
        let exit_status = Box::pin(async move {
            for _ in 0..40 {
                let info = docker.inspect_exec(&exec_id).await.ok()?;
                if info.running != Some(true) {
                    return info.exit_code;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            None
        });
        Ok(ShellChannels {
            input: Some(input),
            output,
            exit_status,
        })
    }

    async fn kill_shell(&self, shell_pid: u32) -> Result<(), SandboxError> {
        self.kill_session(shell_pid).await
    }
}

/// One session's container.
pub struct DockerSandbox {
    docker: Docker,
    container_id: String,
    name: String,
    session_id: String,
    mount_path: String,
    shell: PersistentShell,
    closed: AtomicBool,
    removed: AtomicBool,
    registry: Registry,
    /// With `SANDBOX_RUN_AS_ROOT`: the workspace and the user it is handed back to on release.
    hand_back: Option<(PathBuf, u32, u32)>,
}

impl DockerSandbox {
    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    pub fn container_name(&self) -> &str {
        &self.name
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Whether commands go through the persistent shell or the one-exec-per-command fallback.
    pub fn shell_mode(&self) -> ShellMode {
        self.shell.mode()
    }
}

#[async_trait]
impl Sandbox for DockerSandbox {
    async fn exec(&self, command: &str, timeout: Duration) -> Result<ExecOutput, SandboxError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(SandboxError::ShellGone("the sandbox was shut down".into()));
        }
        self.shell.exec(command, timeout).await
    }

    async fn interrupt(&self) {
        self.shell.interrupt();
    }

    fn workspace_path(&self) -> &str {
        &self.mount_path
    }

    fn kind(&self) -> SandboxKind {
        SandboxKind::Docker
    }

    async fn shutdown(&self) -> Result<(), SandboxError> {
        self.closed.store(true, Ordering::SeqCst);
        if self.removed.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.shell.close().await;
        // Root wrote the workspace: a first hand-back from inside while the container still
        // runs (this works even when the engine itself is not root; `-h` and the default
        // `-P` of `-R` never follow a symlink, and inside the container a symlink cannot
        // reach the host anyway). The host-side pass after removal catches the rest.
        if let Some((_, uid, gid)) = self.hand_back.as_ref().filter(|h| (h.1, h.2) != (0, 0)) {
            let cmd = vec![
                "chown".to_string(),
                "-R".to_string(),
                "-h".to_string(),
                format!("{uid}:{gid}"),
                self.mount_path.clone(),
            ];
            let chown = run_exec(&self.docker, &self.container_id, cmd);
            match tokio::time::timeout(HAND_BACK_TIMEOUT, chown).await {
                Ok(Ok((_, Some(0)))) => {}
                Ok(Ok((output, code))) => tracing::debug!(container = %self.name, ?code,
                    output = %output.trim(), "in-container hand-back incomplete"),
                Ok(Err(e)) => tracing::debug!(container = %self.name, error = %e,
                    "in-container hand-back failed"),
                Err(_) => {
                    tracing::debug!(container = %self.name, "in-container hand-back timed out")
                }
            }
        }
        let stop = StopContainerOptionsBuilder::default()
            .t(STOP_TIMEOUT_SECS)
            .build();
        if let Err(e) = self
            .docker
            .stop_container(&self.container_id, Some(stop))
            .await
        {
            if !is_status(&e, 304) && !is_status(&e, 404) {
                tracing::debug!(container = %self.name, error = %e, "stop failed; removing anyway");
            }
        }
        remove_container(&self.docker, &self.container_id)
            .await
            .map_err(|e| SandboxError::Container(format!("cannot remove {}: {e}", self.name)))?;
        self.removed.store(true, Ordering::SeqCst);
        if let Ok(mut active) = self.registry.lock() {
            active.remove(&self.container_id);
        }
        tracing::info!(container = %self.name, "sandbox removed");
        // Root wrote the workspace: give it back now that nothing runs in it any more (needs
        // the engine to be root; otherwise the in-container pass above did the work).
        if let Some((dir, uid, gid)) = self.hand_back.clone() {
            if (uid, gid) != (0, 0) && engine_user().0 == 0 {
                match tokio::task::spawn_blocking(move || chown_tree(&dir, uid, gid)).await {
                    Ok(Ok(n)) => {
                        tracing::debug!(container = %self.name, entries = n, "workspace handed back")
                    }
                    Ok(Err(e)) => tracing::warn!(container = %self.name, error = %e,
                        "could not hand the workspace back to its user"),
                    Err(e) => tracing::warn!(error = %e, "workspace ownership task failed"),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pull_progress_is_shown_while_the_pull_is_under_way_and_cleared_however_it_ends() {
        let pull = super::PullProgress::default();
        assert_eq!(pull.current(), None);
        {
            let _under_way = pull.begin("Pulling sandbox image img:1");
            assert_eq!(
                pull.current().as_deref(),
                Some("Pulling sandbox image img:1")
            );
            pull.update("abc: Downloading 10/100 bytes");
            assert_eq!(
                pull.current().as_deref(),
                Some("abc: Downloading 10/100 bytes")
            );
            // An error return drops the guard like a finished pull.
        }
        assert_eq!(pull.current(), None);
    }

    use super::*;

    #[test]
    fn instance_id_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = load_or_create_instance_id(&data).unwrap();
        assert!(valid_instance_id(&first));
        assert_eq!(load_or_create_instance_id(&data).unwrap(), first);
        std::fs::write(data.join(INSTANCE_ID_FILE), "bad id with spaces\n").unwrap();
        let replaced = load_or_create_instance_id(&data).unwrap();
        assert_ne!(replaced, first);
        assert!(valid_instance_id(&replaced));
    }

    #[test]
    fn container_names_and_references() {
        assert!(valid_container_name("lucid-sandbox-abc_1.2"));
        assert!(!valid_container_name("lucid-sandbox-a/b"));
        assert!(!valid_container_name("-x"));
        assert!(!valid_container_name(""));
        assert_eq!(reference_with_tag("busybox"), "busybox:latest");
        assert_eq!(reference_with_tag("a/b:1"), "a/b:1");
        assert_eq!(
            reference_with_tag("127.0.0.1:5000/x"),
            "127.0.0.1:5000/x:latest"
        );
        assert_eq!(reference_with_tag("x@sha256:abc"), "x@sha256:abc");
    }
}
