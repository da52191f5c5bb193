//! `cordon eval anomaly`: the login baselines on the fleet simulator's labelled data, side by side
//! with what a user would otherwise run.
//!
//! The simulated fleet (`fixtures::logins`) is replayed hour by hour as the server would see it: every
//! `refit_hours` (nightly by default) each host's forecasts are refitted on its last four weeks and
//! each group's fleet bands recomputed on the same weeks; the hours up to the next refit are then
//! scored by every rule. Rules:
//!
//! - **two-condition**: outside the host's own forecast interval *and* its group's fleet band (the
//!   source talk's rule; [`anomaly::detect`]), plus silence while the fleet is active;
//! - **forecast alone**: outside the host's own interval (silence: expected logins did not come);
//! - **fleet band alone**: above the group's band (silence: the band expected logins);
//! - **z-score**: above the host's mean plus three standard deviations over the same four weeks;
//!
//! (the one-condition rules get the same margin past their bound as the two-condition rule,
//! [`anomaly::detect::MIN_EXCESS`], so the comparison is of the conditions, not of the margin);
//! - **static threshold**: 8 failures from one source within 240 s (Wazuh's rule 18153), on the
//!   events behind the counts (`LoginFleet::events_in_hour`).
//!
//! Flagged hours on a host merge into detections (consecutive hours, one hour's gap allowed). A
//! detection is true when it overlaps a label on its host; a label is found when any of its hours is
//! flagged. Precision is over detections, recall over labels.

use anomaly::bands::{FleetBand, WEEK};
use anomaly::detect::{Basis, Expected, MIN_EXCESS, Measure, above, silent};
use anomaly::forecast::{ForecastConfig, HourForecast};
use anomaly::series::HOUR;
use fixtures::logins::{AnomalyKind, LoginFleet, LoginSimConfig, Role};
use std::collections::{BTreeMap, HashMap};

/// Evaluation settings.
#[derive(Clone, Debug)]
pub struct AnomalyEvalConfig {
    /// Simulated hosts.
    pub hosts: usize,
    /// Simulated days.
    pub days: usize,
    /// Seed.
    pub seed: u64,
    /// Anomalies injected per kind.
    pub per_kind: usize,
    /// Hours between refits (24: nightly).
    pub refit_hours: usize,
    /// Threads for the fits.
    pub threads: usize,
    /// The forecast interval's level.
    pub level: f64,
    /// The fleet band's upper quantile.
    pub fleet_quantile: f64,
}

/// One rule's scores.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RuleScore {
    /// The rule.
    pub rule: String,
    /// Detections (merged flagged hours).
    pub detections: usize,
    /// Detections overlapping a label.
    pub true_detections: usize,
    /// Labels found.
    pub found: usize,
    /// Precision over detections.
    pub precision: f64,
    /// Recall over labels.
    pub recall: f64,
    /// F1.
    pub f1: f64,
    /// Labels found per kind: (found, total).
    pub by_kind: BTreeMap<String, (usize, usize)>,
}

/// The evaluation's result.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AnomalyEval {
    /// Hosts.
    pub hosts: usize,
    /// Days.
    pub days: usize,
    /// Labels scored.
    pub labels: usize,
    /// Host-hours scored.
    pub host_hours: usize,
    /// Series fitted.
    pub fits: usize,
    /// Fits that fell back to the fleet band (too short, or the model failed).
    pub fallbacks: usize,
    /// Wall seconds spent fitting.
    pub fit_seconds: f64,
    /// The rules, two-condition first.
    pub rules: Vec<RuleScore>,
}

/// Rule names, in table order.
pub const RULES: [&str; 5] = [
    "two-condition (forecast and fleet band)",
    "forecast alone",
    "fleet band alone",
    "z-score (mean + 3 sd)",
    "static 8 failures / 240 s / source",
];

const FOUR_WEEKS: usize = 672;

fn series(f: &LoginFleet, m: Measure) -> &Vec<Vec<u32>> {
    match m {
        Measure::Logins => &f.success,
        Measure::Failures => &f.failure,
        Measure::Interactive => &f.interactive,
    }
}

/// Wazuh 18153's shape: at least 8 failures from one source within 240 seconds in host `h`'s hour `t`.
fn static_rule(f: &LoginFleet, h: usize, t: usize) -> bool {
    if f.failure[h][t] < 8 {
        return false;
    }
    let mut by_source: HashMap<String, Vec<i64>> = HashMap::new();
    for e in f.events_in_hour(h, t, 0) {
        if e["event"]["outcome"] == "failure" {
            let at = schemas::time::parse_rfc3339_micros(e["@timestamp"].as_str().unwrap_or("")).unwrap_or(0);
            by_source.entry(e["source"]["ip"].as_str().unwrap_or("").to_owned()).or_default().push(at);
        }
    }
    by_source.values_mut().any(|v| {
        v.sort_unstable();
        v.windows(8).any(|w| w[7] - w[0] <= 240_000_000)
    })
}

