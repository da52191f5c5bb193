//! The two-condition rule: a count is anomalous when it leaves **both** the host's own forecast
//! interval **and** its group's fleet band. Either one alone fires too often: a host's own interval is
//! narrow on a quiet host and flags every small wobble; the fleet band is wide enough for the busiest
//! host and misses what is odd for a quiet one. Hosts without a forecast of their own yet are judged
//! against the fleet band alone, and the finding says so.
//!
//! Counts can only grow within an hour, so an hour's running count is checked as it grows: once it is
//! past both upper bounds it will stay past them, and the finding is raised without waiting for the
//! hour to end. Deviations below (a host that goes silent) are judged over several whole hours, with
//! their own level.

use crate::bands::Band;
use crate::forecast::HourForecast;

/// What is being counted.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Successful logins.
    Logins,
    /// Failed logins.
    Failures,
    /// Interactive successful logins (logon types 2, 10, 11; console and RDP).
    Interactive,
}

impl Measure {
    /// Every measure.
    pub const ALL: [Measure; 3] = [Measure::Logins, Measure::Failures, Measure::Interactive];

    /// What an analyst reads.
    pub fn noun(self) -> &'static str {
        match self {
            Measure::Logins => "logins",
            Measure::Failures => "failed logins",
            Measure::Interactive => "interactive logins",
        }
    }

    /// The snake-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::Logins => "logins",
            Measure::Failures => "failures",
            Measure::Interactive => "interactive",
        }
    }

    /// Parses [`Measure::as_str`].
    pub fn parse(s: &str) -> Option<Measure> {
        Measure::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// Where a host's expectation comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Its own forecast.
    Forecast,
    /// Its group's fleet band: too little history of its own.
    FleetBand,
    /// No band for its group yet (a new group or role): the widest band of the tenant's other
    /// groups, as a prior.
    GroupPrior,
    /// Neither a forecast nor a band yet (a new tenant, a new group, the first day): the absolute
    /// ceiling alone ([`ceiling`]).
    Ceiling,
}

/// The absolute ceiling of a measure: logins in one hour on one host that no learned band can make
/// normal, and that judge a host before any band exists. Far above what the fleet simulator's busiest
/// servers do in an hour (tens to low hundreds), far below a brute force or a credential spray.
pub fn ceiling(m: Measure) -> f64 {
    match m {
        Measure::Logins => 2_000.0,
        Measure::Failures => 200.0,
        Measure::Interactive => 100.0,
    }
}

/// What one host-hour-measure is expected to be.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Expected {
    /// The host's own forecast (for [`Basis::FleetBand`], the band's median to p99).
    pub own: HourForecast,
    /// The group's band at that hour of the week.
    pub fleet: Band,
    /// Where `own` comes from.
    pub basis: Basis,
}

impl Expected {
    /// The expectation before any band exists: nothing, up to the measure's absolute ceiling.
    pub fn ceiling(m: Measure) -> Expected {
        let c = ceiling(m);
        Expected {
            own: HourForecast { point: 0.0, lower: 0.0, upper: c },
            fleet: Band { median: 0.0, upper: c, quantile: 1.0, n: 0, outliers: 0 },
            basis: Basis::Ceiling,
        }
    }

    /// The expectation of a host with no forecast of its own: its group's band.
    pub fn from_band(fleet: Band) -> Expected {
        Expected {
            own: HourForecast { point: fleet.median, lower: 0.0, upper: fleet.upper },
            fleet,
            basis: Basis::FleetBand,
        }
    }
}

/// Above or below.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// More than expected.
    Above,
    /// Fewer than expected (silence).
    Below,
}

/// One deviation.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    /// What was counted.
    pub measure: Measure,
    /// Above or below.
    pub direction: Direction,
    /// The count observed.
    pub observed: u32,
    /// What was expected.
    pub expected: Expected,
    /// Hours the finding covers (1 for above; the silent run for below).
    pub hours: u32,
    /// 1 (informational) to 5 (critical), from the size of the deviation.
    pub level: u8,
    /// "expected 3 (1-6), fleet p99 9, observed 41".
    pub explanation: String,
}

