//! Correlation rules: loading, refusals, and each type's edge cases (window boundaries, late and
//! repeated events, group-by isolation, step order, chains).

use super::rule::load_any;
use super::tests::decode;
use super::{Correlator, Detection, Pipeline, Tagger};
use schemas::policy::Policy;
use serde_json::json;

const T0: i64 = 1_795_428_000_000_000; // 2026-11-23T10:00:00Z

fn tagger(text: &str) -> Tagger {
    let p = Pipeline::cordon_ecs();
    let loaded = load_any(text, &p).into_iter().collect::<Result<Vec<_>, _>>().unwrap();
    Tagger::build(loaded, &p, Policy::cordon_default().validated().unwrap()).unwrap()
}

fn refusal(text: &str) -> String {
    let p = Pipeline::cordon_ecs();
    match load_any(text, &p).into_iter().collect::<Result<Vec<_>, _>>() {
        Err(e) => format!("{}: {}", e.class, e.reason),
        Ok(loaded) => match Tagger::build(loaded, &p, Policy::cordon_default()) {
            Err(e) => format!("{}: {}", e.class, e.reason),
            Ok(_) => "loaded".into(),
        },
    }
}

/// Feeds one event (`at` seconds after T0) and returns the correlations that fired.
struct Run {
    t: Tagger,
    state: Correlator,
    n: u64,
}

impl Run {
    fn new(text: &str) -> Self {
        let t = tagger(text);
        let state = t.correlator();
        Self { t, state, n: 0 }
    }

    fn event(&mut self, at_ms: i64, mut e: serde_json::Value) -> Vec<Detection> {
        self.n += 1;
        let id = format!("e{}", self.n);
        self.with_id(at_ms, &id, &mut e)
    }

    fn with_id(&mut self, at_ms: i64, id: &str, e: &mut serde_json::Value) -> Vec<Detection> {
        e["@timestamp"] = json!(schemas::time::format_micros(T0 + at_ms * 1000));
        e["event"]["id"] = json!(id);
        let mut rec = decode(e);
        let (_, hits) = self.t.tag_and_hits(&mut rec);
        self.t.correlate(&mut self.state, &rec, &hits)
    }
}

fn failed(host: &str, ip: &str, user: &str) -> serde_json::Value {
    json!({"event": {"category": "authentication", "action": "logon", "outcome": "failure"},
           "host": {"name": host}, "source": {"ip": ip}, "user": {"name": user}})
}

/// The detection rule the counting correlations below reference.
const FAIL: &str = "title: failure\nname: fail\nlogsource: {category: authentication}\n\
                    detection: {selection: {event.outcome: failure}, condition: selection}\n";

/// A correlation document followed by [`FAIL`].
fn with_fail(correlation: &str) -> String {
    format!("{correlation}\n---\n{FAIL}")
}

const COUNT: &str = r#"
title: many failures
id: c1
correlation: {type: event_count, rules: [fail], group-by: [host.name, IpAddress], timespan: 1m, condition: {gte: 3}}
tags: [attack.t1110.001]
level: high
"#;

#[test]
fn event_count_fires_at_the_threshold_with_every_event_as_evidence() {
    let mut r = Run::new(&with_fail(COUNT));
    assert!(r.event(0, failed("H", "10.0.0.9", "a")).is_empty());
    assert!(r.event(1000, failed("H", "10.0.0.9", "b")).is_empty());
    let d = r.event(2000, failed("H", "10.0.0.9", "c"));
    assert_eq!(d.len(), 1);
    let c = d[0].correlation.as_ref().unwrap();
    assert_eq!((c.fire.count, c.fire.evidence.clone()), (3, vec!["e1".into(), "e2".into(), "e3".into()]));
    assert_eq!(c.fire.group, vec![("host.name".into(), "H".into()), ("IpAddress".into(), "10.0.0.9".into())]);
    assert_eq!(d[0].techniques, vec!["T1110.001"]);
    assert_eq!(d[0].tier, schemas::policy::Tier::Block, "brute force is blocked by default");
    // The events are consumed: the next alert needs three new ones.
    assert!(r.event(3000, failed("H", "10.0.0.9", "d")).is_empty());
    assert!(r.event(3500, failed("H", "10.0.0.9", "d")).is_empty());
    assert_eq!(r.event(4000, failed("H", "10.0.0.9", "d")).len(), 1);
}

