//! The oracle `cordon eval logs` scores the agent's log reader against, built from each log's own
//! lines and sharing no code or message list with the reader.
//!
//! - **Which lines are authentication failures**: a line's message holds a phrase of the vocabulary
//!   every PAM module and login daemon writes failures in ([`FAILURE_WORDS`]: "authentication
//!   failure", "failed password", "invalid user", "user unknown", "too many authentication
//!   failures"...), and none of the phrases of lines that merely mention one ([`NOT_FAILURES`]: an
//!   idle `timed out`, a session opened).
//! - **How many attempts they make**: the lines of one login process (host, program, pid, within
//!   sshd's login grace time) are one connection. Each kind of line (the message with its variable
//!   words masked: numbers, addresses, the word after `user`/`for`/`from`, every `key=value`) is
//!   written once per attempt, so a connection's attempts are the count of its most frequent failure
//!   kind; syslog's `message repeated N times: [ X ]` counts N of X, and PAM's `N more
//!   authentication failures` N more of its `authentication failure`. A failure line without a pid
//!   is an attempt of its own.

use std::collections::HashMap;

/// Phrases (lower case) that make a line an authentication failure.
pub const FAILURE_WORDS: [&str; 25] = [
    "authentication failure",
    "authentication failed",
    "auth fail",
    "failed password",
    "failed none",
    "failed publickey",
    "failed keyboard-interactive",
    "failed hostbased",
    "failed gssapi",
    "invalid user",
    "illegal user",
    "user unknown",
    "incorrect password",
    "login incorrect",
    "bad password",
    "failed su",
    "failed login",
    "access denied for user",
    "too many authentication failures",
    "maximum authentication attempts",
    "not allowed because",
    "couldn't authenticate",
    "failed to authenticate",
    "login refused",
    "password authentication failed",
];

/// Phrases (lower case) of lines that mention a failure word without being a failure.
pub const NOT_FAILURES: [&str; 4] = ["timed out", "session opened", "session closed", "accepted "];

/// A connection's lines come within this of its first (sshd's `LoginGraceTime`), in seconds.
const GRACE_SECONDS: i64 = 120;

/// What the oracle says about one log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Truth {
    /// Per line (in file order): an authentication failure.
    pub failure: Vec<bool>,
    /// Login attempts the failure lines make.
    pub attempts: u64,
}

/// One connection's first clock and its failure lines counted by kind.
type Conn = (Option<i64>, HashMap<String, u64>);

/// One line's parts, as the oracle reads them.
#[derive(Debug, Default)]
struct Line<'a> {
    host: &'a str,
    program: String,
    pid: Option<i64>,
    /// Seconds, comparable within a day or two (day of the month and clock), when found.
    clock: Option<i64>,
    msg: std::borrow::Cow<'a, str>,
}

/// The oracle's verdict on `text`.
pub fn truth(text: &str) -> Truth {
    let mut t = Truth::default();
    let mut conns: HashMap<(String, String, i64), Conn> = HashMap::new();
    let mut finished: Vec<HashMap<String, u64>> = Vec::new();
    for raw in text.lines() {
        let line = split(raw);
        let failure = is_failure(&line.msg);
        t.failure.push(failure);
        if !failure {
            continue;
        }
        let (weight, kind) = kind_of(&line.msg);
        let Some(pid) = line.pid else {
            t.attempts += weight;
            continue;
        };
        let key = (line.host.to_owned(), line.program.clone(), pid);
        let stale = conns.get(&key).is_some_and(|(start, _)| match (start, line.clock) {
            (Some(a), Some(b)) => (b - a).abs() > GRACE_SECONDS,
            _ => false,
        });
        if stale && let Some((_, kinds)) = conns.remove(&key) {
            finished.push(kinds);
        }
        let entry = conns.entry(key).or_insert_with(|| (line.clock, HashMap::new()));
        *entry.1.entry(kind).or_default() += weight;
    }
    finished.extend(conns.into_values().map(|(_, k)| k));
    t.attempts += finished.iter().map(|k| k.values().copied().max().unwrap_or(0)).sum::<u64>();
    t
}

/// Whether a message is an authentication failure.
pub fn is_failure(msg: &str) -> bool {
    is_failure_lower(&msg.to_lowercase())
}

/// [`is_failure`] of a message already in lower case.
pub fn is_failure_lower(m: &str) -> bool {
    FAILURE_WORDS.iter().any(|w| m.contains(w)) && !NOT_FAILURES.iter().any(|w| m.contains(w))
}

