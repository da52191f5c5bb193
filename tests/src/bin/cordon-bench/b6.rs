//! B6: Cordon's Sigma engine on ~1,000 SigmaHQ rules over the corpus's EVTX records, and, with
//! `--rsigma BIN`, rsigma-eval on the same rules and records with the alert sets compared.

use crate::cpu_seconds;
use std::path::Path;
use std::time::Instant;

pub(crate) fn b6(
    rules_dir: &Path,
    evtx_dir: &Path,
    events: usize,
    reps: usize,
    peer: Option<&Path>,
) -> anyhow::Result<()> {
    use correlate::sigma::{FlatEvent, Pipeline, RuleSet, load};
    let pipeline = Pipeline::windows_flat();
    let paths: Vec<_> = cordon::eval::yaml_files(rules_dir)?
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/windows/") || p.to_string_lossy().contains("/linux/"))
        .collect();
    let mut rules = Vec::new();
    let mut used = Vec::new();
    for p in &paths {
        if rules.len() >= 1000 {
            break;
        }
        used.push(p.clone());
        rules.extend(load(&std::fs::read_to_string(p)?, &pipeline).into_iter().flatten());
    }
    let mut records = Vec::new();
    for p in cordon::eval::evtx_files(evtx_dir)? {
        records.extend(sensor_agent::evtx::read(&p)?.into_iter().map(|(_, m)| FlatEvent(m)));
    }
    anyhow::ensure!(!records.is_empty(), "no EVTX records under {}", evtx_dir.display());
    println!("  {} rules, {} distinct EVTX records cycled to {events} events", rules.len(), records.len());
    let n_rules = rules.len();
    let set = RuleSet::new(rules);
    let stats = set.prefilter_stats();
    println!(
        "  prefilter: {} rules keyed on {} literals, {} evaluated on every event of their logsource",
        stats.keyed, stats.literals, stats.always
    );
    // The prefilter must not change any answer.
    let differ =
        records.iter().filter(|e| set.matching_indices(*e) != set.matching_indices_unfiltered(*e)).count();
    println!("  prefilter vs every rule evaluated: {differ} of {} distinct records differ", records.len());
    // How selective the prefilter is: rules evaluated per record, and the rules most often
    // evaluated in vain.
    let mut vain = vec![0usize; n_rules];
    let (mut evaluated, mut fired) = (0usize, 0usize);
    for e in &records {
        let (cands, hits) = (set.candidate_indices(e), set.matching_indices(e));
        evaluated += cands.len();
        fired += hits.len();
        for i in cands.into_iter().filter(|i| !hits.contains(i)) {
            vain[i] += 1;
        }
    }
    println!(
        "  rules evaluated per record: {:.2} (of which {:.2} fire)",
        evaluated as f64 / records.len() as f64,
        fired as f64 / records.len() as f64
    );
    let mut worst: Vec<(usize, usize)> = vain.iter().copied().enumerate().filter(|(_, n)| *n > 0).collect();
    worst.sort_by_key(|(i, n)| (std::cmp::Reverse(*n), *i));
    for (i, n) in worst.iter().take(if std::env::var_os("B6_VAIN").is_some() { 15 } else { 0 }) {
        println!("    evaluated in vain on {n} records: {}", set.rules()[*i].title);
    }
    anyhow::ensure!(differ == 0, "the prefilter changed the matches on {differ} records");
    {
        let (c0, t0) = (cpu_seconds(), Instant::now());
        let n = events.min(20_000);
        let mut matches = 0u64;
        for i in 0..n {
            matches += set.matching_indices_unfiltered(&records[i % records.len()]).len() as u64;
        }
        let cpu = cpu_seconds() - c0;
        println!(
            "  without the prefilter (every rule of the event's logsource): {:.1}k events/CPU-s over {n} events, {matches} matches, {:.2} s wall",
            n as f64 / cpu.max(1e-9) / 1000.0,
            t0.elapsed().as_secs_f64()
        );
    }
    let mut rates = Vec::new();
    for rep in 0..reps {
        let (c0, t0) = (cpu_seconds(), Instant::now());
        let mut matches = 0u64;
        for i in 0..events {
            let ev = &records[i % records.len()];
            matches += set.matching(ev).len() as u64;
        }
        let cpu = cpu_seconds() - c0;
        let rate = events as f64 / cpu.max(1e-9);
        println!(
            "  rep {rep}: {:.1}k events/CPU-s, {:.1} ns per rule-event, {matches} matches, {:.2} s wall",
            rate / 1000.0,
            cpu * 1e9 / (events as f64 * n_rules as f64),
            t0.elapsed().as_secs_f64()
        );
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    let ours = rates[rates.len() / 2];
    println!(
        "  median {:.1}k events/CPU-s (PERF.md goal: >= 100k at 1,000 rules, >= 2x rsigma-eval)",
        ours / 1000.0
    );
    let Some(peer) = peer else {
        println!("  rsigma-eval: not run (./dev bench b6 builds and runs it)");
        return Ok(());
    };
    // The peer gets the same rule files and records, each record with the logsources Cordon's
    // pipeline gives it, and evaluates with logsource routing.
    let dir = tempfile::tempdir()?;
    let list = dir.path().join("rules.txt");
    std::fs::write(&list, used.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join("\n"))?;
    let ev_path = dir.path().join("events.ndjson");
    let mut lines = Vec::new();
    for r in &records {
        let get = |f: &str| {
            r.0.get(f).map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        };
        let matched = pipeline.logsources_of(&get);
        let service = matched.iter().flatten().find(|(k, _)| k == "service").map(|(_, v)| v.clone());
        let mut ls: Vec<serde_json::Value> = matched
            .iter()
            .flatten()
            .filter(|(k, _)| k == "category")
            .map(|(_, c)| serde_json::json!({"category": c, "product": "windows", "service": service}))
            .collect();
        if ls.is_empty() {
            ls.push(serde_json::json!({"product": "windows", "service": service}));
        }
        lines.push(serde_json::json!({"logsources": ls, "event": r.0}).to_string());
    }
    std::fs::write(&ev_path, lines.join("\n"))?;
    let out = std::process::Command::new(peer)
        .args([list.as_os_str(), ev_path.as_os_str(), events.to_string().as_ref(), reps.to_string().as_ref()])
        .output()?;
    anyhow::ensure!(out.status.success(), "rsigma-peer failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut theirs: Vec<f64> =
        v["rates"].as_array().into_iter().flatten().filter_map(|x| x.as_f64()).collect();
    theirs.sort_by(f64::total_cmp);
    let peer_rate = theirs.get(theirs.len() / 2).copied().unwrap_or(0.0);
    // Alert sets over the distinct records: (record, rule id).
    let ours_pairs: std::collections::BTreeSet<(usize, String)> = records
        .iter()
        .enumerate()
        .flat_map(|(i, ev)| set.matching(ev).into_iter().map(move |r| (i, r.id.clone())))
        .collect();
    let their_pairs: std::collections::BTreeSet<(usize, String)> = v["pairs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p[0].as_u64()? as usize, p[1].as_str()?.to_owned())))
        .collect();
    let both = ours_pairs.intersection(&their_pairs).count();
    let only_ours: Vec<_> = ours_pairs.difference(&their_pairs).collect();
    let only_theirs: Vec<_> = their_pairs.difference(&ours_pairs).collect();
    println!(
        "  rsigma-eval 0.23: {} rules loaded ({} files refused), median {:.1}k events/CPU-s; Cordon/rsigma = {:.2}x",
        v["rules_loaded"],
        v["files_refused"],
        peer_rate / 1000.0,
        ours / peer_rate.max(1e-9)
    );
    println!(
        "  alert sets over the {} distinct records: {both} (record, rule) pairs in both, {} only Cordon, {} only rsigma",
        records.len(),
        only_ours.len(),
        only_theirs.len()
    );
    // Per differing rule: how many records, and what Cordon matched on the first one.
    let mut by_rule: std::collections::BTreeMap<(&str, &str), (usize, usize)> =
        std::collections::BTreeMap::new();
    for (i, id) in &only_ours {
        by_rule.entry(("only Cordon", id.as_str())).or_insert((0, *i)).0 += 1;
    }
    for (i, id) in &only_theirs {
        by_rule.entry(("only rsigma", id.as_str())).or_insert((0, *i)).0 += 1;
    }
    for ((side, id), (n, first)) in by_rule.iter().take(30) {
        let rule = set.rules().iter().find(|r| r.id == *id);
        let title = rule.map_or("", |r| r.title.as_str());
        // What Cordon matched; where only rsigma matched, the values of the fields the rule reads.
        let why: Vec<String> = match rule {
            Some(r) if *side == "only Cordon" => {
                r.explain(&records[*first]).iter().map(|m| format!("{}={:.80}", m.field, m.value)).collect()
            }
            Some(r) => {
                let mut names: Vec<&str> = r.fields().iter().map(|f| f.sigma.as_str()).collect();
                names.sort_unstable();
                names.dedup();
                names
                    .into_iter()
                    .map(|n| {
                        format!(
                            "{n}={:.80}",
                            records[*first].0.get(n).map_or("(absent)".into(), |v| v.to_string())
                        )
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        println!("    {side}: {id} {title} ({n}); first record {first}: {}", why.join(", "));
    }
    Ok(())
}
