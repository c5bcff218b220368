//! The engine facade: built once from a [`Config`], shared by the front doors. Every call takes
//! the authenticated [`User`]; ownership is checked here (or in the services), never only in a
//! front door.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::auth::{AuthError, Authenticator, Credentials, SupabaseTokenVerifier, User};
use crate::chats::Chats;
use crate::config::Config;
use crate::error::{EngineError, EngineResult, ErrorKind};
use crate::files::{self, FileContent, FileTree, TreeLimits};
use crate::integrations::{CreatePrRequest, CreatePrResponse, Integrations};
use crate::sessions::{SandboxBackend, SessionDeps, Sessions};
use crate::store::{SqliteStore, Store, SupabaseStore};

/// The user of local mode (no accounts): `lucid run` and `lucid serve --print-token` act as it.
pub const LOCAL_USER_ID: &str = "local";
/// The generated token encryption key of local mode, in the data directory.
pub const ENCRYPTION_KEY_FILE: &str = "encryption-key";
/// Largest file the files API returns.
pub const FILE_READ_MAX_BYTES: u64 = 1024 * 1024;

/// `GET /` service information, in the original's shape plus Lucid's own fields.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, specta::Type)]
pub struct ServiceInfo {
    pub service: String,
    pub version: String,
    pub status: String,
    /// Whether a real agent is available (the original reported its OpenHands SDK here).
    pub openhands_available: bool,
    pub docker_available: bool,
    pub active_sandboxes: usize,
    pub active_sessions: usize,
    pub llm_model: String,
    /// `local` or `supabase`.
    pub mode: String,
    /// `docker`, `local` (no isolation) or `unavailable`.
    pub sandbox: String,
    pub lucid_version: String,
}

/// One LLM provider as the engine sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct ProviderStatus {
    /// `anthropic`, `google` or `openai`.
    pub name: String,
    pub configured: bool,
    /// The model a session gets when it names none (configured providers only).
    pub model: Option<String>,
    /// Why it cannot be used and what to set (unconfigured providers only).
    pub problem: Option<String>,
}

/// Something wrong with the setup, in words, with the fix.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, specta::Type)]
pub struct StatusProblem {
    pub what: String,
    pub fix: String,
}

/// The engine's state and setup, for a status page (`GET /api/v1/status`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct EngineStatus {
    pub version: String,
    /// `local` or `supabase`.
    pub mode: String,
    /// `docker`, `local` (no isolation) or `unavailable`.
    pub sandbox: String,
    pub docker_available: bool,
    /// The Docker daemon's version, when it answers.
    pub docker_version: Option<String>,
    pub sandbox_image: String,
    /// Whether the sandbox image is present locally (Docker only).
    pub sandbox_image_present: Option<bool>,
    /// Sandbox network (`None` = the daemon's default).
    pub sandbox_network: Option<String>,
    /// The latest progress line of a sandbox image pull under way (Docker only).
    pub image_pull: Option<String>,
    pub default_provider: String,
    pub providers: Vec<ProviderStatus>,
    /// Whether GitHub/GitLab tokens can be saved (`ENCRYPTION_KEY` set).
    pub integrations_enabled: bool,
    pub active_sessions: usize,
    pub problems: Vec<StatusProblem>,
}

/// Issues a bearer token for local mode (`lucid serve --print-token`) without starting an
/// engine: reads (or creates) the local secret.
pub fn issue_local_token(config: &Config, user_id: &str, ttl: Duration) -> EngineResult<String> {
    if !config.is_local_mode() {
        return Err(EngineError::bad_request(
            "Tokens are issued by Supabase Auth in Supabase mode; sign in instead.",
        ));
    }
    if !crate::workspace::is_safe_id(user_id) {
        return Err(EngineError::bad_request(
            "User ids may contain only letters, digits, '-' and '_'.",
        ));
    }
    let secret = local_jwt_secret(config)?;
    Ok(crate::auth::issue_token(user_id, secret.as_bytes(), ttl))
}

fn local_jwt_secret(config: &Config) -> EngineResult<String> {
    match &config.local_jwt_secret {
        Some(secret) => Ok(secret.clone()),
        None => crate::auth::load_or_create_local_secret(&config.data_dir)
            .map_err(|e| EngineError::unavailable(format!("cannot store the local secret: {e}"))),
    }
}

