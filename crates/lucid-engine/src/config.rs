//! Configuration from the environment and `.env`, with the original engine's variable names.
//!
//! [`Config::from_env`] reads the process environment (after loading `.env` from the working
//! directory without overriding what is already set); [`Config::from_lookup`] takes any
//! lookup function so tests never touch the process environment.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use url::Url;

#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    #[error(
        "Supabase settings are all-or-nothing: {missing} missing (set SUPABASE_URL, SUPABASE_ANON_KEY, SUPABASE_JWT_SECRET and SUPABASE_SERVICE_KEY, or none of them for local mode)"
    )]
    PartialSupabase { missing: String },
    #[error(
        "SUPABASE_URL must start with https:// (http:// is allowed only for loopback hosts): {0}"
    )]
    InsecureSupabaseUrl(String),
    #[error("{name} is not a valid URL: {value}")]
    InvalidUrl { name: &'static str, value: String },
    #[error("{name} has an invalid value {value:?}: {reason}")]
    InvalidValue {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "no data directory: set LUCID_DATA_DIR (the OS data directory could not be determined)"
    )]
    NoDataDir,
}

/// Supabase project settings (Supabase mode).
#[derive(Clone)]
pub struct SupabaseConfig {
    pub url: String,
    pub anon_key: String,
    pub jwt_secret: String,
    pub service_key: String,
}

impl std::fmt::Debug for SupabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupabaseConfig")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Where the agent's commands run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxMode {
    /// One Docker container per session (the default).
    Docker,
    /// Plain local processes in the workspace directory: no isolation. Only when chosen explicitly.
    Local,
}

/// The network Lucid creates for its sandboxes when `DOCKER_NETWORK` is unset.
pub const DEFAULT_SANDBOX_NETWORK: &str = "lucid-sandbox";

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub mode: SandboxMode,
    pub image: String,
    /// Memory limit in bytes.
    pub memory_bytes: i64,
    pub cpu_limit: f64,
    pub pids_limit: i64,
    /// Docker network for sandboxes (`DOCKER_NETWORK`, e.g. `none`); `None` = Lucid's own
    /// network [`SandboxConfig::owned_network`], created on demand without inter-container
    /// traffic.
    pub network: Option<String>,
    /// Name of the bridge network Lucid creates and owns for sandboxes when `network` is
    /// unset (`LUCID_SANDBOX_NETWORK`, default [`DEFAULT_SANDBOX_NETWORK`]).
    pub owned_network: String,
    /// Run sandbox processes as root (`SANDBOX_RUN_AS_ROOT`), for images that need it; the
    /// workspace is handed back to the engine's user when the sandbox is released.
    pub run_as_root: bool,
    /// The `uid:gid` sandbox processes run as (`SANDBOX_USER`); `None` = the engine's own
    /// user on Linux. Ignored with `run_as_root`.
    pub run_as: Option<(u32, u32)>,
    /// Mount point of the workspace inside the container.
    pub mount_path: String,
    pub container_prefix: String,
    /// Host-side root of workspaces when the engine itself runs in a container.
    pub host_workspace_path: Option<PathBuf>,
}

