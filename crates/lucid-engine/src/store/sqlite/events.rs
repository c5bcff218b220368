//! `chat_messages` queries: the session event log and the chat history view of it.
//! Ownership is checked through the parent chat's `user_id`.

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde::Serialize;
use serde_json::Value;

use super::errors::map_sqlite;
use super::rows::LenientRow;
use super::timestamps::{now_micros, to_db};
use crate::events::{Event, EventKind};
use crate::store::{ChatMessage, StoreError, StoreResult};

/// Stored `content` is capped at this many bytes (cut on a character boundary).
pub const MAX_CONTENT_BYTES: usize = 1024 * 1024;

/// Cuts `text` to at most `max` bytes without splitting a character.
pub fn cap_bytes(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// A version-7 UUID: time-ordered, so a batch's ids land next to each other in the primary
/// key index instead of dirtying one random index page per row (random v4 ids made batch
/// appends several times slower), and random bits from the thread-local generator (no
/// system call per id).
fn time_ordered_id(unix_millis: u64) -> uuid::Uuid {
    uuid::Builder::from_unix_timestamp_millis(unix_millis, &rand::random::<[u8; 10]>()).into_uuid()
}

/// The stored `metadata_json` of an event: its kind-specific fields and `seq`, without the
/// timestamp and session id (they have their own columns). Serialised straight to text;
/// the same JSON as [`Event::metadata`] without building a `serde_json::Value` first.
#[derive(Serialize)]
struct StoredMetadata<'a> {
    seq: u64,
    #[serde(flatten)]
    kind: &'a EventKind,
}

/// One event ready to insert. Built before the write connection is taken, so the writer
/// holds it only for the SQL itself.
pub struct NewRow {
    seq: i64,
    role: &'static str,
    content: String,
    event_type: &'static str,
    metadata: String,
    created_at: String,
}

/// The rows of `events`; an event that cannot be stored fails the whole batch.
pub fn new_rows(events: &[Event]) -> StoreResult<Vec<NewRow>> {
    events
        .iter()
        .map(|event| {
            let seq = i64::try_from(event.seq).map_err(|_| {
                StoreError::Database(format!("event seq {} is out of range", event.seq))
            })?;
            let metadata = serde_json::to_string(&StoredMetadata {
                seq: event.seq,
                kind: &event.kind,
            })
            .map_err(|e| StoreError::Database(format!("cannot encode event {}: {e}", event.seq)))?;
            Ok(NewRow {
                seq,
                role: event.chat_role(),
                content: cap_bytes(event.content(), MAX_CONTENT_BYTES),
                event_type: event.event_type(),
                metadata,
                created_at: to_db(&event.timestamp),
            })
        })
        .collect()
}

/// Appends `rows` to the chat in one transaction. Rows whose `(chat, seq)` already exist
/// are skipped, so a retried batch never duplicates. A chat that is missing or belongs to
/// someone else is an error and nothing is written.
pub fn append(
    conn: &mut Connection,
    user_id: &str,
    chat_id: &str,
    rows: &[NewRow],
) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map_sqlite)?;
    let owned: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM chat_sessions WHERE id = ?1 AND user_id = ?2)",
        )
        .and_then(|mut stmt| stmt.query_row(params![chat_id, user_id], |r| r.get(0)))
        .map_err(map_sqlite)?;
    if !owned {
        return Err(StoreError::ChatNotFound(format!(
            "cannot append events: chat {chat_id} not found"
        )));
    }
    let mut inserted = 0usize;
    {
        let mut stmt = tx
            .prepare_cached(
                "INSERT INTO chat_messages \
                 (id, session_id, seq, role, content, event_type, metadata_json, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (session_id, seq) DO NOTHING",
            )
            .map_err(map_sqlite)?;
        let mut id_buf = uuid::Uuid::encode_buffer();
        let millis = u64::try_from(now_micros().timestamp_millis()).unwrap_or(0);
        for row in rows {
            let id = time_ordered_id(millis)
                .hyphenated()
                .encode_lower(&mut id_buf);
            inserted += stmt
                .execute(params![
                    &*id,
                    chat_id,
                    row.seq,
                    row.role,
                    row.content,
                    row.event_type,
                    row.metadata,
                    row.created_at,
                ])
                .map_err(map_sqlite)?;
        }
    }
    if inserted > 0 {
        tx.prepare_cached(
            "UPDATE chat_sessions SET updated_at = ?1 WHERE id = ?2 AND user_id = ?3",
        )
        .and_then(|mut stmt| stmt.execute(params![to_db(&now_micros()), chat_id, user_id]))
        .map_err(map_sqlite)?;
    }
    tx.commit().map_err(map_sqlite)
}

