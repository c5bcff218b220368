//! History: the user's chats.

use lucid_engine::chats::ChatDetail;
use lucid_engine::store::ChatSession;
use tauri::State;

use crate::error::CommandResult;
use crate::state::Shell;

#[tauri::command]
#[specta::specta]
pub async fn list_chats(
    shell: State<'_, Shell>,
    limit: Option<i64>,
    offset: Option<i64>,
) -> CommandResult<Vec<ChatSession>> {
    let user = shell.user().await?;
    Ok(shell.engine.chats().list(&user, limit, offset).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn get_chat(shell: State<'_, Shell>, chat_id: String) -> CommandResult<ChatDetail> {
    let user = shell.user().await?;
    Ok(shell.engine.chats().get(&user, &chat_id).await?)
}

#[tauri::command]
#[specta::specta]
pub async fn rename_chat(
    shell: State<'_, Shell>,
    chat_id: String,
    title: String,
) -> CommandResult<String> {
    let user = shell.user().await?;
    Ok(shell
        .engine
        .chats()
        .rename(&user, &chat_id, Some(&title))
        .await?)
}

#[tauri::command]
#[specta::specta]
pub async fn delete_chat(shell: State<'_, Shell>, chat_id: String) -> CommandResult<()> {
    let user = shell.user().await?;
    Ok(shell.engine.delete_chat(&user, &chat_id).await?)
}
