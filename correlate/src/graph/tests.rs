//! The entity graph and incidents over the Log4j/Conti scenario, with fleet noise and a second,
//! unrelated attack played at the same time. Expectations come from the scenario's text (its hosts,
//! addresses, processes), never from the graph.

use super::*;
use crate::incident::{Anchor, IncidentConfig, Incidents};
use crate::sigma::Tagger;
use crate::sigma::tagger::alert_for;
use schemas::Record;
use serde_json::{Value, json};

const BASE: i64 = 1_700_000_000_000_000;

fn decode(e: &Value, line: usize) -> Record {
    let ch = schemas::decode::Channel {
        tenant: "default",
        agent: "a",
        message_key: "1:1",
        stream_seq: 1,
        received: BASE,
    };
    schemas::decode::decode_line(e.to_string().as_bytes(), line, &ch, &schemas::decode::Limits::default())
        .unwrap_or_else(|r| panic!("{r:?}: {e}"))
}

/// The scenario's events as JSON, or the same attack moved to other hosts and addresses.
fn scenario(elsewhere: Option<&str>) -> Vec<Value> {
    let s = match elsewhere {
        None => fixtures::scenario::log4j_conti(),
        Some(tag) => {
            fixtures::scenario::Scenario::parse(&fixtures::scenario::log4j_conti_elsewhere(tag)).unwrap()
        }
    };
    (0..s.events.len()).map(|i| s.materialise(i, BASE)).collect()
}

/// Runs events through the rule pack as ingest does; returns the records and the alerts (with the
/// record each came from), alert ids assigned in order.
fn detect(
    events: &[Value],
    first_line: usize,
) -> (Vec<Record>, Vec<(String, schemas::alert::Alert, Record)>) {
    let t = Tagger::cordon_pack(schemas::policy::Policy::cordon_default()).unwrap();
    let mut corr = t.correlator();
    let mut recs = Vec::new();
    let mut alerts = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let mut r = decode(e, first_line + i);
        let (found, hits) = t.tag_and_hits(&mut r);
        for d in found.iter().chain(t.correlate(&mut corr, &r, &hits).iter()) {
            if let Some(a) = alert_for(&r, d) {
                let id = format!("alert-{}-{}", first_line + i, alerts.len());
                alerts.push((id, a, r.clone()));
            }
        }
        recs.push(r);
    }
    (recs, alerts)
}

fn anchor(id: &str, a: &schemas::alert::Alert, r: &Record) -> Anchor {
    crate::incident::anchor_for(id, a, Graph::process_key(r))
}

fn graph_of(recs: &[Record]) -> Graph {
    let mut g = Graph::new(GraphConfig::default());
    for r in recs {
        g.add(r);
    }
    g
}

#[test]
fn the_workstation_reaches_the_web_server_through_a_connection_both_reported() {
    let (recs, _) = detect(&scenario(None), 1);
    let g = graph_of(&recs);
    let pc = g.find(NodeKind::Process, "win-dakeqi-p-6644-1").expect("the attachment's process");
    let java = g.find(NodeKind::Process, "web-north-p-2240-1").expect("the web server's java.exe");
    let (_, _, e) = g
        .out_edges(pc)
        .find(|(_, to, e)| *to == java && e.kind == EdgeKind::ConnectedTo)
        .expect("a connection from the attachment to java.exe");
    assert!(e.cross_host && e.confirmed, "{e:?}");
    assert_eq!(e.ports, vec![8080]);
    // Proved by the workstation's request and the server's accept: two events, two hosts.
    let hosts: Vec<&str> = e
        .events
        .iter()
        .map(|id| {
            recs.iter().find(|r| r.cell(schemas::fields::col::EVENT_ID).as_str() == Some(id)).unwrap().host()
        })
        .collect();
    assert_eq!(hosts, vec!["WIN-DAKEQI", "Web服务器-北机房"]);
    // The scan reached other addresses only by address: unconfirmed edges to hosts or addresses.
    let unconfirmed =
        g.out_edges(pc).filter(|(_, _, e)| e.kind == EdgeKind::ConnectedTo && !e.confirmed).count();
    assert!(unconfirmed >= 20, "{unconfirmed}");
    // The LDAP callback goes the other way, also confirmed.
    assert!(g.out_edges(java).any(|(_, to, e)| to == pc && e.confirmed));
    // java.exe -> the C2 domain, the download, and the file run as update.exe.
    let c2 = g.find(NodeKind::Domain, "cdn-update.example").unwrap();
    assert!(g.is_external(c2));
    assert!(g.out_edges(java).any(|(_, to, e)| to == c2 && e.kind == EdgeKind::ConnectedTo));
    let upd = g.find(NodeKind::Process, "web-north-p-7312-1").unwrap();
    assert!(
        g.in_edges(upd).any(|(_, f, e)| e.kind == EdgeKind::Executed && g.node(f).kind == NodeKind::File)
    );
    assert!(g.in_edges(upd).any(|(_, p, e)| p == java && e.kind == EdgeKind::Spawned));
    // The phishing attachment: written by Outlook, then run.
    let outlook = g.find(NodeKind::Process, "win-dakeqi-p-5120-1").unwrap();
    let r = g.reach(outlook, BASE, &SearchLimits::default());
    assert!(r.arrival.contains_key(&pc) && r.arrival.contains_key(&upd));
}

