//! Rebuilds a session's conversation from its stored events, so that a session continued
//! later (after its sandbox was released, after an engine restart) gives the model exactly the
//! conversation it had: the same messages, tool calls and results, with the same truncation.
//!
//! Every message the agent adds to its conversation is stored as it is added, as an
//! [`EventKind::ModelMessage`]; a condensation ([`EventKind::Condensation`]) replaced
//! `condensed_messages` messages after the task with one summary message (see
//! [`super::context`]). Replaying both in `seq` order reproduces the conversation. The
//! session's usage totals and cost continue from its last [`EventKind::Usage`] event.
//!
//! Logs written before `model_message` events existed fall back to the visible messages
//! (the task, follow-ups and the model's texts): the model loses the tool steps but keeps
//! what was asked and answered.

use crate::auth::User;
use crate::error::EngineResult;
use crate::events::{Event, EventKind};
use crate::llm::{Message, ToolCall, Usage};
use crate::store::Store;

use super::context::summary_message;

/// Events read from the store at once while rebuilding.
const PAGE: u32 = 500;

/// A conversation rebuilt from a log, with the session's totals so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    pub history: Vec<Message>,
    pub totals: Usage,
    /// Estimated cost so far (`None` once a step's price was unknown).
    pub total_cost_usd: Option<f64>,
}

impl Default for Restored {
    fn default() -> Self {
        Self {
            history: Vec::new(),
            totals: Usage::default(),
            total_cost_usd: Some(0.0),
        }
    }
}

/// Applies events one by one, oldest first.
#[derive(Default)]
pub struct Rebuilder {
    exact: Vec<Message>,
    recorded: bool,
    fallback: Vec<Message>,
    totals: Usage,
    total_cost_usd: Option<f64>,
    saw_usage: bool,
}

impl Rebuilder {
    pub fn apply(&mut self, event: &Event) {
        match &event.kind {
            EventKind::ModelMessage { message } => {
                self.recorded = true;
                self.exact.push(message.clone());
            }
            EventKind::Condensation {
                summary,
                condensed_messages,
                ..
            } => {
                let end = (1 + *condensed_messages as usize).min(self.exact.len());
                if end > 1 {
                    self.exact
                        .splice(1..end, std::iter::once(summary_message(summary)));
                }
            }
            EventKind::UserMessage { content, .. } => self.fallback.push(Message::User {
                content: content.clone(),
            }),
            EventKind::AssistantMessage { content }
            | EventKind::Finish {
                message: content, ..
            } => self.fallback.push(Message::Assistant {
                text: Some(content.clone()),
                tool_calls: Vec::new(),
            }),
            EventKind::Usage(report) => {
                self.saw_usage = true;
                self.totals = Usage {
                    input_tokens: report.total_input_tokens,
                    output_tokens: report.total_output_tokens,
                    cached_input_tokens: report.total_cached_input_tokens,
                    cache_write_tokens: report.total_cache_write_input_tokens,
                };
                self.total_cost_usd = report.total_cost_usd;
            }
            _ => {}
        }
    }

    pub fn finish(self) -> Restored {
        Restored {
            history: if self.recorded {
                self.exact
            } else {
                self.fallback
            },
            totals: self.totals,
            total_cost_usd: if self.saw_usage {
                self.total_cost_usd
            } else {
                Some(0.0)
            },
        }
    }
}

/// Rebuilds from events in `seq` order.
pub fn rebuild<'a>(events: impl IntoIterator<Item = &'a Event>) -> Restored {
    let mut rebuilder = Rebuilder::default();
    for event in events {
        rebuilder.apply(event);
    }
    rebuilder.finish()
}

/// Rebuilds the conversation of a chat from its stored log, page by page.
pub async fn load(store: &dyn Store, user: &User, chat_id: &str) -> EngineResult<Restored> {
    let mut rebuilder = Rebuilder::default();
    let mut since = 0;
    loop {
        let page = store.events_since(user, chat_id, since, PAGE).await?;
        let Some(last) = page.last() else { break };
        since = last.seq;
        page.iter().for_each(|e| rebuilder.apply(e));
        if page.len() < PAGE as usize {
            break;
        }
    }
    Ok(rebuilder.finish())
}

