//! `cordon eval lateral --corpus DIR`: the entity graph on OTRF's Mordor lateral-movement datasets.
//!
//! Each dataset (`mordor/atomic/windows/lateral_movement/host/*.zip`, JSON lines of a whole lab's
//! Windows logs during one technique) goes through the agent's Windows normaliser
//! (`sensor_agent::evtx::to_ecs`) and the ingest decoder into a fresh [`Graph`]. The question per
//! dataset: does the graph hold a cross-host edge (a connection both hosts reported, or a logon
//! from one host's address) from another host onto the target named in the dataset's own metadata
//! (`_metadata/*.yaml`: the `ComputerName`/`computername=`/`/target:` the operator typed)? Nothing
//! shared between the two hosts' events names the other: addresses are learned from each host's own
//! connection reports.

use anyhow::Context;
use correlate::graph::{EdgeKind, Graph, GraphConfig};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One dataset's result.
#[derive(Debug, serde::Serialize)]
pub struct LateralDataset {
    /// Zip file name.
    pub dataset: String,
    /// Events read.
    pub events: u64,
    /// Lines that were not JSON objects.
    pub bad_lines: u64,
    /// Hosts seen.
    pub hosts: Vec<String>,
    /// The target from the metadata (short host name, upper case), if it names one.
    pub expected_target: Option<String>,
    /// Cross-host edges between hosts: (source, target, kind, confirmed, events).
    pub edges: Vec<(String, String, String, bool, u64)>,
    /// Whether an edge from another host onto the expected target was found.
    pub found: Option<bool>,
}

/// The short, upper-case host name (`WORKSTATION6.theshire.local` -> `WORKSTATION6`).
fn short(host: &str) -> String {
    host.split('.').next().unwrap_or(host).to_ascii_uppercase()
}

