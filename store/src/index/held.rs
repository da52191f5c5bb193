//! Which lake files the index holds: the ids whose documents its last commit holds, written in each
//! commit's payload as id ranges. A set and not a high-water mark, because processes sharing a
//! catalog commit their files out of id order (ADR 0009): a mark moved past another's file not yet
//! committed would leave that file out of the index for good.
//!
//! An index committed before the set was kept carries only its mark (`file_id`): it held every live
//! file up to it, so the store gives it the catalog's live ids up to the mark on open
//! ([`FullTextIndex::adopt`]).

use super::FullTextIndex;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Lake file ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileSet(BTreeSet<i64>);

impl FileSet {
    /// Whether file `id` is in the set.
    pub fn contains(&self, id: i64) -> bool {
        self.0.contains(&id)
    }

    /// The highest id (0 when empty).
    pub fn max(&self) -> i64 {
        self.0.last().copied().unwrap_or(0)
    }

    /// The ids, ascending.
    pub fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        self.0.iter().copied()
    }

    /// Runs of consecutive ids, as [first, last] pairs.
    fn ranges(&self) -> Vec<[i64; 2]> {
        let mut out: Vec<[i64; 2]> = Vec::new();
        for id in self.iter() {
            match out.last_mut() {
                Some(run) if run[1] + 1 == id => run[1] = id,
                _ => out.push([id, id]),
            }
        }
        out
    }

    /// Applies adds (`true`) and deletes in the order they were made.
    fn apply(&mut self, changes: &[(i64, bool)]) {
        for &(id, add) in changes {
            if add {
                self.0.insert(id);
            } else {
                self.0.remove(&id);
            }
        }
    }
}

impl FromIterator<i64> for FileSet {
    fn from_iter<I: IntoIterator<Item = i64>>(ids: I) -> Self {
        Self(ids.into_iter().collect())
    }
}

/// What a commit's payload says the index holds.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Held {
    Files(FileSet),
    /// Every live file up to this id (an index committed before the set was kept).
    UpTo(i64),
}

/// A commit's payload for `files`; `file_id` (the highest) is what an older Cordon reads.
pub(super) fn payload(files: &FileSet) -> String {
    serde_json::json!({ "file_id": files.max(), "files": files.ranges() }).to_string()
}

/// What the last commit's payload says (an index never committed holds nothing).
pub(super) fn read_payload(payload: Option<&str>) -> Held {
    let Some(value) = payload.and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok()) else {
        return Held::Files(FileSet::default());
    };
    match value.get("files").and_then(|f| serde_json::from_value::<Vec<[i64; 2]>>(f.clone()).ok()) {
        Some(ranges) => Held::Files(ranges.into_iter().flat_map(|[lo, hi]| lo..=hi).collect()),
        None => Held::UpTo(value["file_id"].as_i64().unwrap_or(0)),
    }
}

impl FullTextIndex {
    /// The files every search started from now on holds (merges in flight hidden all the same).
    pub fn held_files(&self) -> Arc<FileSet> {
        Arc::clone(&self.held.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The files the index will hold after its next commit: what it holds, with what was added and
    /// deleted since.
    pub fn known_files(&self) -> FileSet {
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let mut known = if p.reset { FileSet::default() } else { (*self.held_files()).clone() };
        known.apply(&p.changes);
        known
    }

    /// The mark of an index committed before the set was kept, until [`FullTextIndex::adopt`].
    pub fn legacy_mark(&self) -> Option<i64> {
        *self.legacy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `live` (the catalog's live ids up to the legacy mark) as what the index holds; its
    /// next commit writes them.
    pub fn adopt(&self, live: FileSet) {
        *self.held.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(live);
        *self.legacy.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// What the next commit holds, and its payload.
    pub(super) fn next_held(&self, reset: bool, changes: &[(i64, bool)]) -> (FileSet, String) {
        let mut next = if reset { FileSet::default() } else { (*self.held_files()).clone() };
        next.apply(changes);
        let payload = payload(&next);
        (next, payload)
    }

    /// After a commit: what searches hold from now on.
    pub(super) fn set_held(&self, files: FileSet) {
        *self.held.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(files);
        *self.legacy.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_keeps_the_set_as_runs_and_an_old_payload_reads_as_its_mark() {
        let set: FileSet = [1, 2, 3, 7, 9, 10].into_iter().collect();
        assert_eq!(set.ranges(), vec![[1, 3], [7, 7], [9, 10]]);
        let p = payload(&set);
        assert_eq!(read_payload(Some(&p)), Held::Files(set));
        assert_eq!(read_payload(Some(r#"{"file_id": 12}"#)), Held::UpTo(12));
        assert_eq!(read_payload(None), Held::Files(FileSet::default()));
        let mut s: FileSet = [4, 5].into_iter().collect();
        // In order: deleted then added again (a merge settled) holds it; added then deleted does not.
        s.apply(&[(5, false), (5, true), (6, true), (6, false)]);
        assert_eq!(s, [4, 5].into_iter().collect());
    }
}
