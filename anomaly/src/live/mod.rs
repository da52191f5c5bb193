//! The baselines at work: fitted models per tenant (refitted on a schedule from the lake), and each
//! host's running counts as events arrive, checked against them.
//!
//! - [`fit_tenant`] turns a tenant's hourly series (from the lake) into [`TenantModels`]: per host and
//!   measure a forecast of the next hours (or the fleet band's fallback, with the reason), per host
//!   group and measure a fleet band. It is CPU work for a bounded pool.
//! - [`Live::observe`] counts one authentication event into its host's hour and returns a finding the
//!   first time the hour's count leaves both bounds (and again each time its level rises).
//! - [`Live::silences`] looks, at the end of each hour, for hosts whose expected logins have not come
//!   for [`crate::detect::SILENT_HOURS`] hours while their group was active.
//!
//! The running counts keep the last two days of hours per host, which is also what the API adds to
//! the lake's series for the hour in progress.

use crate::bands::{FleetBand, WEEK};
use crate::detect::{Basis, Expected, Finding, Measure, above, fleet_active, silent};
use crate::forecast::{ForecastConfig, HourForecast};
use crate::series::{HOUR, LoginSeries, hour_floor};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, RwLock};

/// The models of a tenant none were fitted for yet.
static NO_MODELS: std::sync::LazyLock<TenantModels> = std::sync::LazyLock::new(TenantModels::default);

/// Hours of running counts kept per host.
pub const KEEP_HOURS: usize = 48;
/// Event ids kept per host-hour-measure as the finding's evidence.
const EVIDENCE: usize = 100;

/// The hour of the week (0 = Monday 00:00 UTC) of the hour starting at `t` (microseconds).
pub fn hour_of_week(t: i64) -> usize {
    // 1970-01-01 was a Thursday: three days after a Monday.
    (t.div_euclid(HOUR) + 72).rem_euclid(WEEK as i64) as usize
}

/// The logon types counted as interactive: console, remote interactive (RDP), cached interactive and
/// cached remote interactive.
pub fn is_interactive(logon_type: &str) -> bool {
    matches!(logon_type, "2" | "10" | "11" | "12")
}

/// One host's models.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HostModel {
    /// Its host group (`""` when the events named none).
    pub group: String,
    /// Hours of history it had.
    pub history_hours: usize,
    /// Per measure: the forecast from `TenantModels::start`, or why there is none.
    pub forecasts: BTreeMap<Measure, Result<Vec<HourForecast>, String>>,
    /// The share of its successful logins that were interactive. Where nearly all are (a user's
    /// workstation), interactive logins are its logins, and only the logins measure raises.
    pub interactive_share: f64,
}

/// At or above this share of interactive logins, a host's interactive measure does not raise.
pub const INTERACTIVE_IS_LOGINS: f64 = 0.9;

/// A tenant's fitted models.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TenantModels {
    /// Start of the first forecast hour (the refit's hour).
    pub start: i64,
    /// When they were fitted (microseconds).
    pub fitted_at: i64,
    /// Per host.
    pub hosts: HashMap<String, HostModel>,
    /// Per (host group, measure).
    pub bands: HashMap<(String, Measure), FleetBand>,
    /// Wall milliseconds the fit took.
    pub fit_millis: u64,
}

impl TenantModels {
    /// What `host` (in `group`) is expected to do in the hour starting at `hour`, for `measure`.
    /// A group with no band yet takes the widest band of the tenant's other groups as its prior;
    /// `None` when the tenant has no band at all (then the absolute ceiling judges).
    pub fn expected(&self, host: &str, group: &str, hour: i64, measure: Measure) -> Option<Expected> {
        let model = self.hosts.get(host);
        let group = model.map_or(group, |m| m.group.as_str());
        let how = hour_of_week(hour);
        let Some(band) = self.bands.get(&(group.to_owned(), measure)) else {
            let widest = self
                .bands
                .iter()
                .filter(|((_, m), _)| *m == measure)
                .map(|(_, b)| b.at(how))
                .max_by(|a, b| a.upper.total_cmp(&b.upper))?;
            return Some(Expected { basis: Basis::GroupPrior, ..Expected::from_band(widest) });
        };
        let fleet = band.at(how);
        let own = model.and_then(|m| m.forecasts.get(&measure)).and_then(|f| f.as_ref().ok()).and_then(|v| {
            let k = usize::try_from((hour_floor(hour) - self.start) / HOUR).ok()?;
            v.get(k).copied()
        });
        Some(match own {
            Some(own) => Expected { own, fleet, basis: Basis::Forecast },
            None => Expected::from_band(fleet),
        })
    }

