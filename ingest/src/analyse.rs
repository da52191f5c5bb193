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
use schemas::metrics::Registry;
use std::collections::{BTreeMap, BTreeSet, HashSet};
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

/// One tenant's stored events, read once at start for every analyser to rebuild its state from.
pub struct Replay<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// Its events since the earliest [`Analyser::restore_from`], in time order.
    pub records: &'a [Record],
    /// Events committed but not analysed before the restart: the analysis that runs them again
    /// counts them, so a restore leaves them out.
    pub unanalysed: &'a HashSet<String>,
    /// The tagger in use for a tenant.
    pub(crate) taggers: &'a dyn Fn(&str) -> Option<Arc<Tagger>>,
    /// The time the lake was read from (what each [`Analyser::restore_from`] was asked with).
    pub now: i64,
}

impl<'a> Replay<'a> {
    /// The events at or after `from`.
    pub fn since(&self, from: i64) -> &'a [Record] {
        &self.records[self.records.partition_point(|r| r.time() < from)..]
    }

    /// The events `analyser` asked for ([`Analyser::restore_from`] at [`Replay::now`]).
    pub fn for_analyser(&self, analyser: &dyn Analyser) -> &'a [Record] {
        analyser.restore_from(self.now).map_or(&[], |from| self.since(from))
    }
}

/// Which analysers ingest runs, in the order each batch reaches them (the binary chooses; see
/// [`crate::IngestConfig::analysers`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalyserKind {
    /// The entity graph the incidents are worked out on.
    Graph,
    /// The windows of Sigma correlation rules.
    Correlation,
    /// The hourly login counts of the live baselines.
    Logins,
}

impl AnalyserKind {
    /// Every analyser, in the order they see a batch.
    pub const ALL: [AnalyserKind; 3] = [AnalyserKind::Graph, AnalyserKind::Correlation, AnalyserKind::Logins];
}

/// What analysers are built from: the state ingest shares with the API and with its own stages.
pub(crate) struct Wiring<'a> {
    pub(crate) graphs: &'a Arc<correlate::graph::Graphs>,
    pub(crate) rules: &'a Arc<correlate::sigma::CurrentRules>,
    pub(crate) baselines: &'a Arc<anomaly::live::Live>,
    pub(crate) history: &'a Arc<crate::history::Pending>,
    pub(crate) metrics: &'a Arc<schemas::metrics::Registry>,
}

/// Builds the analysers `kinds` names, in that order.
pub(crate) fn build(kinds: &[AnalyserKind], w: &Wiring<'_>) -> Vec<Arc<dyn Analyser>> {
    let one = |k: &AnalyserKind| -> Arc<dyn Analyser> {
        match k {
            AnalyserKind::Graph => Arc::new(GraphFeed::new(Arc::clone(w.graphs))),
            AnalyserKind::Correlation => {
                Arc::new(crate::correlation::Correlations::new(Arc::clone(w.rules), Arc::clone(w.metrics)))
            }
            AnalyserKind::Logins => Arc::new(crate::baselines::LoginCounts::new(
                Arc::clone(w.baselines),
                Arc::clone(w.history),
                Arc::clone(w.metrics),
            )),
        }
    };
    kinds.iter().map(one).collect()
}

/// One analysis of committed events.
pub trait Analyser: Send + Sync + std::fmt::Debug {
    /// Its name (its tracing span's `analyser` field).
    fn name(&self) -> &'static str;

    /// Reads a committed batch and adds what it finds.
    fn analyse(&self, batch: &Committed<'_>, found: &mut Findings);

    /// Runs when a fetch brought nothing: findings the clock raises (a new hour's silences).
    fn idle(&self, _now: i64, _found: &mut Findings) {}

    /// How far back (microseconds since the epoch) the lake is read at start to rebuild its state;
    /// `None` when it keeps none.
    fn restore_from(&self, _now: i64) -> Option<i64> {
        None
    }

    /// Rebuilds its state from a tenant's stored events (the lake is read once for all analysers);
    /// findings it raises on the way are recorded as a batch's are (recording is idempotent, so
    /// what was recorded before the restart is not counted twice).
    fn restore(&self, _replay: &Replay<'_>, _found: &mut Findings) {}

    /// Whether events committed but not analysed before a restart reach it again; false where its
    /// [`Analyser::restore`] has counted them already.
    fn analyses_again(&self) -> bool {
        true
    }

    /// The detection rules were replaced: state numbered by the old rules starts afresh. Returns
    /// how many tenants' state was dropped.
    fn rules_changed(&self) -> usize {
        0
    }

    /// Another process analysed for a while (ADR 0009: it held the analysis lease) and this one
    /// takes over: state a [`Analyser::restore`] would count twice starts afresh, before the restore
    /// runs. By default, what a rule change drops; state that ignores events it has seen keeps.
    fn taking_over(&self) {
        self.rules_changed();
    }
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
                    g.evict();
                })
            });
            found.touched.insert(tenant.to_owned());
        }
    }

    /// The graph's hot window.
    fn restore_from(&self, now: i64) -> Option<i64> {
        Some(now - self.graphs.config().hot_window)
    }

    fn restore(&self, replay: &Replay<'_>, _found: &mut Findings) {
        self.graphs.write(replay.tenant, |g| {
            for (i, r) in replay.for_analyser(self).iter().enumerate() {
                g.add(r);
                if i % 65_536 == 65_535 {
                    g.evict(); // a long replay stays within the graph's edge budget as it goes
                }
            }
            g.evict();
        });
    }
}

const HELP_ANALYSER: &str = "Seconds each analyser took per committed batch (graph, correlation, logins); \
     the sum over them is most of the analysers stage.";

/// Runs the analysers over a batch, each in its own span and timed
/// (`cordon_analyser_seconds{analyser}`).
pub(crate) fn run_all(
    analysers: &[Arc<dyn Analyser>],
    batch: &Committed<'_>,
    found: &mut Findings,
    metrics: &Registry,
) {
    for a in analysers {
        let _span =
            tracing::debug_span!("analyser", analyser = a.name(), events = batch.records.len()).entered();
        let started = std::time::Instant::now();
        a.analyse(batch, found);
        let labels = format!("analyser=\"{}\"", a.name());
        metrics.observe("cordon_analyser_seconds", &labels, HELP_ANALYSER, started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
#[path = "analyse_tests.rs"]
mod tests;
