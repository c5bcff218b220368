//! The life of one session: prepare the workspace (clone), start the sandbox, run the agent on
//! the task, then on each follow-up, until shut down or idle and detached for too long.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Control, LiveMap, LiveSession, StartSession};
use crate::agent::editor::Editor;
use crate::agent::prompt::{system_prompt, PromptContext};
use crate::agent::{Agent, AgentLimits, TurnOutcome};
use crate::config::Config;
use crate::error::{EngineError, EngineResult};
use crate::events::{EventKind, SessionStatus};
use crate::integrations::Integrations;
use crate::llm::provider::ResolvedModel;
use crate::sandbox::{Sandbox, SandboxKind};
use crate::store::Store;

use super::backend::SandboxBackend;

/// Everything a session needs from the engine.
pub(crate) struct SessionDeps {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub backend: Arc<SandboxBackend>,
    pub integrations: Arc<Integrations>,
    pub http: reqwest::Client,
    pub workspace_base: PathBuf,
    pub live: Arc<LiveMap>,
    /// Running sessions per user (see [`super::SessionSlots`]).
    pub slots: Arc<super::SessionSlots>,
    /// The pre-started sandbox for the next new session, when enabled.
    pub warm: Option<Arc<super::warm::WarmSandbox>>,
}

impl SessionDeps {
    pub fn resolve_model(&self, req: &StartSession) -> EngineResult<ResolvedModel> {
        crate::llm::provider::resolve_provider(
            &self.config,
            req.model_provider
                .as_deref()
                .filter(|p| !p.trim().is_empty()),
            req.model.as_deref().filter(|m| !m.trim().is_empty()),
            req.api_key.as_deref().filter(|k| !k.trim().is_empty()),
            self.http.clone(),
        )
        .map_err(|e| EngineError::bad_request(e.to_string()))
    }
}

impl SessionDeps {
    /// The model of a session being continued, as its chat recorded it. A key given with the
    /// task was never stored: without one from the engine's settings the caller must send it
    /// again.
    pub fn resolve_continued_model(
        &self,
        chat: &crate::store::ChatSession,
        api_key: Option<&str>,
    ) -> EngineResult<ResolvedModel> {
        crate::llm::provider::resolve_provider(
            &self.config,
            chat.model_provider.as_deref(),
            chat.model.as_deref(),
            api_key.filter(|k| !k.trim().is_empty()),
            self.http.clone(),
        )
        .map_err(|e| match e {
            crate::llm::LlmError::MissingKey { provider, env } => EngineError::new(
                crate::error::ErrorKind::Unprocessable,
                format!(
                    "This session uses {provider} with an API key that was given with its task; \
                     Lucid never stores such keys. Send the key again with this message \
                     (`apiKey`), or set {env} for the engine."
                ),
            ),
            e => EngineError::bad_request(e.to_string()),
        })
    }
}

pub(crate) struct SessionPlan {
    /// The first message: the task of a new session, or the follow-up that continues one.
    pub task: String,
    /// Continuing a session that was not live: its workspace and history exist.
    pub continued: bool,
    pub repo_url: Option<String>,
    pub branch: Option<String>,
    /// The request's token, else credentials from the repository URL's userinfo.
    pub git_credentials: Option<crate::git::GitCredentials>,
    pub model: ResolvedModel,
}

/// Emits an event, logging (not failing) if the log is already closed.
async fn emit(session: &LiveSession, kind: EventKind) {
    if let Err(e) = session.log.emit(kind).await {
        tracing::warn!(session = %session.id, error = %e, "event dropped after log close");
    }
}

async fn set_status(session: &LiveSession, status: SessionStatus, message: impl Into<String>) {
    session.status.send_replace(status);
    emit(
        session,
        EventKind::Status {
            status,
            message: message.into(),
        },
    )
    .await;
}

