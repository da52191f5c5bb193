//! Fleet bands: for every hour of the week, the population interval of login counts across
//! comparable hosts (one band per host group or role: servers and workstations differ).
//!
//! A band must stay put when the outliers it is meant to find are in its data, so it is computed
//! robustly: per hour of the week, the values of every host and every week are pooled; values beyond
//! the median plus ten times the scaled median absolute deviation (gross outliers: a brute-force
//! burst) are set aside; the band is the median and the upper quantile (99.9% by default) of what
//! remains.

/// Hours in a week.
pub const WEEK: usize = 168;

/// One hour of the week's band.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Band {
    /// The fleet's median.
    pub median: f64,
    /// The fleet's upper quantile ([`FleetBand::quantile`], 99.9% by default), outliers set aside:
    /// "fleet p99.9".
    pub upper: f64,
    /// The quantile `upper` is (0.999: "p99.9").
    pub quantile: f64,
    /// Values the band was computed from.
    pub n: usize,
    /// Values set aside as gross outliers.
    pub outliers: usize,
}

impl Default for Band {
    fn default() -> Self {
        Band { median: 0.0, upper: 0.0, quantile: DEFAULT_QUANTILE, n: 0, outliers: 0 }
    }
}

/// A group's band for each of the 168 hours of the week (index 0 = Monday 00:00 UTC).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FleetBand {
    /// Per hour of the week.
    pub hours: Vec<Band>,
    /// The quantile `upper` is.
    pub quantile: f64,
}

/// The default upper quantile of a band: a fleet of a thousand hosts has a thousand host-hours an
/// hour, so a 99th percentile is crossed by ten of them every hour by chance alone.
pub const DEFAULT_QUANTILE: f64 = 0.999;

/// How a quantile is written in explanations: `p99`, `p99.9`.
pub fn quantile_label(q: f64) -> String {
    let pct = (q * 1000.0).round() / 10.0;
    if (pct - pct.round()).abs() < 1e-9 { format!("p{pct:.0}") } else { format!("p{pct:.1}") }
}

fn quantile_of(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = (q * (sorted.len() - 1) as f64).ceil() as usize;
    sorted[at.min(sorted.len() - 1)]
}

impl FleetBand {
    /// The band of a group of hosts' hourly series, all starting at the same hour, whose hour of the
    /// week is `first_hour_of_week`.
    pub fn compute<'a>(series: impl IntoIterator<Item = &'a [u32]>, first_hour_of_week: usize) -> FleetBand {
        FleetBand::compute_from(series.into_iter().map(|s| (s, first_hour_of_week)), DEFAULT_QUANTILE)
    }

    /// The band, at upper quantile `quantile`, of hourly series that may start at different hours:
    /// `(series, hour of the week of its first value)`.
    pub fn compute_from<'a>(
        series: impl IntoIterator<Item = (&'a [u32], usize)>,
        quantile: f64,
    ) -> FleetBand {
        let mut pooled: Vec<Vec<f64>> = vec![Vec::new(); WEEK];
        for (s, first_hour_of_week) in series {
            for (t, v) in s.iter().enumerate() {
                pooled[(first_hour_of_week + t) % WEEK].push(f64::from(*v));
            }
        }
        let q = quantile;
        let hours = pooled
            .into_iter()
            .map(|mut v| {
                if v.is_empty() {
                    return Band { quantile: q, ..Band::default() };
                }
                v.sort_by(f64::total_cmp);
                let median = quantile_of(&v, 0.5);
                let mut dev: Vec<f64> = v.iter().map(|x| (x - median).abs()).collect();
                dev.sort_by(f64::total_cmp);
                let mad = 1.4826 * quantile_of(&dev, 0.5);
                // With a MAD of zero (mostly zeros at night) keep anything within a few logins.
                let fence = median + 10.0 * mad.max(0.5);
                let kept: Vec<f64> = v.iter().copied().filter(|x| *x <= fence).collect();
                Band {
                    median,
                    upper: quantile_of(&kept, q),
                    quantile: q,
                    n: kept.len(),
                    outliers: v.len() - kept.len(),
                }
            })
            .collect();
        FleetBand { hours, quantile: q }
    }

    /// The band at hour-of-week `h`.
    pub fn at(&self, hour_of_week: usize) -> Band {
        self.hours.get(hour_of_week % WEEK).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fixtures::logins::{AnomalyKind, LoginFleet, LoginSimConfig, Role};

    #[test]
    fn bands_follow_the_week_per_role_and_burst_hours_leave_them() {
        let f = LoginFleet::generate(&LoginSimConfig {
            hosts: 400,
            days: 42,
            seed: 3,
            first_weekday: 0,
            anomalies_per_kind: 8,
        });
        let group =
            |role: Role| -> Vec<usize> { (0..f.hosts.len()).filter(|&h| f.hosts[h].role == role).collect() };
        let ws = group(Role::Workstation);
        let band_of = |hosts: &[usize], data: &Vec<Vec<u32>>| {
            FleetBand::compute(hosts.iter().map(|&h| data[h].as_slice()), 0)
        };
        let ws_ok = band_of(&ws, &f.success);
        let srv_ok = band_of(&group(Role::Server), &f.success);
        // Monday 10:00 against Sunday 03:00; servers are busier at night than workstations.
        assert!(
            ws_ok.at(10).upper > 5.0 * ws_ok.at(6 * 24 + 3).upper.max(1.0),
            "{:?} {:?}",
            ws_ok.at(10),
            ws_ok.at(6 * 24 + 3)
        );
        assert!(srv_ok.at(2).median > ws_ok.at(2).median);
        // Failures: every brute-force hour is above its group's fleet p99.9; ordinary hours rarely are.
        let fail = FleetBand::compute((0..f.hosts.len()).map(|h| f.failure[h].as_slice()), 0);
        let bursts: Vec<_> = f.labels.iter().filter(|l| l.kind == AnomalyKind::BruteForce).collect();
        assert!(!bursts.is_empty());
        for l in &bursts {
            for t in l.start..l.start + l.hours {
                assert!(
                    f64::from(f.failure[l.host][t]) > fail.at(t).upper,
                    "{l:?} hour {t}: {} vs {:?}",
                    f.failure[l.host][t],
                    fail.at(t)
                );
            }
        }
        let (mut over, mut total) = (0usize, 0usize);
        for h in 0..f.hosts.len() {
            for t in 0..f.hours {
                if f.label_at(h, t).is_none() {
                    total += 1;
                    over += usize::from(f64::from(f.failure[h][t]) > fail.at(t).upper);
                }
            }
        }
        assert!((over as f64) < 0.02 * total as f64, "{over} of {total} ordinary hours above the band");
        // The bursts are set aside, not averaged in: the band at a burst's hour is ordinary.
        assert!(fail.hours.iter().map(|b| b.outliers).sum::<usize>() > 0);
        assert!(
            fail.hours.iter().all(|b| b.upper < 20.0),
            "{:?}",
            fail.hours.iter().map(|b| b.upper).fold(0.0, f64::max)
        );
    }
}