#[test]
fn paths_respect_time_order_and_end_at_the_c2_domain() {
    let (recs, _) = detect(&scenario(None), 1);
    let g = graph_of(&recs);
    let outlook = g.find(NodeKind::Process, "win-dakeqi-p-5120-1").unwrap();
    let q = PathQuery { from: outlook, to: None, since: BASE, limits: SearchLimits::default() };
    let (path, truncated) = g.path(&q);
    let path = path.expect("a path to an external destination");
    assert!(!truncated);
    let labels: Vec<&str> = path.iter().map(|h| h.to_label.as_str()).collect();
    assert_eq!(labels.last(), Some(&"cdn-update.example"), "{labels:?}");
    assert!(path.windows(2).all(|w| w[0].at <= w[1].at), "hops in time order: {path:?}");
    assert!(path.iter().all(|h| !h.events.is_empty()), "every hop has evidence");
    let cross: Vec<&Hop> = path.iter().filter(|h| h.cross_host).collect();
    assert_eq!(cross.len(), 1);
    assert!(cross[0].confirmed && cross[0].to_label == "java.exe");
    // Starting after the exploit, the workstation no longer reaches the server.
    let pc = g.find(NodeKind::Process, "win-dakeqi-p-6644-1").unwrap();
    let java = g.find(NodeKind::Process, "web-north-p-2240-1").unwrap();
    let late =
        PathQuery { from: pc, to: Some(java), since: BASE + 190_000_000, limits: SearchLimits::default() };
    assert!(g.path(&late).0.is_none());
    let early = PathQuery { from: pc, to: Some(java), since: BASE, limits: SearchLimits::default() };
    assert!(g.path(&early).0.is_some());
    // Time order: the ransomware does not lead back to Outlook.
    let upd = g.find(NodeKind::Process, "web-north-p-7312-1").unwrap();
    let back = PathQuery { from: upd, to: Some(outlook), since: BASE, limits: SearchLimits::default() };
    assert!(g.path(&back).0.is_none());
}

