//! A decoded event: the [`Cell`]s it sets, by row of [`FIELDS`](crate::fields::FIELDS).
//!
//! Sparse: an endpoint event sets about 15 of the table's fields, so a record holds only those (in
//! field order) instead of one cell per field — a dense record costs about 2 KB of fresh memory per
//! event, which dominated the ingest profile.

use crate::fields::{FIELDS, Kind, col};
use serde_json::{Map, Value};

/// One field's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// Absent.
    Null,
    /// Text.
    Str(String),
    /// Integer.
    Int(i64),
    /// Microseconds since the Unix epoch, UTC.
    Time(i64),
    /// Boolean.
    Bool(bool),
    /// List of strings.
    List(Vec<String>),
}

impl Cell {
    /// The text, if this is a `Str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Cell::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// One normalised event: its non-null cells, ordered by field index.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Record {
    cells: Vec<(u16, Cell)>,
    /// Bit `i` is set when field `i` is: a cell's position is the count of set bits below its
    /// own, so a read costs a mask and a popcount instead of a binary search (rules, the graph and
    /// the analysers read several fields of every event).
    present: u128,
}

// Every field has a bit in `Record::present`.
const _: () = assert!(FIELDS.len() <= 128);

/// The bits of `cells`' field indices.
fn presence(cells: &[(u16, Cell)]) -> u128 {
    cells.iter().fold(0, |m, (i, _)| m | 1u128 << i)
}

/// A record filled in any field order and sorted once when built. A decoder sets about 20 cells in
/// the order its line has them (and ingest's own fields, which come first in the table, last);
/// [`Record::set`] would move the cells after each one every time.
#[derive(Debug, Default)]
pub struct RecordBuilder {
    cells: Vec<(u16, Cell)>,
}

impl RecordBuilder {
    /// An empty builder with room for `cells` cells.
    pub fn with_capacity(cells: usize) -> Self {
        Self { cells: Vec::with_capacity(cells) }
    }

    /// Sets field `i`, which the caller has not set before (a `Null` is not stored).
    pub fn push(&mut self, i: usize, cell: Cell) {
        debug_assert!(self.get(i).is_none(), "field {i} set twice");
        assert!(i < FIELDS.len(), "field {i} is not in the table");
        if !matches!(cell, Cell::Null) {
            self.cells.push((i as u16, cell));
        }
    }

    /// Sets field `i`, replacing what it held (a `Null` clears it).
    pub fn set(&mut self, i: usize, cell: Cell) {
        self.cells.retain(|(j, _)| usize::from(*j) != i);
        self.push(i, cell);
    }

    /// The cell of field `i`, if set.
    pub fn get(&self, i: usize) -> Option<&Cell> {
        self.cells.iter().find(|(j, _)| usize::from(*j) == i).map(|(_, c)| c)
    }

    /// The record, its cells in field order.
    pub fn build(mut self) -> Record {
        self.cells.sort_unstable_by_key(|(i, _)| *i);
        Record { present: presence(&self.cells), cells: self.cells }
    }
}

/// An unset cell, to hand out by reference.
pub static NULL: Cell = Cell::Null;

impl Record {
    /// The cell of field `i` ([`Cell::Null`] when unset).
    pub fn cell(&self, i: usize) -> &Cell {
        match self.position(i) {
            Ok(at) => &self.cells[at].1,
            Err(_) => &NULL,
        }
    }

    /// Where field `i`'s cell is (`Ok`), or would go (`Err`), in `cells`.
    fn position(&self, i: usize) -> Result<usize, usize> {
        if i >= FIELDS.len() {
            return Err(self.cells.len());
        }
        let at = (self.present & ((1u128 << i) - 1)).count_ones() as usize;
        if self.present & (1u128 << i) != 0 { Ok(at) } else { Err(at) }
    }

    /// Sets field `i` (a `Null` clears it).
    pub fn set(&mut self, i: usize, cell: Cell) {
        assert!(i < FIELDS.len(), "field {i} is not in the table");
        let key = i as u16;
        match (self.position(i), cell) {
            (Ok(at), Cell::Null) => {
                self.cells.remove(at);
                self.present &= !(1u128 << i);
            }
            (Ok(at), c) => self.cells[at].1 = c,
            (Err(_), Cell::Null) => {}
            (Err(at), c) => {
                self.cells.insert(at, (key, c));
                self.present |= 1u128 << i;
            }
        }
    }

    /// The set cells with their field index, in field order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Cell)> {
        self.cells.iter().map(|(i, c)| (usize::from(*i), c))
    }

    /// The event time in microseconds (0 if unset, which decoded records never are).
    pub fn time(&self) -> i64 {
        match self.cell(col::TIME) {
            Cell::Time(t) => *t,
            _ => 0,
        }
    }

    /// The host name ("" if unset).
    pub fn host(&self) -> &str {
        self.cell(col::HOST_NAME).as_str().unwrap_or("")
    }

    /// The tenant ("" if unset).
    pub fn tenant(&self) -> &str {
        self.cell(col::TENANT).as_str().unwrap_or("")
    }

    /// The cell of a column by name.
    pub fn get(&self, column: &str) -> Option<&Cell> {
        crate::fields::column_index(column).map(|i| self.cell(i))
    }

    /// The event as ECS JSON (nested objects, nulls left out), with the fields Cordon did not know
    /// (the `extra` column) back at their original paths.
    pub fn to_ecs_json(&self) -> Value {
        // Unknown fields go back where the sender put them; known fields are laid over them.
        let mut root = match self.cell(col::EXTRA) {
            Cell::Str(extra) => match serde_json::from_str::<Value>(extra) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            },
            _ => Map::new(),
        };
        for (i, cell) in self.iter() {
            let def = &FIELDS[i];
            if def.column == "extra" {
                continue;
            }
            let v = match cell {
                Cell::Null => continue,
                Cell::Str(s) => Value::String(s.clone()),
                Cell::Int(i) => Value::from(*i),
                Cell::Bool(b) => Value::Bool(*b),
                Cell::Time(t) => Value::String(crate::time::format_micros(*t)),
                Cell::List(l) => Value::Array(l.iter().cloned().map(Value::String).collect()),
            };
            // A list the sender gave (kept whole) holds the column's value as its first item.
            if get_path(&root, def.path)
                .is_some_and(|kept| kept.as_array().is_some_and(|l| l.first() == Some(&v)))
            {
                continue;
            }
            insert_path(&mut root, def.path, v);
        }
        Value::Object(root)
    }
}

