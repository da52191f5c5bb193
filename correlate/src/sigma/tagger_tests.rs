//! Cordon's rule pack: every rule on its test events, the scenario, a quiet fleet, the correlations
//! and the log alerts.

use super::*;
use serde_json::Value;

use crate::sigma::tests::decode;

fn tagger() -> Tagger {
    Tagger::cordon_pack(Policy::cordon_default().validated().unwrap()).unwrap()
}

#[test]
fn the_pack_compiles_and_its_tags_resolve() {
    let t = tagger();
    let correlations: Vec<_> = t.correlations().collect();
    assert_eq!(correlations.len(), 9);
    // The detection rules that only feed correlations carry no technique of their own.
    let feeders = [
        "cordon_internal_connection",
        "cordon_failed_logon",
        "cordon_file_rename",
        "cordon_explicit_credential_logon",
        "cordon_network_logon",
        "cordon_dcom_activated_program",
        "cordon_netlogon_authentication_refused",
    ];
    let singles: usize = CORDON_RULES
        .iter()
        .filter(|(f, _)| !f.starts_with("mr_"))
        .map(|(_, text)| super::super::load(text, &Pipeline::cordon_ecs()).len())
        .sum();
    assert_eq!(t.rules().len(), singles + feeders.len());
    for r in t.rules() {
        assert!(r.unknown_tags.is_empty(), "{}: {:?}", r.title, r.unknown_tags);
        let feeds = r.name.as_deref().is_some_and(|n| feeders.contains(&n));
        // Log-alert rules (with a group) are decided by their tactic; the rest by a technique.
        assert_eq!(r.techniques.is_empty(), feeds || r.group.is_some(), "{}", r.title);
        assert!(feeds || !r.tactics.is_empty() || !r.techniques.is_empty(), "{}", r.title);
    }
    for c in correlations {
        assert!(c.unknown_tags.is_empty() && !c.techniques.is_empty(), "{}", c.title);
    }
}

#[test]
fn every_rule_fires_on_its_positive_events_and_not_on_its_negative_ones() {
    let t = tagger();
    // Single-event rules; the correlations (`mr_*`) have their own tests below.
    let singles = || CORDON_RULES.iter().filter(|(f, _)| !f.starts_with("mr_"));
    let titles: std::collections::HashMap<&str, Vec<String>> = singles()
        .map(|(file, text)| {
            let rules = super::super::load(text, &Pipeline::cordon_ecs());
            (*file, rules.into_iter().map(|r| r.unwrap().title).collect())
        })
        .collect();
    let cases: Vec<Value> = include_str!("../../rules/tests.ndjson")
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut covered = std::collections::HashSet::new();
    for c in &cases {
        let file = c["rule"].as_str().unwrap();
        let title = titles.get(file).unwrap_or_else(|| panic!("no rule {file}"));
        let mut rec = decode(&c["event"]);
        let fired = t.tag(&mut rec).iter().any(|d| title.contains(&d.rule));
        assert_eq!(fired, c["fires"].as_bool().unwrap(), "{file} on {}", c["event"]);
        covered.insert((file, fired));
    }
    for (file, _) in singles() {
        assert!(
            covered.contains(&(*file, true)) && covered.contains(&(*file, false)),
            "{file} needs both kinds of test event"
        );
    }
}

