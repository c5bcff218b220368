//! The quit gate: closing the window (or quitting the app) while sessions are working asks
//! the UI first (`lucid://quit-requested`, answered by the `quit_app` command); once the user
//! agrees, or when nothing is working, the app exits, and on exit every session is stopped
//! and its container removed.

use std::sync::atomic::{AtomicBool, Ordering};

use lucid_engine::events::SessionStatus;
use serde::Serialize;
use tauri::{AppHandle, Emitter, Manager, RunEvent, Runtime, WindowEvent};

use crate::state::Shell;

/// The event the window receives when quitting needs the user's word.
pub const QUIT_REQUESTED: &str = "lucid://quit-requested";

/// Whether the user already agreed to quit, and how to quit.
pub struct QuitGate {
    confirmed: AtomicBool,
    quit: Box<dyn Fn() + Send + Sync>,
}

/// The payload of [`QUIT_REQUESTED`]: the sessions that would be stopped.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct QuitRequest {
    pub sessions: Vec<WorkingSession>,
}

#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct WorkingSession {
    pub session_id: String,
    pub task: String,
}

/// What to do with a request to close the window or quit.
#[derive(Debug, Clone, PartialEq)]
pub enum QuitDecision {
    /// Nothing is working, or the user agreed: go ahead.
    Proceed,
    /// Keep the app open and ask the user about these sessions.
    Ask(QuitRequest),
}

/// Sessions whose work quitting would cut short: starting, running or stopping. A session
/// that finished its turn and waits for a follow-up holds nothing the user would lose.
pub fn is_working(status: SessionStatus) -> bool {
    matches!(
        status,
        SessionStatus::Initializing
            | SessionStatus::Ready
            | SessionStatus::Running
            | SessionStatus::Stopping
    )
}

impl QuitGate {
    /// The gate of `app`.
    pub fn for_app<R: Runtime>(app: AppHandle<R>) -> Self {
        Self {
            confirmed: AtomicBool::new(false),
            quit: Box::new(move || close_all(&app)),
        }
    }

    /// Quits after the user agreed: closes the windows, which ends the app (see
    /// [`on_run_event`]).
    pub fn quit(&self) {
        self.confirm();
        (self.quit)();
    }

    pub fn decide(&self, shell: &Shell) -> QuitDecision {
        if self.confirmed.load(Ordering::SeqCst) {
            return QuitDecision::Proceed;
        }
        // Signed out (Supabase mode): nobody's sessions are shown, so none are asked about;
        // they are still stopped at exit.
        let Some(user) = shell.current_user() else {
            return QuitDecision::Proceed;
        };
        let sessions: Vec<_> = shell
            .engine
            .sessions()
            .list(&user)
            .into_iter()
            .filter(|s| is_working(s.status))
            .map(|s| WorkingSession {
                session_id: s.session_id,
                task: s.task,
            })
            .collect();
        if sessions.is_empty() {
            QuitDecision::Proceed
        } else {
            QuitDecision::Ask(QuitRequest { sessions })
        }
    }

    /// The user agreed to quit.
    pub fn confirm(&self) {
        self.confirmed.store(true, Ordering::SeqCst);
    }
}

fn close_all<R: Runtime>(app: &AppHandle<R>) {
    let windows = app.webview_windows();
    if windows.is_empty() {
        app.exit(0);
    }
    for window in windows.values() {
        if let Err(e) = window.close() {
            tracing::warn!(error = %e, "could not close a window; exiting");
            app.exit(0);
        }
    }
}

/// The app's lifecycle events: asks before a window closes or the app quits while sessions
/// are working, and on exit stops every session and removes its container.
pub fn on_run_event<R: Runtime>(app: &AppHandle<R>, event: &RunEvent) {
    match event {
        RunEvent::WindowEvent {
            event: WindowEvent::CloseRequested { api, .. },
            ..
        } if ask_first(app) => api.prevent_close(),
        // Reached when the last window closed (already asked) or something asked the app to
        // exit; ask only while a window can show the question.
        RunEvent::ExitRequested { api, .. }
            if !app.webview_windows().is_empty() && ask_first(app) =>
        {
            api.prevent_exit()
        }
        RunEvent::Exit => {
            if let Some(shell) = app.try_state::<Shell>() {
                tauri::async_runtime::block_on(async {
                    if let Some(api) = shell.http_api.lock().await.take() {
                        api.stop().await;
                    }
                    shell.engine.shutdown().await;
                });
            }
        }
        _ => {}
    }
}

/// True when quitting must wait for the user: then the window has been asked.
fn ask_first<R: Runtime>(app: &AppHandle<R>) -> bool {
    let (Some(gate), Some(shell)) = (app.try_state::<QuitGate>(), app.try_state::<Shell>()) else {
        return false;
    };
    match gate.decide(&shell) {
        QuitDecision::Proceed => false,
        QuitDecision::Ask(request) => {
            if let Err(e) = app.emit(QUIT_REQUESTED, &request) {
                tracing::warn!(error = %e, "could not ask the window about quitting; quitting");
                return false;
            }
            true
        }
    }
}