    /// What judges a count: [`TenantModels::expected`], else (no band at all yet) the absolute
    /// ceiling.
    pub fn judged(&self, host: &str, group: &str, hour: i64, measure: Measure) -> Expected {
        self.expected(host, group, hour, measure).unwrap_or_else(|| Expected::ceiling(measure))
    }
}

/// A measure's hourly series from a [`LoginSeries`].
pub fn measure_series(s: &LoginSeries, m: Measure) -> Vec<u32> {
    match m {
        Measure::Logins => s.success.clone(),
        Measure::Failures => s.failure.clone(),
        Measure::Interactive => {
            let mut v = vec![0u32; s.len()];
            for (k, counts) in &s.by_type {
                if is_interactive(k) {
                    for (a, b) in v.iter_mut().zip(counts) {
                        *a += b;
                    }
                }
            }
            v
        }
    }
}

/// Fits a tenant's models from its hosts' series (all over the same hours, ending where the
/// forecasts start) and their groups, on at most `threads` threads. A host's history starts at its
/// first login in the range: a host that appeared yesterday has a day of history, not weeks of zeros.
pub fn fit_tenant(
    series: &[LoginSeries],
    groups: &HashMap<String, String>,
    cfg: &ForecastConfig,
    threads: usize,
    now: i64,
) -> TenantModels {
    let clock = std::time::Instant::now();
    let Some(first) = series.first() else {
        return TenantModels { fitted_at: now, ..Default::default() };
    };
    let start = first.start + first.len() as i64 * HOUR;
    let group_of = |h: &LoginSeries| groups.get(&h.host).cloned().unwrap_or_default();
    let born: Vec<usize> = series
        .iter()
        .map(|s| (0..s.len()).find(|&t| s.success[t] + s.failure[t] > 0).unwrap_or(s.len()))
        .collect();
    let mut jobs: Vec<(usize, Measure, Vec<u32>)> = Vec::new();
    let mut bands = HashMap::new();
    for m in Measure::ALL {
        let data: Vec<Vec<u32>> = series.iter().map(|s| measure_series(s, m)).collect();
        let mut by_group: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, s) in series.iter().enumerate() {
            by_group.entry(group_of(s)).or_default().push(i);
        }
        for (g, members) in by_group {
            // Hours before a host appeared are not zeros of its own: leave them out of the band.
            let band = FleetBand::compute_from(
                members
                    .iter()
                    .map(|&i| (&data[i][born[i]..], hour_of_week(first.start + born[i] as i64 * HOUR))),
                cfg.fleet_quantile,
            );
            bands.insert((g, m), band);
        }
        for (i, d) in data.into_iter().enumerate() {
            jobs.push((i, m, d[born[i]..].to_vec()));
        }
    }
    let fits = crate::pool::map_bounded(jobs.len(), threads, |k| crate::forecast::forecast(&jobs[k].2, cfg));
    let mut hosts: HashMap<String, HostModel> = HashMap::new();
    for ((i, m, hist), fit) in jobs.iter().zip(fits) {
        let s = &series[*i];
        let model = hosts.entry(s.host.clone()).or_insert_with(|| {
            let logins: u64 = s.success.iter().map(|v| u64::from(*v)).sum();
            let interactive: u64 =
                measure_series(s, Measure::Interactive).iter().map(|v| u64::from(*v)).sum();
            HostModel {
                group: group_of(s),
                history_hours: hist.len(),
                forecasts: BTreeMap::new(),
                interactive_share: if logins == 0 { 0.0 } else { interactive as f64 / logins as f64 },
            }
        });
        model.forecasts.insert(*m, fit.map_err(|e| e.to_string()));
    }
    TenantModels { start, fitted_at: now, hosts, bands, fit_millis: clock.elapsed().as_millis() as u64 }
}

