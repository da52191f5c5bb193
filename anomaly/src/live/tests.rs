//! The live counts against fitted models.

use super::*;
use crate::detect::Direction;
use fixtures::logins::{LoginFleet, LoginSimConfig, Role};

/// A Monday, 00:00 UTC.
const MONDAY: i64 = 1_763_337_600_000_000;

fn fleet_models() -> (LoginFleet, TenantModels) {
    let f = LoginFleet::generate(&LoginSimConfig {
        hosts: 40,
        days: 21,
        seed: 4,
        first_weekday: 0,
        anomalies_per_kind: 0,
    });
    let series: Vec<LoginSeries> = (0..f.hosts.len())
        .map(|h| {
            let other: Vec<u32> =
                f.success[h].iter().zip(&f.interactive[h]).map(|(s, i)| s - i.min(s)).collect();
            LoginSeries {
                host: f.hosts[h].name.clone(),
                start: MONDAY,
                success: f.success[h].clone(),
                failure: f.failure[h].clone(),
                by_type: [("2".to_owned(), f.interactive[h].clone()), ("3".to_owned(), other)].into(),
            }
        })
        .collect();
    let groups = f.hosts.iter().map(|h| (h.name.clone(), h.role.group().to_owned())).collect();
    let end = MONDAY + f.hours as i64 * HOUR;
    let m = fit_tenant(&series, &groups, &ForecastConfig::default(), 2, end);
    (f, m)
}

#[test]
fn hours_of_the_week_start_on_monday() {
    assert_eq!(hour_of_week(MONDAY), 0);
    assert_eq!(hour_of_week(MONDAY + 30 * HOUR + 5), 30);
    assert_eq!(hour_of_week(MONDAY - HOUR), 167);
}

#[test]
fn a_burst_raises_one_finding_per_level_and_a_new_host_is_judged_on_the_band() {
    let (f, models) = fleet_models();
    assert_eq!(models.start, MONDAY + 21 * 24 * HOUR);
    assert_eq!(models.hosts.len(), 40);
    assert!(models.bands.contains_key(&("servers".to_owned(), Measure::Failures)));
    let ws = f.hosts.iter().position(|h| h.role == Role::Workstation).unwrap();
    let name = f.hosts[ws].name.clone();
    let live = Live::new();
    live.install("t", models);
    let at = MONDAY + 21 * 24 * HOUR + 10 * HOUR;
    let mut levels = Vec::new();
    for k in 0..60 {
        for lf in live.observe("t", &name, Some("workstations"), at + k, "failure", "3", &format!("e{k}")) {
            assert_eq!(lf.finding.measure, Measure::Failures);
            assert!(lf.finding.explanation.starts_with("expected "), "{}", lf.finding.explanation);
            assert_eq!(lf.evidence.len(), k as usize + 1);
            levels.push(lf.finding.level);
        }
    }
    assert!(!levels.is_empty() && levels.len() <= 8, "{levels:?}");
    assert!(levels.windows(2).all(|w| w[0] <= w[1]), "{levels:?}");
    // The hour closes: one more raise with the whole hour's count and the series of the day.
    let closed = live.closed_hours("t", at + HOUR);
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!((closed[0].finding.observed, closed[0].evidence.len()), (60, 60));
    assert!(closed[0].finding.explanation.ends_with("observed 60 failed logins"));
    assert_eq!(closed[0].around.len(), 24);
    assert_eq!(closed[0].around[23], (at, 60, closed[0].around[23].2));
    assert!(live.closed_hours("t", at + HOUR).is_empty(), "sent once");
    assert_eq!(live.recent("t", &name), vec![(at, [0, 60, 0])]);
    // Redelivered events are not counted again.
    assert!(live.observe("t", &name, None, at + 1, "failure", "3", "e1").is_empty());
    assert_eq!(live.recent("t", &name), vec![(at, [0, 60, 0])]);
    // A host never seen before: its group's band.
    let mut got = Vec::new();
    for k in 0..40 {
        got.extend(live.observe(
            "t",
            "ws-new",
            Some("workstations"),
            at + k,
            "failure",
            "3",
            &format!("n{k}"),
        ));
    }
    assert_eq!(got[0].finding.expected.basis, Basis::FleetBand);
    assert!(got[0].finding.explanation.starts_with("no baseline of its own yet"));
    // Successes at a normal rate raise nothing; a burst of interactive logins on a workstation
    // (all its logins are interactive) raises as logins, once, not twice.
    assert!(live.observe("t", &name, None, at + 100, "success", "2", "ok").is_empty());
    let mut raised = Vec::new();
    for k in 0..40 {
        raised.extend(live.observe("t", &name, None, at + 200 + k, "success", "2", &format!("s{k}")));
    }
    assert!(!raised.is_empty());
    assert!(raised.iter().all(|f| f.finding.measure == Measure::Logins), "{raised:?}");
}

