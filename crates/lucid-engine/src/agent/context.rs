//! Keeps the conversation within the model's context window.
//!
//! - **Budget**: the window of the session's model (see [`crate::llm::pricing::context_window`],
//!   or `LUCID_CONTEXT_WINDOW`) minus the answer's `max_tokens` and a 5% margin.
//! - **Estimate**: the prompt tokens the provider reported for the last request, plus an
//!   estimate (3 characters per token, on the safe side) for what was added since; without a
//!   report, the estimate of everything.
//! - **Condensation in steps**: when the estimate passes the high-water mark (85% of the
//!   budget), the oldest turns — everything between the task and the recent turns that fit in
//!   the low-water mark (50%) — are summarised by the session's model and replaced by one
//!   summary message. Between condensations the history only grows at its end, so the cached
//!   prompt prefix (Anthropic `cache_control`) stays identical from request to request.
//! - **Single huge items**: a tool result or assistant text larger than a share of the budget
//!   is cut (head and tail kept) before it enters the history.

use crate::llm::{Message, ToolSpec};

use super::truncate::truncate_for_model;

/// Marks the summarisation request (its system prompt), so fakes and logs can tell it apart.
pub const CONDENSER_MARKER: &str = "[lucid:condense-history]";
/// Start of the message that replaces condensed turns.
pub const SUMMARY_PREFIX: &str = "[Summary of the earlier part of this session, condensed to \
                                  fit the model's context]";
/// Characters per token assumed for text not yet counted by the provider.
pub const CHARS_PER_TOKEN: usize = 3;
/// Per-message overhead in the request body (role, separators), in characters.
const MESSAGE_OVERHEAD_CHARS: usize = 24;
/// Longest summary asked for, in tokens.
const SUMMARY_MAX_TOKENS: u32 = 2048;

/// Token limits derived from the model's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextBudget {
    /// The model's context window in tokens.
    pub window: u64,
    /// Tokens a request (prompt) may use: window minus the answer and a margin.
    pub available: u64,
}

impl ContextBudget {
    pub fn new(window: u64, max_output_tokens: u32) -> Self {
        let reserved = u64::from(max_output_tokens).min(window / 2);
        let available = window.saturating_sub(reserved).saturating_sub(window / 20);
        Self {
            window,
            available: available.max(1),
        }
    }

    /// Past this estimate the history is condensed.
    pub fn high_water(&self) -> u64 {
        self.available * 85 / 100
    }

    /// Condensation keeps recent turns up to this estimate (the summary comes on top).
    pub fn low_water(&self) -> u64 {
        self.available / 2
    }

    /// Largest tool result or assistant text kept whole in the history, in characters.
    pub fn item_max_chars(&self, cap: usize) -> usize {
        let share = (self.available as usize)
            .saturating_mul(CHARS_PER_TOKEN)
            .saturating_mul(15)
            / 100;
        share.clamp(2_000, cap.max(2_000))
    }

    /// Tokens the summary may use.
    pub fn summary_max_tokens(&self) -> u32 {
        (self.available / 8).clamp(256, u64::from(SUMMARY_MAX_TOKENS)) as u32
    }
}

/// Estimated tokens of `chars` characters not yet counted by the provider.
pub fn tokens_for_chars(chars: usize) -> u64 {
    chars.div_ceil(CHARS_PER_TOKEN) as u64
}

/// Characters a message contributes to a request body.
pub fn message_chars(message: &Message) -> usize {
    MESSAGE_OVERHEAD_CHARS
        + match message {
            Message::User { content } => content.len(),
            Message::Assistant { text, tool_calls } => {
                text.as_deref().map_or(0, str::len)
                    + tool_calls
                        .iter()
                        .map(|c| c.id.len() + c.name.len() + c.arguments.to_string().len() + 32)
                        .sum::<usize>()
            }
            Message::Tool {
                call_id,
                name,
                content,
                ..
            } => call_id.len() + name.len() + content.len() + 32,
        }
}

