//! Anomaly reports for SOC leads: a period's login anomalies ranked by severity, per host a chart of
//! its actual counts against the forecast band it was judged by (SVG), a fleet summary, and what
//! changed since the previous report of the same schedule. Built from the anomaly alerts (whose `why`
//! carries the expectation and the day's series) and the lake's hourly counts; rendered as JSON, HTML
//! (charts inline) or CSV.

use schemas::alert::Alert;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::series::HOUR;
/// Hosts with a chart (the highest ranked).
pub const MAX_CHARTS: usize = 25;

/// One anomaly in the ranking.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ReportAnomaly {
    /// The alert.
    pub alert: String,
    /// Host.
    pub host: String,
    /// Host group.
    pub group: Option<String>,
    /// 1-5.
    pub level: u8,
    /// `failures`, `logins`, `interactive`.
    pub measure: String,
    /// `above` or `below`.
    pub direction: String,
    /// The hour (RFC 3339).
    pub at: String,
    /// The count.
    pub observed: u64,
    /// How far past the larger bound (observed / bound).
    pub ratio: f64,
    /// "expected 3 (1-6), fleet p99.9 9, observed 41 failed logins".
    pub explanation: String,
    /// The analysts' handling.
    pub handling: String,
}

/// One hour of a chart.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ChartPoint {
    /// Hour (microseconds inside, RFC 3339 outside).
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub hour: i64,
    /// The count.
    pub observed: f64,
    /// Expected, lower, upper.
    pub expected: Option<(f64, f64, f64)>,
    /// The fleet band's upper bound.
    pub fleet_upper: Option<f64>,
}

/// A host's section.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct HostSection {
    /// Host.
    pub host: String,
    /// Group.
    pub group: Option<String>,
    /// Its anomalies in the period.
    pub anomalies: usize,
    /// The highest level.
    pub max_level: u8,
    /// The hours charted (the days around its anomalies).
    pub points: Vec<ChartPoint>,
    /// The chart.
    pub svg: String,
}

/// A host group's numbers.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct GroupSummary {
    /// Hosts with logins in the period.
    pub hosts: usize,
    /// Successful logins.
    pub logins: u64,
    /// Failed logins.
    pub failures: u64,
    /// Hosts with anomalies.
    pub anomalous_hosts: usize,
}

/// The fleet's numbers.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct FleetSummary {
    /// Hosts with logins in the period.
    pub hosts: usize,
    /// Successful logins.
    pub logins: u64,
    /// Failed logins.
    pub failures: u64,
    /// Per host group (`""`: none named).
    pub groups: BTreeMap<String, GroupSummary>,
    /// Anomalies per level.
    pub by_level: BTreeMap<u8, usize>,
    /// Anomalies per measure and direction (`failures above`).
    pub by_kind: BTreeMap<String, usize>,
}

/// Against the previous report of the same schedule.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Changes {
    /// The previous report's id (none: the first of its schedule).
    pub previous: Option<String>,
    /// Its anomaly count.
    pub anomalies_before: usize,
    /// This one's.
    pub anomalies_now: usize,
    /// Hosts anomalous now and not then.
    pub new_hosts: Vec<String>,
    /// Hosts anomalous then and not now.
    pub quiet_again: Vec<String>,
    /// Hosts anomalous in both.
    pub still_anomalous: Vec<String>,
}

/// A report.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Report {
    /// Report id.
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// The schedule's name, or `on-demand`.
    pub name: String,
    /// Period start (RFC 3339).
    pub from: String,
    /// Period end, exclusive.
    pub to: String,
    /// When it was made.
    pub generated: String,
    /// The anomalies, most severe first.
    pub anomalies: Vec<ReportAnomaly>,
    /// The most anomalous hosts, with charts.
    pub hosts: Vec<HostSection>,
    /// The fleet.
    pub fleet: FleetSummary,
    /// Since the previous report.
    pub changes: Changes,
}