/// The lateral-movement datasets the metadata under `root` names (any `_metadata` folder; a dataset
/// is lateral movement when its mappings name the tactic TA0008 or its files lie under
/// `lateral_movement/`), by their file name in lower case: the file's path under `root` as the
/// link gives it, and the target the operator typed, when the metadata shows one.
fn targets(root: &Path) -> anyhow::Result<BTreeMap<String, (String, Option<String>)>> {
    let patterns = [
        regex::Regex::new(r"(?i)set ComputerName\s+([A-Za-z0-9_.-]+)").expect("valid"),
        regex::Regex::new(r"(?i)computername[=:]\s*\\?\x22?([A-Za-z0-9_.-]+)").expect("valid"),
        regex::Regex::new(r"(?i)/target:([A-Za-z0-9_.-]+)").expect("valid"),
        regex::Regex::new(r"(?i)ComputerName\s+True\s+([A-Za-z0-9_.-]+)").expect("valid"),
        regex::Regex::new(r"(?i)/node:\x22?([A-Za-z0-9_.-]+)").expect("valid"),
        regex::Regex::new(r"(?i)\s/s\s+([A-Za-z0-9_.-]+)").expect("valid"),
        regex::Regex::new(r"(?i)GetTypeFromProgID\('[^']+',\s*'([0-9.]+)'").expect("valid"),
        regex::Regex::new(r"(?i)MoveExcel\w*\.exe\s+([0-9.]+)").expect("valid"),
        // A UNC path the operator used (`\\WORKSTATION6\C$`), not a drive path (`C:\\dir`).
        regex::Regex::new(r#"(?:^|[\s"'(`])\\\\([A-Za-z][A-Za-z0-9_-]+)[\\\s]"#).expect("valid"),
    ];
    let link = regex::Regex::new(
        r"(?i)(?:datasets/)?([A-Za-z0-9_./-]+/host/[A-Za-z0-9_.-]+\.(?:zip|tar\.gz|tgz|gz|json))",
    )
    .expect("valid");
    let mut out = BTreeMap::new();
    for m in crate::eval_mordor::metadata_files(root)? {
        let Ok(text) = std::fs::read_to_string(&m) else { continue };
        // What the operator typed (the description may name example hosts).
        let view = text.split_once("adversary_view:").map_or(text.as_str(), |x| x.1);
        let name = |t: &str| if t.parse::<std::net::IpAddr>().is_ok() { t.to_owned() } else { short(t) };
        let target = patterns.iter().find_map(|p| p.captures(view).map(|c| name(&c[1])));
        for c in link.captures_iter(&text) {
            let rel = c[1].split_once("/datasets/").map_or(&c[1], |(_, r)| r).to_owned();
            if !(text.contains("TA0008") || rel.contains("lateral_movement/")) {
                continue;
            }
            let file = rel.rsplit('/').next().unwrap_or_default().to_ascii_lowercase();
            out.insert(file, (rel, target.clone()));
        }
    }
    Ok(out)
}

/// A Mordor line as the flat record the Windows normaliser takes (`Computer`, `TimeCreated`).
fn flat_of(v: Map<String, Value>) -> Map<String, Value> {
    let mut flat = sensor_agent::winjson::flat_from_json(v);
    if let Some(h) = flat.get("Computer").and_then(Value::as_str).map(short) {
        flat.insert("Computer".into(), Value::String(h));
    }
    if let Some(t) = flat.get("@timestamp").cloned() {
        flat.insert("TimeCreated".into(), t);
    }
    flat
}

/// Runs one dataset's events into a graph.
fn dataset(path: &Path, expected: Option<&String>) -> anyhow::Result<LateralDataset> {
    let (text, skipped) = crate::eval_archive::archive_json_lines(path)?;
    if skipped > 0 {
        println!("  {}: {skipped} unreadable archive members skipped", path.display());
    }
    let name = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(dataset_text(&name, &text, expected))
}

/// One dataset's JSON lines into a graph, and what it shows.
fn dataset_text(name: &str, text: &str, expected: Option<&String>) -> LateralDataset {
    let mut records = Vec::new();
    let (mut events, mut bad) = (0u64, 0u64);
    let limits = schemas::decode::Limits::default();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(line) else {
            bad += 1;
            continue;
        };
        events += 1;
        let ecs = sensor_agent::evtx::to_ecs(&flat_of(obj));
        let host = ecs["host"]["name"].as_str().unwrap_or("unknown").to_owned();
        let ch = schemas::decode::Channel {
            tenant: "eval",
            agent: &host.to_ascii_lowercase(),
            message_key: "1:1",
            stream_seq: 1,
            received: schemas::time::now_micros(),
        };
        match schemas::decode::decode_line(ecs.to_string().as_bytes(), n + 1, &ch, &limits) {
            Ok(r) => records.push(r),
            Err(_) => bad += 1,
        }
    }
    records.sort_by_key(schemas::Record::time);
    let mut g = Graph::new(GraphConfig { hot_window: i64::MAX / 4, ..GraphConfig::default() });
    for r in &records {
        g.add(r);
    }
    let hosts: BTreeSet<String> = records.iter().map(|r| r.host().to_owned()).collect();
    // Cross-host edges, lifted to hosts: process -> process (confirmed), process -> host, host -> host.
    let mut edges: BTreeMap<(String, String, String), (bool, u64)> = BTreeMap::new();
    for n in g.node_indices() {
        for (_, to, e) in g.out_edges(n) {
            if !e.cross_host {
                continue;
            }
            let (Some(a), Some(b)) = (g.host_of(n), g.host_of(to)) else { continue };
            if a == b {
                continue;
            }
            let kind = match e.kind {
                EdgeKind::LoggedOnTo => "logon",
                _ => "connection",
            };
            let slot = edges.entry((a.to_string(), b.to_string(), kind.to_owned())).or_insert((false, 0));
            slot.0 |= e.confirmed || e.kind == EdgeKind::LoggedOnTo;
            slot.1 += e.count;
        }
    }
    // A target given as an address is the host that held it.
    let expected = expected.map(|t| match t.parse::<std::net::IpAddr>() {
        Ok(_) => g
            .leases()
            .owner(t, records.last().map_or(0, schemas::Record::time), i64::MAX / 4)
            .map(short)
            .unwrap_or_else(|| t.clone()),
        Err(_) => t.clone(),
    });
    let expected = expected.as_ref();
    let found = expected.map(|t| {
        edges.iter().any(|((a, b, _), (confirmed, _))| short(b) == *t && short(a) != *t && *confirmed)
    });
    LateralDataset {
        dataset: name.to_owned(),
        events,
        bad_lines: bad,
        hosts: hosts.into_iter().collect(),
        expected_target: expected.cloned(),
        edges: edges.into_iter().map(|((a, b, k), (c, n))| (a, b, k, c, n)).collect(),
        found,
    }
}

