//! Authentication logs as Cordon events: Linux syslog (`/var/log/auth.log`, `secure`: sshd,
//! pam_unix, sudo and su), the same messages from the systemd journal (`journalctl -o json`, one
//! JSON object a line), PostgreSQL and MySQL server logs. Each authentication line becomes an ECS event with
//! `event.category: authentication`, the outcome, the account, the source, `event.reason` (the log's
//! own words) and the raw line in `event.original`, so the log-alert rules and the brute-force
//! correlations run on it like on any other event. Lines that are not about authentication are
//! counted and skipped.
//!
//! Syslog timestamps carry no year and no zone: the caller gives the year, and times are read as UTC.

use serde_json::{Value, json};

/// The result of reading one log file.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Events, in file order.
    pub events: Vec<Value>,
    /// The line (counted from 0) each event came from.
    pub lines: Vec<usize>,
    /// Lines that are not about authentication (or not recognised).
    pub skipped: u64,
    /// SSH login attempts counted, and lines folded into the attempt before them
    /// ([`crate::attempts`]).
    pub attempts: u64,
    /// See `attempts`.
    pub folded: u64,
}

/// Reads every line of `text` (a syslog, PostgreSQL or MySQL log); an SSH attempt's lines after its
/// first are marked as part of it ([`crate::attempts::Attempts`]). A BSD syslog's dates carry no
/// year: they start in `year` and move to the next one where the months wrap (December to January).
pub fn parse(text: &str, year: i32) -> Parsed {
    let mut out = Parsed::default();
    let mut reader = LineReader::new(year);
    for (i, line) in text.lines().enumerate() {
        let events = reader.events(line);
        if events.is_empty() {
            out.skipped += 1;
        }
        for e in events {
            out.events.push(e);
            out.lines.push(i);
        }
    }
    (out.attempts, out.folded) = (reader.attempts.attempts, reader.attempts.folded);
    out
}

/// A log read line by line as it grows (a followed file): the year of BSD dates and the SSH
/// attempts carry from line to line, as [`parse`] carries them through a whole file.
#[derive(Debug)]
pub struct LineReader {
    years: Years,
    /// The attempts so far.
    pub attempts: crate::attempts::Attempts,
}

impl LineReader {
    /// A reader whose BSD dates start in `year`.
    pub fn new(year: i32) -> Self {
        Self { years: Years { year, last_month: 0 }, attempts: Default::default() }
    }

    /// The authentication events of the next line (none when it is about something else).
    pub fn events(&mut self, line: &str) -> Vec<Value> {
        let mut events = dated_line_events(line, &mut self.years);
        for e in &mut events {
            self.attempts.mark(e);
        }
        events
    }
}

/// The year of a BSD syslog's dates as its lines go by: it moves on where the months wrap.
#[derive(Debug)]
struct Years {
    year: i32,
    last_month: u32,
}

impl Years {
    /// Dates `h` (written with the current year) in the year its month falls in.
    fn date(&mut self, h: &mut crate::syslog::Header<'_>) {
        let Some(m) = h.bsd_month else { return };
        if m + 6 < self.last_month {
            self.year += 1;
            h.time = format!("{:04}{}", self.year, h.time.get(4..).unwrap_or_default());
        }
        self.last_month = m;
    }
}

/// One line as an authentication event, when it is one (the first, for a line that stands for
/// several: [`line_events`]).
pub fn parse_line(line: &str, year: i32) -> Option<Value> {
    line_events(line, year).into_iter().next()
}

/// Every authentication event a line stands for: none, one, or N for syslog's `message repeated N
/// times: [ ... ]` (each of the N repeated failures is an attempt of its own).
pub fn line_events(line: &str, year: i32) -> Vec<Value> {
    dated_line_events(line, &mut Years { year, last_month: 0 })
}

/// [`line_events`], a BSD date in the year `years` has reached.
fn dated_line_events(line: &str, years: &mut Years) -> Vec<Value> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.starts_with('{') {
        return journal(line).into_iter().collect();
    }
    if let Some(mut h) = crate::syslog::header(line, years.year) {
        years.date(&mut h);
        let (times, msg) = repeated(h.msg).unwrap_or((1, h.msg));
        let host = Some(h.host).filter(|x| !x.is_empty());
        let Some(e) = auth_event(&h.time, host, h.program, h.pid, msg, line, "syslog") else {
            return Vec::new();
        };
        return vec![e; times];
    }
    postgres(line).or_else(|| mysql(line)).or_else(|| netlogon(line, years.year)).into_iter().collect()
}

/// The message a `message repeated N times: [ ... ]` line repeats (any other message as it is).
pub fn repeated_message(msg: &str) -> &str {
    repeated(msg).map_or(msg, |(_, m)| m)
}

/// The most a `message repeated N times` line is taken to stand for.
const MAX_REPEATED: usize = 1_000;