/// The value at a dotted path of a JSON object.
fn get_path<'a>(root: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let (head, rest) = path.split_once('.').unwrap_or((path, ""));
    let v = root.get(head)?;
    if rest.is_empty() { Some(v) } else { get_path(v.as_object()?, rest) }
}

/// Sets the dotted `path` (`process.parent.name`) in a JSON object, creating the objects on the way.
pub fn insert_path(root: &mut Map<String, Value>, path: &str, v: Value) {
    let mut cur = root;
    let mut parts = path.split('.').peekable();
    while let Some(p) = parts.next() {
        if parts.peek().is_none() {
            cur.insert(p.to_owned(), v);
            return;
        }
        let next = cur.entry(p.to_owned()).or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        cur = match next {
            Value::Object(m) => m,
            _ => return,
        };
    }
}

/// A kind-checked cell for `kind` from a JSON value; `Err` says what was wrong.
/// ECS lets any field hold a list (`event.category: ["process"]`). For a field Cordon keeps one value
/// of: the list's first item goes to the column; a list of more than one is also handed back whole, to
/// be kept where the sender put it (the output shows the list). A list given to a list field, or any
/// other value, is `cell_from_json`'s.
pub(crate) fn one_of_list(kind: Kind, v: Value) -> (Value, Option<Value>) {
    match (kind, v) {
        (Kind::Str | Kind::Int | Kind::Bool | Kind::Time, Value::Array(items)) if items.len() <= 1 => {
            (items.into_iter().next().unwrap_or(Value::Null), None)
        }
        (Kind::Str | Kind::Int | Kind::Bool | Kind::Time, Value::Array(items)) => {
            (items[0].clone(), Some(Value::Array(items)))
        }
        (_, v) => (v, None),
    }
}

pub(crate) fn cell_from_json(kind: Kind, v: Value) -> Result<Cell, String> {
    match (kind, v) {
        (_, Value::Null) => Ok(Cell::Null),
        (Kind::Str, Value::String(s)) => Ok(Cell::Str(s)),
        (Kind::Str, Value::Number(n)) => Ok(Cell::Str(n.to_string())),
        (Kind::Str, Value::Bool(b)) => Ok(Cell::Str(b.to_string())),
        (Kind::Int, Value::Number(n)) => {
            n.as_i64().map(Cell::Int).ok_or_else(|| format!("{n} is not a 64-bit integer"))
        }
        (Kind::Int, Value::String(s)) => {
            s.trim().parse::<i64>().map(Cell::Int).map_err(|_| format!("{s:?} is not an integer"))
        }
        (Kind::Bool, Value::Bool(b)) => Ok(Cell::Bool(b)),
        (Kind::Bool, Value::String(s)) if s == "true" || s == "false" => Ok(Cell::Bool(s == "true")),
        (Kind::Time, Value::String(s)) => crate::time::parse_rfc3339_micros(&s)
            .map(Cell::Time)
            .ok_or_else(|| format!("{s:?} is not an RFC 3339 timestamp")),
        (Kind::Time, Value::Number(n)) => n
            .as_i64()
            .and_then(|ms| ms.checked_mul(1000))
            .map(Cell::Time)
            .ok_or_else(|| format!("{n} is not epoch milliseconds")),
        (Kind::List, Value::String(s)) => Ok(Cell::List(vec![s])),
        (Kind::List, Value::Array(items)) => items
            .into_iter()
            .map(|i| match i {
                Value::String(s) => Ok(s),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(format!("list item {other} is not a string")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Cell::List),
        (kind, other) => Err(format!("expected {kind:?}, found {}", json_type(&other))),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Reads, sets and clears in a scrambled order agree with a map of the same cells.
    #[test]
    fn cells_read_back_as_set_in_any_order() {
        let (mut rec, mut model) = (Record::default(), BTreeMap::new());
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..5_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % FIELDS.len() as u64) as usize;
            if x.is_multiple_of(5) {
                rec.set(i, Cell::Null);
                model.remove(&i);
            } else {
                rec.set(i, Cell::Int(n));
                model.insert(i, Cell::Int(n));
            }
            for f in 0..FIELDS.len() {
                assert_eq!(rec.cell(f), model.get(&f).unwrap_or(&NULL), "field {f} after step {n}");
            }
        }
        let built = {
            let mut b = RecordBuilder::default();
            for (i, c) in model.iter().rev() {
                b.push(*i, c.clone());
            }
            b.build()
        };
        assert_eq!(built, rec, "a builder fed the same cells backwards builds the same record");
        assert_eq!(rec.iter().map(|(i, _)| i).collect::<Vec<_>>(), model.keys().copied().collect::<Vec<_>>());
    }
}