pub struct Engine {
    config: Config,
    auth: Authenticator,
    store: Arc<dyn Store>,
    chats: Chats,
    integrations: Arc<Integrations>,
    sessions: Sessions,
    backend: Arc<SandboxBackend>,
    pull_requests: crate::pull_request::PullRequests,
    /// Cached Docker availability for `GET /` (refreshed in the background).
    docker_up: Arc<Mutex<(bool, std::time::Instant)>>,
    /// Supabase mode: sign-in with a provider through Supabase Auth.
    sign_in: Option<crate::auth::SignIn>,
    /// Shared lock on `<data_dir>/engine.lock`, held while the engine lives.
    _data_lock: std::fs::File,
}

/// The lock file telling engines on one data directory about each other.
const DATA_LOCK_FILE: &str = "engine.lock";

/// Locks the data directory for start-up. Returns the lock file and whether this engine is
/// alone: then it holds the lock exclusively, and everything marked active or running for
/// this instance was left by a previous run. Otherwise it holds a shared lock beside the
/// engines already running. A killed process's lock is released by the OS.
async fn lock_data_dir(data_dir: &std::path::Path) -> EngineResult<(std::fs::File, bool)> {
    let path = data_dir.join(DATA_LOCK_FILE);
    let lock_error = |e: std::io::Error| {
        EngineError::unavailable(format!("cannot lock {}: {e}", path.display()))
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(lock_error)?;
    match file.try_lock() {
        Ok(()) => Ok((file, true)),
        Err(std::fs::TryLockError::WouldBlock) => {
            // Waits at most for another engine's own start-up recovery.
            let file = tokio::task::spawn_blocking(move || file.lock_shared().map(|_| file))
                .await
                .map_err(|e| EngineError::internal(format!("lock task failed: {e}")))?
                .map_err(lock_error)?;
            Ok((file, false))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(lock_error(e)),
    }
}

/// After start-up recovery, trades the exclusive lock for a shared one so other engines can
/// start beside this one.
async fn share_data_lock(file: std::fs::File, alone: bool) -> EngineResult<std::fs::File> {
    if !alone {
        return Ok(file);
    }
    tokio::task::spawn_blocking(move || {
        file.unlock()?;
        file.lock_shared()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(|e| EngineError::internal(format!("lock task failed: {e}")))?
    .map_err(|e| EngineError::unavailable(format!("cannot lock the data directory: {e}")))
}

impl Engine {
    /// Opens the store, reaps what a crashed previous run left, connects to Docker.
    pub async fn start(config: Config) -> EngineResult<Arc<Engine>> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            EngineError::unavailable(format!(
                "cannot create the data directory {}: {e}",
                config.data_dir.display()
            ))
        })?;
        let jwt_secret = match &config.supabase {
            Some(supabase) => supabase.jwt_secret.clone(),
            None => local_jwt_secret(&config)?,
        };
        let auth = Authenticator::new(
            jwt_secret.clone().into_bytes(),
            config.internal_api_key.clone(),
        );

        let mut config = config;
        if config.is_local_mode() && config.encryption_key.is_none() {
            // Local mode: the key that encrypts saved forge tokens is generated on first run
            // and kept beside the local JWT secret (0600), so connecting GitHub or GitLab
            // needs no ENCRYPTION_KEY; an explicitly set one still wins.
            let key =
                crate::auth::load_or_create_secret_file(&config.data_dir, ENCRYPTION_KEY_FILE)
                    .map_err(|e| {
                        EngineError::unavailable(format!("cannot store the encryption key: {e}"))
                    })?;
            config.encryption_key = Some(key);
        }
        let (data_lock, alone) = lock_data_dir(&config.data_dir).await?;
        // Supabase mode keeps everything in the project (through PostgREST); local mode in
        // the embedded SQLite file.
        let store: Arc<dyn Store> = match &config.supabase {
            Some(supabase) => Arc::new(SupabaseStore::open(supabase, &config.data_dir)?),
            None => Arc::new(SqliteStore::open(&config.database_path())?),
        };
        // What a crashed previous run left is only recognisable when no other engine (a
        // `lucid serve` beside a `lucid run`) is using this data directory right now.
        if alone {
            let interrupted = crate::sessions::status::recover_after_restart(store.as_ref())
                .await
                .map_err(EngineError::from)?;
            if interrupted > 0 {
                tracing::info!(
                    count = interrupted,
                    "marked sessions of a previous run interrupted"
                );
            }
            let stale = store.deactivate_all_chats().await?;
            if stale > 0 {
                tracing::info!(count = stale, "marked sessions of a previous run inactive");
            }
        }

        let instance_id = crate::sandbox::docker::load_or_create_instance_id(&config.data_dir)
            .map_err(|e| EngineError::unavailable(format!("cannot store the instance id: {e}")))?;
        let backend = Arc::new(SandboxBackend::connect(&config, instance_id, alone).await);
        if alone {
            crate::sessions::warm::reap_old(&config.workspace_base);
        }
        let data_lock = share_data_lock(data_lock, alone).await?;
        let docker_up = backend.is_docker_available().await;

        let http = reqwest::Client::builder()
            .user_agent(concat!("lucid/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| EngineError::internal(format!("HTTP client: {e}")))?;
        let sign_in = config.supabase.as_ref().map(|supabase| {
            crate::auth::SignIn::new(crate::auth::GoTrueClient::new(
                &supabase.url,
                &supabase.anon_key,
                http.clone(),
            ))
        });
        let auth = match &config.supabase {
            Some(supabase) => auth.with_supabase(SupabaseTokenVerifier::new(
                &supabase.url,
                jwt_secret.into_bytes(),
                http.clone(),
            )),
            None => auth,
        };
        // The forge client keeps its own 15 s timeout (LLM requests may take minutes).
        let integrations = Arc::new(Integrations::new(Arc::clone(&store), &config));
        let chats = Chats::new(Arc::clone(&store), config.workspace_base.clone());
        let deps = Arc::new(SessionDeps {
            config: config.clone(),
            store: Arc::clone(&store),
            backend: Arc::clone(&backend),
            integrations: Arc::clone(&integrations),
            http,
            workspace_base: config.workspace_base.clone(),
            live: Arc::new(Mutex::new(Default::default())),
            slots: Arc::default(),
            warm: crate::sessions::warm::WarmSandbox::new(
                Arc::clone(&backend),
                &config.workspace_base,
                config.warm_sandbox,
            ),
        });
        let pull_requests = crate::pull_request::PullRequests::new(
            crate::git::Git::new(crate::git::GitOptions {
                outbound: crate::outbound::OutboundPolicy::from_config(&config),
                ..Default::default()
            }),
            config.data_dir.clone(),
            config.workspace_base.clone(),
            config.is_local_mode(),
        );
        Ok(Arc::new(Engine {
            config,
            auth,
            store,
            chats,
            integrations,
            sessions: Sessions::new(deps),
            pull_requests,
            backend,
            docker_up: Arc::new(Mutex::new((docker_up, std::time::Instant::now()))),
            sign_in,
            _data_lock: data_lock,
        }))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub async fn authenticate(&self, credentials: Credentials<'_>) -> Result<User, AuthError> {
        self.auth.authenticate(credentials).await
    }

    /// Sign-in with a provider (Supabase mode only; local mode has no accounts).
    pub fn sign_in(&self) -> EngineResult<&crate::auth::SignIn> {
        self.sign_in.as_ref().ok_or_else(|| {
            EngineError::bad_request(
                "Sign-in needs Supabase mode (set SUPABASE_URL and its keys); local mode has no accounts.",
            )
        })
    }

    pub fn chats(&self) -> &Chats {
        &self.chats
    }

    pub fn integrations(&self) -> &Integrations {
        &self.integrations
    }

    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Deletes a chat: stops its session if it is still running, then deletes the history and
    /// the workspace.
    pub async fn delete_chat(&self, user: &User, chat_id: &str) -> EngineResult<()> {
        if let Some(chat) = self.store.get_chat(user, chat_id).await? {
            if let Some(session_id) = &chat.agent_session_id {
                match self.sessions.destroy(user, session_id).await {
                    Ok(()) => {}
                    Err(e) if e.kind == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let session_id = self
            .store
            .get_chat(user, chat_id)
            .await?
            .and_then(|c| c.agent_session_id);
        self.chats.delete(user, chat_id).await?;
        if let Some(private) =
            session_id.and_then(|s| self.pull_requests.private_repo(user, &s).ok())
        {
            match std::fs::remove_dir_all(&private) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!(error = %e, "could not remove a session's private repository");
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The file tree of a session's workspace.
    pub async fn list_files(&self, user: &User, session_id: &str) -> EngineResult<FileTree> {
        let root = self.existing_workspace(user, session_id).await?;
        tokio::task::spawn_blocking(move || files::build_tree(&root, TreeLimits::default()))
            .await
            .map_err(|e| EngineError::internal(format!("file tree task failed: {e}")))?
            .map_err(EngineError::from)
    }

    /// A file of a session's workspace (`/x` and `/workspace/x` forms).
    pub async fn read_file(
        &self,
        user: &User,
        session_id: &str,
        path: &str,
    ) -> EngineResult<FileContent> {
        let root = self.existing_workspace(user, session_id).await?;
        let mount = self.config.sandbox.mount_path.clone();
        let path = path.to_string();
        tokio::task::spawn_blocking(move || {
            files::read_file(&root, &mount, &path, FILE_READ_MAX_BYTES)
        })
        .await
        .map_err(|e| EngineError::internal(format!("file read task failed: {e}")))?
        .map_err(EngineError::from)
    }

    async fn existing_workspace(&self, user: &User, session_id: &str) -> EngineResult<PathBuf> {
        let root = self.sessions.workspace_of(user, session_id).await?;
        if !root.is_dir() {
            return Err(EngineError::not_found(format!(
                "Session {session_id} not found."
            )));
        }
        Ok(root)
    }

    /// Opens a PR/MR. With `sessionId`, the session's work is first committed on
    /// `lucid/<short-id>` in its host-private repository and pushed from there (see
    /// [`crate::pull_request`]).
    pub async fn create_pr(
        &self,
        user: &User,
        provider: &str,
        req: CreatePrRequest,
    ) -> EngineResult<CreatePrResponse> {
        let Some(session_id) = req.session_id.clone().filter(|s| !s.is_empty()) else {
            return self.integrations.create_pr(user, provider, req).await;
        };
        let workspace = self.existing_workspace(user, &session_id).await?;
        if matches!(
            self.sessions.status(user, &session_id),
            Ok(crate::events::SessionStatus::Initializing)
        ) {
            return Err(EngineError::new(
                ErrorKind::Conflict,
                "The session is still starting; open the pull request when it is ready.",
            ));
        }
        let chat = self
            .store
            .chat_by_session(user, &session_id)
            .await?
            .ok_or_else(|| EngineError::not_found(format!("Session {session_id} not found.")))?;
        let req = self
            .pull_requests
            .commit_and_push(
                user,
                provider,
                crate::pull_request::SessionForPr {
                    session_id: &session_id,
                    workspace,
                    chat,
                },
                req,
                &self.integrations,
                &self.backend,
            )
            .await?;
        self.integrations.create_pr(user, provider, req).await
    }

    /// `GET /` information. Docker availability is checked at most every 5 s, off the caller's
    /// path.
    pub async fn service_info(&self) -> ServiceInfo {
        let docker_available = self.docker_available().await;
        let sandbox = match self.backend.as_ref() {
            SandboxBackend::Docker(_) => "docker",
            SandboxBackend::Local => "local",
            SandboxBackend::Unavailable(_) => "unavailable",
        };
        ServiceInfo {
            service: "Lucid AI Engine".into(),
            version: "1.0.0".into(),
            status: "healthy".into(),
            openhands_available: !matches!(self.backend.as_ref(), SandboxBackend::Unavailable(_)),
            docker_available,
            active_sandboxes: self.backend.active_sandboxes(),
            active_sessions: self.sessions.active_count(),
            llm_model: crate::llm::provider::default_model_name(&self.config),
            mode: if self.config.is_local_mode() {
                "local"
            } else {
                "supabase"
            }
            .into(),
            sandbox: sandbox.into(),
            lucid_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// The engine's state and what is wrong with the setup, with fixes (the same findings as
    /// `lucid doctor` for a running engine).
    pub async fn status(&self) -> EngineStatus {
        let mut problems = Vec::new();
        let mut problem = |what: String, fix: &str| {
            problems.push(StatusProblem {
                what,
                fix: fix.to_string(),
            })
        };
        let info = self.service_info().await;
        let (docker_version, image_present) = match self.backend.as_ref() {
            SandboxBackend::Docker(docker) => {
                let probe = tokio::time::timeout(Duration::from_secs(3), async {
                    let version = docker.docker().version().await.ok();
                    let image = docker
                        .docker()
                        .inspect_image(&self.config.sandbox.image)
                        .await
                        .is_ok();
                    (version.and_then(|v| v.version), image)
                })
                .await;
                match probe {
                    Ok((version, image)) => (version, Some(image)),
                    Err(_) => (None, None),
                }
            }
            _ => (None, None),
        };
        match self.backend.as_ref() {
            SandboxBackend::Unavailable(reason) => problem(
                format!("Docker is not reachable: {reason}"),
                "Start Docker (e.g. `sudo systemctl start docker`), check DOCKER_HOST, or set SANDBOX_MODE=local, then restart Lucid.",
            ),
            SandboxBackend::Docker(_) if !info.docker_available => problem(
                "Docker stopped answering.".into(),
                "Start Docker (e.g. `sudo systemctl start docker`).",
            ),
            SandboxBackend::Local => problem(
                "SANDBOX_MODE=local: agent commands run on this machine without isolation.".into(),
                "Unset SANDBOX_MODE to use Docker sandboxes.",
            ),
            _ => {}
        }
        if image_present == Some(false) {
            problem(
                format!("The sandbox image {} is not present yet.", self.config.sandbox.image),
                "It is pulled when the first session starts; or `docker pull` it now, or set SANDBOX_IMAGE.",
            );
        }
        let providers: Vec<ProviderStatus> = ["anthropic", "google", "openai"]
            .into_iter()
            .map(
                |name| match crate::llm::provider::configured_model(&self.config, name) {
                    Ok(model) => ProviderStatus {
                        name: name.into(),
                        configured: true,
                        model: Some(model),
                        problem: None,
                    },
                    Err(e) => ProviderStatus {
                        name: name.into(),
                        configured: false,
                        model: None,
                        problem: Some(e.to_string()),
                    },
                },
            )
            .collect();
        if !providers.iter().any(|p| p.configured) {
            problem(
                "No LLM provider is configured.".into(),
                "Set ANTHROPIC_API_KEY or GOOGLE_API_KEY, or LLM_BASE_URL (+ LLM_API_KEY) for an OpenAI-compatible endpoint, then restart Lucid.",
            );
        }
        if self.config.encryption_key.is_none() {
            problem(
                "ENCRYPTION_KEY is not set: GitHub/GitLab tokens cannot be saved.".into(),
                "Set ENCRYPTION_KEY to a long random string (keep it: it decrypts saved tokens), then restart Lucid.",
            );
        }
        let unsent = self.store.unsent_event_batches();
        if unsent > 0 {
            problem(
                format!("{unsent} batches of session events wait to be sent to Supabase (it is unreachable or refusing requests)."),
                "Nothing is lost: they are kept on disk and retried automatically. Check SUPABASE_URL, the network and the project's status.",
            );
        }
        EngineStatus {
            version: info.lucid_version,
            mode: info.mode,
            sandbox: info.sandbox,
            docker_available: info.docker_available,
            docker_version,
            sandbox_image: self.config.sandbox.image.clone(),
            sandbox_image_present: image_present,
            sandbox_network: self.config.sandbox.network.clone(),
            image_pull: match self.backend.as_ref() {
                SandboxBackend::Docker(docker) => docker.pull_progress(),
                _ => None,
            },
            default_provider: self.config.default_provider.clone(),
            providers,
            integrations_enabled: self.config.encryption_key.is_some(),
            active_sessions: info.active_sessions,
            problems,
        }
    }

    async fn docker_available(&self) -> bool {
        let (cached, at) = *self.docker_up.lock().expect("docker cache poisoned");
        if at.elapsed() < Duration::from_secs(5) {
            return cached;
        }
        let fresh =
            tokio::time::timeout(Duration::from_secs(2), self.backend.is_docker_available())
                .await
                .unwrap_or(false);
        *self.docker_up.lock().expect("docker cache poisoned") = (fresh, std::time::Instant::now());
        fresh
    }

    /// Stops every session and removes this instance's sandboxes.
    pub async fn shutdown(&self) {
        self.sessions.shutdown_all().await;
        self.backend.shutdown().await;
    }
}
