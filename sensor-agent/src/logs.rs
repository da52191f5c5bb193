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
    /// Lines that are not about authentication (or not recognised).
    pub skipped: u64,
    /// SSH login attempts counted, and lines folded into the attempt before them
    /// ([`crate::attempts`]).
    pub attempts: u64,
    /// See `attempts`.
    pub folded: u64,
}

/// Reads every line of `text` (a syslog, PostgreSQL or MySQL log); an SSH attempt's lines after its
/// first are marked as part of it ([`crate::attempts::Attempts`]).
pub fn parse(text: &str, year: i32) -> Parsed {
    let mut out = Parsed::default();
    let mut attempts = crate::attempts::Attempts::default();
    for line in text.lines() {
        match parse_line(line, year) {
            Some(mut e) => {
                attempts.mark(&mut e);
                out.events.push(e);
            }
            None => out.skipped += 1,
        }
    }
    (out.attempts, out.folded) = (attempts.attempts, attempts.folded);
    out
}

/// One line as an authentication event, when it is one.
pub fn parse_line(line: &str, year: i32) -> Option<Value> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.starts_with('{') {
        return journal(line);
    }
    syslog(line, year).or_else(|| postgres(line)).or_else(|| mysql(line))
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

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// `Jun 14 15:16:01 combo sshd(pam_unix)[19939]: message`.
fn syslog(line: &str, year: i32) -> Option<Value> {
    let month = MONTHS.iter().position(|m| line.starts_with(m))? as u32 + 1;
    let rest = line.get(4..)?.trim_start();
    let (day, rest) = rest.split_once(' ')?;
    let day: u32 = day.parse().ok()?;
    let (clock, rest) = rest.split_once(' ')?;
    let (host, rest) = rest.split_once(' ')?;
    let (tag, msg) = rest.split_once(": ")?;
    let (program, pid) = match tag.split_once('[') {
        Some((p, pid)) => (p, pid.trim_end_matches(']').parse::<i64>().ok()),
        None => (tag, None),
    };
    let time = format!("{year:04}-{month:02}-{day:02}T{clock}Z");
    schemas::time::parse_rfc3339_micros(&time)?;
    auth_event(&time, Some(host), program, pid, msg, line, "syslog")
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
        "sudo" | "su" => elevation_message(daemon, msg).or_else(|| sshd_message(msg))?,
        _ => sshd_message(msg)?,
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

type Auth<'a> = (&'static str, String, Option<&'a str>, Option<&'a str>);

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

/// sshd, pam_unix and other PAM services' authentication messages.
fn sshd_message(msg: &str) -> Option<Auth<'_>> {
    let word_after = |s: &'static str| msg.split_once(s).and_then(|(_, r)| r.split_whitespace().next());
    if msg.starts_with("Failed ") || msg.starts_with("Accepted ") {
        // Failed password for [invalid user] NAME from IP port N ssh2
        let ok = msg.starts_with("Accepted ");
        let method = msg.split_whitespace().nth(1).unwrap_or("password");
        let user = word_after(" for invalid user ").or_else(|| word_after(" for "));
        let reason = if msg.contains(" invalid user ") {
            "invalid user".to_owned()
        } else if ok {
            format!("accepted {method}")
        } else {
            format!("failed {method}")
        };
        return Some((if ok { "success" } else { "failure" }, reason, user, word_after(" from ")));
    }
    if let Some(rest) = msg.strip_prefix("Invalid user ") {
        let user = rest.split_whitespace().next();
        return Some(("failure", "invalid user".into(), user, word_after(" from ")));
    }
    if msg.contains("authentication failure;") {
        // pam_unix: ... rhost=HOST  user=NAME
        let field =
            |k: &str| msg.split_whitespace().find_map(|w| w.strip_prefix(k)).filter(|v| !v.is_empty());
        return Some(("failure", "authentication failure".into(), field("user="), field("rhost=")));
    }
    // `check pass; user unknown`, alone (older logs) or after `pam_unix(sshd:auth): `.
    if msg.contains("check pass; user unknown") {
        return Some(("failure", "unknown user".into(), None, None));
    }
    None
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
mod tests {
    use super::*;

    #[test]
    fn sshd_and_pam_lines() {
        let e = parse_line(
            "Jun 15 02:04:59 combo sshd(pam_unix)[20882]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=220-135-151-1.hinet-ip.hinet.net  user=root",
            2005,
        )
        .unwrap();
        assert_eq!(e["@timestamp"], "2005-06-15T02:04:59Z");
        assert_eq!(
            (e["event"]["outcome"].as_str(), e["user"]["name"].as_str()),
            (Some("failure"), Some("root"))
        );
        assert_eq!(e["source"]["domain"], "220-135-151-1.hinet-ip.hinet.net");
        assert_eq!((e["host"]["name"].as_str(), e["process"]["pid"].as_i64()), (Some("combo"), Some(20882)));
        assert!(e["event"]["original"].as_str().unwrap().ends_with("user=root"));

        let e = parse_line(
            "Nov 23 10:00:01 web-1 sshd[811]: Failed password for invalid user admin from 203.0.113.9 port 52211 ssh2",
            2026,
        )
        .unwrap();
        assert_eq!(
            (e["user"]["name"].as_str(), e["source"]["ip"].as_str(), e["event"]["reason"].as_str()),
            (Some("admin"), Some("203.0.113.9"), Some("invalid user"))
        );
        let e = parse_line(
            "Nov  3 10:00:02 web-1 sshd[811]: Accepted publickey for deploy from 10.0.0.4 port 1 ssh2",
            2026,
        )
        .unwrap();
        assert_eq!(e["@timestamp"], "2026-11-03T10:00:02Z", "space-padded day");
        assert_eq!(
            (e["event"]["outcome"].as_str(), e["user"]["name"].as_str()),
            (Some("success"), Some("deploy"))
        );
        assert!(
            parse_line("Nov 23 10:00:03 web-1 CRON[12]: (root) CMD (run-parts /etc/cron.hourly)", 2026)
                .is_none()
        );
        assert!(parse_line("garbage", 2026).is_none());
    }

