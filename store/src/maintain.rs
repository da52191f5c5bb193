//! Lake maintenance: compaction (Delta's OPTIMIZE with Z-order on host and time) and retention
//! (Delta's VACUUM after deleting expired partitions).
//!
//! Both follow the ingest commit protocol's shape, with the catalog swap as the commit point:
//!
//! 1. the new file is encoded to a temporary name, invisible to readers ([`crate::lake::Lake::stage`]);
//! 2. under the commit lock, its rows are added to the index writer under the new file id
//!    (uncommitted, so invisible);
//! 3. with readers held off (the swap lock), the file is renamed into place, the catalog retires the
//!    old files and adds the new one in one transaction, the index deletes the old files' documents and
//!    commits, and the old files are unlinked;
//! 4. the catalog notes that the index has purged the retired files, and the Delta log gets one
//!    commit (`OPTIMIZE` with `dataChange: false`, or `DELETE`).
//!
//! A crash anywhere leaves either the old files or the new one in the catalog; on start, files the
//! catalog does not hold are removed, retired files' documents are deleted from the index, the index
//! catches up, and the Delta log is brought up to the catalog.

use crate::catalog::FileEntry;
use crate::convert::batch_to_records;
use crate::delta::Operation;
use crate::lake::{LakeError, Order, Staged, zorder_indices};
use crate::{MAX_FILE_ROWS, Store, StoreError, failpoint};
use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What compaction does.
#[derive(Clone, Debug)]
pub struct CompactOptions {
    /// Files with fewer rows than this are merged.
    pub small_file_rows: i64,
    /// Rows per output file at most.
    pub target_rows: i64,
}

impl Default for CompactOptions {
    fn default() -> Self {
        Self { small_file_rows: MAX_FILE_ROWS as i64 / 2, target_rows: MAX_FILE_ROWS as i64 }
    }
}

/// What compaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CompactReport {
    /// Partitions (tenant, date) rewritten.
    pub partitions: usize,
    /// Files merged away.
    pub files_removed: usize,
    /// Files written.
    pub files_added: usize,
    /// Rows rewritten (unchanged in number).
    pub rows: i64,
    /// Bytes before and after.
    pub bytes_before: i64,
    /// Bytes after.
    pub bytes_after: i64,
    /// The Delta version that records it, if any.
    pub delta_version: Option<i64>,
}

/// What retention does.
#[derive(Clone, Debug)]
pub struct VacuumOptions {
    /// Keep this many days of events (by partition date); `None` keeps everything and only removes
    /// files the catalog does not hold.
    pub retain_days: Option<u32>,
    /// "Today", microseconds (the clock, or a fixed time in tests).
    pub now: i64,
}

/// What retention did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VacuumReport {
    /// Partitions older than this date were deleted.
    pub cutoff_date: Option<String>,
    /// Files deleted by retention.
    pub files_expired: usize,
    /// Rows deleted by retention.
    pub rows_expired: i64,
    /// Files on disk no version of the table holds, removed.
    pub orphans_removed: usize,
    /// The Delta version that records it, if any.
    pub delta_version: Option<i64>,
}

impl Store {
    /// Merges each partition's small files into Z-ordered files of up to `target_rows`.
    ///
    /// Ingest keeps running: each bin is read and encoded without locks (lake files are immutable,
    /// and only maintenance, one run at a time, retires them); ingest waits only while a bin's rows
    /// are indexed and the files swap.
    pub async fn compact(&self, opts: &CompactOptions) -> Result<CompactReport, StoreError> {
        let _maintenance = self.maintenance.lock().await;
        let files = self.catalog.files_after(0).await?;
        let mut parts: BTreeMap<(String, String), Vec<FileEntry>> = BTreeMap::new();
        for f in files.into_iter().filter(|f| f.rows < opts.small_file_rows) {
            parts.entry((f.tenant.clone(), f.date.clone())).or_default().push(f);
        }
        let mut report = CompactReport::default();
        for ((tenant, date), small) in parts {
            let mut touched = false;
            for bin in bins(small, opts.target_rows) {
                self.compact_bin(&tenant, &date, bin, &mut report).await?;
                touched = true;
            }
            report.partitions += usize::from(touched);
        }
        Ok(report)
    }

