//! `cordon eval logs --corpus DIR`: the agent's authentication-log reader and the pack's log and
//! brute-force rules on a real syslog (loghub's `Linux_2k.log`, one host over about six weeks).
//!
//! The oracle is loghub's own template parse (`Linux_2k.log_structured.csv`): every line whose
//! template is an sshd/PAM authentication failure must become a failure event, and no other line may.
//! Then the events go through Cordon's rule pack and correlations, in time order, and the alerts are
//! reported by rule and source.

use anyhow::Context;
use std::collections::BTreeMap;
use std::path::Path;

/// What the evaluation found.
#[derive(Debug, Default, serde::Serialize)]
pub struct LogsReport {
    /// Lines in the log.
    pub lines: u64,
    /// Lines loghub's templates call an authentication failure.
    pub expected_failures: u64,
    /// Failure events the reader produced on exactly those lines.
    pub parsed_failures: u64,
    /// Lines the reader made failures of that loghub does not call failures (by line number).
    pub extra: Vec<u64>,
    /// Lines loghub calls failures that the reader missed (by line number).
    pub missed: Vec<u64>,
    /// SSH login attempts the failure lines make, and the lines folded into an attempt before them.
    pub attempts: u64,
    /// See `attempts`.
    pub folded: u64,
    /// Single-event log alerts raised (before deduplication).
    pub log_alerts: u64,
    /// Correlation alerts: (rule, group) for each firing.
    pub correlations: Vec<(String, String)>,
}

/// Templates loghub gives authentication failures in this log.
fn is_failure_template(t: &str) -> bool {
    t.starts_with("authentication failure;")
        || t.starts_with("check pass; user unknown")
        || t.starts_with("Failed password")
}

/// Runs the evaluation on `corpus/auth/loghub/Linux`.
pub fn logs(corpus: &Path) -> anyhow::Result<LogsReport> {
    let dir = corpus.join("auth/loghub/Linux");
    let text = std::fs::read_to_string(dir.join("Linux_2k.log"))
        .with_context(|| format!("reading {}", dir.display()))?;
    let csv = std::fs::read_to_string(dir.join("Linux_2k.log_structured.csv"))?;
    // LineId is the first column and EventTemplate the last (templates may hold commas, but never
    // quotes in the failure templates).
    let mut truth: BTreeMap<u64, bool> = BTreeMap::new();
    for row in csv.lines().skip(1) {
        let Some((id, _)) = row.split_once(',') else { continue };
        let template = row.rsplit(',').next().unwrap_or_default();
        let template = if row.ends_with('"') {
            row.rsplit_once(",\"").map(|(_, t)| t.trim_end_matches('"')).unwrap_or(template)
        } else {
            template
        };
        truth.insert(id.parse()?, is_failure_template(template.trim()));
    }
    let mut r = LogsReport::default();
    let tagger = correlate::sigma::Tagger::cordon_pack(schemas::policy::Policy::cordon_default())?;
    let mut events = Vec::new();
    let mut attempts = sensor_agent::attempts::Attempts::default();
    for (i, line) in text.lines().enumerate() {
        let n = i as u64 + 1;
        r.lines += 1;
        let expected = truth.get(&n).copied().unwrap_or(false);
        r.expected_failures += u64::from(expected);
        let mut e = sensor_agent::logs::parse_line(line, 2005);
        let failure = e.as_ref().is_some_and(|e| e["event"]["outcome"] == "failure");
        // As the agent ships it: an SSH attempt's later lines folded into its first.
        if let Some(e) = e.as_mut() {
            attempts.mark(e);
        }
        match (expected, failure) {
            (true, true) => r.parsed_failures += 1,
            (true, false) => r.missed.push(n),
            (false, true) => r.extra.push(n),
            _ => {}
        }
        if let Some(mut e) = e {
            e["event"]["id"] = serde_json::json!(format!("line-{n}"));
            events.push(e);
        }
    }
    (r.attempts, r.folded) = (attempts.attempts, attempts.folded);
    // The pack, in time order, as ingest would see the events.
    let ch = schemas::decode::Channel {
        tenant: "eval",
        agent: "combo",
        message_key: "1:1",
        stream_seq: 1,
        received: 0,
    };
    let limits = schemas::decode::Limits::default(); // skew only flags the event
    let mut recs = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let line = e.to_string();
        match schemas::decode::decode_line(line.as_bytes(), i + 1, &ch, &limits) {
            Ok(rec) => recs.push(rec),
            Err(reject) => anyhow::bail!("the reader's event does not decode: {reject}: {line}"),
        }
    }
    recs.sort_by_key(schemas::Record::time);
    let mut state = tagger.correlator();
    for mut rec in recs {
        let (found, hits) = tagger.tag_and_hits(&mut rec);
        r.log_alerts += found.iter().filter(|d| d.tier >= schemas::policy::Tier::Alert).count() as u64;
        for d in tagger.correlate(&mut state, &rec, &hits) {
            let group = d
                .correlation
                .as_ref()
                .map(|c| c.fire.group.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "))
                .unwrap_or_default();
            r.correlations.push((d.rule, group));
        }
    }
    Ok(r)
}

/// Prints the report, ending with one summary line.
pub fn print_logs(r: &LogsReport) {
    let mut by_rule: BTreeMap<&str, u64> = BTreeMap::new();
    for (rule, _) in &r.correlations {
        *by_rule.entry(rule).or_default() += 1;
    }
    for (rule, n) in &by_rule {
        println!("  {n:>4}  {rule}");
    }
    if !r.missed.is_empty() || !r.extra.is_empty() {
        println!("  missed lines: {:?}; extra lines: {:?}", r.missed, r.extra);
    }
    println!(
        "logs: {} lines; {} of {} authentication failure lines parsed ({:.1}%), {} extra; {} SSH attempts ({} lines folded into the attempt before them); {} log alerts; {} correlation alerts",
        r.lines,
        r.parsed_failures,
        r.expected_failures,
        100.0 * r.parsed_failures as f64 / r.expected_failures.max(1) as f64,
        r.extra.len(),
        r.attempts,
        r.folded,
        r.log_alerts,
        r.correlations.len()
    );
}
