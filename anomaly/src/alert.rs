//! Anomalies as alerts, in the uniform alert format, so that they are listed, handled and correlated
//! like any other detection.

use crate::detect::{Direction, Measure};
use crate::live::LiveFinding;
use schemas::alert::{Alert, Endpoint, Handling, RuleRef, Status, TechniqueTag};

/// The alert source of every anomaly.
pub const SOURCE: &str = "anomaly (login baseline)";

/// The rule id of a finding's kind: `cordon-anomaly-failures-above`, `cordon-anomaly-logins-below`...
pub fn rule_id(measure: Measure, direction: Direction) -> String {
    let d = match direction {
        Direction::Above => "above",
        Direction::Below => "below",
    };
    format!("cordon-anomaly-{}-{d}", measure.as_str())
}

fn title(measure: Measure, direction: Direction) -> String {
    match direction {
        Direction::Above => {
            format!("Unusually many {} (host forecast and fleet band exceeded)", measure.noun())
        }
        Direction::Below => "Host stopped logging in while its group is active".to_owned(),
    }
}

/// The techniques a deviation suggests: failures are guessing (T1110 Brute Force); unusual
/// successful or interactive logins are someone else's account in use (T1078 Valid Accounts); a
/// host going quiet suggests none by itself.
fn techniques(measure: Measure, direction: Direction) -> &'static [&'static str] {
    match (measure, direction) {
        (_, Direction::Below) => &[],
        (Measure::Failures, _) => &["T1110"],
        (Measure::Logins | Measure::Interactive, _) => &["T1078"],
    }
}

/// An anomaly alert's `why`: the finding, and the hours around it as the report and the console
/// chart them.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Why {
    /// "expected 3 (1-6), fleet p99.9 9, observed 41 failed logins".
    pub explanation: String,
    /// What was counted.
    pub measure: crate::detect::Measure,
    /// Above or below.
    pub direction: crate::detect::Direction,
    /// The count.
    pub observed: u32,
    /// Over how many hours (silences run longer than one).
    pub hours: u32,
    /// What was expected, and on which basis.
    pub expected: crate::detect::Expected,
    /// The hours around it, oldest first.
    pub series: Vec<SeriesHour>,
}

/// One hour of an anomaly's series.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct SeriesHour {
    /// The hour (RFC 3339).
    #[schemars(with = "schemas::time::Rfc3339")]
    pub hour: String,
    /// The count.
    pub observed: u32,
    /// The host's expected count, when it had an expectation then.
    pub expected: Option<f64>,
    /// Its interval's lower bound.
    pub lower: Option<f64>,
    /// Its interval's upper bound.
    pub upper: Option<f64>,
    /// The fleet band's upper bound.
    pub fleet_upper: Option<f64>,
}

/// The alert for a finding.
pub fn alert(lf: &LiveFinding) -> Alert {
    let f = &lf.finding;
    let catalog = schemas::attack::catalog();
    let ids = techniques(f.measure, f.direction);
    let mut tactics: Vec<String> = Vec::new();
    for t in ids {
        for tac in catalog.tactics_of(t) {
            if !tactics.iter().any(|x| x == tac.name) {
                tactics.push(tac.name.to_owned());
            }
        }
    }
    let last = lf.hour + i64::from(f.hours) * crate::series::HOUR - 1;
    let series: Vec<SeriesHour> = lf
        .around
        .iter()
        .map(|(h, n, e)| SeriesHour {
            hour: schemas::time::format_micros(*h),
            observed: *n,
            expected: e.map(|e| e.own.point),
            lower: e.map(|e| e.own.lower),
            upper: e.map(|e| e.own.upper),
            fleet_upper: e.map(|e| e.fleet.upper),
        })
        .collect();
    Alert {
        id: String::new(),
        tenant: lf.tenant.clone(),
        level: f.level,
        first_seen: schemas::time::format_micros(lf.hour),
        last_seen: schemas::time::format_micros(last),
        count: 1,
        object: f.measure.noun().to_owned(),
        description: format!("{}: {}", lf.host, f.explanation),
        source: SOURCE.to_owned(),
        rule: RuleRef {
            id: rule_id(f.measure, f.direction),
            title: title(f.measure, f.direction),
            author: None,
        },
        status: Status::Alerted,
        handling: Handling::Unhandled,
        endpoint: Endpoint {
            name: lf.host.clone(),
            ip: Vec::new(),
            group: (!lf.group.is_empty()).then(|| lf.group.clone()),
            account: None,
        },
        file: Default::default(),
        techniques: ids
            .iter()
            .map(|t| TechniqueTag {
                id: (*t).to_owned(),
                name: catalog.technique(t).map(|x| x.name.to_owned()).unwrap_or_default(),
            })
            .collect(),
        tactics,
        evidence: lf.evidence.clone(),
        why: serde_json::to_value(Why {
            explanation: f.explanation.clone(),
            measure: f.measure,
            direction: f.direction,
            observed: f.observed,
            hours: f.hours,
            expected: f.expected,
            series,
        })
        .unwrap_or_default(),
        log: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bands::Band;
    use crate::detect::{Expected, above};
    use crate::forecast::HourForecast;

    #[test]
    fn a_burst_of_failures_is_a_brute_force_alert_that_explains_itself() {
        let e = Expected {
            own: HourForecast { point: 3.0, lower: 1.0, upper: 6.0 },
            fleet: Band { median: 2.0, upper: 9.0, quantile: 0.99, n: 10, outliers: 0 },
            basis: crate::detect::Basis::Forecast,
        };
        let f = above(Measure::Failures, 41, &e).unwrap();
        let lf = LiveFinding {
            tenant: "t".into(),
            host: "ws-1".into(),
            group: "workstations".into(),
            hour: 1_763_337_600_000_000,
            finding: f,
            evidence: vec!["e1".into(), "e2".into()],
            around: vec![(1_763_337_600_000_000, 41, Some(e))],
        };
        let a = alert(&lf);
        assert_eq!(a.rule.id, "cordon-anomaly-failures-above");
        assert_eq!(a.description, "ws-1: expected 3 (1-6), fleet p99 9, observed 41 failed logins");
        assert_eq!(a.techniques[0].id, "T1110");
        assert_eq!(a.tactics, vec!["Credential Access"]);
        assert_eq!((a.level, a.evidence.len()), (4, 2));
        assert_eq!(a.last_seen, "2025-11-17T00:59:59.999999Z");
        assert_eq!(a.why["series"][0]["fleet_upper"], 9.0);
    }
}
