//! `cordon eval`: measurements on third-party data (run by CI from `../shared` when it is there).
//!
//! `cordon eval sigma --rules DIR`: loads every Sigma rule under `DIR` (the SigmaHQ rule set) through
//! Cordon's engine and pipeline and reports how many load, how many are refused and why (by class,
//! with examples), how many are correlation rules (the correlation engine's), and how many carry
//! ATT&CK tags the embedded catalog does not know. It ends with one summary line.

use anyhow::Context;
use correlate::sigma::{self, Pipeline};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What loading a rule set found.
#[derive(Debug, Default, serde::Serialize)]
pub struct LoadReport {
    /// YAML files read.
    pub files: usize,
    /// Rules compiled.
    pub loaded: usize,
    /// Refusals by class: count and up to three examples.
    pub refused: BTreeMap<String, (usize, Vec<String>)>,
    /// Loaded rules with at least one ATT&CK technique tag.
    pub with_techniques: usize,
    /// Tags naming techniques or tactics the catalog does not know, with their rule.
    pub unknown_attack_tags: Vec<String>,
}

impl LoadReport {
    /// Refused rules, all classes (correlation rules included).
    pub fn refused_total(&self) -> usize {
        self.refused.values().map(|(n, _)| n).sum()
    }
}

fn yaml_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Loads every rule under `dir`.
pub fn load_rules(dir: &Path) -> anyhow::Result<LoadReport> {
    let pipeline = Pipeline::cordon_ecs();
    let mut report = LoadReport::default();
    for path in yaml_files(dir)? {
        report.files += 1;
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                let entry = report.refused.entry("unreadable".into()).or_default();
                entry.0 += 1;
                entry.1.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        for r in sigma::load(&text, &pipeline) {
            match r {
                Ok(rule) => {
                    report.loaded += 1;
                    if !rule.techniques.is_empty() {
                        report.with_techniques += 1;
                    }
                    for t in &rule.unknown_tags {
                        report.unknown_attack_tags.push(format!("{} ({})", t, rule.title));
                    }
                }
                Err(e) => {
                    let entry = report.refused.entry(e.class.to_owned()).or_default();
                    entry.0 += 1;
                    if entry.1.len() < 3 {
                        let name =
                            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                        entry.1.push(format!("{name}: {}", e.reason));
                    }
                }
            }
        }
    }
    Ok(report)
}

/// Prints the report as a table and one summary line; `--json` prints it as JSON before the line.
pub fn print_load(report: &LoadReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!("refused by class (count, examples):");
        for (class, (n, examples)) in &report.refused {
            println!("  {class:<12} {n:>5}");
            for e in examples {
                println!("      {e}");
            }
        }
        if !report.unknown_attack_tags.is_empty() {
            println!("ATT&CK tags not in the v18 catalog ({}):", report.unknown_attack_tags.len());
            for t in report.unknown_attack_tags.iter().take(10) {
                println!("  {t}");
            }
        }
    }
    let correlation = report.refused.get("correlation").map_or(0, |(n, _)| *n);
    let rules = report.loaded + report.refused_total();
    println!(
        "sigma load: {} files, {} rules, {} loaded ({:.1}%), {} refused ({} of them correlation rules), {} with ATT&CK techniques, {} unknown ATT&CK tags",
        report.files,
        rules,
        report.loaded,
        100.0 * report.loaded as f64 / rules.max(1) as f64,
        report.refused_total(),
        correlation,
        report.with_techniques,
        report.unknown_attack_tags.len()
    );
    Ok(())
}

/// One Windows event log record as a flat Sigma event: `EventID`, `Channel`, `Computer`,
/// `Provider_Name` from the System block, and every `EventData`/`UserData` value under its own name.
pub fn flatten_evtx(record: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::Value;
    let mut out = serde_json::Map::new();
    let ev = &record["Event"];
    let sys = &ev["System"];
    let text = |v: &Value| -> Value {
        match v {
            Value::Object(o) if o.contains_key("#text") => o["#text"].clone(),
            other => other.clone(),
        }
    };
    out.insert("EventID".into(), text(&sys["EventID"]));
    for (k, v) in [("Channel", &sys["Channel"]), ("Computer", &sys["Computer"])] {
        out.insert(k.into(), text(v));
    }
    out.insert("Provider_Name".into(), sys["Provider"]["#attributes"]["Name"].clone());
    out.insert("TimeCreated".into(), sys["TimeCreated"]["#attributes"]["SystemTime"].clone());
    fn walk(v: &serde_json::Value, out: &mut serde_json::Map<String, serde_json::Value>) {
        if let serde_json::Value::Object(o) = v {
            for (k, v) in o {
                if k == "#attributes" {
                    continue;
                }
                match v {
                    serde_json::Value::Object(inner) if inner.contains_key("#text") => {
                        out.insert(k.clone(), inner["#text"].clone());
                    }
                    serde_json::Value::Object(_) => walk(v, out),
                    other => {
                        out.insert(k.clone(), other.clone());
                    }
                }
            }
        }
    }
    walk(&ev["EventData"], &mut out);
    walk(&ev["UserData"], &mut out);
    out
}

