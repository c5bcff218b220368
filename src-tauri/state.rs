//! The shell's state, built once at start-up and managed by Tauri: the engine (in-process),
//! the local user the app acts as, settings, secrets, the optional HTTP API and the live
//! event subscriptions of the window.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lucid_engine::auth::session_keeper::{KeeperError, SessionKeeper};
use lucid_engine::config::KeyStore;
use lucid_engine::{Config, Engine, ErrorKind, User};

use crate::error::{CommandError, CommandResult};

use crate::http_api::RunningApi;
use crate::secrets::Secrets;
use crate::settings::{Settings, ENCRYPTION_KEY, JWT_SECRET, PROVIDER_KEYS};
use crate::window_work::WindowWork;

/// Where the app keeps its files.
#[derive(Debug, Clone)]
pub struct ShellPaths {
    /// The engine's data directory (store, workspaces, private repositories).
    pub data_dir: PathBuf,
    /// `settings.json`.
    pub settings_file: PathBuf,
}

pub struct Shell {
    pub engine: Arc<Engine>,
    /// Who the app acts as.
    identity: Identity,
    pub secrets: Secrets,
    pub paths: ShellPaths,
    /// The settings as saved.
    pub settings: Mutex<Settings>,
    /// The settings the engine was built with.
    pub applied: Settings,
    pub http_api: tokio::sync::Mutex<Option<RunningApi>>,
    work: Arc<WindowWork>,
    next_subscription: AtomicU64,
}

