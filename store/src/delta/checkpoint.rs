//! Delta checkpoints: the whole snapshot in one Parquet file, so readers (and Cordon on start) need
//! not replay every JSON commit since version 0.
//!
//! A checkpoint at version `v` is `_delta_log/<v>.checkpoint.parquet` with one row per action —
//! `protocol`, `metaData`, the `txn` of `cordon-ingest`, and an `add` per live file — each row with
//! exactly one non-null struct column, in the layout of the Delta protocol's "Checkpoints" section.
//! `_delta_log/_last_checkpoint` then points at it. Both are written to a temporary name and renamed,
//! so a reader sees a whole checkpoint or none.

use super::{APP_ID, AddMeta, DeltaError, MetaInfo};
use crate::objects::Objects;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, ListBuilder, MapArray, MapBuilder, MapFieldNames,
    StringArray, StringBuilder, StructArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{Field, Fields, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The table state a checkpoint holds.
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    pub files: BTreeMap<String, AddMeta>,
    pub txn_version: i64,
    pub txn_updated: i64,
    pub meta: Option<MetaInfo>,
}

fn corrupt(path: &str, reason: impl Into<String>) -> DeltaError {
    DeltaError::Corrupt { path: path.to_owned(), line: 0, reason: reason.into() }
}

fn map_names() -> MapFieldNames {
    MapFieldNames { entry: "key_value".into(), key: "key".into(), value: "value".into() }
}

/// A map<string, string> column: `Some(pairs)` rows hold a map, `None` rows are null.
fn string_map(rows: &[Option<Vec<(&str, &str)>>]) -> Result<MapArray, DeltaError> {
    let mut b = MapBuilder::new(Some(map_names()), StringBuilder::new(), StringBuilder::new());
    for row in rows {
        match row {
            Some(pairs) => {
                for (k, v) in pairs {
                    b.keys().append_value(k);
                    b.values().append_value(v);
                }
                b.append(true)
            }
            None => b.append(false),
        }
        .map_err(|e| DeltaError::Checkpoint(e.to_string()))?;
    }
    Ok(b.finish())
}

fn field(name: &str, array: &dyn Array) -> Field {
    Field::new(name, array.data_type().clone(), true)
}

fn strukt(children: Vec<(&str, ArrayRef)>, valid: &[bool]) -> Result<StructArray, DeltaError> {
    let fields: Fields = children.iter().map(|(n, a)| field(n, a.as_ref())).collect();
    let arrays = children.into_iter().map(|(_, a)| a).collect();
    StructArray::try_new(fields, arrays, Some(NullBuffer::from(valid.to_vec())))
        .map_err(|e| DeltaError::Checkpoint(e.to_string()))
}

/// Writes the checkpoint of `snap` at `version` and points `_last_checkpoint` at it; the number of
/// actions written.
pub(super) fn write(
    objects: &Objects,
    log_dir: &str,
    version: i64,
    snap: &Snapshot,
) -> Result<usize, DeltaError> {
    let meta = snap.meta.as_ref().ok_or_else(|| corrupt(log_dir, "no metaData to checkpoint"))?;
    // Rows: 0 protocol, 1 metaData, 2 txn, 3.. add.
    let n = 3 + snap.files.len();
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("protocol", Arc::new(protocol_column(n)?)),
        ("metaData", Arc::new(metadata_column(n, meta)?)),
        ("txn", Arc::new(txn_column(n, snap)?)),
        ("add", Arc::new(add_column(n, snap)?)),
    ];
    let bytes = encode(columns)?;
    objects.put(&format!("{log_dir}/{version:020}.checkpoint.parquet"), bytes.into())?;
    let last = serde_json::json!({"version": version, "size": n}).to_string();
    objects.put(&format!("{log_dir}/_last_checkpoint"), last.into())?;
    Ok(n)
}

/// Validity of `n` rows where only `row` holds this action.
fn only_row(n: usize, row: usize) -> Vec<bool> {
    (0..n).map(|i| i == row).collect()
}