/// `message repeated 5 times: [ Failed password for root from 203.0.113.9 port 42393 ssh2]`:
/// (5, the message).
fn repeated(msg: &str) -> Option<(usize, &str)> {
    let rest = msg.strip_prefix("message repeated ")?;
    let (n, rest) = rest.split_once(" times: [")?;
    let n: usize = n.parse().ok()?;
    Some((n.clamp(1, MAX_REPEATED), rest.trim().trim_end_matches(']').trim_end()))
}

/// A `journalctl -o json` record: `__REALTIME_TIMESTAMP` (microseconds), `_HOSTNAME`,
/// `SYSLOG_IDENTIFIER` (else `_COMM`), `_PID` and `MESSAGE` (a string, or an array of bytes when
/// it is not valid UTF-8).
fn journal(line: &str) -> Option<Value> {
    let r: serde_json::Map<String, Value> = serde_json::from_str(line).ok()?;
    let text = |k: &str| r.get(k).and_then(Value::as_str);
    let msg: String = match r.get("MESSAGE")? {
        Value::String(s) => s.clone(),
        Value::Array(bytes) => {
            let b: Vec<u8> =
                bytes.iter().filter_map(|v| v.as_u64().and_then(|x| u8::try_from(x).ok())).collect();
            String::from_utf8_lossy(&b).into_owned()
        }
        _ => return None,
    };
    let micros: i64 = text("__REALTIME_TIMESTAMP")?.parse().ok()?;
    let program = text("SYSLOG_IDENTIFIER").or_else(|| text("_COMM"))?;
    let pid = text("_PID").or_else(|| text("SYSLOG_PID")).and_then(|p| p.parse().ok());
    let time = schemas::time::format_micros(micros);
    let original =
        format!("{time} {} {program}[{}]: {msg}", text("_HOSTNAME").unwrap_or("-"), pid.unwrap_or(0));
    auth_event(&time, text("_HOSTNAME"), program, pid, &msg, &original, "journald")
}

/// The event for an authentication message of `program` (`sshd`, `sshd(pam_unix)`, `sudo`, `su`...).
fn auth_event(
    time: &str,
    host: Option<&str>,
    program: &str,
    pid: Option<i64>,
    msg: &str,
    original: &str,
    source: &str,
) -> Option<Value> {
    let daemon = program.split('(').next().unwrap_or(program);
    let (outcome, reason, user, from) = match daemon {
        "sudo" | "su" => elevation_message(daemon, msg).or_else(|| login_message(msg))?,
        _ => login_message(msg)?,
    };
    let action = match daemon {
        "sudo" | "su" => daemon.to_owned(),
        _ => format!("{daemon}-login"),
    };
    let mut e = json!({
        "@timestamp": time,
        "event": {"category": "authentication", "action": action, "outcome": outcome,
                  "reason": reason, "dataset": "linux.auth", "original": original},
        "process": {"name": daemon},
        "log": {"syslog": {"appname": program}, "source": source},
    });
    if let Some(h) = host {
        e["host"] = json!({"name": h});
    }
    if let Some(pid) = pid {
        e["process"]["pid"] = json!(pid);
    }
    if let Some(u) = user {
        e["user"] = json!({"name": u});
    }
    if let Some(f) = from {
        if f.parse::<std::net::IpAddr>().is_ok() {
            e["source"] = json!({"ip": f});
        } else {
            e["source"] = json!({"domain": f});
        }
    }
    Some(e)
}

use crate::login_messages::{Auth, login_message};

/// sudo's and su's own messages: a command run as another user (success), too many wrong
/// passwords (failure), a switch of user (success or `FAILED SU`). The account is the one that
/// asked; the target user goes in the reason.
fn elevation_message<'a>(daemon: &str, msg: &'a str) -> Option<Auth<'a>> {
    let msg = msg.trim_start();
    if daemon == "sudo" {
        // `alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/ls`
        // `alice : 3 incorrect password attempts ; TTY=pts/0 ; ... ; USER=root ; COMMAND=...`
        let (user, rest) = msg.split_once(" : ")?;
        let user = user.trim();
        if user.contains(' ') || user.is_empty() {
            return None;
        }
        let target = rest.split(" ; ").find_map(|f| f.trim().strip_prefix("USER=")).unwrap_or("root");
        if rest.contains("incorrect password attempt") {
            return Some(("failure", format!("sudo to {target}: incorrect password"), Some(user), None));
        }
        if rest.contains("COMMAND=") {
            return Some(("success", format!("sudo to {target}"), Some(user), None));
        }
        return None;
    }
    // su: `FAILED SU (to root) alice on pts/0`, `(to root) alice on pts/0`, `Successful su for root by alice`
    if let Some(rest) = msg.strip_prefix("FAILED SU (to ") {
        let (target, rest) = rest.split_once(") ")?;
        return Some(("failure", format!("su to {target} failed"), rest.split_whitespace().next(), None));
    }
    if let Some(rest) = msg.strip_prefix("(to ") {
        let (target, rest) = rest.split_once(") ")?;
        return Some(("success", format!("su to {target}"), rest.split_whitespace().next(), None));
    }
    if let Some(rest) = msg.strip_prefix("Successful su for ") {
        let (target, by) = rest.split_once(" by ")?;
        return Some(("success", format!("su to {target}"), by.split_whitespace().next(), None));
    }
    None
}

