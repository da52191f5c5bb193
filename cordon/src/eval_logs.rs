//! `cordon eval logs --corpus DIR [--log FILE]...`: the agent's authentication-log reader and the
//! pack's log and brute-force rules on every authentication log of a corpus (or the files named),
//! whatever its layout: BSD, RFC 3339 or RFC 5424 syslog, a collector's prefix before it, journald
//! JSON, plain or gzip-compressed.
//!
//! Each log is scored against an oracle built from its own lines ([`crate::eval_logs_oracle`]):
//! every line the oracle calls an authentication failure must become a failure event and no other
//! line may, and the attempts the reader counts (an SSH attempt writes two to four lines) are set
//! beside the oracle's. Then the events of all logs go through Cordon's rule pack and correlations,
//! in time order, and the alerts are reported by rule.

use crate::eval_logs_oracle as oracle;
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One log's score.
#[derive(Debug, Default, serde::Serialize)]
pub struct LogScore {
    /// The file.
    pub file: String,
    /// Lines in the log.
    pub lines: u64,
    /// Lines the oracle calls authentication failures.
    pub expected_failures: u64,
    /// Of those, the lines the reader made failure events of.
    pub parsed_failures: u64,
    /// Lines the reader made failures of that the oracle does not call failures (line numbers).
    pub extra: Vec<u64>,
    /// Failure lines the reader missed (line numbers).
    pub missed: Vec<u64>,
    /// Login attempts by the oracle.
    pub oracle_attempts: u64,
    /// Login attempts the reader counted, and the lines it folded into the attempt before them.
    pub attempts: u64,
    /// See `attempts`.
    pub folded: u64,
}

/// What the evaluation found.
#[derive(Debug, Default, serde::Serialize)]
pub struct LogsReport {
    /// Per log.
    pub logs: Vec<LogScore>,
    /// Files looked at and not taken as authentication logs.
    pub not_logs: u64,
    /// Single-event log alerts raised (before deduplication).
    pub log_alerts: u64,
    /// Correlation alerts: (rule, group) for each firing.
    pub correlations: Vec<(String, String)>,
}

impl LogsReport {
    /// Summed over the logs: (expected, parsed, extra, missed, oracle attempts, attempts).
    pub fn totals(&self) -> (u64, u64, usize, usize, u64, u64) {
        self.logs.iter().fold((0, 0, 0, 0, 0, 0), |t, l| {
            (
                t.0 + l.expected_failures,
                t.1 + l.parsed_failures,
                t.2 + l.extra.len(),
                t.3 + l.missed.len(),
                t.4 + l.oracle_attempts,
                t.5 + l.attempts,
            )
        })
    }
}

/// The largest file read as a log.
const MAX_LOG_BYTES: u64 = 512 << 20;

