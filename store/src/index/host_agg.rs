//! A tantivy collector that aggregates an IOC's matches per host (count, first and last time)
//! from the fast fields, without loading a document.

use std::collections::HashMap;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{DocId, SegmentReader};

pub(super) type Agg = HashMap<String, (u64, i64, i64)>;

/// Aggregates matches per host (count, first, last) from the fast fields.
pub(super) struct HostAgg;

pub(super) struct HostAggSegment {
    host: Option<StrColumn>,
    time: Column<i64>,
    /// Hosts in the segment's dictionary.
    hosts: usize,
    /// (count, first, last) by host ordinal, the last slot for matches without a host; allocated
    /// at the first match.
    by_ord: Vec<(u64, i64, i64)>,
    /// The slots matches reached.
    touched: Vec<usize>,
    /// Scratch for a block's values.
    times: Vec<Option<i64>>,
    ords: Vec<Option<u64>>,
}

const EMPTY: (u64, i64, i64) = (0, i64::MAX, i64::MIN);

impl Collector for HostAgg {
    type Fruit = Agg;
    type Child = HostAggSegment;

    fn for_segment(&self, _ord: u32, seg: &SegmentReader) -> tantivy::Result<HostAggSegment> {
        let host = seg.fast_fields().str("host")?;
        let hosts = host.as_ref().map_or(0, |h| h.num_terms());
        Ok(HostAggSegment {
            host,
            time: seg.fast_fields().i64("time")?,
            hosts,
            by_ord: Vec::new(),
            touched: Vec::new(),
            times: Vec::new(),
            ords: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Agg>) -> tantivy::Result<Agg> {
        let mut out = Agg::new();
        for fruit in fruits {
            for (h, (c, lo, hi)) in fruit {
                let e = out.entry(h).or_insert(EMPTY);
                *e = (e.0 + c, e.1.min(lo), e.2.max(hi));
            }
        }
        Ok(out)
    }
}

impl SegmentCollector for HostAggSegment {
    type Fruit = Agg;

    fn collect(&mut self, doc: DocId, _score: tantivy::Score) {
        self.collect_block(&[doc]);
    }

    /// A block of matches at a time: their times and host ordinals read from the columns together.
    fn collect_block(&mut self, docs: &[DocId]) {
        self.times.clear();
        self.times.resize(docs.len(), None);
        self.ords.clear();
        self.ords.resize(docs.len(), None);
        self.time.first_vals(docs, &mut self.times);
        if let Some(h) = &self.host {
            h.ords().first_vals(docs, &mut self.ords);
        }
        let none = self.hosts;
        if self.by_ord.is_empty() {
            self.by_ord = vec![EMPTY; none + 1];
        }
        for (t, ord) in self.times.iter().zip(&self.ords) {
            let t = t.unwrap_or(0);
            let slot = ord.map_or(none, |o| usize::try_from(o).unwrap_or(none).min(none));
            let e = &mut self.by_ord[slot];
            if e.0 == 0 {
                self.touched.push(slot);
            }
            *e = (e.0 + 1, e.1.min(t), e.2.max(t));
        }
    }

    /// Host names are looked up once per segment, in one pass over the term dictionary in ordinal
    /// order: a lookup per host would decode the dictionary block again for each (thousands of hosts
    /// per sweep, each sweep).
    fn harvest(self) -> Agg {
        let none = self.hosts;
        let mut touched = self.touched;
        touched.sort_unstable();
        let found: Vec<(usize, (u64, i64, i64))> = touched.into_iter().map(|o| (o, self.by_ord[o])).collect();
        let ords: Vec<u64> = found.iter().filter(|(o, _)| *o != none).map(|(o, _)| *o as u64).collect();
        let mut names: Vec<String> = Vec::with_capacity(ords.len());
        if let Some(h) = &self.host {
            let _ = h.dictionary().sorted_ords_to_term_cb(&ords, |term| {
                names.push(String::from_utf8_lossy(term).into_owned());
            });
        }
        // Matches without a host (or whose name could not be read) count under "".
        let mut out = Agg::new();
        for (i, (_, v)) in found.into_iter().enumerate() {
            let e = out.entry(names.get(i).cloned().unwrap_or_default()).or_insert(EMPTY);
            *e = (e.0 + v.0, e.1.min(v.1), e.2.max(v.2));
        }
        out
    }
}
