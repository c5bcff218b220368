//! The tool-calling loop: ask the model, run the tools it calls in the sandbox, feed the
//! results back, until it finishes, replies without tools, or a limit is hit. Every step
//! becomes typed events; stop (the cancellation token) interrupts the LLM request and the
//! running command.
//!
//! Answers are streamed: the text the model writes goes to the sink as transient
//! [`TransientKind::AssistantDelta`] events while it arrives; the stored
//! [`EventKind::AssistantMessage`] follows with the whole text. Usage and cost are summed over
//! the session (every request of every turn); an optional cost budget stops the agent before
//! the next request once it is reached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::context::{self as ctx, ContextBudget, Reported};
use super::editor::Editor;
use super::stuck::StuckDetector;
use super::tools::{self, EXECUTE_BASH, FINISH, STR_REPLACE_EDITOR, THINK};
use super::truncate::truncate_for_model;
use crate::error::EngineResult;
use crate::events::{EventKind, TransientKind, UsageReport};
use crate::llm::pricing::{context_window, estimate_cost_usd};
use crate::llm::{LlmClient, LlmError, LlmRequest, Message, StreamDelta, ToolCall, Usage};
use crate::sandbox::Sandbox;

/// Characters of a tool result the model sees (head and tail kept).
pub const MODEL_OUTPUT_MAX_CHARS: usize = 30_000;
/// Grace given to a command after an interrupt before the agent stops waiting for it.
const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// Where the agent's events go (the session's event log).
#[async_trait]
pub trait EventSink: Send + Sync {
    async fn emit(&self, kind: EventKind) -> EngineResult<u64>;
    /// A live-only event (partial text): published to whoever watches, never stored.
    fn transient(&self, _kind: TransientKind) {}
}

#[async_trait]
impl EventSink for crate::sessions::event_log::EventLog {
    async fn emit(&self, kind: EventKind) -> EngineResult<u64> {
        crate::sessions::event_log::EventLog::emit(self, kind).await
    }

    fn transient(&self, kind: TransientKind) {
        self.publish_transient(kind);
    }
}

#[derive(Debug, Clone)]
pub struct AgentLimits {
    pub max_iterations: u32,
    /// Wall-clock limit of one turn (a task or a follow-up).
    pub turn_timeout: Duration,
    /// Max output tokens per model response.
    pub max_tokens: u32,
    /// Optional budget on total (input + output) tokens of the session.
    pub token_budget: Option<u64>,
    /// Optional budget on the session's estimated cost in USD (`LUCID_SESSION_BUDGET_USD`).
    pub cost_budget_usd: Option<f64>,
    /// Context window in tokens instead of the model's known one (`LUCID_CONTEXT_WINDOW`).
    pub context_window: Option<u64>,
    /// Reasoning tokens the model may use before each answer (`LUCID_THINKING_BUDGET`).
    pub thinking_budget: Option<u32>,
}

impl Default for AgentLimits {
    fn default() -> Self {
        Self {
            max_iterations: 50,
            turn_timeout: Duration::from_secs(1800),
            max_tokens: 8192,
            token_budget: None,
            cost_budget_usd: None,
            context_window: None,
            thinking_budget: None,
        }
    }
}

/// How a turn ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnOutcome {
    /// The model called `finish`.
    Finished {
        message: String,
    },
    /// The model answered with text and no tool call.
    Replied {
        text: String,
    },
    /// The user stopped the turn.
    Stopped,
    TimedOut,
    MaxIterations,
    Stuck,
    /// The session's token or cost budget is used up; the message says which.
    BudgetExceeded(String),
    /// The LLM or the sandbox failed; the message is for the user.
    Failed(String),
}

impl TurnOutcome {
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            TurnOutcome::Finished { .. } | TurnOutcome::Replied { .. }
        )
    }
}

