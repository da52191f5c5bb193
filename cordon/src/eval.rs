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
    /// Loaded rules for products none of Cordon's sources produce (`cisco`, `zeek`, `aws`...), by
    /// product: they never run on Cordon's events.
    pub other_products: BTreeMap<String, usize>,
    /// Tags naming techniques or tactics the catalog does not know, with their rule.
    pub unknown_attack_tags: Vec<String>,
}

impl LoadReport {
    /// Refused rules, all classes (correlation rules included).
    pub fn refused_total(&self) -> usize {
        self.refused.values().map(|(n, _)| n).sum()
    }
}

/// Every file under `dir` (recursively) that `keep` accepts, sorted.
pub fn files_under(dir: &Path, keep: impl Fn(&Path) -> bool) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if keep(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// YAML files under `dir`.
pub fn yaml_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    files_under(dir, |p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
}

/// EVTX files under `dir`.
pub fn evtx_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    files_under(dir, |p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("evtx")))
}

/// The JSON lines of every `.json` member of a zip (Mordor's datasets).
pub fn zip_json_lines(path: &Path) -> anyhow::Result<(String, usize)> {
    use std::io::Read;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut zip = zip::ZipArchive::new(file).with_context(|| format!("reading {}", path.display()))?;
    let mut text = String::new();
    let mut skipped = 0;
    for i in 0..zip.len() {
        let Ok(mut f) = zip.by_index(i) else {
            skipped += 1;
            continue;
        };
        let name = f.name().to_owned();
        let base = name.rsplit('/').next().unwrap_or_default();
        if !(name.ends_with(".json") || name.ends_with(".jsonl")) {
            continue;
        }
        // macOS resource forks (`__MACOSX/._x.json`) and members that do not read as text are
        // skipped and counted, never the end of the run.
        let mut member = String::new();
        if name.starts_with("__MACOSX/") || base.starts_with("._") || f.read_to_string(&mut member).is_err() {
            skipped += 1;
            continue;
        }
        text.push_str(&member);
        text.push('\n');
    }
    Ok((text, skipped))
}

#[cfg(test)]
mod zip_tests {
    /// One unreadable member (a macOS resource fork, a member that is not text) is skipped and
    /// counted; the others are read.
    #[test]
    fn unreadable_members_are_skipped_and_counted() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("set.zip");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        z.start_file("__MACOSX/._set.json", opts).unwrap();
        z.write_all(&[0, 5, 22, 7, 0xff, 0xfe]).unwrap();
        z.start_file("set.json", opts).unwrap();
        z.write_all(b"{\"EventID\": 1}\n").unwrap();
        z.start_file("broken.json", opts).unwrap();
        z.write_all(&[0xff, 0xfe, 0xfd]).unwrap();
        z.finish().unwrap();
        let (text, skipped) = super::zip_json_lines(&path).unwrap();
        assert_eq!(text.trim(), "{\"EventID\": 1}");
        assert_eq!(skipped, 2);
    }
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
                    if rule.inapplicable.is_some() {
                        let p = rule.logsource.product.clone().unwrap_or_default();
                        *report.other_products.entry(p).or_default() += 1;
                    }
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
    let other: usize = report.other_products.values().sum();
    if !json && other > 0 {
        let by: Vec<String> = report.other_products.iter().map(|(p, n)| format!("{p} {n}")).collect();
        println!("loaded for products Cordon's sources do not produce (never run): {}", by.join(", "));
    }
    println!(
        "sigma load: {} files, {} rules, {} loaded ({:.1}%; {other} of them for products Cordon's sources do not produce), {} refused ({} of them correlation rules), {} with ATT&CK techniques, {} unknown ATT&CK tags",
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
    /// The same tests through the agent's path: each record normalised to Cordon's ECS event
    /// (`sensor_agent::evtx::to_ecs`), decoded as ingest does, and matched by the rule compiled with
    /// the ECS pipeline: (tests compared, tests where both paths match the same number of records).
    pub ecs_path: (usize, usize),
    /// Tests where the ECS path differs: (test, flat matches, ECS matches).
    pub ecs_differences: Vec<(String, usize, usize)>,
}