/// The records of an EVTX file as (record id, flat event).
pub fn read_evtx(path: &Path) -> anyhow::Result<Vec<(u64, serde_json::Map<String, serde_json::Value>)>> {
    let mut parser =
        evtx::EvtxParser::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for r in parser.records_json_value() {
        let r = r.with_context(|| format!("reading a record of {}", path.display()))?;
        out.push((r.event_record_id, flatten_evtx(&r.data)));
    }
    Ok(out)
}

/// A record's identity for comparing records across EVTX readers (which differ in how they write
/// GUIDs, numbers and binary fields): its computer, event id and creation time.
fn comparable(e: serde_json::Map<String, serde_json::Value>) -> String {
    let text = |k: &str| {
        e.get(k).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).unwrap_or_default()
    };
    // Readers write the creation time with 6 or 7 fractional digits: compare microseconds.
    let t = text("TimeCreated");
    let t = match t.trim_end_matches('Z').split_once('.') {
        Some((secs, frac)) => format!("{secs}.{:0<6.6}", frac),
        None => t,
    };
    format!("{} {} {t}", text("Computer"), text("EventID"))
}

/// The SigmaHQ regression suite's verdicts.
#[derive(Debug, Default, serde::Serialize)]
pub struct RegressionReport {
    /// Tests run.
    pub tests: usize,
    /// Tests whose rule matched exactly the expected number of records.
    pub passed: usize,
    /// Failures: (test, reason).
    pub failures: Vec<(String, String)>,
}

/// Runs `regression_dir` (folders of `info.yml` + `.evtx`): each test's rule (by id, from `rules_dir`,
/// compiled with the flat Windows pipeline) must match `match_count` records of its EVTX file.
pub fn regression(rules_dir: &Path, regression_dir: &Path) -> anyhow::Result<RegressionReport> {
    let pipeline = Pipeline::windows_flat();
    let mut rules: std::collections::HashMap<String, Result<sigma::Rule, String>> = Default::default();
    for path in yaml_files(rules_dir)? {
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        // The id is needed for refusals too, to say why a test's rule is missing.
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("id:"))
            .map(|s| s.trim().trim_matches(['\'', '"']).to_owned())
            .unwrap_or_default();
        for r in sigma::load(&text, &pipeline) {
            match r {
                Ok(rule) => {
                    rules.insert(rule.id.clone(), Ok(rule));
                }
                Err(e) => {
                    rules.entry(id.clone()).or_insert(Err(format!("rule refused: {}", e.reason)));
                }
            }
        }
    }
    let mut report = RegressionReport::default();
    let mut infos: Vec<PathBuf> = Vec::new();
    let mut stack = vec![regression_dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "info.yml") {
                infos.push(p);
            }
        }
    }
    infos.sort();
    for info in infos {
        let dir = info.parent().unwrap_or(regression_dir);
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let text = std::fs::read_to_string(&info)?;
        let docs = yaml_rust2::YamlLoader::load_from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", info.display()))?;
        let doc = &docs[0];
        let rule_ids: Vec<String> = doc["rule_metadata"]
            .as_vec()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str().map(str::to_owned))
            .collect();
        for t in doc["regression_tests_info"].as_vec().into_iter().flatten() {
            report.tests += 1;
            let file = t["path"].as_str().and_then(|p| Path::new(p).file_name()).map(|f| dir.join(f));
            // The expected matches: the records in the test's .json file (compared by content: the
            // EVTX files were re-exported, so record ids differ), and `match_count` when stated.
            let expected_ids: Option<Vec<String>> = file.as_ref().and_then(|f| {
                let text = std::fs::read_to_string(f.with_extension("json")).ok()?;
                let mut ids: Vec<String> = serde_json::Deserializer::from_str(&text)
                    .into_iter::<serde_json::Value>()
                    .filter_map(|v| Some(comparable(flatten_evtx(&v.ok()?))))
                    .collect();
                ids.sort();
                Some(ids)
            });
            let want = t["match_count"]
                .as_i64()
                .map(|n| n as usize)
                .or_else(|| expected_ids.as_ref().map(|s| s.len()))
                .unwrap_or(1);
            let verdict: Result<(), String> = (|| {
                let file = file.ok_or("the test names no file")?;
                let events = read_evtx(&file).map_err(|e| format!("evtx: {e:#}"))?;
                let rule = rule_ids
                    .iter()
                    .find_map(|id| rules.get(id))
                    .ok_or_else(|| format!("rule {:?} is not in the rule set", rule_ids))?
                    .as_ref()
                    .map_err(Clone::clone)?;
                let mut got: Vec<String> = events
                    .into_iter()
                    .filter(|(_, e)| rule.matches(&sigma::FlatEvent(e.clone())))
                    .map(|(_, e)| comparable(e))
                    .collect();
                got.sort();
                if got.len() != want {
                    let within = expected_ids.as_ref().is_some_and(|ids| got.iter().all(|g| ids.contains(g)));
                    let n = expected_ids.as_ref().map_or(0, Vec::len);
                    return Err(if within {
                        format!(
                            "{} records matched where match_count says {want}; all {} are among the {n} records of the test's own evidence file",
                            got.len(),
                            got.len()
                        )
                    } else {
                        format!("{} records matched, {want} expected", got.len())
                    });
                }
                match &expected_ids {
                    Some(ids) if !ids.is_empty() && !got.iter().all(|g| ids.contains(g)) => {
                        let first =
                            got.first().map(|g| g.chars().take(300).collect::<String>()).unwrap_or_default();
                        Err(format!("a different record matched than the test's: {first}"))
                    }
                    _ => Ok(()),
                }
            })();
            match verdict {
                Ok(()) => report.passed += 1,
                Err(reason) => report.failures.push((name.clone(), reason)),
            }
        }
    }
    Ok(report)
}

