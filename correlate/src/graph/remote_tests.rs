//! Lateral movement that only its targets report, as a Windows agent ships it: an address nobody in
//! the fleet holds logs on to a file server over the network, opens the service control pipe and
//! installs a service in that logon's session, then registers a task on the domain controller the
//! same way. Expectations come from the events written here.

use super::*;
use crate::graph::GraphConfig;
use crate::incident::{IncidentConfig, Incidents, anchor_for};
use crate::sigma::Tagger;
use crate::sigma::tagger::alert_for;
use schemas::Record;
use serde_json::{Value, json};

const T0: i64 = 1_700_000_000_000_000;
const ATTACKER: &str = "10.9.9.9";

fn rec(line: usize, host: &str, ip: &str, minute: i64, body: Value) -> Record {
    let mut e = body;
    let o = e.as_object_mut().unwrap();
    o.insert("@timestamp".into(), json!(schemas::time::format_micros(T0 + minute * 60_000_000)));
    o.get_mut("event").expect("every event says what it is")["id"] = json!(format!("ev-{line}"));
    o.insert("host".into(), json!({"name": host, "ip": [ip], "os": {"family": "windows"}}));
    let ch = schemas::decode::Channel {
        tenant: "default",
        agent: "a",
        message_key: "1:1",
        stream_seq: 1,
        received: T0,
    };
    schemas::decode::decode_line(e.to_string().as_bytes(), line, &ch, &schemas::decode::Limits::default())
        .unwrap_or_else(|r| panic!("{r:?}: {e}"))
}

fn logon(session: &str) -> Value {
    json!({"event": {"category": "authentication", "action": "logon", "outcome": "success", "code": "4624"},
           "user": {"name": "alice", "domain": "CORP"}, "source": {"ip": ATTACKER},
           "winlog": {"channel": "Security", "logon": {"type": "3", "id": session}}})
}

/// The attack: on FS01 (10.0.0.10) a network logon, the svcctl pipe, a service installed in the
/// session; on DC01 (10.0.0.20) a logon and a task registered in its session; and on WS02 a logon
/// from another address.
fn attack() -> Vec<Record> {
    vec![
        rec(1, "FS01", "10.0.0.10", 0, logon("0x1001")),
        rec(
            2,
            "FS01",
            "10.0.0.10",
            1,
            json!({"event": {"category": "network", "action": "pipe-access", "code": "5145"},
            "source": {"ip": ATTACKER}, "file": {"path": "\\\\*\\IPC$\\svcctl"}, "winlog": {"channel": "Security", "logon": {"id": "0x1001"}}}),
        ),
        rec(
            3,
            "FS01",
            "10.0.0.10",
            2,
            json!({"event": {"category": "configuration", "action": "service-install", "code": "4697"},
            "service": {"name": "PSEXESVC"}, "file": {"path": "C:\\Windows\\PSEXESVC.exe"},
            "winlog": {"channel": "Security", "logon": {"id": "0x1001"}}}),
        ),
        rec(4, "DC01", "10.0.0.20", 30, logon("0x2002")),
        rec(
            5,
            "DC01",
            "10.0.0.20",
            31,
            json!({"event": {"category": "configuration", "action": "task-create", "code": "4698"},
            "file": {"path": "C:\\Windows\\System32\\Tasks\\Updater"}, "winlog": {"channel": "Security", "logon": {"id": "0x2002"}}}),
        ),
        rec(
            6,
            "WS02",
            "10.0.0.30",
            40,
            json!({"event": {"category": "authentication", "action": "logon", "outcome": "success", "code": "4624"},
            "user": {"name": "bob"}, "source": {"ip": "10.7.7.7"}, "winlog": {"channel": "Security", "logon": {"type": "10", "id": "0x3003"}}}),
        ),
    ]
}

fn edge_kinds(g: &Graph, from: NodeIndex) -> Vec<(EdgeKind, String)> {
    let mut v: Vec<(EdgeKind, String)> =
        g.out_edges(from).map(|(_, b, e)| (e.kind, g.node(b).key.to_string())).collect();
    v.sort();
    v
}