#[test]
fn the_detection_rules_a_correlation_uses_do_not_tag_or_alert_on_their_own() {
    let t = tagger(&with_fail(COUNT));
    let mut rec = decode(&failed("H", "10.0.0.9", "a"));
    let (detections, hits) = t.tag_and_hits(&mut rec);
    assert!(detections.is_empty());
    assert_eq!(hits.len(), 1);
    assert!(rec.cell(schemas::fields::col::THREAT_TECHNIQUE_ID).as_str().is_none());
    let generating = with_fail(COUNT).replace("level: high", "level: high\ngenerate: true");
    let t = tagger(&generating);
    assert_eq!(t.tag(&mut decode(&failed("H", "10.0.0.9", "a"))).len(), 1, "generate: true keeps them");
}

#[test]
fn group_by_isolates_groups() {
    let mut r = Run::new(&with_fail(COUNT));
    for i in 0..2 {
        assert!(r.event(i * 10, failed("H", "10.0.0.1", "a")).is_empty());
        assert!(r.event(i * 10 + 1, failed("H", "10.0.0.2", "a")).is_empty());
        assert!(r.event(i * 10 + 2, failed("OTHER", "10.0.0.1", "a")).is_empty());
    }
    // An event without a group-by field is counted in no group.
    let mut no_ip = failed("H", "10.0.0.1", "a");
    no_ip["source"] = json!({});
    assert!(r.event(30, no_ip).is_empty());
    assert_eq!(r.state.stats().ungrouped, 1);
    assert_eq!(r.event(40, failed("H", "10.0.0.1", "a")).len(), 1);
}

#[test]
fn the_window_includes_both_ends_and_nothing_beyond() {
    let mut r = Run::new(&with_fail(COUNT));
    r.event(0, failed("H", "1.1.1.1", "a"));
    r.event(30_000, failed("H", "1.1.1.1", "a"));
    assert_eq!(r.event(60_000, failed("H", "1.1.1.1", "a")).len(), 1, "exactly one timespan apart");
    let mut r = Run::new(&with_fail(COUNT));
    r.event(0, failed("H", "1.1.1.1", "a"));
    r.event(30_000, failed("H", "1.1.1.1", "a"));
    assert!(r.event(60_001, failed("H", "1.1.1.1", "a")).is_empty(), "one millisecond too late");
    assert_eq!(r.event(60_002, failed("H", "1.1.1.1", "a")).len(), 1, "the last three are within a minute");
}

#[test]
fn late_and_out_of_order_events_count_as_if_in_order() {
    let mut r = Run::new(&with_fail(COUNT));
    assert!(r.event(50_000, failed("H", "1.1.1.1", "a")).is_empty());
    assert!(r.event(10_000, failed("H", "1.1.1.1", "a")).is_empty());
    let d = r.event(30_000, failed("H", "1.1.1.1", "a"));
    assert_eq!(d.len(), 1);
    let c = &d[0].correlation.as_ref().unwrap().fire;
    assert_eq!((c.first, c.last), (T0 + 10_000_000, T0 + 50_000_000));
    assert_eq!(c.evidence, vec!["e2", "e3", "e1"], "evidence in event-time order");
    // Older than the group's newest minus the timespan: late, left out and counted.
    let mut r = Run::new(&with_fail(COUNT));
    r.event(200_000, failed("H", "1.1.1.1", "a"));
    assert!(r.event(100_000, failed("H", "1.1.1.1", "a")).is_empty());
    assert_eq!(r.state.stats().late, 1);
}

#[test]
fn an_event_seen_twice_counts_once() {
    let mut r = Run::new(&with_fail(COUNT));
    let mut e = failed("H", "1.1.1.1", "a");
    assert!(r.with_id(0, "same", &mut e).is_empty());
    assert!(r.with_id(0, "same", &mut e).is_empty());
    assert!(r.with_id(0, "same", &mut e).is_empty());
    assert_eq!(r.state.stats().duplicates, 2);
    assert!(r.event(1, failed("H", "1.1.1.1", "a")).is_empty());
    assert_eq!(r.event(2, failed("H", "1.1.1.1", "a")).len(), 1);
}

