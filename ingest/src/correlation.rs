//! Correlation rules at ingest: each tenant's committed events that a correlation's detection rules
//! matched are fed, in batch order, to the tenant's [`Correlator`]; what fires becomes an alert.
//!
//! The state lives in memory and is rebuilt when ingest starts by replaying the lake's events of
//! the longest correlation timespan (twice over, for late events; read in the same pass as the
//! entity graph's) through the rules: the lake is
//! the source of truth, so nothing is lost in a restart and nothing extra is persisted. Events seen
//! again (the replay, then a redelivery of a batch that was committed but not acked) count once,
//! and alerts are recorded idempotently per evidence event.

use super::{HELP_ALERTS, Ingest, IngestError};
use crate::analyse::{Analyser, Committed, Findings, Replay};
use correlate::sigma::stream::Stats as CorrelationStats;
use correlate::sigma::{Correlator, Detection, Tagger};
use schemas::Record;
use schemas::metrics::Registry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const HELP_LEFT_OUT: &str = "Events a correlation matched but could not count, by reason (ungrouped: a group-by field missing; \
     late: older than the window; duplicate: seen before; dropped: group over its size cap).";
const HELP_STATE: &str = "Events held in correlation windows, over all tenants.";

/// A committed event some correlation's detection rules matched.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) record: Record,
    /// The matched rules, numbered in the rule set with this digest.
    pub(crate) hits: Vec<usize>,
    pub(crate) rules: String,
}

/// Each tenant's correlation windows (see the module doc), an [`Analyser`].
#[derive(Debug)]
pub(crate) struct Correlations {
    states: Mutex<HashMap<String, Correlator>>,
    /// The rules in use (their correlations' longest timespan bounds the replay at start).
    rules: Arc<correlate::sigma::CurrentRules>,
    metrics: Arc<Registry>,
}

impl Correlations {
    pub(crate) fn new(rules: Arc<correlate::sigma::CurrentRules>, metrics: Arc<Registry>) -> Self {
        Self { states: Mutex::default(), rules, metrics }
    }

    /// Forgets every window (the rules' numbering changed); how many tenants had some.
    pub(crate) fn reset(&self) -> usize {
        std::mem::take(&mut *self.states.lock().unwrap_or_else(|e| e.into_inner())).len()
    }

    /// Feeds committed events to their tenants' correlations; returns the detections that fired
    /// with the event that completed each.
    pub(crate) fn feed(
        &self,
        pending: &[Pending],
        taggers: &dyn Fn(&str) -> Option<Arc<Tagger>>,
    ) -> Vec<(Record, Detection)> {
        if pending.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        for p in pending {
            let tenant = p.record.tenant();
            let Some(tagger) = taggers(tenant) else { continue };
            if tagger.sources().digest != p.rules {
                // Matched by the rules in use before a reload: their numbering is not this set's.
                continue;
            }
            let state = states.entry(tenant.to_owned()).or_insert_with(|| tagger.correlator());
            let before = state.stats();
            let fired = tagger.correlate(state, &p.record, &p.hits);
            self.count_left_out(&before, &state.stats());
            for d in fired {
                tracing::info!(rule = %d.rule, tenant = %p.record.tenant(), host = %p.record.host(), "correlation fired");
                out.push((p.record.clone(), d));
            }
        }
        let held: usize = states.values().map(Correlator::entries).sum();
        self.metrics.set_gauge("cordon_correlation_window_events", "", HELP_STATE, held as u64);
        out
    }

    fn count_left_out(&self, before: &CorrelationStats, after: &CorrelationStats) {
        for (reason, n) in [
            ("ungrouped", after.ungrouped - before.ungrouped),
            ("late", after.late - before.late),
            ("duplicate", after.duplicates - before.duplicates),
            ("dropped", after.dropped - before.dropped),
        ] {
            if n > 0 {
                let labels = format!("reason=\"{reason}\"");
                self.metrics.add("cordon_correlation_left_out_total", &labels, HELP_LEFT_OUT, n);
            }
        }
    }

    /// What fired, as detections and alerts.
    fn findings(fired: Vec<(Record, Detection)>, found: &mut Findings) {
        for (rec, d) in fired {
            *found.detections.entry(d.tier.as_str()).or_insert(0) += 1;
            if let Some(a) = correlate::sigma::tagger::alert_for(&rec, &d) {
                found.alerts.push((a, correlate::graph::Graph::process_key(&rec)));
            }
        }
    }
}

