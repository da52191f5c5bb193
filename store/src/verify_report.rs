//! What `cordon verify` finds: the lake's files against the catalog, the index and the Delta log.

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
        }
    }

    #[test]
    fn every_kind_of_disagreement_is_a_problem() {
        assert!(whole().problems().is_empty(), "orphans removed at open were repaired, not a problem");
        let short_index = VerifyReport { indexed_docs: 9, ..whole() };
        assert!(short_index.problems()[0].contains("9 documents for 10 rows"));
        let bad = VerifyReport { bad_files: vec!["f".into()], orphans: vec!["o".into()], ..whole() };
        assert_eq!(bad.problems().len(), 2);
    }
}