fn num(v: f64) -> String {
    if v >= 10.0 || (v - v.round()).abs() < 0.05 { format!("{:.0}", v) } else { format!("{v:.1}") }
}

/// The threshold above which a count is anomalous: past the host's upper bound and past the fleet's
/// p99 (for a host judged on the band alone, past the band's p99). At least one login.
pub fn above_threshold(e: &Expected) -> f64 {
    e.own.upper.max(e.fleet.upper).max(1.0)
}

/// How far past the larger bound a count must be: bounds are on counts, and one login past a bound of
/// one is within what integer noise does somewhere in a fleet every hour.
pub const MIN_EXCESS: f64 = 2.0;

/// Checks an hour's (running) count against the two conditions; `None` while it is inside either
/// or less than [`MIN_EXCESS`] past the larger bound.
pub fn above(measure: Measure, observed: u32, e: &Expected) -> Option<Finding> {
    // No learned bound goes past the absolute ceiling.
    let capped = above_threshold(e) > ceiling(measure);
    let threshold = above_threshold(e).min(ceiling(measure));
    if f64::from(observed) < threshold + MIN_EXCESS {
        return None;
    }
    let ratio = f64::from(observed) / threshold;
    let mut level = match ratio {
        r if r < 2.0 => 2,
        r if r < 4.0 => 3,
        r if r < 10.0 => 4,
        _ => 5,
    };
    if measure == Measure::Logins && level > 3 {
        // Many successful logins is odd; many failures or interactive logins on a server is an attack.
        level = 3;
    }
    let own = match e.basis {
        Basis::Forecast => {
            format!("expected {} ({}-{})", num(e.own.point), num(e.own.lower), num(e.own.upper))
        }
        Basis::FleetBand => "no baseline of its own yet".to_owned(),
        Basis::GroupPrior => {
            "no band for its group yet: judged on the widest band of the other groups".to_owned()
        }
        Basis::Ceiling => format!(
            "no baseline for the host or its group yet: judged against the absolute ceiling of {} an hour",
            num(ceiling(measure))
        ),
    };
    let explanation = match (e.basis, capped) {
        (Basis::Ceiling, _) => format!("{own}, observed {observed} {}", measure.noun()),
        (_, true) => format!(
            "{own}, fleet {} {}, past the absolute ceiling of {} an hour, observed {observed} {}",
            crate::bands::quantile_label(e.fleet.quantile),
            num(e.fleet.upper),
            num(ceiling(measure)),
            measure.noun()
        ),
        (_, false) => format!(
            "{own}, fleet {} {}, observed {observed} {}",
            crate::bands::quantile_label(e.fleet.quantile),
            num(e.fleet.upper),
            measure.noun()
        ),
    };
    Some(Finding {
        measure,
        direction: Direction::Above,
        observed,
        expected: *e,
        hours: 1,
        level,
        explanation,
    })
}

/// The fewest silent hours that make a finding.
pub const SILENT_HOURS: usize = 3;

/// The least total a silent run's forecasts must add up to: `P(0 | Poisson(10))` is 0.005%.
pub const SILENT_EXPECTED: f64 = 10.0;

/// Whether a host group was working over a run of hours: its hosts' observed median logins, summed
/// over the run, are at least half of what its bands' medians expected (and those expected at least
/// one). On a holiday the whole group is quiet and a quiet host is no news.
pub fn fleet_active(band_medians: f64, observed_medians: f64) -> bool {
    band_medians >= 1.0 && observed_medians >= 0.5 * band_medians
}

