//! Login baselines at ingest: every stored authentication event is counted into its host's hour
//! ([`anomaly::live::Live`], shared with the API); a count that leaves both the host's forecast
//! interval and its group's fleet band becomes an anomaly alert at once, recorded and correlated like
//! any other. At each new hour, hosts that went silent while their group kept working are reported.
//!
//! The models come from the lake: [`refit`] reads a tenant's hourly login counts (DataFusion),
//! fits every host's forecasts and every group's bands off the async runtime on a bounded pool, and
//! installs them. The server runs it at start and then on its schedule (nightly by default).

use super::{Ingest, IngestError};
use anomaly::forecast::ForecastConfig;
use anomaly::live::{Live, fit_tenant};
use schemas::Record;
use schemas::fields::col;
use std::collections::HashMap;

use anomaly::series::HOUR;
const HELP_ANOMALIES: &str = "Login anomalies raised, by direction.";

/// An authentication event's part in the counts.
#[derive(Debug)]
pub(crate) struct Login {
    pub(crate) tenant: String,
    pub(crate) host: String,
    pub(crate) group: Option<String>,
    pub(crate) time: i64,
    pub(crate) outcome: String,
    pub(crate) logon_type: String,
    pub(crate) event_id: String,
}

/// The login in a record, if it is an authentication event with an outcome.
pub(crate) fn login(rec: &Record) -> Option<Login> {
    if rec.cell(col::EVENT_KIND).as_str() != Some(anomaly::LOGIN_KIND) {
        return None;
    }
    let s = |c: &str| schemas::fields::column_index(c).and_then(|i| rec.cell(i).as_str()).map(str::to_owned);
    let outcome = s("event_outcome")?;
    Some(Login {
        tenant: rec.tenant().to_owned(),
        host: rec.host().to_owned(),
        group: rec.cell(col::HOST_GROUP).as_str().map(str::to_owned),
        time: rec.time(),
        outcome,
        logon_type: s("logon_type").unwrap_or_default(),
        event_id: rec.cell(col::EVENT_ID).as_str().unwrap_or_default().to_owned(),
    })
}

impl Login {
    /// Counts it into the live baselines; the findings it raises.
    fn observe(&self, live: &Live) -> Vec<anomaly::live::LiveFinding> {
        live.observe(
            &self.tenant,
            &self.host,
            self.group.as_deref(),
            self.time,
            &self.outcome,
            &self.logon_type,
            &self.event_id,
        )
    }
}

impl Ingest {
    /// Counts stored logins; returns the anomaly alerts they raise. Logins older than the hours the
    /// live counts keep are judged in their own time instead ([`crate::history`]).
    pub(crate) fn count_logins(
        &self,
        logins: &[Login],
        now: i64,
    ) -> Vec<(schemas::alert::Alert, Option<String>)> {
        let (old, live): (Vec<&Login>, Vec<&Login>) =
            logins.iter().partition(|l| crate::history::is_historical(l, now));
        self.note_history(&old);
        let mut out = Vec::new();
        for f in live.iter().flat_map(|l| l.observe(&self.cfg.baselines)) {
            self.metrics.add("cordon_anomalies_total", "direction=\"above\"", HELP_ANOMALIES, 1);
            out.push((anomaly::alert::alert(&f), None));
        }
        out
    }

    /// Counts logins already stored (at start) without raising anything: what they raised before
    /// is recorded already.
    pub(crate) fn recount_logins(&self, logins: &[Login]) {
        for l in logins {
            let _already_raised = l.observe(&self.cfg.baselines);
        }
    }

    /// Once per hour: hosts silent while their group is active, as alerts, and the final counts of
    /// the hours that raised anomalies.
    pub(crate) fn new_hour_findings(&self, now: i64) -> Vec<(schemas::alert::Alert, Option<String>)> {
        let hour = now.div_euclid(HOUR);
        {
            let mut last = self.last_silence_check.lock().unwrap_or_else(|e| e.into_inner());
            if *last == hour {
                return Vec::new();
            }
            *last = hour;
        }
        let mut out = Vec::new();
        for tenant in self.cfg.baselines.tenants() {
            for f in self.cfg.baselines.silences(&tenant, now) {
                self.metrics.add("cordon_anomalies_total", "direction=\"below\"", HELP_ANOMALIES, 1);
                out.push((anomaly::alert::alert(&f), None));
            }
            // Hours that just closed: their alerts get the hour's final count.
            for f in self.cfg.baselines.closed_hours(&tenant, now) {
                out.push((anomaly::alert::alert(&f), None));
            }
        }
        out
    }
}

/// What a refit did.
#[derive(Clone, Debug, serde::Serialize, schemars::JsonSchema)]
pub struct RefitReport {
    /// Tenant.
    pub tenant: String,
    /// Hosts with series.
    pub hosts: usize,
    /// Series with a forecast of their own.
    pub forecasts: usize,
    /// Series judged on the fleet band alone (too short, or the model failed).
    pub fallbacks: usize,
    /// Groups with bands.
    pub groups: usize,
    /// Wall milliseconds of the fit.
    pub fit_millis: u64,
}

/// Refits a tenant's models from the lake's last `cfg.history_hours` of logins before the hour of
/// `now`, on `threads` threads off the async runtime, and installs them.
pub async fn refit(
    store: &store::Store,
    live: &Live,
    tenant: &str,
    cfg: &ForecastConfig,
    threads: usize,
    now: i64,
) -> Result<RefitReport, IngestError> {
    let to = anomaly::series::hour_floor(now);
    let from = to - cfg.history_hours as i64 * HOUR;
    let counts = store.login_counts(tenant, None, from, to).await?;
    let groups: HashMap<String, String> = store.host_groups(tenant, from, to).await?.into_iter().collect();
    let series = anomaly::series::LoginSeries::from_counts(&counts, from, to);
    let cfg = cfg.clone();
    let models = tokio::task::spawn_blocking(move || fit_tenant(&series, &groups, &cfg, threads, now))
        .await
        .map_err(|e| IngestError::Baseline(e.to_string()))?;
    let (mut forecasts, mut fallbacks) = (0, 0);
    for m in models.hosts.values() {
        for f in m.forecasts.values() {
            if f.is_ok() {
                forecasts += 1;
            } else {
                fallbacks += 1;
            }
        }
    }
    let report = RefitReport {
        tenant: tenant.to_owned(),
        hosts: models.hosts.len(),
        forecasts,
        fallbacks,
        groups: models.bands.keys().map(|(g, _)| g).collect::<std::collections::BTreeSet<_>>().len(),
        fit_millis: models.fit_millis,
    };
    live.install(tenant, models);
    Ok(report)
}