#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub supabase: Option<SupabaseConfig>,
    /// Local-mode JWT secret (`LUCID_JWT_SECRET`); when `None` one is generated on first run.
    pub local_jwt_secret: Option<String>,
    pub encryption_key: Option<String>,
    pub internal_api_key: Option<String>,
    pub anthropic_api_key: Option<String>,
    pub google_api_key: Option<String>,
    pub llm_api_key: Option<String>,
    /// Provider keys kept outside the configuration (the desktop app's credential store),
    /// looked up at each use before the `*_API_KEY` fields (a key set in the app wins over
    /// the environment): a key stored or removed there applies to the next session at once.
    pub key_store: Option<KeyStore>,
    pub anthropic_base_url: String,
    pub google_base_url: String,
    pub llm_base_url: Option<String>,
    pub llm_model: Option<String>,
    pub default_provider: String,
    pub max_iterations: u32,
    pub conversation_timeout: Duration,
    /// How long a session whose agent is idle and that no client follows keeps its sandbox
    /// (`LUCID_SANDBOX_IDLE_SECS`, default 60; `SESSION_DETACH_GRACE_SECS` is the old name).
    /// Its workspace and history stay: a follow-up continues it in a new sandbox.
    pub sandbox_idle: Duration,
    /// Keep one sandbox pre-started for the next new session (`LUCID_WARM_SANDBOX`, default
    /// on; off with `SANDBOX_RUN_AS_ROOT`).
    pub warm_sandbox: bool,
    /// Live sessions (each with a container) one user may have at once.
    pub max_sessions_per_user: usize,
    /// Estimated cost in USD after which a session's agent stops (`LUCID_SESSION_BUDGET_USD`).
    pub session_budget_usd: Option<f64>,
    /// Whether a new chat gets a short title written by the session's model from its task
    /// (`LUCID_CHAT_TITLES`, default on; see `sessions::title`).
    pub chat_titles: bool,
    /// Context window (tokens) to assume instead of the model's known one
    /// (`LUCID_CONTEXT_WINDOW`; for unknown or local models).
    pub context_window: Option<u64>,
    /// Reasoning tokens the agent's model may spend before each answer (`LUCID_THINKING_BUDGET`,
    /// at least 1024; unset or 0: the model's default, no extended thinking).
    pub thinking_budget: Option<u32>,
    pub sandbox: SandboxConfig,
    pub workspace_base: PathBuf,
    pub allowed_origins: Vec<String>,
    pub host: String,
    pub port: u16,
    pub github_api_url: String,
    pub gitlab_url: String,
    /// Hosts that user-supplied URLs may reach although they resolve to loopback, private or
    /// link-local addresses (Supabase mode; `LUCID_ALLOWED_INTERNAL_HOSTS`, comma-separated).
    pub allowed_internal_hosts: Vec<String>,
    /// The address browsers reach `lucid serve` at (`LUCID_PUBLIC_URL`, e.g.
    /// `https://lucid.example.com`): Supabase sign-in comes back to
    /// `{public_url}/api/v1/auth/callback`. Unset: loopback requests use their own address.
    pub public_url: Option<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets are deliberately left out.
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("supabase", &self.supabase)
            .field("default_provider", &self.default_provider)
            .field("sandbox", &self.sandbox)
            .field("workspace_base", &self.workspace_base)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

const SUPABASE_VARS: [&str; 4] = [
    "SUPABASE_URL",
    "SUPABASE_ANON_KEY",
    "SUPABASE_JWT_SECRET",
    "SUPABASE_SERVICE_KEY",
];

/// Where provider keys are looked up by variable name (`ANTHROPIC_API_KEY`, …) at each use:
/// see [`Config::key_store`].
#[derive(Clone)]
pub struct KeyStore(Arc<KeyLookup>);

/// Looks a provider key up by its variable name.
type KeyLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

impl KeyStore {
    pub fn new(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        KeyStore(Arc::new(lookup))
    }
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyStore")
    }
}

impl Config {
    /// The provider key named `var` (`ANTHROPIC_API_KEY`, `GOOGLE_API_KEY`, `LLM_API_KEY`):
    /// the key store's current one, else the configured one; blank counts as none.
    pub fn provider_key(&self, var: &str) -> Option<String> {
        let configured = match var {
            "ANTHROPIC_API_KEY" => self.anthropic_api_key.as_deref(),
            "GOOGLE_API_KEY" => self.google_api_key.as_deref(),
            "LLM_API_KEY" => self.llm_api_key.as_deref(),
            _ => None,
        };
        let non_blank = |k: &str| {
            let k = k.trim();
            (!k.is_empty()).then(|| k.to_string())
        };
        let stored = self.key_store.as_ref().and_then(|store| (store.0)(var));
        stored
            .as_deref()
            .and_then(non_blank)
            .or_else(|| configured.and_then(non_blank))
    }

