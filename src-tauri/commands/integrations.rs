//! GitHub / GitLab integrations and pull requests.

use lucid_engine::integrations::{
    BranchesResponse, CreatePrRequest, CreatePrResponse, IntegrationInfo, ReposResponse,
    SaveIntegrationRequest, SaveIntegrationResponse,
};
use tauri::State;

use crate::error::CommandResult;
use crate::state::Shell;

#[tauri::command]
#[specta::specta]
pub async fn list_integrations(shell: State<'_, Shell>) -> CommandResult<Vec<IntegrationInfo>> {
    Ok(shell.engine.integrations().list(&shell.user).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn save_integration(
    shell: State<'_, Shell>,
    req: SaveIntegrationRequest,
) -> CommandResult<SaveIntegrationResponse> {
    Ok(shell.engine.integrations().save(&shell.user, req).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn delete_integration(
    shell: State<'_, Shell>,
    provider: String,
) -> CommandResult<String> {
    Ok(shell
        .engine
        .integrations()
        .delete(&shell.user, &provider)
        .await?)
}

#[tauri::command]
#[specta::specta]
pub async fn list_repos(shell: State<'_, Shell>, provider: String) -> CommandResult<ReposResponse> {
    Ok(shell
        .engine
        .integrations()
        .repos(&shell.user, &provider)
        .await?)
}

#[tauri::command]
#[specta::specta]
pub async fn list_branches(
    shell: State<'_, Shell>,
    provider: String,
    full_name: String,
) -> CommandResult<BranchesResponse> {
    Ok(shell
        .engine
        .integrations()
        .branches(&shell.user, &provider, &full_name)
        .await?)
}

#[tauri::command]
#[specta::specta]
pub async fn create_pr(
    shell: State<'_, Shell>,
    provider: String,
    req: CreatePrRequest,
) -> CommandResult<CreatePrResponse> {
    Ok(shell.engine.create_pr(&shell.user, &provider, req).await?)
}
