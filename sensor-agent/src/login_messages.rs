//! What a login daemon's message says about an authentication: sshd (its own lines and PAM's),
//! pam_unix for any service, klogind's Kerberos logins, login(1), display managers, and PostgreSQL
//! when it logs through syslog. Each answer is (outcome, reason, account, source).
//!
//! Some lines are summaries of an attempt already written, not attempts of their own (sshd's
//! `input_userauth_request: invalid user`, `Disconnecting: Too many authentication failures`, PAM's
//! `N more authentication failures`, a client's `Auth fail` on disconnect): their reasons are in
//! [`SUMMARY_REASONS`], and [`crate::attempts`] folds them into the attempt before them.

/// (outcome, reason, account, source).
pub type Auth<'a> = (&'static str, String, Option<&'a str>, Option<&'a str>);

/// Reasons of lines that summarise an attempt already written (on the same process) rather than
/// start one.
pub const SUMMARY_REASONS: [&str; 4] = [
    "invalid user (request)",
    "too many authentication failures",
    "more authentication failures",
    "client gave up",
];

/// Whether a reason is one of [`SUMMARY_REASONS`].
pub fn is_summary(reason: &str) -> bool {
    SUMMARY_REASONS.iter().any(|r| reason.starts_with(r))
}

/// The first word after `marker` in `msg`, without quotes.
fn word_after<'a>(msg: &'a str, marker: &str) -> Option<&'a str> {
    msg.split_once(marker)
        .and_then(|(_, r)| r.split_whitespace().next())
        .map(|w| w.trim_matches(|c| c == '"' || c == '\'' || c == ','))
        .filter(|w| !w.is_empty())
}

/// A `key=value` field of a PAM line (`rhost=`, `user=`), when not empty.
fn pam_field<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    msg.split_whitespace().find_map(|w| w.strip_prefix(key)).filter(|v| !v.is_empty())
}

/// sshd, pam_unix and other login daemons' authentication messages.
pub fn login_message(msg: &str) -> Option<Auth<'_>> {
    let msg = msg.trim_start();
    let msg = msg.strip_prefix("error: ").unwrap_or(msg);
    sshd_own(msg).or_else(|| pam(msg)).or_else(|| other_daemons(msg))
}

/// sshd's own lines.
fn sshd_own(msg: &str) -> Option<Auth<'_>> {
    if msg.starts_with("Failed ") || msg.starts_with("Accepted ") {
        // Failed password for [invalid user] NAME from IP port N ssh2
        let ok = msg.starts_with("Accepted ");
        let method = msg.split_whitespace().nth(1).unwrap_or("password");
        let user = word_after(msg, " for invalid user ").or_else(|| word_after(msg, " for "));
        let reason = if msg.contains(" invalid user ") {
            "invalid user".to_owned()
        } else if ok {
            format!("accepted {method}")
        } else {
            format!("failed {method}")
        };
        return Some((if ok { "success" } else { "failure" }, reason, user, word_after(msg, " from ")));
    }
    if let Some(rest) = msg.strip_prefix("Invalid user ").or_else(|| msg.strip_prefix("Illegal user ")) {
        let user = rest.split_whitespace().next().filter(|u| *u != "from");
        return Some(("failure", "invalid user".into(), user, word_after(msg, " from ")));
    }
    if let Some(rest) = msg.strip_prefix("input_userauth_request: invalid user ") {
        return Some(("failure", "invalid user (request)".into(), rest.split_whitespace().next(), None));
    }
    if msg.contains("Too many authentication failures")
        || msg.starts_with("maximum authentication attempts exceeded")
    {
        // `Disconnecting: Too many authentication failures for root [preauth]`,
        // `Disconnecting authenticating user root 203.0.113.9 port 4: Too many authentication failures`,
        // `maximum authentication attempts exceeded for invalid user x from 203.0.113.9 port 4 ssh2`.
        let user = word_after(msg, " for invalid user ")
            .or_else(|| word_after(msg, " failures for "))
            .or_else(|| word_after(msg, " exceeded for "))
            .or_else(|| word_after(msg, "authenticating user "));
        return Some(("failure", "too many authentication failures".into(), user, word_after(msg, " from ")));
    }
    if msg.starts_with("Received disconnect from ") && msg.contains("Auth fail") {
        let from = word_after(msg, "Received disconnect from ").map(|w| w.trim_end_matches(':'));
        return Some(("failure", "client gave up".into(), None, from));
    }
    if let Some(rest) = msg.strip_prefix("User ")
        && rest.contains(" not allowed because ")
    {
        return Some((
            "failure",
            "user not allowed".into(),
            rest.split_whitespace().next(),
            word_after(msg, " from "),
        ));
    }
    if let Some(rest) = msg.strip_prefix("ROOT LOGIN REFUSED FROM ") {
        return Some(("failure", "root login refused".into(), Some("root"), rest.split_whitespace().next()));
    }
    None
}

