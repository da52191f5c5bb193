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

    /// Refusals of rules their authors withdrew (`status: deprecated` or `unsupported`).
    pub fn withdrawn(&self) -> usize {
        self.refused.get("withdrawn").map_or(0, |(n, _)| *n)
    }

    /// The share of rules that load, in percent, over the rules still in use (withdrawn ones out).
    pub fn load_percent(&self) -> f64 {
        let in_use = self.loaded + self.refused_total() - self.withdrawn();
        100.0 * self.loaded as f64 / in_use.max(1) as f64
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

/// The text of every Sigma file under each of `dirs` (unreadable files left out).
pub fn rule_texts(dirs: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let mut texts = Vec::new();
    for d in dirs {
        texts.extend(yaml_files(d)?.iter().filter_map(|p| std::fs::read_to_string(p).ok()));
    }
    Ok(texts)
}

/// The rule sets Windows records are tagged with in the evaluations: the rule files on flat
/// records, and on the agent's ECS records the tagger a server runs (the same files plus Cordon's
/// pack, correlations included, under the shipped policy).
pub struct RuleSets {
    /// The rule files on the flat Windows pipeline.
    pub flat: sigma::RuleSet,
    /// The rule files and the pack as ingest runs them.
    pub tagger: sigma::Tagger,
}

impl RuleSets {
    /// Both from the rule files under each of `rules`.
    pub fn load(rules: &[PathBuf]) -> anyhow::Result<Self> {
        let texts = rule_texts(rules)?;
        let pipeline = Pipeline::windows_flat();
        let flat = sigma::RuleSet::new(
            texts.iter().flat_map(|t| sigma::load(t, &pipeline).into_iter().filter_map(Result::ok)).collect(),
        );
        let files = sigma::read_rule_files(rules)?;
        let tagger = sigma::Tagger::with_rule_files(files, schemas::policy::Policy::cordon_default())
            .map_err(|e| anyhow::anyhow!("the rule pack does not compile: {e}"))?;
        Ok(Self { flat, tagger })
    }

    /// The techniques the tagger gives one of the agent's records, with the correlations its
    /// events complete in `state` (records of one file or dataset share one state).
    pub fn agent_techniques(&self, state: &mut sigma::Correlator, rec: &mut schemas::Record) -> Vec<String> {
        let (found, hits) = self.tagger.tag_and_hits(rec);
        let fired = self.tagger.correlate(state, rec, &hits);
        let mut out: Vec<String> =
            found.iter().chain(&fired).flat_map(|d| d.techniques.iter().cloned()).collect();
        out.sort();
        out.dedup();
        out
    }
}

/// EVTX files under `dir`.
pub fn evtx_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    files_under(dir, |p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("evtx")))
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
        "sigma load: {} files, {} rules, {} loaded ({:.1}% of the {} in use; {other} of them for products Cordon's sources do not produce), {} refused ({} of them correlation rules, {} withdrawn by their authors), {} with ATT&CK techniques, {} unknown ATT&CK tags",
        report.files,
        rules,
        report.loaded,
        report.load_percent(),
        rules - report.withdrawn(),
        report.refused_total(),
        correlation,
        report.withdrawn(),
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
    /// Tests that pass: the rule matched `match_count` records, all of them the test's evidence, or
    /// (where `match_count` is absent or disagrees with the evidence) exactly the records it matches
    /// among the test's own evidence records.
    pub passed: usize,
    /// Of those, tests passed by the rule's own matches on the evidence where `match_count` said
    /// another number: (test, matches, `match_count`).
    pub by_evidence: Vec<(String, usize, usize)>,
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
/// compiled with the flat Windows pipeline) must match `match_count` records of its EVTX file, or,
/// where the test states none or its count disagrees with its own evidence (`.json`: the records the
/// test was made from), exactly the records it matches among that evidence. The size of the evidence
/// file is never the expectation: it holds records the rule does not match too.
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
        let docs =
            correlate::sigma::yaml::load(&text).map_err(|e| anyhow::anyhow!("{}: {e}", info.display()))?;
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
            // The test's evidence: the records of its .json file (compared by content: the EVTX
            // files were re-exported, so record ids differ).
            let evidence: Option<Vec<serde_json::Map<String, serde_json::Value>>> =
                file.as_ref().and_then(|f| {
                    let text = std::fs::read_to_string(f.with_extension("json")).ok()?;
                    Some(
                        serde_json::Deserializer::from_str(&text)
                            .into_iter::<serde_json::Value>()
                            .filter_map(|v| Some(sensor_agent::evtx::flatten(&v.ok()?)))
                            .collect(),
                    )
                });
            let expected_ids: Option<Vec<String>> = evidence.as_ref().map(|ev| {
                let mut ids: Vec<String> = ev.iter().cloned().map(comparable).collect();
                ids.sort();
                ids
            });
            let stated = t["match_count"].as_i64().map(|n| n as usize);
            let want = stated.unwrap_or(1);
            let mut ecs: Option<(usize, usize)> = None;
            let mut by_evidence: Option<(usize, usize)> = None;
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
                // The rule's own matches among the evidence records.
                let own: Option<Vec<String>> = evidence.as_ref().map(|ev| {
                    let mut ids: Vec<String> = ev
                        .iter()
                        .filter(|e| rule.matches(&sigma::FlatEvent((*e).clone())))
                        .map(|e| comparable(e.clone()))
                        .collect();
                    ids.sort();
                    ids
                });
                if (stated.is_none() || got.len() != want)
                    && own.as_ref().is_some_and(|o| !o.is_empty() && *o == got)
                {
                    by_evidence = stated.map(|n| (got.len(), n));
                    return Ok(());
                }
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
            if let Some((got, n)) = by_evidence {
                report.by_evidence.push((name.clone(), got, n));
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
pub(crate) fn ecs_record(flat: &serde_json::Map<String, serde_json::Value>) -> Option<schemas::Record> {
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
    for (name, got, n) in &r.by_evidence {
        println!(
            "  BY EVIDENCE {name}: {got} matches where match_count says {n}, exactly the rule's matches among the test's evidence records"
        );
    }
    println!(
        "sigma regression: {} of {} tests pass ({:.1}%; {} of them by the rule's own matches on the test's evidence where match_count says another number), {} fail; through the agent's ECS path {} of {} agree",
        r.passed,
        r.tests,
        100.0 * r.passed as f64 / r.tests.max(1) as f64,
        r.by_evidence.len(),
        r.failures.len(),
        r.ecs_path.1,
        r.ecs_path.0
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