impl Analyser for Correlations {
    fn name(&self) -> &'static str {
        "correlation"
    }

    fn analyse(&self, batch: &Committed<'_>, found: &mut Findings) {
        Self::findings(self.feed(batch.matched, batch.taggers), found);
    }

    /// Twice the longest correlation timespan, for late events; nothing without correlation rules.
    fn restore_from(&self, now: i64) -> Option<i64> {
        let horizon = self.rules.get()?.correlation_horizon();
        (horizon > 0).then(|| now - 2 * horizon)
    }

    /// Tags the tenant's recent events again and feeds those a correlation's rules match, firing
    /// what their windows complete (idempotent: alerts recorded before the restart are not counted
    /// again). Events not analysed before the restart are replayed too: their batch, analysed
    /// again, leaves this analyser out.
    fn restore(&self, replay: &Replay<'_>, found: &mut Findings) {
        let records = replay.for_analyser(self);
        let Some(tagger) = (!records.is_empty()).then(|| (replay.taggers)(replay.tenant)).flatten() else {
            return;
        };
        let mut pending = Vec::new();
        for r in records {
            let mut rec = r.clone();
            let (_, hits) = tagger.tag_and_hits(&mut rec);
            if !hits.is_empty() {
                pending.push(Pending { record: rec, hits, rules: tagger.sources().digest.clone() });
            }
        }
        Self::findings(self.feed(&pending, replay.taggers), found);
    }

    fn analyses_again(&self) -> bool {
        false
    }

    fn rules_changed(&self) -> usize {
        self.reset()
    }
}

impl Ingest {
    /// Records alerts in the catalog (deduplicated, idempotent per evidence event) and rewrites the
    /// lake's alerts table of the tenants they belong to.
    /// Alerts that could not be recorded are kept and retried first next time (recording is
    /// idempotent per evidence event, so a retry never counts twice).
    /// Each alert comes with the process key of the event it was raised on (its incident anchor).
    pub(crate) async fn record_alerts(
        &self,
        alerts: &[(schemas::alert::Alert, Option<String>)],
    ) -> Result<(), IngestError> {
        let mut all = std::mem::take(&mut *self.unrecorded.lock().unwrap_or_else(|e| e.into_inner()));
        all.extend_from_slice(alerts);
        if all.is_empty() {
            return Ok(());
        }
        let dropped = bound_backlog(&mut all, MAX_UNRECORDED);
        if dropped > 0 {
            // Detection alerts come back when their batch is redelivered; correlation alerts do not
            // (their windows were consumed), so this is logged as an error.
            tracing::error!(
                dropped,
                kept = all.len(),
                "alerts waiting for the catalog over the cap; the oldest dropped"
            );
            self.metrics.add(
                "cordon_alerts_unrecorded_dropped_total",
                "",
                HELP_UNRECORDED_DROPPED,
                dropped as u64,
            );
        }
        let plain: Vec<schemas::alert::Alert> = all.iter().map(|(a, _)| a.clone()).collect();
        let recorded = self
            .store
            .catalog()
            .record_alerts(&plain, self.cfg.alert_window.as_micros() as i64, schemas::time::now_micros())
            .await;
        let ids = match recorded {
            Ok(ids) => ids,
            Err(e) => {
                self.metrics.set_gauge("cordon_alerts_unrecorded", "", HELP_UNRECORDED, all.len() as u64);
                *self.unrecorded.lock().unwrap_or_else(|e| e.into_inner()) = all;
                return Err(store::StoreError::from(e).into());
            }
        };
        self.metrics.set_gauge("cordon_alerts_unrecorded", "", HELP_UNRECORDED, 0);
        self.metrics.add("cordon_alert_evidence_total", "", HELP_ALERTS, ids.len() as u64);
        self.export_alerts(plain.iter().map(|a| a.tenant.as_str())).await;
        let anchors = ids.iter().zip(&all).map(|(id, (a, entity))| {
            (a.tenant.clone(), correlate::incident::anchor_for(id, a, entity.clone()))
        });
        self.add_anchors(anchors).await;
        Ok(())
    }

    /// Rewrites the lake's `alerts` table of these tenants. The catalog holds the alerts; the table
    /// is derived, so a failure is logged and counted and the next change rewrites it.
    pub(crate) async fn export_alerts<'a>(&self, tenants: impl Iterator<Item = &'a str>) {
        let mut done: Vec<&str> = Vec::new();
        for t in tenants {
            if done.contains(&t) {
                continue;
            }
            done.push(t);
            if let Err(e) = self.store.export_alerts(t).await {
                tracing::error!(tenant = %t, error = %e, "could not export the alerts table to the lake");
                self.metrics.add(
                    "cordon_alert_export_failures_total",
                    "",
                    "Failed rewrites of the lake's alerts table (the catalog keeps the alerts).",
                    1,
                );
            }
        }
    }
}

/// Alerts kept for the catalog while it cannot record them; past this, the oldest are dropped.
const MAX_UNRECORDED: usize = 10_000;
const HELP_UNRECORDED: &str = "Alerts waiting to be recorded because the catalog refused them.";
const HELP_UNRECORDED_DROPPED: &str =
    "Alerts dropped while the catalog could not record them (over the cap).";

/// Keeps the newest `max` items of a backlog; returns how many were dropped.
fn bound_backlog<T>(backlog: &mut Vec<T>, max: usize) -> usize {
    let excess = backlog.len().saturating_sub(max);
    backlog.drain(..excess);
    excess
}

#[cfg(test)]
mod backlog_tests {
    #[test]
    fn the_backlog_keeps_the_newest() {
        let mut v: Vec<u32> = (0..10).collect();
        assert_eq!(super::bound_backlog(&mut v, 4), 6);
        assert_eq!(v, [6, 7, 8, 9]);
        assert_eq!(super::bound_backlog(&mut v, 4), 0);
    }
}