#[test]
fn the_scenario_is_one_incident_and_a_second_attack_and_the_noise_stay_apart() {
    let mut events = scenario(None);
    let first = events.len();
    events.extend(scenario(Some("OTHER")));
    // Fleet noise in the same minutes, on the fleet's own hosts and addresses.
    let mut fleet = fixtures::fleet::FleetGenerator::new(11, 200);
    for i in 0..3000 {
        let (_, e) = fleet.next_event(BASE + i * 70_000);
        events.push(e);
    }
    events.sort_by_key(|e| e["@timestamp"].as_str().map(str::to_owned));
    let (recs, alerts) = detect(&events, 1);
    assert!(first > 0);
    let g = graph_of(&recs);
    let mut inc = Incidents::new(IncidentConfig::default());
    inc.add(alerts.iter().map(|(id, a, r)| anchor(id, a, r)));
    let changed = inc.update("default", &g);
    let on = |host: &str| alerts.iter().filter(|(_, a, _)| a.endpoint.name == host).count();
    let scenario_alerts = on("WIN-DAKEQI") + on("Web服务器-北机房") + on("Web服务器-南机房");
    assert!(
        on("WIN-DAKEQI") >= 1 && on("Web服务器-北机房") >= 3,
        "{:?}",
        alerts.iter().map(|x| &x.1.rule.title).collect::<Vec<_>>()
    );
    let of = |host: &str| {
        let ids: std::collections::BTreeSet<String> = alerts
            .iter()
            .filter(|(_, a, _)| a.endpoint.name == host)
            .map(|(id, _, _)| inc.incident_of(id).unwrap().id.clone())
            .collect();
        ids
    };
    let main = of("WIN-DAKEQI");
    assert_eq!(main.len(), 1, "the workstation's alerts are one incident");
    assert_eq!(of("Web服务器-北机房"), main, "the web server's alerts join it");
    let id = main.iter().next().unwrap().clone();
    let it = changed.iter().find(|(i, _)| i.id == id).map(|(i, _)| i).expect("reported as changed");
    assert_eq!(it.alerts.len(), scenario_alerts, "exactly the scenario's alerts: {:?}", it.alerts);
    assert_eq!(it.root, "WIN-DAKEQI");
    let path: Vec<(&str, &str)> = it.path.iter().map(|s| (s.kind.as_str(), s.name.as_str())).collect();
    assert_eq!(
        path,
        vec![("host", "WIN-DAKEQI"), ("host", "Web服务器-北机房"), ("domain", "cdn-update.example")]
    );
    assert!(it.path[1..].iter().all(|s| !s.events.is_empty()), "each hop has evidence");
    let stages: Vec<usize> = it.alerts.iter().map(Anchor::stage).collect();
    assert!(stages.windows(2).all(|w| w[0] <= w[1]), "kill-chain order: {stages:?}");
    assert_eq!(it.joins.len(), it.alerts.len() - 1, "every alert after the first says why");
    // The second attack: its own incident, with its own path.
    let other = of("WIN-OTHER");
    assert_eq!(other.len(), 1);
    assert_ne!(other, main);
    assert_eq!(of("WEB-OTHER-N"), other);
    let o = inc.incident_of(&alerts.iter().find(|x| x.1.endpoint.name == "WIN-OTHER").unwrap().0).unwrap();
    assert_eq!(o.path.last().map(|s| s.name.as_str()), Some("other.example"));
    // Fleet alerts (if any) never join either attack.
    for (aid, a, _) in &alerts {
        if a.endpoint.name.starts_with("ws-") || a.endpoint.name.starts_with("srv-") {
            let i = inc.incident_of(aid).unwrap();
            assert!(i.id != id && !other.contains(&i.id), "{} joined an attack", a.rule.title);
        }
    }
    // Nothing changes on a second pass, and replaying gives the same ids.
    assert!(inc.update("default", &g).is_empty());
    let mut again = Incidents::new(IncidentConfig::default());
    again.add(alerts.iter().map(|(id, a, r)| anchor(id, a, r)));
    again.update("default", &g);
    assert_eq!(again.incident_of(&alerts[0].0).unwrap().id, inc.incident_of(&alerts[0].0).unwrap().id);
}

#[test]
fn a_late_edge_merges_two_incidents_into_the_older_one() {
    let events = scenario(None);
    let (recs, alerts) = detect(&events, 1);
    // Without the reports of inbound connections (the servers' accepts, the workstation's accept of
    // the LDAP callback), no host is linked to another.
    let accept =
        |r: &Record| matches!(r.get("event_action").and_then(|c| c.as_str()), Some("accept" | "http-access"));
    let mut g = Graph::new(GraphConfig::default());
    for r in recs.iter().filter(|r| !accept(r)) {
        g.add(r);
    }
    let mut inc = Incidents::new(IncidentConfig::default());
    inc.add(alerts.iter().map(|(id, a, r)| anchor(id, a, r)));
    inc.update("default", &g);
    let pc_alert = &alerts.iter().find(|x| x.1.endpoint.name == "WIN-DAKEQI").unwrap().0;
    let web_alert = &alerts.iter().find(|x| x.1.endpoint.name == "Web服务器-北机房").unwrap().0;
    let (a, b) =
        (inc.incident_of(pc_alert).unwrap().id.clone(), inc.incident_of(web_alert).unwrap().id.clone());
    assert_ne!(a, b);
    for r in recs.iter().filter(|r| accept(r)) {
        g.add(r);
    }
    let changed = inc.update("default", &g);
    assert_eq!(inc.incident_of(web_alert).unwrap().id, a, "the older incident absorbs the newer");
    assert!(changed.iter().any(|(i, into)| i.id == b && into.as_deref() == Some(a.as_str())), "{changed:?}");
    assert!(inc.incident_of(pc_alert).unwrap().merged_from.contains(&b));
}