/// Windows' Netlogon debug log (`%windir%\debug\netlogon.log`), where a domain controller writes
/// the secure-channel authentications of computer accounts (and where ZeroLogon, CVE-2020-1472,
/// shows as thousands of bad passwords for one account):
/// `09/14 12:33:07 [CRITICAL] [3352] Domain01: NetrServerAuthenticate: Bad password 0 for DC01 on
/// account DC01$` and `... Failed to authenticate DC01 on account DC01$`. The log names neither the
/// year nor the controller: the caller gives the year, and the host is the one the file is read for.
fn netlogon(line: &str, year: i32) -> Option<Value> {
    let line = line.trim_start_matches('\u{feff}');
    let (date, rest) = line.split_once(' ')?;
    let (month, day) = date.split_once('/')?;
    let (month, day): (u32, u32) = (month.parse().ok()?, day.parse().ok()?);
    let (clock, rest) = rest.split_once(' ')?;
    let time = format!("{year:04}-{month:02}-{day:02}T{clock}Z");
    schemas::time::parse_rfc3339_micros(&time)?;
    let msg = rest.split_once(": ").map(|(_, m)| m)?;
    let (reason, rest) = if let Some(r) = msg.strip_prefix("NetrServerAuthenticate: Bad password ") {
        ("bad password (netlogon)", r)
    } else if let Some(r) = msg.split_once("Failed to authenticate ").map(|(_, r)| r) {
        ("failed to authenticate (netlogon)", r)
    } else {
        return None;
    };
    let client = rest.split_once(" for ").map_or(rest, |(_, c)| c).split_whitespace().next();
    let account = rest.split_once(" on account ").and_then(|(_, a)| a.split_whitespace().next());
    let mut e = json!({
        "@timestamp": time,
        "event": {"category": "authentication", "action": "netlogon-authenticate", "outcome": "failure",
                  "reason": reason, "dataset": "windows.netlogon", "original": line},
        "process": {"name": "netlogon"},
    });
    if let Some(a) = account {
        e["user"] = json!({"name": a});
    }
    if let Some(c) = client {
        e["source"] = json!({"domain": c});
    }
    Some(e)
}

/// `2026-11-23 10:00:00.123 UTC [4242] FATAL:  password authentication failed for user "app"`,
/// optionally with `connection authorized`/`host=` context in the prefix.
fn postgres(line: &str) -> Option<Value> {
    let (head, msg) = line.split_once("FATAL:")?;
    let msg = msg.trim();
    let reason = if msg.starts_with("password authentication failed") {
        "password authentication failed"
    } else if msg.starts_with("no pg_hba.conf entry") {
        "no pg_hba.conf entry"
    } else if msg.starts_with("role ") && msg.ends_with("does not exist") {
        "unknown role"
    } else {
        return None;
    };
    let user = msg.split('"').nth(1);
    let time = head.split_whitespace().take(2).collect::<Vec<_>>().join("T");
    let time = time.split('.').next().unwrap_or(&time).to_owned() + "Z";
    let mut e = json!({
        "event": {"category": "authentication", "action": "db-login", "outcome": "failure",
                  "reason": reason, "dataset": "postgresql.log", "original": line},
        "process": {"name": "postgres"},
    });
    if schemas::time::parse_rfc3339_micros(&time).is_some() {
        e["@timestamp"] = json!(time);
    }
    if let Some(u) = user {
        e["user"] = json!({"name": u});
    }
    if let Some(h) = msg.split_once("host \"").and_then(|(_, r)| r.split('"').next()) {
        e["source"] = json!({"ip": h});
    }
    Some(e)
}

/// `2026-11-23T10:00:00.123456Z 12 [Note] Access denied for user 'app'@'10.0.0.5' (using password: YES)`.
fn mysql(line: &str) -> Option<Value> {
    let (head, rest) = line.split_once("Access denied for user '")?;
    let (user, rest) = rest.split_once("'@'")?;
    let (from, _) = rest.split_once('\'')?;
    let time = head.split_whitespace().next().unwrap_or_default();
    let mut e = json!({
        "event": {"category": "authentication", "action": "db-login", "outcome": "failure",
                  "reason": "access denied", "dataset": "mysql.error", "original": line},
        "process": {"name": "mysqld"},
        "user": {"name": user},
    });
    if schemas::time::parse_rfc3339_micros(time).is_some() {
        e["@timestamp"] = json!(time);
    }
    e["source"] =
        if from.parse::<std::net::IpAddr>().is_ok() { json!({"ip": from}) } else { json!({"domain": from}) };
    Some(e)
}

#[cfg(test)]
#[path = "logs_tests.rs"]
mod tests;
