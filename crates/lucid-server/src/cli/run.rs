//! `lucid run "task"`: one session in the terminal with live progress. Ctrl-C (or SIGTERM)
//! stops the agent cleanly (the sandbox is removed); the exit code says whether the task
//! succeeded; the history stays in the store. The model's text is printed as it is written.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use lucid_engine::engine::LOCAL_USER_ID;
use lucid_engine::events::{Event, EventKind, SessionStatus, TransientEvent, TransientKind};
use lucid_engine::sessions::event_log::LiveItem;
use lucid_engine::sessions::StartSession;
use lucid_engine::{Config, Engine, User};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// What the agent should do.
    pub task: String,
    /// Repository to clone into the workspace (https URL or local path).
    #[arg(long)]
    pub repo: Option<String>,
    /// Branch to check out.
    #[arg(long)]
    pub branch: Option<String>,
    /// LLM provider: anthropic, google or openai (OpenAI-compatible endpoint).
    #[arg(long)]
    pub provider: Option<String>,
    /// Model name (default: LLM_MODEL or the provider's default).
    #[arg(long)]
    pub model: Option<String>,
    /// Print whole command outputs instead of excerpts.
    #[arg(long)]
    pub full_output: bool,
}

/// Lines of a command's output shown in excerpt mode (head and tail).
const EXCERPT_LINES: usize = 6;

