//! Sign-in (Supabase mode): each command is one call on the shell's `Account`, itself a thin
//! adapter over the engine's sign-in.

use std::sync::Arc;

use lucid_engine::ErrorKind;
use tauri::State;

use crate::account::{Account, AccountState, SystemBrowser};
use crate::error::{CommandError, CommandResult};

fn bad(message: String) -> CommandError {
    CommandError::new(ErrorKind::BadRequest, message)
}

/// The mode, the providers offered and the signed-in user.
#[tauri::command]
#[specta::specta]
pub fn account_state(account: State<'_, Arc<Account>>) -> AccountState {
    account.state()
}

/// Opens the system browser on the provider's sign-in; it comes back through `lucid://`
/// (or, with `loopback`, through a one-shot server on 127.0.0.1). Returns the URL.
#[tauri::command]
#[specta::specta]
pub async fn start_sign_in(
    browser: State<'_, SystemBrowser>,
    account: State<'_, Arc<Account>>,
    provider: String,
    loopback: Option<bool>,
) -> CommandResult<String> {
    let url = if loopback.unwrap_or(false) {
        account.start_loopback(&provider).await.map_err(bad)?
    } else {
        account.start(&provider).map_err(bad)?
    };
    browser.open(&url).map_err(|e| {
        CommandError::new(
            ErrorKind::Unavailable,
            format!("no browser could be opened: {e}"),
        )
    })?;
    Ok(url)
}

/// "Copy sign-in link": the URL of a new sign-in, for a browser of the user's choice.
#[tauri::command]
#[specta::specta]
pub fn sign_in_link(account: State<'_, Arc<Account>>, provider: String) -> CommandResult<String> {
    account.start(&provider).map_err(bad)
}

/// Revokes the session at Supabase Auth and forgets the refresh token.
#[tauri::command]
#[specta::specta]
pub async fn sign_out(account: State<'_, Arc<Account>>) -> CommandResult<()> {
    account
        .sign_out()
        .await
        .map_err(|e| CommandError::new(ErrorKind::Upstream, e))
}
