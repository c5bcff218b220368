//! Agent sessions: start one on a task, send follow-ups, stop the running step, subscribe to
//! its events from any `seq`, list and get the caller's sessions, destroy.
//!
//! A session owns its workspace, its sandbox, its agent task and its [`EventLog`]. It keeps
//! running when clients disconnect; once its agent is idle and nobody is attached for the
//! idle time (`LUCID_SANDBOX_IDLE_SECS`), it releases its sandbox and stops being live. Its
//! workspace and history stay until its chat is deleted, and a follow-up continues it at any
//! time (live, released, or from before an engine restart): a new sandbox on the same
//! workspace, the conversation rebuilt from the stored events ([`crate::agent::resume`]), the
//! same event log with `seq` continuing.
//!
//! Only live sessions hold one of the user's `LUCID_MAX_SESSIONS_PER_USER` slots; at the
//! limit, the user's idle sessions that nobody follows are released (oldest first) before a
//! start or a continuation is refused.

pub mod backend;
pub mod event_log;
mod partial_text;
mod runner;
mod slots;
pub mod status;
pub mod title;
pub mod warm;

use std::collections::{HashMap, HashSet};
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
use slots::SessionSlot;
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
    /// The repository the session works on (without credentials), if any.
    pub repository: Option<String>,
    /// The branch it was cloned at (`None`: the repository's default branch).
    pub branch: Option<String>,
}

/// Why a follow-up could not be queued on a live session.
enum QueueError {
    /// Refused for the caller (too many waiting).
    Refused(EngineError),
    /// The session is ending.
    Ended,
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
    repo_url: Option<String>,
    branch: Option<String>,
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
    /// When the agent last stopped working (or the session went live).
    last_active: Mutex<Instant>,
    done: watch::Receiver<bool>,
}

/// What a new [`LiveSession`] is made of.
struct NewLive {
    id: String,
    chat_id: String,
    user: User,
    task: String,
    created_at: DateTime<Utc>,
    repo_url: Option<String>,
    branch: Option<String>,
    workspace: PathBuf,
}

/// A session just made live, with the ends its runner holds.
type MadeLive = (
    Arc<LiveSession>,
    mpsc::UnboundedReceiver<Control>,
    watch::Sender<bool>,
);

impl LiveSession {
    fn new(n: NewLive, log: Arc<EventLog>) -> MadeLive {
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let (status_tx, _) = watch::channel(SessionStatus::Initializing);
        let (done_tx, done_rx) = watch::channel(false);
        let session = Arc::new(LiveSession {
            id: n.id,
            chat_id: n.chat_id,
            user: n.user,
            task: n.task,
            created_at: n.created_at,
            repo_url: n.repo_url,
            branch: n.branch,
            workspace: n.workspace,
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
            last_active: Mutex::new(Instant::now()),
            done: done_rx,
        });
        (session, control_rx, done_tx)
    }

    /// Whether the agent is working (setting up, running a turn, or with follow-ups waiting).
    fn is_working(&self) -> bool {
        self.queued_follow_ups.load(Ordering::SeqCst) > 0
            || matches!(
                *self.status.borrow(),
                SessionStatus::Initializing | SessionStatus::Ready | SessionStatus::Running
            )
    }

    /// Since when the session has been idle with nobody attached, if it is.
    fn idle_detached_since(&self) -> Option<Instant> {
        if self.attached.load(Ordering::SeqCst) > 0 || self.is_working() || *self.done.borrow() {
            return None;
        }
        let detached = self.detached_since.lock().ok().and_then(|d| *d)?;
        let active = self.last_active.lock().map(|a| *a).ok()?;
        Some(detached.max(active))
    }

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
            repository: self.repo_url.clone(),
            branch: self.branch.clone(),
        }
    }
}