/// A string column of `n` rows holding `v` in `row` alone.
fn only(n: usize, row: usize, v: &str) -> ArrayRef {
    Arc::new(StringArray::from_iter((0..n).map(|i| (i == row).then(|| v.to_owned()))))
}

/// Row 0: the protocol (reader 1, writer 2).
fn protocol_column(n: usize) -> Result<StructArray, DeltaError> {
    strukt(
        vec![
            ("minReaderVersion", Arc::new(Int32Array::from_iter((0..n).map(|i| (i == 0).then_some(1))))),
            ("minWriterVersion", Arc::new(Int32Array::from_iter((0..n).map(|i| (i == 0).then_some(2))))),
        ],
        &only_row(n, 0),
    )
}

/// Row 1: the table's metadata (Parquet, the events schema, partitioned by tenant and date).
fn metadata_column(n: usize, meta: &MetaInfo) -> Result<StructArray, DeltaError> {
    let empty_map = || string_map(&(0..n).map(|i| (i == 1).then(Vec::new)).collect::<Vec<_>>());
    let format = strukt(
        vec![("provider", only(n, 1, "parquet")), ("options", Arc::new(empty_map()?))],
        &only_row(n, 1),
    )?;
    let mut part_cols = ListBuilder::new(StringBuilder::new());
    for i in 0..n {
        if i == 1 {
            for c in super::PARTITION_COLUMNS {
                part_cols.values().append_value(c);
            }
        }
        part_cols.append(i == 1);
    }
    strukt(
        vec![
            ("id", only(n, 1, &meta.id)),
            ("name", only(n, 1, "events")),
            ("description", only(n, 1, "Cordon endpoint events")),
            ("format", Arc::new(format)),
            ("schemaString", only(n, 1, &super::schema_string())),
            ("partitionColumns", Arc::new(part_cols.finish())),
            ("configuration", Arc::new(empty_map()?)),
            (
                "createdTime",
                Arc::new(Int64Array::from_iter((0..n).map(|i| (i == 1).then_some(meta.created_time)))),
            ),
        ],
        &only_row(n, 1),
    )
}

/// Row 2: the ingest checkpoint the snapshot covers.
fn txn_column(n: usize, snap: &Snapshot) -> Result<StructArray, DeltaError> {
    strukt(
        vec![
            ("appId", only(n, 2, APP_ID)),
            (
                "version",
                Arc::new(Int64Array::from_iter((0..n).map(|i| (i == 2).then_some(snap.txn_version)))),
            ),
            (
                "lastUpdated",
                Arc::new(Int64Array::from_iter((0..n).map(|i| (i == 2).then_some(snap.txn_updated)))),
            ),
        ],
        &only_row(n, 2),
    )
}

/// Rows 3..: one add per live file.
fn add_column(n: usize, snap: &Snapshot) -> Result<StructArray, DeltaError> {
    let adds: Vec<(&String, &AddMeta)> = snap.files.iter().collect();
    let at = |i: usize| if i >= 3 { Some(adds[i - 3]) } else { None };
    let stats: Vec<Option<String>> =
        (0..n).map(|i| at(i).map(|(_, m)| serde_json::json!({"numRecords": m.rows}).to_string())).collect();
    let partition_values: Vec<Option<Vec<(&str, &str)>>> = (0..n)
        .map(|i| at(i).map(|(p, m)| vec![("tenant", super::tenant_of(p)), ("date", m.date.as_str())]))
        .collect();
    let valid: Vec<bool> = (0..n).map(|i| i >= 3).collect();
    strukt(
        vec![
            ("path", Arc::new(StringArray::from_iter((0..n).map(|i| at(i).map(|(p, _)| super::escape(p)))))),
            ("partitionValues", Arc::new(string_map(&partition_values)?)),
            ("size", Arc::new(Int64Array::from_iter((0..n).map(|i| at(i).map(|(_, m)| m.size))))),
            (
                "modificationTime",
                Arc::new(Int64Array::from_iter((0..n).map(|i| at(i).map(|(_, m)| m.mtime)))),
            ),
            ("dataChange", Arc::new(BooleanArray::from_iter((0..n).map(|i| at(i).map(|_| false))))),
            ("stats", Arc::new(StringArray::from(stats))),
        ],
        &valid,
    )
}