pub struct Agent {
    llm: Arc<dyn LlmClient>,
    model: String,
    system: String,
    sandbox: Arc<dyn Sandbox>,
    editor: Editor,
    history: Vec<Message>,
    limits: AgentLimits,
    totals: Usage,
    total_cost: Option<f64>,
    context: ContextBudget,
    /// Prompt size of the last request as the provider reported it.
    reported: Option<Reported>,
}

enum StepEnd {
    Continue,
    Finish(String),
    Stopped,
}

impl Agent {
    pub fn new(
        llm: Arc<dyn LlmClient>,
        model: String,
        system: String,
        sandbox: Arc<dyn Sandbox>,
        editor: Editor,
        limits: AgentLimits,
    ) -> Self {
        let window = limits
            .context_window
            .unwrap_or_else(|| context_window(&model));
        if limits.cost_budget_usd.is_some()
            && estimate_cost_usd(&model, &Usage::default()).is_none()
        {
            tracing::warn!(
                model = %model,
                "LUCID_SESSION_BUDGET_USD is set but this model has no known price: \
                 the cost budget cannot be enforced"
            );
        }
        Self {
            // The answer's reserve includes the reasoning the model may write first.
            context: ContextBudget::new(
                window,
                limits
                    .max_tokens
                    .saturating_add(limits.thinking_budget.unwrap_or(0)),
            ),
            reported: None,
            llm,
            model,
            system,
            sandbox,
            editor,
            history: Vec::new(),
            limits,
            totals: Usage::default(),
            total_cost: Some(0.0),
        }
    }

    /// Replaces the sandbox (after it was released and recreated for a follow-up).
    pub fn set_sandbox(&mut self, sandbox: Arc<dyn Sandbox>) {
        self.sandbox = sandbox;
    }

    pub fn sandbox(&self) -> &Arc<dyn Sandbox> {
        &self.sandbox
    }

    pub fn history(&self) -> &[Message] {
        &self.history
    }

    pub fn usage(&self) -> Usage {
        self.totals
    }

    /// Estimated cost of the session so far (`None` when the model's price is unknown).
    pub fn total_cost_usd(&self) -> Option<f64> {
        self.total_cost
    }

    /// Why no further request may be made, if a budget is used up.
    fn budget_reached(&self) -> Option<String> {
        if let Some(budget) = self.limits.token_budget {
            let used = self.totals.input_tokens + self.totals.output_tokens;
            if used >= budget {
                return Some(format!(
                    "The session reached its token budget ({used} of {budget} tokens)."
                ));
            }
        }
        if let (Some(budget), Some(spent)) = (self.limits.cost_budget_usd, self.total_cost) {
            if spent >= budget {
                return Some(format!(
                    "The session reached its cost budget: ${spent:.4} spent of ${budget:.2} \
                     (LUCID_SESSION_BUDGET_USD). The agent was stopped."
                ));
            }
        }
        None
    }

    /// Runs one turn on a user message (the task or a follow-up).
    pub async fn run_turn(
        &mut self,
        user_text: &str,
        sink: &dyn EventSink,
        cancel: &CancellationToken,
    ) -> EngineResult<TurnOutcome> {
        self.remember(
            Message::User {
                content: user_text.to_string(),
            },
            sink,
        )
        .await?;
        let deadline = Instant::now() + self.limits.turn_timeout;
        // One token for "stop or timeout": children of the user's token plus a timer.
        let turn_cancel = cancel.child_token();
        let timer = {
            let t = turn_cancel.clone();
            let limit = self.limits.turn_timeout;
            tokio::spawn(async move {
                tokio::time::sleep(limit).await;
                t.cancel();
            })
        };
        let outcome = self.turn_loop(sink, &turn_cancel).await;
        timer.abort();
        let outcome = match outcome? {
            TurnOutcome::Stopped if !cancel.is_cancelled() && Instant::now() >= deadline => {
                TurnOutcome::TimedOut
            }
            other => other,
        };
        Ok(outcome)
    }

