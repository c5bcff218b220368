//! Settings: read and save them, provider keys in the credential store, and the optional
//! HTTP API.

use lucid_engine::ErrorKind;
use serde::{Deserialize, Serialize};
use tauri::State;

use crate::error::{CommandError, CommandResult};
use crate::http_api::{HttpApiInfo, RunningApi};
use crate::secrets::StoreKind;
use crate::settings::{Settings, PROVIDER_KEYS};
use crate::state::Shell;

/// What the settings page shows.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct SettingsView {
    pub settings: Settings,
    /// Providers whose key is set in the credential store (never the keys themselves).
    pub keys_set: Vec<String>,
    pub secret_store: StoreKind,
    /// A note about where secrets live, when the user should know.
    pub secret_store_note: Option<String>,
    /// Whether saved settings differ from what the running engine was built with.
    pub restart_required: bool,
    pub http_api: Option<HttpApiInfo>,
}

#[tauri::command]
#[specta::specta]
pub async fn get_settings(shell: State<'_, Shell>) -> CommandResult<SettingsView> {
    view(&shell).await
}

/// Saves the settings; the answer says whether a restart is needed for them to apply. The
/// HTTP API is started or stopped at once to match.
#[tauri::command]
#[specta::specta]
pub async fn save_settings(
    shell: State<'_, Shell>,
    settings: Settings,
) -> CommandResult<SettingsView> {
    // Settings the engine could not start with would keep the app from opening next time.
    crate::state::engine_config(&settings, &shell.secrets, &shell.paths, |name| {
        std::env::var(name).ok()
    })
    .map_err(|e| CommandError::new(ErrorKind::BadRequest, format!("Not saved: {e}")))?;
    settings
        .save(&shell.paths.settings_file)
        .map_err(|e| CommandError::new(ErrorKind::Internal, e.to_string()))?;
    *shell.settings.lock().expect("settings poisoned") = settings.clone();
    apply_http_api(&shell, &settings)
        .await
        .map_err(|e| CommandError {
            message: format!("Saved, but the HTTP API could not start: {}", e.message),
            ..e
        })?;
    view(&shell).await
}

#[derive(Debug, Clone, Deserialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct ProviderKey {
    pub provider: String,
    /// Empty removes the key.
    pub key: String,
}

/// Stores (or removes) a provider's API key in the credential store. New sessions use it at
/// once.
#[tauri::command]
#[specta::specta]
pub async fn set_provider_key(
    shell: State<'_, Shell>,
    req: ProviderKey,
) -> CommandResult<SettingsView> {
    let spec = lucid_engine::llm::provider::provider_spec(&req.provider)
        .map_err(|e| CommandError::new(ErrorKind::BadRequest, e.to_string()))?;
    let key = req.key.trim();
    if key.chars().any(char::is_control) || key.len() > 4096 {
        return Err(CommandError::new(
            ErrorKind::BadRequest,
            "The key must be a single line of at most 4096 characters.",
        ));
    }
    shell
        .secrets
        .set(spec.key_env, key)
        .map_err(|e| CommandError::new(ErrorKind::Unavailable, e.to_string()))?;
    view(&shell).await
}

/// Starts or stops the HTTP API to match `settings` (restarts it when the address changed).
pub async fn apply_http_api(shell: &Shell, settings: &Settings) -> CommandResult<()> {
    let mut running = shell.http_api.lock().await;
    let wanted = &settings.http_api;
    let matches = running
        .as_ref()
        .is_some_and(|api| api.requested.0 == wanted.host && api.requested.1 == wanted.port);
    if wanted.enabled && matches {
        return Ok(());
    }
    if let Some(api) = running.take() {
        api.stop().await;
    }
    if wanted.enabled {
        let api = RunningApi::start(shell.engine.clone(), &wanted.host, wanted.port)
            .await
            .map_err(|e| CommandError::new(ErrorKind::Unavailable, e))?;
        *running = Some(api);
    }
    Ok(())
}

async fn view(shell: &Shell) -> CommandResult<SettingsView> {
    let settings = shell.settings();
    let mut keys_set = Vec::new();
    for (provider, var) in PROVIDER_KEYS {
        let set = shell
            .secrets
            .get(var)
            .map_err(|e| CommandError::new(ErrorKind::Unavailable, e.to_string()))?
            .is_some();
        if set {
            keys_set.push(provider.to_string());
        }
    }
    let http_api = shell.http_api.lock().await.as_ref().map(|a| a.info.clone());
    Ok(SettingsView {
        restart_required: shell.applied.needs_restart_for(&settings),
        settings,
        keys_set,
        secret_store: shell.secrets.kind(),
        secret_store_note: shell.secrets.kind().note().map(str::to_string),
        http_api,
    })
}
