//! Lenient row decoding.
//!
//! One damaged row (a bad timestamp, invalid JSON, a NULL or a number where text belongs,
//! invalid UTF-8) must never hide the rest of a user's history. Every column is read as a
//! raw SQLite value and converted here; anything unexpected becomes a fallback value and a
//! `tracing::warn!` naming the table, the row id and the column.

use chrono::{DateTime, Utc};
use rusqlite::types::ValueRef;
use rusqlite::Row;
use serde_json::Value;

use super::timestamps;

/// Reads the columns of one row of `table` without ever failing.
pub struct LenientRow<'a, 'stmt> {
    row: &'a Row<'stmt>,
    table: &'static str,
    id: String,
}

impl<'a, 'stmt> LenientRow<'a, 'stmt> {
    /// Wraps `row`; its id is read (leniently) from column `id_idx`.
    pub fn new(row: &'a Row<'stmt>, table: &'static str, id_idx: usize) -> Self {
        let mut reader = Self {
            row,
            table,
            id: String::new(),
        };
        reader.id = reader.opt_text(id_idx, "id").unwrap_or_default();
        reader
    }

    /// The row's id as text (empty when it was unreadable).
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

    fn raw(&self, idx: usize, column: &str) -> Option<ValueRef<'_>> {
        match self.row.get_ref(idx) {
            Ok(v) => Some(v),
            Err(e) => {
                self.warn(column, &e.to_string());
                None
            }
        }
    }

    /// Text of a nullable column. Numbers are rendered as text and blobs decoded lossily,
    /// both with a warning; NULL is `None` without one.
    pub fn opt_text(&self, idx: usize, column: &str) -> Option<String> {
        match self.raw(idx, column)? {
            ValueRef::Null => None,
            ValueRef::Text(bytes) => Some(match std::str::from_utf8(bytes) {
                Ok(s) => s.to_string(),
                Err(_) => {
                    self.warn(column, "invalid UTF-8");
                    String::from_utf8_lossy(bytes).into_owned()
                }
            }),
            ValueRef::Integer(i) => {
                self.warn(column, "integer where text was expected");
                Some(i.to_string())
            }
            ValueRef::Real(f) => {
                self.warn(column, "real where text was expected");
                Some(f.to_string())
            }
            ValueRef::Blob(bytes) => {
                self.warn(column, "blob where text was expected");
                Some(String::from_utf8_lossy(bytes).into_owned())
            }
        }
    }

    /// Text of a column that should never be NULL; NULL becomes `fallback` with a warning.
    pub fn text_or(&self, idx: usize, column: &str, fallback: &str) -> String {
        self.opt_text(idx, column).unwrap_or_else(|| {
            self.warn(column, "NULL where text was expected");
            fallback.to_string()
        })
    }

    /// A stored timestamp; unreadable or NULL values become the Unix epoch with a warning.
    pub fn timestamp(&self, idx: usize, column: &str) -> DateTime<Utc> {
        let text = self.opt_text(idx, column);
        match text.as_deref().map(timestamps::from_db) {
            Some(Some(ts)) => ts,
            Some(None) => {
                self.warn(column, "unparsable timestamp");
                DateTime::UNIX_EPOCH
            }
            None => {
                self.warn(column, "NULL timestamp");
                DateTime::UNIX_EPOCH
            }
        }
    }

    /// A boolean stored as an integer; NULL or garbage becomes `fallback` with a warning.
    pub fn boolean(&self, idx: usize, column: &str, fallback: bool) -> bool {
        match self.raw(idx, column) {
            Some(ValueRef::Integer(i)) => i != 0,
            Some(ValueRef::Text(t)) => match t {
                b"1" | b"true" | b"TRUE" | b"t" => true,
                b"0" | b"false" | b"FALSE" | b"f" => false,
                _ => {
                    self.warn(column, "unreadable boolean");
                    fallback
                }
            },
            _ => {
                self.warn(column, "NULL or unreadable boolean");
                fallback
            }
        }
    }

    /// A non-negative integer (a `seq`); anything else is `None`, with a warning unless NULL.
    pub fn opt_u64(&self, idx: usize, column: &str) -> Option<u64> {
        match self.raw(idx, column)? {
            ValueRef::Null => None,
            ValueRef::Integer(i) if i >= 0 => Some(i as u64),
            _ => {
                self.warn(column, "not a non-negative integer");
                None
            }
        }
    }

    /// JSON text; NULL is `None`, invalid JSON is `None` with a warning.
    pub fn json(&self, idx: usize, column: &str) -> Option<Value> {
        let text = self.opt_text(idx, column)?;
        match serde_json::from_str(&text) {
            Ok(v) => Some(v),
            Err(_) => {
                self.warn(column, "invalid JSON");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn odd_values_fall_back_instead_of_failing() {
        let conn = Connection::open_in_memory().unwrap();
        let mut stmt = conn
            .prepare("SELECT 42, NULL, X'FF61', 'nope', '{bad', 'yes', -3, '[1]'")
            .unwrap();
        let mut rows = stmt.query([]).unwrap();
        let row = rows.next().unwrap().unwrap();
        let r = LenientRow::new(row, "t", 0);
        assert_eq!(r.id(), "42");
        assert_eq!(r.opt_text(1, "a"), None);
        assert_eq!(r.text_or(1, "a", "fallback"), "fallback");
        assert_eq!(r.opt_text(2, "b").unwrap(), "\u{FFFD}a");
        assert_eq!(r.timestamp(3, "c"), DateTime::UNIX_EPOCH);
        assert_eq!(r.timestamp(1, "c"), DateTime::UNIX_EPOCH);
        assert_eq!(r.json(4, "d"), None);
        assert_eq!(r.json(7, "d"), Some(serde_json::json!([1])));
        assert!(r.boolean(5, "e", true));
        assert!(!r.boolean(5, "e", false));
        assert!(r.boolean(0, "e", false));
        assert_eq!(r.opt_u64(6, "f"), None);
        assert_eq!(r.opt_u64(0, "f"), Some(42));
        // Out-of-range column index: a fallback, not a panic.
        assert_eq!(r.opt_text(99, "g"), None);
    }
}
