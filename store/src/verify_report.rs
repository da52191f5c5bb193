//! What `cordon verify` finds: the lake's files against the catalog, the index and the Delta log.

use crate::{Store, StoreError, delta};
use std::collections::HashSet;
use std::sync::Arc;

impl Store {
    /// Checks every lake file's checksum, looks for orphans, compares the Delta log and the index with
    /// the catalog, checks the index's segment checksums and the metadata database's integrity.
    pub async fn verify(&self) -> Result<VerifyReport, StoreError> {
        let _read = self.swap.read().await;
        let files = self.catalog.files_after(0).await?;
        let mut report = VerifyReport {
            files: files.len(),
            rows: files.iter().map(|f| f.rows).sum(),
            indexed_docs: self.index.num_docs(),
            ..VerifyReport::default()
        };
        {
            let delta = self.delta.lock().unwrap_or_else(|e| e.into_inner());
            report.delta_version = delta.version();
            report.delta_files = delta.file_count();
            let logged: HashSet<&str> = delta.paths().collect();
            let catalog: HashSet<&str> = files.iter().map(|f| delta::table_path(&f.path)).collect();
            report.delta_mismatch = catalog.difference(&logged).map(|p| format!("+{p}")).collect();
            report.delta_mismatch.extend(logged.difference(&catalog).map(|p| format!("-{p}")));
            report.delta_mismatch.sort();
        }
        report.catalog_problems = self.catalog.integrity_problems().await?;
        report.warnings = self.catalog.integrity_warnings().await?;
        report.damaged_files = self.catalog.damaged_files().await?;
        let index = Arc::clone(&self.index);
        report.index_corrupt = self.cpu.run(move || index.corrupt_files()).await??;
        report.orphans_removed_at_open =
            self.removed_at_open.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // As at start: within the orphan grace, a file may be another process's commit in flight,
        // or retired by another and still read.
        report.orphans = self.find_orphans().await?;
        let lake = self.lake.clone();
        report.bad_files = self
            .cpu
            .run(move || files.iter().filter(|f| lake.verify(f).is_err()).map(|f| f.path.clone()).collect())
            .await?;
        Ok(report)
    }
}

/// What `verify` found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    /// Files checked.
    pub files: usize,
    /// Rows in the catalog.
    pub rows: i64,
    /// Files whose checksum does not match, or that are missing.
    pub bad_files: Vec<String>,
    /// Files in the lake the catalog does not know, now.
    pub orphans: Vec<String>,
    /// Files the catalog did not know that start-up recovery removed when this store was opened
    /// (leftovers of interrupted commits or maintenance).
    pub orphans_removed_at_open: Vec<String>,
    /// Documents in the index.
    pub indexed_docs: u64,
    /// The Delta log's latest version.
    pub delta_version: i64,
    /// Files in the Delta log's latest snapshot.
    pub delta_files: usize,
    /// Files the Delta log's snapshot and the catalog disagree on (`+` only in the catalog, `-` only
    /// in the log).
    pub delta_mismatch: Vec<String>,
    /// Index segment files whose checksum does not match their content.
    pub index_corrupt: Vec<String>,
    /// What the metadata database's own consistency check found.
    pub catalog_problems: Vec<String>,
    /// Files quarantined because their bytes no longer matched their checksum ([`crate::scrub`]):
    /// their rows are lost, so this stays a problem until the store is restored from a backup.
    pub damaged_files: Vec<crate::catalog::DamagedFile>,
    /// What would let damage go unseen (not a disagreement, so not a problem): PostgreSQL without
    /// data checksums.
    pub warnings: Vec<String>,
}

impl VerifyReport {
    /// What disagrees: corrupt or missing files, orphans, and an index that does not hold exactly
    /// the catalog's rows. Empty when the store is whole.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.bad_files.is_empty() {
            out.push(format!("{} corrupt or missing files", self.bad_files.len()));
        }
        if !self.orphans.is_empty() {
            out.push(format!("{} orphan files", self.orphans.len()));
        }
        if !self.delta_mismatch.is_empty() {
            out.push(format!(
                "the Delta log and the catalog disagree on {} files",
                self.delta_mismatch.len()
            ));
        }
        if !self.index_corrupt.is_empty() {
            out.push(format!(
                "{} corrupt index files (`cordon reindex` rebuilds the index)",
                self.index_corrupt.len()
            ));
        }
        if !self.catalog_problems.is_empty() {
            out.push(format!("the metadata database is damaged: {}", self.catalog_problems.join("; ")));
        }
        if !self.damaged_files.is_empty() {
            let rows: i64 = self.damaged_files.iter().map(|f| f.rows).sum();
            out.push(format!(
                "{} lake files were quarantined as damaged: {rows} rows lost (their bytes are under events/_damaged/)",
                self.damaged_files.len()
            ));
        }
        if i64::try_from(self.indexed_docs).ok() != Some(self.rows) {
            out.push(format!(
                "the index holds {} documents for {} rows (`cordon reindex` rebuilds it)",
                self.indexed_docs, self.rows
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole() -> VerifyReport {
        VerifyReport {
            files: 2,
            rows: 10,
            bad_files: Vec::new(),
            orphans: Vec::new(),
            orphans_removed_at_open: vec!["left-over".into()],
            indexed_docs: 10,
            delta_version: 3,
            delta_files: 2,
            ..VerifyReport::default()
        }
    }

    #[test]
    fn every_kind_of_disagreement_is_a_problem() {
        assert!(whole().problems().is_empty(), "orphans removed at open were repaired, not a problem");
        let short_index = VerifyReport { indexed_docs: 9, ..whole() };
        assert!(short_index.problems()[0].contains("9 documents for 10 rows"));
        let bad = VerifyReport { bad_files: vec!["f".into()], orphans: vec!["o".into()], ..whole() };
        assert_eq!(bad.problems().len(), 2);
        let derived = VerifyReport {
            delta_mismatch: vec!["+f".into()],
            index_corrupt: vec!["x.idx".into()],
            catalog_problems: vec!["row 3 missing from index".into()],
            ..whole()
        };
        assert_eq!(derived.problems().len(), 3, "{:?}", derived.problems());
        let lost = crate::catalog::DamagedFile { path: "p".into(), rows: 7, retired_at: 1 };
        let quarantined = VerifyReport { damaged_files: vec![lost], ..whole() };
        assert!(quarantined.problems()[0].contains("7 rows lost"), "{:?}", quarantined.problems());
    }
}
