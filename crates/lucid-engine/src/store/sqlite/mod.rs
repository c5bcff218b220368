//! Embedded SQLite store.

/// The embedded store.
pub struct SqliteStore;