#[test]
fn eviction_bounds_the_graph_and_readding_the_same_events_changes_nothing() {
    let (recs, _) = detect(&scenario(None), 1);
    let mut g = graph_of(&recs);
    let (n, e) = g.size();
    for r in &recs {
        g.add(r);
    }
    assert_eq!(g.size(), (n, e));
    assert_eq!(g.stats().duplicates, recs.len() as u64);
    // An event two days later pushes the scenario out of the hot window.
    let late = decode(
        &json!({"@timestamp": schemas::time::format_micros(BASE + 50 * 3_600_000_000), "host": {"name": "late"},
                "event": {"category": "process", "action": "start"}, "process": {"entity_id": "x", "name": "x.exe"}}),
        10_000,
    );
    g.add(&late);
    g.evict();
    assert!(g.find(NodeKind::Process, "win-dakeqi-p-6644-1").is_none());
    assert!(g.size().0 <= 2, "{:?}", g.size());
}

/// The graph's key maps agree with what it holds: every node found by its key, every edge by its
/// endpoints and kind, and nothing else in either map.
fn assert_maps_agree(g: &Graph) {
    let nodes: usize = g.nodes.iter().map(|m| m.len()).sum();
    assert_eq!(nodes, g.g.node_count());
    for i in g.g.node_indices() {
        assert_eq!(g.find(g.g[i].kind, &g.g[i].key), Some(i), "{:?}", g.g[i].key);
    }
    assert_eq!(g.edges.len(), g.g.edge_count());
    for e in g.g.edge_references() {
        assert_eq!(g.edges.get(&(e.source(), e.target(), e.weight().kind)), Some(&e.id()));
    }
}

#[test]
fn evicting_a_hubs_older_edges_keeps_every_index_and_map_in_step() {
    let mut g = Graph::new(GraphConfig::default());
    // 2,000 processes, a second apart, each connecting out to one of two domains (hubs of about a
    // thousand edges each), each spawned by its own parent.
    let event = |i: i64, kind: &str| {
        let mut e = json!({"@timestamp": schemas::time::format_micros(BASE + i * 1_000_000),
            "host": {"name": format!("h{}", i % 7)},
            "process": {"entity_id": format!("c{i}"), "name": "x.exe", "parent": {"entity_id": format!("p{i}")}}});
        match kind {
            "start" => e["event"] = json!({"category": "process", "action": "start"}),
            _ => {
                e["event"] = json!({"category": "network", "action": "connect"});
                e["source"] = json!({"ip": "10.0.0.9", "port": 50000});
                e["destination"] =
                    json!({"ip": "203.0.113.7", "port": 443, "domain": format!("d{}.example", i % 2)});
            }
        }
        e
    };
    for i in 0..2_000 {
        g.add(&decode(&event(i, "start"), 2 * i as usize + 1));
        g.add(&decode(&event(i, "net"), 2 * i as usize + 2));
    }
    let hub = g.find(NodeKind::Domain, "d0.example").unwrap();
    assert_eq!(g.g.neighbors_directed(hub, petgraph::Direction::Incoming).count(), 1_000);
    let newest = g.find(NodeKind::Process, "c1999").unwrap();
    // Everything last seen before second 1,500 goes: the hubs keep their 250 newest callers each.
    g.drop_before(BASE + 1_500 * 1_000_000);
    assert_maps_agree(&g);
    assert_eq!(g.g.neighbors_directed(hub, petgraph::Direction::Incoming).count(), 250);
    assert!(g.find(NodeKind::Process, "c1499").is_none() && g.find(NodeKind::Process, "p1499").is_none());
    assert_eq!(g.find(NodeKind::Process, "c1999"), Some(newest), "kept nodes keep their index");
    // The kept edges are found again, not made twice; new ones take the freed places.
    let before = g.size();
    g.add(&decode(&event(1_999, "net"), 10_000));
    g.add(&decode(&event(2_000, "start"), 10_001));
    assert_eq!(g.size(), (before.0 + 2, before.1 + 1), "one new process and parent, one new spawn");
    assert_maps_agree(&g);
}

