//! Desktop notifications: when one of the user's sessions finishes its turn (and waits for
//! the user's next message) or fails while the window is not focused, the system shows a
//! notification. The engine's sessions are watched by polling their listing, which neither
//! attaches to them (attaching keeps a session alive) nor costs anything between changes.

use std::collections::HashMap;
use std::time::Duration;

use lucid_engine::events::SessionStatus;
use lucid_engine::sessions::SessionSummary;
use tauri::{AppHandle, Manager, Runtime};

use crate::state::Shell;

/// How often the sessions are looked at.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// One notification to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub session_id: String,
    pub title: String,
    pub body: String,
}

/// The notification for a session that went from `before` (`None`: not seen before) to
/// `now`, or `None` when there is nothing to tell: the window has the user's attention, the
/// status did not change, or it is not an end of work (a stop is the user's own doing).
pub fn notice_for(
    before: Option<SessionStatus>,
    now: SessionStatus,
    window_focused: bool,
    session: &SessionSummary,
) -> Option<Notice> {
    if window_focused || before == Some(now) {
        return None;
    }
    let title = match now {
        SessionStatus::Completed => "Lucid is waiting for you",
        SessionStatus::Failed => "Lucid: the task failed",
        _ => return None,
    };
    let task = session.task.trim();
    let body = match now {
        SessionStatus::Completed if task.is_empty() => "The agent finished its turn.".to_string(),
        SessionStatus::Completed => format!("Finished its turn on: {task}"),
        _ if task.is_empty() => "Open Lucid to see what went wrong.".to_string(),
        _ => format!("{task} — open Lucid to see what went wrong."),
    };
    Some(Notice {
        session_id: session.session_id.clone(),
        title: title.to_string(),
        body,
    })
}

/// The statuses last seen, to notice changes between two listings.
#[derive(Debug, Default)]
pub struct SessionWatch {
    seen: HashMap<String, SessionStatus>,
    primed: bool,
}

impl SessionWatch {
    /// The notifications due since the previous listing. The first listing only records
    /// what is there.
    pub fn update(&mut self, sessions: &[SessionSummary], window_focused: bool) -> Vec<Notice> {
        let mut due = Vec::new();
        let mut seen = HashMap::with_capacity(sessions.len());
        for s in sessions {
            let before = self.seen.get(&s.session_id).copied();
            if self.primed {
                due.extend(notice_for(before, s.status, window_focused, s));
            }
            seen.insert(s.session_id.clone(), s.status);
        }
        self.seen = seen;
        self.primed = true;
        due
    }
}

/// Whether one of the app's windows has the keyboard focus.
pub fn window_focused<R: Runtime>(app: &AppHandle<R>) -> bool {
    app.webview_windows()
        .values()
        .any(|w| w.is_focused().unwrap_or(false))
}

/// Watches the shell's sessions every `every` and hands each due notification to `show`,
/// for as long as the app runs.
pub fn watch<R: Runtime>(
    app: AppHandle<R>,
    every: Duration,
    show: impl Fn(&AppHandle<R>, Notice) + Send + 'static,
) -> tauri::async_runtime::JoinHandle<()> {
    tauri::async_runtime::spawn(async move {
        let mut watch = SessionWatch::default();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(shell) = app.try_state::<Shell>() else {
                continue;
            };
            let Some(user) = shell.current_user() else {
                continue;
            };
            let sessions = shell.engine.sessions().list(&user);
            for notice in watch.update(&sessions, window_focused(&app)) {
                show(&app, notice);
            }
        }
    })
}

/// Shows a notification through the system (`tauri-plugin-notification`).
pub fn show_system_notification<R: Runtime>(app: &AppHandle<R>, notice: Notice) {
    use tauri_plugin_notification::NotificationExt;
    if let Err(e) = app
        .notification()
        .builder()
        .title(&notice.title)
        .body(&notice.body)
        .show()
    {
        tracing::warn!(session = %notice.session_id, error = %e, "could not show a notification");
    }
}
