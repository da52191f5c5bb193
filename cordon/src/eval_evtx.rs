//! `cordon eval evtx --corpus DIR --rules DIR...`: every EVTX file of the corpus read and counted
//! against its index, and technique tagging measured on the technique-labelled folder
//! (EVTX-to-MITRE-Attack): flat records through the rule sets given, and the agent's ECS records
//! through them plus Cordon's pack, as a server runs them.

use crate::eval::{ecs_record, evtx_files};
use anyhow::Context;
use correlate::sigma;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One technique-labelled file and what tagged its label.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LabelledFile {
    /// The labelled tree it is in (the folder under `evtx/`: `EVTX-to-MITRE-Attack`).
    pub tree: String,
    /// Its path under the corpus.
    pub file: String,
    /// The label technique (`T1003.001`), from the deepest folder or file name that carries one.
    pub label: String,
    /// Tagged with the label (or its parent, a sub-technique, or its other-version id) by the rules
    /// on flat records.
    pub flat: bool,
    /// The same through the agent's path: EVTX -> the agent's ECS events -> ingest's decoder ->
    /// Cordon's ECS pipeline, with Cordon's pack beside the rules, as production runs.
    pub agent: bool,
    /// The same by a peer's timeline (`--peer-timeline`), when one was given.
    pub peer: Option<bool>,
}

/// Tagged events and how many of them carried only techniques other than their file's label.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Tagged {
    /// Events (or peer detections) tagged with any technique.
    pub events: u64,
    /// Of those, tagged only off the label.
    pub off_label: u64,
}

impl Tagged {
    fn count(&mut self, on_label: bool) {
        self.events += 1;
        self.off_label += u64::from(!on_label);
    }

    /// The off-label share, in percent.
    pub fn off_percent(&self) -> f64 {
        100.0 * self.off_label as f64 / self.events.max(1) as f64
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
    /// Technique-labelled files (measured when rules are given).
    pub labelled: Vec<LabelledFile>,
    /// Tagged events in labelled files: flat records, the agent's path, the peer's detections.
    pub tagged: [Tagged; 3],
    /// Events matched both through the rule set's literal prefilter and by evaluating every rule.
    pub prefilter_checked: u64,
    /// Of those, events where the two answers differ (must be 0).
    pub prefilter_disagreements: u64,
    /// The peer whose timeline was scored beside Cordon (`peer` when unnamed).
    pub peer_name: String,
}

/// The label of a file: the technique id (`T1003`, `T1003.001`) that begins, or stands apart in,
/// the deepest component of its path that has one (`.../T1003.001-LSASS dump/x.evtx`,
/// `.../Win_4985_T1186_Process.evtx`); sub-technique labels are kept whole.
pub fn label_of(rel: &str) -> Option<String> {
    rel.rsplit('/').find_map(|component| {
        let mut ids = Vec::new();
        crate::eval_peer::technique_ids(component, &mut ids);
        ids.into_iter().next()
    })
}

/// The labelled tree of a corpus-relative path (`evtx/<tree>/...`).
fn tree_of(rel: &str) -> String {
    rel.strip_prefix("evtx/").unwrap_or(rel).split('/').next().unwrap_or_default().to_owned()
}

/// Reads every `.evtx` under `corpus` (compared with `corpus/EVTX_INDEX.json`) and, with rule
/// directories, measures technique tagging on every technique-labelled file ([`label_of`]): flat
/// records through those rules, and the agent's ECS records through them plus Cordon's pack, as a
/// server runs them.
pub fn evtx(corpus: &Path, rules: &[PathBuf]) -> anyhow::Result<EvtxReport> {
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(corpus.join("EVTX_INDEX.json")).context("reading EVTX_INDEX.json")?,
    )?;
    let sets = crate::eval::RuleSets::load(rules)?;
    let mut report = EvtxReport::default();
    for f in evtx_files(corpus)? {
        report.files += 1;
        let rel = f.strip_prefix(corpus).unwrap_or(&f).to_string_lossy().replace('\\', "/");
        let Some(events) = read_counted(&f, &rel, &index, &mut report) else { continue };
        if let (Some(label), false) = (label_of(&rel), rules.is_empty()) {
            let file = tag_file(&sets, &events, &rel, label, &mut report);
            report.labelled.push(file);
        }
    }
    Ok(report)
}

