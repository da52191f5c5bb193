//! Files sorted on (host, time) merged into one sorted stream, a slice at a time (a k-way merge):
//! each input is decoded a batch at a time, so a merge holds about one batch per input and the
//! inputs' compressed bytes, never their rows whole.
//!
//! Every file ingest writes is sorted on (host, time) and says so in its footer, and so is every
//! file size-tiered merging writes; an input that does not say so (a scheduled compaction's
//! Z-ordered file) is read whole and sorted first. An input found out of order as it is read fails the merge rather than
//! write a file whose footer would lie.

use super::vertical::Input;
use super::{Lake, LakeError, pq};
use crate::catalog::FileEntry;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, StringArray, TimestampMicrosecondArray, UInt32Array,
};
use datafusion::arrow::compute::{cast, concat_batches, interleave_record_batch, take_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimestampMicrosecondType};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaData;
use schemas::fields::col;
use std::cmp::Ordering;
use std::path::Path;

/// Rows decoded from an input at a time: a merge of 32 inputs holds about 32 of these (a row
/// decodes to about 1 KB).
const READ_BATCH: usize = 1024;

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>;

/// A batch's sort keys, taken once: host (null as "") and time (null as 0), as ingest sorts them.
pub(super) struct Keys {
    hosts: StringArray,
    times: TimestampMicrosecondArray,
}

impl Keys {
    fn of(batch: &RecordBatch) -> Result<Self, ArrowError> {
        Self::new(batch.column(col::HOST_NAME), batch.column(col::TIME))
    }

    /// The keys of a host column and a time column.
    pub(super) fn new(host: &ArrayRef, time: &ArrayRef) -> Result<Self, ArrowError> {
        let hosts = cast(host, &DataType::Utf8)?.as_string::<i32>().clone();
        let times = time.as_primitive_opt::<TimestampMicrosecondType>().cloned();
        let times = times.ok_or_else(|| {
            ArrowError::InvalidArgumentError(format!("time is {}, not microseconds", time.data_type()))
        })?;
        Ok(Self { hosts, times })
    }

    pub(super) fn at(&self, row: usize) -> (&str, i64) {
        let host = if self.hosts.is_null(row) { "" } else { self.hosts.value(row) };
        let time = if self.times.is_null(row) { 0 } else { self.times.value(row) };
        (host, time)
    }

    pub(super) fn len(&self) -> usize {
        self.times.len()
    }
}

/// One input's next rows: its current batch and the row the merge is at.
struct Head {
    batch: RecordBatch,
    keys: Keys,
    row: usize,
    /// Where `batch` is in the slice being gathered.
    slot: usize,
}

/// One input file, read in order.
struct Run {
    path: String,
    batches: Batches,
    head: Option<Head>,
}

/// The next batch with rows, or none when the file is done.
fn next_batch(batches: &mut Batches) -> Result<Option<RecordBatch>, ArrowError> {
    for batch in batches.by_ref() {
        let batch = batch?;
        if batch.num_rows() > 0 {
            return Ok(Some(batch));
        }
    }
    Ok(None)
}

impl Run {
    /// Moves past the head row, loading the next batch into `pool` when this one is done; an
    /// input whose next row sorts before the last fails.
    fn advance(&mut self, pool: &mut Vec<RecordBatch>) -> Result<(), LakeError> {
        let head = self.head.as_mut().expect("a run being advanced has a head");
        head.row += 1;
        if head.row < head.batch.num_rows() {
            return in_order(&self.path, head.keys.at(head.row - 1), head.keys.at(head.row));
        }
        let Some(batch) = next_batch(&mut self.batches).map_err(LakeError::Arrow)? else {
            self.head = None;
            return Ok(());
        };
        let keys = Keys::of(&batch).map_err(LakeError::Arrow)?;
        in_order(&self.path, head.keys.at(head.row - 1), keys.at(0))?;
        pool.push(batch.clone());
        self.head = Some(Head { batch, keys, row: 0, slot: pool.len() - 1 });
        Ok(())
    }
}

pub(super) fn in_order(path: &str, last: (&str, i64), next: (&str, i64)) -> Result<(), LakeError> {
    if next < last {
        let (last, next) = (format!("{last:?}"), format!("{next:?}"));
        return Err(LakeError::Unsorted { path: path.to_owned(), last, next });
    }
    Ok(())
}

/// The rows of several files in (host, time) order, gathered a slice at a time.
pub struct SortedMerge {
    runs: Vec<Run>,
    schema: SchemaRef,
}

impl SortedMerge {
    /// The schema of the merged rows (the first input's).
    pub fn schema(&self) -> SchemaRef {
        std::sync::Arc::clone(&self.schema)
    }

    /// Up to `rows` more rows in order; none when every input is done.
    pub fn next_slice(&mut self, rows: usize) -> Result<Option<RecordBatch>, LakeError> {
        let mut pool = Vec::new();
        for head in self.runs.iter_mut().filter_map(|r| r.head.as_mut()) {
            pool.push(head.batch.clone());
            head.slot = pool.len() - 1;
        }
        let mut picked = Vec::with_capacity(rows);
        while picked.len() < rows {
            let Some(i) = self.least() else { break };
            let head = self.runs[i].head.as_ref().expect("the least run has a head");
            picked.push((head.slot, head.row));
            self.runs[i].advance(&mut pool)?;
        }
        if picked.is_empty() {
            return Ok(None);
        }
        let refs: Vec<&RecordBatch> = pool.iter().collect();
        Ok(Some(interleave_record_batch(&refs, &picked).map_err(LakeError::Arrow)?))
    }