pub(crate) async fn run_session(
    deps: Arc<SessionDeps>,
    session: Arc<LiveSession>,
    plan: SessionPlan,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    // A chat deleted underneath the session (its event log can no longer be written) ends
    // the session like a destroy: setup, the running turn and the idle wait all stop.
    let chat_watch = {
        let session = Arc::clone(&session);
        tokio::spawn(async move {
            session.log.chat_gone().await;
            tracing::warn!(session = %session.id, "the session's chat was deleted; ending it");
            session.shutdown.cancel();
            let _ = session.control.send(Control::Shutdown);
        })
    };
    // The original's order: `initializing` first (said once), then `ready`, then the task.
    set_status(
        &session,
        SessionStatus::Initializing,
        if plan.continued {
            "Continuing the session: starting its sandbox..."
        } else {
            "Setting up agent workspace..."
        },
    )
    .await;
    let task_event = EventKind::UserMessage {
        content: plan.task.clone(),
        follow_up: plan.continued,
    };

    let mut agent = match prepare(&deps, &session, &plan).await {
        Ok(agent) => Some(agent),
        Err(message) => {
            // The task stays in the history even when setup failed.
            emit(&session, task_event.clone()).await;
            fail(&session, message).await;
            None
        }
    };

    if let Some(agent) = agent.as_mut() {
        set_status(
            &session,
            SessionStatus::Ready,
            if plan.continued {
                "Agent session ready. Continuing..."
            } else {
                "Agent session ready. Starting task..."
            },
        )
        .await;
        emit(&session, task_event).await;
        // The first turn uses the token created with the session, so a stop issued during
        // setup stops it.
        let first = session
            .turns
            .lock()
            .expect("session poisoned")
            .current
            .clone();
        run_turn(
            &session,
            agent,
            &plan.task,
            deps.config.conversation_timeout,
            first,
        )
        .await;
        mark_active(&session);
        idle_loop(&deps, &session, agent, &mut control).await;
    }
    // Nothing queued from now on is processed: refuse it instead of dropping it silently.
    control.close();
    if let Some(agent) = agent.as_mut() {
        if let Err(e) = agent.sandbox().shutdown().await {
            tracing::warn!(session = %session.id, error = %e, "sandbox shutdown failed");
        }
    }

    session.log.close().await;
    chat_watch.abort();
    if let Err(e) = deps
        .store
        .set_chat_active(&session.user, &session.chat_id, false)
        .await
    {
        tracing::warn!(session = %session.id, error = %e, "could not mark chat inactive");
    }
    // Drop the session from the live map (the manager also does this when the task ends).
    super::remove_live(&deps.live, &session);
}

/// Records that the agent stopped working just now (the idle time counts from here).
fn mark_active(session: &LiveSession) {
    if let Ok(mut last) = session.last_active.lock() {
        *last = Instant::now();
    }
}

const STOPPED_DURING_SETUP: &str = "The session was stopped during setup.";

/// Clones the repository (if any), starts the sandbox and builds the agent. A stop (or
/// destroy) during setup ends it early; a sandbox being created is never abandoned halfway:
/// its creation completes and it is released before this returns, so no container is left.
async fn prepare(
    deps: &SessionDeps,
    session: &Arc<LiveSession>,
    plan: &SessionPlan,
) -> Result<Agent, String> {
    // A new session takes the warm sandbox, if one is ready: its empty workspace becomes the
    // session's before anything is cloned into it.
    let warm = match (&deps.warm, plan.continued) {
        (Some(warm), false) => warm.take(&session.workspace).await,
        _ => None,
    };
    let prepared = tokio::select! {
        r = prepare_workspace(deps, session, plan) => r,
        _ = session.shutdown.cancelled() => Err(STOPPED_DURING_SETUP.to_string()),
    };
    if let Err(message) = prepared {
        if let Some(sandbox) = warm {
            if let Err(e) = sandbox.shutdown().await {
                tracing::warn!(session = %session.id, error = %e, "sandbox shutdown failed");
            }
        }
        return Err(message);
    }
    let sandbox = match warm {
        Some(sandbox) => {
            if plan.repo_url.is_some() {
                deps.backend.hand_over_workspace(&session.workspace).await;
            }
            sandbox
        }
        None => start_sandbox(deps, session).await?,
    };
    if session.shutdown.is_cancelled() {
        if let Err(e) = sandbox.shutdown().await {
            tracing::warn!(session = %session.id, error = %e, "sandbox shutdown failed");
        }
        return Err(STOPPED_DURING_SETUP.to_string());
    }
    let restored = if plan.continued {
        match crate::agent::resume::load(deps.store.as_ref(), &session.user, &session.chat_id).await
        {
            Ok(restored) => Some(restored),
            Err(e) => {
                if let Err(e) = sandbox.shutdown().await {
                    tracing::warn!(session = %session.id, error = %e, "sandbox shutdown failed");
                }
                return Err(format!(
                    "Could not read the session's history: {}",
                    e.message
                ));
            }
        }
    } else {
        None
    };
    let workspace_path = sandbox.workspace_path().to_string();
    let prompt = system_prompt(&PromptContext {
        workspace_path: workspace_path.clone(),
        sandbox: sandbox.kind(),
        repo_url: plan.repo_url.clone(),
        branch: plan.branch.clone(),
        network: deps.config.sandbox.network.clone(),
    });
    let editor = Editor::new(session.workspace.clone(), workspace_path);
    let mut agent = Agent::new(
        Arc::clone(&plan.model.client),
        plan.model.model.clone(),
        prompt,
        sandbox,
        editor,
        AgentLimits {
            max_iterations: deps.config.max_iterations,
            turn_timeout: deps.config.conversation_timeout,
            cost_budget_usd: deps.config.session_budget_usd,
            context_window: deps.config.context_window,
            thinking_budget: deps.config.thinking_budget,
            ..AgentLimits::default()
        },
    );
    if let Some(restored) = restored {
        if let Err(e) = agent.restore(restored, session.log.as_ref()).await {
            if let Err(e) = agent.sandbox().shutdown().await {
                tracing::warn!(session = %session.id, error = %e, "sandbox shutdown failed");
            }
            return Err(format!("Could not continue the session: {}", e.message));
        }
    }
    Ok(agent)
}