#[test]
fn address_leases_follow_the_host_that_reported_the_address_nearest_in_time() {
    let mut l = Leases::default();
    l.note("10.0.0.5", &"a".into(), 1_000);
    l.note("10.0.0.5", &"a".into(), 2_000);
    l.note("10.0.0.5", &"b".into(), 10_000);
    assert_eq!(l.owner("10.0.0.5", 1_500, 100), Some("a"));
    assert_eq!(l.owner("10.0.0.5", 9_950, 100), Some("b"));
    assert_eq!(l.owner("10.0.0.5", 5_000, 100), None, "nobody reported it then");
    assert!(is_internal_ip("10.1.2.3") && is_internal_ip("192.168.0.1") && is_internal_ip("fd00::1"));
    assert!(!is_internal_ip("203.0.113.66") && !is_internal_ip("8.8.8.8"));
}

#[test]
fn a_graph_over_its_edge_budget_drops_its_oldest_edges_and_says_what_it_covers() {
    let cfg = GraphConfig { max_edges: 100, ..GraphConfig::default() };
    let mut g = Graph::new(cfg);
    // 300 process starts a second apart, each spawned by its own parent: one edge each.
    let start = |i: i64| {
        json!({"@timestamp": schemas::time::format_micros(BASE + i * 1_000_000), "host": {"name": "h1"},
               "event": {"category": "process", "action": "start"},
               "process": {"entity_id": format!("c{i}"), "name": "x.exe", "parent": {"entity_id": format!("p{i}")}}})
    };
    for i in 0..300 {
        g.add(&decode(&start(i), i as usize + 1));
        g.evict();
        assert!(g.size().1 <= 100, "never more edges than the budget after eviction: {:?}", g.size());
    }
    // Each cut keeps three quarters of the budget, so the next comes a quarter of it later: the
    // first at edge 101, then every 26 edges (a cut to nine tenths would come every 11).
    assert_eq!(g.stats().size_evictions, 1 + (300 - 101) / 26, "cuts come once per quarter budget");
    // The newest starts are all there; the oldest are gone, and the graph says it no longer covers them.
    assert!(g.find(NodeKind::Process, "c299").is_some() && g.find(NodeKind::Process, "c290").is_some());
    assert!(g.find(NodeKind::Process, "c0").is_none() && g.find(NodeKind::Process, "p0").is_none());
    let from = g.covers_from();
    assert!(from > BASE + 150 * 1_000_000 && from <= BASE + 300 * 1_000_000, "{from}");
    let kept_oldest = (0..300).find(|i| g.find(NodeKind::Process, &format!("c{i}")).is_some()).unwrap();
    assert!(BASE + kept_oldest * 1_000_000 >= from, "everything from covers_from on is held");
    // Within the budget, time alone decides, and an empty graph covers its whole window.
    let mut small = Graph::new(GraphConfig::default());
    small.add(&decode(&start(0), 1));
    small.evict();
    assert_eq!(small.covers_from(), BASE - GraphConfig::default().hot_window);
}