    /// The input whose head row sorts first (the earliest input on ties, so equal keys keep the
    /// inputs' order).
    fn least(&self) -> Option<usize> {
        let mut best: Option<(usize, (&str, i64))> = None;
        for (i, run) in self.runs.iter().enumerate() {
            let Some(h) = &run.head else { continue };
            let key = h.keys.at(h.row);
            if best.is_none_or(|(_, b)| key.cmp(&b) == Ordering::Less) {
                best = Some((i, key));
            }
        }
        best.map(|(i, _)| i)
    }
}

impl Lake {
    /// A row-wise merge of committed files, each checked against its checksum and read in (host,
    /// time) order as the merge asks for rows.
    pub fn sorted_merge(&self, inputs: &[FileEntry]) -> Result<SortedMerge, LakeError> {
        SortedMerge::new(self.open_inputs(inputs)?)
    }
}

impl SortedMerge {
    /// The merge of inputs already read and checked.
    pub(super) fn new(inputs: Vec<Input>) -> Result<Self, LakeError> {
        let mut runs = Vec::with_capacity(inputs.len());
        let mut schema = None;
        for input in inputs {
            let mut run = run_of(input)?;
            if let Some(batch) = next_batch(&mut run.batches).map_err(LakeError::Arrow)? {
                schema.get_or_insert_with(|| batch.schema());
                let keys = Keys::of(&batch).map_err(LakeError::Arrow)?;
                run.head = Some(Head { batch, keys, row: 0, slot: 0 });
            }
            runs.push(run);
        }
        Ok(Self { runs, schema: schema.unwrap_or_else(schemas::lake_schema) })
    }
}

/// One input: streamed when its footer says it is sorted on (host, time), else read whole and
/// sorted.
fn run_of(input: Input) -> Result<Run, LakeError> {
    let Input { path, bytes, meta } = input;
    let sorted = declares_host_time(meta.metadata());
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, meta)
        .with_batch_size(READ_BATCH)
        .build()
        .map_err(pq(Path::new(&path)))?;
    let batches: Batches = if sorted {
        Box::new(reader)
    } else {
        let whole = reader.collect::<Result<Vec<_>, _>>().map_err(LakeError::Arrow)?;
        Box::new(sort_whole(&whole).map_err(LakeError::Arrow)?.into_iter().map(Ok))
    };
    Ok(Run { path, batches, head: None })
}

/// Whether every row group of a file says it is sorted on (host, time), ascending.
pub(super) fn declares_host_time(meta: &ParquetMetaData) -> bool {
    meta.row_groups().iter().all(|rg| {
        rg.sorting_columns().is_some_and(|s| {
            s.len() >= 2
                && s[..2].iter().map(|c| c.column_idx as usize).eq([col::HOST_NAME, col::TIME])
                && s[..2].iter().all(|c| !c.descending)
        })
    })
}

/// An unsorted file's rows sorted on (host, time), in batches of [`READ_BATCH`].
fn sort_whole(batches: &[RecordBatch]) -> Result<Vec<RecordBatch>, ArrowError> {
    let Some(first) = batches.first() else { return Ok(Vec::new()) };
    let all = concat_batches(&first.schema(), batches)?;
    let keys = Keys::of(&all)?;
    let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
    order.sort_by(|&a, &b| keys.at(a as usize).cmp(&keys.at(b as usize)));
    let sorted = take_record_batch(&all, &UInt32Array::from(order))?;
    Ok((0..sorted.num_rows())
        .step_by(READ_BATCH)
        .map(|at| sorted.slice(at, READ_BATCH.min(sorted.num_rows() - at)))
        .collect())
}

impl Lake {
    /// Writes batches of a tenant's date as one file sorted on (host, time), gathered a row group
    /// at a time from the inputs (one copy of the rows, never a concatenated whole). For writers
    /// that convert their rows to Arrow as they go (a bulk load) rather than hold them as records.
    /// Inputs that are each sorted already ([`super::sort_host_time`]) are gathered from in order,
    /// which reads memory far faster than a gather from random rows.
    pub fn write_batches(
        &self,
        id: i64,
        tenant: &str,
        date: &str,
        batches: &[RecordBatch],
    ) -> Result<FileEntry, LakeError> {
        let Some(first) = batches.first() else {
            return Err(LakeError::Arrow(ArrowError::InvalidArgumentError("no rows to write".into())));
        };
        let keys: Vec<Keys> =
            batches.iter().map(Keys::of).collect::<Result<_, _>>().map_err(LakeError::Arrow)?;
        let mut order: Vec<(usize, usize)> =
            keys.iter().enumerate().flat_map(|(b, k)| (0..k.len()).map(move |row| (b, row))).collect();
        order.sort_by(|&(a, i), &(b, j)| keys[a].at(i).cmp(&keys[b].at(j)));
        let inputs: Vec<&RecordBatch> = batches.iter().collect();
        let mut w = self.stage_writer(tenant, date, first.schema(), super::Order::HostTime)?;
        for slice in order.chunks(super::ROW_GROUP_ROWS) {
            w.write(&interleave_record_batch(&inputs, slice).map_err(LakeError::Arrow)?)?;
        }
        self.publish(w.finish()?, id)
    }
}
