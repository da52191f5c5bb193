//! The analysers: what runs on committed events. Each reads a batch once it is durable, in commit
//! order, and adds its findings (alerts, detections, the tenants whose graph changed); the stage
//! after them records the alerts, works out incidents and sends triggers. Each analyser's state
//! lives in memory and is rebuilt from the lake when ingest starts, so an analyser never sees an
//! event the lake does not hold, and a batch redelivered after a failure is seen again (every
//! analyser ignores an event id it has counted).

use crate::correlation::Pending;
use correlate::sigma::Tagger;
use schemas::Record;
use schemas::alert::Alert;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A committed batch, as the analysers read it.
pub struct Committed<'a> {
    /// The events stored, in time order.
    pub records: Vec<&'a Record>,
    /// Events some correlation's detection rules matched (the tag stage's), in batch order.
    pub(crate) matched: &'a [Pending],
    /// The tagger in use for a tenant (the rules' numbering the correlations' hits refer to).
    pub(crate) taggers: &'a dyn Fn(&str) -> Option<Arc<Tagger>>,
    /// The time the batch is analysed, microseconds.
    pub now: i64,
}

impl<'a> Committed<'a> {
    /// The batch's records (in lake order) put in time order.
    pub(crate) fn new(
        records: &'a [Record],
        matched: &'a [Pending],
        taggers: &'a dyn Fn(&str) -> Option<Arc<Tagger>>,
        now: i64,
    ) -> Self {
        let mut records: Vec<&Record> = records.iter().collect();
        records.sort_by_key(|r| r.time());
        Self { records, matched, taggers, now }
    }
}

/// What the analysers found in a batch.
#[derive(Debug, Default)]
pub struct Findings {
    /// Alerts, each with its event's process key (its incident anchor) where it has one.
    pub alerts: Vec<(Alert, Option<String>)>,
    /// Detections per policy tier.
    pub detections: BTreeMap<&'static str, u64>,
    /// Tenants whose entity graph changed (their incidents are worked out again).
    pub touched: BTreeSet<String>,
}

/// One analysis of committed events.
pub trait Analyser: Send + Sync + std::fmt::Debug {
    /// Its name (its tracing span's `analyser` field).
    fn name(&self) -> &'static str;

    /// Reads a committed batch and adds what it finds.
    fn analyse(&self, batch: &Committed<'_>, found: &mut Findings);

    /// Runs when a fetch brought nothing: findings the clock raises (a new hour's silences).
    fn idle(&self, _now: i64, _found: &mut Findings) {}
}

/// Feeds each tenant's entity graph ([`correlate::graph::Graphs`], shared with the API).
#[derive(Debug)]
pub(crate) struct GraphFeed {
    graphs: Arc<correlate::graph::Graphs>,
}

impl GraphFeed {
    pub(crate) fn new(graphs: Arc<correlate::graph::Graphs>) -> Self {
        Self { graphs }
    }
}

impl Analyser for GraphFeed {
    fn name(&self) -> &'static str {
        "graph"
    }

    fn analyse(&self, batch: &Committed<'_>, found: &mut Findings) {
        let mut by_tenant: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
        for r in &batch.records {
            by_tenant.entry(r.tenant()).or_default().push(r);
        }
        for (tenant, records) in by_tenant {
            crate::cpu(|| {
                self.graphs.write(tenant, |g| {
                    for r in records {
                        g.add(r);
                    }
                })
            });
            found.touched.insert(tenant.to_owned());
        }
    }
}

/// Runs the analysers over a batch, each in its own span.
pub(crate) fn run_all(analysers: &[&dyn Analyser], batch: &Committed<'_>, found: &mut Findings) {
    for a in analysers {
        let _span =
            tracing::debug_span!("analyser", analyser = a.name(), events = batch.records.len()).entered();
        a.analyse(batch, found);
    }
}
