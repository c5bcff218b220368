//! Agent sessions: start one on a task, send follow-ups, stop the running step, subscribe to
//! its events from any `seq`, list and get the caller's sessions, destroy.
//!
//! A session owns its workspace, its sandbox, its agent task and its [`EventLog`]. It keeps
//! running when clients disconnect; once idle with nobody attached for the detach grace
//! period, it releases its sandbox and ends. Its workspace stays until its chat is deleted.

pub mod backend;
pub mod event_log;
mod runner;
mod slots;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::auth::User;
use crate::error::{EngineError, EngineResult};
use crate::events::SessionStatus;
use crate::store::NewChat;

pub use backend::SandboxBackend;
pub use event_log::{EventLog, EventStream};
pub(crate) use runner::SessionDeps;
pub(crate) use slots::SessionSlots;

/// Follow-ups that may wait behind a running turn.
pub const MAX_QUEUED_FOLLOW_UPS: usize = 16;

/// Longest task or follow-up accepted, in characters.
pub const MAX_MESSAGE_CHARS: usize = 100_000;

/// What a caller asks for when starting a session.
#[derive(Clone, Default, Deserialize, utoipa::ToSchema, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct StartSession {
    pub task: String,
    #[serde(default)]
    pub repo_url: Option<String>,
    #[serde(default)]
    pub branch: Option<String>,
    /// `anthropic`, `google` or `openai`; default from `DEFAULT_MODEL_PROVIDER`.
    #[serde(default, alias = "model_provider")]
    pub model_provider: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    /// Per-session LLM key (never stored).
    #[serde(default, alias = "api_key")]
    pub api_key: Option<String>,
    #[serde(default)]
    pub project_id: Option<String>,
    /// Forge token for cloning this repository (else the stored integration is used).
    #[serde(default)]
    pub git_token: Option<String>,
}

impl std::fmt::Debug for StartSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys and tokens are never printed.
        f.debug_struct("StartSession")
            .field("task", &self.task)
            .field(
                "repo_url",
                &self.repo_url.as_deref().map(crate::git::redact_url),
            )
            .field("branch", &self.branch)
            .field("model_provider", &self.model_provider)
            .field("model", &self.model)
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

/// A started session.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct StartedSession {
    pub session_id: String,
    pub chat_id: String,
}

/// A session as listed (the original's item shape plus `chatId` and `status`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    pub session_id: String,
    pub user_id: String,
    /// First 80 characters of the task.
    pub task: String,
    pub is_alive: bool,
    pub created_at: String,
    pub chat_id: String,
    #[schema(value_type = String)]
    pub status: SessionStatus,
}

enum Control {
    /// A follow-up, with the stop generation current when it was queued: a stop issued after
    /// it was queued cancels it too.
    FollowUp(String, u64),
    Shutdown,
}

/// Cancellation state of a session's turns. `stop` and the start of a turn take the same lock,
/// so a stop can never fall between two turns and be lost.
pub(crate) struct TurnControl {
    /// Cancels the current (or next) turn; replaced when a follow-up turn starts.
    pub(crate) current: CancellationToken,
    /// Incremented by every stop.
    pub(crate) stop_generation: u64,
}

pub(crate) struct LiveSession {
    id: String,
    chat_id: String,
    user: User,
    task: String,
    created_at: DateTime<Utc>,
    workspace: PathBuf,
    log: Arc<EventLog>,
    control: mpsc::UnboundedSender<Control>,
    /// Cancels the running turn (see [`TurnControl`]).
    turns: Mutex<TurnControl>,
    /// Cancelled once when the session is destroyed or the engine shuts down; aborts setup and
    /// every turn.
    shutdown: CancellationToken,
    status: watch::Sender<SessionStatus>,
    attached: AtomicUsize,
    /// Follow-ups sent but not yet started.
    queued_follow_ups: AtomicUsize,
    detached_since: Mutex<Option<Instant>>,
    done: watch::Receiver<bool>,
}

impl LiveSession {
    fn summary(&self) -> SessionSummary {
        let status = *self.status.borrow();
        SessionSummary {
            session_id: self.id.clone(),
            user_id: self.user.id.clone(),
            task: crate::events::truncate_chars(&self.task, 80),
            is_alive: !*self.done.borrow(),
            created_at: self
                .created_at
                .to_rfc3339_opts(SecondsFormat::Micros, false),
            chat_id: self.chat_id.clone(),
            status,
        }
    }
}