/// Characters of the parts of a request that are not the history.
pub fn fixed_chars(system: &str, tools: &[ToolSpec]) -> usize {
    system.len()
        + tools
            .iter()
            .map(|t| t.name.len() + t.description.len() + t.parameters.to_string().len() + 32)
            .sum::<usize>()
}

/// The prompt size of the last request as the provider reported it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reported {
    /// Prompt tokens of that request (0: unknown).
    pub tokens: u64,
    /// How many history messages it carried.
    pub messages: usize,
}

/// Estimated prompt tokens of a request with `history`: the last reported prompt plus an
/// estimate for the messages added since, or an estimate of everything.
pub fn estimate_tokens(history: &[Message], fixed: usize, reported: Option<Reported>) -> u64 {
    match reported {
        Some(r) if r.tokens > 0 && r.messages <= history.len() => {
            r.tokens
                + tokens_for_chars(
                    history[r.messages..]
                        .iter()
                        .map(message_chars)
                        .sum::<usize>(),
                )
        }
        _ => tokens_for_chars(fixed + history.iter().map(message_chars).sum::<usize>()),
    }
}

/// Which messages a condensation replaces: `history[1..end]` (the task at index 0 stays),
/// chosen so that what is kept verbatim fits in `keep_tokens` and starts at a user or
/// assistant message (tool results never lose their call). `None` when nothing can go.
pub fn condense_range(history: &[Message], keep_tokens: u64) -> Option<std::ops::Range<usize>> {
    if history.len() < 3 {
        return None;
    }
    // The most recent assistant message always stays (with its results after it).
    let last_assistant = history
        .iter()
        .rposition(|m| matches!(m, Message::Assistant { .. }))?;
    let mut kept = 0u64;
    let mut end = history.len();
    for i in (1..history.len()).rev() {
        kept += tokens_for_chars(message_chars(&history[i]));
        if i > last_assistant {
            continue;
        }
        let boundary = !matches!(history[i], Message::Tool { .. });
        if kept > keep_tokens && i < last_assistant {
            break;
        }
        if boundary {
            end = i;
        }
    }
    let end = end.min(last_assistant);
    (end > 1).then_some(1..end)
}

/// The transcript of condensed messages for the summariser, each item cut to a share of
/// `max_chars` (head and tail kept), the whole cut to `max_chars`.
pub fn transcript(messages: &[Message], max_chars: usize) -> String {
    let per_item = (max_chars / messages.len().max(1)).clamp(400, 6_000);
    let mut out = String::new();
    for message in messages {
        let line = match message {
            Message::User { content } if content.starts_with(SUMMARY_PREFIX) => {
                format!("EARLIER SUMMARY:\n{content}")
            }
            Message::User { content } => format!("USER:\n{content}"),
            Message::Assistant { text, tool_calls } => {
                let mut line = String::from("ASSISTANT:");
                if let Some(text) = text {
                    line.push('\n');
                    line.push_str(text);
                }
                for call in tool_calls {
                    line.push_str(&format!("\n[called {} with {}]", call.name, call.arguments));
                }
                line
            }
            Message::Tool {
                name,
                content,
                is_error,
                ..
            } => format!(
                "TOOL RESULT ({name}{}):\n{content}",
                if *is_error { ", failed" } else { "" }
            ),
        };
        out.push_str(&truncate_for_model(&line, per_item));
        out.push_str("\n\n");
    }
    truncate_for_model(&out, max_chars)
}

/// The summariser's system prompt.
pub fn summary_system_prompt() -> String {
    format!(
        "You condense the history of an AI software engineer's working session so that it can \
         continue with less context. {CONDENSER_MARKER}"
    )
}