/// pam_unix (and PAM as sshd reports it) for any service.
fn pam(msg: &str) -> Option<Auth<'_>> {
    if let Some(rest) = msg.strip_prefix("PAM ")
        && rest.contains(" more authentication failure")
    {
        // `PAM 5 more authentication failures; logname= ... rhost=HOST  user=root`
        let reason = "more authentication failures".into();
        return Some(("failure", reason, pam_field(msg, "user="), pam_field(msg, "rhost=")));
    }
    if msg.contains("authentication failure;") {
        // pam_unix: ... rhost=HOST  user=NAME
        return Some((
            "failure",
            "authentication failure".into(),
            pam_field(msg, "user="),
            pam_field(msg, "rhost="),
        ));
    }
    if let Some(rest) = msg.strip_prefix("PAM: Authentication failure for ") {
        // sshd with UsePAM: `PAM: Authentication failure for [illegal user] NAME from HOST`
        let user = word_after(msg, " for illegal user ").or_else(|| rest.split_whitespace().next());
        return Some(("failure", "authentication failure".into(), user, word_after(msg, " from ")));
    }
    // `check pass; user unknown`, alone (older logs) or after `pam_unix(sshd:auth): `.
    if msg.contains("check pass; user unknown") {
        return Some(("failure", "unknown user".into(), None, None));
    }
    None
}

/// klogind (Kerberos rlogin), login(1), display managers, PostgreSQL through syslog.
fn other_daemons(msg: &str) -> Option<Auth<'_>> {
    if let Some(rest) = msg.strip_prefix("Authentication failed from ") {
        // klogind: `Authentication failed from HOST (IP): reason`
        let from = rest
            .split_once(" (")
            .and_then(|(_, r)| r.split_once(')'))
            .map(|(ip, _)| ip)
            .or_else(|| rest.split([' ', ':']).next());
        return Some(("failure", "authentication failed".into(), None, from));
    }
    if msg.starts_with("Kerberos authentication failed") {
        return Some(("failure", "kerberos authentication failed".into(), None, None));
    }
    if msg.starts_with("Couldn't authenticate user") {
        return Some(("failure", "could not authenticate".into(), None, None));
    }
    if let Some(rest) = msg.strip_prefix("FAILED LOGIN ") {
        // login(1): `FAILED LOGIN 1 FROM tty1 FOR root, Authentication failure`,
        // `FAILED LOGIN (1) on '/dev/tty1' FOR 'root', Authentication failure`
        let user = word_after(rest, " FOR ");
        return Some(("failure", "failed login".into(), user, None));
    }
    if msg.contains("password authentication failed for user") {
        return Some((
            "failure",
            "password authentication failed".into(),
            word_after(msg, " for user "),
            None,
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_of_every_kind_name_their_account_and_source() {
        let cases: [(&str, &str, Option<&str>, Option<&str>); 14] = [
            (
                "Failed none for invalid user 0 from 203.0.113.9 port 5 ssh2",
                "invalid user",
                Some("0"),
                Some("203.0.113.9"),
            ),
            ("Illegal user test from 203.0.113.9", "invalid user", Some("test"), Some("203.0.113.9")),
            (
                "input_userauth_request: invalid user webmaster [preauth]",
                "invalid user (request)",
                Some("webmaster"),
                None,
            ),
            (
                "Disconnecting: Too many authentication failures for root [preauth]",
                "too many authentication failures",
                Some("root"),
                None,
            ),
            (
                "error: maximum authentication attempts exceeded for invalid user x from 203.0.113.9 port 4 ssh2 [preauth]",
                "too many authentication failures",
                Some("x"),
                Some("203.0.113.9"),
            ),
            (
                "PAM 5 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.9  user=root",
                "more authentication failures",
                Some("root"),
                Some("203.0.113.9"),
            ),
            (
                "error: Received disconnect from 203.0.113.9: 3: com.jcraft.jsch.JSchException: Auth fail [preauth]",
                "client gave up",
                None,
                Some("203.0.113.9"),
            ),
            (
                "User bob from 203.0.113.9 not allowed because not listed in AllowUsers",
                "user not allowed",
                Some("bob"),
                Some("203.0.113.9"),
            ),
            ("ROOT LOGIN REFUSED FROM 203.0.113.9", "root login refused", Some("root"), Some("203.0.113.9")),
            (
                "error: PAM: Authentication failure for illegal user y from 203.0.113.9",
                "authentication failure",
                Some("y"),
                Some("203.0.113.9"),
            ),
            (
                "Authentication failed from 163.27.187.39 (163.27.187.39): Software caused connection abort",
                "authentication failed",
                None,
                Some("163.27.187.39"),
            ),
            ("Kerberos authentication failed", "kerberos authentication failed", None, None),
            ("FAILED LOGIN 1 FROM tty1 FOR root, Authentication failure", "failed login", Some("root"), None),
            (
                "[3-1] FATAL:  password authentication failed for user \"app\"",
                "password authentication failed",
                Some("app"),
                None,
            ),
        ];
        for (msg, reason, user, from) in cases {
            let (outcome, r, u, f) = login_message(msg).unwrap_or_else(|| panic!("not read: {msg}"));
            assert_eq!((outcome, r.as_str(), u, f), ("failure", reason, user, from), "{msg}");
        }
        assert!(is_summary("too many authentication failures") && !is_summary("invalid user"));
    }

    #[test]
    fn other_lines_are_not_authentications() {
        for msg in [
            "Connection closed by 203.0.113.9 [preauth]",
            "Received disconnect from 203.0.113.9: 11: Bye Bye [preauth]",
            "User unknown timed out after 900 seconds at Sat Jun 25 04:43:39 2005",
            "reverse mapping checking getaddrinfo for x [203.0.113.9] failed - POSSIBLE BREAK-IN ATTEMPT!",
            "pam_unix(sshd:session): session opened for user root by (uid=0)",
            "PAM service(sshd) ignoring max retries; 6 > 3",
        ] {
            assert_eq!(login_message(msg), None, "{msg}");
        }
    }
}
