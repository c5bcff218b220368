//! The desktop app's settings: a JSON file in the app's config directory (no secrets: those
//! are in the OS credential store, see [`crate::secrets`]). They feed the engine's
//! configuration at start-up; provider keys and the default provider and model also apply to
//! every new session at once, the rest when the app restarts.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Names of the secrets, as the engine's environment variables.
pub const PROVIDER_KEYS: [(&str, &str); 3] = [
    ("anthropic", "ANTHROPIC_API_KEY"),
    ("google", "GOOGLE_API_KEY"),
    ("openai", "LLM_API_KEY"),
];
/// The key that encrypts saved GitHub/GitLab tokens (generated on first run).
pub const ENCRYPTION_KEY: &str = "ENCRYPTION_KEY";
/// The local JWT secret (tokens of the optional HTTP API).
pub const JWT_SECRET: &str = "LUCID_JWT_SECRET";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    pub default_provider: Option<String>,
    pub default_model: Option<String>,
    pub anthropic_base_url: Option<String>,
    pub google_base_url: Option<String>,
    /// Any OpenAI-compatible endpoint.
    pub llm_base_url: Option<String>,
    pub sandbox_image: Option<String>,
    /// e.g. `2g`.
    pub sandbox_memory_limit: Option<String>,
    /// CPUs, e.g. `1.5`.
    pub sandbox_cpu_limit: Option<String>,
    /// Docker network of sandboxes (`none` = no network).
    pub docker_network: Option<String>,
    pub http_api: HttpApiSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpApiSettings {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
}

impl Default for HttpApiSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 8765,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("could not read the settings file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not save the settings file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Settings {
    /// Reads `path`; a missing file gives the defaults, an unreadable one is kept aside as
    /// `settings.json.broken` (never silently overwritten) and the defaults are used.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(SettingsError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        match serde_json::from_str(&text) {
            Ok(settings) => Ok(settings),
            Err(e) => {
                tracing::warn!(error = %e, "the settings file is not valid; using defaults");
                let _ = std::fs::rename(path, path.with_extension("json.broken"));
                Ok(Self::default())
            }
        }
    }

    /// Writes atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), SettingsError> {
        let write_err = |source| SettingsError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).expect("settings serialise");
        std::fs::write(&tmp, text).map_err(write_err)?;
        std::fs::rename(&tmp, path).map_err(write_err)
    }

    /// The engine variable `name` as these settings set it.
    pub fn engine_var(&self, name: &str) -> Option<String> {
        let value = match name {
            "DEFAULT_MODEL_PROVIDER" => &self.default_provider,
            "LLM_MODEL" => &self.default_model,
            "ANTHROPIC_BASE_URL" => &self.anthropic_base_url,
            "GOOGLE_BASE_URL" => &self.google_base_url,
            "LLM_BASE_URL" => &self.llm_base_url,
            "SANDBOX_IMAGE" => &self.sandbox_image,
            "SANDBOX_MEMORY_LIMIT" => &self.sandbox_memory_limit,
            "SANDBOX_CPU_LIMIT" => &self.sandbox_cpu_limit,
            "DOCKER_NETWORK" => &self.docker_network,
            _ => return None,
        };
        value
            .as_ref()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// Whether going from `self` to `new` changes something the running engine was built
    /// with (so the change needs a restart of the app).
    pub fn needs_restart_for(&self, new: &Settings) -> bool {
        [
            "ANTHROPIC_BASE_URL",
            "GOOGLE_BASE_URL",
            "LLM_BASE_URL",
            "SANDBOX_IMAGE",
            "SANDBOX_MEMORY_LIMIT",
            "SANDBOX_CPU_LIMIT",
            "DOCKER_NETWORK",
        ]
        .iter()
        .any(|name| self.engine_var(name) != new.engine_var(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_defaults_and_broken_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        assert_eq!(Settings::load(&path).unwrap(), Settings::default());
        let mut s = Settings {
            default_provider: Some("google".into()),
            sandbox_image: Some("python:3.12".into()),
            ..Settings::default()
        };
        s.http_api.enabled = true;
        s.save(&path).unwrap();
        assert_eq!(Settings::load(&path).unwrap(), s);
        assert_eq!(
            s.engine_var("SANDBOX_IMAGE").as_deref(),
            Some("python:3.12")
        );
        assert_eq!(s.engine_var("LLM_MODEL"), None);

        let mut changed = s.clone();
        changed.default_model = Some("gemini-2.5-pro".into());
        assert!(
            !s.needs_restart_for(&changed),
            "models apply to new sessions at once"
        );
        changed.docker_network = Some("none".into());
        assert!(s.needs_restart_for(&changed));

        std::fs::write(&path, "{not json").unwrap();
        assert_eq!(Settings::load(&path).unwrap(), Settings::default());
        assert!(dir.path().join("settings.json.broken").exists());
    }
}
