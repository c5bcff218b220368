//! `chat_sessions` queries. Every statement filters on `user_id`.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::errors::map_sqlite;
use super::rows::LenientRow;
use super::timestamps::{now_micros, to_db};
use crate::store::{ChatSession, NewChat, StoreError, StoreResult};

/// Columns read by [`chat_from_row`], in order.
pub const CHAT_COLUMNS: &str = "id, user_id, agent_session_id, project_id, title, model_provider, \
     is_active, created_at, updated_at, repo_url, branch, model";

/// Builds a [`ChatSession`] from a row selected with [`CHAT_COLUMNS`], tolerating damage.
pub fn chat_from_row(row: &Row<'_>) -> ChatSession {
    let r = LenientRow::new(row, "chat_sessions", 0);
    ChatSession {
        id: r.id().to_string(),
        user_id: r.text_or(1, "user_id", ""),
        agent_session_id: r.opt_text(2, "agent_session_id"),
        project_id: r.opt_text(3, "project_id"),
        title: r.opt_text(4, "title"),
        model_provider: r.opt_text(5, "model_provider"),
        is_active: r.boolean(6, "is_active", false),
        created_at: r.timestamp(7, "created_at"),
        updated_at: r.timestamp(8, "updated_at"),
        repo_url: r.opt_text(9, "repo_url"),
        branch: r.opt_text(10, "branch"),
        model: r.opt_text(11, "model"),
    }
}

pub fn create(conn: &Connection, user_id: &str, chat: NewChat) -> StoreResult<ChatSession> {
    if chat.id.trim().is_empty() {
        return Err(StoreError::Database("a chat needs a non-empty id".into()));
    }
    let now = now_micros();
    let now_text = to_db(&now);
    conn.prepare_cached(
        "INSERT INTO chat_sessions (id, user_id, agent_session_id, project_id, title, \
         model_provider, model, repo_url, branch, is_active, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1, ?10, ?10)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            chat.id,
            user_id,
            chat.agent_session_id,
            chat.project_id,
            chat.title,
            chat.model_provider,
            chat.model,
            chat.repo_url,
            chat.branch,
            now_text,
        ])
    })
    .map_err(map_sqlite)?;
    Ok(ChatSession {
        id: chat.id,
        user_id: user_id.to_string(),
        agent_session_id: chat.agent_session_id,
        project_id: chat.project_id,
        title: chat.title,
        model_provider: chat.model_provider,
        is_active: true,
        created_at: now,
        updated_at: now,
        repo_url: chat.repo_url,
        branch: chat.branch,
        model: chat.model,
    })
}

pub fn list(
    conn: &Connection,
    user_id: &str,
    limit: u32,
    offset: u32,
) -> StoreResult<Vec<ChatSession>> {
    let sql = format!(
        "SELECT {CHAT_COLUMNS} FROM chat_sessions WHERE user_id = ?1 \
         ORDER BY updated_at DESC, rowid DESC LIMIT ?2 OFFSET ?3"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(map_sqlite)?;
    let rows = stmt
        .query_map(params![user_id, limit, offset], |row| {
            Ok(chat_from_row(row))
        })
        .map_err(map_sqlite)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(map_sqlite)
}

pub fn get(conn: &Connection, user_id: &str, chat_id: &str) -> StoreResult<Option<ChatSession>> {
    let sql = format!("SELECT {CHAT_COLUMNS} FROM chat_sessions WHERE id = ?1 AND user_id = ?2");
    conn.prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_row(params![chat_id, user_id], |row| Ok(chat_from_row(row)))
                .optional()
        })
        .map_err(map_sqlite)
}

/// The most recently created chat of an agent session.
pub fn by_session(
    conn: &Connection,
    user_id: &str,
    session_id: &str,
) -> StoreResult<Option<ChatSession>> {
    let sql = format!(
        "SELECT {CHAT_COLUMNS} FROM chat_sessions WHERE user_id = ?1 AND agent_session_id = ?2 \
         ORDER BY created_at DESC, rowid DESC LIMIT 1"
    );
    conn.prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_row(params![user_id, session_id], |row| Ok(chat_from_row(row)))
                .optional()
        })
        .map_err(map_sqlite)
}

pub fn rename(conn: &Connection, user_id: &str, chat_id: &str, title: &str) -> StoreResult<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE chat_sessions SET title = ?1, updated_at = ?2 WHERE id = ?3 AND user_id = ?4",
        )
        .and_then(|mut stmt| stmt.execute(params![title, to_db(&now_micros()), chat_id, user_id]))
        .map_err(map_sqlite)?;
    Ok(changed > 0)
}

/// Like [`rename`], only while the title is still `expected` (one statement: atomic).
pub fn rename_if(
    conn: &Connection,
    user_id: &str,
    chat_id: &str,
    expected: &str,
    title: &str,
) -> StoreResult<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE chat_sessions SET title = ?1, updated_at = ?2 \
             WHERE id = ?3 AND user_id = ?4 AND title = ?5",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                title,
                to_db(&now_micros()),
                chat_id,
                user_id,
                expected
            ])
        })
        .map_err(map_sqlite)?;
    Ok(changed > 0)
}

/// Deletes the chat; its messages go with it (`ON DELETE CASCADE`).
pub fn delete(conn: &Connection, user_id: &str, chat_id: &str) -> StoreResult<bool> {
    let changed = conn
        .prepare_cached("DELETE FROM chat_sessions WHERE id = ?1 AND user_id = ?2")
        .and_then(|mut stmt| stmt.execute(params![chat_id, user_id]))
        .map_err(map_sqlite)?;
    Ok(changed > 0)
}

/// Sets `is_active` and bumps `updated_at` (like the original's update trigger).
/// A missing or foreign chat is left alone.
pub fn set_active(
    conn: &Connection,
    user_id: &str,
    chat_id: &str,
    active: bool,
) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE chat_sessions SET is_active = ?1, updated_at = ?2 WHERE id = ?3 AND user_id = ?4",
    )
    .and_then(|mut stmt| stmt.execute(params![active, to_db(&now_micros()), chat_id, user_id]))
    .map_err(map_sqlite)?;
    Ok(())
}

/// Every user's chats marked active (startup recovery), oldest first.
pub fn active(conn: &Connection) -> StoreResult<Vec<ChatSession>> {
    let sql = format!(
        "SELECT {CHAT_COLUMNS} FROM chat_sessions WHERE is_active IS NOT 0 \
         ORDER BY created_at, rowid"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(map_sqlite)?;
    let rows = stmt
        .query_map([], |row| Ok(chat_from_row(row)))
        .map_err(map_sqlite)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(map_sqlite)
}

/// Startup recovery: no chat can be active before any session runs. `updated_at` is kept,
/// so the chats' order does not change.
pub fn deactivate_all(conn: &mut Connection) -> StoreResult<u64> {
    let changed = conn
        .execute(
            "UPDATE chat_sessions SET is_active = 0 WHERE is_active IS NOT 0",
            [],
        )
        .map_err(map_sqlite)?;
    Ok(changed as u64)
}