/// The columns as one Parquet file.
fn encode(columns: Vec<(&str, ArrayRef)>) -> Result<Vec<u8>, DeltaError> {
    let err = |e: &dyn std::fmt::Display| DeltaError::Checkpoint(e.to_string());
    let schema = Arc::new(Schema::new(columns.iter().map(|(n, a)| field(n, a.as_ref())).collect::<Vec<_>>()));
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns.into_iter().map(|(_, a)| a).collect())
        .map_err(|e| err(&e))?;
    let mut w = ArrowWriter::try_new(Vec::new(), schema, None).map_err(|e| err(&e))?;
    w.write(&batch).map_err(|e| err(&e))?;
    w.into_inner().map_err(|e| err(&e))
}

fn child<'a, T: 'static>(s: &'a StructArray, name: &str, path: &str) -> Result<&'a T, DeltaError> {
    s.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| corrupt(path, format!("checkpoint column {name} is missing or mistyped")))
}

/// Reads a checkpoint file back into a snapshot.
pub(super) fn read(path: &str, bytes: &bytes::Bytes) -> Result<Snapshot, DeltaError> {
    let file = bytes.clone();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| corrupt(path, e.to_string()))?;
    let mut snap = Snapshot { txn_version: -1, ..Default::default() };
    for batch in reader {
        let batch = batch.map_err(|e| corrupt(path, e.to_string()))?;
        let col = |name: &str| {
            batch.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<StructArray>().cloned())
        };
        if let Some(add) = col("add") {
            let paths = child::<StringArray>(&add, "path", path)?;
            let sizes = child::<Int64Array>(&add, "size", path)?;
            let mtimes = child::<Int64Array>(&add, "modificationTime", path)?;
            let stats = child::<StringArray>(&add, "stats", path)?;
            let parts = child::<MapArray>(&add, "partitionValues", path)?;
            for i in (0..add.len()).filter(|i| add.is_valid(*i)) {
                let entries = parts.value(i);
                let keys = entries.column(0).as_any().downcast_ref::<StringArray>();
                let vals = entries.column(1).as_any().downcast_ref::<StringArray>();
                let date = match (keys, vals) {
                    (Some(k), Some(v)) => {
                        (0..k.len()).find(|j| k.value(*j) == "date").map(|j| v.value(j).to_owned())
                    }
                    _ => None,
                }
                .unwrap_or_default();
                let rows = serde_json::from_str::<serde_json::Value>(stats.value(i))
                    .ok()
                    .and_then(|v| v["numRecords"].as_i64())
                    .unwrap_or(0);
                snap.files.insert(
                    super::unescape(paths.value(i)),
                    AddMeta { size: sizes.value(i), date, rows, mtime: mtimes.value(i) },
                );
            }
        }
        if let Some(txn) = col("txn") {
            let apps = child::<StringArray>(&txn, "appId", path)?;
            let versions = child::<Int64Array>(&txn, "version", path)?;
            let updated = child::<Int64Array>(&txn, "lastUpdated", path)?;
            for i in (0..txn.len()).filter(|i| txn.is_valid(*i) && apps.value(*i) == APP_ID) {
                snap.txn_version = versions.value(i);
                snap.txn_updated = updated.value(i);
            }
        }
        if let Some(md) = col("metaData") {
            let ids = child::<StringArray>(&md, "id", path)?;
            let created = child::<Int64Array>(&md, "createdTime", path)?;
            if let Some(i) = (0..md.len()).find(|i| md.is_valid(*i)) {
                let cols = child::<datafusion::arrow::array::ListArray>(&md, "partitionColumns", path)?;
                let by_tenant = cols
                    .value(i)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .is_some_and(|c| (0..c.len()).any(|j| c.value(j) == "tenant"));
                snap.meta =
                    Some(MetaInfo { id: ids.value(i).to_owned(), created_time: created.value(i), by_tenant });
            }
        }
    }
    if snap.meta.is_none() {
        return Err(corrupt(path, "checkpoint has no metaData action"));
    }
    Ok(snap)
}
