//! The shell's commands as one list, with their TypeScript bindings: tauri-specta turns the
//! commands' Rust signatures (argument and return types, errors, channels) into
//! `ui/src/generated/commands.ts`, which the UI's Tauri transport calls. The same list
//! registers the commands with Tauri, so the app and the bindings cannot disagree;
//! `tests/desktop_bindings.rs` fails when the committed file is stale.

use std::path::Path;

use specta_typescript::Typescript;
use tauri::Runtime;
use tauri_specta::{collect_commands, Builder, ErrorHandlingMode};

use crate::commands;

/// Where the bindings live, relative to the repository root.
pub const BINDINGS_PATH: &str = "ui/src/generated/commands.ts";

/// Every command of the app.
pub fn builder<R: Runtime>() -> Builder<R> {
    Builder::<R>::new()
        .commands(collect_commands![
            commands::status::service_info,
            commands::status::engine_status,
            commands::sessions::start_session,
            commands::sessions::list_sessions,
            commands::sessions::get_session,
            commands::sessions::follow_up,
            commands::sessions::stop_session,
            commands::sessions::subscribe_session,
            commands::sessions::unsubscribe,
            commands::chats::list_chats,
            commands::chats::get_chat,
            commands::chats::rename_chat,
            commands::chats::delete_chat,
            commands::files::list_files,
            commands::files::read_file,
            commands::integrations::list_integrations,
            commands::integrations::save_integration,
            commands::integrations::delete_integration,
            commands::integrations::list_repos,
            commands::integrations::list_branches,
            commands::integrations::create_pr,
            commands::settings::get_settings,
            commands::settings::save_settings,
            commands::settings::set_provider_key,
            commands::app::quit_app,
        ])
        // Payloads of the shell's own events (see `quit.rs`).
        .typ::<crate::quit::QuitRequest>()
        .constant("QUIT_REQUESTED", crate::quit::QUIT_REQUESTED)
        // Errors reject the promise (as `CommandError`), like the HTTP transport's requests.
        .error_handling(ErrorHandlingMode::Throw)
        // Sequence numbers, sizes and counts stay far below 2^53.
        .dangerously_cast_bigints_to_number()
}

/// Writes the TypeScript bindings to `path`.
pub fn export(path: &Path) -> Result<(), String> {
    builder::<tauri::Wry>()
        .export(
            Typescript::default().header(
                "// Generated from the shell's commands (src-tauri/bindings.rs) by\n\
                 // `UPDATE_GENERATED=1 cargo test -p lucid-desktop --test desktop_bindings`. Do not edit.\n",
            ),
            path,
        )
        .map_err(|e| e.to_string())
}
