//! A vertical merge (ClickHouse's name for it): files each sorted on (host, time) merged one column
//! at a time. Every input's keys are merged first into the output's row order, (input, row) pairs;
//! then each output row group is built column by column, each input's rows for it read with that
//! one column decoded.
//!
//! Why not row by row: parquet gives every open column chunk its own zstd decompression context
//! (about 100 KB of C heap), so a row-wise merge of 32 inputs of 67 columns held 2,144 of them plus
//! a decoded page of every column of every input: two thirds of what a merge cost the server
//! (`cordon-bench --only merge`; issue 21's soak). Here one column of each input is open at a time.
//!
//! Each input is consumed in order, so an output row group takes one contiguous range of rows from
//! each input: a column is read with a row selection of that range, and the offset index lets the
//! reader skip the pages outside it. An input that does not declare (host, time) order in its footer
//! (a scheduled compaction's Z-ordered file) or whose schema differs from the first's is not merged
//! here: [`Lake::vertical_merge`] says so and the caller merges row-wise ([`super::SortedMerge`]).

use super::sorted::{Keys, declares_host_time, in_order};
use super::{Lake, LakeError, pq};
use crate::catalog::FileEntry;
use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::compute::{concat, interleave};
use datafusion::arrow::datatypes::SchemaRef;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};
use parquet::file::metadata::PageIndexPolicy;
use schemas::fields::col;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// One merge input: its bytes, checked against the catalog's checksum, and its parsed footer (with
/// the offset index when the file has one). Read once, whichever merge takes it.
pub(super) struct Input {
    pub(super) path: String,
    pub(super) bytes: bytes::Bytes,
    pub(super) meta: ArrowReaderMetadata,
}

impl Input {
    /// Whether its footer says every row group is sorted on (host, time).
    fn declares_host_time(&self) -> bool {
        declares_host_time(self.meta.metadata())
    }

    /// Rows `rows` of column `column` (a top-level field), only that column decoded.
    fn column(&self, column: usize, rows: Range<usize>) -> Result<ArrayRef, LakeError> {
        let path = Path::new(&self.path);
        let want = rows.len();
        let selection = RowSelection::from(vec![RowSelector::skip(rows.start), RowSelector::select(want)]);
        let reader =
            ParquetRecordBatchReaderBuilder::new_with_metadata(self.bytes.clone(), self.meta.clone())
                .with_projection(ProjectionMask::roots(self.meta.parquet_schema(), [column]))
                .with_row_selection(selection)
                .with_batch_size(want.max(1))
                .build()
                .map_err(pq(path))?;
        let parts: Vec<ArrayRef> = reader
            .map(|b| b.map(|b| Arc::clone(b.column(0))))
            .collect::<Result<_, _>>()
            .map_err(LakeError::Arrow)?;
        let array = match parts.as_slice() {
            [one] => Arc::clone(one),
            many => concat(&many.iter().map(AsRef::as_ref).collect::<Vec<_>>()).map_err(LakeError::Arrow)?,
        };
        if array.len() != want {
            return Err(LakeError::Arrow(datafusion::arrow::error::ArrowError::InvalidArgumentError(
                format!("{}: read {} rows of column {column}, asked for {want}", self.path, array.len()),
            )));
        }
        Ok(array)
    }

    /// The whole file's sort keys (host and time only decoded).
    fn keys(&self) -> Result<Keys, LakeError> {
        let rows = usize::try_from(self.meta.metadata().file_metadata().num_rows()).unwrap_or(0);
        let host = self.column(col::HOST_NAME, 0..rows)?;
        let time = self.column(col::TIME, 0..rows)?;
        Keys::new(&host, &time).map_err(LakeError::Arrow)
    }
}

/// The rows of one output row group: where each comes from.
pub struct Group {
    /// The inputs that give rows, each with its contiguous range, in slot order.
    ranges: Vec<(usize, Range<usize>)>,
    /// Each output row as (slot, row within the slot's range), for `interleave`.
    picks: Vec<(usize, usize)>,
}

impl Group {
    /// Rows in the group.
    pub fn rows(&self) -> usize {
        self.picks.len()
    }
}

/// Files sorted on (host, time), merged a row group at a time, a column at a time.
pub struct VerticalMerge {
    inputs: Vec<Input>,
    /// Every output row as (input, row), in (host, time) order; the earliest input first on ties.
    order: Vec<(u32, u32)>,
    /// Rows of `order` handed out.
    done: usize,
    schema: SchemaRef,
}

/// Committed files merged in (host, time) order: a column at a time when they allow it, else
/// row-wise. Each input is read and checked once, whichever it is.
pub enum HostTimeMerge {
    /// Every input declares (host, time) order and has the first's schema.
    Vertical(VerticalMerge),
    /// The rest: an input without the declaration (sorted whole first) or of another schema.
    Sorted(super::SortedMerge),
}