/// Removes `session` from the live map unless a newer session with its id replaced it.
pub(crate) fn remove_live(map: &LiveMap, session: &Arc<LiveSession>) {
    if let Ok(mut map) = map.lock() {
        if map
            .get(&session.id)
            .is_some_and(|s| Arc::ptr_eq(s, session))
        {
            map.remove(&session.id);
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
    /// Continuations of sessions that are not live take turns: a session is never made live
    /// twice.
    continuing: tokio::sync::Mutex<()>,
}

/// Live sessions by id, shared between the manager and the session runners.
pub(crate) type LiveMap = Mutex<HashMap<String, Arc<LiveSession>>>;

impl Sessions {
    pub(crate) fn new(deps: Arc<SessionDeps>) -> Self {
        Self {
            deps,
            continuing: tokio::sync::Mutex::new(()),
        }
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
        // slot is held while the session is live; any failure below gives it back.
        let slot = self.reserve_slot(user).await?;
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
        if self.deps.config.chat_titles {
            title::spawn(title::TitleJob {
                store: Arc::clone(&self.deps.store),
                user: user.clone(),
                chat_id: chat.id.clone(),
                initial_title: chat.title.clone().unwrap_or_default(),
                task: task.clone(),
                client: Arc::clone(&model.client),
                model: model.model.clone(),
            });
        }
        let (session, control_rx, done_tx) = self
            .make_live(NewLive {
                id: session_id.clone(),
                chat_id: chat.id.clone(),
                user: user.clone(),
                task: task.clone(),
                created_at: chat.created_at,
                repo_url: repo_url.map(str::to_string),
                branch: branch.map(str::to_string),
                workspace,
            })
            .await?;

        let plan = runner::SessionPlan {
            task,
            continued: false,
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
        self.spawn_runner(session, plan, slot, control_rx, done_tx);
        Ok(StartedSession {
            session_id,
            chat_id: chat.id,
        })
    }

    /// Opens the session's event log (continuing it when the session has history), makes the
    /// session live and puts it in the live map.
    async fn make_live(&self, n: NewLive) -> EngineResult<MadeLive> {
        let log = EventLog::open(
            Arc::clone(&self.deps.store),
            n.user.clone(),
            n.chat_id.clone(),
            n.id.clone(),
        )
        .await?;
        let made = LiveSession::new(n, log);
        self.deps
            .live
            .lock()
            .expect("sessions poisoned")
            .insert(made.0.id.clone(), Arc::clone(&made.0));
        Ok(made)
    }

    /// Runs a live session until it ends, then gives its slot back and leaves the live map.
    fn spawn_runner(
        &self,
        session: Arc<LiveSession>,
        plan: runner::SessionPlan,
        slot: SessionSlot,
        control_rx: mpsc::UnboundedReceiver<Control>,
        done_tx: watch::Sender<bool>,
    ) {
        let deps = Arc::clone(&self.deps);
        let live_map = Arc::downgrade(&self.deps.live);
        tokio::spawn(async move {
            runner::run_session(deps, Arc::clone(&session), plan, control_rx).await;
            drop(slot);
            if let Some(map) = live_map.upgrade() {
                remove_live(&map, &session);
            }
            let _ = done_tx.send(true);
        });
    }

    /// Reserves one of the user's session slots. At the limit, the user's idle sessions that
    /// nobody follows release their sandboxes (oldest first) until a slot is free; only when
    /// none is left is the start refused.
    async fn reserve_slot(&self, user: &User) -> EngineResult<SessionSlot> {
        let limit = self.deps.config.max_sessions_per_user;
        let mut released = HashSet::new();
        loop {
            let refused = match self.deps.slots.reserve(&user.id, limit) {
                Ok(slot) => return Ok(slot),
                Err(refused) => refused,
            };
            let oldest_idle = {
                let map = self.deps.live.lock().expect("sessions poisoned");
                map.values()
                    .filter(|s| s.user.id == user.id && !released.contains(&s.id))
                    .filter_map(|s| s.idle_detached_since().map(|t| (t, Arc::clone(s))))
                    .min_by_key(|(t, _)| *t)
                    .map(|(_, s)| s)
            };
            let Some(idle) = oldest_idle else {
                return Err(refused);
            };
            tracing::info!(session = %idle.id, "releasing an idle session's sandbox for a new one");
            released.insert(idle.id.clone());
            Self::shutdown_session(&idle).await;
        }
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

    /// One of the caller's sessions, live or not (then from its chat, with its last stored
    /// status).
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
        let status = status::last_stored(self.deps.store.as_ref(), user, &chat.id)
            .await?
            .unwrap_or(SessionStatus::Stopped);
        Ok(SessionSummary {
            session_id: session_id.to_string(),
            user_id: user.id.clone(),
            task: crate::events::truncate_chars(chat.title.as_deref().unwrap_or(""), 80),
            is_alive: false,
            created_at: chat
                .created_at
                .to_rfc3339_opts(SecondsFormat::Micros, false),
            chat_id: chat.id,
            status,
            repository: chat.repo_url,
            branch: chat.branch,
        })
    }

    /// Sends a follow-up message to one of the caller's sessions. A live session runs it after
    /// the current step; any other one (idle and released, from before an engine restart) is
    /// continued: see [`Sessions::follow_up_with_key`].
    pub async fn follow_up(
        &self,
        user: &User,
        session_id: &str,
        content: &str,
    ) -> EngineResult<()> {
        self.follow_up_with_key(user, session_id, content, None)
            .await
    }

    /// [`Sessions::follow_up`] with an LLM key for continuing a session that was started with
    /// its own key (keys given with a task are never stored, so a session that is no longer
    /// live needs it again unless the engine has one for its provider).
    pub async fn follow_up_with_key(
        &self,
        user: &User,
        session_id: &str,
        content: &str,
        api_key: Option<&str>,
    ) -> EngineResult<()> {
        let content = content.trim();
        if content.is_empty() {
            return Err(EngineError::bad_request("Empty content"));
        }
        if content.chars().count() > MAX_MESSAGE_CHARS {
            return Err(EngineError::bad_request(format!(
                "The message is too long (max {MAX_MESSAGE_CHARS} characters)."
            )));
        }
        if let Some(session) = self.find(session_id) {
            if session.user.id != user.id {
                return Err(EngineError::forbidden(
                    "Not authorized to access this session.",
                ));
            }
            match Self::queue_follow_up(&session, content) {
                Err(QueueError::Refused(e)) => return Err(e),
                Ok(()) => return Ok(()),
                // It is ending right now: continue it once it has.
                Err(QueueError::Ended) => Self::wait_done(&session).await,
            }
        }
        self.continue_session(user, session_id, content, api_key)
            .await
    }

    /// Queues a follow-up on a live session.
    fn queue_follow_up(session: &Arc<LiveSession>, content: &str) -> Result<(), QueueError> {
        // Reserve a place in the queue first (the runner gives it back when it takes the
        // follow-up): the queue never holds more than MAX_QUEUED_FOLLOW_UPS messages.
        session
            .queued_follow_ups
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |queued| {
                (queued < MAX_QUEUED_FOLLOW_UPS).then_some(queued + 1)
            })
            .map_err(|_| {
                QueueError::Refused(EngineError::new(
                    crate::error::ErrorKind::TooManyRequests,
                    format!(
                        "Too many follow-ups are waiting ({MAX_QUEUED_FOLLOW_UPS} at most); \
                         wait for the agent to take them, or stop it."
                    ),
                ))
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
                QueueError::Ended
            })
    }

    /// Makes a session that is not live live again on `content`: a sandbox on its workspace,
    /// its conversation rebuilt from its events, its log continued.
    async fn continue_session(
        &self,
        user: &User,
        session_id: &str,
        content: &str,
        api_key: Option<&str>,
    ) -> EngineResult<()> {
        let not_found = || EngineError::not_found(format!("Session {session_id} not found."));
        if !crate::workspace::is_safe_id(session_id) {
            return Err(not_found());
        }
        let _turn = self.continuing.lock().await;
        // Another request may have continued it meanwhile.
        if let Some(session) = self.find(session_id) {
            if session.user.id != user.id {
                return Err(not_found());
            }
            return Self::queue_follow_up(&session, content).map_err(|e| match e {
                QueueError::Refused(e) => e,
                QueueError::Ended => EngineError::new(
                    crate::error::ErrorKind::Conflict,
                    "The session is ending; try again in a moment.",
                ),
            });
        }
        let chat = self
            .deps
            .store
            .chat_by_session(user, session_id)
            .await?
            .ok_or_else(not_found)?;
        let model = self.deps.resolve_continued_model(&chat, api_key)?;
        let slot = self.reserve_slot(user).await?;
        let workspace =
            crate::workspace::session_workspace(&self.deps.workspace_base, &user.id, session_id)?;
        let (session, control_rx, done_tx) = self
            .make_live(NewLive {
                id: session_id.to_string(),
                chat_id: chat.id.clone(),
                user: user.clone(),
                task: chat.title.clone().unwrap_or_default(),
                created_at: chat.created_at,
                repo_url: chat.repo_url.clone(),
                branch: chat.branch.clone(),
                workspace,
            })
            .await?;
        if let Err(e) = self.deps.store.set_chat_active(user, &chat.id, true).await {
            tracing::warn!(session = %session_id, error = %e, "could not mark the chat active");
        }
        tracing::info!(session = %session_id, "continuing a session");
        let plan = runner::SessionPlan {
            task: content.to_string(),
            continued: true,
            repo_url: chat.repo_url,
            branch: chat.branch,
            git_credentials: None,
            model,
        };
        self.spawn_runner(session, plan, slot, control_rx, done_tx);
        Ok(())
    }

    async fn wait_done(session: &Arc<LiveSession>) {
        let mut done = session.done.clone();
        while !*done.borrow() {
            if done.changed().await.is_err() {
                break;
            }
        }
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

    /// Stops every live session of one user and releases their sandboxes (the user signed
    /// out of the app); their chats and workspaces stay, and each can be continued later.
    /// Returns how many were stopped.
    pub async fn shutdown_user(&self, user_id: &str) -> usize {
        let sessions: Vec<_> = self
            .deps
            .live
            .lock()
            .map(|m| {
                m.values()
                    .filter(|s| s.user.id == user_id)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        futures::future::join_all(sessions.iter().map(Self::shutdown_session)).await;
        sessions.len()
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
        if let Some(warm) = &self.deps.warm {
            warm.shutdown().await;
        }
    }

    /// Whether a pre-started sandbox is waiting for the next new session
    /// (`LUCID_WARM_SANDBOX`).
    pub fn warm_sandbox_ready(&self) -> bool {
        self.deps.warm.as_ref().is_some_and(|w| w.is_ready())
    }
}
