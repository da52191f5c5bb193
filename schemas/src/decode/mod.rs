//! Decoding one NDJSON line from a channel into a [`Record`], or a precise reason it was rejected.
//!
//! The channel (the NATS subject) decides tenant and agent; a payload that claims another is rejected
//! as a security event. Fields Cordon does not know are kept in the `extra` column, never dropped.

use crate::fields::col;
use crate::record::{Cell, Record};
use serde_json::Value;

/// Limits applied to every line.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest accepted line, in bytes.
    pub max_line_bytes: usize,
    /// Deepest accepted JSON nesting.
    pub max_depth: usize,
    /// An event time further than this from the receive time is flagged `time_skewed`.
    pub max_skew_micros: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_line_bytes: 256 * 1024, max_depth: 16, max_skew_micros: 24 * 3600 * 1_000_000 }
    }
}

/// Where a line came from: the authenticated identity and the delivery bookkeeping.
#[derive(Clone, Debug)]
pub struct Channel<'a> {
    /// Tenant, from the subject.
    pub tenant: &'a str,
    /// Agent, from the subject.
    pub agent: &'a str,
    /// A key unique to this message (`boot:seq` from the message id, or `s<stream seq>`), used to
    /// derive event ids that are stable across redeliveries.
    pub message_key: &'a str,
    /// The JetStream stream sequence of the message.
    pub stream_seq: u64,
    /// When ingest received it, microseconds.
    pub received: i64,
}

/// Why a line was rejected. Each variant is a counted reason (`reason()`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Reject {
    /// Longer than `max_line_bytes`.
    #[error("line is {len} bytes, over the {max}-byte limit")]
    TooLarge {
        /// Actual length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not UTF-8.
    #[error("line is not valid UTF-8 (first bad byte at offset {offset})")]
    InvalidUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// Not JSON.
    #[error("line is not valid JSON: {0}")]
    InvalidJson(String),
    /// JSON, but not an object.
    #[error("line is JSON but not an object")]
    NotAnObject,
    /// Nested deeper than allowed.
    #[error("JSON nesting is deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// A known field has the wrong type or format.
    #[error("field {path}: {reason}")]
    BadField {
        /// The ECS path.
        path: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The payload claims an identity other than its channel's.
    #[error("payload claims {path}={claimed:?} but the channel is {actual:?}")]
    IdentityMismatch {
        /// The ECS path of the claim.
        path: &'static str,
        /// The claimed value.
        claimed: String,
        /// The channel's value.
        actual: String,
    },
}

impl Reject {
    /// A stable, low-cardinality reason code for counters and the dead-letter stream.
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::TooLarge { .. } => "too_large",
            Reject::InvalidUtf8 { .. } => "invalid_utf8",
            Reject::InvalidJson(_) => "invalid_json",
            Reject::NotAnObject => "not_an_object",
            Reject::TooDeep { .. } => "too_deep",
            Reject::BadField { .. } => "bad_field",
            Reject::IdentityMismatch { .. } => "identity_mismatch",
        }
    }

    /// True for rejects that are security events, not mere malformation.
    pub fn is_security(&self) -> bool {
        matches!(self, Reject::IdentityMismatch { .. })
    }
}

/// Decodes line number `line_no` (0-based) of a message.
///
/// One pass over the JSON: each key is resolved against the field table as it streams by (nested
/// objects and flat dotted keys alike), known values go straight to their cells, and only what Cordon
/// does not know is kept as JSON for the `extra` column. When a field occurs twice (nested and as a
/// flat dotted key), the first wins and the other is kept in `extra`. Errors rank as before the single
/// pass: invalid JSON, then nesting depth, then the field first in [`FIELDS`] order.
pub fn decode_line(line: &[u8], line_no: usize, ch: &Channel<'_>, limits: &Limits) -> Result<Record, Reject> {
    if line.len() > limits.max_line_bytes {
        return Err(Reject::TooLarge { len: line.len(), max: limits.max_line_bytes });
    }
    let text = std::str::from_utf8(line).map_err(|e| Reject::InvalidUtf8 { offset: e.valid_up_to() })?;
    let mut state = stream::State::new(ch, limits.max_depth);
    let mut de = serde_json::Deserializer::from_str(text);
    let top = serde::de::DeserializeSeed::deserialize(stream::Top(&mut state), &mut de)
        .and_then(|top| de.end().map(|()| top))
        .map_err(|e| Reject::InvalidJson(e.to_string()))?;
    let Some(extra) = top else {
        return Err(Reject::NotAnObject);
    };
    if state.too_deep {
        return Err(Reject::TooDeep { max: limits.max_depth });
    }
    if let Some((_, err)) = state.err {
        return Err(err);
    }
    finish(state.rec, extra, line_no, ch, limits)
}

/// The channel's identity and bookkeeping, the time check, the event id and the `extra` column.
fn finish(
    mut rec: Record,
    extra: serde_json::Map<String, Value>,
    line_no: usize,
    ch: &Channel<'_>,
    limits: &Limits,
) -> Result<Record, Reject> {
    rec.set(col::TENANT, Cell::Str(ch.tenant.to_owned()));
    rec.set(col::AGENT_ID, Cell::Str(ch.agent.to_owned()));
    rec.set(col::INGESTED, Cell::Time(ch.received));
    rec.set(col::STREAM_SEQ, Cell::Int(i64::try_from(ch.stream_seq).unwrap_or(i64::MAX)));
    let skewed = match rec.cell(col::TIME) {
        Cell::Time(t) => (t - ch.received).abs() > limits.max_skew_micros,
        _ => {
            rec.set(col::TIME, Cell::Time(ch.received));
            true
        }
    };
    rec.set(col::TIME_SKEWED, Cell::Bool(skewed));
    match rec.cell(col::EVENT_ID) {
        Cell::Str(id) if !id.is_empty() && id.len() <= 128 => {}
        Cell::Str(id) if id.len() > 128 => {
            return Err(Reject::BadField { path: "event.id", reason: "longer than 128 bytes".to_owned() });
        }
        _ => rec.set(col::EVENT_ID, Cell::Str(format!("{}:{}:{}", ch.agent, ch.message_key, line_no))),
    }
    if !extra.is_empty() {
        rec.set(col::EXTRA, Cell::Str(Value::Object(extra).to_string()));
    }
    Ok(rec)
}

mod keys;
mod stream;

#[cfg(test)]
mod tests;