#[test]
fn repeated_text_is_stored_once_and_released_with_the_nodes_that_held_it() {
    let mut g = Graph::new(GraphConfig::default());
    let start = |i: i64, host: &str| {
        json!({"@timestamp": schemas::time::format_micros(BASE + i * 1_000_000), "host": {"name": host},
               "user": {"name": "alice", "domain": "CORP"},
               "event": {"category": "process", "action": "start"},
               "process": {"entity_id": format!("{host}-c{i}"), "pid": 4000 + i, "name": "x.exe",
                           "executable": "C:\\Tools\\x.exe", "command_line": "x.exe --serve",
                           "parent": {"entity_id": format!("{host}-p{i}")}}})
    };
    for i in 0..40 {
        g.add(&decode(&start(i, if i % 2 == 0 { "h1" } else { "h2" }), i as usize + 1));
    }
    let (a, b) = (g.find(NodeKind::Process, "h1-c0").unwrap(), g.find(NodeKind::Process, "h2-c39").unwrap());
    let same = |x: &Text, y: &Text| std::ptr::eq(x.as_str().as_ptr(), y.as_str().as_ptr());
    let (na, nb) = (g.node(a), g.node(b));
    assert_eq!(na.attrs.get(Attr::Executable), Some("C:\\Tools\\x.exe"));
    for k in [Attr::Executable, Attr::CommandLine, Attr::User] {
        let value = |n: &Node| n.attrs.0.iter().find(|(a, _)| *a == k).map(|(_, v)| v.clone()).unwrap();
        assert!(same(&value(na), &value(nb)), "{k:?}: one copy for both hosts' processes");
    }
    assert!(same(&na.label, &nb.label), "labels are shared too");
    let h1 = g.find(NodeKind::Host, "h1").unwrap();
    assert!(same(na.host.as_ref().unwrap(), &g.node(h1).key), "a process names its host by the host's key");
    // Each spawn edge holds its event's id; the pid is the one value per process.
    let spawned = g.in_edges(a).next().unwrap().2;
    assert_eq!(spawned.events.len(), 1);
    let distinct_before = g.strings.len();
    assert!(distinct_before >= 40, "40 pids at least: {distinct_before}");
    // An event two days later evicts them all: the values they held go with them.
    let late = json!({"@timestamp": schemas::time::format_micros(BASE + 50 * 3_600_000_000),
                      "host": {"name": "late"}, "event": {"category": "process", "action": "start"},
                      "process": {"entity_id": "y", "name": "y.exe"}});
    g.add(&decode(&late, 100));
    g.evict();
    assert!(g.find(NodeKind::Process, "h1-c0").is_none());
    assert!(g.strings.len() <= 1, "only y.exe's label can be left: {}", g.strings.len());
}

#[test]
fn an_incident_that_holds_everything_it_reaches_is_not_searched_again() {
    let (recs, mut alerts) = detect(&scenario(None), 1);
    let mut g = graph_of(&recs);
    // Every alert but the latest, which is raised later.
    alerts.sort_by_key(|(_, _, r)| r.time());
    let (late_id, late_alert, late_rec) = alerts.pop().expect("the scenario raises alerts");
    let mut inc = Incidents::new(IncidentConfig::default());
    inc.add(alerts.iter().map(|(id, a, r)| anchor(id, a, r)));
    inc.update("default", &g);
    let first = inc.searches_run();
    // The earliest alert's search reaches every other: theirs are skipped, as they could only
    // unite what is united.
    assert!(first >= 1 && first < alerts.len() as u64, "{first} searches for {} alerts", alerts.len());
    let main = inc.incident_of(&alerts[0].0).unwrap().id.clone();
    assert!(alerts.iter().all(|(id, _, _)| inc.incident_of(id).unwrap().id == main), "one incident");
    // The graph grows (fleet noise on other hosts): the incident holds every alert its searches
    // could reach, each with its reason, so no alert is searched from again.
    let mut fleet = fixtures::fleet::FleetGenerator::new(5, 20);
    for i in 0..200 {
        let (_, e) = fleet.next_event(BASE + i * 10_000);
        g.add(&decode(&e, 10_000 + i as usize));
    }
    assert!(inc.update("default", &g).is_empty());
    assert_eq!(inc.searches_run(), first, "no search from alerts already joined");
    // A later alert outside the incident makes the older ones worth searching again, and joins.
    inc.add([anchor(&late_id, &late_alert, &late_rec)]);
    inc.update("default", &g);
    assert!(inc.searches_run() > first, "older alerts search toward the new one");
    assert_eq!(inc.incident_of(&late_id).unwrap().id, main);
}

#[test]
fn full_node_and_edge_vectors_grow_fourfold() {
    let mut g = Graph::new(GraphConfig::default());
    let start = |i: i64| {
        json!({"@timestamp": schemas::time::format_micros(BASE + i * 1_000_000), "host": {"name": "h1"},
               "event": {"category": "process", "action": "start"},
               "process": {"entity_id": format!("c{i}"), "name": "x.exe", "parent": {"entity_id": "root"}}})
    };
    let sent = 1_500;
    for i in 0..sent {
        g.add(&decode(&start(i), i as usize + 1));
    }
    let sent = sent as usize;
    assert_eq!(g.size(), (sent + 2, sent), "a node per child, the parent and the host; an edge per child");
    // First room for 1,024, then four times that; doubling would have stopped at 2,048.
    assert_eq!(g.g.capacity(), (4_096, 4_096));
}
