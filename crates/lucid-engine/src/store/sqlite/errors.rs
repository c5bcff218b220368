//! Mapping of SQLite failures onto [`StoreError`].
//!
//! Anything that means "the database cannot be reached or written right now" (cannot open,
//! I/O error, disk full, read-only, busy/locked, permission) is [`StoreError::Unavailable`];
//! a unique-constraint violation is [`StoreError::Conflict`]; everything else is
//! [`StoreError::Database`]. Messages come from SQLite and never contain bound values.

use rusqlite::ErrorCode;

use crate::store::StoreError;

/// Converts a rusqlite error, keeping SQLite's message.
pub fn map_sqlite(err: rusqlite::Error) -> StoreError {
    match &err {
        rusqlite::Error::SqliteFailure(e, _) => match e.code {
            ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::ReadOnly
            | ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::PermissionDenied
            | ErrorCode::FileLockingProtocolFailed
            | ErrorCode::NoLargeFileSupport
            | ErrorCode::OutOfMemory => StoreError::Unavailable(err.to_string()),
            ErrorCode::ConstraintViolation
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                StoreError::Conflict(err.to_string())
            }
            _ => StoreError::Database(err.to_string()),
        },
        rusqlite::Error::InvalidPath(_) => StoreError::Unavailable(err.to_string()),
        _ => StoreError::Database(err.to_string()),
    }
}

/// Converts a filesystem error met while preparing the database location or a backup.
pub fn map_io(context: &str, err: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{context}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_is_unavailable_and_unique_is_conflict() {
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(matches!(map_sqlite(busy), StoreError::Unavailable(_)));
        let unique = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE),
            None,
        );
        assert!(matches!(map_sqlite(unique), StoreError::Conflict(_)));
        let fk = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
            None,
        );
        assert!(matches!(map_sqlite(fk), StoreError::Database(_)));
        assert!(matches!(
            map_sqlite(rusqlite::Error::QueryReturnedNoRows),
            StoreError::Database(_)
        ));
    }
}
