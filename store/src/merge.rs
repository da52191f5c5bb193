//! Merging one bin of a partition's files into one: in (host, time) order for size-tiered merging,
//! in Z-order for scheduled compaction.
//!
//! The steps, and which lock each holds:
//!
//! 1. **begin** (the commit lock, briefly): the merged file gets an id that no ingest commit will
//!    take, and the index notes and hides it ([`crate::index::FullTextIndex::begin_merge`]);
//! 2. **stage and index** (no lock): the bin's rows are put in order a slice at a time (files each
//!    sorted on (host, time) are merged a row group and a column at a time,
//!    [`crate::lake::VerticalMerge`], or row-wise as read, [`crate::lake::SortedMerge`]; for Z-order
//!    they are read whole); each slice is encoded to the file under a temporary name and added to the
//!    index writer under the new id, while ingest keeps committing (its commits may carry some of
//!    them, which searches leave out);
//! 3. **swap** (the commit lock, then the swap lock): the file is renamed into place, the catalog
//!    retires the bin and adds the file in one transaction, and one index commit deletes the bin's
//!    documents and carries the rest of the new file's, which are revealed before readers return.
//!
//! A merge that fails after step 1 deletes its documents ([`Store::abandon_merge`]). One that
//! cannot (a crash, a failed index write) leaves its id noted; recovery settles it: its documents
//! are deleted, and re-added from the lake when the catalog holds the file ([`Store::settle_merges`]).

use crate::catalog::FileEntry;
use crate::convert::batch_to_records;
use crate::delta::Operation;
use crate::index::FullTextIndex;
use crate::lake::{
    HostTimeMerge, Lake, LakeError, Order, SortedMerge, StageWriter, Staged, VerticalMerge, zorder_across,
};
use crate::maintain::CompactReport;
use crate::{Store, StoreError, failpoint};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use std::sync::Arc;

/// Rows gathered, encoded and made into owned records (for the index) at a time.
const MERGE_SLICE: usize = 8 * 1024;

/// Rows of a vertical merge's row group (the lake's row group size, so the merged file's row
/// groups are what ingest's writer would cut).
const MERGE_GROUP: usize = crate::lake::ROW_GROUP_ROWS;

/// Where a merge's rows come from, in the order they are written.
enum Rows {
    /// Inputs each sorted on (host, time) with one schema, merged a column at a time: one column of
    /// each input is open at a time ([`VerticalMerge`]).
    Vertical(VerticalMerge),
    /// Inputs each sorted on (host, time) but of differing schemas or with one not sorted, merged
    /// row-wise as read: about one batch per input is held.
    Sorted(SortedMerge),
    /// The inputs held whole, with their Z-order (scheduled compaction).
    ZOrdered { batches: Vec<RecordBatch>, order: Vec<(usize, usize)>, taken: usize },
}

impl Rows {
    fn open(lake: &Lake, inputs: &[FileEntry], order: Order) -> Result<Self, StoreError> {
        if order == Order::HostTime {
            return Ok(match lake.host_time_merge(inputs)? {
                HostTimeMerge::Vertical(merge) => Self::Vertical(merge),
                HostTimeMerge::Sorted(merge) => Self::Sorted(merge),
            });
        }
        let mut batches = Vec::new();
        for f in inputs {
            batches.extend(lake.read_batches(f)?);
        }
        let order = zorder_across(&batches).map_err(LakeError::Arrow)?;
        Ok(Self::ZOrdered { batches, order, taken: 0 })
    }

    fn schema(&self) -> SchemaRef {
        match self {
            Self::Vertical(m) => m.schema(),
            Self::Sorted(m) => m.schema(),
            Self::ZOrdered { batches, .. } => {
                batches.first().map_or_else(schemas::lake_schema, RecordBatch::schema)
            }
        }
    }

    /// Up to [`MERGE_SLICE`] more rows; none when all are written.
    fn next_slice(&mut self) -> Result<Option<RecordBatch>, StoreError> {
        match self {
            Self::Vertical(_) => unreachable!("a vertical merge is written a row group at a time"),
            Self::Sorted(m) => Ok(m.next_slice(MERGE_SLICE)?),
            Self::ZOrdered { batches, order, taken } => {
                let rows = &order[*taken..(*taken + MERGE_SLICE).min(order.len())];
                if rows.is_empty() {
                    return Ok(None);
                }
                *taken += rows.len();
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                Ok(Some(interleave_record_batch(&refs, rows).map_err(LakeError::Arrow)?))
            }
        }
    }
}

