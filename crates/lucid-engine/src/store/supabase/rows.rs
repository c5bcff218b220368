//! Rows as PostgREST returns them (JSON objects), decoded leniently: a column that is missing,
//! null, or of another type than expected (rows written by the original engine, or by hand)
//! becomes a fallback value and a `tracing::warn!` naming the table, the row id and the
//! column, never an error hiding the rest of a user's history. Unknown columns are ignored.
//! Also the JSON bodies the store sends.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::events::Event;
use crate::store::sqlite::events::{cap_bytes, fallback_kind, MAX_CONTENT_BYTES};
use crate::store::sqlite::timestamps;
use crate::store::{ChatMessage, ChatSession, IntegrationRow};

/// Columns selected from `chat_sessions`.
pub const CHAT_COLUMNS: &str = "id,user_id,agent_session_id,project_id,title,model_provider,\
is_active,created_at,updated_at,repo_url,branch,model";
/// Columns selected from `chat_messages`.
pub const MESSAGE_COLUMNS: &str = "id,seq,role,content,event_type,metadata_json,created_at";
/// Columns selected from `integrations`.
pub const INTEGRATION_COLUMNS: &str = "id,user_id,provider,label,access_token_encrypted,iv,\
external_username,scopes,created_at";

/// Reads the columns of one row of `table` without ever failing.
pub struct LenientJson<'a> {
    row: &'a Map<String, Value>,
    table: &'static str,
    id: String,
}

static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();

impl<'a> LenientJson<'a> {
    pub fn new(row: &'a Value, table: &'static str) -> Self {
        let row = match row.as_object() {
            Some(map) => map,
            None => {
                tracing::warn!(table, "tolerating a row that is not a JSON object");
                EMPTY.get_or_init(Map::new)
            }
        };
        let mut reader = LenientJson {
            row,
            table,
            id: String::new(),
        };
        reader.id = reader.opt_text("id").unwrap_or_default();
        reader
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn warn(&self, column: &str, problem: &str) {
        tracing::warn!(
            table = self.table,
            row_id = %self.id,
            column,
            problem,
            "tolerating a damaged row"
        );
    }

    /// Text of a nullable column; numbers and booleans are rendered as text with a warning.
    pub fn opt_text(&self, column: &str) -> Option<String> {
        match self.row.get(column)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => {
                self.warn(column, "number where text was expected");
                Some(n.to_string())
            }
            Value::Bool(b) => {
                self.warn(column, "boolean where text was expected");
                Some(b.to_string())
            }
            other => {
                self.warn(column, "JSON where text was expected");
                Some(other.to_string())
            }
        }
    }

    /// Text of a column that should never be missing or null.
    pub fn text_or(&self, column: &str, fallback: &str) -> String {
        self.opt_text(column).unwrap_or_else(|| {
            self.warn(column, "missing or null where text was expected");
            fallback.to_string()
        })
    }

    /// A timestamp; unreadable, missing or null values become the Unix epoch with a warning.
    pub fn timestamp(&self, column: &str) -> DateTime<Utc> {
        match self.opt_text(column).as_deref().map(timestamps::from_db) {
            Some(Some(ts)) => ts,
            Some(None) => {
                self.warn(column, "unparsable timestamp");
                DateTime::UNIX_EPOCH
            }
            None => {
                self.warn(column, "missing or null timestamp");
                DateTime::UNIX_EPOCH
            }
        }
    }

    pub fn boolean(&self, column: &str, fallback: bool) -> bool {
        match self.row.get(column) {
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_i64().is_some_and(|i| i != 0),
            Some(Value::String(s)) => match s.as_str() {
                "1" | "true" | "TRUE" | "t" => true,
                "0" | "false" | "FALSE" | "f" => false,
                _ => {
                    self.warn(column, "unreadable boolean");
                    fallback
                }
            },
            _ => {
                self.warn(column, "missing or null boolean");
                fallback
            }
        }
    }

    /// A non-negative integer (a `seq`); PostgREST renders `bigint` as a JSON number.
    pub fn opt_u64(&self, column: &str) -> Option<u64> {
        match self.row.get(column)? {
            Value::Null => None,
            Value::Number(n) if n.as_u64().is_some() => n.as_u64(),
            Value::String(s) if s.parse::<u64>().is_ok() => s.parse().ok(),
            _ => {
                self.warn(column, "not a non-negative integer");
                None
            }
        }
    }

    /// A JSON column. `jsonb` arrives as JSON; a JSON document stored as a string (as some
    /// writers did) is parsed; anything unparsable is `None` with a warning.
    pub fn json(&self, column: &str) -> Option<Value> {
        match self.row.get(column)? {
            Value::Null => None,
            Value::String(text) => match serde_json::from_str(text) {
                Ok(v) => Some(v),
                Err(_) => {
                    self.warn(column, "invalid JSON");
                    None
                }
            },
            other => Some(other.clone()),
        }
    }
}

pub fn chat_from_json(row: &Value) -> ChatSession {
    let r = LenientJson::new(row, "chat_sessions");
    ChatSession {
        id: r.id().to_string(),
        user_id: r.text_or("user_id", ""),
        agent_session_id: r.opt_text("agent_session_id"),
        project_id: r.opt_text("project_id"),
        title: r.opt_text("title"),
        model_provider: r.opt_text("model_provider"),
        is_active: r.boolean("is_active", false),
        created_at: r.timestamp("created_at"),
        updated_at: r.timestamp("updated_at"),
        repo_url: r.opt_text("repo_url"),
        branch: r.opt_text("branch"),
        model: r.opt_text("model"),
    }
}

