//! Lake maintenance: compaction (Delta's OPTIMIZE with Z-order on host and time) and retention
//! (Delta's VACUUM after deleting expired partitions).
//!
//! Both follow the ingest commit protocol's shape, with the catalog swap as the commit point:
//!
//! 1. compaction only: the new file is encoded to a temporary name, invisible to readers, and its
//!    rows go into the index writer under a new file id whose documents searches leave out, while
//!    ingest keeps committing ([`crate::merge`]);
//! 2. with readers held off (the swap lock), the file is renamed into place, the catalog retires the
//!    old files and adds the new one in one transaction, the index deletes the old files' documents and
//!    commits, the new file's documents are revealed, and the old files are unlinked;
//! 3. the catalog notes that the index has purged the retired files, and the Delta log gets one
//!    commit (`OPTIMIZE` with `dataChange: false`, or `DELETE`).
//!
//! A crash anywhere leaves either the old files or the new one in the catalog; on start, files the
//! catalog does not hold are removed, retired files' documents are deleted from the index, the index
//! catches up, an interrupted merge is settled, and the Delta log is brought up to the catalog.

use crate::catalog::FileEntry;
use crate::delta::Operation;
use crate::lake::{LakeError, Order};
use crate::{MAX_FILE_ROWS, Store, StoreError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Files of one size tier a partition gathers before [`Store::merge_small`] merges them.
pub const MERGE_FAN_IN: usize = 32;
/// How often the maintainer of a shared catalog sweeps the lake for orphans.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

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
    /// Whether this store does maintenance now: always on a catalog of its own; on a shared one
    /// ([`crate::StoreConfig::shared_catalog`]), while it holds the catalog's `maintenance` lease,
    /// taken or renewed here (before each merge, so a holder that died is replaced within the
    /// lease's length). Two maintainers would be safe (the later swap of the same inputs is refused)
    /// but would do the work twice.
    pub async fn maintains(&self) -> Result<bool, StoreError> {
        if !self.shared_catalog {
            return Ok(true);
        }
        let ttl = i64::try_from(self.maintenance_lease.as_micros()).unwrap_or(i64::MAX);
        let now = schemas::time::now_micros();
        Ok(self.catalog.hold_lease("maintenance", &self.holder, now, ttl).await?)
    }

    /// Merges each partition's small files into Z-ordered files of up to `target_rows`.
    /// Files ingest's analysers have not read yet are left for a later run.
    ///
    /// Ingest keeps running: each bin is read and encoded without locks (lake files are immutable,
    /// and only maintenance, one run at a time, retires them); ingest waits only while a bin's rows
    /// are indexed and the files swap.
    pub async fn compact(&self, opts: &CompactOptions) -> Result<CompactReport, StoreError> {
        let _maintenance = self.maintenance.lock().await;
        if !self.maintains().await? {
            return Ok(CompactReport::default());
        }
        let files = self.catalog.files_after(0).await?;
        let unanalysed = self.catalog.unanalysed_file_ids().await?;
        let mut parts: BTreeMap<(String, String), Vec<FileEntry>> = BTreeMap::new();
        for f in files.into_iter().filter(|f| f.rows < opts.small_file_rows && !unanalysed.contains(&f.id)) {
            parts.entry((f.tenant.clone(), f.date.clone())).or_default().push(f);
        }
        let mut report = CompactReport::default();
        for ((tenant, date), small) in parts {
            let mut touched = false;
            for bin in bins(small, opts.target_rows) {
                if !self.maintains().await? {
                    return Ok(report);
                }
                self.merge_bin(&tenant, &date, bin, Order::ZOrder, &mut report).await?;
                touched = true;
            }
            report.partitions += usize::from(touched);
        }
        Ok(report)
    }

    /// Size-tiered merging of ingest's small files between scheduled compactions. A file's tier is
    /// `floor(log_fan_in(rows))`; in each partition, every [`MERGE_FAN_IN`] files of one tier, oldest
    /// first, are merged into one of the next tier up, sorted on (host, time) as ingest's files are
    /// (so a merge streams its inputs and holds about one batch of each), indexed as compaction does.
    /// A partition so holds fewer than `MERGE_FAN_IN` files per tier, and a row is rewritten at
    /// most once per tier: ingest commits several files a second at a low rate, and each file costs
    /// every query a footer to parse, statistics to plan with and a file to open. Does nothing while
    /// a compaction or retention runs (compaction merges the same files).
    pub async fn merge_small(&self) -> Result<CompactReport, StoreError> {
        let mut report = CompactReport::default();
        let Ok(_maintenance) = self.maintenance.try_lock() else { return Ok(report) };
        if !self.maintains().await? {
            return Ok(report);
        }
        let opts = CompactOptions::default();
        // The floor assumes files commit in id order, which holds for one committer only: on a
        // shared catalog another's file can commit below it.
        let floor = if self.shared_catalog { 0 } else { self.merge_floor.load(Ordering::Relaxed) };
        let files = self.catalog.files_after(floor).await?;
        let newest = files.last().map_or(floor, |f| f.id);
        let small: Vec<FileEntry> = files.into_iter().filter(|f| f.rows < opts.small_file_rows).collect();
        self.merge_floor.store(small.first().map_or(newest, |f| f.id - 1), Ordering::Relaxed);
        // Files ingest's analysers have not read yet wait: a merge's output is not read again.
        let unanalysed = self.catalog.unanalysed_file_ids().await?;
        let small: Vec<FileEntry> = small.into_iter().filter(|f| !unanalysed.contains(&f.id)).collect();
        for ((tenant, date), bins) in tiered_bins(small, MERGE_FAN_IN, opts.target_rows) {
            for bin in bins {
                if !self.maintains().await? {
                    return Ok(report);
                }
                self.merge_bin(&tenant, &date, bin, Order::HostTime, &mut report).await?;
            }
            report.partitions += 1;
        }
        if self.shared_catalog {
            self.sweep_if_due().await?;
        }
        Ok(report)
    }

    /// On a shared catalog the maintainer removes orphans, retired files past the grace among them
    /// ([`Store::find_orphans`]), at most once a minute.
    async fn sweep_if_due(&self) -> Result<(), StoreError> {
        {
            let mut last = self.last_sweep.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < SWEEP_EVERY) {
                return Ok(());
            }
            *last = Some(std::time::Instant::now());
        }
        let removed = self.remove_orphans().await?;
        if !removed.is_empty() {
            tracing::info!(files = removed.len(), "orphans and files retired past the grace removed");
        }
        Ok(())
    }

    /// Deletes partitions older than the retention period and removes files the catalog does not
    /// hold.
    pub async fn vacuum(&self, opts: &VacuumOptions) -> Result<VacuumReport, StoreError> {
        let _maintenance = self.maintenance.lock().await;
        if !self.maintains().await? {
            return Ok(VacuumReport::default());
        }
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
                self.drop_retired(&expired, swap, None).await?;
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
    /// index is clean. `merged`: the file that replaced them, whose documents the same index commit
    /// completes and searches see from then on. If the index commit fails, the writer is reset from
    /// the lake ([`Store::reset_index_writer`]), which purges and settles both.
    pub(crate) async fn drop_retired(
        &self,
        files: &[FileEntry],
        swap: tokio::sync::RwLockWriteGuard<'_, ()>,
        merged: Option<i64>,
    ) -> Result<(), StoreError> {
        let ids: Vec<i64> = files.iter().map(|f| f.id).collect();
        let (index, del) = (Arc::clone(&self.index), ids.clone());
        let committed = self.cpu.run(move || index.delete_files(&del).and_then(|()| index.commit())).await?;
        if committed.is_ok() {
            merged.into_iter().for_each(|id| self.index.end_merge(id));
        } else {
            merged.into_iter().for_each(|id| self.index.leave_merge(id));
        }
        // Where processes share the catalog, others may still read them: the orphan sweep removes
        // them once the grace is past (`Store::find_orphans`).
        let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        let removed = if self.orphan_grace.is_zero() { self.lake.remove_all(&paths) } else { Ok(()) };
        drop(swap);
        match committed {
            Err(e) => {
                tracing::error!(error = %schemas::error_chain(&e), "index commit after retiring files failed; catching up from the lake");
                self.reset_index_writer().await;
            }
            Ok(()) => self.catalog.mark_purged(&ids).await?,
        }
        Ok(removed?)
    }
}

