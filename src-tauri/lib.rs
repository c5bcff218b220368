//! Lucid desktop app: a Tauri 2 shell with the engine in-process. This file is the composition
//! root: plugins, the shell's state, the commands and the app's lifecycle. The shell is a thin
//! adapter (see `commands/`): every command is one engine call, and the window shows the same
//! UI (`ui/`) that `lucid serve` gives browsers, talking over Tauri IPC instead of HTTP.

pub mod account;
pub mod bindings;
pub mod commands;
pub mod error;
pub mod http_api;
pub mod notifications;
pub mod quit;
pub mod secrets;
pub mod settings;
pub mod state;
pub mod window_work;

pub use lucid_engine as engine;

use std::sync::Arc;

use tauri::Manager;

use crate::account::Account;

use crate::secrets::Secrets;
use crate::state::{Shell, ShellPaths};

/// Every command of the app (listed in `bindings.rs`), for the builder (and for tests on
/// Tauri's mock runtime).
pub fn handler<R: tauri::Runtime>() -> impl Fn(tauri::ipc::Invoke<R>) -> bool + Send + Sync + 'static
{
    let builder = std::sync::Arc::new(bindings::builder::<R>());
    move |invoke| (builder.invoke_handler())(invoke)
}

/// Sign-in links: those that arrive while running (a second instance's argument, forwarded by
/// the single-instance plugin) and the one this process was started with (cold start), queued
/// until the account is ready. `--sign-in <provider>` starts a sign-in at launch.
fn watch_sign_in_links<R: tauri::Runtime>(app: &mut tauri::App<R>, account: Arc<Account>) {
    use tauri_plugin_deep_link::DeepLinkExt;
    use tauri_plugin_opener::OpenerExt;
    let on_open = Arc::clone(&account);
    app.deep_link().on_open_url(move |event| {
        for url in event.urls() {
            let account = Arc::clone(&on_open);
            tauri::async_runtime::spawn(async move { account.on_link(url.to_string()).await });
        }
    });
    let at_start: Vec<String> = app
        .deep_link()
        .get_current()
        .ok()
        .flatten()
        .unwrap_or_default()
        .into_iter()
        .map(|u| u.to_string())
        .collect();
    let args: Vec<String> = std::env::args().collect();
    let sign_in_with = args
        .iter()
        .position(|a| a == "--sign-in")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let handle = app.handle().clone();
    tauri::async_runtime::spawn(async move {
        for link in at_start {
            account.on_link(link).await;
        }
        account.become_ready().await;
        if let Some(provider) = sign_in_with {
            match account.start(&provider) {
                Ok(url) => {
                    if let Err(e) = handle.opener().open_url(url, None::<&str>) {
                        tracing::warn!(error = %e, "no browser could be opened for the sign-in");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "--sign-in"),
            }
        }
    });
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
        // (With its `deep-link` feature it first hands a `lucid://` argument to the deep-link
        // plugin, see account.rs.)
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            if let Some(window) = app.get_webview_window("main") {
                let _ = window.unminimize();
                let _ = window.show();
                let _ = window.set_focus();
            }
        }))
        .plugin(tauri_plugin_deep_link::init())
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
            let account = Account::new(shell.engine.clone(), shell.session_keeper().cloned());
            app.manage(shell);
            app.manage(quit::QuitGate::for_app(app.handle().clone()));
            notifications::watch(
                app.handle().clone(),
                notifications::POLL_EVERY,
                notifications::show_system_notification,
            );
            app.manage(account.clone());
            let opener = app.handle().clone();
            app.manage(crate::account::SystemBrowser::new(move |url| {
                use tauri_plugin_opener::OpenerExt;
                opener
                    .opener()
                    .open_url(url, None::<&str>)
                    .map_err(|e| e.to_string())
            }));
            watch_sign_in_links(app, account);
            Ok(())
        })
        .invoke_handler(handler())
        .build(tauri::generate_context!())
        .expect("the Lucid window could not be created");

    // Asks before quitting with working sessions; on exit stops them and removes their
    // containers.
    app.run(|handle, event| quit::on_run_event(handle, &event));
}