/// Runs the evaluation.
pub fn anomaly(cfg: &AnomalyEvalConfig) -> AnomalyEval {
    let f = LoginFleet::generate(&LoginSimConfig {
        hosts: cfg.hosts,
        days: cfg.days,
        seed: cfg.seed,
        first_weekday: 0,
        anomalies_per_kind: cfg.per_kind,
    });
    let (n, hours) = (f.hosts.len(), f.hours);
    let first = (14 * 24).min(hours);
    let refit = cfg.refit_hours.max(1);
    let fcfg = ForecastConfig {
        horizon_hours: refit.max(48),
        level: cfg.level,
        fleet_quantile: cfg.fleet_quantile,
        ..ForecastConfig::default()
    };
    let how = |t: usize| (f.first_weekday * 24 + t) % WEEK;
    let roles = [Role::Workstation, Role::Server, Role::Jump];
    let group_of: Vec<usize> =
        f.hosts.iter().map(|h| roles.iter().position(|r| *r == h.role).unwrap_or(0)).collect();
    // flags[rule][host][hour]
    let mut flags = vec![vec![vec![false; hours]; n]; RULES.len()];
    // For silence: the logins forecast per host-hour and the group's band median.
    let mut login_exp: Vec<Vec<Option<Expected>>> = vec![vec![None; hours]; n];
    let (mut fits, mut fallbacks, mut fit_seconds) = (0usize, 0usize, 0.0f64);
    let mut r = first;
    while r < hours {
        let end = (r + refit).min(hours);
        let lo = r.saturating_sub(FOUR_WEEKS);
        for m in Measure::ALL {
            let data = series(&f, m);
            let bands: Vec<FleetBand> = (0..roles.len())
                .map(|g| {
                    FleetBand::compute_from(
                        (0..n).filter(|&h| group_of[h] == g).map(|h| (&data[h][lo..r], how(lo))),
                        fcfg.fleet_quantile,
                    )
                })
                .collect();
            // Workstations' interactive logins are their logins: fit once.
            let same: Vec<bool> = (0..n)
                .map(|h| m == Measure::Interactive && f.interactive[h][lo..r] == f.success[h][lo..r])
                .collect();
            let todo: Vec<usize> = (0..n).filter(|&h| !same[h]).collect();
            let hist: Vec<&[u32]> = todo.iter().map(|&h| &data[h][..r]).collect();
            let clock = std::time::Instant::now();
            let fc = anomaly::pool::forecast_all(&hist, &fcfg, cfg.threads);
            fit_seconds += clock.elapsed().as_secs_f64();
            fits += fc.len();
            let mut own: Vec<Option<Vec<HourForecast>>> = vec![None; n];
            for (k, res) in todo.iter().zip(fc) {
                match res {
                    Ok(v) => own[*k] = Some(v),
                    Err(_) => fallbacks += 1,
                }
            }
            // z-score statistics over the same weeks.
            for h in 0..n {
                let own_h = if same[h] { login_fc(&login_exp[h], r, end) } else { own[h].take() };
                let band = &bands[group_of[h]];
                let hist = &data[h][lo..r];
                let mean = hist.iter().map(|v| f64::from(*v)).sum::<f64>() / hist.len().max(1) as f64;
                let var = hist.iter().map(|v| (f64::from(*v) - mean).powi(2)).sum::<f64>()
                    / hist.len().max(1) as f64;
                let z_limit = (mean + 3.0 * var.sqrt()).max(1.0);
                for t in r..end {
                    let b = band.at(how(t));
                    let e = match &own_h {
                        Some(v) => Expected { own: v[t - r], fleet: b, basis: Basis::Forecast },
                        None => Expected::from_band(b),
                    };
                    if m == Measure::Logins {
                        login_exp[h][t] = Some(e);
                    }
                    let x = data[h][t];
                    let xf = f64::from(x);
                    if let Some(fi) = above(m, x, &e) {
                        flags[0][h][t] = true;
                        if std::env::var_os("CORDON_EVAL_DEBUG").is_some() && f.label_at(h, t).is_none() {
                            eprintln!("FP {m:?} {:?} t{t} how{} {}", f.hosts[h].role, how(t), fi.explanation);
                        }
                    }
                    // The alternatives get the same margin past their bound as the rule.
                    flags[1][h][t] |= xf >= e.own.upper.max(1.0) + MIN_EXCESS;
                    flags[2][h][t] |= xf >= b.upper.max(1.0) + MIN_EXCESS;
                    flags[3][h][t] |= xf >= z_limit + MIN_EXCESS;
                    if m == Measure::Failures {
                        flags[4][h][t] |= static_rule(&f, h, t);
                    }
                }
            }
        }
        r = end;
    }
    silence(&f, &group_of, &login_exp, first, &mut flags);
    let scored: Vec<_> = f.labels.iter().filter(|l| l.start >= first).collect();
    let rules = RULES.iter().zip(&flags).map(|(name, fl)| score(name, fl, &scored, first)).collect();
    AnomalyEval {
        hosts: n,
        days: cfg.days,
        labels: scored.len(),
        host_hours: n * (hours - first),
        fits,
        fallbacks,
        fit_seconds,
        rules,
    }
}

