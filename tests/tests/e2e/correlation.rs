//! Correlation rules at ingest: the scenario's intranet sweep becomes one scanning alert on the
//! workstation with every connection as evidence, and a sweep cut in two by a server crash (SIGKILL)
//! still adds up, because the correlation state is rebuilt from the lake.

use super::{Env, bin, scenario_count};
use serde_json::json;
use std::time::Duration;
use tests::{ServerOptions, agent, counts, eventually, get, post};

/// Alerts with technique `t`.
fn alerts_with(api: &str, tok: &str, t: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let (status, v) = get(&format!("{api}/api/v1/alerts?technique={t}"), Some(tok))?;
    anyhow::ensure!(status == 200, "alerts: {v}");
    Ok(v["alerts"].as_array().cloned().unwrap_or_default())
}

#[test]
fn the_intranet_sweep_is_one_scanning_alert_with_its_connections_as_evidence() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (n, server, tok) = (&env.nats, &env.server, env.token.as_str());
    let a = agent(&bin(), &n.url, &env.spool(), &["replay", "builtin:log4j-conti"])?;
    let acked = a["events_acked"].as_u64().unwrap();
    eventually(Duration::from_secs(60), || Ok((counts(&server.api, tok)?.0 == acked).then_some(())))?;
    // The oracle: internal connections from the workstation, from the scenario's text.
    let sweep = scenario_count(|e, a| {
        a == "win-dakeqi"
            && e["event"]["category"] == "network"
            && e["destination"]["ip"].as_str().is_some_and(|ip| ip.starts_with("10.20.2."))
    });
    assert!(sweep >= 20, "the scenario sweeps {sweep} addresses");
    let scans = eventually(Duration::from_secs(20), || {
        let a = alerts_with(&server.api, tok, "T1046")?;
        Ok(a.iter().any(|x| x["source"] == "correlation (Sigma)").then_some(a))
    })?;
    let corr: Vec<_> = scans.iter().filter(|x| x["source"] == "correlation (Sigma)").collect();
    assert_eq!(corr.len(), 1, "{corr:?}");
    let s = corr[0];
    assert_eq!(s["rule"]["title"], "Internal network scanning (one host reaches many internal hosts)");
    assert_eq!(
        (s["endpoint"]["name"].as_str(), s["object"].as_str()),
        (Some("WIN-DAKEQI"), Some("host.name=WIN-DAKEQI"))
    );
    assert_eq!((s["status"].as_str(), s["level"].as_u64()), (Some("alerted"), Some(4)));
    let why = &s["why"]["correlation"];
    assert_eq!((why["type"].as_str(), why["count"].as_u64()), (Some("value_count"), Some(20)), "{why}");
    // Evidence: the connections in the window (the 20 addresses, and the mail connection's
    // neighbours if they fall in it) - every one a stored event of the workstation.
    let evidence = s["evidence"].as_array().unwrap().len();
    assert!(evidence >= 20, "{s}");
    let (status, one) =
        get(&format!("{}/api/v1/alerts/{}", server.api, s["id"].as_str().unwrap()), Some(tok))?;
    assert_eq!(status, 200);
    let events = one["events"].as_array().unwrap();
    assert_eq!(events.len(), evidence, "every evidence id is a stored event");
    assert!(
        events.iter().all(|e| e["host"]["name"] == "WIN-DAKEQI" && e["event"]["category"] == "network"),
        "{one}"
    );

    // The lake's alerts table: the same alert in SQL, joined to its evidence events.
    let rows = eventually(Duration::from_secs(10), || {
        let rows = tests::sql(
            &server.api,
            tok,
            "SELECT alert_id, host_name, status, count, cardinality(evidence) FROM alerts \
             WHERE source = 'correlation (Sigma)' AND array_has(techniques, 'T1046')",
        )?;
        Ok((!rows.is_empty()).then_some(rows))
    })?;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][0], s["id"]);
    assert_eq!((rows[0][1].as_str(), rows[0][2].as_str()), (Some("WIN-DAKEQI"), Some("alerted")));
    assert_eq!(rows[0][4].as_u64(), Some(evidence as u64));
    let joined = tests::sql(
        &server.api,
        tok,
        &format!(
            "SELECT count(*) FROM events WHERE event_id IN \
             (SELECT unnest(evidence) FROM alerts WHERE alert_id = '{}')",
            s["id"].as_str().unwrap()
        ),
    )?;
    assert_eq!(joined[0][0].as_u64(), Some(evidence as u64), "{joined:?}");
    let (_, all) = get(&format!("{}/api/v1/alerts?limit=1000", server.api), Some(tok))?;
    let in_sql = tests::sql(&server.api, tok, "SELECT count(*) FROM alerts")?;
    assert_eq!(
        in_sql[0][0].as_u64(),
        all["alerts"].as_array().map(|a| a.len() as u64),
        "every alert is in the table"
    );

    // The coverage matrix lists the correlation under T1046.
    let (_, cov) = get(&format!("{}/api/v1/attack/coverage", server.api), Some(tok))?;
    let rules = cov["tactics"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["techniques"].as_array().unwrap().iter())
        .find(|t| t["id"] == "T1046")
        .map(|t| t["rules"].to_string())
        .unwrap_or_default();
    assert!(rules.contains("Internal network scanning"), "{rules}");
    Ok(())
}

