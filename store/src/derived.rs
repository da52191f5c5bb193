//! Derived state: the full-text index and the Delta log follow the catalog, may lag it, and are
//! brought back up to it on open, on [`Store::tick`], and after a failure.

use crate::delta::{self, Operation};
use crate::{Store, StoreError};
use std::collections::HashSet;
use std::sync::Arc;

/// How often a store on a shared catalog reads the catalog's live files to follow the others' commits
/// (a listing of every live file: ticks come every 250 ms).
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Store {
    /// Start-up recovery: orphan files removed, retired files purged from the index, the index and
    /// the Delta log caught up with the catalog, interrupted merges settled.
    pub(crate) async fn recover(&self) -> Result<(), StoreError> {
        let _guard = self.commit_lock.lock().await;
        // Before the index commits anything: an index from before the file set gets its set.
        self.adopt_legacy_index().await?;
        let removed = self.remove_orphans().await?;
        if !removed.is_empty() {
            tracing::warn!(
                files = removed.len(),
                "removed lake files not in the catalog (interrupted commits)"
            );
        }
        *self.removed_at_open.lock().unwrap_or_else(|e| e.into_inner()) = removed;
        self.purge_retired().await?;
        self.catch_up_index().await?;
        self.settle_merges().await?;
        self.sync_delta(Operation::Write).await?;
        Ok(())
    }

    /// Removes data files the catalog does not know ([`Store::find_orphans`]). Caller holds the
    /// commit lock, unless the orphan grace is set (then the grace keeps a commit in flight).
    pub(crate) async fn remove_orphans(&self) -> Result<Vec<String>, StoreError> {
        let orphans = self.find_orphans().await?;
        self.lake.remove_all(&orphans)?;
        Ok(orphans)
    }

    /// Data files the catalog does not know: neither live nor retired within the orphan grace, and
    /// last written before it ([`crate::StoreConfig::orphan_grace`]). Where processes share the
    /// catalog, a file written within the grace may be another's commit in flight, and one retired
    /// within it may still be read by another's query or index (which lets go of it within a
    /// second): a merge or retention there leaves its inputs to this sweep.
    pub(crate) async fn find_orphans(&self) -> Result<Vec<String>, StoreError> {
        // Listed before the catalog is read: a file another process commits in between is known.
        let listed = self.lake.files_written_before(self.orphan_cutoff())?;
        let mut known: HashSet<String> =
            self.catalog.files_after(0).await?.into_iter().map(|f| f.path).collect();
        if !self.orphan_grace.is_zero() {
            let since = schemas::time::now_micros() - self.orphan_grace.as_micros() as i64;
            known.extend(self.catalog.paths_retired_since(since).await?);
        }
        Ok(listed.into_iter().filter(|p| !known.contains(p)).collect())
    }

    /// Lake files last written after this may be another process's commit in flight, not orphans
    /// (`None`: every file is old enough).
    pub(crate) fn orphan_cutoff(&self) -> Option<std::time::SystemTime> {
        (!self.orphan_grace.is_zero())
            .then(|| std::time::SystemTime::now().checked_sub(self.orphan_grace))
            .flatten()
    }

    /// Deletes the index documents of retired files the index may still hold. Caller holds the
    /// commit lock.
    async fn purge_retired(&self) -> Result<(), StoreError> {
        let ids = self.catalog.retired_unpurged().await?;
        if ids.is_empty() {
            return Ok(());
        }
        let (index, del) = (Arc::clone(&self.index), ids.clone());
        self.cpu.run(move || index.delete_files(&del).and_then(|()| index.commit())).await??;
        self.catalog.mark_purged(&ids).await?;
        Ok(())
    }

    /// Brings the Delta log up to the catalog in one commit. Caller holds the commit lock. When
    /// another process sharing the catalog committed the version first, the log is read again and
    /// the catalog after it (so this commit never takes back a newer one's files), and the commit
    /// is made again: optimistic concurrency, as Delta writers do.
    pub(crate) async fn sync_delta(&self, op: Operation) -> Result<delta::SyncOutcome, StoreError> {
        const ATTEMPTS: usize = 5;
        let mut attempt = 1;
        loop {
            let live = self.catalog.files_after(0).await?;
            let checkpoint = self.catalog.max_checkpoint().await?;
            let mut log = self.delta.lock().unwrap_or_else(|e| e.into_inner());
            match log.sync(&live, checkpoint, op, schemas::time::now_micros() / 1000) {
                Err(delta::DeltaError::Conflict(version)) if attempt < ATTEMPTS => {
                    tracing::info!(version, "another writer committed to the Delta log; reading it again");
                    log.reload()?;
                    attempt += 1;
                }
                done => {
                    let out = done?;
                    *self.last_delta_sync.lock().unwrap_or_else(|e| e.into_inner()) =
                        std::time::Instant::now();
                    return Ok(out);
                }
            }
        }
    }

    /// Periodic work: commits buffered index documents when the policy says so (on a shared
    /// catalog, first takes in what other processes committed and retired) and brings the Delta log
    /// up to date every `delta_interval`. The server calls it about once a second.
    pub async fn tick(&self) -> Result<(), StoreError> {
        let _guard = self.commit_lock.lock().await;
        if self.index_is_behind() {
            self.reset_index_writer().await;
        } else if let Err(e) = self.follow_and_commit().await {
            tracing::error!(error = %schemas::error_chain(&e), "index commit failed; catching up from the lake");
            self.reset_index_writer().await;
        }
        let due =
            self.last_delta_sync.lock().unwrap_or_else(|e| e.into_inner()).elapsed() >= self.delta_interval;
        if due {
            self.sync_delta(Operation::Write).await?;
        }
        Ok(())
    }

    /// On a shared catalog ([`crate::StoreConfig::shared_catalog`]): the index takes in the files
    /// other processes committed and lets go of those they retired, now. [`Store::tick`] does it
    /// about once a second.
    pub async fn follow_catalog(&self) -> Result<(), StoreError> {
        let _guard = self.commit_lock.lock().await;
        self.follow_catalog_locked().await
    }

    /// A tick's index work: the shared catalog followed when due, then buffered documents
    /// committed when the policy says so.
    async fn follow_and_commit(&self) -> Result<(), StoreError> {
        if self.follow_due() {
            self.follow_catalog_locked().await?;
        }
        let (index, policy) = (Arc::clone(&self.index), self.index_commit);
        self.cpu.run(move || index.commit_if_due(&policy, false)).await??;
        Ok(())
    }

    async fn follow_catalog_locked(&self) -> Result<(), StoreError> {
        *self.last_follow.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
        self.catch_up_index().await
    }

    /// Whether a tick follows the shared catalog: at most once a [`FOLLOW_EVERY`].
    fn follow_due(&self) -> bool {
        let last = *self.last_follow.lock().unwrap_or_else(|e| e.into_inner());
        self.shared_catalog && last.is_none_or(|t| t.elapsed() >= FOLLOW_EVERY)
    }

    /// Commits the index and the Delta log now (shutdown, tests, `--exit-after-replay`).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let _guard = self.commit_lock.lock().await;
        if self.index_is_behind() {
            self.reset_index_writer().await;
        } else {
            let index = Arc::clone(&self.index);
            if let Err(e) = self.cpu.run(move || index.commit()).await? {
                self.reset_index_writer().await;
                return Err(e.into());
            }
        }
        self.sync_delta(Operation::Write).await?;
        Ok(())
    }

    /// Whether the index failed a write and has not caught up with the lake since.
    pub fn index_is_behind(&self) -> bool {
        self.index_behind.load(std::sync::atomic::Ordering::Acquire)
    }

    /// After a failed index write: drops everything the writer buffered (other commits' documents
    /// too) and re-adds every live file the last commit does not hold from the lake; then retired
    /// files' documents are purged
    /// and interrupted merges settled, as on open. Caller holds the commit lock. If that
    /// fails as well (the disk is still full), the index is marked behind: commits stop adding to it
    /// and every [`Store::tick`] tries again, so it catches up within a tick of space returning.
    pub(crate) async fn reset_index_writer(&self) {
        use std::sync::atomic::Ordering;
        if let Err(e) = self.index.rollback() {
            tracing::error!(error = %schemas::error_chain(&e), "index rollback failed");
        }
        let caught_up = async {
            self.catch_up_index().await?;
            self.purge_retired().await?;
            self.settle_merges().await
        };
        match caught_up.await {
            Ok(()) => {
                if self.index_behind.swap(false, Ordering::AcqRel) {
                    tracing::info!("the index has caught up with the lake");
                }
            }
            Err(e) => {
                if !self.index_behind.swap(true, Ordering::AcqRel) {
                    tracing::error!(error = %schemas::error_chain(&e), "index catch-up failed; retrying every tick");
                }
            }
        }
    }

    /// Brings the index up to the catalog: the live files it does not hold added from the lake, the
    /// files it holds that are no longer live (retired here or by another process) deleted; a no-op
    /// when it is current. Caller holds the commit lock.
    pub async fn catch_up_index(&self) -> Result<(), StoreError> {
        self.adopt_legacy_index().await?;
        let live = self.catalog.files_after(0).await?;
        let known = self.index.known_files();
        let max_known = self.catalog.next_file_id().await? - 1;
        if known.max() > max_known {
            tracing::warn!(held = known.max(), max_known, "index is ahead of the catalog; rebuilding it");
            return self.index_files(live, true).await;
        }
        let live_ids: HashSet<i64> = live.iter().map(|f| f.id).collect();
        let gone: Vec<i64> = known.iter().filter(|id| !live_ids.contains(id)).collect();
        let missing: Vec<_> = live.into_iter().filter(|f| !known.contains(f.id)).collect();
        if gone.is_empty() && missing.is_empty() {
            return Ok(());
        }
        tracing::info!(add = missing.len(), delete = gone.len(), "catching the index up with the catalog");
        let index = Arc::clone(&self.index);
        self.cpu.run(move || index.delete_files(&gone)).await??;
        self.index_files(missing, false).await
    }

    /// An index committed before it kept the set of files it holds held every live file up to its
    /// mark: it takes those as its set ([`crate::index::FileSet`]).
    async fn adopt_legacy_index(&self) -> Result<(), StoreError> {
        if let Some(mark) = self.index.legacy_mark() {
            let live = self.catalog.files_after(0).await?;
            self.index.adopt(live.iter().map(|f| f.id).filter(|&id| id <= mark).collect());
        }
        Ok(())
    }

    /// Rebuilds the index from scratch from the lake.
    pub async fn reindex(&self) -> Result<(), StoreError> {
        let files = self.catalog.files_after(0).await?;
        self.index_files(files, true).await
    }

    /// Adds `files` from the lake to the index (cleared first if `clear`) and commits; files found
    /// damaged on the way are skipped and quarantined ([`crate::scrub`]).
    pub(crate) async fn index_files(
        &self,
        files: Vec<crate::catalog::FileEntry>,
        clear: bool,
    ) -> Result<(), StoreError> {
        let (lake, index) = (self.lake.clone(), Arc::clone(&self.index));
        let damaged = self
            .cpu
            .run(move || -> Result<_, StoreError> {
                if clear {
                    index.clear()?;
                }
                let mut damaged = Vec::new();
                for f in files {
                    match lake.read_all(&f) {
                        Ok(rows) => index.add_file(f.id, 0, &rows)?,
                        Err(e) if e.is_damage() => damaged.push((f, e.to_string())),
                        Err(e) => return Err(e.into()),
                    }
                }
                index.commit()?;
                Ok(damaged)
            })
            .await??;
        if !damaged.is_empty() {
            self.quarantine(damaged).await?;
        }
        Ok(())
    }
}