    async fn compact_bin(
        &self,
        tenant: &str,
        date: &str,
        bin: Vec<FileEntry>,
        report: &mut CompactReport,
    ) -> Result<(), StoreError> {
        let lake = self.lake.clone();
        let (inputs, t, d) = (bin.clone(), tenant.to_owned(), date.to_owned());
        let (staged, batch) = self
            .cpu
            .run(move || -> Result<(Staged, datafusion::arrow::record_batch::RecordBatch), LakeError> {
                let mut batches = Vec::new();
                for f in &inputs {
                    batches.extend(lake.read_batches(f)?);
                }
                let all = concat_batches(&schemas::lake_schema(), &batches).map_err(LakeError::Arrow)?;
                let order = UInt32Array::from(zorder_indices(&all));
                let sorted = take_record_batch(&all, &order).map_err(LakeError::Arrow)?;
                Ok((lake.stage(&t, &d, &sorted, Order::ZOrder)?, sorted))
            })
            .await??;

        let _guard = self.commit_lock.lock().await;
        if self.index_is_behind() {
            staged.discard();
            return Err(StoreError::IndexBehind);
        }
        // Ingest's files so far go into the Delta log as a WRITE, so this bin's commit only rewrites;
        // ingest's buffered documents are committed, so a rollback below drops only this bin's.
        self.sync_delta(Operation::Write).await?;
        let index = Arc::clone(&self.index);
        self.cpu.run(move || index.commit()).await??;
        let id = self.catalog.next_file_id().await?;
        // The new file's documents go into the writer now, uncommitted: readers cannot see them.
        let index = Arc::clone(&self.index);
        let added = self
            .cpu
            .run(move || -> Result<(), crate::IndexError> {
                let chunk = 64 * 1024;
                let mut start = 0;
                while start < batch.num_rows() {
                    let len = chunk.min(batch.num_rows() - start);
                    index.add_file(id, start, &batch_to_records(&batch.slice(start, len)))?;
                    start += len;
                }
                Ok(())
            })
            .await?;
        if let Err(e) = added {
            staged.discard();
            let _ = self.index.rollback();
            return Err(e.into());
        }

        let swap = self.swap.write().await;
        let entry = match self.lake.publish(staged, id) {
            Ok(e) => e,
            Err(e) => {
                let _ = self.index.rollback();
                return Err(e.into());
            }
        };
        failpoint::hit("compact_after_publish");
        let now = schemas::time::now_micros();
        if let Err(e) =
            self.catalog.swap_files(&bin, std::slice::from_ref(&entry), "compaction", now, &[]).await
        {
            let _ = self.lake.remove(&entry.path);
            let _ = self.index.rollback();
            return Err(e.into());
        }
        failpoint::hit("compact_after_swap");
        self.drop_retired(&bin, swap).await?;
        report.delta_version = self.sync_delta(Operation::Optimize).await?.version.or(report.delta_version);
        report.files_removed += bin.len();
        report.files_added += 1;
        report.rows += entry.rows;
        report.bytes_before += bin.iter().map(|f| f.bytes).sum::<i64>();
        report.bytes_after += entry.bytes;
        tracing::info!(tenant, date, merged = bin.len(), rows = entry.rows, file = entry.id, "compacted");
        Ok(())
    }

