//! Versioned schema migrations, tracked in `PRAGMA user_version`.
//!
//! Each migration runs in its own `BEGIN IMMEDIATE` transaction together with the version
//! bump, so a failure leaves the previous version intact. Before migrating a database that
//! already holds a schema, a consistent copy is written next to it with `VACUUM INTO`
//! (`<file>.bak-v<from>-<unix-ts>`). A database written by a newer Lucid is refused untouched.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, TransactionBehavior};

use super::errors::map_sqlite;
use crate::store::{StoreError, StoreResult};

/// One schema step; `version` is the `user_version` after it is applied.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The schema, in order. Column names follow the original's Supabase schema.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "chat sessions and messages",
        sql: r#"
CREATE TABLE chat_sessions (
    id               TEXT PRIMARY KEY NOT NULL,
    user_id          TEXT NOT NULL,
    agent_session_id TEXT,
    project_id       TEXT,
    title            TEXT,
    model_provider   TEXT,
    model            TEXT,
    repo_url         TEXT,
    branch           TEXT,
    is_active        INTEGER DEFAULT 1,
    created_at       TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX ix_chat_sessions_user_updated ON chat_sessions (user_id, updated_at);
CREATE INDEX ix_chat_sessions_user_agent_session ON chat_sessions (user_id, agent_session_id);

CREATE TABLE chat_messages (
    id            TEXT PRIMARY KEY NOT NULL,
    session_id    TEXT NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
    seq           INTEGER,
    role          TEXT NOT NULL,
    content       TEXT NOT NULL,
    event_type    TEXT,
    metadata_json TEXT,
    created_at    TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (session_id, seq)
);
"#,
    },
    Migration {
        version: 2,
        name: "integrations",
        sql: r#"
CREATE TABLE integrations (
    id                     TEXT PRIMARY KEY NOT NULL,
    user_id                TEXT NOT NULL,
    provider               TEXT NOT NULL,
    label                  TEXT,
    access_token_encrypted TEXT NOT NULL,
    iv                     TEXT NOT NULL,
    external_username      TEXT,
    scopes                 TEXT,
    created_at             TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (user_id, provider)
);
"#,
    },
];

/// The schema version the code knows (highest of `migrations`).
pub fn latest_version(migrations: &[Migration]) -> i64 {
    migrations.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Reads `PRAGMA user_version`.
pub fn current_version(conn: &Connection) -> StoreResult<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(map_sqlite)
}

/// Refuses a database whose version is newer than `migrations` know. Reads only.
pub fn check_not_newer(conn: &Connection, migrations: &[Migration]) -> StoreResult<i64> {
    let found = current_version(conn)?;
    let known = latest_version(migrations);
    if found > known {
        return Err(StoreError::Database(format!(
            "the database schema is version {found} but this Lucid only knows up to version \
             {known}; it was written by a newer Lucid. Upgrade Lucid or use another data \
             directory (the file was not modified)"
        )));
    }
    if found < 0 {
        return Err(StoreError::Database(format!(
            "the database has an invalid schema version {found}"
        )));
    }
    Ok(found)
}

/// Applies every migration newer than the database, backing the file up first when it
/// already has a schema. Returns the backup path, if one was written.
pub fn migrate(
    conn: &mut Connection,
    db_path: &Path,
    migrations: &[Migration],
) -> StoreResult<Option<PathBuf>> {
    let from = check_not_newer(conn, migrations)?;
    let pending: Vec<&Migration> = migrations.iter().filter(|m| m.version > from).collect();
    if pending.is_empty() {
        return Ok(None);
    }
    let backup = if has_schema(conn)? {
        Some(write_backup(conn, db_path, from)?)
    } else {
        None
    };
    for migration in pending {
        apply(conn, migration)?;
    }
    Ok(backup)
}

fn has_schema(conn: &Connection) -> StoreResult<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name NOT LIKE 'sqlite_%')",
        [],
        |r| r.get(0),
    )
    .map_err(map_sqlite)
}

fn apply(conn: &mut Connection, migration: &Migration) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map_sqlite)?;
    // Another process may have migrated while we waited for the write lock.
    if current_version(&tx)? >= migration.version {
        return Ok(());
    }
    tx.execute_batch(migration.sql).map_err(|e| {
        StoreError::Database(format!(
            "migration {} ({}) failed: {e}",
            migration.version, migration.name
        ))
    })?;
    tx.pragma_update(None, "user_version", migration.version)
        .map_err(map_sqlite)?;
    tx.commit().map_err(map_sqlite)?;
    tracing::info!(
        version = migration.version,
        name = migration.name,
        "applied database migration"
    );
    Ok(())
}

/// Writes `<db>.bak-v<from>-<unix-ts>` (with a counter suffix if that name is taken).
fn write_backup(conn: &Connection, db_path: &Path, from: i64) -> StoreResult<PathBuf> {
    let file_name = db_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "lucid.sqlite3".to_string());
    let ts = chrono::Utc::now().timestamp();
    let base = format!("{file_name}.bak-v{from}-{ts}");
    let mut target = db_path.with_file_name(&base);
    let mut n = 1;
    while target.exists() {
        target = db_path.with_file_name(format!("{base}-{n}"));
        n += 1;
    }
    let target_text = target.to_str().ok_or_else(|| {
        StoreError::Unavailable("the database path is not valid UTF-8".to_string())
    })?;
    conn.execute("VACUUM INTO ?1", [target_text])
        .map_err(|e| match map_sqlite(e) {
            StoreError::Database(m) | StoreError::Conflict(m) => {
                StoreError::Unavailable(format!("could not write the pre-migration backup: {m}"))
            }
            other => other,
        })?;
    tracing::info!(backup = %target.display(), from, "backed up the database before migrating");
    Ok(target)
}