    async fn turn_loop(
        &mut self,
        sink: &dyn EventSink,
        cancel: &CancellationToken,
    ) -> EngineResult<TurnOutcome> {
        let mut stuck = StuckDetector::default();
        for _ in 0..self.limits.max_iterations {
            if cancel.is_cancelled() {
                return Ok(TurnOutcome::Stopped);
            }
            if let Some(message) = self.budget_reached() {
                return Ok(TurnOutcome::BudgetExceeded(message));
            }
            if self.fit_context(sink, cancel).await? {
                return Ok(TurnOutcome::Stopped);
            }
            let request = LlmRequest {
                model: self.model.clone(),
                system: self.system.clone(),
                messages: self.history.clone(),
                tools: tools::all_specs(),
                max_tokens: self.limits.max_tokens,
                cache_prompt: true,
                thinking_budget: self.limits.thinking_budget,
            };
            let on_delta = |delta: StreamDelta| {
                sink.transient(match delta {
                    StreamDelta::Text(text) => TransientKind::AssistantDelta { text },
                    StreamDelta::Thinking(text) => TransientKind::ThinkingDelta { text },
                    StreamDelta::Restart { reason } => TransientKind::AssistantRestart { reason },
                })
            };
            // Dropping the request on stop aborts the HTTP stream at once.
            let response = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(TurnOutcome::Stopped),
                r = self.llm.stream(&request, &on_delta) => r,
            };
            let response = match response {
                Ok(r) => r,
                Err(e) => return Ok(TurnOutcome::Failed(llm_error_message(&e))),
            };
            self.reported = Some(Reported {
                tokens: response.usage.input_tokens,
                messages: request.messages.len(),
            });
            self.record_usage(response.usage, sink).await?;

            let text = response.text.clone().filter(|t| !t.trim().is_empty());
            let item_max = self.context.item_max_chars(MODEL_OUTPUT_MAX_CHARS);
            self.remember(
                Message::Assistant {
                    text: text.as_deref().map(|t| truncate_for_model(t, item_max)),
                    tool_calls: response.tool_calls.clone(),
                },
                sink,
            )
            .await?;
            if let Some(text) = &text {
                sink.emit(EventKind::AssistantMessage {
                    content: text.clone(),
                })
                .await?;
            }
            if response.tool_calls.is_empty() {
                return Ok(TurnOutcome::Replied {
                    text: text.unwrap_or_default(),
                });
            }

            let calls = response.tool_calls;
            let mut finish = None;
            let mut stopped = false;
            for (i, call) in calls.iter().enumerate() {
                if stopped || cancel.is_cancelled() {
                    stopped = true;
                    self.push_result(call, "Not run: the user stopped the agent.", true, sink)
                        .await?;
                    continue;
                }
                let (result, failed, end) = self.run_tool(call, sink, cancel).await?;
                let signature = format!("{}:{}", call.name, call.arguments);
                self.push_result(call, &result, failed, sink).await?;
                match end {
                    StepEnd::Continue => {}
                    StepEnd::Finish(message) => {
                        finish = Some(message);
                        // Results for any calls after `finish` keep the history well-formed.
                        for later in &calls[i + 1..] {
                            self.push_result(later, "Not run: the task was finished.", true, sink)
                                .await?;
                        }
                        break;
                    }
                    StepEnd::Stopped => stopped = true,
                }
                if stuck.record(&signature, &result, failed) {
                    sink.emit(EventKind::Error {
                        message: format!(
                            "The agent repeated the same failing step {} times and was stopped.",
                            super::stuck::STUCK_REPEATS
                        ),
                    })
                    .await?;
                    for later in &calls[i + 1..] {
                        self.push_result(later, "Not run: the agent was stopped.", true, sink)
                            .await?;
                    }
                    return Ok(TurnOutcome::Stuck);
                }
            }
            if let Some(message) = finish {
                return Ok(TurnOutcome::Finished { message });
            }
            if stopped {
                return Ok(TurnOutcome::Stopped);
            }
        }
        Ok(TurnOutcome::MaxIterations)
    }

    async fn push_result(
        &mut self,
        call: &ToolCall,
        content: &str,
        is_error: bool,
        sink: &dyn EventSink,
    ) -> EngineResult<()> {
        // A single huge result never takes more than its share of the context.
        let item_max = self.context.item_max_chars(MODEL_OUTPUT_MAX_CHARS);
        self.remember(
            Message::Tool {
                call_id: call.id.clone(),
                name: call.name.clone(),
                content: truncate_for_model(content, item_max),
                is_error,
            },
            sink,
        )
        .await
    }

    /// Appends a message to the conversation and records it (a `model_message` event), so a
    /// continued session rebuilds exactly this conversation.
    async fn remember(&mut self, message: Message, sink: &dyn EventSink) -> EngineResult<()> {
        sink.emit(EventKind::ModelMessage {
            message: message.clone(),
        })
        .await?;
        self.history.push(message);
        Ok(())
    }

    /// Continues a stored conversation: its messages and the session's usage and cost so far
    /// (see [`super::resume`]). Tool calls left without a result (the engine stopped in the
    /// middle of a step) get one saying so, recorded like every other message.
    pub async fn restore(
        &mut self,
        restored: super::resume::Restored,
        sink: &dyn EventSink,
    ) -> EngineResult<()> {
        self.history = restored.history;
        self.totals = restored.totals;
        self.total_cost = restored.total_cost_usd;
        self.reported = None;
        for call in super::resume::unanswered_calls(&self.history) {
            self.push_result(
                &call,
                "Not run: the session was interrupted before this step ran.",
                true,
                sink,
            )
            .await?;
        }
        Ok(())
    }

    /// Condenses the oldest turns when the next request would pass the high-water mark (see
    /// [`super::context`]). Returns true when stopped meanwhile.
    async fn fit_context(
        &mut self,
        sink: &dyn EventSink,
        cancel: &CancellationToken,
    ) -> EngineResult<bool> {
        let fixed = ctx::fixed_chars(&self.system, &tools::all_specs());
        let before = ctx::estimate_tokens(&self.history, fixed, self.reported);
        if before <= self.context.high_water() {
            return Ok(false);
        }
        let summary_tokens = u64::from(self.context.summary_max_tokens());
        let keep = self
            .context
            .low_water()
            .saturating_sub(ctx::tokens_for_chars(fixed))
            .saturating_sub(summary_tokens);
        let Some(range) = ctx::condense_range(&self.history, keep) else {
            tracing::warn!(
                estimate = before,
                window = self.context.window,
                "the context is nearly full and nothing more can be condensed"
            );
            return Ok(false);
        };
        let condensed = range.len();
        // The summariser's prompt must fit as well: about 2 characters per token of room.
        let room = self
            .context
            .available
            .saturating_sub(summary_tokens + 1_000) as usize;
        let transcript = ctx::transcript(&self.history[range.clone()], room.max(1_000) * 2);
        let request = LlmRequest {
            model: self.model.clone(),
            system: ctx::summary_system_prompt(),
            messages: vec![Message::User {
                content: ctx::summary_request(&transcript, self.context.summary_max_tokens()),
            }],
            tools: Vec::new(),
            max_tokens: self.context.summary_max_tokens(),
            cache_prompt: false,
            thinking_budget: None,
        };
        let answer = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(true),
            r = self.llm.complete(&request) => r,
        };
        let summary = match answer {
            Ok(response) => {
                self.record_usage(response.usage, sink).await?;
                response.text.filter(|t| !t.trim().is_empty())
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not summarise the history; dropping it instead");
                None
            }
        };
        let summary = summary
            .map(|s| truncate_for_model(&s, summary_tokens as usize * ctx::CHARS_PER_TOKEN))
            .unwrap_or_else(|| {
                format!(
                    "({condensed} earlier messages were removed to fit the model's context and \
                     could not be summarised. The task is above; re-check the workspace state \
                     before relying on earlier results.)"
                )
            });
        self.history
            .splice(range, std::iter::once(ctx::summary_message(&summary)));
        self.reported = None;
        let after = ctx::estimate_tokens(&self.history, fixed, None);
        tracing::info!(
            condensed,
            tokens_before = before,
            tokens_after = after,
            "condensed the conversation"
        );
        sink.emit(EventKind::Condensation {
            summary,
            condensed_messages: condensed as u64,
            tokens_before: before,
            tokens_after: after,
        })
        .await?;
        Ok(false)
    }

    async fn record_usage(&mut self, usage: Usage, sink: &dyn EventSink) -> EngineResult<()> {
        self.totals.add(&usage);
        self.total_cost = match (self.total_cost, estimate_cost_usd(&self.model, &usage)) {
            (Some(total), Some(step)) => Some(total + step),
            _ => None,
        };
        sink.emit(EventKind::Usage(UsageReport {
            model: self.model.clone(),
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cached_input_tokens: usage.cached_input_tokens,
            total_input_tokens: self.totals.input_tokens,
            total_output_tokens: self.totals.output_tokens,
            total_cached_input_tokens: self.totals.cached_input_tokens,
            cache_write_input_tokens: usage.cache_write_tokens,
            total_cache_write_input_tokens: self.totals.cache_write_tokens,
            total_cost_usd: self.total_cost,
        }))
        .await?;
        Ok(())
    }

    /// Runs one tool call. Returns (result for the model, failed, how the step ends).
    async fn run_tool(
        &mut self,
        call: &ToolCall,
        sink: &dyn EventSink,
        cancel: &CancellationToken,
    ) -> EngineResult<(String, bool, StepEnd)> {
        match call.name.as_str() {
            EXECUTE_BASH => self.run_bash(call, sink, cancel).await,
            STR_REPLACE_EDITOR => self.run_editor(call, sink).await,
            THINK => {
                let thought = tools::str_arg(&call.arguments, "thought")
                    .unwrap_or("")
                    .to_string();
                sink.emit(EventKind::Thought {
                    call_id: call.id.clone(),
                    thought,
                })
                .await?;
                Ok((
                    "Your thought has been logged.".into(),
                    false,
                    StepEnd::Continue,
                ))
            }
            FINISH => {
                let message = tools::str_arg(&call.arguments, "message")
                    .unwrap_or("")
                    .to_string();
                sink.emit(EventKind::Finish {
                    call_id: call.id.clone(),
                    message: message.clone(),
                })
                .await?;
                Ok((
                    "Task marked as finished.".into(),
                    false,
                    StepEnd::Finish(message),
                ))
            }
            other => {
                let message = format!(
                    "Unknown tool `{other}`. Available tools: execute_bash, str_replace_editor, \
                     think, finish."
                );
                sink.emit(EventKind::Error {
                    message: message.clone(),
                })
                .await?;
                Ok((message, true, StepEnd::Continue))
            }
        }
    }

    async fn run_bash(
        &mut self,
        call: &ToolCall,
        sink: &dyn EventSink,
        cancel: &CancellationToken,
    ) -> EngineResult<(String, bool, StepEnd)> {
        let command = match tools::str_arg(&call.arguments, "command") {
            Ok(c) if !c.trim().is_empty() => c.to_string(),
            Ok(_) => {
                return Ok((
                    "The `command` parameter is empty.".into(),
                    true,
                    StepEnd::Continue,
                ))
            }
            Err(e) => return Ok((e, true, StepEnd::Continue)),
        };
        let timeout = tools::timeout_arg(&call.arguments);
        sink.emit(EventKind::CommandRun {
            call_id: call.id.clone(),
            command: command.clone(),
        })
        .await?;

        let sandbox = Arc::clone(&self.sandbox);
        let exec_command = command.clone();
        let exec = sandbox.exec(&exec_command, timeout);
        tokio::pin!(exec);
        // `biased`: the command is polled first, so it has started (and can be interrupted)
        // even when the stop arrived before it.
        let result = tokio::select! {
            biased;
            r = &mut exec => r,
            _ = cancel.cancelled() => {
                let mut outcome = None;
                for _ in 0..2 {
                    sandbox.interrupt().await;
                    if let Ok(r) = tokio::time::timeout(INTERRUPT_GRACE / 2, &mut exec).await {
                        outcome = Some(r);
                        break;
                    }
                }
                outcome.unwrap_or_else(|| {
                    Err(crate::sandbox::SandboxError::ShellGone(
                        "the command did not stop after an interrupt".into(),
                    ))
                })
            }
        };
        let stopped = cancel.is_cancelled();
        match result {
            Ok(out) => {
                sink.emit(EventKind::CommandOutput {
                    call_id: call.id.clone(),
                    command: command.clone(),
                    output: out.output.clone(),
                    exit_code: out.exit_code,
                    total_bytes: out.total_bytes,
                    timed_out: out.timed_out,
                    interrupted: out.interrupted,
                })
                .await?;
                let mut text = truncate_for_model(&out.output, MODEL_OUTPUT_MAX_CHARS);
                if out.total_bytes as usize > out.output.len() {
                    text.push_str(&format!(
                        "\n[output was {} bytes; only the first {} were kept]",
                        out.total_bytes,
                        out.output.len()
                    ));
                }
                let status = if out.timed_out {
                    format!(
                        "[command timed out after {} s and was killed]",
                        timeout.as_secs()
                    )
                } else if out.interrupted {
                    "[command interrupted]".to_string()
                } else {
                    match out.exit_code {
                        Some(code) => format!("[exit code: {code}]"),
                        None => "[command did not finish]".to_string(),
                    }
                };
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&status);
                let failed = out.exit_code != Some(0);
                Ok((
                    text,
                    failed,
                    if stopped {
                        StepEnd::Stopped
                    } else {
                        StepEnd::Continue
                    },
                ))
            }
            Err(e) => {
                let message = format!("The sandbox could not run the command: {e}");
                sink.emit(EventKind::CommandOutput {
                    call_id: call.id.clone(),
                    command,
                    output: message.clone(),
                    exit_code: None,
                    total_bytes: 0,
                    timed_out: false,
                    interrupted: stopped,
                })
                .await?;
                Ok((
                    message,
                    true,
                    if stopped {
                        StepEnd::Stopped
                    } else {
                        StepEnd::Continue
                    },
                ))
            }
        }
    }

    async fn run_editor(
        &mut self,
        call: &ToolCall,
        sink: &dyn EventSink,
    ) -> EngineResult<(String, bool, StepEnd)> {
        let command = call
            .arguments
            .get("command")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let path = call
            .arguments
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        sink.emit(EventKind::FileEdit {
            call_id: call.id.clone(),
            command: command.clone(),
            path: path.clone(),
            edit: crate::events::FileEditArgs::from_call(&command, &call.arguments),
        })
        .await?;
        let (output, ok, shown_path) = match self.editor.run(&call.arguments) {
            Ok(outcome) => (outcome.output, true, outcome.path),
            Err(e) => (e.to_string(), false, path),
        };
        sink.emit(EventKind::FileEditResult {
            call_id: call.id.clone(),
            command,
            path: shown_path,
            output: output.clone(),
            ok,
        })
        .await?;
        Ok((
            truncate_for_model(&output, MODEL_OUTPUT_MAX_CHARS),
            !ok,
            StepEnd::Continue,
        ))
    }
}

fn llm_error_message(e: &LlmError) -> String {
    e.to_string()
}
