//! Scrubbing and quarantine: a lake file whose bytes no longer match the SHA-256 the catalog
//! recorded at its commit (bit rot, a write the disk acknowledged and lost, a truncation) or that
//! is gone is taken out of the table, so its rows are never served again:
//!
//! 1. its bytes are set aside under `events/_damaged/` (outside every listing, kept to inspect);
//! 2. the catalog retires it with the reason [`DAMAGED`], so its rows leave every count;
//! 3. its documents leave the index, and the Delta log drops it.
//!
//! Each step can be repeated after a crash: a file already set aside is simply gone the second
//! time. `cordon verify` lists quarantined files for good, because their rows are lost.
//!
//! Damage is found by [`Store::scrub`] (every live file; the server runs it after start and then
//! every `scrub_interval`), by index catch-up, which reads the files it indexes anyway, and by
//! every DataFusion read (timelines, SQL), which checks each file before its first use in a process
//! ([`crate::verified`]); the files a scrub found good count as checked for the server's own reads.

use crate::catalog::{DAMAGED, FileEntry};
use crate::delta::Operation;
use crate::verified::ExpectedFile;
use crate::{Store, StoreError};
use std::collections::HashSet;
use std::sync::Arc;

/// What a scrub found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ScrubReport {
    /// Live files whose bytes were checked.
    pub files_checked: usize,
    /// Bytes read.
    pub bytes_checked: i64,
    /// Files quarantined now, as (path, rows lost, why).
    pub quarantined: Vec<(String, i64, String)>,
}

impl Store {
    /// Checks every live lake file against its checksum, one file at a time on the CPU pool, and
    /// quarantines the damaged ones.
    #[tracing::instrument(skip(self))]
    pub async fn scrub(&self) -> Result<ScrubReport, StoreError> {
        let files = self.catalog.files_after(0).await?;
        let live: Vec<ExpectedFile> = files.iter().map(ExpectedFile::from).collect();
        self.engine.verified().retain_live(&live);
        let mut report = ScrubReport::default();
        let mut damaged = Vec::new();
        for f in files {
            let (lake, entry) = (self.lake.clone(), f.clone());
            let checked = self.cpu.run(move || lake.verify(&entry)).await?;
            report.files_checked += 1;
            report.bytes_checked += f.bytes;
            match checked {
                Ok(()) => self.engine.verified().insert(&ExpectedFile::from(&f)),
                Err(e) if e.is_damage() => damaged.push((f, e.to_string())),
                Err(e) => return Err(e.into()),
            }
        }
        if !damaged.is_empty() {
            let _guard = self.commit_lock.lock().await;
            report.quarantined = self.quarantine(damaged).await?;
        }
        self.scrubs.fetch_add(1, std::sync::atomic::Ordering::Release);
        Ok(report)
    }

    /// Scrubs finished since the store opened.
    pub fn scrubs_finished(&self) -> u64 {
        self.scrubs.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Takes damaged files out of the table (the module doc's three steps); files no longer live
    /// (compacted or expired meanwhile) are left alone. Caller holds the commit lock.
    pub(crate) async fn quarantine(
        &self,
        damaged: Vec<(FileEntry, String)>,
    ) -> Result<Vec<(String, i64, String)>, StoreError> {
        let live: HashSet<i64> = self.catalog.files_after(0).await?.iter().map(|f| f.id).collect();
        let damaged: Vec<(FileEntry, String)> =
            damaged.into_iter().filter(|(f, _)| live.contains(&f.id)).collect();
        if damaged.is_empty() {
            return Ok(Vec::new());
        }
        let swap = self.swap.write().await;
        for (f, why) in &damaged {
            let aside = self.lake.set_aside(&f.path)?;
            tracing::error!(file = %f.path, rows = f.rows, set_aside = ?aside, error = %why,
                "lake file damaged: quarantined, its rows are lost");
        }
        let files: Vec<FileEntry> = damaged.iter().map(|(f, _)| f.clone()).collect();
        self.catalog.swap_files(&files, &[], DAMAGED, schemas::time::now_micros(), &[]).await?;
        let ids: Vec<i64> = files.iter().map(|f| f.id).collect();
        let (index, del) = (Arc::clone(&self.index), ids.clone());
        self.cpu.run(move || index.delete_files(&del).and_then(|()| index.commit())).await??;
        self.catalog.mark_purged(&ids).await?;
        drop(swap);
        self.sync_delta(Operation::Delete).await?;
        Ok(damaged.into_iter().map(|(f, why)| (f.path, f.rows, why)).collect())
    }
}
