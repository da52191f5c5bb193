//! A merged file's documents, added while ingest keeps committing.
//!
//! Compaction and tiered merging index a merged file under its new id before the catalog holds it.
//! Ingest's commits go on meanwhile and may commit some of those documents, so every search leaves
//! out the documents of a merge in flight until the swap that retires the merge's inputs reveals
//! them. A merge is noted on disk before its first document is added (`merging.json` in the index
//! directory), so a crash leaves a list of ids whose documents may be incomplete or belong to no
//! file; on open they stay hidden until the store settles them (deleted, and re-added from the lake
//! when the catalog holds the file).

use super::{FullTextIndex, IndexError, ROW_BITS};
use schemas::Record;
use schemas::fields::col;
use std::collections::BTreeSet;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use tantivy::Term;
use tantivy::query::{Occur, Query, RangeQuery};

/// The merges whose documents searches must not see yet.
#[derive(Debug)]
pub(super) struct Merging {
    /// Where the ids are noted.
    path: PathBuf,
    /// Merged files' ids whose documents are hidden: merges in flight and merges to settle.
    hidden: RwLock<BTreeSet<i64>>,
    /// The merges running in this process (the others are left from a failure or a crash).
    active: Mutex<BTreeSet<i64>>,
    /// Bumped when the writer drops what it buffered, so a merge can tell its documents went.
    epoch: AtomicU64,
}

impl Merging {
    /// The merges noted in `dir` (left by a crash), hidden from the start.
    pub(super) fn open(dir: &Path) -> Result<Self, IndexError> {
        let path = dir.join("merging.json");
        let hidden = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(IndexError::Io(e)),
        };
        Ok(Self { path, hidden: RwLock::new(hidden), active: Mutex::default(), epoch: AtomicU64::new(0) })
    }

    fn hidden(&self) -> std::sync::RwLockReadGuard<'_, BTreeSet<i64>> {
        self.hidden.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the hidden set durably (temp file, fsync, rename), or removes the note when empty.
    fn save(&self, ids: &BTreeSet<i64>) -> Result<(), IndexError> {
        use std::io::Write;
        if ids.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(IndexError::Io(e)),
                _ => Ok(()),
            };
        }
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(IndexError::Io)?;
        f.write_all(&serde_json::to_vec(ids).expect("ids serialise")).map_err(IndexError::Io)?;
        f.sync_all().map_err(IndexError::Io)?;
        std::fs::rename(&tmp, &self.path).map_err(IndexError::Io)
    }

    /// MustNot clauses that leave the hidden merges' documents out of a query.
    pub(super) fn exclusions(&self, row_ref: tantivy::schema::Field) -> Vec<(Occur, Box<dyn Query>)> {
        self.hidden().iter().map(|&id| (Occur::MustNot, file_range(row_ref, id))).collect()
    }
}

/// The documents of lake file `id` (their row references).
pub(super) fn file_range(row_ref: tantivy::schema::Field, id: i64) -> Box<dyn Query> {
    let lo = Term::from_field_u64(row_ref, (id as u64) << ROW_BITS);
    let hi = Term::from_field_u64(row_ref, (id as u64 + 1) << ROW_BITS);
    Box::new(RangeQuery::new(Bound::Included(lo), Bound::Excluded(hi)))
}

impl FullTextIndex {
    /// Starts indexing merged file `id` under a new id: noted on disk, then hidden from searches.
    /// Returns the writer's epoch, for [`FullTextIndex::merge_intact`].
    pub fn begin_merge(&self, id: i64) -> Result<u64, IndexError> {
        let m = &self.merging;
        let mut hidden = m.hidden.write().unwrap_or_else(|e| e.into_inner());
        let mut next = hidden.clone();
        next.insert(id);
        m.save(&next)?;
        *hidden = next;
        m.active.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
        Ok(m.epoch.load(Ordering::Acquire))
    }

    /// Whether a document reads lake column `name` (the tenant, the time and every searched field,
    /// as `FullTextIndex::document` builds it): a merge that builds rows a column at a time keeps
    /// only these for [`FullTextIndex::add_merged`].
    pub fn reads_column(name: &str) -> bool {
        let field = schemas::FIELDS.iter().position(|d| d.column == name);
        field.is_some_and(|i| {
            i == col::TENANT || i == col::TIME || schemas::FIELDS[i].search != schemas::Search::None
        })
    }

    /// Adds rows of merged file `id` (hidden; the index holds the file from the commit after
    /// [`FullTextIndex::cover`], at the swap).
    pub fn add_merged(&self, id: i64, first_row: usize, rows: &[Record]) -> Result<(), IndexError> {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        for (row, rec) in rows.iter().enumerate() {
            writer.add_document(self.document(id, first_row + row, rec))?;
        }
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).docs += rows.len() as u64;
        Ok(())
    }

    /// The next commit holds merged file `id` (its documents added with
    /// [`FullTextIndex::add_merged`]).
    pub fn cover(&self, id: i64) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).changes.push((id, true));
    }

    /// Whether the writer still holds every document added since `epoch` (nothing was rolled
    /// back or cleared since).
    pub fn merge_intact(&self, epoch: u64) -> bool {
        self.merging.epoch.load(Ordering::Acquire) == epoch
    }

    /// The writer dropped what it buffered (a rollback or a clear).
    pub(super) fn bump_epoch(&self) {
        self.merging.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Merge `id` stops running in this process; its documents stay hidden until settled or
    /// revealed.
    pub fn leave_merge(&self, id: i64) {
        self.merging.active.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    /// Merge `id` is over: its documents are complete and committed, or deleted and committed.
    /// Searches see them from now on, and the note forgets it (if the note cannot be rewritten,
    /// the next start settles the merge again from the lake, which is harmless).
    pub fn end_merge(&self, id: i64) {
        self.leave_merge(id);
        let m = &self.merging;
        let mut hidden = m.hidden.write().unwrap_or_else(|e| e.into_inner());
        hidden.remove(&id);
        if let Err(e) = m.save(&hidden) {
            tracing::warn!(error = %schemas::error_chain(&e), file = id, "cannot rewrite the merge note");
        }
    }

    /// Merges no process runs whose documents are hidden: left by a crash or a failure.
    pub fn unsettled_merges(&self) -> Vec<i64> {
        let active = self.merging.active.lock().unwrap_or_else(|e| e.into_inner());
        self.merging.hidden().iter().copied().filter(|id| !active.contains(id)).collect()
    }
}