#[test]
fn a_sweep_cut_in_two_by_a_crash_still_adds_up() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let tok = env.token.clone();
    let dir = env.dir.path().to_path_buf();
    let spool = env.spool();
    let part = |name: &str, from: u32, to: u32| -> anyhow::Result<String> {
        let mut lines = vec![
            json!({"scenario": name, "hosts": [{"agent": "pc-7", "name": "PC-7", "ip": ["10.9.0.7"], "os": "windows"}]})
                .to_string(),
        ];
        for i in from..to {
            lines.push(
                json!({"at_ms": (i - from) * 50, "agent": "pc-7", "event": {
                    "event": {"category": "network", "action": "connect", "outcome": "failure"},
                    "source": {"ip": "10.9.0.7", "port": 40000 + i},
                    "destination": {"ip": format!("10.9.1.{i}"), "port": 445},
                    "network": {"transport": "tcp", "direction": "outbound"}}})
                .to_string(),
            );
        }
        let path = dir.join(format!("{name}.ndjson"));
        std::fs::write(&path, lines.join("\n") + "\n")?;
        Ok(path.display().to_string())
    };
    let first = agent(&bin(), &env.nats.url, &spool, &["replay", &part("first", 1, 16)?])?;
    let first_acked = first["events_acked"].as_u64().unwrap();
    eventually(Duration::from_secs(30), || {
        Ok((counts(&env.server.api, &tok)?.0 == first_acked).then_some(()))
    })?;
    assert!(alerts_with(&env.server.api, &tok, "T1046")?.is_empty(), "15 addresses are not a scan yet");

    // SIGKILL, then a new server on the same data: the first 15 come back from the lake.
    env.server.kill();
    let server = tests::Server::start(&bin(), &env.data, &env.nats.url, &ServerOptions::default())?;
    let second = agent(&bin(), &env.nats.url, &spool, &["replay", &part("second", 16, 26)?])?;
    let total = first_acked + second["events_acked"].as_u64().unwrap();
    eventually(Duration::from_secs(30), || Ok((counts(&server.api, &tok)?.0 == total).then_some(())))?;
    let found = eventually(Duration::from_secs(20), || {
        let a = alerts_with(&server.api, &tok, "T1046")?;
        Ok((!a.is_empty()).then_some(a))
    })?;
    assert_eq!(found.len(), 1, "{found:?}");
    let evidence = found[0]["evidence"].as_array().unwrap();
    assert_eq!(
        evidence.len(),
        20,
        "fires at the 20th address, 15 of them from before the crash: {}",
        found[0]
    );
    assert_eq!(found[0]["object"], "host.name=PC-7");
    Ok(())
}