#[test]
fn an_unmanaged_source_gets_edges_to_what_it_did_on_each_target() {
    let mut g = Graph::new(GraphConfig::default());
    attack().iter().for_each(|r| g.add(r));
    let src = g.find(NodeKind::Ip, ATTACKER).expect("the source address is a node");
    assert_eq!(g.node(src).attrs.get(Attr::Unmanaged), Some("true"));
    assert_eq!(
        edge_kinds(&g, src),
        vec![
            (EdgeKind::LoggedOnTo, "DC01".to_owned()),
            (EdgeKind::LoggedOnTo, "FS01".to_owned()),
            (EdgeKind::InstalledService, "c:\\windows\\psexesvc.exe@FS01".to_owned()),
            (EdgeKind::AccessedShare, "FS01".to_owned()),
            (EdgeKind::CreatedTask, "c:\\windows\\system32\\tasks\\updater@DC01".to_owned()),
        ]
    );
}

#[test]
fn alerts_on_the_targets_join_one_incident_and_others_stay_apart() {
    let recs = attack();
    let mut g = Graph::new(GraphConfig::default());
    recs.iter().for_each(|r| g.add(r));
    // The pack's rules on the targets' own records: the service install, the task.
    let t = Tagger::cordon_pack(schemas::policy::Policy::cordon_default()).unwrap();
    let mut anchors = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        let mut r = r.clone();
        for d in t.tag(&mut r) {
            let a = alert_for(&r, &d).unwrap();
            anchors.push(anchor_for(&format!("alert-{i}"), &a, Graph::process_key(&r)));
        }
    }
    let hosts: Vec<&str> = anchors.iter().map(|a| a.host.as_str()).collect();
    assert!(hosts.contains(&"FS01") && hosts.contains(&"DC01"), "{hosts:?}");
    // A third alert on a host another address reached.
    let mut other = anchors.iter().find(|a| a.host == "FS01").unwrap().clone();
    other.alert = "alert-ws02".into();
    other.host = "WS02".into();
    other.entity = None;
    anchors.push(other);
    let mut inc = Incidents::new(IncidentConfig::default());
    inc.add(anchors.clone());
    inc.update("default", &g);
    let of = |h: &str| inc.incident_of(&anchors.iter().find(|a| a.host == h).unwrap().alert).unwrap().clone();
    let (fs, dc, ws) = (of("FS01"), of("DC01"), of("WS02"));
    assert_eq!(fs.id, dc.id, "one source reached both targets");
    assert_ne!(fs.id, ws.id, "another address, another incident");
    let join = fs.joins.iter().find(|j| j.hops.iter().any(|h| h.from == format!("ip:{ATTACKER}")));
    assert!(join.is_some(), "the join says it went through the source: {:?}", fs.joins);
}

#[test]
fn the_address_node_merges_into_the_host_that_later_reports_the_address() {
    let mut g = Graph::new(GraphConfig::default());
    attack().iter().for_each(|r| g.add(r));
    let before = edge_kinds(&g, g.find(NodeKind::Ip, ATTACKER).unwrap());
    // The attacker's machine enrols: its first event carries its address.
    g.add(&rec(
        7,
        "WS66",
        ATTACKER,
        50,
        json!({"event": {"category": "process", "action": "start"},
        "process": {"pid": 4, "executable": "C:\\Windows\\System32\\svchost.exe"}}),
    ));
    assert!(g.find(NodeKind::Ip, ATTACKER).is_none(), "the address node is gone");
    let host = g.find(NodeKind::Host, "WS66").unwrap();
    let after: Vec<(EdgeKind, String)> =
        edge_kinds(&g, host).into_iter().filter(|(k, _)| *k != EdgeKind::Spawned).collect();
    assert_eq!(after, before, "every edge now leaves the host");
    let to_fs =
        g.out_edges(host).find(|(_, b, e)| g.node(*b).key == "FS01" && e.kind == EdgeKind::LoggedOnTo);
    assert!(to_fs.unwrap().2.cross_host, "a host-to-host logon now");
    // Later logons from the address come from the host.
    g.add(&rec(8, "DC01", "10.0.0.20", 60, logon("0x4004")));
    assert!(g.find(NodeKind::Ip, ATTACKER).is_none());
}
