//! Timestamp formats: what the SQLite file stores and what the HTTP API shows.
//!
//! Stored: RFC 3339 UTC with exactly six fractional digits and a `Z` suffix
//! (`2024-01-01T00:00:00.123456Z`), so text order is time order.
//! Shown: the way PostgREST renders a `timestamptz` (`2024-01-01T00:00:00.123456+00:00`,
//! trailing fractional zeros dropped, no fraction at all on a whole second), which is what
//! the original engine returned.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Timelike, Utc};
use serde::Serializer;

/// The current time, truncated to the microsecond precision the store keeps.
pub fn now_micros() -> DateTime<Utc> {
    truncate_to_micros(Utc::now())
}

/// Drops sub-microsecond precision so a value survives a round trip through the store.
pub fn truncate_to_micros(ts: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = ts.nanosecond();
    ts.with_nanosecond(nanos - nanos % 1_000).unwrap_or(ts)
}

/// The stored text form of a timestamp.
pub fn to_db(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses a stored timestamp. Accepts RFC 3339 with any offset and SQLite's own
/// `YYYY-MM-DD HH:MM:SS[.fff]` (taken as UTC); anything else is `None`.
pub fn from_db(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(ts) = DateTime::parse_from_rfc3339(text) {
        return Some(ts.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
}

/// Renders a timestamp exactly as PostgREST renders a UTC `timestamptz`.
pub fn to_postgrest(ts: &DateTime<Utc>) -> String {
    let base = ts.format("%Y-%m-%dT%H:%M:%S").to_string();
    let micros = ts.nanosecond() % 1_000_000_000 / 1_000;
    if micros == 0 {
        return format!("{base}+00:00");
    }
    let fraction = format!("{micros:06}");
    format!("{base}.{}+00:00", fraction.trim_end_matches('0'))
}

/// `serialize_with` helper giving [`to_postgrest`] output.
pub fn serialize_postgrest<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&to_postgrest(ts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(micros: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
            + chrono::Duration::microseconds(micros.into())
    }

    #[test]
    fn postgrest_format_matches_timestamptz_json() {
        assert_eq!(
            to_postgrest(&at(123_456)),
            "2024-01-01T00:00:00.123456+00:00"
        );
        assert_eq!(to_postgrest(&at(120_000)), "2024-01-01T00:00:00.12+00:00");
        assert_eq!(to_postgrest(&at(0)), "2024-01-01T00:00:00+00:00");
        assert_eq!(to_postgrest(&at(1)), "2024-01-01T00:00:00.000001+00:00");
    }

    #[test]
    fn stored_form_round_trips_and_sorts_as_text() {
        let a = at(5);
        let b = at(1_000_000);
        assert_eq!(to_db(&a), "2024-01-01T00:00:00.000005Z");
        assert_eq!(from_db(&to_db(&a)), Some(a));
        assert!(to_db(&a) < to_db(&b));
    }

    #[test]
    fn parses_sqlite_and_offset_forms_and_rejects_garbage() {
        assert_eq!(from_db("2024-01-01 00:00:00"), Some(at(0)));
        assert_eq!(from_db("2024-01-01T01:00:00.000005+01:00"), Some(at(5)));
        assert_eq!(from_db("yesterday"), None);
        assert_eq!(from_db(""), None);
    }

    #[test]
    fn truncation_keeps_microseconds() {
        let ts = at(7) + chrono::Duration::nanoseconds(999);
        assert_eq!(truncate_to_micros(ts), at(7));
        assert!(from_db(&to_db(&now_micros())).is_some());
    }
}