/// A merge's rows and the file it writes, between slices.
struct MergeWork {
    rows: Rows,
    /// Rows written so far.
    done: usize,
    out: StageWriter,
}

impl MergeWork {
    /// Opens the inputs (each checked against its checksum) and the staged output.
    fn open(
        lake: &Lake,
        inputs: &[FileEntry],
        tenant: &str,
        date: &str,
        order: Order,
    ) -> Result<Self, StoreError> {
        let rows = Rows::open(lake, inputs, order)?;
        let out = lake.stage_writer(tenant, date, rows.schema(), order)?;
        Ok(Self { rows, done: 0, out })
    }

    /// Writes and indexes the next slice (a row group, merging vertically); false when there was
    /// none left.
    fn next_slice(&mut self, index: &FullTextIndex, id: i64) -> Result<bool, StoreError> {
        let rows = match &mut self.rows {
            Rows::Vertical(merge) => write_group(merge, &mut self.out, index, (id, self.done))?,
            rows => {
                let Some(slice) = rows.next_slice()? else { return Ok(false) };
                self.out.write(&slice)?;
                index.add_merged(id, self.done, &batch_to_records(&slice))?;
                slice.num_rows()
            }
        };
        self.done += rows;
        Ok(rows > 0)
    }
}

/// A vertical merge's next row group, written a column at a time; the columns the index reads are
/// kept and indexed a slice at a time under file `id` from row `first`. The rows written.
fn write_group(
    merge: &mut VerticalMerge,
    out: &mut StageWriter,
    index: &FullTextIndex,
    (id, first): (i64, usize),
) -> Result<usize, StoreError> {
    let Some(group) = merge.next_group(MERGE_GROUP) else { return Ok(0) };
    let schema = merge.schema();
    let (mut fields, mut kept) = (Vec::new(), Vec::new());
    out.write_by_column(group.rows(), |c| {
        let column = merge.column(&group, c)?;
        if FullTextIndex::reads_column(schema.field(c).name()) {
            fields.push(schema.field(c).clone());
            kept.push(Arc::clone(&column));
        }
        Ok(column)
    })?;
    let indexed = RecordBatch::try_new(Arc::new(Schema::new(fields)), kept).map_err(LakeError::Arrow)?;
    for from in (0..indexed.num_rows()).step_by(MERGE_SLICE) {
        let slice = indexed.slice(from, MERGE_SLICE.min(indexed.num_rows() - from));
        index.add_merged(id, first + from, &batch_to_records(&slice))?;
    }
    Ok(group.rows())
}

/// A merge between its steps.
struct Merge {
    /// The merged file's id.
    id: i64,
    /// The index writer's epoch when the merge began.
    epoch: u64,
}

impl Store {
    /// Merges the files of `bin` (one partition's) into one, and reports it.
    pub(crate) async fn merge_bin(
        &self,
        tenant: &str,
        date: &str,
        bin: Vec<FileEntry>,
        order: Order,
        report: &mut CompactReport,
    ) -> Result<(), StoreError> {
        let merge = self.begin_merge().await?;
        let staged = match self.stage_and_index(&merge, (tenant, date), &bin, order).await {
            Ok(staged) => staged,
            Err(e) => {
                let _guard = self.commit_lock.lock().await;
                self.abandon_merge(merge.id).await;
                return Err(e);
            }
        };
        let (entry, version) = self.swap_in(merge, staged, &bin).await?;
        report.delta_version = version.or(report.delta_version);
        report.files_removed += bin.len();
        report.files_added += 1;
        report.rows += entry.rows;
        report.bytes_before += bin.iter().map(|f| f.bytes).sum::<i64>();
        report.bytes_after += entry.bytes;
        tracing::info!(tenant, date, merged = bin.len(), rows = entry.rows, file = entry.id, "compacted");
        Ok(())
    }

    /// Step 1: an id for the merged file, and the index told to hide its documents.
    async fn begin_merge(&self) -> Result<Merge, StoreError> {
        let _guard = self.commit_lock.lock().await;
        if self.index_is_behind() {
            return Err(StoreError::IndexBehind);
        }
        let id = self.catalog.take_file_ids(1).await?;
        let epoch = self.index.begin_merge(id)?;
        Ok(Merge { id, epoch })
    }