pub async fn run(args: RunArgs) -> anyhow::Result<i32> {
    let mut config = Config::from_env().context("invalid configuration")?;
    // One task, then the process ends: a pre-started sandbox would never be used.
    config.warm_sandbox = false;
    let engine = Engine::start(config)
        .await
        .context("engine failed to start")?;
    let user = User::with_id(LOCAL_USER_ID);
    let started = engine
        .sessions()
        .start(
            &user,
            StartSession {
                task: args.task.clone(),
                repo_url: args.repo.clone(),
                branch: args.branch.clone(),
                model_provider: args.provider.clone(),
                model: args.model.clone(),
                ..StartSession::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let attachment = engine
        .sessions()
        .attach(&user, &started.session_id, 0)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let guard = attachment.guard;
    let mut events = attachment.events.live();

    let mut printer = Printer {
        start: Instant::now(),
        full: args.full_output,
        streaming: None,
        streamed: None,
    };
    eprintln!("session {} (chat {})", started.session_id, started.chat_id);
    let mut stopping = false;
    let mut outcome: Option<SessionStatus> = None;
    // Ctrl-C or SIGTERM: stop the agent and remove the sandbox before exiting.
    let ctrl_c = super::serve::shutdown_signal();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Ok(Some(LiveItem::Transient(partial))) => printer.print_partial(&partial),
                Ok(Some(LiveItem::Stored(event))) => {
                    printer.print(&event);
                    if let EventKind::Status { status, .. } = &event.kind {
                        match status {
                            SessionStatus::Completed | SessionStatus::Failed | SessionStatus::Stopped => {
                                outcome = Some(*status);
                                break;
                            }
                            _ => {}
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    eprintln!("error reading events: {}", e.message);
                    break;
                }
            },
            _ = &mut ctrl_c, if !stopping => {
                stopping = true;
                eprintln!("\n^C stopping the agent...");
                let _ = engine.sessions().stop(&user, &started.session_id);
            }
        }
    }
    // Release the sandbox; the history stays in the store.
    drop(events);
    drop(guard);
    let _ = engine.sessions().destroy(&user, &started.session_id).await;
    engine.shutdown().await;
    let elapsed = printer.start.elapsed();
    Ok(match outcome {
        Some(SessionStatus::Completed) => {
            eprintln!("done in {}", fmt_elapsed(elapsed));
            0
        }
        Some(SessionStatus::Stopped) => 130,
        _ => {
            eprintln!("failed after {}", fmt_elapsed(elapsed));
            1
        }
    })
}

struct Printer {
    start: Instant,
    full: bool,
    /// The assistant text printed so far while it streams (its line is still open).
    streaming: Option<String>,
    /// Streamed text already printed whole, waiting for its stored message (which is then
    /// not printed again).
    streamed: Option<String>,
}

impl Printer {
    /// Prints a piece of the assistant's text as it arrives, on one open line.
    fn print_partial(&mut self, partial: &TransientEvent) {
        let mut out = std::io::stdout().lock();
        match &partial.kind {
            TransientKind::AssistantDelta { text } => {
                if self.streaming.is_none() {
                    let t = fmt_elapsed(self.start.elapsed());
                    let _ = write!(out, "[{t}] lucid: ");
                }
                let _ = write!(out, "{text}");
                self.streaming
                    .get_or_insert_with(String::new)
                    .push_str(text);
            }
            // The model's reasoning is not part of the answer `lucid run` prints.
            TransientKind::ThinkingDelta { .. } => {}
            TransientKind::AssistantRestart { reason } => {
                self.streamed = None;
                if self.streaming.take().is_some() {
                    let _ = writeln!(out);
                }
                let _ = writeln!(out, "    [answer interrupted, asking again: {reason}]");
            }
        }
        let _ = out.flush();
    }

    fn print(&mut self, event: &Event) {
        let t = fmt_elapsed(self.start.elapsed());
        let mut out = std::io::stdout().lock();
        if let Some(streamed) = self.streaming.take() {
            let _ = writeln!(out);
            self.streamed = Some(streamed);
        }
        if let EventKind::AssistantMessage { content } = &event.kind {
            // The whole message was already shown as it streamed.
            if self.streamed.take().as_deref() == Some(content.as_str()) {
                let _ = out.flush();
                return;
            }
        }
        let _ = match &event.kind {
            EventKind::Status { status, message } => {
                writeln!(out, "[{t}] [{}] {message}", status.as_str())
            }
            EventKind::UserMessage { content, .. } => writeln!(out, "[{t}] > {content}"),
            EventKind::AssistantMessage { content } => writeln!(out, "[{t}] lucid: {content}"),
            EventKind::Thought { thought, .. } => writeln!(out, "[{t}] (thinking) {thought}"),
            EventKind::CommandRun { command, .. } => writeln!(out, "[{t}] $ {command}"),
            EventKind::CommandOutput {
                output,
                exit_code,
                timed_out,
                interrupted,
                ..
            } => {
                let body = if self.full {
                    output.trim_end().to_string()
                } else {
                    excerpt(output)
                };
                if !body.is_empty() {
                    let _ = writeln!(out, "{}", indent(&body));
                }
                let status = match (timed_out, interrupted, exit_code) {
                    (true, _, _) => "timed out".to_string(),
                    (_, true, _) => "interrupted".to_string(),
                    (_, _, Some(c)) => format!("exit {c}"),
                    _ => "did not finish".to_string(),
                };
                writeln!(out, "    [{status}]")
            }
            EventKind::FileEdit { command, path, .. } => {
                writeln!(out, "[{t}] edit: {command} {path}")
            }
            EventKind::FileEditResult {
                ok: false, output, ..
            } => writeln!(out, "    [edit failed] {}", first_line(output)),
            EventKind::FileEditResult { .. } => Ok(()),
            EventKind::Finish { message, .. } => writeln!(out, "[{t}] finished: {message}"),
            EventKind::Usage(u) => {
                let cost = u
                    .total_cost_usd
                    .map(|c| format!(" · ${c:.4}"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "[{t}] tokens: {} in ({} cached) / {} out{cost}",
                    u.total_input_tokens, u.total_cached_input_tokens, u.total_output_tokens
                )
            }
            EventKind::Progress { message } => writeln!(out, "[{t}] {message}"),
            EventKind::Condensation {
                condensed_messages,
                tokens_before,
                tokens_after,
                ..
            } => writeln!(
                out,
                "[{t}] (context condensed: {condensed_messages} earlier messages summarised, \
                 ~{tokens_before} → ~{tokens_after} tokens)"
            ),
            EventKind::Error { message } => writeln!(out, "[{t}] error: {message}"),
            // The model's conversation record: everything in it was shown as it happened.
            EventKind::ModelMessage { .. } => Ok(()),
        };
        let _ = out.flush();
    }
}

fn excerpt(output: &str) -> String {
    let lines: Vec<&str> = output.trim_end().lines().collect();
    if lines.len() <= EXCERPT_LINES * 2 {
        return lines.join("\n");
    }
    format!(
        "{}\n... ({} lines omitted) ...\n{}",
        lines[..EXCERPT_LINES].join("\n"),
        lines.len() - EXCERPT_LINES * 2,
        lines[lines.len() - EXCERPT_LINES..].join("\n")
    )
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

fn fmt_elapsed(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}", s / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_keeps_head_and_tail() {
        let text: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        let e = excerpt(&text);
        assert!(e.contains("line 1\n"));
        assert!(e.contains("line 100"));
        assert!(e.contains("88 lines omitted"));
        assert_eq!(excerpt("a\nb"), "a\nb");
    }
}