/// Decrements a session's attached-client count when dropped.
pub struct AttachGuard {
    session: Option<Arc<LiveSession>>,
}

impl Drop for AttachGuard {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            if s.attached.fetch_sub(1, Ordering::SeqCst) == 1 {
                if let Ok(mut since) = s.detached_since.lock() {
                    *since = Some(Instant::now());
                }
            }
        }
    }
}

/// An attachment to a session: where its events start and a guard that keeps it "attached".
pub struct Attachment {
    pub summary: SessionSummary,
    pub events: EventStream,
    pub guard: AttachGuard,
    /// Events up to this seq were already stored when attaching: they are a replay.
    pub replay_until: u64,
}

/// The session manager.
pub struct Sessions {
    deps: Arc<SessionDeps>,
}

/// Live sessions by id, shared between the manager and the session runners.
pub(crate) type LiveMap = Mutex<HashMap<String, Arc<LiveSession>>>;

impl Sessions {
    pub(crate) fn new(deps: Arc<SessionDeps>) -> Self {
        Self { deps }
    }

    /// Creates the session (chat row, workspace, event log) and starts the agent on the task.
    pub async fn start(&self, user: &User, req: StartSession) -> EngineResult<StartedSession> {
        let task = req.task.trim().to_string();
        if task.is_empty() {
            return Err(EngineError::bad_request("Missing required field: 'task'"));
        }
        if task.chars().count() > MAX_MESSAGE_CHARS {
            return Err(EngineError::bad_request(format!(
                "The task is too long (max {MAX_MESSAGE_CHARS} characters)."
            )));
        }
        // Resolve the model first: a bad provider or a missing key is the caller's error.
        let model = self.deps.resolve_model(&req)?;
        // Credentials in the URL's userinfo serve the clone only: the URL without them is what
        // is stored, shown in events, given to the model and pushed to.
        let (repo_url, url_credentials) = match req
            .repo_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            Some(url) => {
                let (clean, creds) =
                    crate::git::split_clone_url(url, self.deps.config.is_local_mode())
                        .map_err(|e| EngineError::bad_request(e.to_string()))?;
                (Some(clean), creds)
            }
            None => (None, None),
        };
        let repo_url = repo_url.as_deref();
        let branch = req
            .branch
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty());

        // Checked and reserved in one step: parallel starts cannot overshoot the limit. The
        // slot is held until the session has ended and released its sandbox; any failure
        // below gives it back.
        let slot = self
            .deps
            .slots
            .reserve(&user.id, self.deps.config.max_sessions_per_user)?;
        let session_id = uuid::Uuid::new_v4().to_string();
        let chat_id = uuid::Uuid::new_v4().to_string();
        let workspace =
            crate::workspace::session_workspace(&self.deps.workspace_base, &user.id, &session_id)?;
        let chat = self
            .deps
            .store
            .create_chat(
                user,
                NewChat {
                    id: chat_id.clone(),
                    agent_session_id: Some(session_id.clone()),
                    project_id: req.project_id.clone().filter(|p| !p.is_empty()),
                    title: Some(crate::events::truncate_chars(&task, 255)),
                    model_provider: Some(model.provider.to_string()),
                    model: Some(model.model.clone()),
                    repo_url: repo_url.map(str::to_string),
                    branch: branch.map(str::to_string),
                },
            )
            .await?;
        let log = EventLog::open(
            Arc::clone(&self.deps.store),
            user.clone(),
            chat.id.clone(),
            session_id.clone(),
        )
        .await?;

        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let (status_tx, _) = watch::channel(SessionStatus::Initializing);
        let (done_tx, done_rx) = watch::channel(false);
        let session = Arc::new(LiveSession {
            id: session_id.clone(),
            chat_id: chat.id.clone(),
            user: user.clone(),
            task: task.clone(),
            created_at: chat.created_at,
            workspace,
            log,
            control: control_tx,
            turns: Mutex::new(TurnControl {
                current: shutdown.child_token(),
                stop_generation: 0,
            }),
            shutdown,
            status: status_tx,
            attached: AtomicUsize::new(0),
            queued_follow_ups: AtomicUsize::new(0),
            detached_since: Mutex::new(Some(Instant::now())),
            done: done_rx,
        });
        self.deps
            .live
            .lock()
            .expect("sessions poisoned")
            .insert(session_id.clone(), Arc::clone(&session));

        let plan = runner::SessionPlan {
            task,
            repo_url: repo_url.map(str::to_string),
            branch: branch.map(str::to_string),
            git_credentials: req
                .git_token
                .filter(|t| !t.is_empty())
                .map(|token| crate::git::GitCredentials {
                    username: crate::git::default_username_for(repo_url.unwrap_or_default())
                        .to_string(),
                    token,
                })
                .or(url_credentials),
            model,
        };
        let deps = Arc::clone(&self.deps);
        let live_map = Arc::downgrade(&self.deps.live);
        tokio::spawn(async move {
            runner::run_session(deps, Arc::clone(&session), plan, control_rx).await;
            drop(slot);
            let _ = done_tx.send(true);
            if let Some(map) = live_map.upgrade() {
                map.lock().expect("sessions poisoned").remove(&session.id);
            }
        });
        Ok(StartedSession {
            session_id,
            chat_id: chat.id,
        })
    }

    fn find(&self, session_id: &str) -> Option<Arc<LiveSession>> {
        self.deps
            .live
            .lock()
            .expect("sessions poisoned")
            .get(session_id)
            .cloned()
    }

    /// A live session owned by `user`: 404 when unknown, 403 when another user's.
    fn owned(&self, user: &User, session_id: &str) -> EngineResult<Arc<LiveSession>> {
        let session = self
            .find(session_id)
            .ok_or_else(|| EngineError::not_found(format!("Session {session_id} not found.")))?;
        if session.user.id != user.id {
            return Err(EngineError::forbidden(
                "Not authorized to access this session.",
            ));
        }
        Ok(session)
    }

    /// The caller's live sessions, oldest first.
    pub fn list(&self, user: &User) -> Vec<SessionSummary> {
        let map = self.deps.live.lock().expect("sessions poisoned");
        let mut items: Vec<_> = map
            .values()
            .filter(|s| s.user.id == user.id)
            .map(|s| s.summary())
            .collect();
        items.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        items
    }

    /// One of the caller's sessions, live or finished (from its chat).
    pub async fn get(&self, user: &User, session_id: &str) -> EngineResult<SessionSummary> {
        if let Some(s) = self.find(session_id) {
            if s.user.id != user.id {
                return Err(EngineError::not_found(format!(
                    "Session {session_id} not found."
                )));
            }
            return Ok(s.summary());
        }
        let chat = self
            .deps
            .store
            .chat_by_session(user, session_id)
            .await?
            .ok_or_else(|| EngineError::not_found(format!("Session {session_id} not found.")))?;
        Ok(SessionSummary {
            session_id: session_id.to_string(),
            user_id: user.id.clone(),
            task: crate::events::truncate_chars(chat.title.as_deref().unwrap_or(""), 80),
            is_alive: false,
            created_at: chat
                .created_at
                .to_rfc3339_opts(SecondsFormat::Micros, false),
            chat_id: chat.id,
            status: SessionStatus::Stopped,
        })
    }

    /// Sends a follow-up message; it runs after the current step if one is running.
    pub fn follow_up(&self, user: &User, session_id: &str, content: &str) -> EngineResult<()> {
        let content = content.trim();
        if content.is_empty() {
            return Err(EngineError::bad_request("Empty content"));
        }
        if content.chars().count() > MAX_MESSAGE_CHARS {
            return Err(EngineError::bad_request(format!(
                "The message is too long (max {MAX_MESSAGE_CHARS} characters)."
            )));
        }
        let session = self.owned(user, session_id)?;
        // Reserve a place in the queue first (the runner gives it back when it takes the
        // follow-up): the queue never holds more than MAX_QUEUED_FOLLOW_UPS messages.
        session
            .queued_follow_ups
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |queued| {
                (queued < MAX_QUEUED_FOLLOW_UPS).then_some(queued + 1)
            })
            .map_err(|_| {
                EngineError::new(
                    crate::error::ErrorKind::TooManyRequests,
                    format!(
                        "Too many follow-ups are waiting ({MAX_QUEUED_FOLLOW_UPS} at most); \
                         wait for the agent to take them, or stop it."
                    ),
                )
            })?;
        let generation = session
            .turns
            .lock()
            .expect("session poisoned")
            .stop_generation;
        session
            .control
            .send(Control::FollowUp(content.to_string(), generation))
            .map_err(|_| {
                session.queued_follow_ups.fetch_sub(1, Ordering::SeqCst);
                EngineError::not_found(format!("Session {session_id} has ended."))
            })
    }

    /// The current status of one of the caller's live sessions.
    pub fn status(&self, user: &User, session_id: &str) -> EngineResult<SessionStatus> {
        Ok(*self.owned(user, session_id)?.status.borrow())
    }

    /// Interrupts the running step (LLM request or command). The session stays for follow-ups.
    pub fn stop(&self, user: &User, session_id: &str) -> EngineResult<()> {
        let session = self.owned(user, session_id)?;
        let mut turns = session.turns.lock().expect("session poisoned");
        turns.stop_generation += 1;
        turns.current.cancel();
        Ok(())
    }

    /// Stops the session and releases its sandbox; its chat and workspace stay.
    pub async fn destroy(&self, user: &User, session_id: &str) -> EngineResult<()> {
        let session = self.owned(user, session_id).map_err(|e| match e.kind {
            crate::error::ErrorKind::Forbidden => {
                EngineError::forbidden("Not authorized to stop this session.")
            }
            _ => e,
        })?;
        if Self::shutdown_session(&session).await {
            Ok(())
        } else {
            Err(EngineError::new(
                crate::error::ErrorKind::Conflict,
                "The session is still stopping; try again in a moment.",
            ))
        }
    }

    /// Cancels everything the session does and waits for it to end. Returns whether it ended.
    async fn shutdown_session(session: &Arc<LiveSession>) -> bool {
        session.shutdown.cancel();
        let _ = session.control.send(Control::Shutdown);
        let mut done = session.done.clone();
        tokio::time::timeout(std::time::Duration::from_secs(15), async {
            while !*done.borrow() {
                if done.changed().await.is_err() {
                    break;
                }
            }
        })
        .await
        .is_ok()
    }

    /// Attaches to a session's events after `since` (0 = from the start). Finished sessions
    /// replay their stored history and the stream ends.
    pub async fn attach(
        &self,
        user: &User,
        session_id: &str,
        since: u64,
    ) -> EngineResult<Attachment> {
        if let Some(session) = self.find(session_id) {
            if session.user.id != user.id {
                return Err(EngineError::forbidden(
                    "Not authorized to access this session.",
                ));
            }
            session.attached.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut d) = session.detached_since.lock() {
                *d = None;
            }
            let replay_until = session.log.last_persisted();
            let events = session.log.subscribe(since);
            return Ok(Attachment {
                summary: session.summary(),
                events,
                guard: AttachGuard {
                    session: Some(session),
                },
                replay_until,
            });
        }
        let summary = self.get(user, session_id).await?;
        let log = EventLog::closed(
            Arc::clone(&self.deps.store),
            user.clone(),
            summary.chat_id.clone(),
            session_id.to_string(),
        )
        .await?;
        Ok(Attachment {
            summary,
            replay_until: log.last_persisted(),
            events: log.subscribe(since),
            guard: AttachGuard { session: None },
        })
    }

    /// The host workspace of one of the caller's sessions (live or finished).
    pub async fn workspace_of(&self, user: &User, session_id: &str) -> EngineResult<PathBuf> {
        if !crate::workspace::is_safe_id(session_id) {
            return Err(EngineError::not_found(format!(
                "Session {session_id} not found."
            )));
        }
        if let Some(s) = self.find(session_id) {
            if s.user.id != user.id {
                return Err(EngineError::forbidden(
                    "Not authorized to access this session.",
                ));
            }
            return Ok(s.workspace.clone());
        }
        // Finished sessions: only if the chat is the caller's.
        self.deps
            .store
            .chat_by_session(user, session_id)
            .await?
            .ok_or_else(|| EngineError::not_found(format!("Session {session_id} not found.")))?;
        crate::workspace::session_workspace(&self.deps.workspace_base, &user.id, session_id)
    }

    /// Number of live sessions (all users).
    pub fn active_count(&self) -> usize {
        self.deps.live.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Waits until a session has ended (used by `lucid run` and tests).
    pub async fn wait_ended(&self, session_id: &str) {
        let Some(session) = self.find(session_id) else {
            return;
        };
        let mut done = session.done.clone();
        while !*done.borrow() {
            if done.changed().await.is_err() {
                break;
            }
        }
    }

    /// Stops every session and releases every sandbox (engine shutdown).
    pub async fn shutdown_all(&self) {
        let sessions: Vec<_> = self
            .deps
            .live
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        futures::future::join_all(sessions.iter().map(Self::shutdown_session)).await;
    }
}
