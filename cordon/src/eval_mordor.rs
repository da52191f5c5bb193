//! `cordon eval mordor --corpus DIR --rules DIR...`: technique tagging on OTRF's Mordor datasets.
//!
//! Every Windows host dataset whose metadata (any `_metadata/*.yaml` under `mordor/`, whatever its id
//! scheme: `SDWIN-...` or a UUID) names ATT&CK techniques (`attack_mappings`) and whose host files
//! are in the corpus (found by their path, in any letter case, else by their name anywhere under
//! `mordor/`; `.zip`, `.tar.gz`, `.gz` or plain JSON lines) goes through the rule sets event by event:
//! flat records through them, and the agent's ECS records through them plus Cordon's pack, as a
//! server runs them. Per dataset and label technique: did any event get that technique, or its
//! parent or a sub-technique? The answer is per-technique recall; the share of tagged events that
//! carry none of the dataset's labels says how much else the rules flag.

use correlate::sigma::{FlatEvent, RuleSet};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One dataset's result.
#[derive(Debug, serde::Serialize)]
pub struct MordorDataset {
    /// The metadata id (`SDWIN-190518201922`).
    pub id: String,
    /// The zip, relative to `mordor/`.
    pub file: String,
    /// Events read.
    pub events: u64,
    /// The label techniques (`T1003.001`).
    pub labels: Vec<String>,
    /// Labels some flat record was tagged with (or with their parent or a sub-technique).
    pub detected: Vec<String>,
    /// The same through the agent's path (ECS records, the rule sets plus Cordon's pack).
    pub detected_agent: Vec<String>,
    /// Events a rule tagged.
    pub tagged_events: u64,
    /// Of those, events whose techniques are all outside the labels.
    pub other_only: u64,
}

/// The whole evaluation.
#[derive(Debug, Default, serde::Serialize)]
pub struct MordorReport {
    /// Rules in the set.
    pub rules: usize,
    /// Datasets run.
    pub datasets: Vec<MordorDataset>,
    /// Windows datasets in the metadata whose host files are not in the corpus.
    pub skipped: Vec<String>,
    /// Events each rule tagged, over every dataset (by rule title).
    pub by_rule: BTreeMap<String, u64>,
    /// Archive members that could not be read (macOS resource forks, damaged members), skipped.
    pub members_skipped: usize,
}

impl MordorReport {
    /// Per label technique: (datasets labelled with it, detected on flat records, detected
    /// through the agent's path).
    pub fn per_technique(&self) -> BTreeMap<String, (usize, usize, usize)> {
        let mut out: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
        for d in &self.datasets {
            for l in &d.labels {
                let e = out.entry(l.clone()).or_default();
                e.0 += 1;
                e.1 += usize::from(d.detected.contains(l));
                e.2 += usize::from(d.detected_agent.contains(l));
            }
        }
        out
    }
}

/// `T1003` and `T1003.001` are related either way; so are equal ids, and the same technique across
/// ATT&CK versions.
fn related(a: &str, b: &str) -> bool {
    schemas::attack::crosswalk::related(a, b)
}

/// (id, label techniques, host file paths relative to `mordor/`) of a Windows dataset's metadata
/// (`platform` names Windows, or the id is a Windows one); `None` for any other.
fn metadata(text: &str) -> Option<(String, Vec<String>, Vec<String>)> {
    let docs = correlate::sigma::yaml::load(text).ok()?;
    let doc = docs.first()?;
    let id = doc["id"].as_str()?.to_owned();
    let windows = doc["platform"]
        .as_vec()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str())
        .any(|p| p.eq_ignore_ascii_case("windows"))
        || doc["platform"].as_str().is_some_and(|p| p.eq_ignore_ascii_case("windows"))
        || id.starts_with("SDWIN");
    if !windows {
        return None;
    }
    let mut labels = BTreeSet::new();
    for m in doc["attack_mappings"].as_vec().into_iter().flatten() {
        let Some(t) = m["technique"].as_str() else { continue };
        let sub = match &m["sub-technique"] {
            yaml_rust2::Yaml::String(s) => Some(s.clone()),
            yaml_rust2::Yaml::Integer(i) => Some(format!("{i:03}")),
            _ => None,
        };
        labels.insert(match sub {
            Some(s) if !s.is_empty() => format!("{t}.{s}"),
            _ => t.to_owned(),
        });
    }
    let files = doc["files"]
        .as_vec()
        .into_iter()
        .flatten()
        .filter(|f| f["type"].as_str() == Some("Host"))
        .filter_map(|f| f["link"].as_str())
        .map(|l| l.split_once("/datasets/").map_or(l, |(_, p)| p).to_owned())
        .collect();
    Some((id, labels.into_iter().collect(), files))
}

