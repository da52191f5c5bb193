//! One SSH login attempt, many lines. A failed password writes two to four lines on one sshd process
//! (`Invalid user NAME from IP`, pam_unix's `check pass; user unknown` and `authentication failure;
//! ... rhost=IP`, then sshd's own `Failed password for ... from IP`); brute-force thresholds and the
//! login baselines count attempts, so only an attempt's first line stays a failure. The other lines
//! keep their words, with `event.outcome: unknown` and `(same attempt)` added to the reason.
//!
//! An attempt is the lines of one login process (host and pid: sshd's, klogind's, any daemon that
//! writes its pid) up to sshd's `Failed <method>` line; where the log has no such lines (older
//! PAM-only logs), up to pam_unix's `authentication failure`. A line more than [`WINDOW_MICROS`]
//! after its attempt began starts a new one. A line that summarises what was already written
//! (`Disconnecting: Too many authentication failures`, PAM's `N more authentication failures`:
//! [`crate::login_messages::SUMMARY_REASONS`]) joins the process's last attempt while the
//! connection may still be open ([`GRACE_MICROS`], sshd's default login grace time), and starts one
//! only where nothing came before it.

use serde_json::{Value, json};
use std::collections::HashMap;

/// Lines of one attempt come within this of its first line (microseconds).
pub const WINDOW_MICROS: i64 = 10_000_000;
/// A summary line joins an attempt of its process this recent (sshd's `LoginGraceTime`, 120 s).
pub const GRACE_MICROS: i64 = 120_000_000;

/// What closed an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closed {
    Open,
    /// pam_unix's `authentication failure` (the last line where sshd writes no `Failed` lines).
    Pam,
    /// sshd's `Failed <method>`.
    Failed,
}

#[derive(Clone, Copy, Debug)]
struct Attempt {
    start: i64,
    last: i64,
    closed: Closed,
}

/// The attempts of one log, read in order.
#[derive(Debug, Default)]
pub struct Attempts {
    open: HashMap<(String, i64), Attempt>,
    /// This log writes sshd's `Failed <method>` lines.
    failed_lines: bool,
    /// Attempts counted.
    pub attempts: u64,
    /// Lines folded into an attempt before them.
    pub folded: u64,
}

/// The kind of an sshd failure line, from its message: (it ends an attempt, it is PAM's failure).
/// `Failed none` is a client asking which methods it may use, not a guess: it ends nothing.
fn kind(msg: &str) -> (bool, bool) {
    (msg.starts_with("Failed ") && !msg.starts_with("Failed none "), msg.contains("authentication failure;"))
}