const VALUES: &str = r#"
title: spraying
id: v1
correlation:
  type: value_count
  rules: [fail]
  group-by: [IpAddress]
  timespan: 10m
  condition: {field: TargetUserName, gte: 3}
"#;

#[test]
fn value_count_counts_distinct_values_per_group() {
    let mut r = Run::new(&with_fail(VALUES));
    for _ in 0..5 {
        assert!(r.event(0, failed("H", "1.1.1.1", "alice")).is_empty(), "the same account again");
    }
    assert!(r.event(1, failed("H2", "1.1.1.1", "bob")).is_empty());
    assert!(r.event(2, failed("H", "2.2.2.2", "carol")).is_empty(), "another source");
    let d = r.event(3, failed("H3", "1.1.1.1", "carol"));
    assert_eq!(d.len(), 1);
    let c = d[0].correlation.as_ref().unwrap();
    assert_eq!(c.fire.count, 3);
    assert_eq!(c.fire.evidence.len(), 7, "every event in the window is evidence");
    // No account field: not counted.
    let mut r = Run::new(&with_fail(VALUES));
    let mut e = failed("H", "1.1.1.1", "x");
    e["user"] = json!({});
    r.event(0, e);
    assert_eq!(r.state.stats().ungrouped, 1);
}

/// A seeded xorshift: each call returns a number below its argument.
fn below(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut x = seed;
    move |n| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    }
}

/// A long random stream on a value count (8 distinct accounts per source in 10 minutes): events
/// in order, late, too late and sent again. After every event each group's tallies (what a window
/// holding the whole group is measured from) match its entries, and every firing's count is the
/// number of distinct accounts among its evidence, recounted here from what was sent.
#[test]
fn value_count_tallies_follow_late_repeated_and_consumed_events() {
    let rule = VALUES.replace("gte: 3", "gte: 8");
    let mut r = Run::new(&with_fail(&rule));
    let mut next = below(0x2545_f491_4f6c_dd1d);
    let (mut sent, mut now, mut fired) = (Vec::new(), 0i64, 0);
    for _ in 0..20_000 {
        now += next(3_000) as i64;
        let d = if next(10) == 0 && !sent.is_empty() {
            let k = next(sent.len() as u64) as usize;
            let (at, ip, user): &(i64, String, String) = &sent[k];
            r.with_id(*at, &format!("e{}", k + 1), &mut failed("H", ip, user))
        } else {
            // A quarter arrive up to 15 minutes late: within the window or beyond it.
            let at = if next(4) == 0 { now - next(900_000) as i64 } else { now };
            let (ip, user) = (format!("10.0.0.{}", next(4)), format!("u{}", next(12)));
            sent.push((at, ip.clone(), user.clone()));
            r.event(at, failed("H", &ip, &user))
        };
        r.state.check_tallies();
        for det in d {
            let f = &det.correlation.as_ref().unwrap().fire;
            let mut users: Vec<&str> =
                f.evidence.iter().map(|id| sent[id[1..].parse::<usize>().unwrap() - 1].2.as_str()).collect();
            users.sort_unstable();
            users.dedup();
            assert_eq!(f.count, users.len() as u64, "the count is the evidence's distinct accounts");
            assert!(f.count >= 8);
            fired += 1;
        }
    }
    let stats = r.state.stats();
    assert!(fired > 100 && stats.late > 100 && stats.duplicates > 100, "{fired} fired, {stats:?}");
}

#[test]
fn temporal_tallies_follow_a_random_stream() {
    let mut r = Run::new(&recon("temporal"));
    let mut next = below(0x9e37_79b9_7f4a_7c15);
    let (mut now, mut fired) = (0i64, 0);
    for _ in 0..10_000 {
        now += next(20_000) as i64;
        let at = if next(4) == 0 { now - next(400_000) as i64 } else { now };
        let cmd = ["whoami", "net user /domain", "nltest /dclist", "ipconfig"][next(4) as usize];
        let d = r.event(at, proc(&format!("H{}", next(3)), "u", cmd));
        r.state.check_tallies();
        for det in d {
            let f = &det.correlation.as_ref().unwrap().fire;
            assert_eq!((f.count, f.rules.len()), (3, 3), "all three rules in the window");
            fired += 1;
        }
    }
    assert!(fired > 50, "{fired} fired");
}

