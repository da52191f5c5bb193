//! The authentication-log reader on the layouts and messages it reads.
use super::*;

#[test]
fn sshd_and_pam_lines() {
    let e = parse_line(
        "Jun 15 02:04:59 combo sshd(pam_unix)[20882]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=220-135-151-1.hinet-ip.hinet.net  user=root",
        2005,
    )
    .unwrap();
    assert_eq!(e["@timestamp"], "2005-06-15T02:04:59Z");
    assert_eq!((e["event"]["outcome"].as_str(), e["user"]["name"].as_str()), (Some("failure"), Some("root")));
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
        parse_line("Nov 23 10:00:03 web-1 CRON[12]: (root) CMD (run-parts /etc/cron.hourly)", 2026).is_none()
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
    assert_eq!((e["event"]["outcome"].as_str(), e["user"]["name"].as_str()), (Some("failure"), Some("bob")));
    // sudo's PAM failure line is PAM's.
    let e = parse_line(
        "Nov 23 10:00:06 web-1 sudo: pam_unix(sudo:auth): authentication failure; logname=bob uid=1001 euid=0 tty=/dev/pts/1 ruser=bob rhost=  user=bob",
        2026,
    )
    .unwrap();
    assert_eq!((e["event"]["outcome"].as_str(), e["user"]["name"].as_str()), (Some("failure"), Some("bob")));
    let e = parse_line("Nov 23 10:00:07 web-1 su[901]: FAILED SU (to root) carol on pts/2", 2026).unwrap();
    assert_eq!(
        (e["event"]["outcome"].as_str(), e["user"]["name"].as_str(), e["event"]["reason"].as_str()),
        (Some("failure"), Some("carol"), Some("su to root failed"))
    );
    let e = parse_line("Nov 23 10:00:08 web-1 su[902]: (to root) carol on pts/2", 2026).unwrap();
    assert_eq!(e["event"]["outcome"], "success");
    assert!(
        parse_line("Nov 23 10:00:09 web-1 sudo: pam_unix(sudo:session): session closed for user root", 2026)
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
    assert_eq!(e["@timestamp"], "2025-11-23T10:00:01.000000Z", "the journal's own clock, not the year given");
    assert_eq!(
        (e["host"]["name"].as_str(), e["user"]["name"].as_str(), e["source"]["ip"].as_str()),
        (Some("web-2"), Some("oracle"), Some("198.51.100.7"))
    );
    assert_eq!((e["process"]["pid"].as_i64(), e["log"]["source"].as_str()), (Some(4242), Some("journald")));
    // A message logged as bytes (not UTF-8 clean) and a sudo record.
    let bytes: Vec<u8> = b"Accepted publickey for deploy from 10.0.0.4 port 1 ssh2".to_vec();
    let rec = json!({"__REALTIME_TIMESTAMP": "1763892002000000", "_HOSTNAME": "web-2", "_COMM": "sshd", "MESSAGE": bytes});
    assert_eq!(parse_line(&rec.to_string(), 2026).unwrap()["event"]["outcome"], "success");
    let rec = json!({"__REALTIME_TIMESTAMP": "1763892003000000", "SYSLOG_IDENTIFIER": "sudo",
                     "MESSAGE": "alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/true"});
    assert_eq!(parse_line(&rec.to_string(), 2026).unwrap()["user"]["name"], "alice");
    // Not about authentication, and not a journal record at all.
    let rec =
        json!({"__REALTIME_TIMESTAMP": "1", "SYSLOG_IDENTIFIER": "systemd", "MESSAGE": "Started Session 5."});
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
    assert_eq!((e["user"]["name"].as_str(), e["source"]["ip"].as_str()), (Some("root"), Some("10.0.0.5")));
    assert!(parse_line("2026-11-23 10:00:00 UTC [1] LOG:  database system is ready", 2026).is_none());
}

#[test]
fn a_repeated_message_is_as_many_attempts_and_its_summaries_fold_into_them() {
    // One connection of a modern sshd guessing root's password six times (five of them in syslog's
    // `message repeated` line), then its summaries.
    let log = "\
2024-01-08T07:13:31.000000+00:00 lab sshd[24227]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.9  user=root
2024-01-08T07:13:43.000000+00:00 lab sshd[24227]: Failed password for root from 203.0.113.9 port 42393 ssh2
2024-01-08T07:13:56.000000+00:00 lab sshd[24227]: message repeated 5 times: [ Failed password for root from 203.0.113.9 port 42393 ssh2]
2024-01-08T07:13:56.000000+00:00 lab sshd[24227]: Disconnecting: Too many authentication failures for root [preauth]
2024-01-08T07:13:56.000000+00:00 lab sshd[24227]: PAM 5 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.9  user=root
2024-01-08T07:13:56.000000+00:00 lab sshd[24227]: PAM service(sshd) ignoring max retries; 6 > 3
";
    let p = parse(log, 1999);
    assert_eq!(p.events.len(), 1 + 1 + 5 + 1 + 1, "the repeated line is five events");
    assert_eq!(p.skipped, 1);
    assert_eq!((p.attempts, p.folded), (6, 3), "six guesses; the pam line and the two summaries fold");
    let failures = p.events.iter().filter(|e| e["event"]["outcome"] == "failure").count();
    assert_eq!(failures, 6);
    assert!(p.events.iter().all(|e| e["@timestamp"].as_str().unwrap().starts_with("2024-01-08T07:13")));
}

#[test]
fn a_bsd_log_crossing_new_year_moves_to_the_next_year() {
    let log = "\
Dec 31 23:59:58 web-1 sshd[1]: Failed password for root from 203.0.113.9 port 1 ssh2
Jan  1 00:00:03 web-1 sshd[2]: Failed password for root from 203.0.113.9 port 2 ssh2
";
    let p = parse(log, 2025);
    let times: Vec<&str> = p.events.iter().map(|e| e["@timestamp"].as_str().unwrap()).collect();
    assert_eq!(times, ["2025-12-31T23:59:58Z", "2026-01-01T00:00:03Z"]);
}

#[test]
fn rfc5424_and_prefixed_lines_are_read_like_any_syslog() {
    let e = parse_line(
        "<38>1 2024-01-08T10:00:00.5Z web-1 sshd 811 - - Invalid user oracle from 198.51.100.7 port 4",
        2000,
    )
    .unwrap();
    assert_eq!(
        (e["@timestamp"].as_str(), e["host"]["name"].as_str(), e["user"]["name"].as_str()),
        (Some("2024-01-08T10:00:00.500000Z"), Some("web-1"), Some("oracle"))
    );
    let e = parse_line(
        "- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 klogind[19288]: Authentication failed from 163.27.187.39 (163.27.187.39): Permission denied in replay cache code",
        2005,
    )
    .unwrap();
    assert_eq!(
        (e["source"]["ip"].as_str(), e["process"]["pid"].as_i64()),
        (Some("163.27.187.39"), Some(19288))
    );
}

#[test]
fn a_none_probe_before_the_password_is_the_same_attempt() {
    let log = "\
Dec 10 08:24:40 lab sshd[24363]: Invalid user 0 from 203.0.113.9
Dec 10 08:24:40 lab sshd[24363]: input_userauth_request: invalid user 0 [preauth]
Dec 10 08:24:40 lab sshd[24363]: Failed none for invalid user 0 from 203.0.113.9 port 49811 ssh2
Dec 10 08:24:43 lab sshd[24363]: pam_unix(sshd:auth): check pass; user unknown
Dec 10 08:24:43 lab sshd[24363]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.9
Dec 10 08:24:45 lab sshd[24363]: Failed password for invalid user 0 from 203.0.113.9 port 49811 ssh2
";
    let p = parse(log, 2024);
    assert_eq!((p.attempts, p.folded), (1, 5));
}

#[test]
fn netlogon_refusals_are_failures_of_the_computer_account() {
    let log = "\u{feff}09/14 12:33:00 [MISC] [3448] DbFlag is set to 2080ffff
09/14 12:33:07 [SESSION] [3352] Domain01: NetrServerAuthenticate entered: DC01 (172.16.66.37) on account DC01$ (Negot: 212fffff)
09/14 12:33:07 [CRITICAL] [3352] Domain01: NetrServerAuthenticate: Bad password 0 for DC01 on account DC01$
09/14 12:33:07 [CRITICAL] [3352] Domain01: NetrServerAuthenticate: Failed to authenticate DC01 on account DC01$
";
    let p = parse(log, 2020);
    assert_eq!((p.events.len(), p.skipped, p.attempts), (2, 2, 2));
    let e = &p.events[0];
    assert_eq!(
        (e["@timestamp"].as_str(), e["user"]["name"].as_str(), e["source"]["domain"].as_str()),
        (Some("2020-09-14T12:33:07Z"), Some("DC01$"), Some("DC01"))
    );
    assert_eq!(
        (e["event"]["action"].as_str(), e["event"]["outcome"].as_str()),
        (Some("netlogon-authenticate"), Some("failure"))
    );
    // A multi-byte character where the prefix search stops does not break the reader.
    let cut = format!("{}é Jan 8 10:00:00 h sshd[1]: Failed password for x from 1.2.3.4", "x".repeat(63));
    assert!(parse_line(&cut, 2024).is_none());
    let near = format!("{}é Jan 8 10:00:00 h sshd[1]: Failed password for x from 1.2.3.4", "x".repeat(40));
    assert!(parse_line(&near, 2024).is_some());
}