    /// Deletes partitions older than the retention period and removes files the catalog does not
    /// hold.
    pub async fn vacuum(&self, opts: &VacuumOptions) -> Result<VacuumReport, StoreError> {
        let _maintenance = self.maintenance.lock().await;
        let _guard = self.commit_lock.lock().await;
        self.sync_delta(Operation::Write).await?;
        let mut report = VacuumReport::default();
        if let Some(days) = opts.retain_days {
            let cutoff = schemas::time::date_of_micros(opts.now - i64::from(days) * 86_400_000_000);
            let expired: Vec<FileEntry> =
                self.catalog.files_after(0).await?.into_iter().filter(|f| f.date < cutoff).collect();
            report.cutoff_date = Some(cutoff);
            if !expired.is_empty() {
                // What leaves each host's count, read before the files go (host column only).
                let (lake, files) = (self.lake.clone(), expired.clone());
                let per_host = self
                    .cpu
                    .run(move || -> Result<Vec<(String, String, i64)>, LakeError> {
                        let mut sum: BTreeMap<(String, String), i64> = BTreeMap::new();
                        for f in &files {
                            for (host, n) in lake.host_counts(f)? {
                                *sum.entry((f.tenant.clone(), host)).or_insert(0) += n;
                            }
                        }
                        Ok(sum.into_iter().map(|((t, h), n)| (t, h, n)).collect())
                    })
                    .await??;
                let swap = self.swap.write().await;
                let now = schemas::time::now_micros();
                self.catalog.swap_files(&expired, &[], "retention", now, &per_host).await?;
                self.drop_retired(&expired, swap).await?;
                report.files_expired = expired.len();
                report.rows_expired = expired.iter().map(|f| f.rows).sum();
            }
        }
        report.orphans_removed = self.remove_orphans().await?.len();
        report.delta_version = self.sync_delta(Operation::Delete).await?.version;
        Ok(report)
    }
}

impl Store {
    /// After the catalog retired `files` (the commit point): their documents leave the index and
    /// their files the disk while readers are still held off by `swap`; then the catalog notes the
    /// index is clean. If the index commit fails, the next start deletes the documents instead (the
    /// catalog's retired list says which).
    async fn drop_retired(
        &self,
        files: &[FileEntry],
        swap: tokio::sync::RwLockWriteGuard<'_, ()>,
    ) -> Result<(), StoreError> {
        let ids: Vec<i64> = files.iter().map(|f| f.id).collect();
        let (index, del) = (Arc::clone(&self.index), ids.clone());
        let committed = self.cpu.run(move || index.delete_files(&del).and_then(|()| index.commit())).await?;
        let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        self.lake.remove_all(&paths)?;
        drop(swap);
        match committed {
            Err(e) => {
                tracing::error!(error = %e, "index commit after retiring files failed; it catches up on restart")
            }
            Ok(()) => self.catalog.mark_purged(&ids).await?,
        }
        Ok(())
    }
}

/// Groups files (in id order) into runs of at least two whose rows fit `target`.
fn bins(files: Vec<FileEntry>, target: i64) -> Vec<Vec<FileEntry>> {
    let mut out = Vec::new();
    let mut cur: Vec<FileEntry> = Vec::new();
    let mut rows = 0;
    for f in files {
        if !cur.is_empty() && rows + f.rows > target {
            out.push(std::mem::take(&mut cur));
            rows = 0;
        }
        rows += f.rows;
        cur.push(f);
    }
    out.push(cur);
    out.retain(|b| b.len() >= 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(id: i64, rows: i64) -> FileEntry {
        FileEntry {
            id,
            tenant: "t".into(),
            date: "2026-01-01".into(),
            path: String::new(),
            rows,
            bytes: 0,
            sha256: String::new(),
            min_time: 0,
            max_time: 0,
            min_seq: 0,
            max_seq: 0,
        }
    }

    #[test]
    fn bins_fill_up_to_the_target_and_skip_singletons() {
        let got = bins(vec![f(1, 40), f(2, 40), f(3, 40), f(4, 90), f(5, 5)], 100);
        let ids: Vec<Vec<i64>> = got.iter().map(|b| b.iter().map(|x| x.id).collect()).collect();
        assert_eq!(ids, vec![vec![1, 2], vec![4, 5]]);
        assert!(bins(vec![f(1, 10)], 100).is_empty());
    }
}