/// (how many lines of its kind it stands for, its kind).
fn kind_of(msg: &str) -> (u64, String) {
    let msg = msg.trim();
    if let Some(rest) = msg.strip_prefix("message repeated ")
        && let Some((n, inner)) = rest.split_once(" times: [")
        && let Ok(n) = n.parse::<u64>()
    {
        let (_, kind) = kind_of(inner.trim().trim_end_matches(']'));
        return (n, kind);
    }
    if let Some(rest) = msg.strip_prefix("PAM ")
        && let Some((n, tail)) = rest.split_once(" more authentication failure")
        && let Ok(n) = n.parse::<u64>()
    {
        let tail = tail.trim_start_matches('s');
        return (n, mask(&format!("authentication failure{tail}")));
    }
    // `pam_unix(sshd:auth): ` and `error: ` say who wrote it, not what.
    let msg = match msg.split_once("): ") {
        Some((head, rest)) if head.starts_with("pam_") && !head.contains(' ') => rest,
        _ => msg,
    };
    (1, mask(msg.strip_prefix("error: ").unwrap_or(msg)))
}

/// The message with its variable words masked.
fn mask(msg: &str) -> String {
    const NAMED_BY: [&str; 5] = ["user", "for", "from", "by", "to"];
    let mut out: Vec<String> = Vec::new();
    let mut prev = "";
    for w in msg.split_whitespace() {
        let masked = if let Some((k, _)) = w.split_once('=') {
            format!("{k}=<*>")
        } else if w.chars().any(|c| c.is_ascii_digit()) || NAMED_BY.contains(&prev.to_lowercase().as_str()) {
            "<*>".to_owned()
        } else {
            w.to_owned()
        };
        out.push(masked);
        prev = w;
    }
    out.join(" ")
}

/// A line's parts: a journald JSON record's fields, an RFC 5424 line's, or a text line's `program[pid]:`
/// tag (the first word shaped like one after the clock) with the host before it. Lines without a tag
/// (database logs) are their whole text.
fn split(raw: &str) -> Line<'_> {
    let raw = raw.trim_end();
    if raw.starts_with('{') {
        return journal(raw).unwrap_or_default();
    }
    let clock = clock_of(raw);
    if raw.starts_with('<')
        && let Some((_, rest)) = raw.split_once('>')
    {
        let f: Vec<&str> = rest.splitn(8, ' ').collect();
        if f.len() == 8 {
            let msg = f[7].trim_start_matches('\u{feff}');
            return Line {
                host: f[2],
                program: f[3].to_owned(),
                pid: f[4].parse().ok(),
                clock,
                msg: msg.into(),
            };
        }
    }
    let words: Vec<(usize, &str)> =
        raw.match_indices(|c: char| !c.is_whitespace()).fold(Vec::new(), |mut acc, (i, _)| {
            if i == 0 || raw[..i].ends_with(char::is_whitespace) {
                let w = raw[i..].split_whitespace().next().unwrap_or_default();
                acc.push((i, w));
            }
            acc
        });
    let after_clock = words.iter().position(|(_, w)| is_clock(w)).map_or(0, |p| p + 1);
    for k in after_clock.max(1)..words.len().min(after_clock + 4) {
        let (i, w) = words[k];
        let Some(tag) = w.strip_suffix(':') else { continue };
        let (program, pid) = match tag.split_once('[') {
            Some((p, pid)) => (p, pid.trim_end_matches(']').parse().ok()),
            None => (tag, None),
        };
        if program.is_empty() || !program.chars().all(|c| c.is_alphanumeric() || "_-./()".contains(c)) {
            continue;
        }
        let program = program.split('(').next().unwrap_or(program).to_owned();
        let msg = raw[i + w.len()..].trim_start();
        return Line { host: words[k - 1].1, program, pid, clock, msg: msg.into() };
    }
    Line { msg: raw.into(), clock, ..Line::default() }
}

/// A journald JSON record's parts.
fn journal(raw: &str) -> Option<Line<'static>> {
    let v: serde_json::Value = serde_json::from_str(raw).ok()?;
    let msg = match &v["MESSAGE"] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(b) => {
            String::from_utf8_lossy(&b.iter().filter_map(|x| x.as_u64().map(|x| x as u8)).collect::<Vec<_>>())
                .into_owned()
        }
        _ => return None,
    };
    let s = |k: &str| v[k].as_str().map(str::to_owned);
    let clock = s("__REALTIME_TIMESTAMP").and_then(|t| t.parse::<i64>().ok()).map(|us| us / 1_000_000);
    Some(Line {
        host: "",
        program: s("SYSLOG_IDENTIFIER").or_else(|| s("_COMM")).unwrap_or_default(),
        pid: s("_PID").and_then(|p| p.parse().ok()),
        clock,
        msg: msg.into(),
    })
}

