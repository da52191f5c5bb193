//! Logins older than the live counts keep (a log replayed from years ago, an agent's spool delivered
//! days late), baselined in their own time ([`anomaly::history`]).
//!
//! Ingest notes the hours each such host's logins touched; once the host has sent nothing historical
//! for [`SETTLE`] (the replay is done or paused, so its hours are whole), its series is read back from
//! the lake with the history before it and judged day by day against that history, never against the
//! wall clock. Each hour past its expectation becomes an anomaly alert like a live one, with the
//! hour's events as evidence (read from the lake), so a host judged again later (more of its log
//! arrived) adds to the same alert instead of raising another.
//!
//! What is noted lives in memory: a restart between a replay's commit and its judgement leaves those
//! hours unjudged until more of the host's history arrives.

use super::Ingest;
use super::baselines::Login;
use anomaly::detect::Measure;
use anomaly::live::{KEEP_HOURS, is_interactive};
use anomaly::series::{HOUR, hour_floor};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A host's historical hours are judged once it has sent none for this long.
pub const SETTLE: Duration = Duration::from_secs(3);
/// Events read per flagged hour to find its evidence.
const EVIDENCE_SCAN: usize = 2_000;
/// Event ids an alert carries as evidence (as the live findings).
const EVIDENCE: usize = 100;
const HELP_ANOMALIES: &str = "Login anomalies raised, by direction.";
const HELP_JUDGED: &str = "Historical host-hours judged against the history before them.";

/// The historical hours a host's logins touched since it was last judged.
#[derive(Clone, Debug)]
struct Span {
    group: Option<String>,
    from: i64,
    to: i64,
    touched: Instant,
}

/// Hosts with historical hours waiting to be judged, by (tenant, host).
#[derive(Debug, Default)]
pub(crate) struct Pending(std::sync::Mutex<HashMap<(String, String), Span>>);

impl Pending {
    /// Notes a historical login for judgement in its own time.
    pub(crate) fn note(&self, l: &Login) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let hour = hour_floor(l.time);
        let span = map.entry((l.tenant.clone(), l.host.clone())).or_insert_with(|| Span {
            group: None,
            from: hour,
            to: hour,
            touched: Instant::now(),
        });
        (span.from, span.to, span.touched) = (span.from.min(hour), span.to.max(hour), Instant::now());
        if l.group.is_some() {
            span.group.clone_from(&l.group);
        }
    }

    /// Takes the hosts that have been quiet for [`SETTLE`].
    fn settled(&self) -> Vec<((String, String), Span)> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let keys: Vec<(String, String)> =
            map.iter().filter(|(_, s)| s.touched.elapsed() >= SETTLE).map(|(k, _)| k.clone()).collect();
        keys.into_iter().filter_map(|k| map.remove(&k).map(|s| (k, s))).collect()
    }

    /// Puts back a span whose judgement failed (it is tried again later).
    fn restore(&self, key: (String, String), span: Span) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let merged = match map.remove(&key) {
            Some(s) => Span { from: s.from.min(span.from), to: s.to.max(span.to), ..s },
            None => span,
        };
        map.insert(key, merged);
    }
}

/// A login older than the hours the live counts keep, at `now`.
pub(crate) fn is_historical(l: &Login, now: i64) -> bool {
    l.time < hour_floor(now) - KEEP_HOURS as i64 * HOUR
}

impl Ingest {
    /// Judges the settled hosts' historical hours; the anomaly alerts they raise. A host whose lake
    /// could not be read is tried again later.
    pub(crate) async fn history_findings(&self) -> Vec<(schemas::alert::Alert, Option<String>)> {
        let mut out = Vec::new();
        for (key, span) in self.history.settled() {
            match self.judge_history(&key.0, &key.1, &span).await {
                Ok(alerts) => out.extend(alerts),
                Err(e) => {
                    tracing::warn!(tenant = %key.0, host = %key.1, error = %e, "cannot judge historical logins; retried later");
                    self.history.restore(key, span);
                }
            }
        }
        out
    }

    #[tracing::instrument(skip(self, span), fields(from = span.from, to = span.to))]
    async fn judge_history(
        &self,
        tenant: &str,
        host: &str,
        span: &Span,
    ) -> Result<Vec<(schemas::alert::Alert, Option<String>)>, super::IngestError> {
        let cfg = &self.cfg.forecast;
        let (from, to) = (span.from, span.to + HOUR);
        let read_from = from - cfg.history_hours as i64 * HOUR;
        let counts = self.store.login_counts(tenant, Some(host), read_from, to).await?;
        let Some(series) = anomaly::series::LoginSeries::from_counts(&counts, read_from, to).pop() else {
            return Ok(Vec::new());
        };
        let group = span.group.clone().unwrap_or_default();
        let models = self.cfg.baselines.models(tenant);
        let verdict = super::cpu(|| {
            // Before the host has history of its own: its group's band from the live models (at the
            // same hour of the week), else the absolute ceiling.
            let prior = |hour: i64, m: Measure| match &models {
                Some(models) => models.judged(host, &group, hour, m),
                None => anomaly::detect::Expected::ceiling(m),
            };
            anomaly::history::judge(&series, from, to, cfg, &prior)
        });
        self.metrics.add("cordon_baseline_history_hours_total", "", HELP_JUDGED, verdict.hours as u64);
        let mut out = Vec::new();
        for j in verdict.findings {
            let evidence = self.hour_evidence(tenant, host, j.hour, j.finding.measure).await?;
            let lf = anomaly::live::LiveFinding {
                tenant: tenant.to_owned(),
                host: host.to_owned(),
                group: group.clone(),
                hour: j.hour,
                finding: j.finding,
                evidence,
                around: j.around,
            };
            self.metrics.add("cordon_anomalies_total", "direction=\"above\"", HELP_ANOMALIES, 1);
            out.push((anomaly::alert::alert(&lf), None));
        }
        Ok(out)
    }

    /// The ids of the events an hour's count of `measure` was made of (the first [`EVIDENCE`]).
    async fn hour_evidence(
        &self,
        tenant: &str,
        host: &str,
        hour: i64,
        measure: Measure,
    ) -> Result<Vec<String>, super::IngestError> {
        let q = store::query::TimelineQuery {
            host: host.to_owned(),
            from: Some(hour),
            to: Some(hour + HOUR),
            kinds: vec![anomaly::LOGIN_KIND.to_owned()],
            ascending: true,
            after: None,
            limit: EVIDENCE_SCAN,
        };
        let recs = self.store.timeline(tenant, q).await?;
        Ok(recs
            .iter()
            .filter_map(super::baselines::login)
            .filter(|l| counts_for(l, measure))
            .map(|l| l.event_id)
            .take(EVIDENCE)
            .collect())
    }
}

/// Whether a login is part of a measure's count.
fn counts_for(l: &Login, m: Measure) -> bool {
    match m {
        Measure::Logins => l.outcome == "success",
        Measure::Failures => l.outcome == "failure",
        Measure::Interactive => l.outcome == "success" && is_interactive(&l.logon_type),
    }
}
