//! Timestamps: microseconds since the Unix epoch, UTC, everywhere inside Cordon.

use chrono::{DateTime, SecondsFormat, Utc};

/// Parses an RFC 3339 timestamp into microseconds.
pub fn parse_rfc3339_micros(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_micros())
}

/// Formats microseconds as RFC 3339 with microsecond precision and a `Z`.
pub fn format_micros(us: i64) -> String {
    match DateTime::<Utc>::from_timestamp_micros(us) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Micros, true),
        None => us.to_string(),
    }
}

/// The UTC date (`YYYY-MM-DD`) of a time, the lake's partition key.
pub fn date_of_micros(us: i64) -> String {
    match DateTime::<Utc>::from_timestamp_micros(us) {
        Some(t) => t.format("%Y-%m-%d").to_string(),
        None => "1970-01-01".to_owned(),
    }
}

/// Now, in microseconds.
pub fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let us = parse_rfc3339_micros("2026-11-23T09:20:01.123456Z").unwrap();
        assert_eq!(format_micros(us), "2026-11-23T09:20:01.123456Z");
        assert_eq!(date_of_micros(us), "2026-11-23");
        assert_eq!(parse_rfc3339_micros("2026-11-23T10:20:01+01:00"), Some(us - 123_456));
        assert!(parse_rfc3339_micros("yesterday").is_none());
    }
}
