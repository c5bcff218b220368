//! Lucid desktop app: a Tauri 2 shell with the engine in-process. This file is the composition
//! root: plugins, the shell's state, the commands and the app's lifecycle. The shell is a thin
//! adapter (see `commands/`): every command is one engine call, and the window shows the same
//! UI (`ui/`) that `lucid serve` gives browsers, talking over Tauri IPC instead of HTTP.

pub mod bindings;
pub mod commands;
pub mod error;
pub mod http_api;
pub mod notifications;
pub mod quit;
pub mod secrets;
pub mod settings;
pub mod state;

pub use lucid_engine as engine;

use tauri::Manager;

use crate::secrets::Secrets;
use crate::state::{Shell, ShellPaths};

/// Every command of the app (listed in `bindings.rs`), for the builder (and for tests on
/// Tauri's mock runtime).
pub fn handler<R: tauri::Runtime>() -> impl Fn(tauri::ipc::Invoke<R>) -> bool + Send + Sync + 'static
{
    let builder = std::sync::Arc::new(bindings::builder::<R>());
    move |invoke| (builder.invoke_handler())(invoke)
}

/// Runs the desktop app until it quits.
pub fn run() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,lucid_engine=info".into()),
        )
        .try_init();

    let app = tauri::Builder::default()
        // First, so a second launch hands over to this one before anything else starts.
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            if let Some(window) = app.get_webview_window("main") {
                let _ = window.unminimize();
                let _ = window.show();
                let _ = window.set_focus();
            }
        }))
        .plugin(tauri_plugin_opener::init())
        .plugin(tauri_plugin_notification::init())
        // The window's size and position are restored at the next start.
        .plugin(tauri_plugin_window_state::Builder::default().build())
        .setup(|app| {
            let paths = ShellPaths {
                data_dir: app.path().app_data_dir()?,
                settings_file: app.path().app_config_dir()?.join("settings.json"),
            };
            let secrets = Secrets::open_platform_store()?;
            let shell = tauri::async_runtime::block_on(Shell::start(paths, secrets, |name| {
                std::env::var(name).ok()
            }))?;
            let settings = shell.settings();
            if settings.http_api.enabled {
                if let Err(e) = tauri::async_runtime::block_on(commands::settings::apply_http_api(
                    &shell, &settings,
                )) {
                    tracing::warn!(error = %e, "the HTTP API could not be started");
                }
            }
            app.manage(shell);
            app.manage(quit::QuitGate::for_app(app.handle().clone()));
            notifications::watch(
                app.handle().clone(),
                notifications::POLL_EVERY,
                notifications::show_system_notification,
            );
            Ok(())
        })
        .invoke_handler(handler())
        .build(tauri::generate_context!())
        .expect("the Lucid window could not be created");

    // Asks before quitting with working sessions; on exit stops them and removes their
    // containers.
    app.run(|handle, event| quit::on_run_event(handle, &event));
}