/// Tool calls of the last assistant message that have no result after it (the engine stopped
/// between the model's answer and the end of its tools).
pub fn unanswered_calls(history: &[Message]) -> Vec<ToolCall> {
    let Some(at) = history
        .iter()
        .rposition(|m| matches!(m, Message::Assistant { .. }))
    else {
        return Vec::new();
    };
    let Message::Assistant { tool_calls, .. } = &history[at] else {
        return Vec::new();
    };
    tool_calls
        .iter()
        .filter(|call| {
            !history[at + 1..]
                .iter()
                .any(|m| matches!(m, Message::Tool { call_id, .. } if *call_id == call.id))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::context::SUMMARY_PREFIX;
    use crate::events::UsageReport;
    use serde_json::json;

    fn ev(seq: u64, kind: EventKind) -> Event {
        Event::new("s", seq, kind)
    }

    fn model(seq: u64, message: Message) -> Event {
        ev(seq, EventKind::ModelMessage { message })
    }

    fn call(id: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: "execute_bash".into(),
            arguments: json!({"command": "ls"}),
        }
    }

    fn tool(id: &str) -> Message {
        Message::Tool {
            call_id: id.into(),
            name: "execute_bash".into(),
            content: format!("out {id}"),
            is_error: false,
        }
    }

    #[test]
    fn model_messages_and_condensations_replay_in_order() {
        let user = Message::User {
            content: "task".into(),
        };
        let a1 = Message::Assistant {
            text: None,
            tool_calls: vec![call("c1")],
        };
        let a2 = Message::Assistant {
            text: Some("more".into()),
            tool_calls: vec![call("c2")],
        };
        let events = vec![
            ev(
                1,
                EventKind::UserMessage {
                    content: "task".into(),
                    follow_up: false,
                },
            ),
            model(2, user.clone()),
            model(3, a1),
            model(4, tool("c1")),
            model(5, a2.clone()),
            model(6, tool("c2")),
            ev(
                7,
                EventKind::Condensation {
                    summary: "did c1".into(),
                    condensed_messages: 2,
                    tokens_before: 10,
                    tokens_after: 5,
                },
            ),
            ev(
                8,
                EventKind::Usage(UsageReport {
                    total_input_tokens: 100,
                    total_output_tokens: 20,
                    total_cost_usd: Some(0.5),
                    ..Default::default()
                }),
            ),
        ];
        let restored = rebuild(&events);
        assert_eq!(restored.history.len(), 4);
        assert_eq!(restored.history[0], user);
        assert!(
            matches!(&restored.history[1], Message::User { content } if content.starts_with(SUMMARY_PREFIX) && content.ends_with("did c1"))
        );
        assert_eq!(restored.history[2], a2);
        assert_eq!(restored.history[3], tool("c2"));
        assert_eq!(restored.totals.input_tokens, 100);
        assert_eq!(restored.totals.output_tokens, 20);
        assert_eq!(restored.total_cost_usd, Some(0.5));
        assert!(unanswered_calls(&restored.history).is_empty());
    }

    #[test]
    fn old_logs_fall_back_to_visible_messages() {
        let events = vec![
            ev(
                1,
                EventKind::UserMessage {
                    content: "task".into(),
                    follow_up: false,
                },
            ),
            ev(
                2,
                EventKind::AssistantMessage {
                    content: "hello".into(),
                },
            ),
        ];
        let restored = rebuild(&events);
        assert_eq!(restored.history.len(), 2);
        assert_eq!(restored.total_cost_usd, Some(0.0));
    }

    #[test]
    fn calls_without_results_are_found() {
        let history = vec![
            Message::User {
                content: "t".into(),
            },
            Message::Assistant {
                text: None,
                tool_calls: vec![call("a"), call("b")],
            },
            tool("a"),
        ];
        let missing = unanswered_calls(&history);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].id, "b");
    }
}