/// Reads a file as text (gunzipped when it is gzip-compressed).
fn read_text(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let out = crate::eval_archive::gunzip(&bytes, path, MAX_LOG_BYTES)?;
        return Ok(String::from_utf8_lossy(&out).into_owned());
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Whether `text` is an authentication log: most of its first lines read as log lines (a clock
/// near the start, not a table's row), and the oracle finds authentication failures or logins in it.
fn is_auth_log(text: &str) -> bool {
    let head: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).take(200).collect();
    let dated = head
        .iter()
        .filter(|l| (has_clock(l) && !is_table_row(l)) || l.contains("\"__REALTIME_TIMESTAMP\""))
        .count();
    // The whole text is searched only when its first lines look like a log.
    !head.is_empty()
        && dated * 2 >= head.len()
        && text.lines().any(|l| {
            let m = l.to_lowercase();
            oracle::is_failure_lower(&m) || m.contains("accepted ") || m.contains("session opened")
        })
}

/// A CSV or TSV row (a table made from a log, such as loghub's parsed files), not a log line:
/// separators before its clock.
fn is_table_row(l: &str) -> bool {
    let head = &l[..l.floor_char_boundary(24)];
    head.contains(',') || head.contains('\t')
}

/// Whether a line holds an `hh:mm:ss` clock in its first 64 bytes.
fn has_clock(l: &str) -> bool {
    oracle::clock_at(&l.as_bytes()[..l.len().min(64)]).is_some()
}

/// The files under `dir` that may be logs (not empty, not too large, not an archive), sorted.
fn candidates(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(p);
            } else if meta.len() > 0 && meta.len() <= MAX_LOG_BYTES && !is_archive(&p) {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// Multi-file archives and binary formats, which hold no syslog text of their own.
fn is_archive(p: &Path) -> bool {
    let n = p.to_string_lossy().to_ascii_lowercase();
    [".zip", ".tar", ".tar.gz", ".tgz", ".evtx", ".pcap", ".pcapng", ".parquet"]
        .iter()
        .any(|x| n.ends_with(x))
}

/// Runs the evaluation on the logs named, else on every authentication log under `corpus` (each
/// file read once). BSD syslog dates are read in `year`.
pub fn logs(corpus: &Path, named: &[PathBuf], year: i32) -> anyhow::Result<LogsReport> {
    let mut r = LogsReport::default();
    let sniff = named.is_empty();
    let files = if sniff { candidates(corpus) } else { named.to_vec() };
    let mut events = Vec::new();
    for f in &files {
        let text = match read_text(f) {
            Ok(t) => t,
            Err(_) if sniff => {
                r.not_logs += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        if sniff && !is_auth_log(&text) {
            r.not_logs += 1;
            continue;
        }
        let (score, evs) = score_log(f, &text, year);
        r.logs.push(score);
        events.extend(evs);
    }
    anyhow::ensure!(!r.logs.is_empty(), "no authentication log under {}", corpus.display());
    pack(&mut r, events)?;
    Ok(r)
}

/// One log read by the agent's reader and scored against the oracle; the events the agent ships.
/// A line is the reader's failure when an event of it is not a success (a failure, or a failure
/// folded into the attempt before it).
fn score_log(file: &Path, text: &str, year: i32) -> (LogScore, Vec<serde_json::Value>) {
    let truth = oracle::truth(text);
    let mut s =
        LogScore { file: file.display().to_string(), oracle_attempts: truth.attempts, ..Default::default() };
    let parsed = sensor_agent::logs::parse(text, year);
    (s.attempts, s.folded) = (parsed.attempts, parsed.folded);
    let mut read_as_failure = vec![false; truth.failure.len()];
    for (e, &i) in parsed.events.iter().zip(&parsed.lines) {
        if e["event"]["outcome"] != "success"
            && let Some(f) = read_as_failure.get_mut(i)
        {
            *f = true;
        }
    }
    for (i, (&expected, &failure)) in truth.failure.iter().zip(&read_as_failure).enumerate() {
        let n = i as u64 + 1;
        s.lines += 1;
        s.expected_failures += u64::from(expected);
        match (expected, failure) {
            (true, true) => s.parsed_failures += 1,
            (true, false) => s.missed.push(n),
            (false, true) => s.extra.push(n),
            _ => {}
        }
    }
    // Lines that name no host (database logs, Netlogon's) are the host's the log came from, as
    // `cordon-agent logs --host` ships them: here the file's name.
    let host = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut events = Vec::new();
    for (k, mut e) in parsed.events.into_iter().enumerate() {
        e["event"]["id"] = serde_json::json!(format!("{}#{k}", s.file));
        if e["host"]["name"].is_null() {
            e["host"] = serde_json::json!({"name": host});
        }
        events.push(e);
    }
    (s, events)
}

/// The events through Cordon's pack and correlations, in time order, as ingest would see them.
fn pack(r: &mut LogsReport, events: Vec<serde_json::Value>) -> anyhow::Result<()> {
    let tagger = correlate::sigma::Tagger::cordon_pack(schemas::policy::Policy::cordon_default())?;
    let ch = schemas::decode::Channel {
        tenant: "eval",
        agent: "logs",
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
    Ok(())
}

/// Prints the report: per log, then per correlation rule, then one summary line.
pub fn print_logs(r: &LogsReport) {
    for l in &r.logs {
        println!(
            "  {}: {} lines; {} of {} failure lines, {} extra; {} attempts (oracle {}), {} lines folded",
            l.file,
            l.lines,
            l.parsed_failures,
            l.expected_failures,
            l.extra.len(),
            l.attempts,
            l.oracle_attempts,
            l.folded
        );
        if !l.missed.is_empty() || !l.extra.is_empty() {
            let first = |v: &[u64]| v.iter().take(20).copied().collect::<Vec<_>>();
            println!("    missed lines: {:?}; extra lines: {:?}", first(&l.missed), first(&l.extra));
        }
    }
    let mut by_rule: BTreeMap<&str, u64> = BTreeMap::new();
    for (rule, _) in &r.correlations {
        *by_rule.entry(rule).or_default() += 1;
    }
    for (rule, n) in &by_rule {
        println!("  {n:>4}  {rule}");
    }
    let (expected, parsed, extra, _, oracle_attempts, attempts) = r.totals();
    println!(
        "logs: {} authentication logs ({} other files); {} of {} failure lines parsed ({:.1}%), {} extra; {} attempts counted against the oracle's {}; {} log alerts; {} correlation alerts",
        r.logs.len(),
        r.not_logs,
        parsed,
        expected,
        100.0 * parsed as f64 / expected.max(1) as f64,
        extra,
        attempts,
        oracle_attempts,
        r.log_alerts,
        r.correlations.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two logs of different layouts in a folder with other files: both found, scored, and the
    /// brute force of the RFC 5424 one correlated.
    #[test]
    fn any_layout_of_auth_log_is_found_and_scored() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Vec::new();
        for k in 0..12 {
            a.push(format!(
                "<38>1 2024-01-08T10:00:{k:02}Z web-1 sshd {} - - Failed password for root from 203.0.113.9 port {} ssh2",
                900 + k,
                40000 + k
            ));
        }
        std::fs::create_dir_all(dir.path().join("x/y")).unwrap();
        std::fs::write(dir.path().join("x/y/messages"), a.join("\n") + "\n").unwrap();
        let b = "\
2024-02-01T09:00:00.000000+00:00 db-1 sshd[5]: Invalid user oracle from 198.51.100.7 port 4
2024-02-01T09:00:01.000000+00:00 db-1 sshd[5]: input_userauth_request: invalid user oracle [preauth]
2024-02-01T09:00:03.000000+00:00 db-1 sshd[5]: Failed password for invalid user oracle from 198.51.100.7 port 4 ssh2
2024-02-01T09:00:04.000000+00:00 db-1 sshd[6]: Accepted publickey for deploy from 10.0.0.4 port 5 ssh2
2024-02-01T09:00:05.000000+00:00 db-1 CRON[7]: pam_unix(cron:session): session opened for user root by (uid=0)
";
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b.as_bytes()).unwrap();
        std::fs::write(dir.path().join("auth.log.2.gz"), gz.finish().unwrap()).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "no log here\njust words\n").unwrap();
        let r = logs(dir.path(), &[], 2024).unwrap();
        assert_eq!((r.logs.len(), r.not_logs), (2, 1), "{r:?}");
        let (expected, parsed, extra, missed, oracle_attempts, attempts) = r.totals();
        assert_eq!((expected, parsed, extra, missed), (15, 15, 0, 0), "{r:?}");
        assert_eq!((oracle_attempts, attempts), (13, 13), "{r:?}");
        assert!(r.correlations.iter().any(|(_, g)| g.contains("203.0.113.9")), "{:?}", r.correlations);
    }
}