#[test]
fn an_auth_log_becomes_log_alerts_and_a_blocked_brute_force() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (n, server, tok) = (&env.nats, &env.server, env.token.as_str());
    // Twelve failures from one address within a minute, a success, and lines about other things.
    let now = schemas::time::now_micros() / 1_000_000;
    let stamp = |offset: i64| {
        let t = schemas::time::format_micros((now - 120 + offset) * 1_000_000);
        let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
            [t[5..7].parse::<usize>().unwrap() - 1];
        (t[..4].to_owned(), format!("{month} {:>2} {}", t[8..10].trim_start_matches('0'), &t[11..19]))
    };
    // Each attempt writes three lines on its sshd process, as OpenSSH with pam_unix does; thresholds
    // count attempts. Twelve attempts from one address (36 lines), and four from another (twelve
    // lines: not a brute force).
    let mut lines = Vec::new();
    let failures = 12;
    let attempt = |lines: &mut Vec<String>, at: i64, pid: i64, user: &str, from: &str| {
        let (t, t2) = (stamp(at).1, stamp(at + 2).1);
        lines.push(format!("{t} bastion sshd[{pid}]: Invalid user {user} from {from} port {}", 50000 + pid));
        lines.push(format!("{t} bastion sshd[{pid}]: pam_unix(sshd:auth): check pass; user unknown"));
        lines.push(format!(
            "{t2} bastion sshd[{pid}]: Failed password for invalid user {user} from {from} port {} ssh2",
            50000 + pid
        ));
    };
    for i in 0..failures {
        attempt(&mut lines, i * 3, 900 + i, &format!("u{i}"), "198.51.100.23");
    }
    for i in 0..4 {
        attempt(&mut lines, i * 3, 950 + i, &format!("v{i}"), "198.51.100.77");
    }
    let shipped = 3 * (failures + 4) as u64;
    lines.push(format!(
        "{} bastion sshd[990]: Accepted publickey for deploy from 10.0.0.4 port 22 ssh2",
        stamp(20).1
    ));
    lines.push(format!("{} bastion CRON[77]: (root) CMD (run-parts /etc/cron.hourly)", stamp(21).1));
    lines.push("not a syslog line".to_owned());
    let log = env.dir.path().join("auth.log");
    std::fs::write(&log, lines.join("\n") + "\n")?;
    let year = stamp(0).0;
    let a = agent(&bin(), &n.url, &env.spool(), &["logs", &log.display().to_string(), "--year", &year])?;
    assert_eq!(a["events_acked"].as_u64(), Some(shipped + 1), "every line is shipped: {a}");
    assert_eq!(a["lines_skipped"].as_u64(), Some(2), "{a}");
    eventually(Duration::from_secs(30), || Ok((counts(&server.api, tok)?.0 == shipped + 1).then_some(())))?;

    let all = eventually(Duration::from_secs(20), || {
        let (_, v) = get(&format!("{}/api/v1/alerts", server.api), Some(tok))?;
        let a = v["alerts"].as_array().cloned().unwrap_or_default();
        Ok((a.len() >= failures as usize + 4 + 2).then_some(a))
    })?;
    let by_rule = |t: &str| all.iter().filter(|a| a["rule"]["title"] == t).cloned().collect::<Vec<_>>();
    // Each attempt is a log alert with its first line (the object is the account, so one per account),
    // counted once however many lines it wrote.
    let ssh = by_rule("SSH login failure");
    assert_eq!(ssh.len(), failures as usize + 4, "{all:?}");
    let u0 = ssh.iter().find(|a| a["object"] == "u0").unwrap();
    assert_eq!(
        (u0["count"].as_u64(), u0["source"].as_str()),
        (Some(1), Some("log analysis (Sigma)")),
        "one attempt, three lines"
    );
    assert_eq!(
        (u0["log"]["rule_group"].as_str(), u0["log"]["log_type"].as_str(), u0["log"]["reason"].as_str()),
        (Some("authentication_failed"), Some("linux.auth"), Some("invalid user"))
    );
    assert!(u0["log"]["raw"].as_str().unwrap().contains("Invalid user u0 from 198.51.100.23"));
    // Ten of them within five minutes from one address: brute force, blocked by the default policy.
    // Four attempts from the other address wrote twelve lines: not a brute force.
    let brute = by_rule("Brute force (many failed logons from one source)");
    assert_eq!(brute.len(), 1, "{all:?}");
    assert_eq!(
        (brute[0]["status"].as_str(), brute[0]["object"].as_str()),
        (Some("blocked"), Some("host.name=bastion IpAddress=198.51.100.23"))
    );
    assert_eq!(brute[0]["evidence"].as_array().map(Vec::len), Some(10));
    assert_eq!(brute[0]["techniques"][0]["id"], "T1110.001");
    assert!(brute[0]["log"].is_null(), "a correlation is not a log alert");
    // Ten distinct accounts from that address: password spraying too.
    assert_eq!(by_rule("Password spraying (many accounts tried from one source)").len(), 1, "{all:?}");
    Ok(())
}