/// What a report is made from.
#[derive(Debug)]
pub struct ReportInput<'a> {
    /// Report id.
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Schedule name.
    pub name: String,
    /// Period start, microseconds.
    pub from: i64,
    /// Period end, exclusive.
    pub to: i64,
    /// Now.
    pub now: i64,
    /// The anomaly alerts last seen in the period.
    pub alerts: &'a [Alert],
    /// The lake's hourly counts over the period: (host, hour, outcome, logon type, n).
    pub counts: &'a [(String, i64, String, String, u64)],
    /// Host groups.
    pub groups: &'a HashMap<String, String>,
    /// The previous report of the same schedule.
    pub previous: Option<&'a Report>,
}

fn num(v: &serde_json::Value) -> Option<f64> {
    v.as_f64()
}

/// Builds a report.
pub fn build(input: &ReportInput<'_>) -> Report {
    let mut anomalies: Vec<ReportAnomaly> = input
        .alerts
        .iter()
        .map(|a| {
            let why = &a.why;
            let observed = why["observed"].as_u64().unwrap_or(a.count);
            let own = num(&why["expected"]["own"]["upper"]).unwrap_or(0.0);
            let fleet = num(&why["expected"]["fleet"]["upper"]).unwrap_or(0.0);
            let bound = own.max(fleet).max(1.0);
            let ratio = match why["direction"].as_str() {
                Some("below") => num(&why["expected"]["own"]["point"]).unwrap_or(0.0) / bound,
                _ => observed as f64 / bound,
            };
            ReportAnomaly {
                alert: a.id.clone(),
                host: a.endpoint.name.clone(),
                group: a.endpoint.group.clone(),
                level: a.level,
                measure: why["measure"].as_str().unwrap_or("").to_owned(),
                direction: why["direction"].as_str().unwrap_or("").to_owned(),
                at: a.first_seen.clone(),
                observed,
                ratio: (ratio * 100.0).round() / 100.0,
                explanation: why["explanation"].as_str().unwrap_or(&a.description).to_owned(),
                handling: a.handling.as_str().to_owned(),
            }
        })
        .collect();
    anomalies.sort_by(|a, b| {
        b.level
            .cmp(&a.level)
            .then(b.ratio.total_cmp(&a.ratio))
            .then(a.at.cmp(&b.at))
            .then(a.host.cmp(&b.host))
    });
    // Hosts, in the order of their best-ranked anomaly.
    let mut order: Vec<String> = Vec::new();
    for a in &anomalies {
        if !order.contains(&a.host) {
            order.push(a.host.clone());
        }
    }
    let mut hosts = Vec::new();
    for host in order.iter().take(MAX_CHARTS) {
        let mine: Vec<&Alert> = input.alerts.iter().filter(|a| &a.endpoint.name == host).collect();
        let mut points: BTreeMap<i64, ChartPoint> = BTreeMap::new();
        for a in &mine {
            for p in a.why["series"].as_array().into_iter().flatten() {
                let Some(hour) = p["hour"].as_str().and_then(schemas::time::parse_rfc3339_micros) else {
                    continue;
                };
                let expected = match (num(&p["expected"]), num(&p["lower"]), num(&p["upper"])) {
                    (Some(e), Some(l), Some(u)) => Some((e, l, u)),
                    _ => None,
                };
                points.insert(
                    hour,
                    ChartPoint {
                        hour,
                        observed: num(&p["observed"]).unwrap_or(0.0),
                        expected,
                        fleet_upper: num(&p["fleet_upper"]),
                    },
                );
            }
        }
        let points: Vec<ChartPoint> = points.into_values().collect();
        let mine_ranked: Vec<&ReportAnomaly> = anomalies.iter().filter(|a| &a.host == host).collect();
        hosts.push(HostSection {
            host: host.clone(),
            group: mine_ranked.first().and_then(|a| a.group.clone()),
            anomalies: mine_ranked.len(),
            max_level: mine_ranked.iter().map(|a| a.level).max().unwrap_or(0),
            svg: svg(host, &points),
            points,
        });
    }
    // The fleet.
    let mut fleet = FleetSummary::default();
    let mut seen: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (host, _, outcome, _, n) in input.counts {
        let e = seen.entry(host.clone()).or_default();
        match outcome.as_str() {
            "success" => e.0 += n,
            "failure" => e.1 += n,
            _ => {}
        }
    }
    let anomalous: BTreeSet<&str> = anomalies.iter().map(|a| a.host.as_str()).collect();
    for (host, (ok, bad)) in &seen {
        let g = fleet.groups.entry(input.groups.get(host).cloned().unwrap_or_default()).or_default();
        g.hosts += 1;
        g.logins += ok;
        g.failures += bad;
        g.anomalous_hosts += usize::from(anomalous.contains(host.as_str()));
        fleet.hosts += 1;
        fleet.logins += ok;
        fleet.failures += bad;
    }
    for a in &anomalies {
        *fleet.by_level.entry(a.level).or_default() += 1;
        *fleet.by_kind.entry(format!("{} {}", a.measure, a.direction)).or_default() += 1;
    }
    // Since the previous report.
    let mut changes = Changes { anomalies_now: anomalies.len(), ..Changes::default() };
    if let Some(p) = input.previous {
        let before: BTreeSet<&str> = p.anomalies.iter().map(|a| a.host.as_str()).collect();
        changes.previous = Some(p.id.clone());
        changes.anomalies_before = p.anomalies.len();
        changes.new_hosts = anomalous.difference(&before).map(|h| (*h).to_owned()).collect();
        changes.quiet_again = before.difference(&anomalous).map(|h| (*h).to_owned()).collect();
        changes.still_anomalous = anomalous.intersection(&before).map(|h| (*h).to_owned()).collect();
    } else {
        changes.new_hosts = anomalous.iter().map(|h| (*h).to_owned()).collect();
    }
    Report {
        id: input.id.clone(),
        tenant: input.tenant.clone(),
        name: input.name.clone(),
        from: schemas::time::format_micros(input.from),
        to: schemas::time::format_micros(input.to),
        generated: schemas::time::format_micros(input.now),
        anomalies,
        hosts,
        fleet,
        changes,
    }
}

