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
    if !extra.is_empty() {
        rec.cells[col::EXTRA] = Cell::Str(Value::Object(extra).to_string());
    }
    Ok(rec)
}

/// The single-pass walk of [`decode_line`].
mod stream {
    use super::{Channel, Reject};
    use crate::fields::{FIELDS, Origin, col};
    use crate::record::{Record, cell_from_json};
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Value};
    use std::collections::{HashMap, HashSet};
    use std::fmt;
    use std::sync::OnceLock;

    /// Field index by full dotted path, and every proper prefix of a path (an object to descend into).
    fn table() -> &'static (HashMap<&'static str, usize>, HashSet<&'static str>) {
        static TABLE: OnceLock<(HashMap<&'static str, usize>, HashSet<&'static str>)> = OnceLock::new();
        TABLE.get_or_init(|| {
            let mut by_path = HashMap::new();
            let mut prefixes = HashSet::new();
            for (i, def) in FIELDS.iter().enumerate() {
                by_path.insert(def.path, i);
                for (at, _) in def.path.match_indices('.') {
                    prefixes.insert(&def.path[..at]);
                }
            }
            (by_path, prefixes)
        })
    }

    pub(super) struct State<'c> {
        pub rec: Record,
        /// The first field error in `FIELDS` order: (field index, error).
        pub err: Option<(usize, Reject)>,
        pub too_deep: bool,
        ch: &'c Channel<'c>,
        max_depth: usize,
        path: String,
        set: Vec<bool>,
    }

    impl<'c> State<'c> {
        pub fn new(ch: &'c Channel<'c>, max_depth: usize) -> Self {
            Self {
                rec: Record::default(),
                err: None,
                too_deep: false,
                ch,
                max_depth,
                path: String::new(),
                set: vec![false; FIELDS.len()],
            }
        }

        fn fail(&mut self, i: usize, e: Reject) {
            if self.err.as_ref().is_none_or(|(j, _)| i < *j) {
                self.err = Some((i, e));
            }
        }

        fn check_depth(&mut self, level: usize, v: &Value) {
            if level + depth(v) > self.max_depth {
                self.too_deep = true;
            }
        }

        /// A known field's value; handed back if the field was already set (the caller keeps it in
        /// extra).
        fn field(&mut self, i: usize, v: Value) -> Option<Value> {
            if self.set[i] {
                return Some(v);
            }
            self.set[i] = true;
            let def = &FIELDS[i];
            if def.origin == Origin::Ingest {
                let actual = match i {
                    col::TENANT => self.ch.tenant,
                    col::AGENT_ID => self.ch.agent,
                    _ => return None, // bookkeeping fields are always overwritten
                };
                let claimed = match &v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if !v.is_null() && claimed != actual {
                    self.fail(
                        i,
                        Reject::IdentityMismatch { path: def.path, claimed, actual: actual.to_owned() },
                    );
                }
                return None;
            }
            match cell_from_json(def.kind, v) {
                Ok(c) => self.rec.cells[i] = c,
                Err(reason) => self.fail(i, Reject::BadField { path: def.path, reason }),
            }
            None
        }
    }

    /// Nesting depth of a value: 0 for a scalar, 1 + the deepest child for a container.
    fn depth(v: &Value) -> usize {
        match v {
            Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
            Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    /// The top of a line: `Some(what is left for extra)` for an object, `None` for any other JSON.
    pub(super) struct Top<'s, 'c>(pub &'s mut State<'c>);

    impl<'de> DeserializeSeed<'de> for Top<'_, '_> {
        type Value = Option<Map<String, Value>>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Top<'_, '_> {
        type Value = Option<Map<String, Value>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Self::Value, A::Error> {
            walk(self.0, m, 1).map(Some)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
            while s.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    /// Walks one object at nesting `level` (the line itself is 1) under `state.path`; returns what
    /// it holds that no field took.
    fn walk<'de, A: MapAccess<'de>>(
        st: &mut State<'_>,
        mut m: A,
        level: usize,
    ) -> Result<Map<String, Value>, A::Error> {
        let (by_path, prefixes) = table();
        let mut left = Map::new();
        while let Some(key) = m.next_key_seed(KeySeed)? {
            let base = st.path.len();
            if base > 0 {
                st.path.push('.');
            }
            st.path.push_str(&key);
            if let Some(&i) = by_path.get(st.path.as_str()) {
                let v: Value = m.next_value()?;
                st.check_depth(level, &v);
                if let Some(v) = st.field(i, v) {
                    left.insert(key.into_owned(), v);
                }
            } else if prefixes.contains(st.path.as_str()) {
                if let Some(v) = m.next_value_seed(Nested { st: &mut *st, level: level + 1 })? {
                    left.insert(key.into_owned(), v);
                }
            } else {
                let v: Value = m.next_value()?;
                st.check_depth(level, &v);
                left.insert(key.into_owned(), v);
            }
            st.path.truncate(base);
        }
        Ok(left)
    }

    /// A key, borrowed from the line when it has no escapes.
    struct KeySeed;

    impl<'de> DeserializeSeed<'de> for KeySeed {
        type Value = std::borrow::Cow<'de, str>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for KeySeed {
        type Value = std::borrow::Cow<'de, str>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a key")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(std::borrow::Cow::Borrowed(v))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(std::borrow::Cow::Owned(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
            Ok(std::borrow::Cow::Owned(v))
        }
    }

    /// The value under a key that is a prefix of known paths: descended into when it is an object
    /// (returning what is left of it, or nothing when all of it was taken), kept whole otherwise.
    struct Nested<'s, 'c> {
        st: &'s mut State<'c>,
        level: usize,
    }

    impl<'de> DeserializeSeed<'de> for Nested<'_, '_> {
        type Value = Option<Value>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl Nested<'_, '_> {
        fn keep(self, v: Value) -> Option<Value> {
            self.st.check_depth(self.level - 1, &v);
            Some(v)
        }
    }

    impl<'de> Visitor<'de> for Nested<'_, '_> {
        type Value = Option<Value>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Self::Value, A::Error> {
            if self.level > self.st.max_depth {
                self.st.too_deep = true;
            }
            let left = walk(self.st, m, self.level)?;
            Ok((!left.is_empty()).then_some(Value::Object(left)))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::new();
            while let Some(v) = s.next_element::<Value>()? {
                items.push(v);
            }
            Ok(self.keep(Value::Array(items)))
        }
        fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
            Ok(self.keep(Value::Bool(v)))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
            Ok(self.keep(Value::from(v)))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            Ok(self.keep(Value::from(v)))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            let n =
                serde_json::Number::from_f64(v).ok_or_else(|| E::custom("a number that is not finite"))?;
            Ok(self.keep(Value::Number(n)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(self.keep(Value::String(v.to_owned())))
        }
        fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
            Ok(self.keep(Value::String(v)))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(self.keep(Value::Null))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::{FIELDS, Origin};
    use crate::record::cell_from_json;
    use serde_json::Map;

    /// The previous two-pass decoder (parse into a `Value`, then take each field's path): the
    /// reference the single pass is checked against.
    fn reference_decode(
        line: &[u8],
        line_no: usize,
        ch: &Channel<'_>,
        limits: &Limits,
    ) -> Result<Record, Reject> {
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
                    return Err(Reject::IdentityMismatch {
                        path: def.path,
                        claimed,
                        actual: actual.to_owned(),
                    });
                }
                continue;
            }
            rec.cells[i] =
                cell_from_json(def.kind, v).map_err(|reason| Reject::BadField { path: def.path, reason })?;
        }

        finish(rec, map, line_no, ch, limits)
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

    /// A tiny deterministic generator (no dependency for one test).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    fn random_value(r: &mut Lcg, kind: crate::fields::Kind) -> Value {
        use crate::fields::Kind;
        match (kind, r.next(8)) {
            (_, 0) => Value::Null,
            (_, 1) => json!({"nested": r.next(5)}),
            (Kind::Int, 2) => json!(format!("{}", r.next(1000))),
            (Kind::Int, 3) => json!("x1"),
            (Kind::Int, _) => json!(r.next(100_000)),
            (Kind::Time, 2) => json!(1_000_000_000_000u64 + r.next(1_000_000)),
            (Kind::Time, 3) => json!("yesterday"),
            (Kind::Time, _) => json!(format!("2001-09-09T01:4{}:40Z", r.next(10))),
            (Kind::Bool, 2) => json!("true"),
            (Kind::Bool, _) => json!(r.next(2) == 0),
            (Kind::List, 2) => json!(format!("10.0.0.{}", r.next(255))),
            (Kind::List, 3) => json!([1, {"a": 2}]),
            (Kind::List, _) => json!(["a", format!("b{}", r.next(9)), 7]),
            (Kind::Str, 2) => json!(r.next(1000)),
            (Kind::Str, 3) => json!(2.5),
            (Kind::Str, _) => json!(format!("v\"al\\ue {}", r.next(1000))),
        }
    }

    /// Puts `v` at `path` nested, or flat at the top, or flat below the first segment.
    fn place(doc: &mut Map<String, Value>, path: &str, v: Value, how: u64) {
        let parts: Vec<&str> = path.split('.').collect();
        if how == 0 || parts.len() == 1 {
            doc.entry(path.to_owned()).or_insert(v);
            return;
        }
        let split = if how == 1 { 1 } else { parts.len() - 1 };
        let mut cur = doc;
        for p in &parts[..split] {
            let next = cur.entry((*p).to_owned()).or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(m) = next else { return };
            cur = m;
        }
        cur.entry(parts[split..].join(".")).or_insert(v);
    }

    #[test]
    fn single_pass_decodes_exactly_as_the_two_pass_reference() {
        let mut r = Lcg(7);
        let limits = Limits { max_depth: 6, ..Limits::default() };
        let (mut ok, mut rejected) = (0, 0);
        for _ in 0..4000 {
            let mut doc = Map::new();
            let mut used = std::collections::HashSet::new();
            for _ in 0..r.next(14) {
                let i = r.next(FIELDS.len() as u64) as usize;
                let def = &FIELDS[i];
                if !used.insert(def.path) {
                    continue;
                }
                let v = match (i, def.origin) {
                    (col::TENANT, _) => json!(if r.next(4) == 0 { "other" } else { "acme" }),
                    (col::AGENT_ID, _) => json!(if r.next(4) == 0 { "evil" } else { "win-dakeqi" }),
                    (_, Origin::Ingest) => json!(r.next(9)),
                    _ => {
                        // Mostly well-formed: objects where a scalar belongs are rarer.
                        let v = random_value(&mut r, def.kind);
                        if v.is_object() && r.next(3) != 0 { json!(null) } else { v }
                    }
                };
                place(&mut doc, def.path, v, r.next(4));
            }
            // Unknown keys at the top and inside known objects, some deep.
            for _ in 0..r.next(4) {
                let deep = (0..r.next(8)).fold(json!(r.next(3)), |acc, _| json!({"d": acc}));
                match r.next(3) {
                    0 => place(&mut doc, &format!("custom{}", r.next(5)), deep, 0),
                    1 => place(&mut doc, &format!("host.vendor{}", r.next(3)), deep, 3),
                    _ => place(&mut doc, &format!("process.parent.x{}", r.next(3)), deep, 3),
                }
            }
            let line = Value::Object(doc).to_string();
            let n = r.next(5) as usize;
            let got = decode_line(line.as_bytes(), n, &ch(), &limits);
            let want = reference_decode(line.as_bytes(), n, &ch(), &limits);
            match (&got, &want) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.cells, b.cells, "{line}");
                    ok += 1;
                }
                (Err(a), Err(b)) => {
                    assert_eq!(a.reason(), b.reason(), "{line}: {a} vs {b}");
                    rejected += 1;
                }
                _ => panic!("{line}: single pass {got:?} vs reference {want:?}"),
            }
        }
        assert!(
            ok > 500 && rejected > 500,
            "the generator covers both outcomes: {ok} ok, {rejected} rejected"
        );
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
