//! The app itself: quitting after the user agreed (see `quit.rs`).

use tauri::State;

use crate::error::CommandResult;
use crate::quit::QuitGate;

/// Quits the app: every session is stopped and its container removed. The window calls
/// this after asking the user (on `lucid://quit-requested`) or from a Quit action.
#[tauri::command]
#[specta::specta]
pub async fn quit_app(gate: State<'_, QuitGate>) -> CommandResult<()> {
    gate.quit();
    Ok(())
}
