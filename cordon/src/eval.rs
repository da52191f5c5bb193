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
