//! The analysers rebuilt through the trait: one replay of a tenant's events reaches each, each
//! takes its own window of it, and events not analysed before the restart are left out.

use super::*;
use correlate::graph::{Graph, GraphConfig, Graphs};
use schemas::time::now_micros;

const HOUR: i64 = 3_600_000_000;

fn decode(events: &[serde_json::Value]) -> Vec<Record> {
    let ch = schemas::Channel {
        tenant: "t1",
        agent: "agent-1",
        message_key: "boot:1",
        stream_seq: 1,
        received: now_micros(),
    };
    let limits = schemas::Limits::default();
    let mut out: Vec<Record> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let line = serde_json::to_vec(e).expect("json");
            schemas::decode_line(&line, i + 1, &ch, &limits).expect("a valid event")
        })
        .collect();
    out.sort_by_key(Record::time);
    out
}

fn start(at: i64, host: &str, pid: u32, name: &str) -> serde_json::Value {
    serde_json::json!({
        "@timestamp": schemas::time::format_micros(at),
        "event": {"category": ["process"], "type": ["start"]},
        "host": {"name": host},
        "process": {"pid": pid, "name": name, "command_line": name, "parent": {"pid": 1, "name": "init"}},
        "user": {"name": "alice"}
    })
}

fn login(at: i64, id: &str) -> serde_json::Value {
    serde_json::json!({
        "@timestamp": schemas::time::format_micros(at),
        "event": {"id": id, "category": "authentication", "action": "logon", "outcome": "success"},
        "host": {"name": "srv-01"},
        "user": {"name": "bob"}
    })
}

#[test]
fn every_analyser_rebuilds_from_one_replay_and_leaves_the_unanalysed_out() {
    let now = now_micros();
    let hot = GraphConfig { hot_window: 2 * HOUR, ..GraphConfig::default() };
    let graphs = Arc::new(Graphs::new(hot.clone()));
    let baselines = Arc::new(anomaly::live::Live::new());
    let wiring = Wiring {
        graphs: &graphs,
        rules: &Arc::new(correlate::sigma::CurrentRules::new(None)),
        baselines: &baselines,
        history: &Arc::new(crate::history::Pending::default()),
        metrics: &Arc::new(schemas::metrics::Registry::default()),
    };
    let analysers = build(&AnalyserKind::ALL, &wiring);
    let names: Vec<&str> = analysers.iter().map(|a| a.name()).collect();
    assert_eq!(names, ["graph", "correlation", "logins"], "built in the order the kinds name");

    // Without correlation rules the correlations keep nothing; the login counts reach furthest back.
    let from = analysers.iter().filter_map(|a| a.restore_from(now)).min();
    assert_eq!(from, Some(now - anomaly::live::KEEP_HOURS as i64 * HOUR));

    let recent =
        [start(now - HOUR, "ws-01", 100, "winword.exe"), start(now - HOUR + 1, "ws-01", 101, "cmd.exe")];
    let old = start(now - 5 * HOUR, "ws-09", 900, "old.exe");
    let logins: Vec<_> = (0..4).map(|i| login(now - 30 * 60_000_000 + i, &format!("login-{i}"))).collect();
    let mut sent = vec![old];
    sent.extend(recent.iter().cloned());
    sent.extend(logins.iter().cloned());
    let records = decode(&sent);
    let unanalysed = std::collections::HashSet::from(["login-3".to_owned()]);
    let replay = Replay { tenant: "t1", records: &records, unanalysed: &unanalysed, taggers: &|_| None, now };
    assert_eq!(replay.since(now - 2 * HOUR).len(), sent.len() - 1, "since() leaves out what is older");

    let mut found = Findings::default();
    for a in &analysers {
        a.restore(&replay, &mut found);
    }
    assert!(found.alerts.is_empty(), "a restore counts without raising: {:?}", found.alerts);

    // The graph holds what its hot window holds (the recent starts and the logins), not the older
    // process.
    let mut expected = Graph::new(hot);
    for r in decode(&[&recent[..], &logins[..]].concat()) {
        expected.add(&r);
    }
    assert_eq!(graphs.read("t1", Graph::size), Some(expected.size()));
    // The login counts hold the logins sent, less the one left to the analysis that runs it again.
    let counted: u32 = baselines.recent("t1", "srv-01").iter().map(|(_, c)| c[0]).sum();
    assert_eq!(counted, 3);
}