fn proc(host: &str, user: &str, cmd: &str) -> serde_json::Value {
    json!({"event": {"category": "process", "action": "start"}, "host": {"name": host},
           "user": {"name": user}, "process": {"command_line": cmd, "executable": "C:\\Windows\\System32\\x.exe"}})
}

fn recon(kind: &str) -> String {
    format!(
        r#"
title: recon burst
id: t1
correlation: {{type: {kind}, rules: [a, b, c], group-by: [host.name, User], timespan: 5m}}
tags: [attack.t1087]
---
title: whoami
name: a
logsource: {{category: process_creation}}
detection: {{selection: {{CommandLine|contains: whoami}}, condition: selection}}
---
title: net user
name: b
logsource: {{category: process_creation}}
detection: {{selection: {{CommandLine|contains: net user}}, condition: selection}}
---
title: nltest
name: c
logsource: {{category: process_creation}}
detection: {{selection: {{CommandLine|contains: nltest}}, condition: selection}}
"#
    )
}

#[test]
fn temporal_needs_every_rule_in_the_same_group_in_any_order() {
    let mut r = Run::new(&recon("temporal"));
    assert!(r.event(0, proc("H", "u", "nltest /dclist")).is_empty());
    assert!(r.event(1, proc("H", "u", "whoami /all")).is_empty());
    assert!(r.event(2, proc("H", "other", "net user /domain")).is_empty(), "another user: another group");
    assert!(r.event(3, proc("H2", "u", "net user /domain")).is_empty(), "another host: another group");
    let d = r.event(4, proc("H", "u", "net user /domain"));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].correlation.as_ref().unwrap().fire.rules.len(), 3);
}

#[test]
fn temporal_ordered_checks_the_order_of_every_step() {
    let mut r = Run::new(&recon("temporal_ordered"));
    // a, c, b: the last step came before the second.
    r.event(0, proc("H", "u", "whoami"));
    r.event(1, proc("H", "u", "nltest"));
    assert!(r.event(2, proc("H", "u", "net user")).is_empty());
    // ...and c again after b completes it.
    assert_eq!(r.event(3, proc("H", "u", "nltest")).len(), 1);
    // b, c then a: a third step never preceded.
    let mut r = Run::new(&recon("temporal_ordered"));
    r.event(0, proc("H", "u", "net user"));
    r.event(1, proc("H", "u", "nltest"));
    assert!(r.event(2, proc("H", "u", "whoami")).is_empty());
    // A late first step in event time puts the chain in order.
    let mut r = Run::new(&recon("temporal_ordered"));
    r.event(5_000, proc("H", "u", "net user"));
    r.event(9_000, proc("H", "u", "nltest"));
    assert_eq!(r.event(1_000, proc("H", "u", "whoami")).len(), 1, "a late event that came first in time");
}

const CHAIN: &str = r#"
title: failed logons followed by a success
id: outer
correlation: {type: temporal_ordered, rules: [many_failed, success], group-by: [User], timespan: 10m}
tags: [attack.t1110]
level: critical
---
title: many failed logons
id: inner
name: many_failed
correlation: {type: event_count, rules: [failed_login], group-by: [User], timespan: 10m, condition: {gte: 3}}
---
title: failed logon
name: failed_login
logsource: {category: authentication}
detection: {selection: {event.outcome: failure}, condition: selection}
---
title: successful logon
name: success
logsource: {category: authentication}
detection: {selection: {event.outcome: success}, condition: selection}
"#;