/// Checks a run of whole hours with no logins at all against what was expected over them: the
/// host's own forecasts (none of them the fleet band's fallback) must add up to at least
/// [`SILENT_EXPECTED`], and the fleet must have been active (`fleet_active`: the group's hosts logged
/// in as usual those hours; not a holiday).
pub fn silent(run: &[Expected], fleet_active: bool) -> Option<Finding> {
    if run.len() < SILENT_HOURS || !fleet_active {
        return None;
    }
    let expected: f64 = run.iter().map(|e| e.own.point).sum();
    let lower: f64 = run.iter().map(|e| e.own.lower).sum();
    if expected < SILENT_EXPECTED || run.iter().any(|e| e.basis != Basis::Forecast) {
        return None;
    }
    let level = if expected >= 30.0 { 3 } else { 2 };
    let first = run[0];
    let explanation = format!(
        "expected {} logins over {} hours (at least {}), fleet active, observed 0",
        num(expected),
        run.len(),
        num(lower)
    );
    Some(Finding {
        measure: Measure::Logins,
        direction: Direction::Below,
        observed: 0,
        expected: Expected {
            own: HourForecast { point: expected, lower, upper: run.iter().map(|e| e.own.upper).sum() },
            fleet: first.fleet,
            basis: Basis::Forecast,
        },
        hours: run.len() as u32,
        level,
        explanation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No learned band can make a count past the absolute ceiling normal, and the finding says so.
    #[test]
    fn the_ceiling_caps_a_learned_band() {
        let wide = e(3_000.0, 0.0, 5_000.0, 9_000.0);
        assert!(above(Measure::Logins, 1_500, &wide).is_none());
        let f = above(Measure::Failures, 260, &wide).expect("past the failures ceiling");
        assert!(f.explanation.contains("past the absolute ceiling of 200 an hour"), "{}", f.explanation);
        assert!(above(Measure::Failures, 201, &wide).is_none(), "two past, as any bound");
    }

    fn e(point: f64, lower: f64, upper: f64, p99: f64) -> Expected {
        Expected {
            own: HourForecast { point, lower, upper },
            fleet: Band { median: 2.0, upper: p99, quantile: 0.99, n: 100, outliers: 0 },
            basis: Basis::Forecast,
        }
    }

    #[test]
    fn both_conditions_must_hold_and_the_explanation_says_why() {
        let x = e(3.0, 1.0, 6.0, 9.0);
        assert!(above(Measure::Failures, 8, &x).is_none(), "inside the fleet band");
        assert!(above(Measure::Failures, 9, &x).is_none());
        let f = above(Measure::Failures, 41, &x).unwrap();
        assert_eq!(f.explanation, "expected 3 (1-6), fleet p99 9, observed 41 failed logins");
        assert_eq!(f.level, 4, "41 is 4.6 times the larger bound");
        assert_eq!(above(Measure::Failures, 90, &x).unwrap().level, 5);
        // Past both bounds, but by less than the margin: integer noise.
        assert!(above(Measure::Failures, 10, &x).is_none());
        assert_eq!(above(Measure::Failures, 11, &x).unwrap().level, 2);
        // Above the band and within a high own bound: no finding.
        assert!(above(Measure::Failures, 15, &e(3.0, 1.0, 20.0, 9.0)).is_none());
        // A quiet host's own bound is low, but the fleet's is not: no finding.
        assert!(above(Measure::Failures, 7, &e(0.2, 0.0, 2.0, 9.0)).is_none());
        // Successful logins cap at medium.
        assert_eq!(above(Measure::Logins, 400, &x).unwrap().level, 3);
        let band = Expected::from_band(Band { median: 1.0, upper: 4.0, quantile: 0.99, n: 10, outliers: 0 });
        assert_eq!(
            above(Measure::Failures, 30, &band).unwrap().explanation,
            "no baseline of its own yet, fleet p99 4, observed 30 failed logins"
        );
    }

    #[test]
    fn silence_needs_hours_an_expectation_and_an_active_fleet() {
        let busy = e(4.0, 1.0, 9.0, 12.0);
        let run = [busy; 4];
        let f = silent(&run, true).unwrap();
        assert_eq!((f.direction, f.hours, f.level), (Direction::Below, 4, 2));
        assert_eq!(f.explanation, "expected 16 logins over 4 hours (at least 4), fleet active, observed 0");
        assert!(silent(&run, false).is_none(), "a holiday: the whole fleet is quiet");
        assert!(silent(&run[..2], true).is_none());
        assert!(silent(&[e(0.5, 0.0, 3.0, 4.0); 5], true).is_none(), "a quiet host's night");
    }
}
