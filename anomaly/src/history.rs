//! Historical logins, judged in their own time. A log replayed from years ago, or an agent's spool
//! delivered days late, is older than the hours the live counts keep ([`crate::live::KEEP_HOURS`])
//! and far outside what the nightly refit (which ends at the wall clock) has seen. Such hours are
//! judged as the server would have judged them when they happened: each day of the host's series
//! against models fitted on the history before that day — its own forecast, and its own hours of the
//! week over the last four weeks as its band — once it has [`ForecastConfig::min_history_hours`] of
//! history; before that, against the prior the caller gives (its group's band, else the absolute
//! ceiling). The wall clock plays no part, so a burst in 2019 is measured against 2019.
//!
//! Silences are not looked for in history: they need the group's activity in the same hours.

use crate::bands::FleetBand;
use crate::detect::{Basis, Expected, Finding, Measure, above};
use crate::forecast::ForecastConfig;
use crate::live::{INTERACTIVE_IS_LOGINS, hour_of_week, is_interactive, measure_series};
use crate::series::{HOUR, LoginSeries};

/// Hours of series a finding carries: the day up to its hour (as the live findings do).
const AROUND_HOURS: usize = 24;

/// One hour of history past its expectation.
#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    /// Start of the hour.
    pub hour: i64,
    /// The finding.
    pub finding: Finding,
    /// The day up to the hour: (hour, observed, expected where it was judged).
    pub around: Vec<(i64, u32, Option<Expected>)>,
}

/// What judging a range found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Verdict {
    /// Hours past their expectation, oldest first.
    pub findings: Vec<Judged>,
    /// Hours of the range judged against a baseline of the host's own history (the rest against the
    /// prior).
    pub baselined_hours: usize,
    /// Hours of the range judged.
    pub hours: usize,
}

/// Judges the hours of `s` in `[from, to)` (microseconds; clipped to the series), day by day, each
/// day against a model fitted on the series before it. `prior` gives the expectation of an hour
/// judged before the host has enough history of its own.
pub fn judge(
    s: &LoginSeries,
    from: i64,
    to: i64,
    cfg: &ForecastConfig,
    prior: &dyn Fn(i64, Measure) -> Expected,
) -> Verdict {
    let index = |t: i64| usize::try_from((t - s.start).div_euclid(HOUR)).unwrap_or(0).min(s.len());
    let (lo, hi) = (index(from), index(to.max(from)));
    // The host's history starts at its first login: hours before it are not zeros of its own.
    let born = (0..s.len()).find(|&t| s.success[t] + s.failure[t] > 0).unwrap_or(s.len());
    let mut verdict = Verdict { hours: hi - lo, ..Verdict::default() };
    for m in Measure::ALL {
        let data = measure_series(s, m);
        if m == Measure::Interactive && interactive_is_logins(s, hi) {
            continue; // its logins measure speaks for it, as in the live judgement
        }
        let mut expected: Vec<Option<Expected>> = vec![None; s.len()];
        let mut r = lo;
        while r < hi {
            let end = (r + 24).min(hi);
            let day = expectations(&data, s.start, born, r, end, cfg);
            for (k, t) in (r..end).enumerate() {
                let at = s.start + t as i64 * HOUR;
                let e = day.as_ref().map_or_else(|| prior(at, m), |d| d[k]);
                if m == Measure::Logins && day.is_some() {
                    verdict.baselined_hours += 1;
                }
                expected[t] = Some(e);
                if let Some(finding) = above(m, data[t], &e) {
                    let around = (t.saturating_sub(AROUND_HOURS - 1)..=t)
                        .map(|i| (s.start + i as i64 * HOUR, data[i], expected[i]))
                        .collect();
                    verdict.findings.push(Judged { hour: at, finding, around });
                }
            }
            r = end;
        }
    }
    verdict.findings.sort_by_key(|j| j.hour);
    verdict
}

/// The expectations of hours `[r, end)` from the history before `r`: the host's own forecast beside
/// its own hours of the week over the last four weeks, or `None` while it has too little history.
fn expectations(
    data: &[u32],
    start: i64,
    born: usize,
    r: usize,
    end: usize,
    cfg: &ForecastConfig,
) -> Option<Vec<Expected>> {
    if born >= r || r - born < cfg.min_history_hours {
        return None;
    }
    let lo = r.saturating_sub(cfg.history_hours).max(born);
    let band =
        FleetBand::compute_from([(&data[lo..r], hour_of_week(start + lo as i64 * HOUR))], cfg.fleet_quantile);
    let mut fc = cfg.clone();
    fc.horizon_hours = end - r;
    let own = crate::forecast::forecast(&data[born..r], &fc).ok();
    Some(
        (r..end)
            .map(|t| {
                let b = band.at(hour_of_week(start + t as i64 * HOUR));
                match &own {
                    Some(v) => Expected { own: v[t - r], fleet: b, basis: Basis::Forecast },
                    None => Expected::from_band(b),
                }
            })
            .collect(),
    )
}

