//! ATT&CK tagging at ingest: the Log4j/Conti scenario goes through Cordon's rule pack and the default
//! policy; the lake, the index and the metrics carry the techniques and tiers the source describes.
//! Expected counts come from the scenario's text, not from the engine.

use super::{Env, bin, scenario_count};
use serde_json::json;
use std::time::Duration;
use tests::{ServerOptions, agent, counts, eventually, get, sql};

fn search_total(api: &str, tok: &str, q: &str) -> anyhow::Result<u64> {
    let (status, v) = get(&format!("{api}/api/v1/search?q={q}&limit=1"), Some(tok))?;
    anyhow::ensure!(status == 200, "search {q}: {v}");
    Ok(v["total"].as_u64().unwrap_or(0))
}

#[test]
fn scenario_events_carry_the_techniques_and_tiers_of_the_attack() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (n, server, tok) = (&env.nats, &env.server, env.token.as_str());
    let a = agent(&bin(), &n.url, &env.spool(), &["replay", "builtin:log4j-conti"])?;
    let acked = a["events_acked"].as_u64().unwrap();
    eventually(Duration::from_secs(60), || {
        let docs = get(&format!("{}/healthz", server.api), None)?.1["indexed_events"].as_u64().unwrap_or(0);
        Ok((counts(&server.api, tok)?.0 == acked && docs == acked).then_some(()))
    })?;

    let text = |e: &serde_json::Value| e.to_string();
    let renames = scenario_count(|e, _| e["event"]["action"] == "rename" && text(e).contains(".CONTI"));
    let shadow = scenario_count(|e, _| text(e).contains("delete shadows"));
    let scans = scenario_count(|e, a| {
        a == "win-dakeqi" && e["event"]["action"] == "http-request" && text(e).contains("${jndi:")
    });
    let exploit_access =
        scenario_count(|e, _| e["event"]["action"] == "http-access" && text(e).contains("${jndi:"));
    let java_children = scenario_count(|e, _| {
        e["event"]["action"] == "start"
            && e["process"]["parent"]["executable"]
                .as_str()
                .is_some_and(|p| p.to_lowercase().ends_with("\\java.exe"))
    });
    assert!(renames >= 10 && shadow == 1 && scans >= 2 && exploit_access >= 2 && java_children >= 1);

    // Fleet-wide search by technique (the index's exact `technique:` field).
    assert_eq!(search_total(&server.api, tok, "technique:T1486")?, renames as u64);
    assert_eq!(search_total(&server.api, tok, "technique:T1490")?, shadow as u64);
    assert_eq!(search_total(&server.api, tok, "technique:T1595.002")?, scans as u64);
    assert_eq!(search_total(&server.api, tok, "technique:T1190")?, (exploit_access + java_children) as u64);
    assert_eq!(search_total(&server.api, tok, "technique:T1105")?, 1);

    // The lake holds the tier and the rule; ransomware and shadow-copy deletion are blocked.
    let rows = sql(
        &server.api,
        tok,
        "SELECT policy_tier, count(*) FROM events WHERE policy_tier IS NOT NULL GROUP BY 1 ORDER BY 1",
    )?;
    let tier = |t: &str| rows.iter().find(|r| r[0] == t).and_then(|r| r[1].as_u64()).unwrap_or(0);
    assert_eq!(tier("block"), (renames + shadow) as u64, "{rows:?}");
    let tagged = scans + exploit_access + java_children + 1 /* T1105 */ + renames + shadow + 2 /* attachment */;
    assert_eq!(tier("block") + tier("alert") + tier("record"), tagged as u64, "{rows:?}");
    let rules = sql(
        &server.api,
        tok,
        "SELECT rule_name FROM events WHERE array_has(threat_technique_id, 'T1486') LIMIT 1",
    )?;
    assert_eq!(rules[0][0], "File renamed to a ransomware extension");

    // The coverage matrix: rules, tier and tagged events per technique, and the summary.
    let (status, cov) = get(&format!("{}/api/v1/attack/coverage", server.api), Some(tok))?;
    assert_eq!(status, 200, "{cov}");
    let technique = |tactic: &str, id: &str| -> serde_json::Value {
        let tac =
            cov["tactics"].as_array().unwrap().iter().find(|t| t["shortname"] == tactic).unwrap().clone();
        tac["techniques"].as_array().unwrap().iter().find(|t| t["id"] == id).unwrap().clone()
    };
    let t1486 = technique("impact", "T1486");
    assert_eq!(
        (t1486["tier"].as_str(), t1486["events"].as_u64()),
        (Some("block"), Some(renames as u64)),
        "{t1486}"
    );
    assert_eq!(t1486["rules"][0]["title"], "File renamed to a ransomware extension");
    assert_eq!(
        technique("initial-access", "T1190")["events"].as_u64(),
        Some((exploit_access + java_children) as u64)
    );
    let discovery = technique("discovery", "T1083");
    assert_eq!(
        (discovery["tier"].as_str(), discovery["rules"].as_array().map(Vec::len)),
        (Some("record"), Some(0))
    );
    let summary = &cov["summary"];
    assert!(
        summary["covered"].as_u64().unwrap() >= 9 && summary["techniques"].as_u64().unwrap() > 300,
        "{summary}"
    );
    assert!(summary["text"].as_str().unwrap().starts_with("covers "), "{summary}");
    let (status, _) = get(&format!("{}/api/v1/attack/coverage?platform=Amiga", server.api), Some(tok))?;
    assert_eq!(status, 400);

    // Uniform alerts: the four the source describes, each with its evidence.
    // They are recorded just after the events' commit: wait until the last of them is there.
    let list = eventually(Duration::from_secs(30), || {
        let (status, list) = get(&format!("{}/api/v1/alerts", server.api), Some(tok))?;
        anyhow::ensure!(status == 200, "{list}");
        let count = |t: &str| -> u64 {
            let alerts = list["alerts"].as_array().into_iter().flatten();
            let with_t = alerts.filter(|a| a["techniques"].to_string().contains(&format!("\"{t}\"")));
            with_t.map(|a| a["count"].as_u64().unwrap_or(0)).sum()
        };
        Ok((count("T1595.002") >= scans as u64 && count("T1486") >= renames as u64).then_some(list))
    })?;
    let alerts = list["alerts"].as_array().unwrap().clone();
    let with = |t: &str| -> Vec<serde_json::Value> {
        alerts
            .iter()
            .filter(|a| a["techniques"].as_array().unwrap().iter().any(|x| x["id"] == t))
            .cloned()
            .collect()
    };
    let scan = with("T1595.002");
    assert_eq!(scan.len(), 1, "one scanning alert: {scan:?}");
    assert_eq!(
        (scan[0]["endpoint"]["name"].as_str(), scan[0]["status"].as_str()),
        (Some("WIN-DAKEQI"), Some("alerted"))
    );
    assert_eq!(
        scan[0]["count"].as_u64(),
        Some(scans as u64),
        "deduplicated into one alert with every request"
    );
    assert!(scan[0]["techniques"].as_array().unwrap().iter().any(|x| x["id"] == "T1046"));
    let exploit = with("T1190");
    assert!(
        exploit
            .iter()
            .any(|a| a["endpoint"]["group"] == "Ops" && a["object"].as_str().unwrap().ends_with("java.exe")),
        "{exploit:?}"
    );
    let download = with("T1105");
    assert_eq!(download.len(), 1);
    assert_eq!(download[0]["file"]["path"], "C:\\Users\\Public\\Downloads\\update.exe");
    let ransom = with("T1486");
    assert_eq!(ransom.len(), 1, "{ransom:?}");
    let r = &ransom[0];
    assert_eq!(
        (r["status"].as_str(), r["level"].as_u64(), r["count"].as_u64()),
        (Some("blocked"), Some(5), Some(renames as u64))
    );
    assert_eq!(
        (r["handling"].as_str(), r["source"].as_str()),
        (Some("unhandled"), Some("behaviour detection (Sigma)"))
    );
    assert!(r["object"].as_str().unwrap().ends_with("update.exe"), "the acting process: {r}");
    assert_eq!(r["why"]["policy"]["tier"], "block");
    assert!(r["why"]["matched"].as_array().unwrap().iter().any(|m| m["field"] == "TargetFilename"), "{r}");
    let (_, blocked) = get(&format!("{}/api/v1/alerts?status=blocked", server.api), Some(tok))?;
    assert_eq!(
        blocked["alerts"].as_array().map(Vec::len),
        Some(2),
        "encryption and shadow-copy deletion: {blocked}"
    );
    let (_, by_t) = get(&format!("{}/api/v1/alerts?technique=T1059", server.api), Some(tok))?;
    assert!(by_t["alerts"].as_array().unwrap().iter().all(|a| a["techniques"].to_string().contains("T1059")));
    assert_eq!(get(&format!("{}/api/v1/alerts?level=9", server.api), Some(tok))?.0, 400);

    // One alert: its evidence rows from the lake; handling it records who and why.
    let id = r["id"].as_str().unwrap();
    let (status, one) = get(&format!("{}/api/v1/alerts/{id}", server.api), Some(tok))?;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["events"].as_array().map(Vec::len), Some(renames), "{one}");
    assert!(
        one["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["file"]["path"].as_str().unwrap().ends_with(".CONTI"))
    );
    let url = format!("{}/api/v1/alerts/{id}", server.api);
    let (status, _) = tests::patch(
        &url,
        Some(tok),
        &json!({"handling": "handled", "comment": "host isolated, restored from backup"}),
    )?;
    assert_eq!(status, 200);
    let (_, one) = get(&url, Some(tok))?;
    assert_eq!(one["alert"]["handling"], "handled");
    assert_eq!(
        (one["comments"][0]["author"].as_str(), one["comments"][0]["comment"].as_str()),
        (Some("e2e"), Some("host isolated, restored from backup"))
    );
    assert_eq!(tests::patch(&url, Some(tok), &json!({"handling": "ignored", "comment": ""}))?.0, 400);
    assert_eq!(
        tests::patch(
            &format!("{}/api/v1/alerts/nope", server.api),
            Some(tok),
            &json!({"handling": "handled", "comment": ""})
        )?
        .0,
        404
    );

    // The attack again: unhandled alerts take the new evidence; a handled one is not reopened.
    let again = agent(&bin(), &n.url, &env.spool(), &["replay", "builtin:log4j-conti"])?;
    let total = acked + again["events_acked"].as_u64().unwrap();
    eventually(Duration::from_secs(60), || Ok((counts(&server.api, tok)?.0 == total).then_some(())))?;
    // Alerts are recorded just after the events' commit: wait for the scan alert to take the
    // second run's evidence (whatever it holds then is checked below).
    let list = eventually(Duration::from_secs(30), || {
        let (_, list) = get(&format!("{}/api/v1/alerts?technique=T1595.002", server.api), Some(tok))?;
        let grown = list["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["count"].as_u64() > Some(scans as u64)));
        Ok(grown.then_some(list))
    })?;
    let scan_again = list["alerts"].as_array().unwrap();
    assert_eq!(scan_again.len(), 1, "{list}");
    assert_eq!(scan_again[0]["count"].as_u64(), Some(2 * scans as u64));
    assert_eq!(scan_again[0]["evidence"].as_array().map(Vec::len), Some(2 * scans));
    let list = eventually(Duration::from_secs(30), || {
        let (_, list) = get(&format!("{}/api/v1/alerts?technique=T1486", server.api), Some(tok))?;
        Ok((list["alerts"].as_array().map(Vec::len) >= Some(2)).then_some(list))
    })?;
    let mut states: Vec<(String, u64)> = list["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["handling"].as_str().unwrap().to_owned(), a["count"].as_u64().unwrap()))
        .collect();
    states.sort();
    assert_eq!(
        states,
        vec![("handled".to_owned(), renames as u64), ("unhandled".to_owned(), renames as u64)]
    );

    // And the metrics count what was committed. Ingest counts a batch's detections just after it
    // records its alerts, so the count may trail the alerts seen above by a moment.
    let want = format!("cordon_detections_total{{tier=\"block\"}} {}", 2 * (renames + shadow));
    eventually(Duration::from_secs(10), || {
        let (_, m) = get(&format!("{}/metrics", server.api), Some(tok))?;
        let m = m.as_str().map(str::to_owned).unwrap_or_else(|| m.to_string());
        Ok(m.contains(&want).then_some(()))
    })
    .map_err(|e| e.context(want))?;
    Ok(())
}

#[test]
fn a_policy_change_is_versioned_checked_and_applied_by_ingest() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (n, server, tok) = (&env.nats, &env.server, env.token.as_str());
    let url = format!("{}/api/v1/policy", server.api);

    // The shipped default, version 0.
    let (status, cur) = get(&url, Some(tok))?;
    assert_eq!(status, 200, "{cur}");
    assert_eq!(
        (cur["version"].as_i64(), cur["policy"]["techniques"]["T1486"].as_str()),
        (Some(0), Some("block"))
    );
    let win = &cur["summary"]["Windows"];
    assert!(
        win["block"].as_u64().unwrap() > 0
            && win["alert"].as_u64().unwrap() > 0
            && win["record"].as_u64().unwrap() > 0,
        "{cur}"
    );

    // Bad changes are refused with the reason; nothing is recorded.
    let mut policy = cur["policy"].clone();
    policy["techniques"]["T9999"] = json!("block");
    let (status, err) =
        tests::put(&url, Some(tok), &json!({"policy": policy, "reason": "x", "base_version": 0}))?;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("invalid_policy")), "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("T9999"), "{err}");
    let mut policy = cur["policy"].clone();
    let (status, _) =
        tests::put(&url, Some(tok), &json!({"policy": policy, "reason": " ", "base_version": 0}))?;
    assert_eq!(status, 400, "a change needs a reason");
    let (status, _) =
        tests::put(&url, Some(tok), &json!({"policy": policy, "reason": "x", "base_version": 3}))?;
    assert_eq!(status, 409, "a change against a stale version conflicts");

    // The web servers (host group Ops) only alert on encryption for now.
    policy["groups"] = json!({"Ops": {"techniques": {"T1486": "alert"}}});
    let why = "Ops: alert only during the file server migration";
    let (status, put) =
        tests::put(&url, Some(tok), &json!({"policy": policy, "reason": why, "base_version": 0}))?;
    assert_eq!((status, put["version"].as_i64()), (200, Some(1)), "{put}");
    let (_, versions) = get(&format!("{url}/versions"), Some(tok))?;
    let v = &versions["versions"][0];
    assert_eq!(
        (v["version"].as_i64(), v["author"].as_str(), v["reason"].as_str()),
        (Some(1), Some("e2e"), Some(why))
    );

    // Ingest re-reads policies at most a second apart: events after that get the new tiers.
    std::thread::sleep(Duration::from_millis(1500));
    let a = agent(&bin(), &n.url, &env.spool(), &["replay", "builtin:log4j-conti"])?;
    let acked = a["events_acked"].as_u64().unwrap();
    eventually(Duration::from_secs(60), || Ok((counts(&server.api, tok)?.0 == acked).then_some(())))?;
    let renames = scenario_count(|e, _| e["event"]["action"] == "rename" && e.to_string().contains(".CONTI"));
    let rows = sql(
        &server.api,
        tok,
        "SELECT policy_tier, count(*) FROM events WHERE array_has(threat_technique_id, 'T1486') GROUP BY 1",
    )?;
    assert_eq!(rows, vec![vec![json!("alert"), json!(renames)]], "the Ops override applies");
    let blocked = sql(&server.api, tok, "SELECT count(*) FROM events WHERE policy_tier = 'block'")?;
    assert_eq!(blocked[0][0], 1, "shadow-copy deletion stays blocked: {blocked:?}");
    let (_, m) = get(&format!("{}/metrics", server.api), Some(tok))?;
    let m = m.as_str().unwrap_or("");
    assert!(m.contains("cordon_policy_applied_total 1\n"), "{m}");
    assert!(!m.contains("tenant="), "/metrics names no tenant: {m}");

    // Preview: what blocking encryption on the web servers again would have done to these events.
    let mut back = policy.clone();
    back["groups"] = json!({});
    let (status, pv) =
        tests::post(&format!("{url}/preview"), Some(tok), &json!({"policy": back, "days": 2}))?;
    assert_eq!(status, 200, "{pv}");
    assert_eq!(pv["events_scanned"].as_u64(), Some(acked));
    let t1486 = pv["by_technique"].as_array().unwrap().iter().find(|r| r["technique"] == "T1486").unwrap();
    assert_eq!(t1486["current"], json!({"alerts": renames, "blocks": 0}), "{pv}");
    assert_eq!(t1486["proposed"], json!({"alerts": 0, "blocks": renames}), "{pv}");
    assert_eq!(
        pv["proposed"]["blocks"].as_u64(),
        Some(renames as u64 + 1),
        "plus the shadow-copy deletion: {pv}"
    );
    assert_eq!(pv["current"]["blocks"].as_u64(), Some(1), "{pv}");
    let (status, _) = tests::post(&format!("{url}/preview"), Some(tok), &json!({"policy": back, "days": 0}))?;
    assert_eq!(status, 400);
    // The policy's answers fit the OpenAPI document the server serves.
    let (_, doc) = get(&format!("{}/api/v1/openapi.json", server.api), Some(tok))?;
    for path in ["/api/v1/policy", "/api/v1/policy/versions"] {
        let (_, answer) = get(&format!("{}{path}", server.api), Some(tok))?;
        api::openapi::check_answer(&doc, "GET", path, &answer).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

#[test]
fn a_blocked_process_start_is_terminated_by_the_agent() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (n, server, tok) = (&env.nats, &env.server, env.token.as_str());
    // The lab group blocks user execution of dropped files (the shipped policy only alerts on it).
    let mut policy = get(&format!("{}/api/v1/policy", server.api), Some(tok))?.1["policy"].clone();
    policy["groups"] = json!({"lab": {"techniques": {"T1204.002": "block"}}});
    let (status, put) = tests::put(
        &format!("{}/api/v1/policy", server.api),
        Some(tok),
        &json!({"policy": policy, "reason": "lab: block payloads run from temp", "base_version": 0}),
    )?;
    assert_eq!(status, 200, "{put}");
    std::thread::sleep(Duration::from_millis(1500));

    // A real process running from a temporary directory, and a bystander with the same image.
    let dir = env.dir.path().join("dropper");
    std::fs::create_dir_all(&dir)?;
    let exe = dir.join("updater");
    let sleep =
        ["/usr/bin/sleep", "/bin/sleep"].into_iter().find(|p| std::path::Path::new(p).exists()).unwrap();
    std::fs::copy(sleep, &exe)?;
    let mut target = tests::procs::spawn_copied(std::process::Command::new(&exe).arg("300"))?;
    let mut bystander = std::process::Command::new(sleep).arg("300").spawn()?;
    let exe_s = exe.display().to_string();
    assert!(exe_s.starts_with("/tmp/"), "the rule looks for /tmp: {exe_s}");
    let event = |pid: u32, image: &str| {
        json!({"at_ms": 0, "agent": "lab-1", "event": {
            "event": {"category": "process", "action": "start"},
            "process": {"pid": pid, "executable": image, "name": "updater", "command_line": format!("{image} 300")}}})
    };
    let scenario = env.dir.path().join("lab.ndjson");
    std::fs::write(
        &scenario,
        format!(
            "{}\n{}\n{}\n",
            json!({"scenario": "lab", "hosts": [{"agent": "lab-1", "name": "LAB-1", "os": "linux", "group": "lab"}]}),
            event(target.id(), &exe_s),
            // The bystander's pid with the dropper's name: the agent must refuse (pid reuse guard).
            event(bystander.id(), &exe_s),
        ),
    )?;
    let s = scenario.display().to_string();
    // The edge acts only within a standing order the agent holds: two responders sign one for
    // T1204 on every agent, and lab-1 (enrolled first, pinning them) takes it with its orders.
    let state = super::standing::standing_order_held(&env, "T1204")?;
    let summary = agent(&bin(), &n.url, &env.spool(), &["replay", &s, "--enforce-secs", "6"])?;
    assert!(state.join("response-state.json").exists());

    // The agent had the tenant's policy from the server (version 1) and blocked at the edge.
    let edge = &summary["edge"];
    assert_eq!(
        (edge["policy_version"].as_i64(), edge["rules_match"].as_bool(), edge["blocked"].as_u64()),
        (Some(1), Some(true), Some(2)),
        "{summary}"
    );
    let outcomes = summary["enforcement"].as_array().cloned().unwrap_or_default();
    let first = |pid: u32| outcomes.iter().find(|o| o["pid"] == pid).cloned().unwrap_or_default();
    assert_eq!(first(target.id())["result"], "terminated", "{summary}");
    assert!(
        first(target.id())["command"].as_str().unwrap().starts_with("edge-"),
        "killed at the edge: {summary}"
    );
    assert!(first(bystander.id())["result"].as_str().unwrap().starts_with("refused: pid"), "{summary}");
    let status = target.wait()?;
    assert!(!status.success(), "the blocked process was killed: {status}");
    assert!(bystander.try_wait()?.is_none(), "the bystander still runs");

    // Without the edge rules, the server acts only within a standing order the approvers signed
    // (tests/tests/e2e/standing.rs).
    let _ = bystander.kill();

    // And the alert says blocked.
    let (_, alerts) =
        get(&format!("{}/api/v1/alerts?technique=T1204.002&status=blocked", server.api), Some(tok))?;
    assert_eq!(alerts["alerts"].as_array().map(Vec::len), Some(1), "{alerts}");
    assert_eq!(alerts["alerts"][0]["count"].as_u64(), Some(2), "the dropper's two events: {alerts}");
    Ok(())
}

/// An agent replays process starts (pid, executable, command line) on a Linux web server; its
/// summary.
fn web_server_starts(
    env: &Env,
    name: &str,
    starts: &[(u32, &str, &str)],
) -> anyhow::Result<serde_json::Value> {
    let mut lines = vec![
        json!({"scenario": name, "hosts": [{"agent": "web-1", "name": "WEB-1", "os": "linux", "group": "servers"}]}),
    ];
    for (i, (pid, exe, cmd)) in starts.iter().enumerate() {
        let file = exe.rsplit('/').next().unwrap_or(exe);
        lines.push(json!({"at_ms": i * 10, "agent": "web-1", "event": {"event": {"category": "process", "action": "start"},
            "process": {"pid": pid, "executable": exe, "name": file, "command_line": cmd}}}));
    }
    let scenario = env.dir.path().join(format!("{name}.ndjson"));
    std::fs::write(&scenario, lines.iter().map(|l| format!("{l}\n")).collect::<String>())?;
    agent(&bin(), &env.nats.url, &env.spool(), &["replay", &scenario.display().to_string()])
}

#[test]
fn operator_rules_run_at_ingest_and_reach_the_agent() -> anyhow::Result<()> {
    // The team's own rules beside the pack: one the engine runs, one it must refuse.
    let rules = tempfile::tempdir()?;
    let team = rules.path().join("team");
    std::fs::create_dir_all(&team)?;
    std::fs::write(
        team.join("miner.yml"),
        "title: Cryptominer started\nid: 5b0e8f4e-1111-4c1e-9d2b-000000000001\nstatus: test\n\
         tags: [attack.impact, attack.t1496]\nlogsource: {category: process_creation, product: linux}\n\
         detection:\n  sel:\n    Image|endswith: '/xmrig'\n  condition: sel\nlevel: high\n",
    )?;
    std::fs::write(
        team.join("broken.yml"),
        "title: Broken\nid: broken-1\nlogsource: {category: process_creation, product: linux}\n\
         detection:\n  sel:\n    Image|sorcery: x\n  condition: sel\n",
    )?;
    let opts =
        ServerOptions { args: vec!["--rules".into(), team.display().to_string()], ..Default::default() };
    let env = Env::start(&opts)?;
    let (server, tok) = (&env.server, env.token.as_str());

    let (status, r) = get(&format!("{}/api/v1/rules", server.api), Some(tok))?;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (
            r["operator"]["files"].as_u64(),
            r["operator"]["loaded"].as_u64(),
            r["operator"]["refused"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{r}"
    );
    assert_eq!(r["refused"][0]["file"], "team/broken.yml", "{r}");
    assert_eq!(r["refused"][0]["class"], "modifier", "{r}");
    assert!(r["refused"][0]["reason"].as_str().unwrap_or("").contains("sorcery"), "{r}");
    let digest = r["digest"].as_str().unwrap_or_default().to_owned();
    assert_eq!(digest.len(), 16, "{r}");

    // The tenant blocks resource hijacking: a policy the agent gets with the digest of these rules.
    let mut policy = get(&format!("{}/api/v1/policy", server.api), Some(tok))?.1["policy"].clone();
    policy["techniques"]["T1496"] = json!("block");
    let (status, put) = tests::put(
        &format!("{}/api/v1/policy", server.api),
        Some(tok),
        &json!({"policy": policy, "reason": "no miners", "base_version": 0}),
    )?;
    assert_eq!(status, 200, "{put}");
    std::thread::sleep(Duration::from_millis(1500));

    let summary = web_server_starts(
        &env,
        "miner",
        &[(4_000_001, "/opt/m/xmrig", "/opt/m/xmrig -o pool"), (4_000_002, "/usr/bin/ls", "ls")],
    )?;
    let edge = &summary["edge"];
    // The agent fetched the server's rule files and ran the miner rule under the tenant's policy.
    assert_eq!(edge["rules_digest"], json!(digest), "{summary}");
    assert_eq!(
        (edge["rules_match"].as_bool(), edge["rule_files"].as_u64(), edge["rules_refused"].as_u64()),
        (Some(true), Some(2), Some(1)),
        "{summary}"
    );
    assert_eq!((edge["tagged"].as_u64(), edge["blocked"].as_u64()), (Some(1), Some(1)), "{summary}");

    // Ingest ran it too: one blocked alert in the uniform format, on the miner only.
    let alerts = eventually(Duration::from_secs(20), || {
        let (_, a) = get(&format!("{}/api/v1/alerts?technique=T1496", server.api), Some(tok))?;
        Ok((a["alerts"].as_array().map_or(0, Vec::len) == 1).then_some(a))
    })?;
    let a = &alerts["alerts"][0];
    assert_eq!(
        (a["rule"]["title"].as_str(), a["status"].as_str()),
        (Some("Cryptominer started"), Some("blocked")),
        "{a}"
    );
    assert_eq!(a["count"].as_u64(), Some(1), "{a}");

    // The team adds a rule and the operator sends SIGHUP: ingest, the API and the agents take it up.
    std::fs::write(
        team.join("netcat.yml"),
        "title: Netcat listener started\nid: 5b0e8f4e-1111-4c1e-9d2b-000000000002\nstatus: test\n\
         tags: [attack.command-and-control, attack.t1095]\nlogsource: {category: process_creation, product: linux}\n\
         detection:\n  sel:\n    Image|endswith: '/nc'\n    CommandLine|contains: ' -l'\n  condition: sel\nlevel: high\n",
    )?;
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.data.join("server.json"))?)?;
    let pid = info["pid"].as_u64().expect("server.json has the pid").to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status()?.success());
    let r = eventually(Duration::from_secs(20), || {
        let (_, r) = get(&format!("{}/api/v1/rules", server.api), Some(tok))?;
        Ok((r["operator"]["loaded"].as_u64() == Some(2)).then_some(r))
    })?;
    let reloaded = r["digest"].as_str().unwrap_or_default().to_owned();
    assert_ne!(reloaded, digest, "{r}");
    assert_eq!(r["operator"]["files"].as_u64(), Some(3), "{r}");
    let summary = web_server_starts(&env, "nc", &[(4_000_003, "/usr/bin/nc", "nc -lvp 4444")])?;
    let edge = &summary["edge"];
    assert_eq!(edge["rules_digest"], json!(reloaded), "the agent fetched the reloaded files: {summary}");
    assert_eq!((edge["rule_files"].as_u64(), edge["tagged"].as_u64()), (Some(3), Some(1)), "{summary}");
    let tagged = eventually(Duration::from_secs(20), || {
        let rows = sql(
            &server.api,
            tok,
            "SELECT count(*) FROM events WHERE array_has(threat_technique_id, 'T1095')",
        )?;
        Ok((rows[0][0].as_u64() == Some(1)).then_some(()))
    });
    assert!(tagged.is_ok(), "ingest tagged the netcat start with the reloaded rule");
    Ok(())
}
