//! The files of a session's workspace.

use lucid_engine::files::{FileContent, FileTree};
use tauri::State;

use crate::error::CommandResult;
use crate::state::Shell;

#[tauri::command]
#[specta::specta]
pub async fn list_files(shell: State<'_, Shell>, session_id: String) -> CommandResult<FileTree> {
    let user = shell.user().await?;
    Ok(shell.engine.list_files(&user, &session_id).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn read_file(
    shell: State<'_, Shell>,
    session_id: String,
    path: String,
) -> CommandResult<FileContent> {
    let user = shell.user().await?;
    Ok(shell.engine.read_file(&user, &session_id, &path).await?)
}