#[test]
fn the_log4j_conti_scenario_is_tagged_as_the_source_describes() {
    let t = tagger();
    let s = fixtures::scenario::log4j_conti();
    let mut tagged: Vec<(String, Value, Vec<String>, String)> = Vec::new();
    for i in 0..s.events.len() {
        let e = s.materialise(i, 1_700_000_000_000_000);
        let mut rec = decode(&e);
        t.tag(&mut rec);
        let techniques = match rec.cell(col::THREAT_TECHNIQUE_ID) {
            Cell::List(l) => l.clone(),
            _ => Vec::new(),
        };
        let tier = rec.cell(col::POLICY_TIER).as_str().unwrap_or("").to_owned();
        tagged.push((s.hosts[s.events[i].host].agent.clone(), e, techniques, tier));
    }
    let with =
        |host: &str, t: &str| tagged.iter().filter(|x| x.0 == host && x.2.iter().any(|y| y == t)).count();
    let text = |x: &(String, Value, Vec<String>, String), needle: &str| x.1.to_string().contains(needle);
    // The oracle is the scenario's own text, not the engine.
    let scans = tagged
        .iter()
        .filter(|x| x.0 == "win-dakeqi" && text(x, "http-request") && text(x, "${jndi:"))
        .count();
    assert!(scans > 0);
    assert_eq!(with("win-dakeqi", "T1595.002"), scans, "scanning on the workstation");
    assert_eq!(with("win-dakeqi", "T1046"), scans);
    let exploit =
        tagged.iter().filter(|x| x.0 == "web-north" && text(x, "http-access") && text(x, "${jndi:")).count();
    assert!(exploit > 0);
    assert_eq!(
        with("web-north", "T1190") - with_parent_java(&tagged),
        exploit,
        "exploitation on the web server"
    );
    assert_eq!(with("web-north", "T1105"), 1, "java.exe writes update.exe");
    let renames = tagged.iter().filter(|x| text(x, "rename") && text(x, ".CONTI")).count();
    assert!(renames >= 10);
    assert_eq!(with("web-north", "T1486"), renames);
    assert!(
        tagged.iter().filter(|x| x.2.contains(&"T1486".to_owned())).all(|x| x.3 == "block"),
        "ransomware is blocked"
    );
    assert_eq!(with("web-north", "T1490"), 1, "vssadmin delete shadows");
    assert_eq!(with("win-dakeqi", "T1204.002"), 1, "the attachment runs");
    assert_eq!(with("win-dakeqi", "T1566.001"), 1, "the attachment is saved");
    // Nothing else in the scenario is tagged: the background traffic is clean.
    let expected = scans + exploit + with_parent_java(&tagged) + 1 + renames + 1 + 1 + 1;
    let south =
        tagged.iter().filter(|x| x.0 != "web-north" && x.0 != "win-dakeqi" && !x.2.is_empty()).count();
    assert_eq!(tagged.iter().filter(|x| !x.2.is_empty()).count(), expected + south);
    assert!(
        tagged
            .iter()
            .filter(|x| !x.2.is_empty() && x.0 != "web-north" && x.0 != "win-dakeqi")
            .all(|x| x.2 == vec!["T1190"]),
        "other web servers only see the exploitation attempt"
    );
}

/// Process starts under java.exe (T1190 + T1059).
fn with_parent_java(tagged: &[(String, Value, Vec<String>, String)]) -> usize {
    tagged
        .iter()
        .filter(|x| {
            x.1["process"]["parent"]["executable"]
                .as_str()
                .is_some_and(|p| p.to_lowercase().ends_with("\\java.exe"))
        })
        .count()
}

#[test]
fn a_simulated_fleet_raises_nothing() {
    let t = tagger();
    let mut state = t.correlator();
    let mut fleet = fixtures::fleet::FleetGenerator::new(7, 50);
    let (mut fired, mut correlated, mut fed) = (0, 0, 0);
    for i in 0..20_000 {
        let (_, mut e) = fleet.next_event(1_700_000_000_000_000 + i * 1000);
        e["event"]["id"] = serde_json::json!(format!("f{i}"));
        let mut rec = decode(&e);
        let (d, hits) = t.tag_and_hits(&mut rec);
        fired += usize::from(!d.is_empty());
        fed += usize::from(!hits.is_empty());
        correlated += t.correlate(&mut state, &rec, &hits).len();
    }
    assert_eq!(fired, 0, "background activity must not match the attack rules");
    assert!(fed > 1000, "internal connections and renames feed the correlations ({fed})");
    assert_eq!(correlated, 0, "nor add up to a scan, a brute force or a mass rename");
}

#[test]
fn the_scenario_s_sweep_is_one_scanning_alert_on_the_workstation() {
    let t = tagger();
    let mut state = t.correlator();
    let s = fixtures::scenario::log4j_conti();
    let mut out = Vec::new();
    let mut sweep = std::collections::BTreeSet::new();
    for i in 0..s.events.len() {
        let mut e = s.materialise(i, 1_700_000_000_000_000);
        e["event"]["id"] = serde_json::json!(format!("s{i}"));
        let mut rec = decode(&e);
        let (_, hits) = t.tag_and_hits(&mut rec);
        let dst = e["destination"]["ip"].as_str().unwrap_or("");
        if s.hosts[s.events[i].host].agent == "win-dakeqi" && dst.starts_with("10.20.2.") {
            sweep.insert(dst.to_owned());
        }
        for d in t.correlate(&mut state, &rec, &hits) {
            out.push((s.hosts[s.events[i].host].name.clone(), d));
        }
    }
    assert!(sweep.len() >= 20, "the scenario sweeps {} addresses", sweep.len());
    assert_eq!(out.len(), 1, "{out:?}");
    let (host, d) = &out[0];
    assert_eq!((host.as_str(), d.techniques.clone()), ("WIN-DAKEQI", vec!["T1046".to_owned()]));
    let c = d.correlation.as_ref().unwrap();
    assert_eq!(c.fire.count, 20, "fires at the 20th distinct address");
    let alert = alert_for(&decode(&s.materialise(0, 1_700_000_000_000_000)), d).unwrap();
    assert_eq!(alert.object, "host.name=WIN-DAKEQI");
    assert_eq!(alert.evidence.len(), c.fire.evidence.len());
    assert_eq!(alert.why["correlation"]["type"], "value_count");
}