/// Groups small files by partition and size tier, cuts each tier (oldest first) into groups of
/// `fan_in` files, leaving a tier's last group that is not full to wait, and splits each group into
/// bins of at most `target` rows ([`bins`]).
fn tiered_bins(
    files: Vec<FileEntry>,
    fan_in: usize,
    target: i64,
) -> BTreeMap<(String, String), Vec<Vec<FileEntry>>> {
    let mut tiers: BTreeMap<(String, String, u32), Vec<FileEntry>> = BTreeMap::new();
    for f in files {
        let tier = u64::try_from(f.rows).unwrap_or(0).max(1).ilog(fan_in as u64);
        tiers.entry((f.tenant.clone(), f.date.clone(), tier)).or_default().push(f);
    }
    let mut out: BTreeMap<(String, String), Vec<Vec<FileEntry>>> = BTreeMap::new();
    for ((tenant, date, _), mut tier) in tiers {
        tier.sort_by_key(|f| f.id);
        let full = tier.len() / fan_in * fan_in;
        let cut: Vec<Vec<FileEntry>> =
            tier[..full].chunks(fan_in).flat_map(|c| bins(c.to_vec(), target)).collect();
        if !cut.is_empty() {
            out.entry((tenant, date)).or_default().extend(cut);
        }
    }
    out
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

    #[test]
    fn tiers_merge_only_when_full_oldest_first_per_partition() {
        let mut files: Vec<FileEntry> = (1..=9).map(|i| f(i, 2)).collect(); // tier 0 (1-3 rows)
        files.extend((10..=13).map(|i| f(i, 5))); // tier 1 (4-15 rows): 4, one full group
        files.extend([f(14, 20), f(15, 20)]); // tier 2: not full
        let mut other = f(16, 2);
        other.date = "2026-01-02".into(); // another partition's lone file waits
        files.push(other);
        let got = tiered_bins(files, 4, 1000);
        let ids: Vec<(String, Vec<Vec<i64>>)> = got
            .into_iter()
            .map(|((_, d), b)| (d, b.iter().map(|x| x.iter().map(|e| e.id).collect()).collect()))
            .collect();
        let day1 = vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8], vec![10, 11, 12, 13]];
        assert_eq!(ids, vec![("2026-01-01".to_owned(), day1)]);
        // A full group larger than the target is split, as compaction's bins are.
        let big: Vec<FileEntry> = (1..=4).map(|i| f(i, 40)).collect();
        let split: Vec<Vec<i64>> = tiered_bins(big, 4, 80)
            .into_values()
            .flatten()
            .map(|b| b.iter().map(|e| e.id).collect())
            .collect();
        assert_eq!(split, vec![vec![1, 2], vec![3, 4]]);
    }

    /// Ingest's small commits merge by tier: every row is kept once, in the lake, the index and the
    /// catalog, and a partition is left with fewer than `MERGE_FAN_IN` files per tier.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn merging_small_commits_keeps_every_row_once_and_bounds_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::StoreConfig::new(dir.path().to_path_buf())).await.unwrap();
        let (commits, per) = (MERGE_FAN_IN * 2 + 6, 3);
        for c in 0..commits {
            crate::fixtures::commit_tagged(&store, c, per).await;
        }
        let sent = (commits * per) as i64;
        assert_eq!(store.catalog.files_after(0).await.unwrap().len(), commits);
        let r = store.merge_small().await.unwrap();
        assert_eq!(
            (r.files_removed, r.files_added, r.rows),
            (MERGE_FAN_IN * 2, 2, (MERGE_FAN_IN * 2 * per) as i64)
        );
        let again = store.merge_small().await.unwrap();
        assert_eq!(again.files_removed, 0, "two files of the next tier and six of the first wait");
        let live = store.catalog.files_after(0).await.unwrap();
        assert_eq!(live.len(), 8);
        assert_eq!(live.iter().map(|f| f.rows).sum::<i64>(), sent);
        let sql = "SELECT count(*), count(DISTINCT event_id) FROM events";
        let got = store.sql("default", sql, Default::default()).await.unwrap();
        assert_eq!(got.rows[0], vec![serde_json::json!(sent), serde_json::json!(sent)]);
        store.flush().await.unwrap();
        assert_eq!(store.indexed_docs(), sent as u64);
        let q = crate::index::SearchQuery {
            q: "tag-e-3-1".into(),
            literal: true,
            limit: 10,
            ..Default::default()
        };
        let (hits, total) = store.search("default", q).await.unwrap();
        assert_eq!((hits.len(), total), (1, 1), "a merged row is found once, and read back");
        assert_eq!(hits[0].record.cell(schemas::fields::col::EVENT_ID).as_str(), Some("e-3-1"));
    }
}