/// The logins forecast already made for `[r, end)` (workstations' interactive logins reuse it).
fn login_fc(exp: &[Option<Expected>], r: usize, end: usize) -> Option<Vec<HourForecast>> {
    let v: Option<Vec<Expected>> = exp[r..end].iter().copied().collect();
    v.filter(|v| v.iter().all(|e| e.basis == Basis::Forecast)).map(|v| v.iter().map(|e| e.own).collect())
}

/// Silence: runs of hours with no logins and no failures.
fn silence(
    f: &LoginFleet,
    group_of: &[usize],
    exp: &[Vec<Option<Expected>>],
    first: usize,
    flags: &mut [Vec<Vec<bool>>],
) {
    let (n, hours) = (f.hosts.len(), f.hours);
    // The group's observed median logins per hour: is the fleet active?
    let groups = group_of.iter().max().map_or(0, |g| g + 1);
    let mut observed_median = vec![vec![0.0f64; hours]; groups];
    for (g, om) in observed_median.iter_mut().enumerate() {
        let members: Vec<usize> = (0..n).filter(|&h| group_of[h] == g).collect();
        for (t, slot) in om.iter_mut().enumerate() {
            let mut v: Vec<u32> = members.iter().map(|&h| f.success[h][t]).collect();
            v.sort_unstable();
            *slot = v.get(v.len() / 2).map_or(0.0, |x| f64::from(*x));
        }
    }
    for h in 0..n {
        let mut t = first;
        while t < hours {
            if f.success[h][t] + f.failure[h][t] != 0 || exp[h][t].is_none() {
                t += 1;
                continue;
            }
            let s = t;
            while t < hours && f.success[h][t] + f.failure[h][t] == 0 && exp[h][t].is_some() {
                t += 1;
            }
            let run: Vec<Expected> = exp[h][s..t].iter().flatten().copied().collect();
            let band_sum: f64 = run.iter().map(|e| e.fleet.median).sum();
            let seen_sum: f64 = (s..t).map(|k| observed_median[group_of[h]][k]).sum();
            let active = anomaly::detect::fleet_active(band_sum, seen_sum);
            let expected: f64 = run.iter().map(|e| e.own.point).sum();
            let long = run.len() >= anomaly::detect::SILENT_HOURS;
            let marks = [
                silent(&run, active).is_some(),
                long && expected >= anomaly::detect::SILENT_EXPECTED,
                long && band_sum >= anomaly::detect::SILENT_EXPECTED,
            ];
            for (rule, mark) in marks.into_iter().enumerate() {
                if mark {
                    flags[rule][h][s..t].fill(true);
                }
            }
        }
    }
}

fn score(name: &str, flags: &[Vec<bool>], labels: &[&fixtures::logins::Injected], first: usize) -> RuleScore {
    let (mut detections, mut true_detections) = (0, 0);
    for (h, fl) in flags.iter().enumerate() {
        let mut t = first;
        while t < fl.len() {
            if !fl[t] {
                t += 1;
                continue;
            }
            let s = t;
            while t < fl.len() && (fl[t] || (t + 1 < fl.len() && fl[t + 1])) {
                t += 1;
            }
            detections += 1;
            true_detections +=
                usize::from(labels.iter().any(|l| l.host == h && s < l.start + l.hours + 1 && l.start < t));
        }
    }
    let mut by_kind: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut found = 0;
    for l in labels {
        let hit = (l.start..(l.start + l.hours).min(flags[l.host].len())).any(|t| flags[l.host][t]);
        found += usize::from(hit);
        let k = by_kind.entry(kind_name(l.kind).to_owned()).or_default();
        k.0 += usize::from(hit);
        k.1 += 1;
    }
    let precision = true_detections as f64 / detections.max(1) as f64;
    let recall = found as f64 / labels.len().max(1) as f64;
    let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    RuleScore { rule: name.to_owned(), detections, true_detections, found, precision, recall, f1, by_kind }
}