/// Forgets the event ids of hours older than the newest [`SEEN_HOURS`].
fn release_seen(hours: &mut VecDeque<HourCounts>) {
    let Some(newest) = hours.back().map(|h| h.hour) else { return };
    for h in hours.iter_mut().filter(|h| h.hour <= newest - SEEN_HOURS * HOUR && !h.seen.is_empty()) {
        h.seen = HashSet::new();
    }
}

/// One hour of a host's running counts.
#[derive(Clone, Debug, Default)]
struct HourCounts {
    hour: i64,
    counts: [u32; 3],
    /// The level last raised per measure (0: none).
    raised: [u8; 3],
    /// The count at the last raise per measure (the hour-close update is sent if it grew since).
    raised_at: [u32; 3],
    evidence: [Vec<String>; 3],
    /// Event ids counted (hashed): a redelivered event is not counted twice. Kept while the hour
    /// is one of the host's newest [`SEEN_HOURS`], then released.
    seen: HashSet<u64>,
}

#[derive(Debug, Default)]
struct Running {
    group: String,
    hours: VecDeque<HourCounts>,
    /// The last hour a silence was reported up to.
    silent_reported: i64,
}

/// Hours, counted back from a host's newest, whose event ids are remembered. A redelivery comes
/// within the consumer's ack wait (a minute) of the first delivery, and ingest's batch keys already
/// keep a committed batch from being analysed twice; 48 hours of ids per host would be most of the
/// counter's memory.
const SEEN_HOURS: i64 = 2;

/// Hours of series an alert carries: the day up to the finding's hour.
const AROUND_HOURS: i64 = 24;

/// The day of hours up to and including `hour`, every hour present: (hour, observed, expected).
fn around(
    r: &Running,
    models: &TenantModels,
    host: &str,
    hour: i64,
    m: Measure,
) -> Vec<(i64, u32, Option<Expected>)> {
    let i = index(m);
    (0..AROUND_HOURS)
        .map(|k| hour - (AROUND_HOURS - 1 - k) * HOUR)
        .map(|h| {
            let n = r.hours.iter().find(|x| x.hour == h).map_or(0, |x| x.counts[i]);
            (h, n, models.expected(host, &r.group, h, m))
        })
        .collect()
}

/// Records a raise of `f` for the hour at `pos` and returns the finding with its evidence and the
/// day's series.
fn raise(
    tenant: &str,
    host: &str,
    r: &mut Running,
    pos: usize,
    models: &TenantModels,
    f: Finding,
) -> LiveFinding {
    let i = index(f.measure);
    let hour = r.hours[pos].hour;
    let slot = &mut r.hours[pos];
    slot.raised[i] = slot.raised[i].max(f.level);
    slot.raised_at[i] = slot.counts[i];
    let evidence = slot.evidence[i].clone();
    let around = around(r, models, host, hour, f.measure);
    LiveFinding {
        tenant: tenant.to_owned(),
        host: host.to_owned(),
        group: r.group.clone(),
        hour,
        finding: f,
        evidence,
        around,
    }
}

/// A finding with what the alert needs.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LiveFinding {
    /// Tenant.
    pub tenant: String,
    /// Host.
    pub host: String,
    /// Host group.
    pub group: String,
    /// Start of the (first) hour.
    pub hour: i64,
    /// The finding.
    pub finding: Finding,
    /// The events behind the count.
    pub evidence: Vec<String>,
    /// The series around it: (hour, observed, expected) for the hours kept, oldest first.
    pub around: Vec<(i64, u32, Option<Expected>)>,
}

/// The live state: models per tenant and running counts per host.
#[derive(Debug, Default)]
pub struct Live {
    models: RwLock<HashMap<String, Arc<TenantModels>>>,
    running: Mutex<HashMap<(String, String), Running>>,
}

fn index(m: Measure) -> usize {
    match m {
        Measure::Logins => 0,
        Measure::Failures => 1,
        Measure::Interactive => 2,
    }
}

