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
    by_ord: HashMap<u64, (u64, i64, i64)>,
}

impl Collector for HostAgg {
    type Fruit = Agg;
    type Child = HostAggSegment;

    fn for_segment(&self, _ord: u32, seg: &SegmentReader) -> tantivy::Result<HostAggSegment> {
        Ok(HostAggSegment {
            host: seg.fast_fields().str("host")?,
            time: seg.fast_fields().i64("time")?,
            by_ord: HashMap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Agg>) -> tantivy::Result<Agg> {
        let mut out = Agg::new();
        for fruit in fruits {
            for (h, (c, lo, hi)) in fruit {
                let e = out.entry(h).or_insert((0, i64::MAX, i64::MIN));
                *e = (e.0 + c, e.1.min(lo), e.2.max(hi));
            }
        }
        Ok(out)
    }
}

impl SegmentCollector for HostAggSegment {
    type Fruit = Agg;

    fn collect(&mut self, doc: DocId, _score: tantivy::Score) {
        let t = self.time.first(doc).unwrap_or(0);
        let ord = self.host.as_ref().and_then(|h| h.term_ords(doc).next()).unwrap_or(u64::MAX);
        let e = self.by_ord.entry(ord).or_insert((0, i64::MAX, i64::MIN));
        *e = (e.0 + 1, e.1.min(t), e.2.max(t));
    }

    /// Host names are looked up once per segment, in one pass over the term dictionary in ordinal
    /// order: a lookup per host would decode the dictionary block again for each (thousands of hosts
    /// per sweep, each sweep).
    fn harvest(self) -> Agg {
        let mut found: Vec<(u64, (u64, i64, i64))> = self.by_ord.into_iter().collect();
        found.sort_unstable_by_key(|(ord, _)| *ord);
        let ords: Vec<u64> = found.iter().map(|(ord, _)| *ord).filter(|ord| *ord != u64::MAX).collect();
        let mut names: Vec<String> = Vec::with_capacity(ords.len());
        if let Some(h) = &self.host {
            let _ = h.dictionary().sorted_ords_to_term_cb(&ords, |term| {
                names.push(String::from_utf8_lossy(term).into_owned());
            });
        }
        // Matches without a host (or whose name could not be read) count under "".
        let mut out = Agg::new();
        for (i, (_, v)) in found.into_iter().enumerate() {
            let e = out.entry(names.get(i).cloned().unwrap_or_default()).or_insert((0, i64::MAX, i64::MIN));
            *e = (e.0 + v.0, e.1.min(v.1), e.2.max(v.2));
        }
        out
    }
}
