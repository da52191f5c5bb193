//! The single-pass walk of [`super::decode_line`]: each key is resolved against the field table as
//! the JSON streams by.

use super::{Channel, Reject, keys};
use crate::fields::{FIELDS, Kind, Origin, col};
use crate::record::{Cell, RecordBuilder, cell_from_json};
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

pub(super) struct State<'c> {
    pub rec: RecordBuilder,
    /// The first field error in `FIELDS` order: (field index, error).
    pub err: Option<(usize, Reject)>,
    pub too_deep: bool,
    ch: &'c Channel<'c>,
    max_depth: usize,
    /// Fields already read, one bit per row of `FIELDS`.
    set: [u64; SET_WORDS],
}

/// Cells a decoded record has room for from the start.
const CELLS: usize = 24;

/// Words of the `set` bitmap.
const SET_WORDS: usize = 2;
const _: () = assert!(FIELDS.len() <= SET_WORDS * 64, "the field table outgrew the decoder's bitmap");

impl<'c> State<'c> {
    pub fn new(ch: &'c Channel<'c>, max_depth: usize) -> Self {
        Self {
            rec: RecordBuilder::with_capacity(CELLS),
            err: None,
            too_deep: false,
            ch,
            max_depth,
            set: [0; SET_WORDS],
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

    /// Whether field `i`'s value may be read straight into a cell: it is the sender's and not set
    /// yet (so nothing of it can be left for `extra`).
    fn takes_typed(&self, i: usize) -> bool {
        !self.is_set(i) && FIELDS[i].origin == Origin::Sender
    }

    fn is_set(&self, i: usize) -> bool {
        self.set[i / 64] & (1 << (i % 64)) != 0
    }

    fn mark(&mut self, i: usize) {
        self.set[i / 64] |= 1 << (i % 64);
    }

    /// A cell read by [`Typed`].
    fn typed(&mut self, i: usize, cell: Result<Cell, String>) {
        self.mark(i);
        match cell {
            Ok(c) => self.rec.push(i, c),
            Err(reason) => self.fail(i, Reject::BadField { path: FIELDS[i].path, reason }),
        }
    }

    /// A known field's value; handed back if the field was already set (the caller keeps it in
    /// extra).
    fn field(&mut self, i: usize, v: Value) -> Option<Value> {
        if self.is_set(i) {
            return Some(v);
        }
        self.mark(i);
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
                self.fail(i, Reject::IdentityMismatch { path: def.path, claimed, actual: actual.to_owned() });
            }
            return None;
        }
        let (v, whole) = crate::record::one_of_list(def.kind, v);
        match cell_from_json(def.kind, v) {
            Ok(c) => self.rec.push(i, c),
            Err(reason) => self.fail(i, Reject::BadField { path: def.path, reason }),
        }
        whole
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
        walk(self.0, m, 1, keys::ROOT).map(Some)
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

/// Walks one object at nesting `level` (the line itself is 1), whose keys lead on from `node` of
/// the field tree; returns what it holds that no field took.
fn walk<'de, A: MapAccess<'de>>(
    st: &mut State<'_>,
    mut m: A,
    level: usize,
    node: keys::Node,
) -> Result<Map<String, Value>, A::Error> {
    let tree = keys::tree();
    let mut left = Map::new();
    while let Some(key) = m.next_key_seed(KeySeed)? {
        let slot = tree.resolve(node, &key).unwrap_or_default();
        if let Some(i) = slot.field {
            let got = if st.takes_typed(i) {
                m.next_value_seed(Typed(FIELDS[i].kind))?
            } else {
                Got::Json(m.next_value()?)
            };
            match got {
                Got::Cell(cell) => st.typed(i, cell),
                Got::Json(v) => {
                    st.check_depth(level, &v);
                    if let Some(v) = st.field(i, v) {
                        left.insert(key.into_owned(), v);
                    }
                }
            }
        } else if let Some(node) = slot.node {
            if let Some(v) = m.next_value_seed(Nested { st: &mut *st, level: level + 1, node })? {
                left.insert(key.into_owned(), v);
            }
        } else {
            let v: Value = m.next_value()?;
            st.check_depth(level, &v);
            left.insert(key.into_owned(), v);
        }
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
    node: keys::Node,
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
        let left = walk(self.st, m, self.level, self.node)?;
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
        let n = serde_json::Number::from_f64(v).ok_or_else(|| E::custom("a number that is not finite"))?;
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

/// A known field's value read straight into its cell when it is a string or an integer (no
/// intermediate JSON value; a time parsed in place); any other value comes back as JSON for the
/// general path ([`State::field`]). Agrees with [`cell_from_json`] on every value it reads.
struct Typed(Kind);

/// What [`Typed`] read.
enum Got {
    Cell(Result<Cell, String>),
    Json(Value),
}

impl<'de> DeserializeSeed<'de> for Typed {
    type Value = Got;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Typed {
    type Value = Got;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Got::Cell(match self.0 {
            Kind::Str => Ok(Cell::Str(s.to_owned())),
            Kind::Time => crate::time::parse_rfc3339_micros(s)
                .map(Cell::Time)
                .ok_or_else(|| format!("{s:?} is not an RFC 3339 timestamp")),
            kind => cell_from_json(kind, Value::String(s.to_owned())),
        }))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Got::Cell(cell_from_json(self.0, Value::from(v))))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Got::Cell(cell_from_json(self.0, Value::from(v))))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Got::Json(Value::from(v)))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Got::Json(Value::Bool(v)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Got::Json(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, s: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(serde::de::value::SeqAccessDeserializer::new(s)).map(Got::Json)
    }
    fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(serde::de::value::MapAccessDeserializer::new(m)).map(Got::Json)
    }
}