impl Shell {
    /// Loads the settings, builds the engine's configuration from them, the secrets and the
    /// environment (`env`), and starts the engine.
    pub async fn start(
        paths: ShellPaths,
        secrets: Secrets,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Shell, String> {
        let settings = Settings::load(&paths.settings_file).map_err(|e| e.to_string())?;
        let config = engine_config(&settings, &secrets, &paths, env)?;
        let engine = Engine::start(config).await.map_err(|e| e.message)?;
        let work = WindowWork::new(Arc::clone(&engine));
        let identity = match crate::account::session_keeper(&engine, secrets.clone()) {
            Some(keeper) => {
                work.follow(&keeper);
                Identity::Supabase(keeper)
            }
            None => Identity::Local(User::with_id(lucid_engine::engine::LOCAL_USER_ID)),
        };
        Ok(Shell {
            engine,
            identity,
            secrets,
            paths,
            applied: settings.clone(),
            settings: Mutex::new(settings),
            http_api: tokio::sync::Mutex::new(None),
            work,
            next_subscription: AtomicU64::new(1),
        })
    }

    /// The user every command acts as: the machine's one user in local mode; in Supabase mode
    /// the signed-in user, with a fresh access token (refreshed first when it is about to
    /// expire) that the store forwards to PostgREST, and a token source through which a
    /// session that outlives that token keeps writing as the user. Signed out: an error that
    /// says to sign in; Supabase Auth unreachable with no valid token: "unavailable".
    pub async fn user(&self) -> CommandResult<User> {
        match &self.identity {
            Identity::Local(user) => Ok(user.clone()),
            Identity::Supabase(keeper) => match keeper.signed_in().await {
                Ok(Some(signed_in)) => Ok(User {
                    token_source: Some(keeper.token_source_for(&signed_in.user.id)),
                    id: signed_in.user.id,
                    email: signed_in.user.email,
                    raw_jwt: Some(signed_in.access_token),
                }),
                Ok(None) => Err(CommandError::new(
                    ErrorKind::Unauthenticated,
                    "Sign in to use Lucid with your Supabase account.",
                )),
                Err(e) => {
                    let kind = match e {
                        KeeperError::SessionEnded(_) => ErrorKind::InvalidCredentials,
                        KeeperError::Unavailable(_) => ErrorKind::Unavailable,
                        KeeperError::Auth(_) => ErrorKind::Upstream,
                        KeeperError::Vault(_) => ErrorKind::Internal,
                    };
                    Err(CommandError::new(kind, e.to_string()))
                }
            },
        }
    }

    /// The user whose sessions the app watches (notifications, the quit check), without
    /// touching the network: `None` while signed out.
    pub fn current_user(&self) -> Option<User> {
        match &self.identity {
            Identity::Local(user) => Some(user.clone()),
            Identity::Supabase(keeper) => keeper.current_user().map(|u| User::with_id(u.id)),
        }
    }

    /// The keeper of the signed-in Supabase session (`None` in local mode).
    pub fn session_keeper(&self) -> Option<&Arc<SessionKeeper>> {
        match &self.identity {
            Identity::Local(_) => None,
            Identity::Supabase(keeper) => Some(keeper),
        }
    }

    pub fn settings(&self) -> Settings {
        self.settings.lock().expect("settings poisoned").clone()
    }

    /// Remembers a subscription task of `user_id`'s so that it can be ended; returns its id.
    pub fn add_subscription(&self, user_id: &str, task: tokio::task::AbortHandle) -> u64 {
        let id = self.next_subscription.fetch_add(1, Ordering::Relaxed);
        self.work.add_subscription(id, user_id, task);
        id
    }

    pub fn end_subscription(&self, id: u64) -> bool {
        self.work.end_subscription(id)
    }

    /// Number of event subscriptions still running.
    pub fn live_subscriptions(&self) -> usize {
        self.work.live_subscriptions()
    }

    /// After a command started work for `user` (a session, a follow-up, an event stream): if
    /// that user is no longer the signed-in one (they signed out while the command ran), the
    /// work is stopped again and the command answers as if signed out.
    pub async fn still_signed_in(&self, user: &User) -> CommandResult<()> {
        let Identity::Supabase(keeper) = &self.identity else {
            return Ok(());
        };
        let current = keeper.current_user().map(|u| u.id);
        if current.as_deref() == Some(user.id.as_str()) {
            return Ok(());
        }
        self.work.reconcile(current.as_deref()).await;
        Err(CommandError::new(
            ErrorKind::Unauthenticated,
            "You were signed out; sign in to continue.",
        ))
    }
}

/// Who the app acts as.
enum Identity {
    /// Local mode: the machine's one user, no sign-in.
    Local(User),
    /// Supabase mode: whoever is signed in (see `account.rs`).
    Supabase(Arc<SessionKeeper>),
}

/// The engine configuration of the app: settings first, then the environment; provider keys
/// looked up in the credential store at each use, else from the environment (a key stored or
/// removed in Settings applies to the next session); the token encryption key and the local
/// JWT secret from the environment or the credential store (generated there on first run).
pub fn engine_config(
    settings: &Settings,
    secrets: &Secrets,
    paths: &ShellPaths,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, String> {
    // The store must answer now: a broken one would otherwise only show as missing keys.
    for (_, var) in PROVIDER_KEYS {
        secrets.get(var).map_err(|e| e.to_string())?;
    }
    let mut stored: HashMap<&str, String> = HashMap::new();
    for var in [ENCRYPTION_KEY, JWT_SECRET] {
        if env(var).is_none() {
            stored.insert(
                var,
                secrets.get_or_generate(var).map_err(|e| e.to_string())?,
            );
        }
    }
    let data_dir = paths.data_dir.display().to_string();
    Config::from_lookup(|name| {
        if name == "LUCID_DATA_DIR" {
            return env(name).or_else(|| Some(data_dir.clone()));
        }
        settings
            .engine_var(name)
            .or_else(|| env(name))
            .or_else(|| stored.get(name).cloned())
    })
    .map(|mut config| {
        let secrets = secrets.clone();
        config.key_store = Some(KeyStore::new(move |var| {
            if !PROVIDER_KEYS.iter().any(|(_, known)| *known == var) {
                return None;
            }
            secrets.get(var).unwrap_or_else(|e| {
                tracing::warn!(key = var, error = %e, "provider key not readable");
                None
            })
        }));
        config
    })
    .map_err(|e| e.to_string())
}
