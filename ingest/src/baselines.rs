//! Login baselines at ingest: every stored authentication event is counted into its host's hour
//! ([`anomaly::live::Live`], shared with the API); a count that leaves both the host's forecast
//! interval and its group's fleet band becomes an anomaly alert at once, recorded and correlated like
//! any other. At each new hour, hosts that went silent while their group kept working are reported.
//!
//! The models come from the lake (`api::baselines::refit`), at start and then on the server's
//! schedule (nightly by default).

use crate::analyse::{Analyser, Committed, Findings, Replay};
use anomaly::live::Live;
use schemas::Record;
use schemas::alert::Alert;
use schemas::fields::col;
use schemas::metrics::Registry;
use std::sync::{Arc, Mutex};

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

/// Counts committed logins into the live baselines, an [`Analyser`]: a count past both bounds is an
/// anomaly at once; at each new hour, silent hosts and the final counts of hours that raised
/// anomalies. Logins older than the hours the live counts keep go to [`crate::history`].
#[derive(Debug)]
pub(crate) struct LoginCounts {
    live: Arc<Live>,
    history: Arc<crate::history::Pending>,
    metrics: Arc<Registry>,
    /// The hour (since the epoch) silences were last looked for.
    last_silence_check: Mutex<i64>,
}

impl LoginCounts {
    pub(crate) fn new(
        live: Arc<Live>,
        history: Arc<crate::history::Pending>,
        metrics: Arc<Registry>,
    ) -> Self {
        Self { live, history, metrics, last_silence_check: Mutex::new(0) }
    }

    /// Counts stored logins; returns the anomaly alerts they raise.
    fn count(&self, logins: &[Login], now: i64) -> Vec<(Alert, Option<String>)> {
        let (old, live): (Vec<&Login>, Vec<&Login>) =
            logins.iter().partition(|l| crate::history::is_historical(l, now));
        for l in old {
            self.history.note(l);
        }
        let mut out = Vec::new();
        for f in live.iter().flat_map(|l| l.observe(&self.live)) {
            self.metrics.add("cordon_anomalies_total", "direction=\"above\"", HELP_ANOMALIES, 1);
            out.push((anomaly::alert::alert(&f), None));
        }
        out
    }

    /// Once per hour: hosts silent while their group is active, as alerts, and the final counts of
    /// the hours that raised anomalies.
    fn new_hour(&self, now: i64) -> Vec<(Alert, Option<String>)> {
        let hour = now.div_euclid(HOUR);
        {
            let mut last = self.last_silence_check.lock().unwrap_or_else(|e| e.into_inner());
            if *last == hour {
                return Vec::new();
            }
            *last = hour;
        }
        let mut out = Vec::new();
        for tenant in self.live.tenants() {
            for f in self.live.silences(&tenant, now) {
                self.metrics.add("cordon_anomalies_total", "direction=\"below\"", HELP_ANOMALIES, 1);
                out.push((anomaly::alert::alert(&f), None));
            }
            // Hours that just closed: their alerts get the hour's final count.
            for f in self.live.closed_hours(&tenant, now) {
                out.push((anomaly::alert::alert(&f), None));
            }
        }
        out
    }
}

impl Analyser for LoginCounts {
    fn name(&self) -> &'static str {
        "logins"
    }

    fn analyse(&self, batch: &Committed<'_>, found: &mut Findings) {
        let logins: Vec<Login> = batch.records.iter().filter_map(|r| login(r)).collect();
        if !logins.is_empty() {
            found.alerts.extend(crate::cpu(|| self.count(&logins, batch.now)));
        }
        self.idle(batch.now, found);
    }

    fn idle(&self, now: i64, found: &mut Findings) {
        found.alerts.extend(self.new_hour(now));
    }

    /// The hours the live counts keep, so the hour in progress is judged on all of its logins, not
    /// just those after the restart.
    fn restore_from(&self, now: i64) -> Option<i64> {
        Some(now - anomaly::live::KEEP_HOURS as i64 * HOUR)
    }

    /// Counts the stored logins without raising anything (what they raised before is recorded),
    /// leaving those not analysed before the restart to the analysis that runs them again.
    fn restore(&self, replay: &Replay<'_>, _found: &mut Findings) {
        let analysed =
            |r: &&Record| !r.cell(col::EVENT_ID).as_str().is_some_and(|id| replay.unanalysed.contains(id));
        for l in replay.for_analyser(self).iter().filter(analysed).filter_map(login) {
            let _already_raised = l.observe(&self.live);
        }
    }
}