/// Reads one file, counting its records against the index; `None` when it does not read.
fn read_counted(
    f: &Path,
    rel: &str,
    index: &serde_json::Value,
    report: &mut EvtxReport,
) -> Option<Vec<sensor_agent::evtx::FlatRecord>> {
    let want = index[rel]["records"].as_u64();
    report.indexed_records += want.unwrap_or(0);
    let path = f.to_owned();
    let events = match std::panic::catch_unwind(move || sensor_agent::evtx::read(&path)) {
        Ok(Ok(ev)) => ev,
        Ok(Err(e)) => {
            report.problems.push((rel.to_owned(), format!("error: {e}")));
            return None;
        }
        Err(_) => {
            report.problems.push((rel.to_owned(), "the reader panicked".into()));
            return None;
        }
    };
    report.parsed += 1;
    report.records += events.len() as u64;
    match want {
        Some(n) if n != events.len() as u64 => {
            report
                .problems
                .push((rel.to_owned(), format!("{} records read, the index lists {n}", events.len())));
        }
        None => report.problems.push((rel.to_owned(), "not in EVTX_INDEX.json".into())),
        _ => {}
    }
    Some(events)
}

/// Tags one labelled file's events both ways, counting tagged events and checking the prefilter.
fn tag_file(
    sets: &crate::eval::RuleSets,
    events: &[sensor_agent::evtx::FlatRecord],
    rel: &str,
    label: String,
    report: &mut EvtxReport,
) -> LabelledFile {
    // CORDON_EVAL_DEBUG=1: each off-label tag, with the rule that set it.
    let debug = std::env::var_os("CORDON_EVAL_DEBUG").is_some();
    let related = |t: &str| schemas::attack::crosswalk::related(t, &label);
    let mut out = LabelledFile {
        tree: tree_of(rel),
        file: rel.to_owned(),
        label: label.clone(),
        flat: false,
        agent: false,
        peer: None,
    };
    let mut seen: std::collections::BTreeSet<String> = Default::default();
    let mut state = sets.tagger.correlator();
    for (_, e) in events {
        let ev = sigma::FlatEvent(e.clone());
        let matched = sets.flat.matching_indices(&ev);
        // The prefilter must never change an answer: every rule is evaluated too.
        report.prefilter_checked += 1;
        if matched != sets.flat.matching_indices_unfiltered(&ev) {
            report.prefilter_disagreements += 1;
        }
        if let Some(on) = on_label(&sets.flat, &matched, &related) {
            out.flat |= on;
            report.tagged[0].count(on);
            if debug && !on {
                for &i in &matched {
                    println!("  off-label {label}: {}", sets.flat.rules()[i].title);
                }
            }
        }
        let Some(mut rec) = ecs_record(e) else { continue };
        let techniques = sets.agent_techniques(&mut state, &mut rec);
        if debug {
            seen.extend(techniques.iter().cloned());
        }
        if !techniques.is_empty() {
            let on = techniques.iter().any(|t| related(t));
            out.agent |= on;
            report.tagged[1].count(on);
        }
    }
    if debug && !out.agent {
        let seen: Vec<String> = seen.into_iter().collect();
        println!("  missed {label} on the agent's path (tagged {}): {rel}", seen.join(" "));
    }
    out
}

/// Whether the rules `matched` tag the label (`None`: they tag no technique at all).
fn on_label(set: &sigma::RuleSet, matched: &[usize], related: &dyn Fn(&str) -> bool) -> Option<bool> {
    let mut techniques = matched.iter().flat_map(|&i| set.rules()[i].techniques.iter()).peekable();
    techniques.peek()?;
    Some(techniques.any(|t| related(t)))
}

/// Scores a peer's detections ([`crate::eval_peer`]) on the same labelled files, as Cordon's are.
pub fn score_peer(report: &mut EvtxReport, peer: &crate::eval_peer::Detections) {
    for f in &mut report.labelled {
        let related = |t: &String| schemas::attack::crosswalk::related(t, &f.label);
        let mut hit = false;
        for ids in crate::eval_peer::detections_of(peer, &f.file) {
            if !ids.is_empty() {
                let on = ids.iter().any(related);
                hit |= on;
                report.tagged[2].count(on);
            }
        }
        f.peer = Some(hit);
    }
}