mod render;
pub use render::{svg, to_csv, to_html};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bands::Band;
    use crate::detect::{Basis, Expected, Measure, above};
    use crate::forecast::HourForecast;
    use crate::live::LiveFinding;

    const T: i64 = 1_763_337_600_000_000;

    fn alert(host: &str, observed: u32, id: &str) -> Alert {
        let e = Expected {
            own: HourForecast { point: 1.0, lower: 0.0, upper: 4.0 },
            fleet: Band { median: 1.0, upper: 6.0, quantile: 0.999, n: 10, outliers: 0 },
            basis: Basis::Forecast,
        };
        let f = above(Measure::Failures, observed, &e).unwrap();
        let around =
            (0..24).map(|k| (T - (23 - k) * HOUR, if k == 23 { observed } else { 1 }, Some(e))).collect();
        let mut a = crate::alert::alert(&LiveFinding {
            tenant: "t".into(),
            host: host.into(),
            group: "workstations".into(),
            hour: T,
            finding: f,
            evidence: vec![],
            around,
        });
        a.id = id.into();
        a
    }

    #[test]
    fn ranked_charted_summarised_and_compared() {
        let alerts = vec![alert("ws-<1>", 9, "a1"), alert("ws-2", 80, "a2"), alert("ws-1b", 12, "a3")];
        let counts = vec![
            ("ws-<1>".to_owned(), T, "success".to_owned(), "2".to_owned(), 5),
            ("ws-2".to_owned(), T, "failure".to_owned(), "3".to_owned(), 80),
            ("srv-1".to_owned(), T, "success".to_owned(), "4".to_owned(), 40),
        ];
        let groups: HashMap<String, String> =
            [("ws-2".to_owned(), "workstations".to_owned()), ("srv-1".to_owned(), "servers".to_owned())]
                .into();
        let prev = Report {
            id: "r0".into(),
            tenant: "t".into(),
            name: "daily".into(),
            from: String::new(),
            to: String::new(),
            generated: String::new(),
            anomalies: vec![
                ReportAnomaly {
                    alert: "old".into(),
                    host: "ws-2".into(),
                    group: None,
                    level: 3,
                    measure: "failures".into(),
                    direction: "above".into(),
                    at: String::new(),
                    observed: 9,
                    ratio: 1.5,
                    explanation: String::new(),
                    handling: "unhandled".into(),
                },
                ReportAnomaly { host: "ws-9".into(), ..Default::default() },
            ],
            hosts: vec![],
            fleet: FleetSummary::default(),
            changes: Changes::default(),
        };
        let r = build(&ReportInput {
            id: "r1".into(),
            tenant: "t".into(),
            name: "daily".into(),
            from: T - 24 * HOUR,
            to: T + HOUR,
            now: T + 2 * HOUR,
            alerts: &alerts,
            counts: &counts,
            groups: &groups,
            previous: Some(&prev),
        });
        // Most severe first: 80 failures (level 5), then 12, then 9.
        let order: Vec<&str> = r.anomalies.iter().map(|a| a.host.as_str()).collect();
        assert_eq!(order, ["ws-2", "ws-1b", "ws-<1>"]);
        assert_eq!(r.anomalies[0].ratio, 13.33);
        assert_eq!(r.hosts.len(), 3);
        assert_eq!(r.hosts[0].points.len(), 24);
        assert!(
            r.hosts[0].svg.starts_with("<svg") && r.hosts[0].svg.contains("<circle"),
            "{}",
            r.hosts[0].svg
        );
        assert_eq!((r.fleet.hosts, r.fleet.logins, r.fleet.failures), (3, 45, 80));
        assert_eq!(r.fleet.groups["servers"].hosts, 1);
        assert_eq!(r.fleet.groups["workstations"].anomalous_hosts, 1);
        assert_eq!(r.fleet.by_kind["failures above"], 3);
        assert_eq!(r.changes.previous.as_deref(), Some("r0"));
        assert_eq!(r.changes.new_hosts, ["ws-1b", "ws-<1>"]);
        assert_eq!(r.changes.quiet_again, ["ws-9"]);
        assert_eq!(r.changes.still_anomalous, ["ws-2"]);
        let html = to_html(&r);
        assert!(html.contains("ws-&lt;1&gt;") && !html.contains("ws-<1>"), "host names are escaped");
        assert_eq!(html.matches("<svg").count(), 3);
        let csv = to_csv(&r);
        assert_eq!(csv.lines().count(), 4);
        assert!(csv.lines().nth(1).unwrap().starts_with("1,5,ws-2,workstations,"));
        assert!(csv.contains("\"expected 1 (0-4), fleet p99.9 6, observed 80 failed logins\""));
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    /// A host named like a formula opens as text in a spreadsheet, whatever else the cell holds.
    #[test]
    fn csv_cells_that_look_like_formulas_are_neutralised() {
        let anomaly = |host: &str, group: Option<&str>| ReportAnomaly {
            host: host.into(),
            group: group.map(str::to_owned),
            ..Default::default()
        };
        let r = Report {
            anomalies: vec![
                anomaly("=HYPERLINK(\"http://x\",\"y\")", Some("+cmd|' /C calc'!A0")),
                anomaly("@SUM(1)", Some("-2+3")),
            ],
            ..Default::default()
        };
        let csv = to_csv(&r);
        let body: Vec<&str> = csv.lines().skip(1).collect();
        assert!(body[0].contains(",\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\","), "{csv}");
        assert!(body[0].contains(",'+cmd|' /C calc'!A0,"), "{csv}");
        assert!(body[1].contains(",'@SUM(1),'-2+3,"), "{csv}");
        assert!(!csv.lines().any(|l| l.split(',').any(|c| c.starts_with(['=', '+', '@']))), "{csv}");
    }
}
