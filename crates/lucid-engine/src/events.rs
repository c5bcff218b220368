//! The session event model. Every agent step becomes an [`Event`] with a per-session,
//! gap-free `seq`; the event log is the source of truth for live streams, replay and history.
//!
//! Besides stored events there are [`TransientEvent`]s: partial assistant text while the model
//! is still writing. They are published live to the session's subscribers, positioned after
//! the stored event they follow (`after_seq`), and never stored or replayed: the stored
//! [`EventKind::AssistantMessage`] with the whole text follows them, so history and replay are
//! the same with or without streaming.
//!
//! [`Event::to_wire`] renders the original engine's `agent_event` / `status` frames (plus
//! `seq` and `sessionId`); [`Event::chat_role`], [`Event::content`] and
//! [`Event::event_type`] give the stored chat-message view of the same event.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use ts_rs::TS;

/// Display truncation of `content` on the wire (the stored event keeps the full text).
pub const WIRE_CONTENT_MAX_CHARS: usize = 2000;
/// Display truncation of `thought` on the wire.
pub const WIRE_THOUGHT_MAX_CHARS: usize = 1000;
/// Longest text field of the structured `detail` of a wire frame: longer ones keep their
/// head and tail around an omission notice (the stored event keeps everything).
pub const WIRE_DETAIL_MAX_CHARS: usize = 64_000;

/// Lifecycle of a session as reported in `status` events.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, TS, specta::Type,
)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Initializing,
    Ready,
    Running,
    Completed,
    Stopping,
    Stopped,
    Failed,
    /// The engine stopped (crash, kill, quit) while the session was working; a follow-up
    /// continues it.
    Interrupted,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initializing => "initializing",
            Self::Ready => "ready",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }
}

/// Token usage of one LLM step plus the session's running totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    pub model: String,
    #[ts(type = "number")]
    pub input_tokens: u64,
    #[ts(type = "number")]
    pub output_tokens: u64,
    #[ts(type = "number")]
    pub cached_input_tokens: u64,
    #[ts(type = "number")]
    pub total_input_tokens: u64,
    #[ts(type = "number")]
    pub total_output_tokens: u64,
    #[ts(type = "number")]
    pub total_cached_input_tokens: u64,
    /// Input tokens of this step written to the prompt cache (Anthropic cache writes).
    #[serde(default)]
    pub cache_write_input_tokens: u64,
    #[serde(default)]
    pub total_cache_write_input_tokens: u64,
    /// Estimated cost in USD for the session so far, when the model's price is known.
    pub total_cost_usd: Option<f64>,
}

/// The arguments of an editor call that change a file, kept so front doors can show the edit
/// as a diff. Absent on events stored before they were recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
pub struct FileEditArgs {
    /// `str_replace`: the text replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub old_str: Option<String>,
    /// `str_replace` / `insert`: the new text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub new_str: Option<String>,
    /// `create`: the whole file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub file_text: Option<String>,
    /// `insert`: the line after which `new_str` goes (0 = top).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional, type = "number")]
    pub insert_line: Option<u64>,
}

impl FileEditArgs {
    /// The edit arguments of an editor call (`None` for `view` and `undo_edit`).
    pub fn from_call(command: &str, arguments: &Value) -> Option<FileEditArgs> {
        let text = |name: &str| {
            arguments
                .get(name)
                .and_then(Value::as_str)
                .map(String::from)
        };
        let args = match command {
            "str_replace" => FileEditArgs {
                old_str: text("old_str"),
                new_str: Some(text("new_str").unwrap_or_default()),
                ..Default::default()
            },
            "create" => FileEditArgs {
                file_text: text("file_text"),
                ..Default::default()
            },
            "insert" => FileEditArgs {
                new_str: text("new_str"),
                insert_line: arguments.get("insert_line").and_then(Value::as_u64),
                ..Default::default()
            },
            _ => return None,
        };
        Some(args)
    }

    pub(crate) fn text_len(&self) -> usize {
        [&self.old_str, &self.new_str, &self.file_text]
            .iter()
            .map(|s| s.as_ref().map_or(0, String::len))
            .sum()
    }
}

