//! B6's peer: rsigma-eval 0.23 on the rules and events `cordon-bench --only b6` writes.
//!
//! `rsigma-peer RULES_LIST EVENTS_NDJSON N REPS`: loads every rule file listed, then evaluates N
//! events (the records cycled) REPS times with `evaluate_with_logsource`, once per logsource the
//! record belongs to (as Cordon's windows-flat pipeline assigns them), and prints one JSON line:
//! rules loaded and refused, events per CPU-second per rep, and the (record, rule id) matches of one
//! pass over the distinct records, for the alert-set comparison.

use rsigma_eval::{Engine, JsonEvent};
use rsigma_parser::{LogSource, parse_sigma_yaml};
use serde_json::{Value, json};

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: rsigma-peer RULES_LIST EVENTS_NDJSON N REPS");
        std::process::exit(2);
    }
    let n: usize = args[3].parse().expect("N");
    let reps: usize = args[4].parse().expect("REPS");
    let mut engine = Engine::new();
    let (mut loaded, mut refused) = (0usize, 0usize);
    for path in std::fs::read_to_string(&args[1]).expect("rules list").lines() {
        let text = std::fs::read_to_string(path).expect("rule file");
        match parse_sigma_yaml(&text) {
            Ok(c) if !c.rules.is_empty() => match engine.add_collection(&c) {
                Ok(()) => loaded += c.rules.len(),
                Err(_) => refused += 1,
            },
            _ => refused += 1,
        }
    }
    // Each line: {"logsources": [{"category":..,"product":..,"service":..}], "event": {...}}.
    let mut records: Vec<(Vec<LogSource>, Value)> = Vec::new();
    for line in std::fs::read_to_string(&args[2]).expect("events").lines() {
        let v: Value = serde_json::from_str(line).expect("event line");
        let ls = v["logsources"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| LogSource {
                category: l["category"].as_str().map(str::to_owned),
                product: l["product"].as_str().map(str::to_owned),
                service: l["service"].as_str().map(str::to_owned),
                ..Default::default()
            })
            .collect();
        records.push((ls, v["event"].clone()));
    }
    let eval = |i: usize| -> Vec<String> {
        let (ls, ev) = &records[i % records.len()];
        let event = JsonEvent::borrow(ev);
        let mut ids: Vec<String> = Vec::new();
        for l in ls {
            for r in engine.evaluate_with_logsource(&event, l) {
                let id = r.header.rule_id.clone().unwrap_or(r.header.rule_title.clone());
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        ids
    };
    let pairs: Vec<Value> =
        (0..records.len()).flat_map(|i| eval(i).into_iter().map(move |id| json!([i, id]))).collect();
    let mut rates = Vec::new();
    let mut matches = 0usize;
    for _ in 0..reps {
        let c0 = cpu_seconds();
        matches = 0;
        for i in 0..n {
            matches += eval(i).len();
        }
        rates.push(n as f64 / (cpu_seconds() - c0).max(1e-9));
    }
    println!(
        "{}",
        json!({"rules_loaded": loaded, "files_refused": refused, "events": n, "rates": rates,
               "matches_per_rep": matches, "pairs": pairs})
    );
}