impl Live {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs a tenant's freshly fitted models.
    pub fn install(&self, tenant: &str, models: TenantModels) {
        self.models.write().expect("models lock").insert(tenant.to_owned(), Arc::new(models));
    }

    /// Tenants with models.
    pub fn tenants(&self) -> Vec<String> {
        self.models.read().expect("models lock").keys().cloned().collect()
    }

    /// A tenant's models, if fitted.
    pub fn models(&self, tenant: &str) -> Option<Arc<TenantModels>> {
        self.models.read().expect("models lock").get(tenant).cloned()
    }

    /// The running counts of a host's kept hours: (hour, [logins, failures, interactive]).
    pub fn recent(&self, tenant: &str, host: &str) -> Vec<(i64, [u32; 3])> {
        let running = self.running.lock().expect("running lock");
        running
            .get(&(tenant.to_owned(), host.to_owned()))
            .map(|r| r.hours.iter().map(|h| (h.hour, h.counts)).collect())
            .unwrap_or_default()
    }

    /// Counts one authentication event (`outcome` `success` or `failure`) and returns the findings it
    /// raises: at most one per measure, the first time the hour's count leaves both bounds and each
    /// time its level rises.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &self,
        tenant: &str,
        host: &str,
        group: Option<&str>,
        time: i64,
        outcome: &str,
        logon_type: &str,
        event_id: &str,
    ) -> Vec<LiveFinding> {
        let measures: &[Measure] = match outcome {
            "success" if is_interactive(logon_type) => &[Measure::Logins, Measure::Interactive],
            "success" => &[Measure::Logins],
            "failure" => &[Measure::Failures],
            _ => return Vec::new(),
        };
        let hour = hour_floor(time);
        let models = self.models(tenant);
        let mut running = self.running.lock().expect("running lock");
        let r = running.entry((tenant.to_owned(), host.to_owned())).or_default();
        if let Some(g) = group
            && r.group != g
        {
            r.group = g.to_owned();
        }
        let pos = match r.hours.iter().position(|h| h.hour == hour) {
            Some(p) => p,
            None => {
                if r.hours.back().is_some_and(|h| h.hour > hour + KEEP_HOURS as i64 * HOUR) {
                    return Vec::new(); // older than what is kept: the nightly report covers it
                }
                let at = r.hours.iter().position(|h| h.hour > hour).unwrap_or(r.hours.len());
                r.hours.insert(at, HourCounts { hour, ..Default::default() });
                while r.hours.len() > KEEP_HOURS {
                    r.hours.pop_front();
                }
                release_seen(&mut r.hours);
                match r.hours.iter().position(|h| h.hour == hour) {
                    Some(p) => p,
                    None => return Vec::new(),
                }
            }
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        event_id.hash(&mut hasher);
        if !r.hours[pos].seen.insert(hasher.finish()) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for &m in measures {
            let i = index(m);
            let slot = &mut r.hours[pos];
            slot.counts[i] += 1;
            if slot.evidence[i].len() < EVIDENCE {
                slot.evidence[i].push(event_id.to_owned());
            }
            // Before any model or band (a new tenant or group, the first day): the absolute ceiling.
            let models: &TenantModels = models.as_deref().unwrap_or(&NO_MODELS);
            if m == Measure::Interactive
                && models.hosts.get(host).is_some_and(|h| h.interactive_share >= INTERACTIVE_IS_LOGINS)
            {
                continue; // its logins measure speaks for it
            }
            let e = models.judged(host, &r.group, hour, m);
            let Some(f) = above(m, slot.counts[i], &e) else { continue };
            // Raised when the count first leaves both bounds, again when its level rises or the
            // count doubles (the alert keeps up with the count without one raise per event).
            if f.level <= slot.raised[i] && slot.counts[i] < 2 * slot.raised_at[i] {
                continue;
            }
            out.push(raise(tenant, host, r, pos, models, f));
        }
        out
    }

    /// For every host-hour of `tenant` before the hour of `now` that raised a finding and counted
    /// more since: the finding again with the hour's final count, so the alert ends with the whole
    /// hour's explanation and evidence.
    pub fn closed_hours(&self, tenant: &str, now: i64) -> Vec<LiveFinding> {
        let fitted = self.models(tenant);
        let models: &TenantModels = fitted.as_deref().unwrap_or(&NO_MODELS);
        let end = hour_floor(now);
        let mut out = Vec::new();
        let mut running = self.running.lock().expect("running lock");
        for ((t, host), r) in running.iter_mut() {
            if t != tenant {
                continue;
            }
            for pos in 0..r.hours.len() {
                let hour = r.hours[pos].hour;
                if hour >= end {
                    continue;
                }
                for m in Measure::ALL {
                    let i = index(m);
                    let slot = &r.hours[pos];
                    if slot.raised[i] == 0 || slot.counts[i] == slot.raised_at[i] {
                        continue;
                    }
                    let e = models.judged(host, &r.group, hour, m);
                    let Some(f) = above(m, slot.counts[i], &e) else { continue };
                    out.push(raise(tenant, host, r, pos, models, f));
                }
            }
        }
        out
    }

    /// Hosts of `tenant` silent for the last whole hours before `now` while expected to log in and
    /// while their group was active (its hosts' logins at least half the band's median, summed over
    /// the run). Each silent run is reported once.
    pub fn silences(&self, tenant: &str, now: i64) -> Vec<LiveFinding> {
        let Some(models) = self.models(tenant) else { return Vec::new() };
        let end = hour_floor(now);
        let mut running = self.running.lock().expect("running lock");
        // The group's observed logins per hour (hosts with models only), and the band's medians.
        let mut seen: HashMap<(String, i64), Vec<u32>> = HashMap::new();
        for (name, m) in &models.hosts {
            let r = running.get(&(tenant.to_owned(), name.clone()));
            for k in 1..=KEEP_HOURS as i64 {
                let hour = end - k * HOUR;
                let n = r
                    .and_then(|r| r.hours.iter().find(|h| h.hour == hour))
                    .map_or(0, |h| h.counts[0] + h.counts[1]);
                seen.entry((m.group.clone(), hour)).or_default().push(n);
            }
        }
        let median = |v: &mut Vec<u32>| {
            v.sort_unstable();
            v.get(v.len() / 2).map_or(0.0, |x| f64::from(*x))
        };
        let medians: HashMap<(String, i64), f64> =
            seen.into_iter().map(|(k, mut v)| (k, median(&mut v))).collect();
        let mut out = Vec::new();
        for (name, m) in &models.hosts {
            let r = running.entry((tenant.to_owned(), name.clone())).or_default();
            if r.group.is_empty() {
                r.group = m.group.clone();
            }
            // The whole hours since the host's last login or failure (within what is kept).
            let last_active = r.hours.iter().rev().find(|h| h.hour < end && h.counts[0] + h.counts[1] > 0);
            let from =
                last_active.map_or(end - KEEP_HOURS as i64 * HOUR, |h| h.hour + HOUR).max(models.start);
            let from = from.max(r.silent_reported);
            let hours: Vec<i64> = (0..).map(|k| from + k * HOUR).take_while(|h| *h < end).collect();
            let run: Vec<Expected> =
                hours.iter().filter_map(|h| models.expected(name, &m.group, *h, Measure::Logins)).collect();
            if run.len() != hours.len() {
                continue;
            }
            let band: f64 = run.iter().map(|e| e.fleet.median).sum();
            let observed: f64 =
                hours.iter().map(|h| medians.get(&(m.group.clone(), *h)).copied().unwrap_or(0.0)).sum();
            let active = fleet_active(band, observed);
            let Some(f) = silent(&run, active) else { continue };
            r.silent_reported = end;
            let last = hours.last().copied().unwrap_or(from);
            let around = around(r, &models, name, last, Measure::Logins);
            out.push(LiveFinding {
                tenant: tenant.to_owned(),
                host: name.clone(),
                group: m.group.clone(),
                hour: from,
                finding: f,
                evidence: Vec::new(),
                around,
            });
        }
        out
    }
}

mod refit;
pub use refit::RefitReport;

#[cfg(test)]
mod tests;