    /// Step 2, with no lock held: the bin's rows in `order`, a slice at a time, each slice encoded
    /// to the staged file and added to the index under the merged file's id. The output is never
    /// held whole; in (host, time) order the inputs' rows are not either (one column of each input
    /// at a time, or about one batch per input row-wise), in Z-order they are (the order needs every
    /// row's keys first). Between slices the merge waits as long as the slice took, so it uses at most half of one
    /// core and ingest's commits and index commits (which share the CPU pool and the index writer)
    /// keep their pace: a merge is background work.
    async fn stage_and_index(
        &self,
        merge: &Merge,
        (tenant, date): (&str, &str),
        bin: &[FileEntry],
        order: Order,
    ) -> Result<Staged, StoreError> {
        let (lake, inputs) = (self.lake.clone(), bin.to_vec());
        let (t, d) = (tenant.to_owned(), date.to_owned());
        let mut work = self.cpu.run(move || MergeWork::open(&lake, &inputs, &t, &d, order)).await??;
        loop {
            let started = std::time::Instant::now();
            let (index, id) = (Arc::clone(&self.index), merge.id);
            let (back, more) = self
                .cpu
                .run(move || -> Result<(MergeWork, bool), StoreError> {
                    let more = work.next_slice(&index, id)?;
                    Ok((work, more))
                })
                .await??;
            work = back;
            if !more {
                break;
            }
            tokio::time::sleep(started.elapsed()).await;
        }
        let staged = work.out.finish()?;
        failpoint::hit("compact_after_index");
        Ok(staged)
    }

    /// Step 3: the merged file replaces the bin, in the lake, the catalog and the index at once;
    /// then the Delta log records it. Returns the new file and the Delta version.
    async fn swap_in(
        &self,
        merge: Merge,
        staged: Staged,
        bin: &[FileEntry],
    ) -> Result<(FileEntry, Option<i64>), StoreError> {
        let _guard = self.commit_lock.lock().await;
        if self.index_is_behind() || !self.index.merge_intact(merge.epoch) {
            // The writer dropped what it buffered (a failed write elsewhere): some of this merge's
            // documents went with it. The inputs stay; a later merge takes them again.
            staged.discard();
            self.abandon_merge(merge.id).await;
            return Err(StoreError::IndexBehind);
        }
        // Ingest's files so far go into the Delta log as a WRITE, so this commit only rewrites.
        if let Err(e) = self.sync_delta(Operation::Write).await {
            staged.discard();
            self.abandon_merge(merge.id).await;
            return Err(e);
        }
        let swap = self.swap.write().await;
        let id = merge.id;
        let entry = match self.lake.publish(staged, id) {
            Ok(e) => e,
            Err(e) => {
                self.abandon_merge(id).await;
                return Err(e.into());
            }
        };
        failpoint::hit("compact_after_publish");
        let now = schemas::time::now_micros();
        if let Err(e) =
            self.catalog.swap_files(bin, std::slice::from_ref(&entry), "compaction", now, &[]).await
        {
            let _ = self.lake.remove(&entry.path);
            self.abandon_merge(id).await;
            return Err(e.into());
        }
        failpoint::hit("compact_after_swap");
        self.index.cover(id);
        self.drop_retired(bin, swap, Some(id)).await?;
        Ok((entry, self.sync_delta(Operation::Optimize).await?.version))
    }

    /// A merge that failed after it began: its documents are deleted, and searches stop hiding
    /// them once that is committed. If the commit fails, the writer is reset from the lake, which
    /// settles the merge ([`Store::settle_merges`]). Caller holds the commit lock.
    async fn abandon_merge(&self, id: i64) {
        self.index.leave_merge(id);
        let index = Arc::clone(&self.index);
        let deleted = self.cpu.run(move || index.delete_files(&[id]).and_then(|()| index.commit())).await;
        match deleted {
            Ok(Ok(())) => self.index.end_merge(id),
            _ => self.reset_index_writer().await,
        }
    }

