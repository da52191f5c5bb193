//! Login baselines at ingest: every stored authentication event is counted into its host's hour
//! ([`anomaly::live::Live`], shared with the API); a count that leaves both the host's forecast
//! interval and its group's fleet band becomes an anomaly alert at once, recorded and correlated like
//! any other. At each new hour, hosts that went silent while their group kept working are reported.
//!
//! The models come from the lake (`api::baselines::refit`), at start and then on the server's
//! schedule (nightly by default).

use super::Ingest;
use anomaly::live::Live;
use schemas::Record;
use schemas::fields::col;

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
