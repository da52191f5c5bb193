//! Decoding one NDJSON line from a channel into a [`Record`], or a precise reason it was rejected.
//!
//! The channel (the NATS subject) decides tenant and agent; a payload that claims another is rejected
//! as a security event. Fields Cordon does not know are kept in the `extra` column, never dropped.

use crate::fields::{FIELDS, Origin, col};
use crate::record::{Cell, Record, cell_from_json};
use serde_json::{Map, Value};

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
pub fn decode_line(line: &[u8], line_no: usize, ch: &Channel<'_>, limits: &Limits) -> Result<Record, Reject> {
    if line.len() > limits.max_line_bytes {
        return Err(Reject::TooLarge { len: line.len(), max: limits.max_line_bytes });
    }
    let text = std::str::from_utf8(line).map_err(|e| Reject::InvalidUtf8 { offset: e.valid_up_to() })?;
    let value: Value = serde_json::from_str(text).map_err(|e| Reject::InvalidJson(e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(Reject::NotAnObject);
    };
    if depth(&map) > limits.max_depth {
        return Err(Reject::TooDeep { max: limits.max_depth });
    }

    let mut rec = Record::default();
    for (i, def) in FIELDS.iter().enumerate() {
        let Some(v) = take_path(&mut map, def.path) else { continue };
        if def.origin == Origin::Ingest {
            let actual = match i {
                col::TENANT => ch.tenant,
                col::AGENT_ID => ch.agent,
                _ => continue, // bookkeeping fields are always overwritten
            };
            let claimed = match &v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if !v.is_null() && claimed != actual {
                return Err(Reject::IdentityMismatch { path: def.path, claimed, actual: actual.to_owned() });
            }
            continue;
        }
        rec.cells[i] =
            cell_from_json(def.kind, v).map_err(|reason| Reject::BadField { path: def.path, reason })?;
    }

    rec.cells[col::TENANT] = Cell::Str(ch.tenant.to_owned());
    rec.cells[col::AGENT_ID] = Cell::Str(ch.agent.to_owned());
    rec.cells[col::INGESTED] = Cell::Time(ch.received);
    rec.cells[col::STREAM_SEQ] = Cell::Int(i64::try_from(ch.stream_seq).unwrap_or(i64::MAX));
    let skewed = match rec.cells[col::TIME] {
        Cell::Time(t) => (t - ch.received).abs() > limits.max_skew_micros,
        _ => {
            rec.cells[col::TIME] = Cell::Time(ch.received);
            true
        }
    };
    rec.cells[col::TIME_SKEWED] = Cell::Bool(skewed);
    match &rec.cells[col::EVENT_ID] {
        Cell::Str(id) if !id.is_empty() && id.len() <= 128 => {}
        Cell::Str(id) if id.len() > 128 => {
            return Err(Reject::BadField { path: "event.id", reason: "longer than 128 bytes".to_owned() });
        }
        _ => rec.cells[col::EVENT_ID] = Cell::Str(format!("{}:{}:{}", ch.agent, ch.message_key, line_no)),
    }
    if !map.is_empty() {
        rec.cells[col::EXTRA] = Cell::Str(Value::Object(map).to_string());
    }
    Ok(rec)
}

/// Removes the value at a dotted path, pruning objects the removal leaves empty.
fn take_path(map: &mut Map<String, Value>, path: &str) -> Option<Value> {
    match path.split_once('.') {
        None => map.remove(path),
        Some((head, rest)) => {
            // A flat dotted key (`"host.name": ...`, as some shippers send) counts too.
            if let Some(v) = map.remove(path) {
                return Some(v);
            }
            let Value::Object(child) = map.get_mut(head)? else { return None };
            let v = take_path(child, rest);
            if child.is_empty() {
                map.remove(head);
            }
            v
        }
    }
}

fn depth(map: &Map<String, Value>) -> usize {
    let mut max = 1;
    let mut stack: Vec<(&Value, usize)> = map.values().map(|v| (v, 2)).collect();
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Object(m) => {
                max = max.max(d);
                stack.extend(m.values().map(|c| (c, d + 1)));
            }
            Value::Array(a) => {
                max = max.max(d);
                stack.extend(a.iter().map(|c| (c, d + 1)));
            }
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ch() -> Channel<'static> {
        Channel {
            tenant: "acme",
            agent: "win-dakeqi",
            message_key: "1:7",
            stream_seq: 42,
            received: 1_000_000_000_000_000,
        }
    }

    fn decode(v: Value) -> Result<Record, Reject> {
        decode_line(v.to_string().as_bytes(), 3, &ch(), &Limits::default())
    }

    #[test]
    fn decodes_nested_and_flat_ecs() {
        let rec = decode(json!({
            "@timestamp": "2001-09-09T01:46:40Z",
            "event": {"category": "process", "action": "start"},
            "host": {"name": "WIN-DAKEQI", "ip": ["10.20.1.15"]},
            "process.pid": "4242",
            "process": {"command_line": "cmd.exe /c whoami", "parent": {"pid": 1}},
        }))
        .unwrap();
        assert_eq!(rec.get("process_pid"), Some(&Cell::Int(4242)));
        assert_eq!(rec.get("parent_pid"), Some(&Cell::Int(1)));
        assert_eq!(rec.get("host_ip"), Some(&Cell::List(vec!["10.20.1.15".into()])));
        assert_eq!(rec.get("event_id"), Some(&Cell::Str("win-dakeqi:1:7:3".into())));
        assert_eq!(rec.get("tenant"), Some(&Cell::Str("acme".into())));
        assert_eq!(rec.get("stream_seq"), Some(&Cell::Int(42)));
        assert_eq!(rec.get("time_skewed"), Some(&Cell::Bool(false)));
        assert_eq!(rec.get("extra"), Some(&Cell::Null));
    }

    #[test]
    fn unknown_fields_are_kept_and_round_trip() {
        let input = json!({
            "@timestamp": "2001-09-09T01:46:40Z",
            "host": {"name": "h", "vendor_field": {"x": 1}},
            "custom": "kept",
        });
        let rec = decode(input).unwrap();
        let extra: Value = serde_json::from_str(rec.get("extra").unwrap().as_str().unwrap()).unwrap();
        assert_eq!(extra, json!({"host": {"vendor_field": {"x": 1}}, "custom": "kept"}));
        let out = rec.to_ecs_json();
        assert_eq!(out["host"]["vendor_field"]["x"], 1);
        assert_eq!(out["host"]["name"], "h");
        assert_eq!(out["custom"], "kept");
    }

    #[test]
    fn identity_claims_must_match_the_channel() {
        let err = decode(json!({"agent": {"id": "web-north"}, "@timestamp": 1})).unwrap_err();
        assert!(err.is_security(), "{err}");
        assert!(decode(json!({"agent": {"id": "win-dakeqi"}, "@timestamp": 1})).is_ok());
        let err = decode(json!({"organization": {"id": "other"}})).unwrap_err();
        assert_eq!(err.reason(), "identity_mismatch");
    }

    #[test]
    fn bad_lines_get_precise_reasons() {
        let l = Limits::default();
        let reason = |b: &[u8]| decode_line(b, 0, &ch(), &l).unwrap_err().reason();
        assert_eq!(reason(b"{not json"), "invalid_json");
        assert_eq!(reason(b"[1,2]"), "not_an_object");
        assert_eq!(reason(b"{\"a\":\"\xff\"}"), "invalid_utf8");
        assert_eq!(reason(&vec![b' '; l.max_line_bytes + 1]), "too_large");
        let deep = format!("{}1{}", "{\"a\":".repeat(40), "}".repeat(40));
        assert_eq!(reason(deep.as_bytes()), "too_deep");
        assert_eq!(reason(br#"{"process":{"pid":"abc"}}"#), "bad_field");
        assert_eq!(reason(br#"{"@timestamp":"tuesday"}"#), "bad_field");
        assert_eq!(reason(br#"{"host":{"name":{"x":1}}}"#), "bad_field");
    }

    #[test]
    fn far_or_missing_times_are_flagged_and_kept() {
        let rec = decode(json!({"@timestamp": "1999-01-01T00:00:00Z"})).unwrap();
        assert_eq!(rec.get("time_skewed"), Some(&Cell::Bool(true)));
        assert_eq!(rec.time(), crate::time::parse_rfc3339_micros("1999-01-01T00:00:00Z").unwrap());
        let rec = decode(json!({"message": "no time"})).unwrap();
        assert_eq!(rec.time(), ch().received);
        assert_eq!(rec.get("time_skewed"), Some(&Cell::Bool(true)));
    }
}