#[test]
fn chained_correlations_feed_each_other_by_group() {
    let mut r = Run::new(CHAIN);
    let ok = |user: &str| json!({"event": {"category": "authentication", "outcome": "success"}, "user": {"name": user}, "source": {"ip": "1.1.1.1"}});
    assert!(r.event(0, ok("admin")).is_empty(), "a success before the failures is not the pattern");
    for i in 0..2 {
        assert!(r.event(1000 + i, failed("H", "1.1.1.1", "admin")).is_empty());
    }
    let inner = r.event(1003, failed("H", "1.1.1.1", "admin"));
    assert_eq!(inner.iter().map(|d| d.rule.as_str()).collect::<Vec<_>>(), vec!["many failed logons"]);
    assert!(r.event(2000, ok("someone-else")).is_empty(), "the outer rule groups by user too");
    let d = r.event(3000, ok("admin"));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].rule, "failed logons followed by a success");
    let c = d[0].correlation.as_ref().unwrap();
    assert_eq!(c.fire.evidence.len(), 4, "the three failures and the success");
    assert_eq!(c.fire.group, vec![("User".into(), "admin".into())]);
}

#[test]
fn what_cannot_run_is_refused_with_the_reason() {
    let with = |corr: &str| refusal(&with_fail(&format!("title: x\nid: x\ncorrelation: {corr}")));
    assert_eq!(
        with("{type: event_count, rules: [fail], group-by: [User], timespan: 1h, condition: {lt: 5}}"),
        "correlation: the condition has no lower bound (only gt/gte/eq can be decided while events stream in)"
    );
    assert_eq!(
        with(
            "{type: value_sum, rules: [fail], group-by: [User], timespan: 1h, condition: {field: n, gt: 5}}"
        ),
        "correlation: value_sum correlations are not supported yet"
    );
    assert_eq!(
        with("{type: event_count, rules: [nothing], group-by: [User], timespan: 1h, condition: {gte: 5}}"),
        "correlation: references \"nothing\", which is not a loaded rule"
    );
    assert!(
        with("{type: event_count, rules: [fail], group-by: [User], timespan: 1w, condition: {gte: 5}}")
            .starts_with("correlation: bad timespan")
    );
    assert_eq!(
        with("{type: value_count, rules: [fail], group-by: [User], timespan: 1h, condition: {gte: 5}}"),
        "correlation: value_count needs `condition.field`"
    );
    assert_eq!(
        with("{type: temporal, rules: [fail], timespan: 1h}"),
        "correlation: temporal needs `group-by`"
    );
    let cycle = "title: a\nid: a\ncorrelation: {type: event_count, rules: [b], group-by: [User], timespan: 1h, condition: {gte: 2}}\n---\ntitle: b\nid: b\ncorrelation: {type: event_count, rules: [a], group-by: [User], timespan: 1h, condition: {gte: 2}}\n";
    assert_eq!(refusal(cycle), "correlation: correlation chain is a cycle");
    let ungrouped = CHAIN
        .replace("group-by: [User], timespan: 10m}\ntags", "group-by: [host.name], timespan: 10m}\ntags");
    assert_eq!(
        refusal(&ungrouped),
        "correlation: group-by \"host.name\": the correlation \"many_failed\" does not group by \"host.name\""
    );
    assert_eq!(refusal(&with_fail(COUNT)), "loaded");
}

#[test]
fn the_specifications_examples_load() {
    // The specification's closing example, as it gives it.
    let spec = r#"
title: Correlation - Multiple Failed Logins Followed by Successful Login
id: b180ead8-d58f-40b2-ae54-c8940995b9b6
correlation:
    type: temporal_ordered
    rules:
        - multiple_failed_login
        - successful_login
    group-by:
        - User
    timespan: 10m
level: high
---
title: Multiple failed logons
id: a8418a5a-5fc4-46b5-b23b-6c73beb19d41
name: multiple_failed_login
correlation:
    type: event_count
    rules:
        - failed_login
    group-by:
        - User
    timespan: 10m
    condition:
        gte: 10
---
title: Single failed login
id: 53ba33fd-3a50-4468-a5ef-c583635cfa92
name: failed_login
logsource:
    product: windows
    service: security
detection:
    selection:
        EventID:
            - 529
            - 4625
    condition: selection
---
title: Successful login
id: 4d0a2c83-c62c-4ed4-b475-c7e23a9269b8
name: successful_login
logsource:
    product: windows
    service: security
detection:
    selection:
        EventID:
            - 528
            - 4624
    condition: selection
"#;
    assert_eq!(refusal(spec), "loaded");
}
