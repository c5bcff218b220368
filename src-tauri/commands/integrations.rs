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
    let user = shell.user().await?;
    Ok(shell.engine.integrations().list(&user).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn save_integration(
    shell: State<'_, Shell>,
    req: SaveIntegrationRequest,
) -> CommandResult<SaveIntegrationResponse> {
    let user = shell.user().await?;
    Ok(shell.engine.integrations().save(&user, req).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn delete_integration(
    shell: State<'_, Shell>,
    provider: String,
) -> CommandResult<String> {
    let user = shell.user().await?;
    Ok(shell.engine.integrations().delete(&user, &provider).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn list_repos(shell: State<'_, Shell>, provider: String) -> CommandResult<ReposResponse> {
    let user = shell.user().await?;
    Ok(shell.engine.integrations().repos(&user, &provider).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn list_branches(
    shell: State<'_, Shell>,
    provider: String,
    full_name: String,
) -> CommandResult<BranchesResponse> {
    let user = shell.user().await?;
    Ok(shell
        .engine
        .integrations()
        .branches(&user, &provider, &full_name)
        .await?)
}

#[tauri::command]
#[specta::specta]
pub async fn create_pr(
    shell: State<'_, Shell>,
    provider: String,
    req: CreatePrRequest,
) -> CommandResult<CreatePrResponse> {
    let user = shell.user().await?;
    Ok(shell.engine.create_pr(&user, &provider, req).await?)
}