/// What happened. Tool-related variants carry the LLM's tool-call id so results pair with calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    Status {
        status: SessionStatus,
        message: String,
    },
    UserMessage {
        content: String,
        follow_up: bool,
    },
    AssistantMessage {
        content: String,
    },
    Thought {
        call_id: String,
        thought: String,
    },
    CommandRun {
        call_id: String,
        command: String,
    },
    CommandOutput {
        call_id: String,
        command: String,
        output: String,
        #[ts(type = "number | null")]
        exit_code: Option<i64>,
        /// Bytes the command printed in total (the stored output may be capped).
        #[ts(type = "number")]
        total_bytes: u64,
        timed_out: bool,
        interrupted: bool,
    },
    FileEdit {
        call_id: String,
        command: String,
        path: String,
        /// What the edit changes (for diffs); absent for `view`/`undo_edit` and older events.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        edit: Option<FileEditArgs>,
    },
    FileEditResult {
        call_id: String,
        command: String,
        path: String,
        output: String,
        ok: bool,
    },
    Finish {
        call_id: String,
        message: String,
    },
    Usage(UsageReport),
    /// The oldest turns of the model's conversation were replaced by a summary to fit its
    /// context window (the summary is what the model sees from then on).
    Condensation {
        summary: String,
        /// Messages the summary replaced.
        condensed_messages: u64,
        /// Estimated prompt tokens before and after.
        tokens_before: u64,
        tokens_after: u64,
    },
    /// A message exactly as it entered the model's conversation (the task and follow-ups, the
    /// model's answers with their tool calls, the tool results as the model got them). With
    /// [`EventKind::Condensation`] these rebuild the conversation when a session is continued
    /// (see [`crate::agent::resume`]).
    ModelMessage {
        #[ts(type = "unknown")]
        message: crate::llm::Message,
    },
    /// Progress of sandbox preparation (image pull, clone).
    Progress {
        message: String,
    },
    Error {
        message: String,
    },
}

/// What a [`TransientEvent`] reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TransientKind {
    /// The next piece of the assistant's text while the model is writing it.
    AssistantDelta { text: String },
    /// The next piece of the model's thinking (reasoning) text, where the provider sends it
    /// (Anthropic `thinking_delta`, OpenAI-compatible `reasoning_content` / `reasoning`, Gemini
    /// `thought` parts). Shown while the answer is written; not part of the stored message.
    ThinkingDelta { text: String },
    /// The model's answer starts over (its stream broke and the request is sent again): the
    /// partial text received since the last stored event is void.
    AssistantRestart { reason: String },
}

/// A live-only event (never stored, never replayed): see the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransientEvent {
    pub session_id: String,
    /// The seq of the last stored event before this one: it belongs between `after_seq` and
    /// the next stored event, and is stale once a subscriber has moved past `after_seq`.
    pub after_seq: u64,
    pub timestamp: DateTime<Utc>,
    #[serde(flatten)]
    pub kind: TransientKind,
}

impl TransientEvent {
    pub fn new(session_id: impl Into<String>, after_seq: u64, kind: TransientKind) -> Self {
        Self {
            session_id: session_id.into(),
            after_seq,
            timestamp: Utc::now(),
            kind,
        }
    }

    /// The WebSocket frame: `{"type": "agent_delta", "eventType": "AssistantDelta", "content",
    /// "afterSeq", "sessionId", "timestamp"}` (no `seq`: it is not part of the log); thinking
    /// comes as `{"type": "thinking_delta", "eventType": "ThinkingDelta", ...}` so a client
    /// that knows only `agent_delta` never shows it as the answer. `detail` is the
    /// [`TransientKind`] itself (typed for the UI).
    pub fn to_wire(&self) -> Value {
        let (frame_type, event_type, content) = match &self.kind {
            TransientKind::AssistantDelta { text } => ("agent_delta", "AssistantDelta", text),
            TransientKind::ThinkingDelta { text } => ("thinking_delta", "ThinkingDelta", text),
            TransientKind::AssistantRestart { reason } => {
                ("agent_delta", "AssistantRestart", reason)
            }
        };
        json!({
            "type": frame_type,
            "eventType": event_type,
            "content": content,
            "afterSeq": self.after_seq,
            "detail": self.kind,
            "sessionId": self.session_id,
            "timestamp": self.timestamp.to_rfc3339_opts(SecondsFormat::Micros, false),
        })
    }
}

