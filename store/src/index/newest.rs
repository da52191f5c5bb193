//! Newest-first hits over each segment's fast fields, opened once per segment and kept while the
//! segment lives: opening a fast-field column reads the segment's column directory, a fixed cost of
//! tens of microseconds that tantivy's own ordering by a fast field paid on every search.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::index::SegmentId;
use tantivy::{DocId, Searcher, SegmentReader};

/// A segment's event times and row references.
#[derive(Clone)]
pub(super) struct SegmentColumns {
    time: Column<i64>,
    refs: Column<u64>,
}

impl SegmentColumns {
    /// The latest event time in the segment (`None` when it holds no time): the column keeps it,
    /// so this reads no document.
    pub(super) fn latest(&self) -> Option<i64> {
        (self.time.values.num_vals() > 0).then(|| self.time.max_value())
    }
}

impl super::FullTextIndex {
    /// The latest event time among the documents the searcher holds, of any tenant, from each
    /// segment's time column alone (no document is visited, where a newest-first search visits
    /// every match to count them). A document deleted by a merge still counts until its segment is
    /// merged away; its event is searchable in the merged file, with the same time.
    pub fn latest_time(&self) -> Option<i64> {
        let searcher = self.reader.searcher();
        self.columns.of(&searcher).ok()?.iter().filter_map(|c| c.latest()).max()
    }
}

/// Each live segment's columns.
#[derive(Default)]
pub(super) struct ColumnCache(Mutex<HashMap<SegmentId, Arc<SegmentColumns>>>);

impl std::fmt::Debug for ColumnCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColumnCache").finish_non_exhaustive()
    }
}

impl ColumnCache {
    /// The columns of each of `searcher`'s segments, in segment order (opened where not cached;
    /// segments merged away are forgotten).
    pub(super) fn of(&self, searcher: &Searcher) -> tantivy::Result<Vec<Arc<SegmentColumns>>> {
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let readers = searcher.segment_readers();
        if cache.len() > readers.len() {
            let live: Vec<SegmentId> = readers.iter().map(SegmentReader::segment_id).collect();
            cache.retain(|id, _| live.contains(id));
        }
        readers
            .iter()
            .map(|r| {
                Ok(Arc::clone(match cache.entry(r.segment_id()) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => v.insert(Arc::new(open(r)?)),
                }))
            })
            .collect()
    }
}

fn open(r: &SegmentReader) -> tantivy::Result<SegmentColumns> {
    Ok(SegmentColumns { time: r.fast_fields().i64("time")?, refs: r.fast_fields().u64("ref")? })
}

/// Which end of the time line a collector keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum End {
    /// The newest matches, newest first.
    Newest,
    /// The oldest matches, oldest first.
    Oldest,
}

impl End {
    /// A time as a key whose largest values are the ones kept (`!t` reverses the order of `i64`s
    /// without overflow).
    fn key(self, time: i64) -> i64 {
        match self {
            End::Newest => time,
            End::Oldest => !time,
        }
    }
}

/// The `k` matches at one end of the time line as (time, row reference), that end first; where
/// `files` is given, only matches in those lake files (sorted ids) count.
pub(super) struct Newest {
    pub(super) k: usize,
    pub(super) columns: Vec<Arc<SegmentColumns>>,
    pub(super) end: End,
    pub(super) files: Option<Arc<[i64]>>,
}

impl Newest {
    /// The newest `k` matches among all the index holds.
    pub(super) fn among_all(k: usize, columns: Vec<Arc<SegmentColumns>>) -> Self {
        Self { k, columns, end: End::Newest, files: None }
    }
}

pub(super) struct NewestInSegment {
    k: usize,
    end: End,
    files: Option<Arc<[i64]>>,
    columns: Arc<SegmentColumns>,
    heap: BinaryHeap<Reverse<(i64, Reverse<DocId>)>>,
}

impl Collector for Newest {
    type Fruit = Vec<(i64, u64)>;
    type Child = NewestInSegment;

    fn for_segment(&self, ord: u32, _: &SegmentReader) -> tantivy::Result<NewestInSegment> {
        let columns =
            self.columns.get(ord as usize).cloned().ok_or_else(|| {
                tantivy::TantivyError::InternalError(format!("no columns for segment {ord}"))
            })?;
        let heap = BinaryHeap::with_capacity(self.k.min(4096) + 1);
        Ok(NewestInSegment { k: self.k, end: self.end, files: self.files.clone(), columns, heap })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<(i64, u64)>>) -> tantivy::Result<Vec<(i64, u64)>> {
        let mut all: Vec<(i64, u64)> = fruits.into_iter().flatten().collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        all.truncate(self.k);
        // Keys back to times (`!` is its own inverse).
        Ok(all.into_iter().map(|(key, r)| (self.end.key(key), r)).collect())
    }
}

impl NewestInSegment {
    /// Whether `doc`'s row lives in one of the files asked for.
    fn in_files(&self, doc: DocId) -> bool {
        let Some(files) = &self.files else { return true };
        self.columns
            .refs
            .first(doc)
            .is_some_and(|r| files.binary_search(&((r >> super::ROW_BITS) as i64)).is_ok())
    }
}

impl SegmentCollector for NewestInSegment {
    type Fruit = Vec<(i64, u64)>;

    fn collect(&mut self, doc: DocId, _score: tantivy::Score) {
        if !self.in_files(doc) {
            return;
        }
        let key = self.end.key(self.columns.time.first(doc).unwrap_or(i64::MIN));
        // Among equal times, the earlier document first (as it was added).
        let entry = Reverse((key, Reverse(doc)));
        if self.heap.len() < self.k {
            self.heap.push(entry);
        } else if self.heap.peek().is_some_and(|least| entry < *least) {
            self.heap.pop();
            self.heap.push(entry);
        }
    }

    /// (key, row reference): [`Newest::merge_fruits`] turns keys back into times.
    fn harvest(self) -> Vec<(i64, u64)> {
        let refs = &self.columns.refs;
        self.heap
            .into_iter()
            .filter_map(|Reverse((key, Reverse(doc)))| Some((key, refs.first(doc)?)))
            .collect()
    }
}