/// Where the first `hh:mm:ss` in `b` starts.
pub fn clock_at(b: &[u8]) -> Option<usize> {
    b.windows(8).position(|w| {
        w[2] == b':' && w[5] == b':' && [0, 1, 3, 4, 6, 7].iter().all(|&i| w[i].is_ascii_digit())
    })
}

/// `hh:mm:ss` (optionally with a fraction or a zone after it, as in RFC 3339's `T10:00:00.5Z`).
fn is_clock(w: &str) -> bool {
    let w = w.rsplit_once('T').map_or(w, |(_, c)| c);
    clock_at(w.as_bytes()) == Some(0)
}

/// Seconds of the day of the month and the clock at the start of a line, when it has them.
fn clock_of(raw: &str) -> Option<i64> {
    let head = &raw[..raw.floor_char_boundary(80)];
    let at = clock_at(head.as_bytes())?;
    let n = |s: &str| s.parse::<i64>().ok();
    let (h, m, s) = (n(&head[at..at + 2])?, n(&head[at + 3..at + 5])?, n(&head[at + 6..at + 8])?);
    // The day: the last number before the clock (`Jun 14 `, `2024-01-08T`).
    let day = head[..at]
        .trim_end_matches(['T', ' '])
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(n)
        .unwrap_or(0);
    Some(((day * 24 + h) * 60 + m) * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_the_most_frequent_kind_of_each_connection() {
        let log = "\
Dec 10 07:13:31 lab sshd[24227]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.9  user=root
Dec 10 07:13:43 lab sshd[24227]: Failed password for root from 203.0.113.9 port 42393 ssh2
Dec 10 07:13:56 lab sshd[24227]: message repeated 5 times: [ Failed password for root from 203.0.113.9 port 42393 ssh2]
Dec 10 07:13:56 lab sshd[24227]: Disconnecting: Too many authentication failures for root [preauth]
Dec 10 07:13:56 lab sshd[24227]: PAM 5 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.9  user=root
Dec 10 07:13:56 lab sshd[24227]: PAM service(sshd) ignoring max retries; 6 > 3
Dec 10 07:20:00 lab sshd[24300]: Invalid user web from 198.51.100.2
Dec 10 07:20:00 lab sshd[24300]: input_userauth_request: invalid user web [preauth]
Dec 10 07:20:01 lab sshd[24300]: pam_unix(sshd:auth): check pass; user unknown
Dec 10 07:20:03 lab sshd[24300]: Failed password for invalid user web from 198.51.100.2 port 1 ssh2
Dec 10 07:20:04 lab ftpd[24301]: User unknown timed out after 900 seconds
Dec 10 07:20:05 lab sudo:      bob : 3 incorrect password attempts ; TTY=pts/1 ; USER=root ; COMMAND=/bin/sh
Dec 10 09:20:00 lab sshd[24300]: Failed password for root from 198.51.100.3 port 2 ssh2
";
        let t = truth(log);
        let failures: Vec<usize> = (0..t.failure.len()).filter(|&i| t.failure[i]).map(|i| i + 1).collect();
        assert_eq!(failures, [1, 2, 3, 4, 5, 7, 8, 9, 10, 12, 13]);
        // 6 guesses; 1 invalid-user attempt; sudo's line; pid 24300 again two hours later.
        assert_eq!(t.attempts, 6 + 1 + 1 + 1);
    }

    #[test]
    fn every_layout_names_its_process() {
        for (raw, host, program, pid) in [
            (
                "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: check pass; user unknown",
                "combo",
                "sshd",
                Some(19939),
            ),
            (
                "2024-01-08T10:00:00.5+01:00 web-1 sshd[811]: Invalid user x from 1.2.3.4",
                "web-1",
                "sshd",
                Some(811),
            ),
            ("<38>1 2024-01-08T10:00:00Z web-1 sshd 811 - - Invalid user x", "web-1", "sshd", Some(811)),
            (
                "- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond[2916]: (root) CMD (x)",
                "dn228/dn228",
                "crond",
                Some(2916),
            ),
            (
                "Nov 23 10:00:06 web-1 sudo: pam_unix(sudo:auth): authentication failure;",
                "web-1",
                "sudo",
                None,
            ),
        ] {
            let l = split(raw);
            assert_eq!((l.host, l.program.as_str(), l.pid), (host, program, pid), "{raw}");
        }
        assert_eq!(clock_of("Jun 14 15:16:01 combo x: y"), Some(((14 * 24 + 15) * 60 + 16) * 60 + 1));
        assert_eq!(
            mask("Failed password for root from 1.2.3.4 port 5 ssh2"),
            "Failed password for <*> from <*> port <*> <*>"
        );
    }
}