/// Adds the labels `techniques` tag to `detected`; whether any label was among them (`None`: no
/// technique at all).
fn note(techniques: &BTreeSet<&str>, labels: &[String], detected: &mut BTreeSet<String>) -> Option<bool> {
    if techniques.is_empty() {
        return None;
    }
    let mut any = false;
    for l in labels {
        if techniques.iter().any(|t| related(t, l)) {
            detected.insert(l.clone());
            any = true;
        }
    }
    Some(any)
}

/// Runs one dataset's events through both sets.
fn dataset(
    sets: &crate::eval::RuleSets,
    id: String,
    file: String,
    labels: Vec<String>,
    text: &str,
    by_rule: &mut BTreeMap<String, u64>,
) -> MordorDataset {
    let mut d = MordorDataset {
        id,
        file,
        events: 0,
        detected: Vec::new(),
        detected_agent: Vec::new(),
        labels,
        tagged_events: 0,
        other_only: 0,
    };
    let (mut detected, mut detected_agent) = (BTreeSet::new(), BTreeSet::new());
    let tags = |set: &RuleSet, matched: &[usize]| -> BTreeSet<String> {
        matched.iter().flat_map(|&i| set.rules()[i].techniques.iter().cloned()).collect()
    };
    let mut state = sets.tagger.correlator();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(line) else { continue };
        // Any shipper's layout, as the agent's EVTX reader makes records.
        d.events += 1;
        let flat = sensor_agent::winjson::flat_from_json(obj);
        let ev = FlatEvent(flat);
        let matched = sets.flat.matching_indices(&ev);
        for &i in &matched {
            *by_rule.entry(sets.flat.rules()[i].title.clone()).or_default() += 1;
        }
        let techniques = tags(&sets.flat, &matched);
        if let Some(on) = note(&techniques.iter().map(String::as_str).collect(), &d.labels, &mut detected) {
            d.tagged_events += 1;
            d.other_only += u64::from(!on);
        }
        if let Some(mut rec) = crate::eval::ecs_record(&ev.0) {
            let techniques = sets.agent_techniques(&mut state, &mut rec);
            note(&techniques.iter().map(String::as_str).collect(), &d.labels, &mut detected_agent);
        }
    }
    d.detected = detected.into_iter().collect();
    d.detected_agent = detected_agent.into_iter().collect();
    d
}

/// Every metadata file under `root` (in a `_metadata` folder at any depth), sorted.
pub(crate) fn metadata_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    crate::eval::files_under(root, |p| {
        p.parent().and_then(Path::file_name).is_some_and(|n| n == "_metadata")
            && p.extension().is_some_and(|x| x == "yaml" || x == "yml")
    })
}

