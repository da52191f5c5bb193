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

/// How a [`rfc3339`] field is described in JSON Schema (OpenAPI): an RFC 3339 string.
/// `#[schemars(with = "schemas::time::Rfc3339")]` beside the serde attribute.
pub struct Rfc3339;

impl schemars::JsonSchema for Rfc3339 {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Rfc3339".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "format": "date-time"})
    }
}

/// Serde for a time kept as microseconds inside Cordon and shown as RFC 3339 outside it: written as
/// a string, read from a string or (as stored before the API was typed) an integer.
/// `#[serde(with = "schemas::time::rfc3339")]`.
pub mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Writes `us` as RFC 3339.
    pub fn serialize<S: Serializer>(us: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_micros(*us))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Micros(i64),
        Text(String),
    }

    /// Reads RFC 3339, or microseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        match Either::deserialize(d)? {
            Either::Micros(us) => Ok(us),
            Either::Text(t) => super::parse_rfc3339_micros(&t)
                .ok_or_else(|| D::Error::custom(format!("{t:?} is not an RFC 3339 time"))),
        }
    }
}

/// [`rfc3339`] for a time that may be unset (null).
pub mod rfc3339_opt {
    use serde::Serializer;

    /// Writes `us` as RFC 3339, or null.
    pub fn serialize<S: Serializer>(us: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match us {
            Some(us) => s.serialize_str(&super::format_micros(*us)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct At {
        #[serde(with = "rfc3339")]
        at: i64,
    }

    #[test]
    fn rfc3339_outside_micros_inside() {
        let json = serde_json::to_string(&At { at: 1_700_000_000_123_456 }).unwrap();
        assert_eq!(json, r#"{"at":"2023-11-14T22:13:20.123456Z"}"#);
        assert_eq!(serde_json::from_str::<At>(&json).unwrap().at, 1_700_000_000_123_456);
        assert_eq!(
            serde_json::from_str::<At>(r#"{"at":1700000000123456}"#).unwrap().at,
            1_700_000_000_123_456
        );
        assert!(serde_json::from_str::<At>(r#"{"at":"soon"}"#).is_err());
    }

    #[test]
    fn round_trip() {
        let us = parse_rfc3339_micros("2026-11-23T09:20:01.123456Z").unwrap();
        assert_eq!(format_micros(us), "2026-11-23T09:20:01.123456Z");
        assert_eq!(date_of_micros(us), "2026-11-23");
        assert_eq!(parse_rfc3339_micros("2026-11-23T10:20:01+01:00"), Some(us - 123_456));
        assert!(parse_rfc3339_micros("yesterday").is_none());
    }
}