    /// Merges no running process will finish (a crash, a failed index write): their documents are
    /// deleted, and the file's rows re-added from the lake when the catalog holds it (as the index
    /// catches up: [`Store::index_files`], which quarantines a damaged file); then
    /// searches see them. Caller holds the commit lock, with the index caught up with the catalog.
    pub(crate) async fn settle_merges(&self) -> Result<(), StoreError> {
        let ids = self.index.unsettled_merges();
        if ids.is_empty() {
            return Ok(());
        }
        let live: Vec<FileEntry> =
            self.catalog.files_after(0).await?.into_iter().filter(|f| ids.contains(&f.id)).collect();
        tracing::info!(merges = ids.len(), live = live.len(), "settling interrupted merges");
        // Deleted first: the same commit then carries the live files' rows, added after the delete.
        self.index.delete_files(&ids)?;
        self.index_files(live, false).await?;
        ids.into_iter().for_each(|id| self.index.end_merge(id));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::fixtures::commit_tagged as commit;
    use crate::index::SearchQuery;
    use crate::lake::{Order, Staged};
    use crate::{Store, StoreConfig};
    use std::sync::Arc;

    /// (hits on the page, total) for one event's tag.
    async fn found(store: &Store, tag: &str) -> (usize, usize) {
        let q = SearchQuery { q: tag.into(), literal: true, limit: 10, ..Default::default() };
        let (hits, total) = store.search("default", q).await.unwrap();
        (hits.len(), total)
    }

    /// Begins, stages and indexes a merge of every live file, and returns it without the swap.
    async fn half_merge(
        store: &Arc<Store>,
        order: Order,
    ) -> (super::Merge, Staged, Vec<crate::catalog::FileEntry>) {
        let bin = store.catalog.files_after(0).await.unwrap();
        let merge = store.begin_merge().await.unwrap();
        let part = ("default", bin[0].date.as_str());
        let staged = store.stage_and_index(&merge, part, &bin, order).await.unwrap();
        (merge, staged, bin)
    }

    /// Ingest commits while a merge's documents are in the writer: its commits carry some of them,
    /// yet searches count every row once; the swap then shows the merged file's rows once. A merge
    /// cut off before its swap (a crash) leaves documents that the next open deletes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ingest_commits_during_a_merge_and_searches_count_each_row_once() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig::new(dir.path().to_path_buf());
        let store = Store::open(&cfg).await.unwrap();
        let per = 4;
        for c in 0..3 {
            commit(&store, c, per).await;
        }
        let (merge, staged, bin) = half_merge(&store, Order::HostTime).await;
        commit(&store, 3, per).await;
        store.flush().await.unwrap();
        let newest = store.catalog.files_after(0).await.unwrap().last().unwrap().id;
        assert!(newest > merge.id, "ingest's file takes an id past the merge's ({newest} <= {})", merge.id);
        assert_eq!(store.indexed_docs(), 4 * per as u64, "the merge's committed documents are hidden");
        assert_eq!(found(&store, "tag-e-1-2").await, (1, 1));
        let (_, version) = store.swap_in(merge, staged, &bin).await.unwrap();
        assert!(version.is_some());
        assert_eq!(found(&store, "tag-e-1-2").await, (1, 1), "the merged row, once");
        assert_eq!(found(&store, "tag-e-3-0").await, (1, 1), "ingest's row from during the merge");
        assert_eq!(store.indexed_docs(), 4 * per as u64);
        assert_eq!(store.catalog.files_after(0).await.unwrap().len(), 2);

        // A second merge, cut off after an index commit carried its documents.
        commit(&store, 4, per).await;
        let (merge, staged, _) = half_merge(&store, Order::ZOrder).await;
        store.flush().await.unwrap();
        let note = dir.path().join("index").join("merging.json");
        assert!(note.exists(), "a merge in flight is noted on disk");
        drop((merge, staged));
        drop(store);
        let store = Store::open(&cfg).await.unwrap();
        assert!(!note.exists(), "the open settled it");
        assert_eq!(store.indexed_docs(), 5 * per as u64);
        assert_eq!(found(&store, "tag-e-4-1").await, (1, 1));
        assert_eq!(found(&store, "tag-e-0-0").await, (1, 1));
        let sql = "SELECT count(*), count(DISTINCT event_id) FROM events";
        let got = store.sql("default", sql, Default::default()).await.unwrap();
        let sent = serde_json::json!(5 * per);
        assert_eq!(got.rows[0], vec![sent.clone(), sent]);
    }
}