/// Runs every lateral-movement host dataset under `corpus/mordor`: those the metadata names (found
/// wherever they lie, in any archive form) and any other host dataset under a `lateral_movement`
/// folder.
pub fn lateral(corpus: &Path) -> anyhow::Result<Vec<LateralDataset>> {
    let root = corpus.join("mordor");
    let all =
        crate::eval::files_under(&root, |_| true).with_context(|| format!("reading {}", root.display()))?;
    let named = targets(&root)?;
    let mut files: BTreeSet<std::path::PathBuf> =
        named.values().filter_map(|(rel, _)| crate::eval_mordor::resolve(&root, rel, &all)).collect();
    let archive = |p: &Path| {
        let n = p.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        [".zip", ".tar.gz", ".tgz", ".gz", ".json"].iter().any(|x| n.ends_with(x))
    };
    let under = |p: &Path, dir: &str| p.components().any(|c| c.as_os_str() == dir);
    files.extend(
        all.iter().filter(|p| under(p, "lateral_movement") && under(p, "host") && archive(p)).cloned(),
    );
    let mut out = Vec::new();
    for f in files {
        let name = f.file_name().map(|x| x.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        out.push(dataset(&f, named.get(&name).and_then(|(_, t)| t.as_ref()))?);
    }
    Ok(out)
}

/// Prints one line per dataset, then the summary line.
pub fn print_lateral(r: &[LateralDataset]) {
    for d in r {
        let edges: Vec<String> =
            d.edges.iter().filter(|e| e.3).map(|(a, b, k, _, n)| format!("{a} -> {b} ({k}, {n})")).collect();
        let verdict = match d.found {
            Some(true) => "edge found",
            Some(false) => "EDGE MISSING",
            None => "no target in metadata",
        };
        println!(
            "{:<70} {:>6} events, hosts {}, target {}: {verdict}; {}",
            d.dataset,
            d.events,
            d.hosts.len(),
            d.expected_target.as_deref().unwrap_or("?"),
            if edges.is_empty() { "no cross-host edge".to_owned() } else { edges.join(", ") }
        );
    }
    let with_truth = r.iter().filter(|d| d.found.is_some()).count();
    let found = r.iter().filter(|d| d.found == Some(true)).count();
    let any = r.iter().filter(|d| d.edges.iter().any(|e| e.3)).count();
    let events: u64 = r.iter().map(|d| d.events).sum();
    println!(
        "lateral: {} datasets, {events} events; {found} of {with_truth} with a target in their metadata produce the source -> target edge; {any} of {} have a confirmed cross-host edge",
        r.len(),
        r.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A lab of two hosts written here in Mordor's shape: the workstation's Sysmon sees its
    /// PowerShell connect out; the target's sees services.exe accept; the target's Security log
    /// has the network logon from the workstation's address; nothing names the other host.
    fn lab() -> String {
        let t = |s: u32| format!("2020-09-20T16:16:{s:02}.000Z");
        [
            json!({"Hostname": "WS5.lab.local", "Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 3,
                   "@timestamp": t(1), "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                   "ProcessGuid": "{p-5}", "ProcessId": "5904", "SourceIp": "172.18.39.5", "SourcePort": "50001",
                   "DestinationIp": "172.18.39.6", "DestinationPort": "135", "Initiated": "true"}),
            json!({"Hostname": "WS6.lab.local", "Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 3,
                   "@timestamp": t(2), "Image": "C:\\Windows\\System32\\services.exe", "ProcessGuid": "{p-6}",
                   "ProcessId": "704", "SourceIp": "172.18.39.5", "SourcePort": "50001", "DestinationIp": "172.18.39.6",
                   "DestinationPort": "135", "Initiated": "false"}),
            json!({"Hostname": "WS6.lab.local", "Channel": "security", "EventID": 4624, "@timestamp": t(3),
                   "LogonType": 3, "IpAddress": "172.18.39.5", "TargetUserName": "pgustavo", "TargetDomainName": "LAB"}),
            json!({"Hostname": "WS6.lab.local", "Channel": "System", "EventID": 7045, "@timestamp": t(4),
                   "ServiceName": "Updater", "ImagePath": "%COMSPEC% /C powershell -enc AAAA", "AccountName": "pgustavo"}),
        ]
        .iter()
        .map(|v| v.to_string())
        .chain(["not json".to_owned()])
        .collect::<Vec<_>>()
        .join("\n")
    }

    #[test]
    fn a_lateral_movement_becomes_a_confirmed_connection_and_a_logon_onto_the_target() {
        let d = dataset_text("lab", &lab(), Some(&"WS6".to_owned()));
        assert_eq!((d.events, d.bad_lines), (4, 1));
        assert_eq!(d.found, Some(true));
        let kinds: Vec<(&str, &str, &str, bool)> =
            d.edges.iter().map(|(a, b, k, c, _)| (a.as_str(), b.as_str(), k.as_str(), *c)).collect();
        assert_eq!(kinds, vec![("WS5", "WS6", "connection", true), ("WS5", "WS6", "logon", true)]);
        // The wrong target is not found.
        assert_eq!(dataset_text("lab", &lab(), Some(&"WS5".to_owned())).found, Some(false));
    }

    #[test]
    fn targets_come_from_what_the_operator_typed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("compound/_metadata")).unwrap();
        let meta = |n: &str, zip: &str, view: &str| {
            std::fs::write(
                dir.path().join("compound/_metadata").join(n),
                format!("title: x\ndescription: a UNC path such as \\\\SERVER\\FILES\\.\nattack_mappings:\n- technique: T1021\n  tactics: [TA0008]\nfiles:\n- link: https://x/datasets/compound/lab/host/{zip}\nsimulation:\n  adversary_view: |-\n    {view}\n"),
            )
            .unwrap();
        };
        meta("a.yaml", "a.zip", "(Empire: invoke_psexec) > set ComputerName WORKSTATION6.theshire.local");
        meta("b.yaml", "b.zip", "SharpWMI /command:\"action=exec computername=WORKSTATION6 command=x\"");
        meta(
            "c.yaml",
            "c.zip",
            "ShellCmd /shellcommand:\"C:\\Users\\p\\MoveExcelXLL.exe 172.18.39.6 C:\\\\programdata\\calc.xll\"",
        );
        meta("d.yaml", "d.zip", "Copy /destination:\"\\\\WORKSTATION6\\C$\\ProgramData\\x.exe\"");
        meta("e.yaml", "e.zip", "nothing here");
        let t = targets(dir.path()).unwrap();
        let target = |z: &str| t.get(z).and_then(|(_, t)| t.as_deref());
        assert_eq!(target("a.zip"), Some("WORKSTATION6"));
        assert_eq!(target("b.zip"), Some("WORKSTATION6"));
        assert_eq!(target("c.zip"), Some("172.18.39.6"));
        assert_eq!(target("d.zip"), Some("WORKSTATION6"));
        assert_eq!(
            t.get("e.zip").map(|(rel, t)| (rel.as_str(), t.is_none())),
            Some(("compound/lab/host/e.zip", true)),
            "the description's example host is not a target"
        );
    }
}
