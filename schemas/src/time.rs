//! Timestamps: microseconds since the Unix epoch, UTC, everywhere inside Cordon.

use chrono::{DateTime, SecondsFormat, Utc};

/// Parses an RFC 3339 timestamp into microseconds.
///
/// The form agents send (`2026-11-23T09:20:01.123456Z`, or an offset `+01:00`) is read by hand, on
/// every event; anything else, or any field out of range, is left to chrono, which decides.
pub fn parse_rfc3339_micros(s: &str) -> Option<i64> {
    fast_rfc3339_micros(s.as_bytes())
        .or_else(|| DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_micros()))
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)` with every field in range, else `None`.
fn fast_rfc3339_micros(b: &[u8]) -> Option<i64> {
    let num = |at: usize, len: usize| -> Option<i64> {
        b.get(at..at + len)?
            .iter()
            .try_fold(0i64, |n, d| d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0')))
    };
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut at = 19;
    let mut micros = 0;
    if sep(at, b'.') {
        let digits = b[at + 1..].iter().take_while(|d| d.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        let frac = num(at + 1, digits.min(6))?;
        micros = frac * 10i64.pow(6 - digits.min(6) as u32);
        at += 1 + digits;
    }
    let offset = match b.get(at..)? {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(at + 1, 2)?, num(at + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3600 + m * 60;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + hour * 3600 + minute * 60 + second - offset) * 1_000_000 + micros)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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

    /// The hand-read form agrees with chrono on every input it takes, and leaves the rest to it.
    #[test]
    fn fast_form_agrees_with_chrono() {
        let chrono = |s: &str| DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_micros());
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut taken = 0;
        for _ in 0..200_000 {
            // Mostly valid fields, sometimes just out of range (month 13, Feb 29 of a common year).
            let (y, mo, d) = (1 + next(9999), 1 + next(13), 1 + next(31));
            let (h, mi, se) = (next(25), next(61), next(61));
            let frac = match next(4) {
                0 => String::new(),
                1 => format!(".{}", next(1000)),
                2 => format!(".{:06}", next(1_000_000)),
                _ => format!(".{:09}", next(1_000_000_000)),
            };
            let zone = match next(3) {
                0 => "Z".to_owned(),
                1 => format!("+{:02}:{:02}", next(25), next(60)),
                _ => format!("-{:02}:{:02}", next(24), next(61)),
            };
            let s = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}{frac}{zone}");
            assert_eq!(parse_rfc3339_micros(&s), chrono(&s), "{s}");
            taken += usize::from(fast_rfc3339_micros(s.as_bytes()).is_some());
        }
        assert!(taken > 100_000, "the hand-read form took {taken} of 200,000");
        for s in [
            "2026-11-23t09:20:01Z",
            "2026-11-23 09:20:01Z",
            "2016-12-31T23:59:60Z",
            "2026-11-23T09:20:01.1234567891Z",
            "2026-11-23T09:20:01.Z",
            "2026-11-23T09:20:01z",
            "2026-11-23T09:20:01",
            "2026-11-23T09:20:01+0100",
            "2026-02-29T00:00:00Z",
            "2024-02-29T00:00:00Z",
            "1969-12-31T23:59:59.999999Z",
            "+2026-11-23T09:20:01Z",
            "2026-11-23T09:20:01Z ",
        ] {
            assert_eq!(parse_rfc3339_micros(s), chrono(s), "{s}");
        }
    }
}