/// Messages of the user's chat, by seq then time. Empty when the chat is not the user's.
pub fn messages(conn: &Connection, user_id: &str, chat_id: &str) -> StoreResult<Vec<ChatMessage>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT m.id, m.role, m.content, m.event_type, m.metadata_json, m.created_at, m.seq \
             FROM chat_messages m JOIN chat_sessions c ON c.id = m.session_id \
             WHERE m.session_id = ?1 AND c.user_id = ?2 \
             ORDER BY m.seq, m.created_at, m.rowid",
        )
        .map_err(map_sqlite)?;
    let rows = stmt
        .query_map(params![chat_id, user_id], |row| Ok(message_from_row(row)))
        .map_err(map_sqlite)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(map_sqlite)
}

fn message_from_row(row: &Row<'_>) -> ChatMessage {
    let r = LenientRow::new(row, "chat_messages", 0);
    ChatMessage {
        id: r.id().to_string(),
        role: r.text_or(1, "role", "system"),
        content: r.text_or(2, "content", ""),
        event_type: r.opt_text(3, "event_type"),
        metadata_json: r.json(4, "metadata_json"),
        created_at: r.timestamp(5, "created_at"),
        seq: r.opt_u64(6, "seq"),
    }
}

/// Events of the user's chat with `seq > since`, oldest first, at most `limit`.
pub fn since(
    conn: &Connection,
    user_id: &str,
    chat_id: &str,
    since: u64,
    limit: u32,
) -> StoreResult<Vec<Event>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let Some(session_id) = event_session_id(conn, user_id, chat_id)? else {
        return Ok(Vec::new());
    };
    let since = i64::try_from(since).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, seq, role, content, event_type, metadata_json, created_at \
             FROM chat_messages \
             WHERE session_id = ?1 AND typeof(seq) = 'integer' AND seq > ?2 \
             ORDER BY seq LIMIT ?3",
        )
        .map_err(map_sqlite)?;
    let rows = stmt
        .query_map(params![chat_id, since, limit], |row| {
            Ok(event_from_row(row, &session_id))
        })
        .map_err(map_sqlite)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(map_sqlite)
}

/// Highest stored seq of the user's chat (0 when none, or when the chat is not the user's).
pub fn last_seq(conn: &Connection, user_id: &str, chat_id: &str) -> StoreResult<u64> {
    let seq: Option<i64> = conn
        .prepare_cached(
            "SELECT m.seq FROM chat_messages m JOIN chat_sessions c ON c.id = m.session_id \
             WHERE m.session_id = ?1 AND c.user_id = ?2 AND typeof(m.seq) = 'integer' \
             ORDER BY m.seq DESC LIMIT 1",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![chat_id, user_id], |r| r.get(0))
                .optional()
        })
        .map_err(map_sqlite)?;
    Ok(seq.map_or(0, |s| u64::try_from(s).unwrap_or(0)))
}

/// The session id events of this chat carry: its agent session id, else the chat id.
/// `None` when the chat is not the user's.
fn event_session_id(
    conn: &Connection,
    user_id: &str,
    chat_id: &str,
) -> StoreResult<Option<String>> {
    conn.prepare_cached(
        "SELECT id, agent_session_id FROM chat_sessions WHERE id = ?1 AND user_id = ?2",
    )
    .and_then(|mut stmt| {
        stmt.query_row(params![chat_id, user_id], |row| {
            let r = LenientRow::new(row, "chat_sessions", 0);
            Ok(r.opt_text(1, "agent_session_id")
                .unwrap_or_else(|| r.id().to_string()))
        })
        .optional()
    })
    .map_err(map_sqlite)
}

