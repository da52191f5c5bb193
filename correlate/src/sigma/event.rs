//! What a rule reads from an event: field values by resolved field, and every string for keyword
//! searches. Implemented for Cordon's [`Record`] (fields resolved to lake columns at compile time)
//! and for flat JSON objects with Sigma's own field names (EVTX records, conformance tests).

use schemas::{Cell, Record};
use serde_json::Value;

/// A field as a rule reads it, resolved once when the rule is compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The rule's field name (`Image`).
    pub sigma: String,
    /// The name after the pipeline's mapping (`process.executable`).
    pub target: String,
    /// The lake column of `target`, when it is one of Cordon's fields.
    pub column: Option<usize>,
}

/// One field's value in an event.
#[derive(Clone, Debug)]
pub enum Val<'a> {
    /// Not in the event.
    Missing,
    /// Text.
    Str(&'a str),
    /// An owned text (a number or nested value rendered).
    Owned(String),
    /// Integer.
    Int(i64),
    /// Boolean.
    Bool(bool),
    /// Several texts (a list field): a test matches when any element does.
    List(&'a [String]),
}

impl Val<'_> {
    /// True unless missing.
    pub fn is_present(&self) -> bool {
        !matches!(self, Val::Missing)
    }

    /// The single text, when there is one.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            Val::Owned(s) => Some(s),
            _ => None,
        }
    }

    /// Calls `f` on each text form (numbers and booleans as text) until it returns true.
    pub fn any_text(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        match self {
            Val::Missing => false,
            Val::Str(s) => f(s),
            Val::Owned(s) => f(s),
            Val::Int(i) => f(&i.to_string()),
            Val::Bool(b) => f(if *b { "true" } else { "false" }),
            Val::List(l) => l.iter().any(|s| f(s)),
        }
    }
}

/// An event a rule can be evaluated on.
pub trait Event {
    /// A field's value.
    fn get(&self, field: &Field) -> Val<'_>;
    /// Calls `f` on every string value (keyword searches) until it returns true.
    fn any_string(&self, f: &mut dyn FnMut(&str) -> bool) -> bool;
}

impl Event for Record {
    fn get(&self, field: &Field) -> Val<'_> {
        if let Some(i) = field.column {
            return match self.cell(i) {
                Cell::Null => Val::Missing,
                Cell::Str(s) => Val::Str(s),
                Cell::Int(n) => Val::Int(*n),
                Cell::Time(t) => Val::Owned(schemas::time::format_micros(*t)),
                Cell::Bool(b) => Val::Bool(*b),
                Cell::List(l) => Val::List(l),
            };
        }
        // Fields Cordon has no column for are kept in the catch-all `extra` object.
        let Some(extra) = self.cell(schemas::fields::col::EXTRA).as_str() else { return Val::Missing };
        let Ok(v) = serde_json::from_str::<Value>(extra) else { return Val::Missing };
        // The target as a key or a dotted path; then the Windows event data the agent keeps under
        // `winlog.event_data` with Sigma's own names.
        let found = v
            .get(&field.target)
            .or_else(|| field.target.split('.').try_fold(&v, |v, k| v.get(k)))
            .or_else(|| v.get("winlog").and_then(|w| w.get("event_data")).and_then(|d| d.get(&field.sigma)));
        match found {
            None | Some(Value::Null) => Val::Missing,
            Some(Value::String(s)) => Val::Owned(s.clone()),
            Some(Value::Number(n)) => n.as_i64().map_or_else(|| Val::Owned(n.to_string()), Val::Int),
            Some(Value::Bool(b)) => Val::Bool(*b),
            Some(other) => Val::Owned(other.to_string()),
        }
    }

    fn any_string(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        self.iter().any(|(_, c)| match c {
            Cell::Str(s) => f(s),
            Cell::List(l) => l.iter().any(|s| f(s)),
            _ => false,
        })
    }
}

/// A flat JSON object keyed by Sigma field names (`{"EventID": 4625, "Image": "C:\\..."}`).
#[derive(Clone, Debug)]
pub struct FlatEvent(pub serde_json::Map<String, Value>);

impl Event for FlatEvent {
    fn get(&self, field: &Field) -> Val<'_> {
        match self.0.get(&field.sigma).or_else(|| self.0.get(&field.target)) {
            None | Some(Value::Null) => Val::Missing,
            Some(Value::String(s)) => Val::Str(s),
            Some(Value::Number(n)) => n.as_i64().map_or_else(|| Val::Owned(n.to_string()), Val::Int),
            Some(Value::Bool(b)) => Val::Bool(*b),
            Some(other) => Val::Owned(other.to_string()),
        }
    }

    fn any_string(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        self.0.values().any(|v| match v {
            Value::String(s) => f(s),
            Value::Array(a) => a.iter().any(|x| x.as_str().is_some_and(&mut *f)),
            _ => false,
        })
    }
}