impl Attempts {
    /// Marks `e` (an event of the log reader, in file order) as its attempt's first line or as one
    /// that follows it. Events other than sshd's failures pass unchanged.
    pub fn mark(&mut self, e: &mut Value) {
        if e["event"]["outcome"] != "failure" {
            return;
        }
        let (Some(pid), Some(t)) = (
            e["process"]["pid"].as_i64(),
            e["@timestamp"].as_str().and_then(schemas::time::parse_rfc3339_micros),
        ) else {
            // A failure no process of its own ties to others is an attempt of its own.
            self.attempts += 1;
            return;
        };
        let original = e["event"]["original"].as_str().unwrap_or_default();
        let msg = original.split_once("]: ").map_or(original, |(_, m)| m);
        let msg = crate::logs::repeated_message(msg);
        let (failed, pam_end) = kind(msg);
        self.failed_lines |= failed;
        let summary = crate::login_messages::is_summary(e["event"]["reason"].as_str().unwrap_or_default());
        let key = (e["host"]["name"].as_str().unwrap_or_default().to_owned(), pid);
        let joins = self.open.get(&key).is_some_and(|a| {
            let fresh = t - a.start <= WINDOW_MICROS;
            if summary {
                return t - a.last <= GRACE_MICROS;
            }
            match a.closed {
                // Where sshd writes `Failed` lines, an attempt stays open until its own, for as
                // long as the connection may (pam_faildelay and slow typists hold it back).
                Closed::Open if self.failed_lines => t - a.start <= GRACE_MICROS,
                Closed::Open => fresh,
                // sshd's `Failed` line right after pam_unix's: the same attempt, in a log whose first
                // `Failed` line had not been seen yet.
                // (pam_faildelay holds sshd's line back: two seconds by default, twelve seen in
                // real logs; it comes within the connection's grace time.)
                Closed::Pam => failed && t - a.last <= GRACE_MICROS,
                Closed::Failed => false,
            }
        });
        if joins {
            self.folded += 1;
            let reason = e["event"]["reason"].as_str().unwrap_or_default().to_owned();
            e["event"]["outcome"] = json!("unknown");
            e["event"]["reason"] = json!(format!("{reason} (same attempt)"));
        } else {
            self.attempts += 1;
            self.open.insert(key.clone(), Attempt { start: t, last: t, closed: Closed::Open });
        }
        if let Some(a) = self.open.get_mut(&key) {
            a.last = t;
            if failed {
                a.closed = Closed::Failed;
            } else if pam_end && !self.failed_lines {
                a.closed = Closed::Pam;
            }
        }
        // Bounded: attempts older than the window are done.
        if self.open.len() > 10_000 {
            self.open.retain(|_, a| t - a.last <= GRACE_MICROS);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::logs::parse;

    /// The reasons of the failures the reader ships, and its (attempts, folded lines).
    fn failures(text: &str) -> (Vec<String>, (u64, u64)) {
        let parsed = parse(text, 2026);
        let out = parsed
            .events
            .iter()
            .filter(|e| e["event"]["outcome"] == "failure")
            .map(|e| e["event"]["reason"].as_str().unwrap_or_default().to_owned())
            .collect();
        (out, (parsed.attempts, parsed.folded))
    }

    #[test]
    fn a_modern_sshd_attempt_of_four_lines_counts_once() {
        let log = "\
Nov 23 10:00:00 web-1 sshd[811]: Invalid user admin from 203.0.113.9 port 52211
Nov 23 10:00:01 web-1 sshd[811]: pam_unix(sshd:auth): check pass; user unknown
Nov 23 10:00:01 web-1 sshd[811]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.9
Nov 23 10:00:03 web-1 sshd[811]: Failed password for invalid user admin from 203.0.113.9 port 52211 ssh2
Nov 23 10:00:06 web-1 sshd[811]: pam_unix(sshd:auth): check pass; user unknown
Nov 23 10:00:08 web-1 sshd[811]: Failed password for invalid user admin from 203.0.113.9 port 52211 ssh2
Nov 23 10:00:08 web-1 sshd[812]: Failed password for root from 203.0.113.9 port 52212 ssh2
";
        let (f, a) = failures(log);
        assert_eq!(f, ["invalid user", "unknown user", "failed password"], "three attempts: {f:?}");
        assert_eq!(a, (3, 4));
    }

    #[test]
    fn a_pam_only_log_counts_its_check_and_failure_pair_once() {
        // The layout of older logs (loghub's Linux): no `Failed` lines, one process per attempt.
        let log = "\
Jun 15 12:12:34 combo sshd(pam_unix)[23397]: check pass; user unknown
Jun 15 12:12:34 combo sshd(pam_unix)[23395]: check pass; user unknown
Jun 15 12:12:34 combo sshd(pam_unix)[23397]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4
Jun 15 12:12:34 combo sshd(pam_unix)[23395]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4
Jun 15 12:12:35 combo sshd(pam_unix)[23395]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4  user=root
Jun 15 12:12:50 combo sshd(pam_unix)[23397]: check pass; user unknown
";
        let (f, a) = failures(log);
        assert_eq!(f.len(), 4, "two pairs, a second attempt on 23395, a late line on 23397: {f:?}");
        assert_eq!(a, (4, 2));
    }

    #[test]
    fn other_lines_pass_unchanged() {
        let log = "\
Nov 23 10:00:02 web-1 sshd[811]: Accepted publickey for deploy from 10.0.0.4 port 1 ssh2
Nov 23 10:00:06 web-1 sudo: pam_unix(sudo:auth): authentication failure; logname=bob uid=1001 euid=0 tty=/dev/pts/1 ruser=bob rhost=  user=bob
Nov 23 10:00:06 web-1 sudo: pam_unix(sudo:auth): authentication failure; logname=bob uid=1001 euid=0 tty=/dev/pts/1 ruser=bob rhost=  user=bob
";
        let (f, a) = failures(log);
        assert_eq!(f.len(), 2, "sudo has no pid here: each line stands alone");
        assert_eq!(a, (2, 0));
    }
}
