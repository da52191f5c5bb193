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
    /// The slots of `sigma` and `target` in the rule set that holds the rule: set when a
    /// [`super::RuleSet`] is built, for events it has listed by slot.
    pub(crate) slots: Option<(u32, u32)>,
}

impl Field {
    /// A field read by `sigma`, mapped to `target` (lake column `column`).
    pub fn new(sigma: String, target: String, column: Option<usize>) -> Self {
        Self { sigma, target, column, slots: None }
    }
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
    /// Several owned texts (a JSON array of scalars, such as Windows' `Data` list): a test matches
    /// when any element does, as for [`Val::List`]; the array is never matched as JSON text.
    Many(Vec<String>),
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
            Val::Many(l) => l.iter().any(|s| f(s)),
        }
    }
}

/// An event a rule can be evaluated on.
pub trait Event {
    /// A field's value.
    fn get(&self, field: &Field) -> Val<'_>;
    /// Calls `f` on every string value (keyword searches) until it returns true.
    fn any_string(&self, f: &mut dyn FnMut(&str) -> bool) -> bool;
    /// Calls `f` with every top-level field's name and value, when the event can list them cheaply
    /// (a flat object); returns false when it cannot, and callers look fields up by name instead.
    /// An event that lists its fields must list what [`Event::get`] reads: the value of a field
    /// named by its `sigma` name if listed, else by its `target` name.
    fn each_field<'s>(&'s self, _f: &mut dyn FnMut(&str, Val<'s>)) -> bool {
        false
    }
}

/// A record as rules read it, with its catch-all `extra` object parsed at most once however many
/// rules look into it.
#[derive(Debug)]
pub struct RecordEvent<'a> {
    rec: &'a Record,
    extra: std::cell::OnceCell<Option<Value>>,
}

impl<'a> RecordEvent<'a> {
    /// A view of `rec`.
    pub fn new(rec: &'a Record) -> Self {
        Self { rec, extra: std::cell::OnceCell::new() }
    }
}

/// A lake column's cell as a value.
fn column_val(rec: &Record, i: usize) -> Val<'_> {
    match rec.cell(i) {
        Cell::Null => Val::Missing,
        Cell::Str(s) => Val::Str(s),
        Cell::Int(n) => Val::Int(*n),
        Cell::Time(t) => Val::Owned(schemas::time::format_micros(*t)),
        Cell::Bool(b) => Val::Bool(*b),
        Cell::List(l) => Val::List(l),
    }
}

/// A field from the parsed catch-all object: the target as a key or a dotted path, then the Windows
/// event data the agent keeps under `winlog.event_data` with Sigma's own names.
fn extra_val<'v>(v: &'v Value, field: &Field) -> Val<'v> {
    let found = v
        .get(&field.target)
        .or_else(|| field.target.split('.').try_fold(v, |v, k| v.get(k)))
        .or_else(|| v.get("winlog").and_then(|w| w.get("event_data")).and_then(|d| d.get(&field.sigma)));
    found.map_or(Val::Missing, json_val)
}

/// A Windows record's own event data field under the rule's name: what a mapped field reads when
/// the record has nothing in its column (`TargetUserName` of an account change, `IpAddress` of "-").
fn event_data_val<'v>(v: &'v Value, field: &Field) -> Val<'v> {
    v.get("winlog")
        .and_then(|w| w.get("event_data"))
        .and_then(|d| d.get(&field.sigma))
        .map_or(Val::Missing, json_val)
}

/// A JSON value as a rule reads it: scalars as themselves, arrays of scalars element by element,
/// anything else as its JSON text.
fn json_val(v: &Value) -> Val<'_> {
    match v {
        Value::Null => Val::Missing,
        Value::String(s) => Val::Str(s),
        Value::Number(n) => n.as_i64().map_or_else(|| Val::Owned(n.to_string()), Val::Int),
        Value::Bool(b) => Val::Bool(*b),
        Value::Array(a) if a.iter().all(|x| !x.is_array() && !x.is_object()) => Val::Many(
            a.iter()
                .filter(|x| !x.is_null())
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
        ),
        other => Val::Owned(other.to_string()),
    }
}

fn parse_extra(rec: &Record) -> Option<Value> {
    rec.cell(schemas::fields::col::EXTRA).as_str().and_then(|s| serde_json::from_str(s).ok())
}

fn strings(rec: &Record, f: &mut dyn FnMut(&str) -> bool) -> bool {
    rec.iter().any(|(_, c)| match c {
        Cell::Str(s) => f(s),
        Cell::List(l) => l.iter().any(|s| f(s)),
        _ => false,
    })
}

impl Event for RecordEvent<'_> {
    fn get(&self, field: &Field) -> Val<'_> {
        let extra = || self.extra.get_or_init(|| parse_extra(self.rec)).as_ref();
        match field.column {
            Some(i) => match column_val(self.rec, i) {
                Val::Missing if field.sigma != field.target => {
                    extra().map_or(Val::Missing, |v| event_data_val(v, field))
                }
                v => v,
            },
            None => extra().map_or(Val::Missing, |v| extra_val(v, field)),
        }
    }

    fn any_string(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        strings(self.rec, f)
    }
}

/// A bare record parses its catch-all object on every lookup outside the columns; wrap it in a
/// [`RecordEvent`] to run many rules on one record.
impl Event for Record {
    fn get(&self, field: &Field) -> Val<'_> {
        match field.column.map(|i| column_val(self, i)) {
            Some(Val::Missing) if field.sigma != field.target => {
                parse_extra(self).map_or(Val::Missing, |v| owned(event_data_val(&v, field)))
            }
            Some(v) => v,
            None => parse_extra(self).map_or(Val::Missing, |v| owned(extra_val(&v, field))),
        }
    }

    fn any_string(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        strings(self, f)
    }
}

/// A value read from a parsed object that is about to be dropped, made to own its text.
fn owned(v: Val<'_>) -> Val<'static> {
    match v {
        Val::Str(s) => Val::Owned(s.to_owned()),
        Val::Missing => Val::Missing,
        Val::Owned(s) => Val::Owned(s),
        Val::Int(n) => Val::Int(n),
        Val::Bool(b) => Val::Bool(b),
        Val::List(_) => Val::Missing, // extra_val never yields a borrowed list
        Val::Many(l) => Val::Many(l),
    }
}

/// A flat JSON object keyed by Sigma field names (`{"EventID": 4625, "Image": "C:\\..."}`).
#[derive(Clone, Debug)]
pub struct FlatEvent(pub serde_json::Map<String, Value>);

impl Event for FlatEvent {
    fn get(&self, field: &Field) -> Val<'_> {
        self.0
            .get(&field.sigma)
            .or_else(|| if field.target == field.sigma { None } else { self.0.get(&field.target) })
            .map_or(Val::Missing, json_val)
    }

    fn any_string(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        self.0.values().any(|v| match v {
            Value::String(s) => f(s),
            Value::Array(a) => a.iter().any(|x| x.as_str().is_some_and(&mut *f)),
            _ => false,
        })
    }

    fn each_field<'s>(&'s self, f: &mut dyn FnMut(&str, Val<'s>)) -> bool {
        for (k, v) in &self.0 {
            f(k, json_val(v));
        }
        true
    }
}