/// Prints the regression report: failures with reasons, then one summary line.
pub fn print_regression(r: &RegressionReport) {
    for (name, reason) in &r.failures {
        println!("  FAIL {name}: {reason}");
    }
    println!(
        "sigma regression: {} of {} tests pass ({:.1}%), {} fail",
        r.passed,
        r.tests,
        100.0 * r.passed as f64 / r.tests.max(1) as f64,
        r.failures.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn evtx_records_flatten_to_sigma_names() {
        let rec = json!({"Event": {
            "System": {
                "Provider": {"#attributes": {"Name": "Microsoft-Windows-Security-Auditing"}},
                "EventID": {"#text": 4625, "#attributes": {"Qualifiers": 0}},
                "Channel": "Security",
                "Computer": "DC01",
                "TimeCreated": {"#attributes": {"SystemTime": "2025-10-24T23:34:34.6406701Z"}}
            },
            "EventData": {"TargetUserName": "admin", "LogonType": 3, "IpAddress": "10.0.0.7"},
            "UserData": {"Extra": {"#attributes": {"x": 1}, "Inner": {"#text": "v"}}}
        }});
        let flat = flatten_evtx(&rec);
        assert_eq!(flat["EventID"], 4625, "EventID with qualifiers is its text");
        assert_eq!((flat["Channel"].as_str(), flat["Computer"].as_str()), (Some("Security"), Some("DC01")));
        assert_eq!(flat["Provider_Name"], "Microsoft-Windows-Security-Auditing");
        assert_eq!((flat["TargetUserName"].as_str(), flat["LogonType"].as_i64()), (Some("admin"), Some(3)));
        assert_eq!(flat["Inner"], "v");
        // 7 and 6 fractional digits name the same record.
        let mut six = flat.clone();
        six.insert("TimeCreated".into(), json!("2025-10-24T23:34:34.640670Z"));
        assert_eq!(comparable(flat), comparable(six));
    }
}

/// What reading the corpus's EVTX files found.
#[derive(Debug, Default, serde::Serialize)]
pub struct EvtxReport {
    /// Files read.
    pub files: usize,
    /// Files read to the end without an error or a panic.
    pub parsed: usize,
    /// Records read.
    pub records: u64,
    /// Records `EVTX_INDEX.json` lists for the same files.
    pub indexed_records: u64,
    /// Files whose record count differs from the index, or that failed: (file, what).
    pub problems: Vec<(String, String)>,
    /// Technique tagging on `EVTX-to-MITRE-Attack` (label = folder): per label, (files, files where a
    /// rule tagged the label technique or its parent/sub-technique).
    pub technique_recall: BTreeMap<String, (usize, usize)>,
    /// Tagged events in those files, and how many carried only techniques other than the label.
    pub tagged_events: (u64, u64),
}

/// Reads every `.evtx` under `corpus` (compared with `corpus/EVTX_INDEX.json`) and, with `rules`,
/// measures technique tagging on the technique-labelled folder.
pub fn evtx(corpus: &Path, rules: Option<&Path>) -> anyhow::Result<EvtxReport> {
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(corpus.join("EVTX_INDEX.json")).context("reading EVTX_INDEX.json")?,
    )?;
    let compiled: Vec<sigma::Rule> = match rules {
        Some(dir) => {
            let pipeline = Pipeline::windows_flat();
            let mut v = Vec::new();
            for p in yaml_files(dir)? {
                if let Ok(text) = std::fs::read_to_string(&p) {
                    v.extend(sigma::load(&text, &pipeline).into_iter().filter_map(Result::ok));
                }
            }
            v
        }
        None => Vec::new(),
    };
    let mut files = Vec::new();
    let mut stack = vec![corpus.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("evtx")) {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut report = EvtxReport::default();
    for f in files {
        report.files += 1;
        let rel = f.strip_prefix(corpus).unwrap_or(&f).to_string_lossy().replace('\\', "/");
        let want = index[&rel]["records"].as_u64();
        report.indexed_records += want.unwrap_or(0);
        let path = f.clone();
        let read = std::panic::catch_unwind(move || read_evtx(&path));
        let events = match read {
            Ok(Ok(ev)) => ev,
            Ok(Err(e)) => {
                report.problems.push((rel, format!("error: {e:#}")));
                continue;
            }
            Err(_) => {
                report.problems.push((rel, "the reader panicked".into()));
                continue;
            }
        };
        report.parsed += 1;
        report.records += events.len() as u64;
        match want {
            Some(n) if n != events.len() as u64 => {
                report
                    .problems
                    .push((rel.clone(), format!("{} records read, the index lists {n}", events.len())));
            }
            None => report.problems.push((rel.clone(), "not in EVTX_INDEX.json".into())),
            _ => {}
        }
        // Technique-labelled files: `EVTX-to-MITRE-Attack/<TA..>/<Txxxx[.yyy]-name>/file.evtx`.
        let label = rel
            .strip_prefix("evtx/EVTX-to-MITRE-Attack/")
            .and_then(|r| r.split('/').nth(1))
            .and_then(|dir| dir.split('-').next())
            .filter(|t| t.starts_with('T'))
            .map(str::to_owned);
        if let (Some(label), false) = (label, compiled.is_empty()) {
            let related = |t: &str| {
                t == label || t.starts_with(&format!("{label}.")) || label.starts_with(&format!("{t}."))
            };
            let mut hit = false;
            for (_, e) in &events {
                let ev = sigma::FlatEvent(e.clone());
                let techs: Vec<&String> =
                    compiled.iter().filter(|r| r.matches(&ev)).flat_map(|r| r.techniques.iter()).collect();
                if techs.is_empty() {
                    continue;
                }
                report.tagged_events.0 += 1;
                if techs.iter().any(|t| related(t)) {
                    hit = true;
                } else {
                    report.tagged_events.1 += 1;
                }
            }
            let entry = report.technique_recall.entry(label).or_default();
            entry.0 += 1;
            entry.1 += usize::from(hit);
        }
    }
    Ok(report)
}

/// Prints the EVTX report and one summary line.
pub fn print_evtx(r: &EvtxReport) {
    for (f, what) in &r.problems {
        println!("  PROBLEM {f}: {what}");
    }
    if !r.technique_recall.is_empty() {
        println!("technique tagging on EVTX-to-MITRE-Attack (label: files, detected):");
        for (t, (n, hit)) in &r.technique_recall {
            println!("  {t:<12} {hit}/{n}");
        }
    }
    let (labels, files, hits) =
        r.technique_recall.values().fold((0, 0, 0), |(l, f, h), (n, hit)| (l + 1, f + n, h + hit));
    println!(
        "evtx: {} files, {} parsed ({:.1}%), {} records read vs {} indexed, {} problems; technique tagging: {hits}/{files} labelled files detected ({:.1}%) over {labels} techniques, {} of {} tagged events carry only other techniques",
        r.files,
        r.parsed,
        100.0 * r.parsed as f64 / r.files.max(1) as f64,
        r.records,
        r.indexed_records,
        r.problems.len(),
        100.0 * hits as f64 / files.max(1) as f64,
        r.tagged_events.1,
        r.tagged_events.0,
    );
}
