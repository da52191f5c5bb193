//! Decoding one NDJSON line from a channel into a [`Record`], or a precise reason it was rejected.
//!
//! The channel (the NATS subject) decides tenant and agent; a payload that claims another is rejected
//! as a security event. Fields Cordon does not know are kept in the `extra` column, never dropped.

use crate::fields::col;
use crate::record::{Cell, Record, RecordBuilder};
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

/// The JSON parser a line is streamed with. Both drive the same walk (`stream::Top`) through serde,
/// so records, `extra` and the ranking of errors are the same, with three exceptions: `InvalidJson`'s
/// text; a line nested 129 to 255 levels deep, which serde_json refuses as invalid JSON and sonic-rs
/// reads to be refused as too deep; and `-0`, a negative zero to serde_json and a zero to sonic-rs.
/// `cordon-bench --only decode` measures them side by side (issue 21).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Parser {
    /// `serde_json`.
    SerdeJson,
    /// `sonic-rs` (strings and whitespace scanned with SIMD).
    #[default]
    SonicRs,
}

impl Parser {
    /// Both, for benches and the tests that hold them to the same answers.
    pub const ALL: [Parser; 2] = [Parser::SerdeJson, Parser::SonicRs];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Parser::SerdeJson => "serde_json",
            Parser::SonicRs => "sonic-rs",
        }
    }

    /// Streams `text` into `state`; `None` when it is JSON but not an object. Both parsers stop at
    /// a fixed nesting depth (128 and 255 levels), so no line can exhaust the stack.
    fn walk(
        self,
        text: &str,
        state: &mut stream::State<'_>,
    ) -> Result<Option<serde_json::Map<String, Value>>, String> {
        use serde::de::DeserializeSeed;
        match self {
            Parser::SerdeJson => {
                let mut de = serde_json::Deserializer::from_str(text);
                let top = stream::Top(state).deserialize(&mut de).map_err(|e| e.to_string())?;
                de.end().map_err(|e| e.to_string())?;
                Ok(top)
            }
            Parser::SonicRs => {
                let mut de = sonic_rs::Deserializer::from_str(text);
                let top = stream::Top(state).deserialize(&mut de).map_err(|e| e.to_string())?;
                de.end().map_err(|e| e.to_string())?;
                Ok(top)
            }
        }
    }
}

/// Decodes line number `line_no` (0-based) of a message, with the default [`Parser`].
pub fn decode_line(line: &[u8], line_no: usize, ch: &Channel<'_>, limits: &Limits) -> Result<Record, Reject> {
    decode_line_with(Parser::default(), line, line_no, ch, limits)
}

/// Decodes line number `line_no` (0-based) of a message with `parser`.
///
/// One pass over the JSON: each key is resolved against the field table as it streams by (nested
/// objects and flat dotted keys alike), known values go straight to their cells, and only what Cordon
/// does not know is kept as JSON for the `extra` column. When a field occurs twice (nested and as a
/// flat dotted key), the first wins and the other is kept in `extra`. Errors rank as before the single
/// pass: invalid JSON, then nesting depth, then the field first in [`FIELDS`](crate::fields::FIELDS) order.
pub fn decode_line_with(
    parser: Parser,
    line: &[u8],
    line_no: usize,
    ch: &Channel<'_>,
    limits: &Limits,
) -> Result<Record, Reject> {
    if line.len() > limits.max_line_bytes {
        return Err(Reject::TooLarge { len: line.len(), max: limits.max_line_bytes });
    }
    let text = std::str::from_utf8(line).map_err(|e| Reject::InvalidUtf8 { offset: e.valid_up_to() })?;
    let mut state = stream::State::new(ch, limits.max_depth);
    let Some(extra) = parser.walk(text, &mut state).map_err(Reject::InvalidJson)? else {
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
    mut rec: RecordBuilder,
    extra: serde_json::Map<String, Value>,
    line_no: usize,
    ch: &Channel<'_>,
    limits: &Limits,
) -> Result<Record, Reject> {
    // Ingest's own fields: the walk never sets them (a sender's claim is checked, then dropped).
    rec.push(col::TENANT, Cell::Str(ch.tenant.to_owned()));
    rec.push(col::AGENT_ID, Cell::Str(ch.agent.to_owned()));
    rec.push(col::INGESTED, Cell::Time(ch.received));
    rec.push(col::STREAM_SEQ, Cell::Int(i64::try_from(ch.stream_seq).unwrap_or(i64::MAX)));
    let skewed = match rec.get(col::TIME) {
        Some(Cell::Time(t)) => (t - ch.received).abs() > limits.max_skew_micros,
        _ => {
            rec.set(col::TIME, Cell::Time(ch.received));
            true
        }
    };
    rec.push(col::TIME_SKEWED, Cell::Bool(skewed));
    match rec.get(col::EVENT_ID) {
        Some(Cell::Str(id)) if !id.is_empty() && id.len() <= 128 => {}
        Some(Cell::Str(id)) if id.len() > 128 => {
            return Err(Reject::BadField { path: "event.id", reason: "longer than 128 bytes".to_owned() });
        }
        _ => rec.set(col::EVENT_ID, Cell::Str(format!("{}:{}:{}", ch.agent, ch.message_key, line_no))),
    }
    if !extra.is_empty() {
        rec.push(col::EXTRA, Cell::Str(Value::Object(extra).to_string()));
    }
    Ok(rec.build())
}

mod keys;
mod stream;

#[cfg(test)]
mod tests;