    /// Loads `.env` (if present, never overriding the environment) and reads the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds a config from a map of variables (tests, embedding).
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_lookup(|name| vars.get(name).cloned())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };

        let supabase = {
            let present: Vec<_> = SUPABASE_VARS.iter().map(|n| (n, get(n))).collect();
            let missing: Vec<&str> = present
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(n, _)| **n)
                .collect();
            if missing.len() == SUPABASE_VARS.len() {
                None
            } else if !missing.is_empty() {
                return Err(ConfigError::PartialSupabase {
                    missing: missing.join(", "),
                });
            } else {
                let url = present[0].1.clone().unwrap_or_default();
                check_https_or_loopback("SUPABASE_URL", &url)
                    .map_err(|_| ConfigError::InsecureSupabaseUrl(url.clone()))?;
                Some(SupabaseConfig {
                    url: url.trim_end_matches('/').to_string(),
                    anon_key: present[1].1.clone().unwrap_or_default(),
                    jwt_secret: present[2].1.clone().unwrap_or_default(),
                    service_key: present[3].1.clone().unwrap_or_default(),
                })
            }
        };

        let data_dir = match get("LUCID_DATA_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => directories::ProjectDirs::from("dev", "lucid", "lucid")
                .map(|d| d.data_dir().to_path_buf())
                .ok_or(ConfigError::NoDataDir)?,
        };

        let workspace_base = get("WORKSPACE_BASE_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("workspaces"));

        let sandbox_mode = match get("SANDBOX_MODE").as_deref().map(str::to_ascii_lowercase) {
            None => SandboxMode::Docker,
            Some(m) if m == "docker" => SandboxMode::Docker,
            Some(m) if m == "local" => SandboxMode::Local,
            Some(other) => {
                return Err(ConfigError::InvalidValue {
                    name: "SANDBOX_MODE",
                    value: other,
                    reason: "expected `docker` or `local`".into(),
                });
            }
        };

        let memory = get("SANDBOX_MEMORY_LIMIT").unwrap_or_else(|| "2g".into());
        let memory_bytes = parse_memory(&memory).ok_or_else(|| ConfigError::InvalidValue {
            name: "SANDBOX_MEMORY_LIMIT",
            value: memory.clone(),
            reason: "expected a size like 512m or 2g".into(),
        })?;

        let cpu_limit = parse_num::<f64>(&get, "SANDBOX_CPU_LIMIT", 1.0)?;
        if !(cpu_limit > 0.0 && cpu_limit <= 1024.0) {
            return Err(ConfigError::InvalidValue {
                name: "SANDBOX_CPU_LIMIT",
                value: cpu_limit.to_string(),
                reason: "must be a positive number of CPUs".into(),
            });
        }

        let allowed_origins = get("ALLOWED_ORIGINS")
            .map(|v| parse_origins(&v))
            .unwrap_or_else(|| vec!["http://localhost:3000".to_string()]);

        let github_api_url = get("LUCID_GITHUB_API_URL")
            .unwrap_or_else(|| "https://api.github.com".into())
            .trim_end_matches('/')
            .to_string();
        check_https_or_loopback("LUCID_GITHUB_API_URL", &github_api_url)?;
        let gitlab_url = get("LUCID_GITLAB_URL")
            .unwrap_or_else(|| "https://gitlab.com".into())
            .trim_end_matches('/')
            .to_string();
        check_https_or_loopback("LUCID_GITLAB_URL", &gitlab_url)?;

        let anthropic_base_url = base_url(&get, "ANTHROPIC_BASE_URL", "https://api.anthropic.com")?;
        let google_base_url = base_url(
            &get,
            "GOOGLE_BASE_URL",
            "https://generativelanguage.googleapis.com",
        )?;
        let llm_base_url = match get("LLM_BASE_URL") {
            Some(u) => {
                parse_url("LLM_BASE_URL", &u)?;
                Some(u.trim_end_matches('/').to_string())
            }
            None => None,
        };

        let port = parse_num::<u16>(&get, "PORT", 8000)?;
        let public_url = match get("LUCID_PUBLIC_URL") {
            Some(u) => {
                check_https_or_loopback("LUCID_PUBLIC_URL", &u)?;
                Some(u.trim_end_matches('/').to_string())
            }
            None => None,
        };

        Ok(Config {
            data_dir,
            supabase,
            local_jwt_secret: get("LUCID_JWT_SECRET"),
            encryption_key: get("ENCRYPTION_KEY"),
            internal_api_key: get("INTERNAL_API_KEY"),
            anthropic_api_key: get("ANTHROPIC_API_KEY"),
            google_api_key: get("GOOGLE_API_KEY"),
            llm_api_key: get("LLM_API_KEY"),
            key_store: None,
            anthropic_base_url,
            google_base_url,
            llm_base_url,
            llm_model: get("LLM_MODEL"),
            default_provider: get("DEFAULT_MODEL_PROVIDER")
                .unwrap_or_else(|| "anthropic".into())
                .to_ascii_lowercase(),
            max_iterations: parse_num::<u32>(&get, "MAX_ITERATIONS", 50)?.max(1),
            conversation_timeout: Duration::from_secs(parse_num::<u64>(
                &get,
                "CONVERSATION_TIMEOUT",
                1800,
            )?),
            sandbox_idle: Duration::from_secs(if get("LUCID_SANDBOX_IDLE_SECS").is_some() {
                parse_num::<u64>(&get, "LUCID_SANDBOX_IDLE_SECS", 60)?
            } else {
                parse_num::<u64>(&get, "SESSION_DETACH_GRACE_SECS", 60)?
            }),
            warm_sandbox: parse_bool(&get, "LUCID_WARM_SANDBOX", true)?
                && !parse_bool(&get, "SANDBOX_RUN_AS_ROOT", false)?,
            max_sessions_per_user: parse_num::<usize>(&get, "LUCID_MAX_SESSIONS_PER_USER", 8)?
                .max(1),
            session_budget_usd: parse_budget(&get, "LUCID_SESSION_BUDGET_USD")?,
            chat_titles: parse_bool(&get, "LUCID_CHAT_TITLES", true)?,
            context_window: match get("LUCID_CONTEXT_WINDOW").filter(|v| !v.trim().is_empty()) {
                None => None,
                Some(_) => Some(parse_num::<u64>(&get, "LUCID_CONTEXT_WINDOW", 0)?.max(1_000)),
            },
            thinking_budget: match parse_num::<u32>(&get, "LUCID_THINKING_BUDGET", 0)? {
                0 => None,
                budget if !(1024..=128_000).contains(&budget) => {
                    return Err(ConfigError::InvalidValue {
                        name: "LUCID_THINKING_BUDGET",
                        value: budget.to_string(),
                        reason: "between 1024 and 128000 tokens (or 0 to turn thinking off); \
                                 each model's own limit is applied on top"
                            .into(),
                    })
                }
                budget => Some(budget),
            },
            sandbox: SandboxConfig {
                mode: sandbox_mode,
                image: get("SANDBOX_IMAGE")
                    .unwrap_or_else(|| "nikolaik/python-nodejs:python3.11-nodejs20".into()),
                memory_bytes,
                cpu_limit,
                pids_limit: parse_num::<i64>(&get, "SANDBOX_PIDS_LIMIT", 512)?,
                network: get("DOCKER_NETWORK"),
                owned_network: get("LUCID_SANDBOX_NETWORK")
                    .unwrap_or_else(|| DEFAULT_SANDBOX_NETWORK.into()),
                run_as_root: parse_bool(&get, "SANDBOX_RUN_AS_ROOT", false)?,
                run_as: get("SANDBOX_USER")
                    .map(|v| {
                        parse_uid_gid(&v).ok_or(ConfigError::InvalidValue {
                            name: "SANDBOX_USER",
                            value: v.clone(),
                            reason: "expected `uid:gid` (numbers)".into(),
                        })
                    })
                    .transpose()?,
                mount_path: get("WORKSPACE_MOUNT_PATH").unwrap_or_else(|| "/workspace".into()),
                container_prefix: get("SANDBOX_CONTAINER_PREFIX")
                    .unwrap_or_else(|| "lucid-sandbox-".into()),
                host_workspace_path: get("HOST_WORKSPACE_PATH").map(PathBuf::from),
            },
            workspace_base,
            allowed_origins,
            host: get("HOST").unwrap_or_else(|| "127.0.0.1".into()),
            port,
            github_api_url,
            gitlab_url,
            allowed_internal_hosts: get("LUCID_ALLOWED_INTERNAL_HOSTS")
                .map(|v| {
                    v.split(',')
                        .map(|h| h.trim().to_string())
                        .filter(|h| !h.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            public_url,
        })
    }

    /// True when no Supabase project is configured.
    pub fn is_local_mode(&self) -> bool {
        self.supabase.is_none()
    }

    /// Path of the embedded SQLite database.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("lucid.sqlite3")
    }
}

fn parse_bool(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(name).map(|v| v.to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(false),
        Some(v) => Err(ConfigError::InvalidValue {
            name,
            value: v,
            reason: "expected true or false".into(),
        }),
    }
}

/// An optional positive amount of USD; empty means none.
fn parse_budget(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<f64>, ConfigError> {
    let Some(value) = get(name).filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    match value.trim().trim_start_matches('$').parse::<f64>() {
        Ok(amount) if amount.is_finite() && amount > 0.0 => Ok(Some(amount)),
        _ => Err(ConfigError::InvalidValue {
            name,
            value,
            reason: "not a positive amount of USD (e.g. 2.50)".into(),
        }),
    }
}

/// `uid:gid`, both numeric.
pub fn parse_uid_gid(value: &str) -> Option<(u32, u32)> {
    let (uid, gid) = value.trim().split_once(':')?;
    Some((uid.parse().ok()?, gid.parse().ok()?))
}

fn parse_num<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| ConfigError::InvalidValue {
            name,
            value: v.clone(),
            reason: "not a valid number".into(),
        }),
    }
}