/// Zeek's logs from a network sensor, in both of Zeek's forms, and one tool's JSON lines through a
/// mapping: every record is stored as the sensor's event, a line that is not a record is counted,
/// and a sweep finds the addresses, domain and URL they carry.
#[test]
fn network_sensor_logs_are_stored_and_swept() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (n, server, tok) = (&env.nats, &env.server, env.token.as_str());
    let now = schemas::time::now_micros() as f64 / 1e6 - 60.0;
    let conn = format!(
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n\
         #fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\n\
         #types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\n\
         {now:.6}\tC1\t10.1.1.5\t49152\t203.0.113.77\t443\ttcp\tssl\n\
         {:.6}\tC2\t10.1.1.5\t49153\t10.1.1.9\t445\ttcp\t-\n\
         this line is not a record\n#close\tx\n",
        now + 1.0
    );
    let http = format!(
        "{{\"_path\":\"http\",\"ts\":{:.3},\"id.orig_h\":\"10.1.1.5\",\"id.orig_p\":49154,\"id.resp_h\":\"198.51.100.99\",\"id.resp_p\":80,\"method\":\"GET\",\"host\":\"stage2.badcdn.example\",\"uri\":\"/drop/loader.bin\",\"user_agent\":\"curl/8.0\",\"status_code\":200}}\n",
        now + 2.0
    );
    let notice = format!(
        "{{\"_path\":\"notice\",\"ts\":{:.3},\"note\":\"Scan::Port_Scan\",\"msg\":\"10.1.1.5 scanned 25 ports\",\"src\":\"10.1.1.5\",\"dst\":\"10.1.1.9\"}}\n",
        now + 3.0
    );
    let dir = env.dir.path();
    std::fs::write(dir.join("conn.log"), conn)?;
    std::fs::write(dir.join("http.log"), http)?;
    std::fs::write(dir.join("notice.log"), notice)?;
    let files = ["conn.log", "http.log", "notice.log"].map(|f| dir.join(f).display().to_string());
    let mut args = vec!["netlogs", "--host", "zeek-sensor-1"];
    args.extend(files.iter().map(String::as_str));
    let a = agent(&bin(), &n.url, &env.spool(), &args)?;
    assert_eq!(a["events_acked"].as_u64(), Some(4), "two connections, a request, a notice: {a}");
    assert_eq!(a["lines_skipped"].as_u64(), Some(1), "{a}");
    // Another tool's alerts through a mapping file.
    let mapping = dir.join("ids.json");
    std::fs::write(
        &mapping,
        r#"{"time": {"field": "timestamp", "format": "epoch_s"}, "fields": {"source.ip": "src", "destination.ip": "dest"},
            "set": {"event.category": "intrusion_detection", "event.action": "alert", "event.dataset": "ids.alerts"}}"#,
    )?;
    std::fs::write(
        dir.join("ids.ndjson"),
        format!("{{\"timestamp\": {now:.0}, \"src\": \"192.0.2.44\", \"dest\": \"10.1.1.9\"}}\n"),
    )?;
    let ids = dir.join("ids.ndjson").display().to_string();
    let b = agent(
        &bin(),
        &n.url,
        &env.spool(),
        &["netlogs", "--host", "zeek-sensor-1", "--mapping", &mapping.display().to_string(), &ids],
    )?;
    assert_eq!(b["events_acked"].as_u64(), Some(1), "{b}");
    eventually(Duration::from_secs(30), || Ok((counts(&server.api, tok)?.0 == 5).then_some(())))?;
    let body = json!({"iocs": ["203.0.113.77", "stage2.badcdn[.]example", "hxxp://stage2.badcdn.example/drop/loader.bin", "192.0.2.44", "no-such.example"]});
    let sweep = eventually(Duration::from_secs(20), || {
        let (status, v) = post(&format!("{}/api/v1/iocs/sweep", server.api), Some(tok), &body)?;
        assert_eq!(status, 200, "{v}");
        Ok((v["matched"] == 4).then_some(v))
    })?;
    let r = sweep["results"].as_array().unwrap();
    for found in &r[..4] {
        assert_eq!(found["hosts"][0]["host"], "zeek-sensor-1", "{found}");
    }
    assert_eq!((r[1]["type"].as_str(), r[2]["type"].as_str()), (Some("domain"), Some("url")));
    assert_eq!(r[4]["total"], 0);
    Ok(())
}