/// Runs `regression_dir` (folders of `info.yml` + `.evtx`): each test's rule (by id, from `rules_dir`,
/// compiled with the flat Windows pipeline) must match `match_count` records of its EVTX file.
pub fn regression(rules_dir: &Path, regression_dir: &Path) -> anyhow::Result<RegressionReport> {
    let pipeline = Pipeline::windows_flat();
    let ecs_pipeline = Pipeline::cordon_ecs();
    let mut rules: std::collections::HashMap<String, Result<sigma::Rule, String>> = Default::default();
    let mut ecs_rules: std::collections::HashMap<String, sigma::Rule> = Default::default();
    for path in yaml_files(rules_dir)? {
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        for rule in sigma::load(&text, &ecs_pipeline).into_iter().flatten() {
            ecs_rules.insert(rule.id.clone(), rule);
        }
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
    let infos = files_under(regression_dir, |p| p.file_name().is_some_and(|n| n == "info.yml"))?;
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
                    .filter_map(|v| Some(comparable(sensor_agent::evtx::flatten(&v.ok()?))))
                    .collect();
                ids.sort();
                Some(ids)
            });
            let want = t["match_count"]
                .as_i64()
                .map(|n| n as usize)
                .or_else(|| expected_ids.as_ref().map(|s| s.len()))
                .unwrap_or(1);
            let mut ecs: Option<(usize, usize)> = None;
            let verdict: Result<(), String> = (|| {
                let file = file.ok_or("the test names no file")?;
                let events = sensor_agent::evtx::read(&file).map_err(|e| format!("evtx: {e}"))?;
                let rule = rule_ids
                    .iter()
                    .find_map(|id| rules.get(id))
                    .ok_or_else(|| format!("rule {:?} is not in the rule set", rule_ids))?
                    .as_ref()
                    .map_err(Clone::clone)?;
                if let Some(ecs_rule) = rule_ids.iter().find_map(|id| ecs_rules.get(id)) {
                    let flat_n =
                        events.iter().filter(|(_, e)| rule.matches(&sigma::FlatEvent(e.clone()))).count();
                    let ecs_n = events.iter().filter(|(_, e)| ecs_match(ecs_rule, e)).count();
                    ecs = Some((flat_n, ecs_n));
                }
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
            if let Some((flat_n, ecs_n)) = ecs {
                report.ecs_path.0 += 1;
                if flat_n == ecs_n {
                    report.ecs_path.1 += 1;
                } else {
                    report.ecs_differences.push((name.clone(), flat_n, ecs_n));
                }
            }
        }
    }
    Ok(report)
}

/// Whether `rule` (ECS pipeline) fires on the flat record after the agent's normalisation and
/// ingest's decoding.
fn ecs_match(rule: &sigma::Rule, flat: &serde_json::Map<String, serde_json::Value>) -> bool {
    ecs_record(flat).is_some_and(|rec| rule.matches(&sigma::RecordEvent::new(&rec)))
}

/// A flat EVTX record as ingest stores it after the agent's normaliser.
fn ecs_record(flat: &serde_json::Map<String, serde_json::Value>) -> Option<schemas::Record> {
    let line = sensor_agent::evtx::to_ecs(flat).to_string();
    let ch = schemas::decode::Channel {
        tenant: "eval",
        agent: "eval",
        message_key: "1:1",
        stream_seq: 1,
        received: 0,
    };
    let limits = schemas::decode::Limits { max_skew_micros: i64::MAX, ..Default::default() };
    schemas::decode::decode_line(line.as_bytes(), 1, &ch, &limits).ok()
}

/// Prints the regression report: failures with reasons, then one summary line.
pub fn print_regression(r: &RegressionReport) {
    for (name, reason) in &r.failures {
        println!("  FAIL {name}: {reason}");
    }
    for (name, flat, ecs) in &r.ecs_differences {
        println!("  ECS PATH DIFFERS {name}: {flat} flat matches, {ecs} through the agent's ECS events");
    }
    println!(
        "sigma regression: {} of {} tests pass ({:.1}%), {} fail; through the agent's ECS path {} of {} agree",
        r.passed,
        r.tests,
        100.0 * r.passed as f64 / r.tests.max(1) as f64,
        r.failures.len(),
        r.ecs_path.1,
        r.ecs_path.0
    );
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
    /// The same tagging through the agent's path (EVTX -> ECS events -> ingest's decoder -> Cordon's
    /// ECS pipeline), which is what production runs: labelled files detected.
    pub technique_hits_ecs: usize,
    /// Events matched both through the rule set's literal prefilter and by evaluating every rule.
    pub prefilter_checked: u64,
    /// Of those, events where the two answers differ (must be 0).
    pub prefilter_disagreements: u64,
}

