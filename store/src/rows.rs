//! Rows by reference: a few rows of a tenant's live lake files, as the index names them (a search's
//! hits, a timeline's page). Each file is checked against the SHA-256 the catalog recorded before
//! any of its bytes are used, as DataFusion's reads are ([`crate::verified`]): once, then again an
//! hour later. Only the pages holding the rows are read ([`Lake::read_rows`]).

use crate::StoreError;
use crate::catalog::FileEntry;
use crate::lake::Lake;
use crate::query::QueryError;
use crate::verified::{ExpectedFile, Verified};
use schemas::Record;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Reads rows of one read's live files.
pub(crate) struct RowReader {
    lake: Lake,
    verified: Arc<Verified>,
    files: HashMap<i64, FileEntry>,
}

impl RowReader {
    /// A reader of `files` (the tenant's live files as the catalog holds them).
    pub(crate) fn new(lake: Lake, verified: Arc<Verified>, files: Vec<FileEntry>) -> Self {
        Self { lake, verified, files: files.into_iter().map(|f| (f.id, f)).collect() }
    }

    /// The rows at `refs` (file id, row within the file), in the order asked: `None` where the file
    /// is not live or does not have the row.
    pub(crate) fn rows(&self, refs: &[(i64, usize)]) -> Result<Vec<Option<Record>>, StoreError> {
        let mut by_file: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for (f, r) in refs {
            by_file.entry(*f).or_default().push(*r);
        }
        let mut found: HashMap<(i64, usize), Record> = HashMap::with_capacity(refs.len());
        for (id, rows) in by_file {
            let Some(entry) = self.files.get(&id) else { continue };
            self.check(entry)?;
            for (row, rec) in rows.iter().zip(self.lake.read_rows(entry, &rows)?) {
                if let Some(rec) = rec {
                    found.insert((id, *row), rec);
                }
            }
        }
        Ok(refs.iter().map(|k| found.remove(k)).collect())
    }

    /// Checks `entry`'s bytes against the catalog unless this process did so within the hour; a
    /// damaged file is refused by name, so the store quarantines it.
    fn check(&self, entry: &FileEntry) -> Result<(), StoreError> {
        let expected = ExpectedFile::from(entry);
        if self.verified.contains(&expected) {
            return Ok(());
        }
        match self.lake.verify(entry) {
            Ok(()) => {
                self.verified.insert(&expected);
                Ok(())
            }
            Err(e) if e.is_damage() => Err(QueryError::Damaged(entry.path.clone()).into()),
            Err(e) => Err(e.into()),
        }
    }
}
