//! `integrations` queries (encrypted forge tokens). Every statement filters on `user_id`;
//! the row's own `user_id` field is ignored in favour of the caller's.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::errors::map_sqlite;
use super::rows::LenientRow;
use super::timestamps::to_db;
use crate::store::{IntegrationRow, StoreError, StoreResult};

const COLUMNS: &str = "id, user_id, provider, label, access_token_encrypted, iv, \
     external_username, scopes, created_at";

fn integration_from_row(row: &Row<'_>) -> IntegrationRow {
    let r = LenientRow::new(row, "integrations", 0);
    IntegrationRow {
        id: r.id().to_string(),
        user_id: r.text_or(1, "user_id", ""),
        provider: r.text_or(2, "provider", ""),
        label: r.opt_text(3, "label"),
        access_token_encrypted: r.text_or(4, "access_token_encrypted", ""),
        iv: r.text_or(5, "iv", ""),
        external_username: r.opt_text(6, "external_username"),
        scopes: r.opt_text(7, "scopes"),
        created_at: r.timestamp(8, "created_at"),
    }
}

/// Inserts the row or, when the user already has one for this provider, replaces its token,
/// label, username and scopes (keeping its id and creation time). Returns the row id.
pub fn upsert(conn: &Connection, user_id: &str, row: IntegrationRow) -> StoreResult<String> {
    if row.provider.trim().is_empty() {
        return Err(StoreError::Database(
            "an integration needs a provider".into(),
        ));
    }
    let id = if row.id.trim().is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        row.id
    };
    conn.prepare_cached(
        "INSERT INTO integrations (id, user_id, provider, label, access_token_encrypted, iv, \
         external_username, scopes, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (user_id, provider) DO UPDATE SET \
         label = excluded.label, access_token_encrypted = excluded.access_token_encrypted, \
         iv = excluded.iv, external_username = excluded.external_username, \
         scopes = excluded.scopes \
         RETURNING id",
    )
    .and_then(|mut stmt| {
        stmt.query_row(
            params![
                id,
                user_id,
                row.provider,
                row.label,
                row.access_token_encrypted,
                row.iv,
                row.external_username,
                row.scopes,
                to_db(&row.created_at),
            ],
            |r| r.get::<_, String>(0),
        )
    })
    .map_err(map_sqlite)
}

pub fn get(
    conn: &Connection,
    user_id: &str,
    provider: &str,
) -> StoreResult<Option<IntegrationRow>> {
    let sql = format!("SELECT {COLUMNS} FROM integrations WHERE user_id = ?1 AND provider = ?2");
    conn.prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_row(params![user_id, provider], |row| {
                Ok(integration_from_row(row))
            })
            .optional()
        })
        .map_err(map_sqlite)
}

/// The user's integrations, oldest first.
pub fn list(conn: &Connection, user_id: &str) -> StoreResult<Vec<IntegrationRow>> {
    let sql =
        format!("SELECT {COLUMNS} FROM integrations WHERE user_id = ?1 ORDER BY created_at, rowid");
    let mut stmt = conn.prepare_cached(&sql).map_err(map_sqlite)?;
    let rows = stmt
        .query_map(params![user_id], |row| Ok(integration_from_row(row)))
        .map_err(map_sqlite)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(map_sqlite)
}

pub fn delete(conn: &Connection, user_id: &str, provider: &str) -> StoreResult<bool> {
    let changed = conn
        .prepare_cached("DELETE FROM integrations WHERE user_id = ?1 AND provider = ?2")
        .and_then(|mut stmt| stmt.execute(params![user_id, provider]))
        .map_err(map_sqlite)?;
    Ok(changed > 0)
}
