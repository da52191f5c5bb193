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

    fn harvest(self) -> Agg {
        let mut out = Agg::new();
        for (ord, v) in self.by_ord {
            let mut name = String::new();
            if let Some(h) = &self.host
                && ord != u64::MAX
            {
                let _ = h.ord_to_str(ord, &mut name);
            }
            out.insert(name, v);
        }
        out
    }
}