/// Nearly all of the host's successful logins before `end` were interactive (a user's workstation).
fn interactive_is_logins(s: &LoginSeries, end: usize) -> bool {
    let logins: u64 = s.success[..end].iter().map(|v| u64::from(*v)).sum();
    let interactive: u64 = s
        .by_type
        .iter()
        .filter(|(k, _)| is_interactive(k))
        .flat_map(|(_, v)| &v[..end])
        .map(|v| u64::from(*v))
        .sum();
    logins > 0 && interactive as f64 / logins as f64 >= INTERACTIVE_IS_LOGINS
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Three weeks of a quiet server in 2019 (a few logins each working hour, a failure now and then)
    /// with one hour of 40 failures on day 18.
    fn quiet_server() -> (LoginSeries, usize) {
        let start = 1_546_300_800_000_000; // 2019-01-01T00:00Z
        let len = 21 * 24;
        let mut success = vec![0u32; len];
        let mut failure = vec![0u32; len];
        for (t, v) in success.iter_mut().enumerate() {
            let h = t % 24;
            *v = if (8..18).contains(&h) { 2 + (t * 7 % 3) as u32 } else { u32::from(t % 5 == 0) };
        }
        for (t, v) in failure.iter_mut().enumerate() {
            *v = u32::from(t % 11 == 3);
        }
        let burst = 18 * 24 + 10;
        failure[burst] = 40;
        (LoginSeries { host: "db-7".into(), start, success, failure, by_type: BTreeMap::new() }, burst)
    }

    #[test]
    fn a_burst_years_ago_is_judged_against_the_history_before_it() {
        let (s, burst) = quiet_server();
        let to = s.start + s.len() as i64 * HOUR;
        let v = judge(&s, s.start, to, &ForecastConfig::default(), &|_, m| Expected::ceiling(m));
        let hours: Vec<i64> = v.findings.iter().map(|j| j.hour).collect();
        assert_eq!(hours, [s.start + burst as i64 * HOUR], "{:?}", v.findings);
        let f = &v.findings[0];
        assert_eq!((f.finding.measure, f.finding.observed), (Measure::Failures, 40));
        assert_eq!(f.finding.expected.basis, Basis::Forecast, "{}", f.finding.explanation);
        assert!(f.finding.explanation.starts_with("expected "), "{}", f.finding.explanation);
        assert_eq!(f.around.len(), 24);
        assert_eq!(f.around[23], (f.hour, 40, Some(f.finding.expected)));
        // Two weeks on the prior (the ceiling, which 40 is far below), then a baseline of its own.
        assert_eq!((v.hours, v.baselined_hours), (21 * 24, 7 * 24));
    }

    #[test]
    fn without_history_the_prior_judges() {
        let (s, burst) = quiet_server();
        // Only the burst's day, as if the log began there: the ceiling (200 failures) lets 40 pass,
        // a group band of a few failures an hour does not.
        let day = s.start + (burst as i64 / 24) * 24 * HOUR;
        let mut short = s.clone();
        let cut = (burst / 24) * 24;
        short.start = day;
        short.success.drain(..cut);
        short.failure.drain(..cut);
        short.success.truncate(24);
        short.failure.truncate(24);
        let cfg = ForecastConfig::default();
        let v = judge(&short, day, day + 24 * HOUR, &cfg, &|_, m| Expected::ceiling(m));
        assert!(v.findings.is_empty(), "{:?}", v.findings);
        let band = crate::bands::Band { median: 1.0, upper: 5.0, quantile: 0.999, n: 50, outliers: 0 };
        let group = |_: i64, _: Measure| Expected { basis: Basis::GroupPrior, ..Expected::from_band(band) };
        let v = judge(&short, day, day + 24 * HOUR, &cfg, &group);
        assert_eq!(v.findings.len(), 1, "{:?}", v.findings);
        assert_eq!(v.findings[0].finding.expected.basis, Basis::GroupPrior);
        assert_eq!(v.baselined_hours, 0);
    }
}