/// Creates the workspace and clones the repository into it (no container involved).
async fn prepare_workspace(
    deps: &SessionDeps,
    session: &Arc<LiveSession>,
    plan: &SessionPlan,
) -> Result<(), String> {
    std::fs::create_dir_all(&session.workspace)
        .map_err(|e| format!("Could not create the workspace: {e}"))?;

    // A continued session works on its workspace as it was: nothing is cloned again.
    if let Some(url) = plan.repo_url.as_ref().filter(|_| !plan.continued) {
        emit(
            session,
            EventKind::Progress {
                message: format!("Cloning {url}..."),
            },
        )
        .await;
        let creds = clone_credentials(deps, session, url, plan.git_credentials.as_ref()).await;
        let (progress, forwarder) = progress_forwarder(session);
        let private = crate::workspace::session_private_repo(
            &deps.config.data_dir,
            &session.user.id,
            &session.id,
        )
        .map_err(|e| e.message)?;
        let cloned = crate::git::Git::new(crate::git::GitOptions {
            outbound: crate::outbound::OutboundPolicy::from_config(&deps.config),
            ..Default::default()
        })
        .clone_for_session(
            url,
            plan.branch.as_deref(),
            &private,
            &session.workspace,
            creds.as_ref(),
            progress,
        )
        .await;
        let _ = forwarder.await;
        cloned.map_err(|e| format!("Could not clone {url}: {e}"))?;
    }
    Ok(())
}

async fn start_sandbox(
    deps: &SessionDeps,
    session: &Arc<LiveSession>,
) -> Result<Arc<dyn Sandbox>, String> {
    let (progress, forwarder) = progress_forwarder(session);
    let created = deps
        .backend
        .create(
            &session.id,
            &session.user.id,
            &session.workspace,
            &progress,
            &session.shutdown,
        )
        .await;
    drop(progress);
    let _ = forwarder.await;
    let sandbox = created.map_err(|e| match e {
        crate::sandbox::SandboxError::Cancelled => STOPPED_DURING_SETUP.to_string(),
        e => format!("Could not start the sandbox: {e}"),
    })?;
    if sandbox.kind() == SandboxKind::Local {
        emit(
            session,
            EventKind::Progress {
                message: "Running without a sandbox (SANDBOX_MODE=local): commands run \
                          directly on this machine."
                    .into(),
            },
        )
        .await;
    }
    Ok(sandbox)
}

/// A progress callback for setup steps and the task that turns its lines into events, in
/// order and coalesced (a burst of lines, e.g. an image pull, keeps only its latest line).
/// Drop the callback, then await the task, before emitting anything else.
fn progress_forwarder(
    session: &Arc<LiveSession>,
) -> (
    impl Fn(String) + Send + Sync + 'static,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let session = Arc::clone(session);
    let task = tokio::spawn(async move {
        while let Some(mut line) = rx.recv().await {
            while let Ok(newer) = rx.try_recv() {
                line = newer;
            }
            emit(&session, EventKind::Progress { message: line }).await;
        }
    });
    (move |line: String| drop(tx.send(line)), task)
}