/// Rebuilds an event from its stored metadata; a row whose metadata is missing or
/// unreadable becomes a plain event of its role so the log keeps its text and its seq.
fn event_from_row(row: &Row<'_>, session_id: &str) -> Event {
    let r = LenientRow::new(row, "chat_messages", 0);
    let seq = r.opt_u64(1, "seq").unwrap_or(0);
    let timestamp = r.timestamp(6, "created_at");
    let rebuilt = r.json(5, "metadata_json").and_then(|mut metadata| {
        if let Value::Object(map) = &mut metadata {
            map.insert("seq".into(), Value::from(seq));
        }
        Event::from_metadata(session_id, timestamp, &metadata)
    });
    if let Some(mut event) = rebuilt {
        event.seq = seq;
        return event;
    }
    tracing::warn!(
        row_id = r.id(),
        seq,
        "event metadata unreadable; rebuilding the event from its text"
    );
    let role = r.text_or(2, "role", "system");
    let content = r.text_or(3, "content", "");
    let event_type = r.opt_text(4, "event_type");
    Event {
        session_id: session_id.to_string(),
        seq,
        timestamp,
        kind: fallback_kind(&role, event_type.as_deref(), content),
    }
}

pub(crate) fn fallback_kind(role: &str, event_type: Option<&str>, content: String) -> EventKind {
    match (role, event_type) {
        ("user", Some("FollowUp")) => EventKind::UserMessage {
            content,
            follow_up: true,
        },
        ("user", _) => EventKind::UserMessage {
            content,
            follow_up: false,
        },
        (_, Some("AgentErrorEvent")) => EventKind::Error { message: content },
        ("system", _) => EventKind::Progress { message: content },
        _ => EventKind::AssistantMessage { content },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_unique_v7_uuids_ordered_by_time() {
        let a = time_ordered_id(1_700_000_000_000);
        let b = time_ordered_id(1_700_000_000_001);
        assert_eq!(a.get_version_num(), 7);
        assert!(a.to_string() < b.to_string());
        let same: std::collections::HashSet<_> = (0..1000).map(|_| time_ordered_id(1)).collect();
        assert_eq!(same.len(), 1000);
    }

    #[test]
    fn stored_metadata_is_the_event_metadata() {
        let kinds = [
            EventKind::CommandOutput {
                call_id: "c1".into(),
                command: "ls \"a b\"".into(),
                output: "x\ny ✓".into(),
                exit_code: None,
                total_bytes: 7,
                timed_out: true,
                interrupted: false,
            },
            EventKind::Usage(crate::events::UsageReport {
                model: "m".into(),
                input_tokens: 3,
                total_cost_usd: Some(0.25),
                ..Default::default()
            }),
            EventKind::UserMessage {
                content: "hi".into(),
                follow_up: true,
            },
            EventKind::Status {
                status: crate::events::SessionStatus::Running,
                message: "go".into(),
            },
        ];
        for (i, kind) in kinds.into_iter().enumerate() {
            let event = Event::new("s", i as u64 + 1, kind);
            let rows = new_rows(std::slice::from_ref(&event)).unwrap();
            let stored: Value = serde_json::from_str(&rows[0].metadata).unwrap();
            assert_eq!(stored, event.metadata());
            assert_eq!(rows[0].seq, i as i64 + 1);
        }
    }

    #[test]
    fn out_of_range_seq_fails_the_batch() {
        let ok = Event::new(
            "s",
            1,
            EventKind::Progress {
                message: "a".into(),
            },
        );
        let bad = Event::new(
            "s",
            u64::MAX,
            EventKind::Progress {
                message: "b".into(),
            },
        );
        assert!(new_rows(&[ok, bad]).is_err());
    }

    #[test]
    fn cap_respects_character_boundaries() {
        assert_eq!(cap_bytes("abc".into(), 5), "abc");
        assert_eq!(cap_bytes("abc".into(), 2), "ab");
        // 'é' is two bytes: a cut in its middle drops it whole.
        assert_eq!(cap_bytes("aé".into(), 2), "a");
        assert_eq!(cap_bytes("aé".into(), 3), "aé");
    }

    #[test]
    fn fallback_kinds_follow_role_and_type() {
        assert!(matches!(
            fallback_kind("user", Some("FollowUp"), "x".into()),
            EventKind::UserMessage {
                follow_up: true,
                ..
            }
        ));
        assert!(matches!(
            fallback_kind("assistant", Some("AgentErrorEvent"), "x".into()),
            EventKind::Error { .. }
        ));
        assert!(matches!(
            fallback_kind("system", None, "x".into()),
            EventKind::Progress { .. }
        ));
        assert!(matches!(
            fallback_kind("assistant", Some("CmdRunAction"), "x".into()),
            EventKind::AssistantMessage { .. }
        ));
    }
}
