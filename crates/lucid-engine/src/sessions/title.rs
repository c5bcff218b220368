//! A short chat title written by the session's model from the first task.
//!
//! A new chat is titled with its task. When `LUCID_CHAT_TITLES` is on (the default), the
//! session asks its own model once, beside the agent's work, for a title of a few words and
//! saves it through the rename path ([`crate::chats::rename_if_unchanged`]) only while the
//! title is still the task: a rename by the user is never overwritten. No answer, an error,
//! an empty or unusable answer, or a timeout keeps the task as the title.
//!
//! Tokens and cost: the title request is *not* counted in the session's token and cost
//! figures (they are the agent's work, as the provider bills per request; the title request
//! is about a hundred input tokens and a few output tokens). Its usage is logged at debug
//! level.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::User;
use crate::llm::{LlmClient, LlmRequest, Message};
use crate::store::Store;

/// What the title request asks (the system prompt). Stable text: the scripted test LLM
/// recognises title requests by it.
pub const TITLE_INSTRUCTIONS: &str = "Write a short title for this chat: at most six words \
naming what the user asks for, in the user's language. Answer with the title only: no quotes, \
no trailing punctuation, no explanation.";

/// Longest title kept, in characters (a longer answer is cut at a word boundary).
pub const MAX_GENERATED_TITLE_CHARS: usize = 80;
/// Most characters of the task sent with the request.
const MAX_TASK_CHARS: usize = 2000;
/// Output budget of the title request (room for a thinking model's short reasoning).
const MAX_TITLE_TOKENS: u32 = 128;
/// How long the title may take before the task stays the title.
const TITLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a session needs to title its chat.
pub(crate) struct TitleJob {
    pub store: Arc<dyn Store>,
    pub user: User,
    pub chat_id: String,
    /// The title the chat was created with (the task); replaced only while still this.
    pub initial_title: String,
    pub task: String,
    pub client: Arc<dyn LlmClient>,
    pub model: String,
}

/// Titles the chat in the background (never fails the session).
pub(crate) fn spawn(job: TitleJob) {
    tokio::spawn(async move {
        let chat_id = job.chat_id.clone();
        match run(job).await {
            Ok(Some(title)) => tracing::debug!(chat = %chat_id, %title, "chat titled by the model"),
            Ok(None) => tracing::debug!(chat = %chat_id, "chat keeps its task as title"),
            Err(reason) => {
                tracing::info!(chat = %chat_id, %reason, "no generated chat title; the task stays the title")
            }
        }
    });
}

/// Asks for a title and saves it; `Ok(None)` when the chat's title changed meanwhile.
async fn run(job: TitleJob) -> Result<Option<String>, String> {
    let request = LlmRequest {
        model: job.model.clone(),
        system: TITLE_INSTRUCTIONS.to_string(),
        messages: vec![Message::User {
            content: crate::events::truncate_chars(&job.task, MAX_TASK_CHARS),
        }],
        tools: Vec::new(),
        max_tokens: MAX_TITLE_TOKENS,
        cache_prompt: false,
        thinking_budget: None,
    };
    let response = tokio::time::timeout(TITLE_TIMEOUT, job.client.complete(&request))
        .await
        .map_err(|_| "the model did not answer in time".to_string())?
        .map_err(|e| e.to_string())?;
    tracing::debug!(
        input_tokens = response.usage.input_tokens,
        output_tokens = response.usage.output_tokens,
        "title request (not counted in the session's usage)"
    );
    let title = response
        .text
        .as_deref()
        .and_then(clean_title)
        .ok_or_else(|| "the model's answer holds no usable title".to_string())?;
    let saved = crate::chats::rename_if_unchanged(
        job.store.as_ref(),
        &job.user,
        &job.chat_id,
        &job.initial_title,
        &title,
    )
    .await
    .map_err(|e| e.message)?;
    Ok(saved.then_some(title))
}

/// The title in a model's answer: its first non-empty line without a `Title:` label,
/// surrounding quotes or Markdown marks and trailing punctuation, whitespace collapsed, at
/// most [`MAX_GENERATED_TITLE_CHARS`] characters (cut at a word). `None` when nothing is left.
pub fn clean_title(answer: &str) -> Option<String> {
    let line = answer.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = strip_label(line);
    let marks: &[char] = &['"', '\'', '`', '*', '_', '#', '“', '”', '‘', '’', '«', '»'];
    let line = line.trim_matches(|c: char| marks.contains(&c) || c.is_whitespace());
    let line = line.trim_end_matches(['.', '!', ',', ';', ':', '。']);
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut title = String::new();
    for word in words {
        let extra = usize::from(!title.is_empty()) + word.chars().count();
        if title.chars().count() + extra > MAX_GENERATED_TITLE_CHARS {
            if title.is_empty() {
                title = word.chars().take(MAX_GENERATED_TITLE_CHARS).collect();
            }
            break;
        }
        if !title.is_empty() {
            title.push(' ');
        }
        title.push_str(word);
    }
    let title = title.trim_end_matches(['.', ',', ';', ':']).to_string();
    (!title.is_empty()).then_some(title)
}

fn strip_label(line: &str) -> &str {
    let lower = line.to_ascii_lowercase();
    for label in ["title:", "chat title:", "**title:**"] {
        if lower.starts_with(label) {
            return line[label.len()..].trim();
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_what_models_answer() {
        assert_eq!(
            clean_title("Fix the login bug").as_deref(),
            Some("Fix the login bug")
        );
        assert_eq!(
            clean_title("\"Fix the login bug.\"\n").as_deref(),
            Some("Fix the login bug")
        );
        assert_eq!(
            clean_title("\n\nTitle: **Add dark mode**\nBecause...").as_deref(),
            Some("Add dark mode")
        );
        assert_eq!(
            clean_title("« Corriger la connexion »").as_deref(),
            Some("Corriger la connexion")
        );
        assert_eq!(clean_title("   \n  "), None);
        assert_eq!(clean_title("\"\"."), None);
        let long = "word ".repeat(40);
        let cut = clean_title(&long).unwrap();
        assert!(cut.chars().count() <= MAX_GENERATED_TITLE_CHARS);
        assert!(cut.ends_with("word"));
        let one = "x".repeat(200);
        assert_eq!(
            clean_title(&one).unwrap().chars().count(),
            MAX_GENERATED_TITLE_CHARS
        );
    }

    #[test]
    fn the_scripted_llm_recognises_title_requests() {
        assert!(TITLE_INSTRUCTIONS.contains(lucid_testkit::llm::TITLE_REQUEST_MARKER));
    }
}