#[test]
fn log_alerts_carry_the_rule_group_the_reason_and_the_raw_line() {
    let t = tagger();
    let line = "Nov 23 10:00:01 web-1 sshd[811]: Failed password for invalid user admin from 203.0.113.9 port 52211 ssh2";
    let e = serde_json::json!({"event": {"category": "authentication", "action": "sshd-login", "outcome": "failure",
        "reason": "invalid user", "dataset": "linux.auth", "original": line},
        "process": {"name": "sshd", "pid": 811}, "user": {"name": "admin"}, "source": {"ip": "203.0.113.9"}});
    let mut rec = decode(&e);
    let found = t.tag(&mut rec);
    assert_eq!(found.iter().map(|d| d.rule.as_str()).collect::<Vec<_>>(), vec!["SSH login failure"]);
    let a = alert_for(&rec, &found[0]).unwrap();
    assert_eq!(
        (a.source.as_str(), a.level, a.status),
        ("log analysis (Sigma)", 2, schemas::alert::Status::Alerted)
    );
    let log = a.log.unwrap();
    assert_eq!(
        (log.rule_group.as_deref(), log.log_type.as_deref(), log.reason.as_deref(), log.raw.as_deref()),
        (Some("authentication_failed"), Some("linux.auth"), Some("invalid user"), Some(line))
    );
    assert_eq!(log.rule_id, found[0].rule_id);
    assert_eq!(a.tactics, vec!["Credential Access"]);
}

#[test]
fn brute_force_and_mass_renames_from_the_pack() {
    let mut stream = PackStream::new();
    let mut fire = |i: i64, e: Value| stream.feed(e, i).into_iter().map(|(rule, _)| rule).collect::<Vec<_>>();
    let fail = |user: &str| {
        serde_json::json!({"event": {"category": "authentication", "action": "logon", "outcome": "failure"},
            "host": {"name": "SRV"}, "source": {"ip": "203.0.113.9"}, "user": {"name": user}})
    };
    let mut seen = Vec::new();
    for i in 0..10 {
        seen.extend(fire(i, fail(&format!("user{i}"))));
    }
    assert_eq!(
        seen,
        vec![
            "Brute force (many failed logons from one source)",
            "Password spraying (many accounts tried from one source)"
        ]
    );
    let rename = |n: i64, proc_id: &str| {
        serde_json::json!({"event": {"category": "file", "action": "rename"}, "host": {"name": "SRV"},
            "process": {"entity_id": proc_id}, "file": {"path": format!("C:\\data\\f{n}.xlsx.enc")}})
    };
    let mut seen = Vec::new();
    for n in 0..49 {
        seen.extend(fire(100 + n / 10, rename(n, "p-1")));
        seen.extend(fire(100 + n / 10, rename(n, "p-2")));
    }
    assert!(seen.is_empty(), "49 renames per process");
    assert_eq!(
        fire(110, rename(50, "p-1")),
        vec!["Mass file renaming by one process (ransomware behaviour)"]
    );
}