fn base_url(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: &str,
) -> Result<String, ConfigError> {
    let value = get(name).unwrap_or_else(|| default.to_string());
    parse_url(name, &value)?;
    Ok(value.trim_end_matches('/').to_string())
}

fn parse_url(name: &'static str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|_| ConfigError::InvalidUrl {
        name,
        value: value.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::InvalidUrl {
            name,
            value: value.to_string(),
        });
    }
    Ok(url)
}

/// Accepts `https://` URLs, and `http://` only when the host is a loopback address.
pub fn check_https_or_loopback(name: &'static str, value: &str) -> Result<(), ConfigError> {
    let url = parse_url(name, value)?;
    if url.scheme() == "https" || is_loopback_host(&url) {
        Ok(())
    } else {
        Err(ConfigError::InvalidValue {
            name,
            value: value.to_string(),
            reason: "must use https:// (http:// only for loopback hosts)".into(),
        })
    }
}

/// Whether a URL points at this machine (`localhost`, 127.0.0.0/8, ::1).
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Comma-separated origins, trimmed, empty entries dropped, trailing slashes removed.
pub fn parse_origins(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim().trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Parses docker-style sizes: `512m`, `2g`, `1024k`, `1073741824`, `2gb`.
pub fn parse_memory(value: &str) -> Option<i64> {
    let v = value.trim().to_ascii_lowercase();
    let v = v.strip_suffix('b').unwrap_or(&v);
    let (num, mult) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 1024i64),
        'm' => (&v[..v.len() - 1], 1024 * 1024),
        'g' => (&v[..v.len() - 1], 1024 * 1024 * 1024),
        c if c.is_ascii_digit() => (v, 1),
        _ => return None,
    };
    let n: f64 = num.trim().parse().ok()?;
    if n <= 0.0 {
        return None;
    }
    Some((n * mult as f64) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.entry("LUCID_DATA_DIR".into())
            .or_insert_with(|| "/tmp/lucid-test".into());
        Config::from_map(&map)
    }

    #[test]
    fn sandbox_network_and_user_settings() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.sandbox.network, None);
        assert_eq!(c.sandbox.owned_network, DEFAULT_SANDBOX_NETWORK);
        assert!(!c.sandbox.run_as_root);
        assert_eq!(c.sandbox.run_as, None);
        let c = cfg(&[
            ("DOCKER_NETWORK", "none"),
            ("LUCID_SANDBOX_NETWORK", "mine"),
            ("SANDBOX_RUN_AS_ROOT", "TRUE"),
            ("SANDBOX_USER", "1000:1001"),
        ])
        .unwrap();
        assert_eq!(c.sandbox.network.as_deref(), Some("none"));
        assert_eq!(c.sandbox.owned_network, "mine");
        assert!(c.sandbox.run_as_root);
        assert_eq!(c.sandbox.run_as, Some((1000, 1001)));
        for bad in ["1000", "alice:staff", "1000:", ":1000", "-1:0"] {
            let err = cfg(&[("SANDBOX_USER", bad)]).err().unwrap();
            assert!(err.to_string().contains("SANDBOX_USER"), "{bad}: {err}");
        }
        assert!(cfg(&[("SANDBOX_RUN_AS_ROOT", "maybe")]).is_err());
    }

    #[test]
    fn empty_environment_is_local_mode_with_defaults() {
        let c = cfg(&[]).unwrap();
        assert!(c.is_local_mode());
        assert_eq!(c.port, 8000);
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.max_iterations, 50);
        assert_eq!(c.sandbox.mount_path, "/workspace");
        assert_eq!(c.sandbox.memory_bytes, 2 * 1024 * 1024 * 1024);
        assert_eq!(c.allowed_origins, vec!["http://localhost:3000"]);
        assert_eq!(
            c.workspace_base,
            PathBuf::from("/tmp/lucid-test/workspaces")
        );
        assert_eq!(c.sandbox_idle, Duration::from_secs(60));
        assert!(c.warm_sandbox);
    }

    #[test]
    fn sandbox_idle_time_and_warm_sandbox_settings() {
        let c = cfg(&[("LUCID_SANDBOX_IDLE_SECS", "5")]).unwrap();
        assert_eq!(c.sandbox_idle, Duration::from_secs(5));
        // The old name still works; the new one wins.
        let c = cfg(&[("SESSION_DETACH_GRACE_SECS", "7")]).unwrap();
        assert_eq!(c.sandbox_idle, Duration::from_secs(7));
        let c = cfg(&[
            ("SESSION_DETACH_GRACE_SECS", "7"),
            ("LUCID_SANDBOX_IDLE_SECS", "3"),
        ])
        .unwrap();
        assert_eq!(c.sandbox_idle, Duration::from_secs(3));
        assert!(
            !cfg(&[("LUCID_WARM_SANDBOX", "false")])
                .unwrap()
                .warm_sandbox
        );
        assert!(
            !cfg(&[("SANDBOX_RUN_AS_ROOT", "true")])
                .unwrap()
                .warm_sandbox
        );
        assert!(cfg(&[("LUCID_WARM_SANDBOX", "maybe")]).is_err());
    }

    #[test]
    fn partial_supabase_names_the_missing_settings() {
        let err = cfg(&[
            ("SUPABASE_URL", "https://x.supabase.co"),
            ("SUPABASE_ANON_KEY", "a"),
        ])
        .unwrap_err();
        assert_eq!(
            err,
            ConfigError::PartialSupabase {
                missing: "SUPABASE_JWT_SECRET, SUPABASE_SERVICE_KEY".into()
            }
        );
        assert!(err
            .to_string()
            .contains("SUPABASE_JWT_SECRET, SUPABASE_SERVICE_KEY missing"));
    }

    #[test]
    fn supabase_url_must_be_https_unless_loopback() {
        let all = |url: &'static str| {
            cfg(&[
                ("SUPABASE_URL", url),
                ("SUPABASE_ANON_KEY", "a"),
                ("SUPABASE_JWT_SECRET", "s"),
                ("SUPABASE_SERVICE_KEY", "k"),
            ])
        };
        assert!(matches!(
            all("http://example.com"),
            Err(ConfigError::InsecureSupabaseUrl(_))
        ));
        assert!(all("http://127.0.0.1:54321").unwrap().supabase.is_some());
        assert!(all("http://localhost:54321").is_ok());
        assert!(all("https://abc.supabase.co/")
            .unwrap()
            .supabase
            .unwrap()
            .url
            .ends_with(".co"));
    }

    #[test]
    fn allowed_origins_are_comma_separated() {
        let c = cfg(&[(
            "ALLOWED_ORIGINS",
            "http://localhost:3000, http://frontend:3000/ ,",
        )])
        .unwrap();
        assert_eq!(
            c.allowed_origins,
            vec!["http://localhost:3000", "http://frontend:3000"]
        );
    }

    #[test]
    fn bad_numbers_and_modes_are_clear_errors() {
        assert!(cfg(&[("PORT", "eighty")])
            .unwrap_err()
            .to_string()
            .contains("PORT"));
        assert!(cfg(&[("SANDBOX_MODE", "vm")])
            .unwrap_err()
            .to_string()
            .contains("SANDBOX_MODE"));
        assert!(cfg(&[("SANDBOX_MEMORY_LIMIT", "lots")]).is_err());
        assert!(cfg(&[("LUCID_GITHUB_API_URL", "http://github.example")]).is_err());
        assert!(cfg(&[("LUCID_GITHUB_API_URL", "http://127.0.0.1:9")]).is_ok());
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512m"), Some(512 * 1024 * 1024));
        assert_eq!(parse_memory("1G"), Some(1024 * 1024 * 1024));
        assert_eq!(parse_memory("64mb"), Some(64 * 1024 * 1024));
        assert_eq!(parse_memory("4096"), Some(4096));
        assert_eq!(parse_memory("-1g"), None);
        assert_eq!(parse_memory(""), None);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = cfg(&[
            ("ENCRYPTION_KEY", "super-secret-value"),
            ("LLM_API_KEY", "sk-hidden"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("super-secret-value"));
        assert!(!shown.contains("sk-hidden"));
    }

    #[test]
    fn session_budget_is_an_optional_positive_amount() {
        assert_eq!(cfg(&[]).unwrap().thinking_budget, None);
        assert_eq!(
            cfg(&[("LUCID_THINKING_BUDGET", "0")])
                .unwrap()
                .thinking_budget,
            None
        );
        assert_eq!(
            cfg(&[("LUCID_THINKING_BUDGET", "8000")])
                .unwrap()
                .thinking_budget,
            Some(8000)
        );
        for bad in ["500", "lots", "-1", "500000"] {
            assert!(cfg(&[("LUCID_THINKING_BUDGET", bad)]).is_err(), "{bad}");
        }
        assert_eq!(cfg(&[]).unwrap().session_budget_usd, None);
        assert_eq!(
            cfg(&[("LUCID_SESSION_BUDGET_USD", "2.5")])
                .unwrap()
                .session_budget_usd,
            Some(2.5)
        );
        assert_eq!(
            cfg(&[("LUCID_SESSION_BUDGET_USD", "$0.75")])
                .unwrap()
                .session_budget_usd,
            Some(0.75)
        );
        for bad in ["0", "-1", "lots", "NaN"] {
            assert!(
                cfg(&[("LUCID_SESSION_BUDGET_USD", bad)]).is_err(),
                "{bad} accepted"
            );
        }
    }
}