impl Lake {
    /// A merge of committed files in (host, time) order, each checked against its checksum. The
    /// inputs' keys are read and merged here when it is vertical; an input out of order fails.
    pub fn host_time_merge(&self, inputs: &[FileEntry]) -> Result<HostTimeMerge, LakeError> {
        let opened = self.open_inputs(inputs)?;
        match schema_by_column(&opened) {
            Some(schema) => Ok(HostTimeMerge::Vertical(VerticalMerge::new(opened, schema)?)),
            None => Ok(HostTimeMerge::Sorted(super::SortedMerge::new(opened)?)),
        }
    }

    /// A vertical merge of committed files; `None` when one does not declare (host, time) order
    /// or its schema differs from the first's.
    pub fn vertical_merge(&self, inputs: &[FileEntry]) -> Result<Option<VerticalMerge>, LakeError> {
        match self.host_time_merge(inputs)? {
            HostTimeMerge::Vertical(merge) => Ok(Some(merge)),
            HostTimeMerge::Sorted(_) => Ok(None),
        }
    }

    /// Each input's bytes, checked, with its footer parsed.
    pub(super) fn open_inputs(&self, inputs: &[FileEntry]) -> Result<Vec<Input>, LakeError> {
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let open = |entry: &FileEntry| {
            let bytes = self.checked_bytes(entry)?;
            let meta =
                ArrowReaderMetadata::load(&bytes, options.clone()).map_err(pq(Path::new(&entry.path)))?;
            Ok(Input { path: entry.path.clone(), bytes, meta })
        };
        inputs.iter().map(open).collect()
    }
}

/// The schema the inputs share when each declares (host, time) order; `None` when one does not, or
/// its schema differs from the first's (those merge row-wise).
fn schema_by_column(inputs: &[Input]) -> Option<SchemaRef> {
    let schema = inputs.first().map_or_else(schemas::lake_schema, |i| Arc::clone(i.meta.schema()));
    let mergeable = inputs.iter().all(|i| i.declares_host_time() && i.meta.schema() == &schema);
    mergeable.then_some(schema)
}

/// The output's rows in order: a k-way merge of the inputs' keys, each input checked to be sorted.
fn merge_order(inputs: &[Input]) -> Result<Vec<(u32, u32)>, LakeError> {
    let keys = inputs.iter().map(Input::keys).collect::<Result<Vec<_>, _>>()?;
    let total = keys.iter().map(Keys::len).sum();
    let mut order = Vec::with_capacity(total);
    let mut heap = BinaryHeap::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate().filter(|(_, k)| k.len() > 0) {
        heap.push(Reverse((k.at(0), i, 0usize)));
    }
    while let Some(Reverse((key, i, row))) = heap.pop() {
        order.push((as_u32(i), as_u32(row)));
        if row + 1 < keys[i].len() {
            let next = keys[i].at(row + 1);
            in_order(&inputs[i].path, key, next)?;
            heap.push(Reverse((next, i, row + 1)));
        }
    }
    Ok(order)
}

fn as_u32(n: usize) -> u32 {
    u32::try_from(n).expect("a lake file holds fewer than 2^32 rows")
}

impl VerticalMerge {
    fn new(inputs: Vec<Input>, schema: SchemaRef) -> Result<Self, LakeError> {
        let order = merge_order(&inputs)?;
        Ok(Self { inputs, order, done: 0, schema })
    }

    /// The merged rows' schema (every input's).
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Where the next up to `rows` rows come from; none when every row was handed out.
    pub fn next_group(&mut self, rows: usize) -> Option<Group> {
        let picked = &self.order[self.done..(self.done + rows).min(self.order.len())];
        if picked.is_empty() {
            return None;
        }
        self.done += picked.len();
        // Each input's rows arrive in order and consecutively, so they form one range per input.
        let mut slot_of: Vec<Option<usize>> = vec![None; self.inputs.len()];
        let mut ranges: Vec<(usize, Range<usize>)> = Vec::new();
        let mut picks = Vec::with_capacity(picked.len());
        for &(input, row) in picked {
            let (input, row) = (input as usize, row as usize);
            let slot = *slot_of[input].get_or_insert_with(|| {
                ranges.push((input, row..row));
                ranges.len() - 1
            });
            let range = &mut ranges[slot].1;
            debug_assert_eq!(range.end, row, "an input's rows are taken in order");
            picks.push((slot, row - range.start));
            range.end = row + 1;
        }
        Some(Group { ranges, picks })
    }

    /// Column `column` of a group's rows, in output order.
    pub fn column(&self, group: &Group, column: usize) -> Result<ArrayRef, LakeError> {
        let parts = group
            .ranges
            .iter()
            .map(|(input, rows)| self.inputs[*input].column(column, rows.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&dyn Array> = parts.iter().map(AsRef::as_ref).collect();
        interleave(&refs, &group.picks).map_err(LakeError::Arrow)
    }
}