/// Where a metadata link's file is under `root`: its own path, else the same path in any letter
/// case, else the one file of that name anywhere under `root`.
pub(crate) fn resolve(root: &Path, rel: &str, all: &[PathBuf]) -> Option<PathBuf> {
    let exact = root.join(rel);
    if exact.is_file() {
        return Some(exact);
    }
    let want = rel.to_ascii_lowercase();
    let rel_of = |p: &PathBuf| {
        p.strip_prefix(root).ok().map(|r| r.to_string_lossy().replace('\\', "/").to_ascii_lowercase())
    };
    if let Some(p) = all.iter().find(|p| rel_of(p).as_deref() == Some(want.as_str())) {
        return Some(p.clone());
    }
    let name = want.rsplit('/').next()?;
    let mut named = all
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().to_ascii_lowercase() == name));
    match (named.next(), named.next()) {
        (Some(p), None) => Some(p.clone()),
        _ => None,
    }
}

/// Runs every Windows host dataset with technique labels under `corpus/mordor` through the rules
/// under each of the `rules` directories, flat and through the agent's path.
pub fn techniques(corpus: &Path, rules: &[PathBuf]) -> anyhow::Result<MordorReport> {
    let sets = crate::eval::RuleSets::load(rules)?;
    let mut report = MordorReport { rules: sets.flat.rules().len(), ..MordorReport::default() };
    let root = corpus.join("mordor");
    let all = crate::eval::files_under(&root, |_| true)?;
    for m in metadata_files(&root)? {
        let Some((id, labels, files)) = std::fs::read_to_string(&m).ok().as_deref().and_then(metadata) else {
            continue;
        };
        if labels.is_empty() || files.is_empty() {
            continue;
        }
        let present: Vec<PathBuf> = files.iter().filter_map(|f| resolve(&root, f, &all)).collect();
        if present.is_empty() {
            report.skipped.push(id);
            continue;
        }
        let mut text = String::new();
        for f in &present {
            let (t, skipped) = crate::eval_archive::archive_json_lines(f)?;
            text.push_str(&t);
            report.members_skipped += skipped;
        }
        let names: Vec<String> = present
            .iter()
            .map(|p| p.strip_prefix(&root).unwrap_or(p).to_string_lossy().into_owned())
            .collect();
        report.datasets.push(dataset(&sets, id, names.join(", "), labels, &text, &mut report.by_rule));
    }
    Ok(report)
}

