//! What the engine reports about itself.

use lucid_engine::engine::{EngineStatus, ServiceInfo};
use tauri::State;

use crate::error::CommandResult;
use crate::state::Shell;

/// The original's service information (`GET /`).
#[tauri::command]
#[specta::specta]
pub async fn service_info(shell: State<'_, Shell>) -> CommandResult<ServiceInfo> {
    Ok(shell.engine.service_info().await)
}

/// The engine's state and what is wrong with the setup, with fixes (`GET /api/v1/status`).
/// A provider whose key is in the app's credential store counts as configured.
#[tauri::command]
#[specta::specta]
pub async fn engine_status(shell: State<'_, Shell>) -> CommandResult<EngineStatus> {
    Ok(shell.engine.status().await)
}