/// One entry of a session's event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub session_id: String,
    pub seq: u64,
    pub timestamp: DateTime<Utc>,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    pub fn new(session_id: impl Into<String>, seq: u64, kind: EventKind) -> Self {
        Self {
            session_id: session_id.into(),
            seq,
            timestamp: Utc::now(),
            kind,
        }
    }

    /// The original engine's coarse category: `action`, `observation`, `error` or `state`.
    pub fn category(&self) -> &'static str {
        match &self.kind {
            EventKind::Status { .. }
            | EventKind::Usage(_)
            | EventKind::Progress { .. }
            | EventKind::Condensation { .. }
            | EventKind::ModelMessage { .. } => "state",
            EventKind::UserMessage { .. }
            | EventKind::AssistantMessage { .. }
            | EventKind::Thought { .. }
            | EventKind::CommandRun { .. }
            | EventKind::FileEdit { .. }
            | EventKind::Finish { .. } => "action",
            EventKind::CommandOutput { .. } | EventKind::FileEditResult { .. } => "observation",
            EventKind::Error { .. } => "error",
        }
    }

    /// The `eventType` name, in the style of the original's event classes.
    pub fn event_type(&self) -> &'static str {
        match &self.kind {
            EventKind::Status { .. } => "AgentStateChanged",
            EventKind::UserMessage {
                follow_up: false, ..
            } => "InitialTask",
            EventKind::UserMessage {
                follow_up: true, ..
            } => "FollowUp",
            EventKind::AssistantMessage { .. } => "MessageAction",
            EventKind::Thought { .. } => "ThinkAction",
            EventKind::CommandRun { .. } => "CmdRunAction",
            EventKind::CommandOutput { .. } => "CmdOutputObservation",
            EventKind::FileEdit { command, .. } if command == "create" => "FileWriteAction",
            EventKind::FileEdit { command, .. } if command == "view" => "FileReadAction",
            EventKind::FileEdit { .. } => "FileEditAction",
            EventKind::FileEditResult { command, .. } if command == "create" => {
                "FileWriteObservation"
            }
            EventKind::FileEditResult { command, .. } if command == "view" => "FileReadObservation",
            EventKind::FileEditResult { .. } => "FileEditObservation",
            EventKind::Finish { .. } => "AgentFinishAction",
            EventKind::Usage(_) => "UsageUpdate",
            EventKind::Condensation { .. } => "CondensationObservation",
            EventKind::ModelMessage { .. } => "ModelMessage",
            EventKind::Progress { .. } => "ProgressUpdate",
            EventKind::Error { .. } => "AgentErrorEvent",
        }
    }

    /// Role of the event in the chat history: `user`, `assistant` or `system`.
    pub fn chat_role(&self) -> &'static str {
        match &self.kind {
            EventKind::UserMessage { .. } => "user",
            EventKind::Status { .. }
            | EventKind::Usage(_)
            | EventKind::Progress { .. }
            | EventKind::Condensation { .. }
            | EventKind::ModelMessage { .. } => "system",
            _ => "assistant",
        }
    }

    /// The full (untruncated) human-readable content of the event.
    pub fn content(&self) -> String {
        match &self.kind {
            EventKind::Status { message, .. } => message.clone(),
            EventKind::UserMessage { content, .. } => content.clone(),
            EventKind::AssistantMessage { content } => content.clone(),
            EventKind::Thought { thought, .. } => thought.clone(),
            EventKind::CommandRun { command, .. } => command.clone(),
            EventKind::CommandOutput { output, .. } => output.clone(),
            EventKind::FileEdit { command, path, .. } => format!("{command} {path}"),
            EventKind::FileEditResult { output, .. } => output.clone(),
            EventKind::Finish { message, .. } => message.clone(),
            EventKind::Usage(u) => {
                let cost = u
                    .total_cost_usd
                    .map(|c| format!(", ${c:.4}"))
                    .unwrap_or_default();
                format!(
                    "{} in / {} out tokens ({} cached){}",
                    u.total_input_tokens, u.total_output_tokens, u.total_cached_input_tokens, cost
                )
            }
            EventKind::Progress { message } => message.clone(),
            EventKind::Error { message } => message.clone(),
            EventKind::Condensation { summary, .. } => summary.clone(),
            // The conversation record is not for display; its detail carries the message.
            EventKind::ModelMessage { .. } => String::new(),
        }
    }

    /// Whether this event may have changed files in the workspace (drives `file_tree` pushes).
    pub fn may_change_files(&self) -> bool {
        match &self.kind {
            EventKind::FileEditResult { command, ok, .. } => *ok && command != "view",
            EventKind::CommandOutput { .. } => true,
            _ => false,
        }
    }

    /// Structured fields stored beside the content (`metadata_json`).
    pub fn metadata(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut v {
            map.remove("timestamp");
            map.remove("sessionId");
        }
        v
    }

    /// Rebuilds an event from its stored metadata (the inverse of [`Event::metadata`]).
    pub fn from_metadata(
        session_id: &str,
        timestamp: DateTime<Utc>,
        metadata: &Value,
    ) -> Option<Event> {
        let mut map = metadata.as_object()?.clone();
        map.insert("sessionId".into(), Value::String(session_id.to_string()));
        map.insert(
            "timestamp".into(),
            Value::String(timestamp.to_rfc3339_opts(SecondsFormat::Micros, true)),
        );
        serde_json::from_value(Value::Object(map)).ok()
    }

    /// The WebSocket frame: `status` for status changes, `agent_event` for everything else.
    pub fn to_wire(&self) -> Value {
        let timestamp = self.timestamp.to_rfc3339_opts(SecondsFormat::Micros, false);
        if let EventKind::Status { status, message } = &self.kind {
            return json!({
                "type": "status",
                "status": status.as_str(),
                "message": message,
                "timestamp": timestamp,
                "seq": self.seq,
                "sessionId": self.session_id,
                "detail": self.wire_detail(),
            });
        }
        let mut m = Map::new();
        m.insert("type".into(), json!("agent_event"));
        m.insert("event".into(), json!(self.category()));
        m.insert("eventType".into(), json!(self.event_type()));
        m.insert(
            "content".into(),
            json!(truncate_chars(&self.content(), WIRE_CONTENT_MAX_CHARS)),
        );
        m.insert("timestamp".into(), json!(timestamp));
        m.insert("seq".into(), json!(self.seq));
        m.insert("sessionId".into(), json!(self.session_id));
        match &self.kind {
            EventKind::CommandRun { command, .. } => {
                m.insert("command".into(), json!(command));
            }
            EventKind::CommandOutput {
                command, exit_code, ..
            } => {
                m.insert("command".into(), json!(command));
                m.insert("exitCode".into(), json!(exit_code));
            }
            EventKind::FileEdit { path, .. } | EventKind::FileEditResult { path, .. } => {
                m.insert("path".into(), json!(path));
            }
            EventKind::Thought { thought, .. } => {
                m.insert(
                    "thought".into(),
                    json!(truncate_chars(thought, WIRE_THOUGHT_MAX_CHARS)),
                );
            }
            EventKind::Usage(u) => {
                m.insert(
                    "usage".into(),
                    serde_json::to_value(u).unwrap_or(Value::Null),
                );
            }
            _ => {}
        }
        m.insert("detail".into(), self.wire_detail());
        Value::Object(m)
    }

    /// The structured event ([`EventKind`], tagged by `kind`) for clients that render it,
    /// with every text field longer than [`WIRE_DETAIL_MAX_CHARS`] cut to its head and tail.
    pub fn wire_detail(&self) -> Value {
        let mut v = serde_json::to_value(&self.kind).unwrap_or(Value::Null);
        shorten_strings(&mut v, WIRE_DETAIL_MAX_CHARS);
        v
    }
}