/// Prints the per-technique table and one summary line.
pub fn print(r: &MordorReport) {
    let per = r.per_technique();
    println!("technique tagging on Mordor (label: detected flat / through the agent's path, of datasets):");
    for (t, (n, hit, agent)) in &per {
        println!("  {t:<12} {hit}/{agent} of {n}");
    }
    // CORDON_EVAL_DEBUG=1: every dataset whose labels were not all detected.
    if std::env::var_os("CORDON_EVAL_DEBUG").is_some() {
        for d in r.datasets.iter().filter(|d| d.detected_agent.len() < d.labels.len()) {
            println!(
                "  missed {} ({}): labels {:?}, detected {:?} (agent's path {:?}), {} events, {} tagged",
                d.id, d.file, d.labels, d.detected, d.detected_agent, d.events, d.tagged_events
            );
        }
    }
    let mut noisy: Vec<(&String, &u64)> = r.by_rule.iter().collect();
    noisy.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    println!("the rules that tagged the most events:");
    for (title, n) in noisy.iter().take(5) {
        println!("  {n:>8}  {title}");
    }
    let (pairs, hits, agent) =
        per.values().fold((0, 0, 0), |(p, h, a), (n, hit, ag)| (p + n, h + hit, a + ag));
    let datasets_hit = r.datasets.iter().filter(|d| !d.detected.is_empty()).count();
    let events: u64 = r.datasets.iter().map(|d| d.events).sum();
    let tagged: u64 = r.datasets.iter().map(|d| d.tagged_events).sum();
    let other: u64 = r.datasets.iter().map(|d| d.other_only).sum();
    println!(
        "mordor: {} rules over {} Windows datasets ({events} events, {} in the metadata not in the corpus: {}); {agent}/{pairs} (dataset, label technique) pairs detected through the agent's path ({:.1}%), {hits}/{pairs} on flat records, over {} techniques; {datasets_hit} datasets with at least one label detected; {other} of {tagged} tagged events carry only other techniques; {} unreadable archive members skipped",
        r.rules,
        r.datasets.len(),
        r.skipped.len(),
        r.skipped.join(" "),
        100.0 * agent as f64 / pairs.max(1) as f64,
        per.len(),
        r.members_skipped,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: &str = "title: x\nid: SDWIN-1\nattack_mappings:\n  - technique: T1003\n    sub-technique: \"001\"\n    tactics: [TA0006]\n  - technique: T1059\n    sub-technique:\n    tactics: [TA0002]\nfiles:\n  - type: Host\n    link: https://raw.githubusercontent.com/OTRF/Security-Datasets/master/datasets/atomic/windows/credential_access/host/x.zip\n  - type: Network\n    link: https://example/datasets/atomic/windows/x.pcap\n";

    #[test]
    fn metadata_gives_labels_and_host_files() {
        let (id, labels, files) = metadata(META).unwrap();
        assert_eq!(id, "SDWIN-1");
        assert_eq!(labels, ["T1003.001", "T1059"]);
        assert_eq!(files, ["atomic/windows/credential_access/host/x.zip"]);
    }

    #[test]
    fn any_id_scheme_and_layout_is_read_and_other_platforms_are_not() {
        let compound = META
            .replace("id: SDWIN-1", "id: 34861b31-60d9-4c2a-a25d-df929256004b\nplatform: [Windows, Linux]");
        assert_eq!(metadata(&compound).unwrap().0, "34861b31-60d9-4c2a-a25d-df929256004b");
        let linux = META.replace("id: SDWIN-1", "id: SDLIN-1\nplatform: [Linux]");
        assert!(metadata(&linux).is_none());
        // Files named by a link in another letter case, or moved within the tree, are found.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("compound/Log4Shell")).unwrap();
        std::fs::create_dir_all(root.join("atomic/moved")).unwrap();
        std::fs::write(root.join("compound/Log4Shell/sysmon.zip"), b"").unwrap();
        std::fs::write(root.join("atomic/moved/x.zip"), b"").unwrap();
        let all = crate::eval::files_under(root, |_| true).unwrap();
        assert_eq!(
            resolve(root, "compound/log4shell/sysmon.zip", &all),
            Some(root.join("compound/Log4Shell/sysmon.zip"))
        );
        assert_eq!(resolve(root, "atomic/windows/host/x.zip", &all), Some(root.join("atomic/moved/x.zip")));
        assert_eq!(resolve(root, "atomic/windows/host/absent.zip", &all), None);
    }

    #[test]
    fn a_label_counts_when_an_event_gets_it_or_a_relative() {
        let rule = "title: LSASS\nid: r1\ntags: [attack.credential-access, attack.t1003]\n\
                    logsource: {product: windows, category: process_access}\n\
                    detection:\n  sel:\n    TargetImage|endswith: '\\lsass.exe'\n  condition: sel\n";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lsass.yml"), rule).unwrap();
        let sets = crate::eval::RuleSets::load(&[dir.path().to_owned()]).unwrap();
        let line = |target: &str| {
            serde_json::json!({"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 10, "TargetImage": target})
                .to_string()
        };
        let text = format!("{}\n{}\nnot json\n", line("C:\\Windows\\System32\\lsass.exe"), line("C:\\x.exe"));
        let mut by_rule = BTreeMap::new();
        let labels = vec!["T1003.001".into(), "T1059".into()];
        let d = dataset(&sets, "SDWIN-1".into(), "x.zip".into(), labels, &text, &mut by_rule);
        assert_eq!(by_rule.get("LSASS"), Some(&1));
        assert_eq!((d.events, d.tagged_events, d.other_only), (2, 1, 0));
        assert_eq!(d.detected, ["T1003.001"], "the parent technique counts for its sub-technique");
        assert_eq!(d.detected_agent, ["T1003.001"], "and through the agent's path");
    }
}