/// Reads every `.evtx` under `corpus` (compared with `corpus/EVTX_INDEX.json`) and, with `rules`,
/// measures technique tagging on the technique-labelled folder.
pub fn evtx(corpus: &Path, rules: Option<&Path>) -> anyhow::Result<EvtxReport> {
    // CORDON_EVAL_DEBUG=1: each off-label tag, with the rule that set it.
    let debug = std::env::var_os("CORDON_EVAL_DEBUG").is_some();
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(corpus.join("EVTX_INDEX.json")).context("reading EVTX_INDEX.json")?,
    )?;
    let texts: Vec<String> = match rules {
        Some(dir) => yaml_files(dir)?.iter().filter_map(|p| std::fs::read_to_string(p).ok()).collect(),
        None => Vec::new(),
    };
    let set = |pipeline: Pipeline| {
        sigma::RuleSet::new(
            texts.iter().flat_map(|t| sigma::load(t, &pipeline).into_iter().filter_map(Result::ok)).collect(),
        )
    };
    let compiled = set(Pipeline::windows_flat());
    let ecs = set(Pipeline::cordon_ecs());
    let files = evtx_files(corpus)?;
    let mut report = EvtxReport::default();
    for f in files {
        report.files += 1;
        let rel = f.strip_prefix(corpus).unwrap_or(&f).to_string_lossy().replace('\\', "/");
        let want = index[&rel]["records"].as_u64();
        report.indexed_records += want.unwrap_or(0);
        let path = f.clone();
        let read = std::panic::catch_unwind(move || sensor_agent::evtx::read(&path));
        let events = match read {
            Ok(Ok(ev)) => ev,
            Ok(Err(e)) => {
                report.problems.push((rel, format!("error: {e}")));
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
        if let (Some(label), false) = (label, compiled.rules().is_empty()) {
            let related = |t: &str| schemas::attack::crosswalk::related(t, &label);
            let mut hit = false;
            let mut hit_ecs = false;
            for (_, e) in &events {
                if !hit_ecs && let Some(rec) = ecs_record(e) {
                    let view = sigma::RecordEvent::new(&rec);
                    hit_ecs = ecs
                        .matching_indices(&view)
                        .iter()
                        .any(|&i| ecs.rules()[i].techniques.iter().any(|t| related(t)));
                }
                let ev = sigma::FlatEvent(e.clone());
                let matched = compiled.matching_indices(&ev);
                // The prefilter must never change an answer: every rule is evaluated too.
                report.prefilter_checked += 1;
                if matched != compiled.matching_indices_unfiltered(&ev) {
                    report.prefilter_disagreements += 1;
                }
                let techs: Vec<&String> =
                    matched.iter().flat_map(|&i| compiled.rules()[i].techniques.iter()).collect();
                if techs.is_empty() {
                    continue;
                }
                report.tagged_events.0 += 1;
                if techs.iter().any(|t| related(t)) {
                    hit = true;
                } else {
                    report.tagged_events.1 += 1;
                    if debug {
                        for &i in &matched {
                            println!("  off-label {label}: {}", compiled.rules()[i].title);
                        }
                    }
                }
            }
            let entry = report.technique_recall.entry(label).or_default();
            entry.0 += 1;
            entry.1 += usize::from(hit);
            report.technique_hits_ecs += usize::from(hit_ecs);
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
        "evtx: {} files, {} parsed ({:.1}%), {} records read vs {} indexed, {} problems; technique tagging: {hits}/{files} labelled files detected ({:.1}%) over {labels} techniques ({} through the agent's ECS path), {} of {} tagged events carry only other techniques; prefilter: {} of {} events differ from evaluating every rule",
        r.files,
        r.parsed,
        100.0 * r.parsed as f64 / r.files.max(1) as f64,
        r.records,
        r.indexed_records,
        r.problems.len(),
        100.0 * hits as f64 / files.max(1) as f64,
        r.technique_hits_ecs,
        r.tagged_events.1,
        r.tagged_events.0,
        r.prefilter_disagreements,
        r.prefilter_checked,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_compare_by_computer_id_and_time_at_microseconds() {
        let rec = |t: &str| {
            let mut m = serde_json::Map::new();
            m.insert("Computer".into(), json!("DC01"));
            m.insert("EventID".into(), json!(4625));
            m.insert("TimeCreated".into(), json!(t));
            m
        };
        // 7 and 6 fractional digits name the same record.
        assert_eq!(
            comparable(rec("2025-10-24T23:34:34.6406701Z")),
            comparable(rec("2025-10-24T23:34:34.640670Z"))
        );
        assert_ne!(
            comparable(rec("2025-10-24T23:34:34.640671Z")),
            comparable(rec("2025-10-24T23:34:34.640670Z"))
        );
    }
}