#[test]
fn operator_rule_files_load_beside_the_pack_and_refusals_say_why() {
    use crate::sigma::RuleFile;
    let file = |name: &str, text: &str| RuleFile { name: name.to_owned(), text: text.to_owned() };
    let good = "title: Evil tool started\nid: 7d3c1f0e-0000-4000-8000-000000000001\ntags: [attack.execution, attack.t1204.002]\nlogsource: {category: process_creation, product: linux}\ndetection:\n  sel:\n    Image|endswith: '/evil-tool'\n  condition: sel\nlevel: high\n";
    let bad = "title: Bad modifier\nid: bad-1\nlogsource: {category: process_creation, product: linux}\ndetection:\n  sel:\n    Image|sorcery: x\n  condition: sel\n";
    let orphan = "title: Orphan correlation\nid: corr-1\ncorrelation:\n  type: event_count\n  rules: [no-such-rule]\n  group-by: [host.name]\n  timespan: 5m\n  condition: {gte: 3}\n";
    let files =
        vec![file("custom/good.yml", good), file("custom/bad.yml", bad), file("custom/orphan.yml", orphan)];
    let t = Tagger::with_rule_files(files.clone(), Policy::cordon_default()).unwrap();
    let pack = Tagger::cordon_pack(Policy::cordon_default()).unwrap();
    assert_eq!(t.rules().len(), pack.rules().len() + 1, "the good rule joins the pack");
    let s = t.sources();
    assert_eq!(s.loaded, 1);
    let refused: Vec<(&str, &str)> = s.refused.iter().map(|r| (r.file.as_str(), r.class)).collect();
    assert_eq!(refused, vec![("custom/bad.yml", "modifier"), ("custom/orphan.yml", "correlation")]);
    assert!(s.refused[1].reason.contains("no-such-rule"), "{:?}", s.refused);
    assert_eq!(s.digest, rules_digest(&files));
    assert_ne!(s.digest, pack.sources().digest, "agents can tell the two rule sets apart");
    assert_eq!(pack.sources().digest, pack_digest());

    // The operator's rule tags events like the pack's.
    let mut rec = decode(&serde_json::json!({
        "@timestamp": "2026-01-01T00:00:00Z",
        "event": {"category": "process", "action": "start"},
        "host": {"name": "h1", "os": {"type": "linux"}},
        "process": {"executable": "/opt/x/evil-tool", "pid": 7}
    }));
    let found = t.tag(&mut rec);
    assert!(
        found.iter().any(|d| d.rule == "Evil tool started" && d.techniques == ["T1204.002"]),
        "{found:?}"
    );
}

#[test]
fn rule_files_are_read_from_directories_sorted_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("team");
    std::fs::create_dir_all(rules.join("windows")).unwrap();
    std::fs::write(rules.join("windows/b.yml"), "title: b").unwrap();
    std::fs::write(rules.join("a.yaml"), "title: a").unwrap();
    std::fs::write(rules.join("notes.txt"), "not a rule").unwrap();
    let files = crate::sigma::read_rule_files(&[rules]).unwrap();
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["team/a.yaml", "team/windows/b.yml"]);
    assert!(crate::sigma::read_rule_files(&[dir.path().join("missing")]).is_err());
}

/// The pack's tagger and correlation state, fed ECS events one at a time as ingest feeds them.
struct PackStream {
    tagger: Tagger,
    state: crate::sigma::Correlator,
    fed: usize,
}

impl PackStream {
    fn new() -> Self {
        let tagger = tagger();
        let state = tagger.correlator();
        Self { tagger, state, fed: 0 }
    }

    /// Feeds `e` at `secs` after a fixed start, with an event id of its own; the correlations it
    /// completes as (rule title, techniques).
    fn feed(&mut self, mut e: Value, secs: i64) -> Vec<(String, Vec<String>)> {
        self.fed += 1;
        e["@timestamp"] =
            serde_json::json!(schemas::time::format_micros(1_700_000_000_000_000 + secs * 1_000_000));
        e["event"]["id"] = serde_json::json!(format!("e{}", self.fed));
        let mut rec = decode(&e);
        let (_, hits) = self.tagger.tag_and_hits(&mut rec);
        self.tagger
            .correlate(&mut self.state, &rec, &hits)
            .into_iter()
            .map(|d| (d.rule, d.techniques))
            .collect()
    }
}

