//! Authentication logs as Cordon events: Linux syslog (`/var/log/auth.log`, `secure`: sshd and
//! pam_unix), PostgreSQL and MySQL server logs. Each authentication line becomes an ECS event with
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
}

/// Reads every line of `text` (a syslog, PostgreSQL or MySQL log).
pub fn parse(text: &str, year: i32) -> Parsed {
    let mut out = Parsed::default();
    for line in text.lines() {
        match parse_line(line, year) {
            Some(e) => out.events.push(e),
            None => out.skipped += 1,
        }
    }
    out
}

/// One line as an authentication event, when it is one.
pub fn parse_line(line: &str, year: i32) -> Option<Value> {
    let line = line.trim_end_matches(['\r', '\n']);
    syslog(line, year).or_else(|| postgres(line)).or_else(|| mysql(line))
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
    let daemon = program.split('(').next().unwrap_or(program);
    let (outcome, reason, user, from) = sshd_message(msg)?;
    let mut e = json!({
        "@timestamp": time,
        "event": {"category": "authentication", "action": format!("{daemon}-login"), "outcome": outcome,
                  "reason": reason, "dataset": "linux.auth", "original": line},
        "host": {"name": host},
        "process": {"name": daemon},
        "log": {"syslog": {"appname": program}},
    });
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
    if msg.starts_with("check pass; user unknown") {
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