async fn clone_credentials(
    deps: &SessionDeps,
    session: &LiveSession,
    url: &str,
    given: Option<&crate::git::GitCredentials>,
) -> Option<crate::git::GitCredentials> {
    if let Some(creds) = given {
        return Some(creds.clone());
    }
    match deps
        .integrations
        .credentials_for_repo_url(&session.user, url)
        .await
    {
        Ok(found) => found.map(|c| c.into_git_credentials()),
        Err(e) => {
            tracing::warn!(session = %session.id, error = %e, "could not read stored credentials");
            None
        }
    }
}

async fn run_turn(
    session: &LiveSession,
    agent: &mut Agent,
    text: &str,
    timeout: Duration,
    cancel: CancellationToken,
) {
    set_status(session, SessionStatus::Running, "Agent is working...").await;
    let outcome = match agent.run_turn(text, session.log.as_ref(), &cancel).await {
        Ok(outcome) => outcome,
        Err(e) => TurnOutcome::Failed(e.to_string()),
    };
    match outcome {
        TurnOutcome::Finished { .. } | TurnOutcome::Replied { .. } => {
            set_status(session, SessionStatus::Completed, "Agent task completed.").await
        }
        TurnOutcome::Stopped => set_status(session, SessionStatus::Stopped, "Agent stopped.").await,
        // The stuck detector already explained itself in an error event.
        TurnOutcome::Stuck => {
            set_status(
                session,
                SessionStatus::Failed,
                "The agent was stuck and was stopped.",
            )
            .await
        }
        TurnOutcome::TimedOut => {
            fail(
                session,
                format!("Agent timed out after {}s.", timeout.as_secs()),
            )
            .await
        }
        TurnOutcome::MaxIterations => {
            fail(
                session,
                "The agent reached its iteration limit (MAX_ITERATIONS) before finishing.".into(),
            )
            .await
        }
        TurnOutcome::BudgetExceeded(message) => fail(session, message).await,
        TurnOutcome::Failed(message) => fail(session, message).await,
    }
}

/// Reports a failed turn: an error event, then the `failed` status with the same message.
async fn fail(session: &LiveSession, message: String) {
    emit(
        session,
        EventKind::Error {
            message: message.clone(),
        },
    )
    .await;
    set_status(session, SessionStatus::Failed, message).await
}

/// Waits for follow-ups; ends on shutdown or when nobody is attached for the grace period.
async fn idle_loop(
    deps: &SessionDeps,
    session: &Arc<LiveSession>,
    agent: &mut Agent,
    control: &mut mpsc::UnboundedReceiver<Control>,
) {
    let idle = deps.config.sandbox_idle;
    loop {
        let idle_deadline = detached_deadline(session, idle);
        let message = tokio::select! {
            m = control.recv() => m,
            _ = sleep_until_opt(idle_deadline) => {
                if detached_deadline(session, idle).is_some_and(|d| d <= Instant::now()) {
                    tracing::info!(session = %session.id, "releasing an idle session's sandbox");
                    return;
                }
                continue;
            }
        };
        match message {
            Some(Control::FollowUp(text, generation)) => {
                session.queued_follow_ups.fetch_sub(1, Ordering::SeqCst);
                emit(
                    session,
                    EventKind::UserMessage {
                        content: text.clone(),
                        follow_up: true,
                    },
                )
                .await;
                // Install the turn's token under the lock `stop` takes: a stop issued after
                // this follow-up was queued cancels it, a later one cancels the new token.
                let cancel = {
                    let mut turns = session.turns.lock().expect("session poisoned");
                    turns.current = session.shutdown.child_token();
                    if turns.stop_generation != generation {
                        turns.current.cancel();
                    }
                    turns.current.clone()
                };
                run_turn(
                    session,
                    agent,
                    &text,
                    deps.config.conversation_timeout,
                    cancel,
                )
                .await;
                mark_active(session);
            }
            Some(Control::Shutdown) | None => return,
        }
    }
}

/// When the idle session should release its sandbox: the idle time after both the agent's
/// last turn and the last client's leaving. While a client is attached, a time to look again.
fn detached_deadline(session: &LiveSession, idle: Duration) -> Option<Instant> {
    if session.attached.load(Ordering::SeqCst) > 0 {
        // Re-check periodically: a client may detach without a follow-up arriving.
        return Some(Instant::now() + idle.max(Duration::from_secs(1)));
    }
    let since = session.detached_since.lock().ok().and_then(|d| *d)?;
    let active = session.last_active.lock().map(|a| *a).ok()?;
    Some(since.max(active) + idle)
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