pub fn message_from_json(row: &Value) -> ChatMessage {
    let r = LenientJson::new(row, "chat_messages");
    ChatMessage {
        id: r.id().to_string(),
        role: r.text_or("role", "system"),
        content: r.text_or("content", ""),
        event_type: r.opt_text("event_type"),
        metadata_json: r.json("metadata_json"),
        created_at: r.timestamp("created_at"),
        seq: r.opt_u64("seq"),
    }
}

/// Rebuilds an event from a `chat_messages` row (`None` for rows without a seq, which the
/// original engine wrote and which are not part of the replayable log).
pub fn event_from_json(row: &Value, session_id: &str) -> Option<Event> {
    let r = LenientJson::new(row, "chat_messages");
    let seq = r.opt_u64("seq")?;
    let timestamp = r.timestamp("created_at");
    let rebuilt = r.json("metadata_json").and_then(|mut metadata| {
        if let Value::Object(map) = &mut metadata {
            map.insert("seq".into(), Value::from(seq));
        }
        Event::from_metadata(session_id, timestamp, &metadata)
    });
    if let Some(mut event) = rebuilt {
        event.seq = seq;
        return Some(event);
    }
    tracing::warn!(
        row_id = r.id(),
        seq,
        "event metadata unreadable; rebuilding the event from its text"
    );
    let role = r.text_or("role", "system");
    let content = r.text_or("content", "");
    let event_type = r.opt_text("event_type");
    Some(Event {
        session_id: session_id.to_string(),
        seq,
        timestamp,
        kind: fallback_kind(&role, event_type.as_deref(), content),
    })
}

pub fn integration_from_json(row: &Value) -> IntegrationRow {
    let r = LenientJson::new(row, "integrations");
    IntegrationRow {
        id: r.id().to_string(),
        user_id: r.text_or("user_id", ""),
        provider: r.text_or("provider", ""),
        label: r.opt_text("label"),
        access_token_encrypted: r.text_or("access_token_encrypted", ""),
        iv: r.text_or("iv", ""),
        external_username: r.opt_text("external_username"),
        scopes: r.opt_text("scopes"),
        created_at: r.timestamp("created_at"),
    }
}

/// The `chat_messages` row of an event (without `id`: the database assigns it).
pub fn event_row(chat_id: &str, event: &Event) -> Value {
    let mut row = json!({
        "session_id": chat_id,
        "seq": event.seq,
        "role": event.chat_role(),
        "content": cap_bytes(event.content(), MAX_CONTENT_BYTES),
        "event_type": event.event_type(),
        "metadata_json": event.metadata(),
        "created_at": timestamps::to_db(&event.timestamp),
    });
    strip_nul(&mut row);
    row
}

/// PostgreSQL `text` and `jsonb` cannot hold U+0000 (a command's output may): it is replaced
/// by U+FFFD everywhere in a row, so such an event is stored instead of failing forever.
pub fn strip_nul(value: &mut Value) {
    match value {
        Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
        Value::Array(items) => items.iter_mut().for_each(strip_nul),
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().filter(|k| k.contains('\0')).cloned().collect();
            for key in keys {
                if let Some(v) = map.remove(&key) {
                    map.insert(key.replace('\0', "\u{FFFD}"), v);
                }
            }
            map.values_mut().for_each(strip_nul);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    #[test]
    fn rows_of_the_original_engine_are_read() {
        // Missing columns (no model/repo/branch), extra ones, nulls and odd types.
        let chat = chat_from_json(&json!({
            "id": "c1", "user_id": "u1", "title": null, "is_active": "t",
            "created_at": "2024-01-01T00:00:00+00:00", "updated_at": 5, "extra": [1]
        }));
        assert_eq!(chat.id, "c1");
        assert!(chat.is_active);
        assert_eq!(chat.title, None);
        assert_eq!(chat.model, None);
        assert_eq!(chat.updated_at, DateTime::UNIX_EPOCH);
        assert_eq!(chat.created_at.timestamp(), 1_704_067_200);

        let message = message_from_json(&json!({
            "id": "m1", "role": "assistant", "content": null,
            "metadata_json": "{\"a\":1}", "created_at": "garbage"
        }));
        assert_eq!(message.content, "");
        assert_eq!(message.metadata_json, Some(json!({"a": 1})));
        assert_eq!(message.seq, None);
        assert_eq!(message.created_at, DateTime::UNIX_EPOCH);

        assert!(event_from_json(&json!({"id": "m", "role": "user"}), "s").is_none());
        let event = event_from_json(
            &json!({"id": "m", "seq": 3, "role": "user", "content": "hi",
                    "event_type": "FollowUp", "metadata_json": {"broken": true}}),
            "s",
        )
        .unwrap();
        assert_eq!(event.seq, 3);
        assert!(matches!(
            event.kind,
            EventKind::UserMessage {
                follow_up: true,
                ..
            }
        ));
        let not_an_object = chat_from_json(&json!(42));
        assert_eq!(not_an_object.id, "");
    }

    #[test]
    fn event_rows_round_trip_and_lose_nul_bytes() {
        let event = Event::new(
            "sess",
            7,
            EventKind::AssistantMessage {
                content: "a\0b".into(),
            },
        );
        let row = event_row("chat", &event);
        assert_eq!(row["content"], "a\u{FFFD}b");
        assert_eq!(row["seq"], 7);
        assert_eq!(row["metadata_json"]["seq"], 7);
        let mut stored = row.clone();
        stored["created_at"] = json!(timestamps::to_postgrest(&event.timestamp));
        let back = event_from_json(&stored, "sess").unwrap();
        assert_eq!(back.seq, 7);
        assert_eq!(
            back.kind,
            EventKind::AssistantMessage {
                content: "a\u{FFFD}b".into()
            }
        );
        assert_eq!(
            back.timestamp,
            timestamps::truncate_to_micros(event.timestamp)
        );
    }
}