fn kind_name(k: AnomalyKind) -> &'static str {
    match k {
        AnomalyKind::BruteForce => "brute_force",
        AnomalyKind::OffHours => "off_hours",
        AnomalyKind::SlowSpread => "slow_spread",
        AnomalyKind::ServiceInteractive => "service_interactive",
        AnomalyKind::Silent => "silent",
    }
}

/// Prints the comparison table, then one summary line.
pub fn print_anomaly(r: &AnomalyEval) {
    let kinds: Vec<&str> = AnomalyKind::ALL.iter().map(|k| kind_name(*k)).collect();
    print!("{:<40} {:>6} {:>6} {:>6} {:>6} {:>6}", "rule", "det", "true", "prec", "recall", "F1");
    for k in &kinds {
        print!(" {k:>19}");
    }
    println!();
    for s in &r.rules {
        print!(
            "{:<40} {:>6} {:>6} {:>6.3} {:>6.3} {:>6.3}",
            s.rule, s.detections, s.true_detections, s.precision, s.recall, s.f1
        );
        for k in &kinds {
            let (a, b) = s.by_kind.get(*k).copied().unwrap_or_default();
            print!(" {:>19}", format!("{a}/{b}"));
        }
        println!();
    }
    let two = &r.rules[0];
    let best = r.rules[1..].iter().max_by(|a, b| a.f1.total_cmp(&b.f1));
    println!(
        "anomaly: {} hosts x {} days, {} labels, {} host-hours; two-condition precision {:.3} recall {:.3} F1 {:.3}; best alternative {} F1 {:.3}; {} fits ({} fell back to the fleet band) in {:.1} s",
        r.hosts,
        r.days,
        r.labels,
        r.host_hours,
        two.precision,
        two.recall,
        two.f1,
        best.map_or("-", |b| b.rule.as_str()),
        best.map_or(0.0, |b| b.f1),
        r.fits,
        r.fallbacks,
        r.fit_seconds
    );
}

/// One flagged hour of the real log.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RealFlag {
    /// Host.
    pub host: String,
    /// Hour (RFC 3339).
    pub hour: String,
    /// The finding's explanation.
    pub explanation: String,
    /// Level.
    pub level: u8,
}

/// The real log through the baseline.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RealResult {
    /// The file.
    pub file: String,
    /// Authentication events parsed.
    pub events: usize,
    /// Hours covered.
    pub hours: usize,
    /// Hours scored against a baseline (after two weeks of history); every hour before is judged
    /// against the absolute ceiling.
    pub scored_hours: usize,
    /// The busiest hour of failures: (hour, count).
    pub peak: (String, u32),
    /// What the two-condition rule flagged.
    pub flagged: Vec<RealFlag>,
}