#[test]
fn a_host_that_goes_quiet_while_its_group_works_is_reported_once() {
    let (f, models) = fleet_models();
    let start = models.start;
    // The busiest workstation goes quiet on Monday morning; the others log in as simulated on
    // the Monday three weeks earlier.
    let ws: Vec<usize> = (0..f.hosts.len()).filter(|&h| f.hosts[h].role == Role::Workstation).collect();
    let quiet = *ws.iter().max_by(|a, b| f.hosts[**a].peak.total_cmp(&f.hosts[**b].peak)).unwrap();
    let live = Live::new();
    live.install("t", models);
    for &h in &ws {
        for t in 0..12 {
            if h == quiet && t >= 8 {
                continue;
            }
            for k in 0..f.success[h][t] {
                let id = format!("{h}-{t}-{k}");
                let at = start + t as i64 * HOUR + i64::from(k);
                live.observe("t", &f.hosts[h].name, None, at, "success", "2", &id);
            }
        }
    }
    let found = live.silences("t", start + 12 * HOUR);
    let names: Vec<&str> = found.iter().map(|x| x.host.as_str()).collect();
    assert!(names.contains(&f.hosts[quiet].name.as_str()), "{names:?}");
    let mine = found.iter().find(|x| x.host == f.hosts[quiet].name).unwrap();
    assert_eq!(mine.finding.direction, Direction::Below);
    assert_eq!(mine.hour, start + 8 * HOUR);
    // Reported once.
    assert!(live.silences("t", start + 12 * HOUR).iter().all(|x| x.host != f.hosts[quiet].name));
    // The whole fleet quiet (a holiday): nothing.
    let holiday = Live::new();
    holiday.install("t", fleet_models().1);
    assert!(holiday.silences("t", start + 12 * HOUR).is_empty());
}

/// A tenant with no models at all (its first day): a burst is judged against the absolute ceiling and
/// says so; a busy but ordinary hour is not.
#[test]
fn a_burst_before_any_model_is_judged_against_the_ceiling() {
    let live = Live::new();
    let at = MONDAY + 10 * HOUR;
    let mut got = Vec::new();
    for k in 0..150 {
        got.extend(live.observe("fresh", "srv-1", Some("servers"), at + k, "failure", "3", &format!("f{k}")));
    }
    assert!(got.is_empty(), "150 failures an hour is under the ceiling: {got:?}");
    for k in 150..260 {
        got.extend(live.observe("fresh", "srv-1", Some("servers"), at + k, "failure", "3", &format!("f{k}")));
    }
    assert!(!got.is_empty(), "past the ceiling of 200 failed logins an hour");
    let f = &got[0].finding;
    assert_eq!((f.expected.basis, f.measure, f.observed), (Basis::Ceiling, Measure::Failures, 202));
    assert!(f.explanation.contains("absolute ceiling of 200 an hour"), "{}", f.explanation);
    // The hour closes: the alert ends with its whole count, judged the same way.
    let closed = live.closed_hours("fresh", at + HOUR);
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!((closed[0].finding.observed, closed[0].finding.expected.basis), (260, Basis::Ceiling));
}

/// A host of a group the tenant has no band for (a new role) is judged on the widest band of the
/// other groups, and says so.
#[test]
fn a_new_group_takes_the_other_groups_widest_band_as_its_prior() {
    let (_, models) = fleet_models();
    let at = models.start + 10 * HOUR;
    let e = models.expected("kiosk-1", "kiosks", at, Measure::Failures).expect("a prior");
    assert_eq!(e.basis, Basis::GroupPrior);
    let widest = ["servers", "workstations"]
        .iter()
        .filter_map(|g| models.bands.get(&((*g).to_owned(), Measure::Failures)))
        .map(|b| b.at(hour_of_week(at)).upper)
        .fold(0.0, f64::max);
    assert_eq!(e.fleet.upper, widest);
    let f = crate::detect::above(Measure::Failures, (widest as u32) + 50, &e).expect("a burst past it");
    assert!(f.explanation.starts_with("no band for its group yet"), "{}", f.explanation);
}

/// A redelivered login is counted once; the ids that guard against it are released once the hour
/// is two behind the host's newest, so the counter does not keep 48 hours of ids per host.
#[test]
fn a_login_seen_twice_counts_once_and_old_hours_forget_their_ids() {
    let live = Live::new();
    let at = MONDAY + 5 * HOUR;
    for k in 0..10 {
        live.observe("t", "h", None, at + k, "success", "3", &format!("e{k}"));
    }
    live.observe("t", "h", None, at + 20, "success", "3", "e3");
    let count = |hour: i64| {
        let running = live.running.lock().unwrap();
        let r = &running[&("t".to_owned(), "h".to_owned())];
        r.hours.iter().find(|h| h.hour == hour).map(|h| (h.counts[index(Measure::Logins)], h.seen.len()))
    };
    assert_eq!(count(at), Some((10, 10)), "the second e3 is not counted");
    live.observe("t", "h", None, at + HOUR, "success", "3", "f0");
    assert_eq!(count(at), Some((10, 10)), "one hour behind: still remembered");
    live.observe("t", "h", None, at + 2 * HOUR, "success", "3", "g0");
    assert_eq!(count(at), Some((10, 0)), "two hours behind: released, the count kept");
    assert_eq!(count(at + HOUR), Some((1, 1)));
}
