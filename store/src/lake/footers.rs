//! Parsed Parquet footers, page indexes included, kept per lake file.
//!
//! A point read (a timeline page, a search's hits) wants a few rows of a file. Without the file's
//! offset index the reader decompresses every page of every column chunk it opens up to the rows
//! asked; with it, it skips whole pages it does not need. Parsing a footer of 67 columns and its page
//! index costs far more than the few pages read, so each is parsed once: lake files are immutable and
//! a path is never reused (ids only grow), so an entry never goes stale. The cache is bounded by the
//! parsed metadata's own size, oldest entry out first.

use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// How many bytes of parsed footers the cache keeps.
const CAPACITY_BYTES: usize = 64 * 1024 * 1024;

/// Parsed footers by lake path.
#[derive(Debug, Default)]
pub(super) struct Footers(Mutex<Inner>);

#[derive(Debug, Default)]
struct Inner {
    by_path: HashMap<String, (ArrowReaderMetadata, usize)>,
    order: VecDeque<String>,
    bytes: usize,
}

impl Footers {
    /// The footer of `path`, parsed by `load` the first time it is asked for.
    pub(super) fn get_or_load<E>(
        &self,
        path: &str,
        load: impl FnOnce() -> Result<ArrowReaderMetadata, E>,
    ) -> Result<ArrowReaderMetadata, E> {
        if let Some(found) = self.get(path) {
            return Ok(found);
        }
        let meta = load()?;
        self.insert(path, meta.clone());
        Ok(meta)
    }

    /// The footer of `path`, if parsed before.
    pub(super) fn get(&self, path: &str) -> Option<ArrowReaderMetadata> {
        self.lock().by_path.get(path).map(|(m, _)| m.clone())
    }

    /// Keeps a footer parsed elsewhere (a remote read parses it asynchronously).
    pub(super) fn insert(&self, path: &str, meta: ArrowReaderMetadata) {
        let size = meta.metadata().memory_size();
        let mut inner = self.lock();
        if inner.by_path.insert(path.to_owned(), (meta, size)).is_some() {
            return;
        }
        inner.order.push_back(path.to_owned());
        inner.bytes += size;
        while inner.bytes > CAPACITY_BYTES && inner.order.len() > 1 {
            let Some(oldest) = inner.order.pop_front() else { break };
            if let Some((_, freed)) = inner.by_path.remove(&oldest) {
                inner.bytes -= freed;
            }
        }
    }

    /// Bytes of parsed footers held.
    pub(super) fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Forgets a file (deleted by compaction, retention or quarantine).
    pub(super) fn forget(&self, path: &str) {
        let mut inner = self.lock();
        if let Some((_, freed)) = inner.by_path.remove(path) {
            inner.bytes -= freed;
            inner.order.retain(|p| p != path);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ArrowReaderOptions;
    use std::sync::Arc;

    fn footer(rows: i64) -> ArrowReaderMetadata {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int64Array::from_iter_values(0..rows))])
                .expect("batch");
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, schema, None).expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
        let opts = ArrowReaderOptions::new()
            .with_offset_index_policy(parquet::file::metadata::PageIndexPolicy::Required);
        ArrowReaderMetadata::load(&bytes::Bytes::from(out), opts).expect("footer")
    }

    #[test]
    fn a_footer_is_parsed_once_and_forgotten_when_its_file_goes() {
        let cache = Footers::default();
        let mut loads = 0;
        for _ in 0..3 {
            let m = cache
                .get_or_load("a.parquet", || -> Result<_, ()> {
                    loads += 1;
                    Ok(footer(10))
                })
                .expect("loaded");
            assert_eq!(m.metadata().file_metadata().num_rows(), 10);
        }
        assert_eq!(loads, 1, "the second and third reads used the parsed footer");
        assert!(m_has_offset_index(&cache.get("a.parquet").expect("kept")));
        cache.forget("a.parquet");
        assert!(cache.get("a.parquet").is_none());
        assert_eq!(cache.lock().bytes, 0);
    }

    #[test]
    fn the_cache_stays_within_its_bytes() {
        let cache = Footers::default();
        let one = footer(1000);
        let size = one.metadata().memory_size();
        let fits = CAPACITY_BYTES / size;
        for i in 0..fits + 10 {
            cache.insert(&format!("{i}.parquet"), one.clone());
        }
        assert!(cache.lock().bytes <= CAPACITY_BYTES);
        assert!(cache.get("0.parquet").is_none(), "the oldest went first");
        assert!(cache.get(&format!("{}.parquet", fits + 9)).is_some(), "the newest stayed");
    }

    fn m_has_offset_index(m: &ArrowReaderMetadata) -> bool {
        m.metadata().offset_index().is_some_and(|o| !o.is_empty())
    }
}