    #[test]
    fn sudo_and_su_lines() {
        let e = parse_line(
            "Nov 23 10:00:04 web-1 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id",
            2026,
        )
        .unwrap();
        assert_eq!(
            (e["event"]["action"].as_str(), e["event"]["outcome"].as_str(), e["user"]["name"].as_str()),
            (Some("sudo"), Some("success"), Some("alice"))
        );
        assert_eq!(e["event"]["reason"], "sudo to root");
        let e = parse_line(
            "Nov 23 10:00:05 web-1 sudo:      bob : 3 incorrect password attempts ; TTY=pts/1 ; PWD=/tmp ; USER=root ; COMMAND=/bin/sh",
            2026,
        )
        .unwrap();
        assert_eq!(
            (e["event"]["outcome"].as_str(), e["user"]["name"].as_str()),
            (Some("failure"), Some("bob"))
        );
        // sudo's PAM failure line is PAM's.
        let e = parse_line(
            "Nov 23 10:00:06 web-1 sudo: pam_unix(sudo:auth): authentication failure; logname=bob uid=1001 euid=0 tty=/dev/pts/1 ruser=bob rhost=  user=bob",
            2026,
        )
        .unwrap();
        assert_eq!(
            (e["event"]["outcome"].as_str(), e["user"]["name"].as_str()),
            (Some("failure"), Some("bob"))
        );
        let e =
            parse_line("Nov 23 10:00:07 web-1 su[901]: FAILED SU (to root) carol on pts/2", 2026).unwrap();
        assert_eq!(
            (e["event"]["outcome"].as_str(), e["user"]["name"].as_str(), e["event"]["reason"].as_str()),
            (Some("failure"), Some("carol"), Some("su to root failed"))
        );
        let e = parse_line("Nov 23 10:00:08 web-1 su[902]: (to root) carol on pts/2", 2026).unwrap();
        assert_eq!(e["event"]["outcome"], "success");
        assert!(
            parse_line(
                "Nov 23 10:00:09 web-1 sudo: pam_unix(sudo:session): session closed for user root",
                2026
            )
            .is_none()
        );
    }

    #[test]
    fn journal_json_records() {
        let rec = json!({
            "__REALTIME_TIMESTAMP": "1763892001000000",
            "_HOSTNAME": "web-2",
            "SYSLOG_IDENTIFIER": "sshd",
            "_PID": "4242",
            "MESSAGE": "Failed password for invalid user oracle from 198.51.100.7 port 40022 ssh2",
        });
        let e = parse_line(&rec.to_string(), 1999).unwrap();
        assert_eq!(
            e["@timestamp"], "2025-11-23T10:00:01.000000Z",
            "the journal's own clock, not the year given"
        );
        assert_eq!(
            (e["host"]["name"].as_str(), e["user"]["name"].as_str(), e["source"]["ip"].as_str()),
            (Some("web-2"), Some("oracle"), Some("198.51.100.7"))
        );
        assert_eq!(
            (e["process"]["pid"].as_i64(), e["log"]["source"].as_str()),
            (Some(4242), Some("journald"))
        );
        // A message logged as bytes (not UTF-8 clean) and a sudo record.
        let bytes: Vec<u8> = b"Accepted publickey for deploy from 10.0.0.4 port 1 ssh2".to_vec();
        let rec = json!({"__REALTIME_TIMESTAMP": "1763892002000000", "_HOSTNAME": "web-2", "_COMM": "sshd", "MESSAGE": bytes});
        assert_eq!(parse_line(&rec.to_string(), 2026).unwrap()["event"]["outcome"], "success");
        let rec = json!({"__REALTIME_TIMESTAMP": "1763892003000000", "SYSLOG_IDENTIFIER": "sudo",
                         "MESSAGE": "alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/true"});
        assert_eq!(parse_line(&rec.to_string(), 2026).unwrap()["user"]["name"], "alice");
        // Not about authentication, and not a journal record at all.
        let rec = json!({"__REALTIME_TIMESTAMP": "1", "SYSLOG_IDENTIFIER": "systemd", "MESSAGE": "Started Session 5."});
        assert!(parse_line(&rec.to_string(), 2026).is_none());
        assert!(parse_line("{not json", 2026).is_none());
    }

    #[test]
    fn database_lines() {
        let e = parse_line(
            "2026-11-23 10:00:00.123 UTC [4242] FATAL:  password authentication failed for user \"app\"",
            2026,
        )
        .unwrap();
        assert_eq!(
            (e["event"]["action"].as_str(), e["user"]["name"].as_str(), e["@timestamp"].as_str()),
            (Some("db-login"), Some("app"), Some("2026-11-23T10:00:00Z"))
        );
        let e = parse_line(
            "2026-11-23T10:00:00.123456Z 12 [Note] Access denied for user 'root'@'10.0.0.5' (using password: YES)",
            2026,
        )
        .unwrap();
        assert_eq!(
            (e["user"]["name"].as_str(), e["source"]["ip"].as_str()),
            (Some("root"), Some("10.0.0.5"))
        );
        assert!(parse_line("2026-11-23 10:00:00 UTC [1] LOG:  database system is ready", 2026).is_none());
    }
}
