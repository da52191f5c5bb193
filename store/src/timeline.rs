//! Host timelines.
//!
//! Where the index covers a tenant's files, a page is found there (the host's matches at one end of
//! the time line, as row references, in microseconds) and only those rows' pages are read from the
//! lake ([`RowReader`]). The files the index does not hold yet (the newest commits, until the index
//! commits them) are scanned with DataFusion and merged in. When the index is behind the lake, or
//! names a row the lake does not have, the whole page comes from the scan.
//!
//! A page is ordered by (time, event id). The index orders by time alone, so equal times at the
//! page's edge are settled by reading every match at that time and sorting them by id.

use crate::catalog::FileEntry;
use crate::index::{FullTextIndex, Hit, TimelineScan};
use crate::query::{Scope, TimelineQuery};
use crate::rows::RowReader;
use crate::verified::ExpectedFile;
use crate::{Store, StoreError};
use schemas::Record;
use std::cmp::Ordering;
use std::ops::Bound;
use std::sync::Arc;

impl Store {
    /// A page of a host's timeline.
    pub async fn timeline(&self, tenant: &str, q: TimelineQuery) -> Result<Vec<Record>, StoreError> {
        self.checked_read(tenant, |scope, files| {
            let q = q.clone();
            async move {
                if q.limit == 0 {
                    return Ok(Vec::new());
                }
                if self.index_is_behind() {
                    return self.timeline_scan(scope, q).await;
                }
                let held = self.index.held_files();
                let (indexed, tail): (Vec<FileEntry>, Vec<FileEntry>) =
                    files.iter().cloned().partition(|f| held.contains(f.id));
                let Some(mut rows) = self.timeline_by_refs(&scope.tenant, &q, indexed).await? else {
                    tracing::warn!(host = %q.host, "the index names rows the lake does not have; scanning");
                    return self.timeline_scan(scope, q).await;
                };
                if !tail.is_empty() {
                    let files = tail.iter().map(ExpectedFile::from).collect();
                    rows.extend(self.timeline_scan(Scope { tenant: scope.tenant, files }, q.clone()).await?);
                    rows.sort_by(|a, b| page_order(a, b, q.ascending));
                    rows.truncate(q.limit);
                }
                Ok(rows)
            }
        })
        .await
    }

    /// A page from a DataFusion scan of `scope`'s files.
    async fn timeline_scan(&self, scope: Scope, q: TimelineQuery) -> Result<Vec<Record>, StoreError> {
        self.on_cpu(move |engine| async move { engine.timeline(&scope, &q).await }).await
    }

    /// A page from the index and the pages of its rows, over `files` (all covered by the index);
    /// `None` when a row the index names is not in the lake.
    async fn timeline_by_refs(
        &self,
        tenant: &str,
        q: &TimelineQuery,
        files: Vec<FileEntry>,
    ) -> Result<Option<Vec<Record>>, StoreError> {
        let index = Arc::clone(&self.index);
        let ids: Arc<[i64]> = sorted_ids(&files).into();
        let reader = RowReader::new(self.lake.clone(), Arc::clone(self.engine.verified()), files);
        let (tenant, q) = (tenant.to_owned(), q.clone());
        self.cpu.run(move || page_by_refs(&index, &reader, &tenant, &q, scan_of(&q, ids))).await?
    }
}

fn sorted_ids(files: &[FileEntry]) -> Vec<i64> {
    let mut ids: Vec<i64> = files.iter().map(|f| f.id).collect();
    ids.sort_unstable();
    ids
}

/// The index's part of `q`: host, kinds, time range and the cursor's time (inclusive: the cursor's
/// own time may hold more events, told apart by id).
fn scan_of(q: &TimelineQuery, files: Arc<[i64]>) -> TimelineScan {
    let mut lo = q.from.map_or(Bound::Unbounded, Bound::Included);
    let mut hi = q.to.map_or(Bound::Unbounded, Bound::Excluded);
    if let Some((t, _)) = &q.after {
        if q.ascending {
            lo = Bound::Included(q.from.map_or(*t, |f| f.max(*t)));
        } else if q.to.is_none_or(|to| *t < to) {
            hi = Bound::Included(*t);
        }
    }
    TimelineScan { host: q.host.clone(), kinds: q.kinds.clone(), lo, hi, oldest_first: q.ascending, files }
}

/// Fills a page from the index: the `need + 1` matches at the scan's end of the time line say
/// which time is the page's edge; every match newer than the edge (older, oldest first) is read,
/// with every match at the edge; those pass the cursor and are sorted by (time, id). Short of a
/// page (the cursor dropped some), the scan moves past the edge and goes on.
fn page_by_refs(
    index: &FullTextIndex,
    reader: &RowReader,
    tenant: &str,
    q: &TimelineQuery,
    mut scan: TimelineScan,
) -> Result<Option<Vec<Record>>, StoreError> {
    let mut page: Vec<Record> = Vec::with_capacity(q.limit);
    loop {
        let need = q.limit - page.len();
        let mut hits = index.timeline(tenant, &scan, need + 1)?;
        let edge = (hits.len() > need).then(|| hits[need].time);
        if let Some(edge) = edge {
            hits.retain(|h| h.time != edge);
            hits.extend(index.timeline_at(tenant, &scan, edge)?);
        }
        let Some(mut rows) = read_hits(reader, &hits)? else { return Ok(None) };
        rows.retain(|r| past_cursor(r, q));
        rows.sort_by(|a, b| page_order(a, b, q.ascending));
        rows.truncate(need);
        page.extend(rows);
        match edge {
            Some(edge) if page.len() < q.limit => {
                if q.ascending {
                    scan.lo = Bound::Excluded(edge);
                } else {
                    scan.hi = Bound::Excluded(edge);
                }
            }
            _ => return Ok(Some(page)),
        }
    }
}

/// The rows of `hits`; `None` if any is missing.
fn read_hits(reader: &RowReader, hits: &[Hit]) -> Result<Option<Vec<Record>>, StoreError> {
    let refs: Vec<(i64, usize)> = hits.iter().map(|h| (h.file_id, h.row)).collect();
    Ok(reader.rows(&refs)?.into_iter().collect())
}

fn event_id(r: &Record) -> &str {
    r.get("event_id").and_then(|c| c.as_str()).unwrap_or("")
}

/// Whether `r` comes after the page's cursor.
fn past_cursor(r: &Record, q: &TimelineQuery) -> bool {
    let Some((t, id)) = &q.after else { return true };
    let at = (r.time(), event_id(r));
    if q.ascending { at > (*t, id.as_str()) } else { at < (*t, id.as_str()) }
}

/// A page's order: (time, event id), oldest first or newest first.
fn page_order(a: &Record, b: &Record, ascending: bool) -> Ordering {
    let o = (a.time(), event_id(a)).cmp(&(b.time(), event_id(b)));
    if ascending { o } else { o.reverse() }
}

#[cfg(test)]
mod tests;