/// A real authentication log (loghub's `Linux_2k.log`: one host's sshd and PAM lines over about six
/// weeks) read by the agent's log parser, counted per hour, and replayed through the baselines as
/// the server judges history ([`anomaly::history`]): each day against models fitted on the history
/// before it, in the log's own time. With one host the "fleet" is the host's own hours of the week.
/// Hours before two weeks of history are judged against the absolute ceiling (basis `ceiling`), so a
/// log of a day or two is scored as well.
pub fn real(path: &std::path::Path, year: i32) -> anyhow::Result<RealResult> {
    let text = std::fs::read_to_string(path)?;
    let parsed = sensor_agent::logs::parse(&text, year);
    let mut counts: BTreeMap<(String, i64, String), u64> = BTreeMap::new();
    for e in &parsed.events {
        let (Some(t), Some(host), Some(outcome)) = (
            e["@timestamp"].as_str().and_then(schemas::time::parse_rfc3339_micros),
            e["host"]["name"].as_str(),
            e["event"]["outcome"].as_str(),
        ) else {
            continue;
        };
        *counts.entry((host.to_owned(), anomaly::series::hour_floor(t), outcome.to_owned())).or_default() +=
            1;
    }
    let rows: Vec<(String, i64, String, String, u64)> =
        counts.into_iter().map(|((h, t, o), n)| (h, t, o, String::new(), n)).collect();
    let from = rows.iter().map(|r| r.1).min().unwrap_or(0);
    let to = rows.iter().map(|r| r.1).max().unwrap_or(0) + HOUR;
    let series = anomaly::series::LoginSeries::from_counts(&rows, from, to);
    let fcfg = ForecastConfig::default();
    let mut flagged = Vec::new();
    let mut peak = (String::new(), 0);
    let hours = series.first().map_or(0, |s| s.len());
    let mut scored_hours = 0;
    for s in &series {
        for (t, v) in s.failure.iter().enumerate() {
            if *v > peak.1 {
                peak = (schemas::time::format_micros(s.start + t as i64 * HOUR), *v);
            }
        }
        // As the server judges history: each day against the host's own history before it; before
        // two weeks of it there is no model or band, and the hours are judged against the absolute
        // ceiling (a one-host log has no group to lend a prior), so a log of a day or two is scored too.
        let end = s.start + s.len() as i64 * HOUR;
        let v = anomaly::history::judge(s, s.start, end, &fcfg, &|_, m| Expected::ceiling(m));
        scored_hours = scored_hours.max(v.baselined_hours);
        for j in v.findings {
            flagged.push(RealFlag {
                host: s.host.clone(),
                hour: schemas::time::format_micros(j.hour),
                explanation: j.finding.explanation,
                level: j.finding.level,
            });
        }
    }
    flagged.sort_by(|a, b| a.hour.cmp(&b.hour));
    Ok(RealResult {
        file: path.display().to_string(),
        events: parsed.events.len(),
        hours,
        scored_hours,
        peak,
        flagged,
    })
}

/// Prints what the real log's baseline flagged, then one summary line.
pub fn print_real(r: &RealResult) {
    for f in &r.flagged {
        println!("  {} {} level {}: {}", f.hour, f.host, f.level, f.explanation);
    }
    println!(
        "anomaly (real): {}: {} authentication events over {} hours, {} scored against a baseline and the rest against the absolute ceiling; {} hours flagged; the busiest hour of failures {} ({}) {}",
        r.file,
        r.events,
        r.hours,
        r.scored_hours,
        r.flagged.len(),
        r.peak.0,
        r.peak.1,
        if r.flagged.iter().any(|f| f.hour == r.peak.0) { "is flagged" } else { "is not flagged" }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A day of a bastion's auth log, quiet but for one hour of 250 failed attempts: scored from its
    /// first hour, the burst judged against the absolute ceiling and flagged, the quiet hours not.
    #[test]
    fn a_log_of_a_day_is_scored_against_the_ceiling() {
        let mut lines = Vec::new();
        for h in 0..24 {
            lines.push(format!("Dec  3 {h:02}:05:00 bastion sshd[{}]: Accepted publickey for deploy from 10.0.0.4 port 22 ssh2", 100 + h));
        }
        for i in 0..250 {
            let (m, sec) = (10 + i / 60, i % 60);
            lines.push(format!(
                "Dec  3 10:{m:02}:{sec:02} bastion sshd[{}]: Failed password for root from 203.0.113.9 port {} ssh2",
                5000 + i,
                40000 + i
            ));
        }
        lines.sort();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth.log");
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        let r = real(&p, 2026).unwrap();
        assert_eq!((r.events, r.hours, r.scored_hours), (274, 24, 0), "{r:?}");
        assert_eq!(r.flagged.len(), 1, "{:?}", r.flagged);
        assert_eq!(r.flagged[0].hour, "2026-12-03T10:00:00.000000Z");
        assert!(r.flagged[0].explanation.contains("absolute ceiling"), "{}", r.flagged[0].explanation);
    }

    #[test]
    fn the_two_condition_rule_finds_the_labels_on_a_small_fleet() {
        let r = anomaly(&AnomalyEvalConfig {
            hosts: 60,
            days: 28,
            seed: 11,
            per_kind: 2,
            refit_hours: 168,
            threads: 2,
            level: ForecastConfig::default().level,
            fleet_quantile: ForecastConfig::default().fleet_quantile,
        });
        assert_eq!(r.labels, 10, "{r:?}");
        let two = &r.rules[0];
        assert!(two.recall >= 0.7, "{two:?}");
        assert!(two.precision >= 0.5, "{two:?}");
        // The static rule sees brute force only.
        let st = &r.rules[4];
        assert_eq!(st.by_kind["silent"].0, 0);
        assert_eq!(st.by_kind["brute_force"], (2, 2), "{st:?}");
    }
}
