//! A host's timeline from the index: the matches at one end of the time line, among chosen lake
//! files, as row references. The store reads those rows' pages from the lake
//! ([`crate::Store::timeline`]); a scan of the host's row groups is what this replaces.

use super::newest::{End, Newest};
use super::{FullTextIndex, Hit, IndexError, hit, holds_only, query_error};
use std::ops::Bound;
use std::sync::Arc;
use tantivy::collector::Count;
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::{Searcher, Term};

/// What a timeline page asks the index for.
#[derive(Clone, Debug)]
pub struct TimelineScan {
    /// The host.
    pub host: String,
    /// Only these event kinds (any, when empty).
    pub kinds: Vec<String>,
    /// Lower bound on the event time (microseconds).
    pub lo: Bound<i64>,
    /// Upper bound on the event time.
    pub hi: Bound<i64>,
    /// Oldest first instead of newest first.
    pub oldest_first: bool,
    /// Only rows of these lake files (ids, sorted).
    pub files: Arc<[i64]>,
}

impl FullTextIndex {
    /// The `k` matches of `scan` at its end of the time line, that end first.
    pub fn timeline(&self, tenant: &str, scan: &TimelineScan, k: usize) -> Result<Vec<Hit>, IndexError> {
        let searcher = self.reader.searcher();
        let query = self.timeline_query(&searcher, tenant, scan);
        self.timeline_hits(&searcher, query.as_ref(), scan, k)
    }

    /// Every match of `scan` whose time is exactly `time`.
    pub fn timeline_at(&self, tenant: &str, scan: &TimelineScan, time: i64) -> Result<Vec<Hit>, IndexError> {
        let at = TimelineScan { lo: Bound::Included(time), hi: Bound::Included(time), ..scan.clone() };
        let searcher = self.reader.searcher();
        let query = self.timeline_query(&searcher, tenant, &at);
        let all = searcher.search(query.as_ref(), &Count).map_err(query_error)?;
        self.timeline_hits(&searcher, query.as_ref(), &at, all)
    }

    fn timeline_hits(
        &self,
        searcher: &Searcher,
        query: &dyn Query,
        scan: &TimelineScan,
        k: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let end = if scan.oldest_first { End::Oldest } else { End::Newest };
        let collector =
            Newest { k, columns: self.columns.of(searcher)?, end, files: Some(Arc::clone(&scan.files)) };
        Ok(searcher.search(query, &collector).map_err(query_error)?.into_iter().map(hit).collect())
    }

    /// Tenant, host, kinds and time bounds, all required.
    fn timeline_query(&self, searcher: &Searcher, tenant: &str, scan: &TimelineScan) -> Box<dyn Query> {
        let f = &self.fields;
        let term = |field, value: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(Term::from_field_text(field, value), IndexRecordOption::Basic))
        };
        let mut must: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, term(f.host, &scan.host))];
        let tenant_term = Term::from_field_text(f.tenant, tenant);
        if !holds_only(searcher, &tenant_term) {
            must.push((Occur::Must, term(f.tenant, tenant)));
        }
        if !scan.kinds.is_empty() {
            let any = scan.kinds.iter().map(|k| (Occur::Should, term(f.kind, k))).collect();
            must.push((Occur::Must, Box::new(BooleanQuery::new(any))));
        }
        if scan.lo != Bound::Unbounded || scan.hi != Bound::Unbounded {
            let at = |t: &i64| Term::from_field_i64(f.time, *t);
            must.push((
                Occur::Must,
                Box::new(RangeQuery::new(scan.lo.as_ref().map(at), scan.hi.as_ref().map(at))),
            ));
        }
        Box::new(BooleanQuery::new(must))
    }
}
