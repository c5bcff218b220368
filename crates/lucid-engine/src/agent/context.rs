//! Keeps the conversation within the model's context: once the tool results in the history
//! exceed a character budget, the oldest ones are replaced by a short stub (the calls and their
//! pairing stay intact, so every provider still accepts the history). Recent results — what
//! the model is working with — are never touched.

use crate::llm::Message;

/// Characters of tool results kept in the history (≈ 100k tokens).
pub const TOOL_RESULT_BUDGET_CHARS: usize = 400_000;
/// The most recent tool results are always kept whole.
pub const KEEP_RECENT_RESULTS: usize = 6;
/// What replaces an elided result.
pub const ELIDED: &str =
    "[earlier output elided to keep the conversation within the model's context; run the command again if you need it]";

/// Elides the oldest tool results until the rest fit in `budget` characters. Returns how many
/// results were elided by this call.
pub fn compact_tool_results(history: &mut [Message], budget: usize) -> usize {
    let result_positions: Vec<usize> = history
        .iter()
        .enumerate()
        .filter(|(_, m)| matches!(m, Message::Tool { .. }))
        .map(|(i, _)| i)
        .collect();
    let size = |m: &Message| match m {
        Message::Tool { content, .. } => content.chars().count(),
        _ => 0,
    };
    let mut total: usize = result_positions.iter().map(|&i| size(&history[i])).sum();
    let elidable = result_positions.len().saturating_sub(KEEP_RECENT_RESULTS);
    let mut elided = 0;
    for &i in &result_positions[..elidable] {
        if total <= budget {
            break;
        }
        if let Message::Tool { content, .. } = &mut history[i] {
            if content == ELIDED {
                continue;
            }
            total -= content.chars().count();
            total += ELIDED.chars().count();
            *content = ELIDED.to_string();
            elided += 1;
        }
    }
    elided
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(i: usize, len: usize) -> Message {
        Message::Tool {
            call_id: format!("c{i}"),
            name: "execute_bash".into(),
            content: "x".repeat(len),
            is_error: false,
        }
    }

    #[test]
    fn oldest_results_are_elided_first_and_recent_ones_kept() {
        let mut history = vec![Message::User {
            content: "task".into(),
        }];
        for i in 0..20 {
            history.push(Message::Assistant {
                text: None,
                tool_calls: vec![],
            });
            history.push(result(i, 1000));
        }
        let n = compact_tool_results(&mut history, 10_000);
        assert!(n > 0);
        let contents: Vec<String> = history
            .iter()
            .filter_map(|m| match m {
                Message::Tool { content, .. } => Some(content.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(contents[0], ELIDED);
        assert!(contents[contents.len() - KEEP_RECENT_RESULTS..]
            .iter()
            .all(|c| c.len() == 1000));
        let total: usize = contents.iter().map(|c| c.chars().count()).sum();
        assert!(total <= 10_000 + ELIDED.len(), "{total}");
        // Idempotent once within budget.
        assert_eq!(compact_tool_results(&mut history, 10_000), 0);
        // Pairing is intact: as many tool messages as before.
        assert_eq!(contents.len(), 20);
    }

    #[test]
    fn small_histories_are_untouched() {
        let mut history = vec![result(0, 10), result(1, 10)];
        assert_eq!(compact_tool_results(&mut history, 100), 0);
        assert_eq!(
            compact_tool_results(&mut history, 0),
            0,
            "recent results are always kept"
        );
    }
}
