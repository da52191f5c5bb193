//! Records <-> Arrow record batches, both directions driven by `schemas::FIELDS`.

use datafusion::arrow::array::{
    Array, ArrayBuilder, ArrayRef, BooleanArray, BooleanBuilder, Int64Array, Int64Builder, LargeStringArray,
    ListArray, ListBuilder, StringArray, StringBuilder, StringViewArray, TimestampMicrosecondArray,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

/// The lake's batch type, for callers that hold converted rows (a bulk load) without naming Arrow.
pub type Batch = RecordBatch;
use schemas::{Cell, FIELDS, Kind, Record, lake_schema};
use std::sync::Arc;

/// Builds a lake batch from records, in the given order.
///
/// One pass over the rows: each set cell is appended to its column, after nulls for the rows that
/// left the column unset since its last value (records are sparse). Text columns are sized first,
/// so their buffers are allocated once instead of doubled and copied as they fill.
pub fn records_to_batch(records: &[Record]) -> Result<RecordBatch, ArrowError> {
    let n = records.len();
    let mut text_bytes = vec![0usize; FIELDS.len()];
    for r in records {
        for (i, c) in r.iter() {
            text_bytes[i] += match c {
                Cell::Str(s) => s.len(),
                Cell::List(l) => l.iter().map(String::len).sum(),
                _ => 0,
            };
        }
    }
    let mut columns: Vec<ColumnBuilder> =
        FIELDS.iter().zip(&text_bytes).map(|(def, &bytes)| ColumnBuilder::new(def.kind, n, bytes)).collect();
    for (row, r) in records.iter().enumerate() {
        for (i, c) in r.iter() {
            columns[i].put(row, c);
        }
    }
    let arrays = columns.into_iter().map(|c| c.finish(n)).collect();
    RecordBatch::try_new(lake_schema(), arrays)
}

/// One lake column being built row by row; `len` rows so far.
enum ColumnBuilder {
    Str(StringBuilder),
    Int(Int64Builder),
    Time(TimestampMicrosecondBuilder),
    Bool(BooleanBuilder),
    List(ListBuilder<StringBuilder>),
}

impl ColumnBuilder {
    /// A builder for `rows` rows of `kind` holding `text_bytes` bytes of text.
    fn new(kind: Kind, rows: usize, text_bytes: usize) -> Self {
        match kind {
            Kind::Str => Self::Str(StringBuilder::with_capacity(rows, text_bytes)),
            Kind::Int => Self::Int(Int64Builder::with_capacity(rows)),
            Kind::Time => Self::Time(TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC")),
            Kind::Bool => Self::Bool(BooleanBuilder::with_capacity(rows)),
            Kind::List => {
                Self::List(ListBuilder::with_capacity(StringBuilder::with_capacity(rows, text_bytes), rows))
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Str(b) => b.len(),
            Self::Int(b) => b.len(),
            Self::Time(b) => b.len(),
            Self::Bool(b) => b.len(),
            Self::List(b) => b.len(),
        }
    }

    /// Nulls up to `rows`.
    fn fill(&mut self, rows: usize) {
        let gap = rows.saturating_sub(self.len());
        if gap == 0 {
            return;
        }
        match self {
            Self::Str(b) => b.append_nulls(gap),
            Self::Int(b) => b.append_nulls(gap),
            Self::Time(b) => b.append_nulls(gap),
            Self::Bool(b) => b.append_nulls(gap),
            Self::List(b) => (0..gap).for_each(|_| b.append_null()),
        }
    }

    /// The cell of row `row` (a cell of another kind is stored as null, as reading it would be).
    fn put(&mut self, row: usize, c: &Cell) {
        self.fill(row);
        match (self, c) {
            (Self::Str(b), Cell::Str(s)) => b.append_value(s),
            (Self::Int(b), Cell::Int(v)) => b.append_value(*v),
            (Self::Time(b), Cell::Time(v)) => b.append_value(*v),
            (Self::Bool(b), Cell::Bool(v)) => b.append_value(*v),
            (Self::List(b), Cell::List(items)) => {
                for s in items {
                    b.values().append_value(s);
                }
                b.append(true);
            }
            (other, _) => other.fill(row + 1),
        }
    }

    fn finish(mut self, rows: usize) -> ArrayRef {
        self.fill(rows);
        match self {
            Self::Str(mut b) => Arc::new(b.finish()),
            Self::Int(mut b) => Arc::new(b.finish()),
            Self::Time(mut b) => Arc::new(b.finish()),
            Self::Bool(mut b) => Arc::new(b.finish()),
            Self::List(mut b) => Arc::new(b.finish()),
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

    /// Columns set in some rows only (first, middle, last, none) read back null where unset, and a
    /// cell of the wrong kind for its column reads back null as well.
    #[test]
    fn sparse_rows_fill_their_gaps_with_nulls() {
        let ch = Channel { tenant: "t", agent: "a", message_key: "1:1", stream_seq: 9, received: 5 };
        let lines: [&[u8]; 5] = [
            br#"{"@timestamp":1000,"process":{"pid":7},"host":{"ip":["10.0.0.1"]}}"#,
            br#"{"@timestamp":1001}"#,
            br#"{"@timestamp":1002,"user":{"name":"u"},"host":{"ip":["10.0.0.2","10.0.0.3"]}}"#,
            br#"{"@timestamp":1003,"process":{"pid":8}}"#,
            br#"{"@timestamp":1004,"user":{"name":"v"}}"#,
        ];
        let mut recs: Vec<Record> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| decode_line(l, i, &ch, &Limits::default()).unwrap())
            .collect();
        let back = batch_to_records(&records_to_batch(&recs).unwrap());
        assert_eq!(back, recs);
        let user = schemas::fields::column_index("user_name").unwrap();
        recs[2].set(user, Cell::Int(3));
        let back = batch_to_records(&records_to_batch(&recs).unwrap());
        assert_eq!(back[2].cell(user), &Cell::Null);
        assert_eq!(back[4].cell(user), &Cell::Str("v".into()));
        assert_eq!(back[3], recs[3]);
    }
}
