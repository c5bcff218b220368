//! The app itself: quitting after the user agreed (see `quit.rs`).

use tauri::{AppHandle, Runtime};

use crate::error::CommandResult;

/// Quits the app: every session is stopped and its container removed. The window calls
/// this after asking the user (on `lucid://quit-requested`) or from a Quit action.
#[tauri::command]
pub async fn quit_app<R: Runtime>(app: AppHandle<R>) -> CommandResult<()> {
    crate::quit::quit(&app);
    Ok(())
}