/// Cuts every string in `v` longer than `max` characters to its head and tail around an
/// omission notice.
fn shorten_strings(v: &mut Value, max: usize) {
    match v {
        Value::String(s) => {
            let count = s.chars().count();
            if count > max {
                let half = max / 2;
                let head: String = s.chars().take(half).collect();
                let tail: String = s.chars().skip(count - half).collect();
                *s = format!(
                    "{head}\n[… {} characters omitted …]\n{tail}",
                    count - 2 * half
                );
            }
        }
        Value::Object(map) => map.values_mut().for_each(|x| shorten_strings(x, max)),
        Value::Array(items) => items.iter_mut().for_each(|x| shorten_strings(x, max)),
        _ => {}
    }
}

/// Truncates to at most `max` characters (not bytes), never splitting a character.
pub fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((idx, _)) => s[..idx].to_string(),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_output_wire_shape_matches_the_original() {
        let e = Event::new(
            "s1",
            7,
            EventKind::CommandOutput {
                call_id: "c".into(),
                command: "python hello.py".into(),
                output: "x".repeat(5000),
                exit_code: Some(0),
                total_bytes: 5000,
                timed_out: false,
                interrupted: false,
            },
        );
        let w = e.to_wire();
        assert_eq!(w["type"], "agent_event");
        assert_eq!(w["event"], "observation");
        assert_eq!(w["eventType"], "CmdOutputObservation");
        assert_eq!(w["content"].as_str().unwrap().len(), WIRE_CONTENT_MAX_CHARS);
        assert_eq!(w["exitCode"], 0);
        assert_eq!(w["seq"], 7);
        assert_eq!(w["sessionId"], "s1");
        assert!(w["timestamp"].as_str().unwrap().ends_with("+00:00"));
        // The stored form keeps everything.
        assert_eq!(e.content().len(), 5000);
    }

    #[test]
    fn status_is_a_status_frame() {
        let e = Event::new(
            "s",
            1,
            EventKind::Status {
                status: SessionStatus::Ready,
                message: "ready".into(),
            },
        );
        let w = e.to_wire();
        assert_eq!(w["type"], "status");
        assert_eq!(w["status"], "ready");
        assert_eq!(e.chat_role(), "system");
    }

    #[test]
    fn metadata_round_trips() {
        let e = Event::new(
            "s",
            3,
            EventKind::Thought {
                call_id: "t1".into(),
                thought: "think ✓".into(),
            },
        );
        let back = Event::from_metadata("s", e.timestamp, &e.metadata()).unwrap();
        assert_eq!(back.kind, e.kind);
        assert_eq!(back.seq, 3);
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate_chars("ééé", 2), "éé");
        assert_eq!(truncate_chars("ab", 5), "ab");
    }
}