/// Explicit-credential logons (Windows 4648, as the agent's EVTX reader ships them) from one account to
/// ten servers, and for ten accounts from one host, are password spraying; nine, or ten to the host
/// itself, are not.
#[test]
fn explicit_credential_spraying_from_the_pack() {
    let mut stream = PackStream::new();
    let mut n = 0;
    let mut fire = |e: Value| {
        n += 1;
        stream.feed(e, n * 2)
    };
    let explicit = |host: &str, subject: &str, account: &str, server: &str| {
        serde_json::json!({"event": {"category": "authentication", "action": "logon", "code": "4648", "outcome": "success"},
            "host": {"name": host}, "user": {"name": account},
            "winlog": {"channel": "Security", "event_data": {"SubjectUserName": subject, "TargetUserName": account,
                "TargetServerName": server, "ProcessName": "C:\\Windows\\System32\\net.exe"}}})
    };
    let mut seen = Vec::new();
    for i in 0..10 {
        seen.extend(fire(explicit("WS-1", "mallory", "Administrator", "localhost")));
        seen.extend(fire(explicit("WS-1", "mallory", "Administrator", &format!("SRV-{}", i % 9))));
    }
    assert!(seen.is_empty(), "nine servers, and the host itself, are not a spray: {seen:?}");
    seen.extend(fire(explicit("WS-1", "mallory", "Administrator", "SRV-9")));
    let rules: Vec<&str> = seen.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(rules, ["Explicit-credential logons to many targets (one account)"]);
    assert!(seen[0].1.iter().any(|t| t == "T1110.003"));
    let mut seen = Vec::new();
    for i in 0..10 {
        seen.extend(fire(explicit("WS-2", "bob", &format!("user{i}"), "SRV-1")));
    }
    let rules: Vec<&str> = seen.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(rules, ["Explicit-credential logons for many accounts (one host)"]);
}

/// A network logon from another address, then Excel started by DCOM on the same host within two
/// minutes, is DCOM lateral movement; Excel started by DCOM with no logon before it, a logon from
/// the host itself, or the two on different hosts, are not.
#[test]
fn dcom_activation_after_a_network_logon_from_the_pack() {
    let mut stream = PackStream::new();
    let mut fire = |e: Value, secs: i64| stream.feed(e, secs);
    let logon = |host: &str, from: &str| {
        serde_json::json!({"event": {"category": "authentication", "action": "logon", "code": "4624", "outcome": "success"},
            "host": {"name": host, "os": {"family": "windows"}}, "user": {"name": "pgustavo"}, "source": {"ip": from},
            "winlog": {"channel": "Security", "logon": {"type": "3"},
                       "event_data": {"TargetUserName": "pgustavo", "LogonType": 3, "IpAddress": from}}})
    };
    let excel = |host: &str| {
        serde_json::json!({"event": {"category": "process", "action": "start", "code": "1"},
            "host": {"name": host, "os": {"family": "windows"}},
            "process": {"executable": "C:\\Program Files (x86)\\Microsoft Office\\Root\\Office16\\EXCEL.EXE",
                        "command_line": "\"C:\\Program Files (x86)\\Microsoft Office\\Root\\Office16\\EXCEL.EXE\" /automation -Embedding",
                        "parent": {"executable": "C:\\Windows\\System32\\svchost.exe"}}})
    };
    let mut seen = fire(excel("WS6"), 0);
    seen.extend(fire(logon("WS6", "127.0.0.1"), 200));
    seen.extend(fire(excel("WS6"), 230));
    seen.extend(fire(logon("WS7", "172.18.39.5"), 400));
    seen.extend(fire(excel("WS6"), 430));
    assert!(seen.is_empty(), "no remote logon before it on that host: {seen:?}");
    let seen = [fire(logon("WS6", "172.18.39.5"), 1000), fire(excel("WS6"), 1030)].concat();
    let rules: Vec<&str> = seen.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(rules, ["Program activated over DCOM right after a network logon"]);
    assert!(seen[0].1.iter().any(|t| t == "T1021.003"), "{seen:?}");
}

/// Netlogon refusing one computer account thirty times in a minute (as the agent reads a domain
/// controller's `netlogon.log`) is ZeroLogon; twenty-nine, or thirty spread over two minutes, are not.
#[test]
fn a_netlogon_bad_password_flood_from_the_pack() {
    let mut stream = PackStream::new();
    let refused = |account: &str| {
        serde_json::json!({"event": {"category": "authentication", "action": "netlogon-authenticate", "outcome": "failure",
            "reason": "bad password (netlogon)"}, "host": {"name": "DC01"}, "user": {"name": account},
            "source": {"domain": "DC01"}, "process": {"name": "netlogon"}})
    };
    let mut seen = Vec::new();
    for k in 0..30 {
        seen.extend(stream.feed(refused("WS-7$"), k * 4)); // 30 over two minutes
    }
    for k in 0..29 {
        seen.extend(stream.feed(refused("DC01$"), 1000 + k));
    }
    assert!(seen.is_empty(), "{seen:?}");
    seen.extend(stream.feed(refused("DC01$"), 1040));
    let rules: Vec<&str> = seen.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(rules, ["Netlogon secure channel refused many times for one computer account (ZeroLogon)"]);
    assert!(seen[0].1.iter().any(|t| t == "T1210"), "{seen:?}");
}
