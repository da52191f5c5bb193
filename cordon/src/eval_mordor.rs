//! `cordon eval mordor --corpus DIR --rules DIR`: technique tagging on OTRF's Mordor datasets.
//!
//! Every Windows host dataset whose metadata (`mordor/*/_metadata/*.yaml`) names ATT&CK techniques
//! (`attack_mappings`) and whose zip is in the corpus goes through a Sigma rule set (SigmaHQ's, on the
//! flat Windows pipeline) event by event. Per dataset and label technique: did any event get that
//! technique, or its parent or a sub-technique? The answer is per-technique recall; the share of
//! tagged events that carry none of the dataset's labels says how much else the rules flag.

use correlate::sigma::{FlatEvent, Pipeline, RuleSet};
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
    /// Labels some event was tagged with (or with their parent or a sub-technique).
    pub detected: Vec<String>,
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
    /// Datasets in the metadata that are not in the corpus (or are not Windows host logs).
    pub skipped: Vec<String>,
    /// Events each rule tagged, over every dataset (by rule title).
    pub by_rule: BTreeMap<String, u64>,
    /// Archive members that could not be read (macOS resource forks, damaged members), skipped.
    pub members_skipped: usize,
}

impl MordorReport {
    /// Per label technique: (datasets labelled with it, datasets where it was detected).
    pub fn per_technique(&self) -> BTreeMap<String, (usize, usize)> {
        let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for d in &self.datasets {
            for l in &d.labels {
                let e = out.entry(l.clone()).or_default();
                e.0 += 1;
                e.1 += usize::from(d.detected.contains(l));
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

/// (id, label techniques, dataset paths relative to `mordor/`) of a metadata file.
fn metadata(text: &str) -> Option<(String, Vec<String>, Vec<String>)> {
    let docs = yaml_rust2::YamlLoader::load_from_str(text).ok()?;
    let doc = docs.first()?;
    let id = doc["id"].as_str()?.to_owned();
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
        .filter_map(|l| l.split_once("/datasets/").map(|(_, p)| p.to_owned()))
        .filter(|p| p.ends_with(".zip"))
        .collect();
    Some((id, labels.into_iter().collect(), files))
}

/// Runs `set` over one dataset's events.
fn dataset(
    set: &RuleSet,
    id: String,
    file: String,
    labels: Vec<String>,
    text: &str,
    by_rule: &mut BTreeMap<String, u64>,
) -> MordorDataset {
    let mut d =
        MordorDataset { id, file, events: 0, detected: Vec::new(), labels, tagged_events: 0, other_only: 0 };
    let mut detected = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(line) else { continue };
        // Any shipper's layout, as the agent's EVTX reader makes records.
        d.events += 1;
        let ev = FlatEvent(sensor_agent::winjson::flat_from_json(obj));
        let matched = set.matching_indices(&ev);
        for &i in &matched {
            *by_rule.entry(set.rules()[i].title.clone()).or_default() += 1;
        }
        let techniques: BTreeSet<&str> =
            matched.iter().flat_map(|&i| set.rules()[i].techniques.iter().map(String::as_str)).collect();
        if techniques.is_empty() {
            continue;
        }
        d.tagged_events += 1;
        let mut any = false;
        for l in &d.labels {
            if techniques.iter().any(|t| related(t, l)) {
                detected.insert(l.clone());
                any = true;
            }
        }
        d.other_only += u64::from(!any);
    }
    d.detected = detected.into_iter().collect();
    d
}

/// Runs every Windows host dataset with technique labels under `corpus/mordor` through the rules
/// under `rules` (Windows rules, flat pipeline).
pub fn techniques(corpus: &Path, rules: &Path) -> anyhow::Result<MordorReport> {
    let pipeline = Pipeline::windows_flat();
    let mut compiled = Vec::new();
    for p in crate::eval::yaml_files(rules)? {
        if let Ok(text) = std::fs::read_to_string(&p) {
            compiled.extend(correlate::sigma::load(&text, &pipeline).into_iter().filter_map(Result::ok));
        }
    }
    let set = RuleSet::new(compiled);
    let mut report = MordorReport { rules: set.rules().len(), ..MordorReport::default() };
    let root = corpus.join("mordor");
    let mut metas: Vec<PathBuf> = Vec::new();
    for kind in ["atomic", "compound"] {
        if let Ok(dir) = std::fs::read_dir(root.join(kind).join("_metadata")) {
            metas.extend(dir.flatten().map(|e| e.path()));
        }
    }
    metas.sort();
    for m in metas {
        let Some((id, labels, files)) = std::fs::read_to_string(&m).ok().as_deref().and_then(metadata) else {
            continue;
        };
        if labels.is_empty() || !id.starts_with("SDWIN") {
            continue;
        }
        let present: Vec<String> = files.into_iter().filter(|f| root.join(f).is_file()).collect();
        if present.is_empty() {
            report.skipped.push(id);
            continue;
        }
        let mut text = String::new();
        for f in &present {
            let (t, skipped) = crate::eval::zip_json_lines(&root.join(f))?;
            text.push_str(&t);
            report.members_skipped += skipped;
        }
        report.datasets.push(dataset(&set, id, present.join(", "), labels, &text, &mut report.by_rule));
    }
    Ok(report)
}

/// Prints the per-technique table and one summary line.
pub fn print(r: &MordorReport) {
    let per = r.per_technique();
    println!("technique tagging on Mordor (label: datasets, detected):");
    for (t, (n, hit)) in &per {
        println!("  {t:<12} {hit}/{n}");
    }
    // CORDON_EVAL_DEBUG=1: every dataset whose labels were not all detected.
    if std::env::var_os("CORDON_EVAL_DEBUG").is_some() {
        for d in r.datasets.iter().filter(|d| d.detected.len() < d.labels.len()) {
            println!(
                "  missed {} ({}): labels {:?}, detected {:?}, {} events, {} tagged",
                d.id, d.file, d.labels, d.detected, d.events, d.tagged_events
            );
        }
    }
    let mut noisy: Vec<(&String, &u64)> = r.by_rule.iter().collect();
    noisy.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    println!("the rules that tagged the most events:");
    for (title, n) in noisy.iter().take(5) {
        println!("  {n:>8}  {title}");
    }
    let (pairs, hits) = per.values().fold((0, 0), |(p, h), (n, hit)| (p + n, h + hit));
    let datasets_hit = r.datasets.iter().filter(|d| !d.detected.is_empty()).count();
    let events: u64 = r.datasets.iter().map(|d| d.events).sum();
    let tagged: u64 = r.datasets.iter().map(|d| d.tagged_events).sum();
    let other: u64 = r.datasets.iter().map(|d| d.other_only).sum();
    println!(
        "mordor: {} rules over {} Windows datasets ({events} events, {} in the metadata not in the corpus); {hits}/{pairs} (dataset, label technique) pairs detected ({:.1}%) over {} techniques; {datasets_hit} datasets with at least one label detected; {other} of {tagged} tagged events carry only other techniques; {} unreadable archive members skipped",
        r.rules,
        r.datasets.len(),
        r.skipped.len(),
        100.0 * hits as f64 / pairs.max(1) as f64,
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
    fn a_label_counts_when_an_event_gets_it_or_a_relative() {
        let rule = "title: LSASS\nid: r1\ntags: [attack.credential-access, attack.t1003]\n\
                    logsource: {product: windows, category: process_access}\n\
                    detection:\n  sel:\n    TargetImage|endswith: '\\lsass.exe'\n  condition: sel\n";
        let set = RuleSet::new(
            correlate::sigma::load(rule, &Pipeline::windows_flat()).into_iter().map(Result::unwrap).collect(),
        );
        let line = |target: &str| {
            serde_json::json!({"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 10, "TargetImage": target})
                .to_string()
        };
        let text = format!("{}\n{}\nnot json\n", line("C:\\Windows\\System32\\lsass.exe"), line("C:\\x.exe"));
        let mut by_rule = BTreeMap::new();
        let labels = vec!["T1003.001".into(), "T1059".into()];
        let d = dataset(&set, "SDWIN-1".into(), "x.zip".into(), labels, &text, &mut by_rule);
        assert_eq!(by_rule.get("LSASS"), Some(&1));
        assert_eq!((d.events, d.tagged_events, d.other_only), (2, 1, 0));
        assert_eq!(d.detected, ["T1003.001"], "the parent technique counts for its sub-technique");
    }
}
