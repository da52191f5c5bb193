//! Records <-> Arrow record batches, both directions driven by `schemas::FIELDS`.

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Int64Array, Int64Builder, LargeStringArray, ListArray,
    ListBuilder, StringArray, StringBuilder, StringViewArray, TimestampMicrosecondArray,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use schemas::record::NULL;
use schemas::{Cell, FIELDS, Kind, Record, lake_schema};
use std::sync::Arc;

/// Builds a lake batch from records, in the given order.
pub fn records_to_batch(records: &[Record]) -> Result<RecordBatch, ArrowError> {
    // Records are sparse: one pass spreads their cells over the columns, rows ascending.
    let mut per_column: Vec<Vec<(usize, &Cell)>> = vec![Vec::new(); FIELDS.len()];
    for (row, r) in records.iter().enumerate() {
        for (i, c) in r.iter() {
            per_column[i].push((row, c));
        }
    }
    let n = records.len();
    let columns: Vec<ArrayRef> = FIELDS
        .iter()
        .zip(per_column)
        .map(|(def, set)| {
            let mut set = set.into_iter().peekable();
            let dense = (0..n).map(move |row| {
                if set.peek().is_some_and(|(r, _)| *r == row) {
                    set.next().map_or(&NULL, |(_, c)| c)
                } else {
                    &NULL
                }
            });
            column(def.kind, dense)
        })
        .collect();
    RecordBatch::try_new(lake_schema(), columns)
}

fn column<'a>(kind: Kind, cells: impl Iterator<Item = &'a Cell>) -> ArrayRef {
    match kind {
        Kind::Str => {
            let mut b = StringBuilder::new();
            for c in cells {
                b.append_option(c.as_str());
            }
            Arc::new(b.finish())
        }
        Kind::Int => {
            let mut b = Int64Builder::new();
            for c in cells {
                b.append_option(if let Cell::Int(v) = c { Some(*v) } else { None });
            }
            Arc::new(b.finish())
        }
        Kind::Time => {
            let mut b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
            for c in cells {
                b.append_option(if let Cell::Time(v) = c { Some(*v) } else { None });
            }
            Arc::new(b.finish())
        }
        Kind::Bool => {
            let mut b = BooleanBuilder::new();
            for c in cells {
                b.append_option(if let Cell::Bool(v) = c { Some(*v) } else { None });
            }
            Arc::new(b.finish())
        }
        Kind::List => {
            let mut b = ListBuilder::new(StringBuilder::new());
            for c in cells {
                match c {
                    Cell::List(items) => {
                        for s in items {
                            b.values().append_value(s);
                        }
                        b.append(true);
                    }
                    _ => b.append(false),
                }
            }
            Arc::new(b.finish())
        }
    }
}

/// Reads rows back into records. Columns are matched by name; a column the batch lacks (an older
/// file) or does not type as expected reads as null.
pub fn batch_to_records(batch: &RecordBatch) -> Vec<Record> {
    let cols: Vec<Option<&ArrayRef>> =
        FIELDS.iter().map(|d| batch.schema().index_of(d.column).ok().map(|i| batch.column(i))).collect();
    (0..batch.num_rows())
        .map(|row| {
            let mut rec = Record::default();
            for (i, (c, d)) in cols.iter().zip(FIELDS).enumerate() {
                if let Some(a) = c {
                    rec.set(i, cell_at(a, d.kind, row));
                }
            }
            rec
        })
        .collect()
}

/// Text at a row of any string-typed array (Utf8, LargeUtf8, Utf8View).
pub fn str_at(a: &dyn Array, row: usize) -> Option<String> {
    if a.is_null(row) {
        return None;
    }
    let any = a.as_any();
    if let Some(s) = any.downcast_ref::<StringArray>() {
        Some(s.value(row).to_owned())
    } else if let Some(s) = any.downcast_ref::<StringViewArray>() {
        Some(s.value(row).to_owned())
    } else {
        any.downcast_ref::<LargeStringArray>().map(|s| s.value(row).to_owned())
    }
}

fn cell_at(a: &ArrayRef, kind: Kind, row: usize) -> Cell {
    if a.is_null(row) {
        return Cell::Null;
    }
    let any = a.as_any();
    match (kind, a.data_type()) {
        (Kind::Str, _) => str_at(a.as_ref(), row).map_or(Cell::Null, Cell::Str),
        (Kind::Int, DataType::Int64) => {
            any.downcast_ref::<Int64Array>().map_or(Cell::Null, |x| Cell::Int(x.value(row)))
        }
        (Kind::Time, DataType::Timestamp(TimeUnit::Microsecond, _)) => {
            any.downcast_ref::<TimestampMicrosecondArray>().map_or(Cell::Null, |x| Cell::Time(x.value(row)))
        }
        (Kind::Bool, DataType::Boolean) => {
            any.downcast_ref::<BooleanArray>().map_or(Cell::Null, |x| Cell::Bool(x.value(row)))
        }
        (Kind::List, DataType::List(_)) => any.downcast_ref::<ListArray>().map_or(Cell::Null, |x| {
            let v = x.value(row);
            Cell::List((0..v.len()).filter_map(|i| str_at(v.as_ref(), i)).collect())
        }),
        _ => Cell::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::decode::{Channel, Limits, decode_line};

    #[test]
    fn round_trip_every_kind() {
        let ch = Channel { tenant: "t", agent: "a", message_key: "1:1", stream_seq: 9, received: 5 };
        let line = br#"{"@timestamp":1000,"host":{"name":"h","ip":["10.0.0.1","10.0.0.2"]},"process":{"pid":7},"file":{"code_signature":{"exists":false}},"zz":1}"#;
        let rec = decode_line(line, 0, &ch, &Limits::default()).unwrap();
        let minimal = decode_line(b"{}", 1, &ch, &Limits::default()).unwrap();
        let batch = records_to_batch(&[rec.clone(), minimal.clone()]).unwrap();
        let back = batch_to_records(&batch);
        assert_eq!(back[0], rec);
        assert_eq!(back[1], minimal);
        // The required columns (id, tenant, agent, time) refuse nulls.
        assert!(records_to_batch(&[Record::default()]).is_err());
    }
}
