//! What the engine reports about itself.

use lucid_engine::engine::ServiceInfo;
use tauri::State;

use crate::error::CommandResult;
use crate::state::Shell;

#[tauri::command]
pub async fn service_info(shell: State<'_, Shell>) -> CommandResult<ServiceInfo> {
    Ok(shell.engine.service_info().await)
}