/// The summariser's request text for `transcript`.
pub fn summary_request(transcript: &str, max_tokens: u32) -> String {
    let words = max_tokens * 2 / 3;
    format!(
        "Summarise the session transcript below for the engineer who continues the work. Keep: \
         every request of the user; what was done (commands run, files created or changed, \
         with paths); what was learned (errors, facts, decisions); the current state and what \
         remains to do. Leave out output that no longer matters. Plain text, at most about \
         {words} words.\n\n<transcript>\n{transcript}</transcript>"
    )
}

/// The message that replaces the condensed turns.
pub fn summary_message(summary: &str) -> Message {
    Message::User {
        content: format!("{SUMMARY_PREFIX}\n{}", summary.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ToolCall;
    use serde_json::json;

    fn step(i: usize, output: usize) -> [Message; 2] {
        [
            Message::Assistant {
                text: None,
                tool_calls: vec![ToolCall {
                    id: format!("c{i}"),
                    name: "execute_bash".into(),
                    arguments: json!({"command": "ls"}),
                }],
            },
            Message::Tool {
                call_id: format!("c{i}"),
                name: "execute_bash".into(),
                content: "x".repeat(output),
                is_error: false,
            },
        ]
    }

    fn history(steps: usize, output: usize) -> Vec<Message> {
        let mut h = vec![Message::User {
            content: "task".into(),
        }];
        for i in 0..steps {
            h.extend(step(i, output));
        }
        h
    }

    #[test]
    fn budget_reserves_the_answer_and_a_margin() {
        let b = ContextBudget::new(200_000, 8192);
        assert_eq!(b.available, 200_000 - 8192 - 10_000);
        assert!(b.low_water() < b.high_water() && b.high_water() < b.available);
        let small = ContextBudget::new(8_000, 8192);
        assert_eq!(small.available, 8_000 - 4_000 - 400);
        assert_eq!(b.item_max_chars(30_000), 30_000);
        assert_eq!(small.item_max_chars(30_000), 2_000);
    }

    #[test]
    fn estimates_start_from_the_reported_prompt() {
        let h = history(4, 3000);
        let all = estimate_tokens(&h, 300, None);
        assert!(all > 4 * 1000, "{all}");
        let reported = Reported {
            tokens: 5_000,
            messages: 7,
        };
        let from_report = estimate_tokens(&h, 300, Some(reported));
        assert_eq!(
            from_report,
            5_000 + tokens_for_chars(message_chars(&h[7]) + message_chars(&h[8]))
        );
        // A report about a longer (condensed since) history is not used.
        let stale = Reported {
            tokens: 5_000,
            messages: 20,
        };
        assert_eq!(estimate_tokens(&h, 300, Some(stale)), all);
    }

    #[test]
    fn the_range_keeps_the_task_recent_turns_and_pairs() {
        let h = history(10, 3000);
        let range = condense_range(&h, 2_500).unwrap();
        assert_eq!(range.start, 1);
        // What stays starts with an assistant message and fits (about two steps of 1000+).
        assert!(matches!(h[range.end], Message::Assistant { .. }));
        let kept: u64 = h[range.end..]
            .iter()
            .map(|m| tokens_for_chars(message_chars(m)))
            .sum();
        assert!(kept <= 2_500, "{kept}");
        assert!(range.end >= h.len() - 4);
        // A tiny budget still keeps the last step whole.
        let range = condense_range(&h, 1).unwrap();
        assert_eq!(range.end, h.len() - 2);
        // Nothing to condense in a short history.
        assert_eq!(condense_range(&h[..3], 1), None);
    }

    #[test]
    fn transcripts_are_bounded_and_keep_heads_and_tails() {
        let h = history(3, 50_000);
        let t = transcript(&h[1..], 10_000);
        assert!(t.chars().count() <= 10_000);
        assert!(t.contains("called execute_bash"));
        assert!(t.contains("characters omitted"));
        let summary = summary_message("did things");
        assert!(
            matches!(&summary, Message::User { content } if content.starts_with(SUMMARY_PREFIX))
        );
        let again = transcript(&[summary], 1_000);
        assert!(again.starts_with("EARLIER SUMMARY"));
    }
}