/// Per labelled tree and label: (files, flat, agent, peer) detected.
type Table = BTreeMap<(String, String), (usize, usize, usize, Option<usize>)>;

fn table(r: &EvtxReport) -> Table {
    let mut t = Table::new();
    for f in &r.labelled {
        let e = t.entry((f.tree.clone(), f.label.clone())).or_default();
        e.0 += 1;
        e.1 += usize::from(f.flat);
        e.2 += usize::from(f.agent);
        if let Some(p) = f.peer {
            *e.3.get_or_insert(0) += usize::from(p);
        }
    }
    t
}

/// Prints the EVTX report: the per-label table, then one summary line per labelled tree and one
/// for the whole run.
pub fn print_evtx(r: &EvtxReport) {
    for (f, what) in &r.problems {
        println!("  PROBLEM {f}: {what}");
    }
    let t = table(r);
    let peer = r.labelled.iter().any(|f| f.peer.is_some());
    if !t.is_empty() {
        let peer_head = if peer { format!(" / {}", r.peer_name) } else { String::new() };
        println!("technique tagging (tree, label: detected of files, flat / agent's path{peer_head}):");
        for ((tree, label), (n, flat, agent, p)) in &t {
            let p = p.map(|p| format!(" / {p}")).unwrap_or_default();
            println!("  {tree:<24} {label:<10} {flat}/{agent}{p} of {n}");
        }
    }
    let mut trees: BTreeMap<&str, (usize, usize, usize, usize, usize)> = BTreeMap::new();
    for f in &r.labelled {
        let e = trees.entry(&f.tree).or_default();
        e.0 += 1;
        e.1 += usize::from(f.flat);
        e.2 += usize::from(f.agent);
        e.3 += usize::from(f.peer == Some(true));
    }
    for (tree, e) in &mut trees {
        e.4 = t.keys().filter(|(tr, _)| tr == tree).count();
        let peer = if peer { format!("; {} {}/{} beside it", r.peer_name, e.3, e.0) } else { String::new() };
        println!(
            "technique tagging, {tree}: {}/{} labelled files through the agent's path ({:.1}%), {}/{} on flat records, over {} techniques{peer}",
            e.2,
            e.0,
            100.0 * e.2 as f64 / e.0.max(1) as f64,
            e.1,
            e.0,
            e.4
        );
    }
    let off = |k: usize| format!("{:.1}% of {}", r.tagged[k].off_percent(), r.tagged[k].events);
    let peer_off = if peer { format!(", {}'s detections {}", r.peer_name, off(2)) } else { String::new() };
    println!(
        "evtx: {} files, {} parsed ({:.1}%), {} records read vs {} indexed, {} problems; off-label share of tagged events: agent's path {}, flat {}{peer_off}; prefilter: {} of {} events differ from evaluating every rule",
        r.files,
        r.parsed,
        100.0 * r.parsed as f64 / r.files.max(1) as f64,
        r.records,
        r.indexed_records,
        r.problems.len(),
        off(1),
        off(0),
        r.prefilter_disagreements,
        r.prefilter_checked,
    );
}

#[cfg(test)]
mod tests {
    use super::label_of;

    #[test]
    fn labels_come_from_the_deepest_component_naming_a_technique() {
        let l = |p: &str| label_of(p);
        assert_eq!(
            l("evtx/E/TA0006-Credential access/T1003.001-LSASS dump/ID10-x.evtx").as_deref(),
            Some("T1003.001")
        );
        assert_eq!(l("evtx/E/TA0002-Execution/T1047-WMI/ID1-a.evtx").as_deref(), Some("T1047"));
        assert_eq!(
            l("evtx/S/Defense Evasion/Win_4985_T1186_Process_Doppelganging.evtx").as_deref(),
            Some("T1186")
        );
        assert_eq!(l("evtx/S/lowercase/t1059.001 powershell.evtx").as_deref(), Some("T1059.001"));
        // A tactic id, a longer number or letters glued on are not technique labels.
        assert_eq!(l("evtx/E/TA0002-Execution/x.evtx"), None);
        assert_eq!(l("evtx/S/T10591-x/HOST1059.evtx"), None);
        assert_eq!(l("evtx/E/Antivirus/ID1116-Defender.evtx"), None);
    }
}
