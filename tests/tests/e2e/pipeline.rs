//! The backbone: scenario + fleet -> JetStream -> lake + index -> REST, exactly once.

use super::{Env, bin, scenario_count};
use serde_json::json;
use std::time::Duration;
use tests::{ServerOptions, agent, counts, eventually, get, post};

#[test]
fn scenario_and_fleet_arrive_exactly_once_and_are_queryable() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (n, server, tok, spool) = (&env.nats, &env.server, env.token.as_str(), env.spool());

    let scenario = agent(&bin(), &n.url, &spool, &["replay", "builtin:log4j-conti"])?;
    let fleet = agent(
        &bin(),
        &n.url,
        &spool,
        &["simulate", "--hosts", "25", "--rate", "3000", "--duration", "3", "--seed", "11"],
    )?;
    let scenario_acked = scenario["events_acked"].as_u64().unwrap();
    let acked = scenario_acked + fleet["events_acked"].as_u64().unwrap();
    assert_eq!(scenario_acked as usize, scenario_count(|_, _| true), "the agent acked every scenario event");
    assert!(fleet["events_acked"].as_u64().unwrap() > 5000, "{fleet}");

    // Every acked event is in the lake exactly once, and in the index.
    let (rows, distinct, indexed) = eventually(Duration::from_secs(60), || {
        let c = counts(&server.api, tok)?;
        let indexed =
            get(&format!("{}/healthz", server.api), None)?.1["indexed_events"].as_u64().unwrap_or(0);
        Ok((c.0 >= acked && indexed >= acked).then_some((c.0, c.1, indexed)))
    })?;
    assert_eq!((rows, distinct, indexed), (acked, acked, acked));

    // Hosts: every scenario and fleet host, with counts summing to what was sent.
    let (status, hosts) = get(&format!("{}/api/v1/hosts?limit=1000", server.api), Some(tok))?;
    assert_eq!(status, 200);
    let hosts = hosts["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 4 + 25);
    assert_eq!(hosts.iter().map(|h| h["events"].as_u64().unwrap()).sum::<u64>(), acked);

    // The workstation's timeline, oldest first, paged by cursor: exactly its scenario events.
    let expected = scenario_count(|_, agent| agent == "win-dakeqi");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{}/api/v1/hosts/WIN-DAKEQI/timeline?order=asc&limit=20", server.api);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = get(&url, Some(tok))?;
        assert_eq!(status, 200, "{page}");
        seen.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), expected);
    let times: Vec<&str> = seen.iter().map(|e| e["@timestamp"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "timeline is in time order");
    assert_eq!(seen[0]["host"]["name"], "WIN-DAKEQI");
    let kinds =
        get(&format!("{}/api/v1/hosts/WIN-DAKEQI/timeline?kinds=process&limit=100", server.api), Some(tok))?
            .1;
    let expected_proc = scenario_count(|e, a| a == "win-dakeqi" && e["event"]["category"] == "process");
    assert_eq!(kinds["events"].as_array().unwrap().len(), expected_proc);

    // Fleet-wide search for the JNDI string finds exactly the scenario events that carry it.
    let expected_jndi = scenario_count(|e, _| e.to_string().contains("${jndi:ldap"));
    let url = format!("{}/api/v1/search?q=%22%24%7Bjndi%3Aldap%22&limit=100", server.api);
    let (status, found) = get(&url, Some(tok))?;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["total"].as_u64(), Some(expected_jndi as u64), "{found}");
    for hit in found["events"].as_array().unwrap() {
        assert!(hit["event"].to_string().contains("${jndi:ldap"), "{hit}");
        assert!(!hit["matched"].as_array().unwrap().is_empty());
    }
    let literal =
        get(&format!("{}/api/v1/search?q=%24%7Bjndi%3Aldap&literal=true", server.api), Some(tok))?.1;
    assert_eq!(literal["total"].as_u64(), Some(expected_jndi as u64));
    let (status, bad) = get(&format!("{}/api/v1/search?q=host%3A(", server.api), Some(tok))?;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["error"]["code"], "bad_query");

    // IOC sweep: the Conti hash, the C2 domain (defanged) and the C2 IP.
    let s = fixtures::scenario::log4j_conti();
    let conti = s
        .events
        .iter()
        .find_map(|e| {
            e.event
                .get("file")
                .and_then(|f| f["hash"]["sha256"].as_str())
                .filter(|_| e.event["file"]["name"] == "update.exe")
        })
        .unwrap()
        .to_owned();
    let body = json!({"iocs": [conti.to_uppercase(), "cdn-update[.]example", "203.0.113.66", "hxxp://cdn-update[.]example/static/update.exe", "no-such-domain.example"]});
    let (status, sweep) = post(&format!("{}/api/v1/iocs/sweep", server.api), Some(tok), &body)?;
    assert_eq!(status, 200, "{sweep}");
    let r = sweep["results"].as_array().unwrap();
    let hosts_of = |i: usize| {
        r[i]["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["host"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(r[0]["type"], "sha256");
    assert_eq!(hosts_of(0), vec!["Web服务器-北机房"]);
    let expected_conti = scenario_count(|e, _| e.to_string().contains(&conti));
    assert_eq!(r[0]["total"].as_u64(), Some(expected_conti as u64));
    assert_eq!(r[1]["type"], "domain");
    assert_eq!(hosts_of(1), vec!["Web服务器-北机房", "cdn-update-edge"], "{}", r[1]);
    assert!(hosts_of(2).contains(&"Web服务器-北机房".to_owned()));
    assert_eq!(r[3]["type"], "url");
    assert!(r[3]["total"].as_u64().unwrap() >= 1);
    assert_eq!(r[4]["total"], 0);
    assert_eq!(sweep["matched"], 4);

    // Metrics and the OpenAPI document.
    let (status, metrics) = get(&format!("{}/metrics", server.api), Some(tok))?;
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(metrics.contains(&format!("cordon_ingest_stored_total {acked}")), "{metrics}");
    check_exposition(&metrics);
    // Every fetched batch went through each stage once, and its latency was recorded (the
    // analysers follow the ack, so they may still be on the last batch).
    let stage =
        |m: &str, s: &str| tests::metric(m, &format!("cordon_ingest_stage_seconds_count{{stage=\"{s}\"}}"));
    assert!(stage(&metrics, "decode") >= 1.0, "{metrics}");
    let stages = ["tag", "dead_letters", "commit", "analysers"];
    eventually(Duration::from_secs(10), || {
        let (_, m) = get(&format!("{}/metrics", server.api), Some(tok))?;
        let m = m.as_str().unwrap_or_default().to_owned();
        Ok(stages.iter().all(|s| stage(&m, s) == stage(&m, "decode")).then_some(()))
    })?;
    assert!(tests::metric(&metrics, "process_resident_memory_bytes") > 1e6, "{metrics}");
    assert!(metrics.contains("cordon_build_info{version=\""), "{metrics}");
    // The batches made searchable were timed from their publication (taken by the store's upkeep).
    let searchable = eventually(Duration::from_secs(10), || {
        let (_, m) = get(&format!("{}/metrics", server.api), Some(tok))?;
        let m = m.as_str().unwrap_or_default().to_owned();
        Ok((tests::metric(&m, "cordon_publish_to_searchable_seconds_count") >= 1.0).then_some(m))
    })?;
    let count = tests::metric(&searchable, "cordon_publish_to_searchable_seconds_count");
    let inf = tests::metric(&searchable, "cordon_publish_to_searchable_seconds_bucket{le=\"+Inf\"}");
    assert_eq!(count, inf, "{searchable}");
    assert!(count <= acked as f64, "at most one age per batch: {count} for {acked} events");
    assert!(tests::metric(&searchable, "cordon_publish_to_searchable_seconds_sum") > 0.0);
    let (status, doc) = get(&format!("{}/api/v1/openapi.json", server.api), Some(tok))?;
    assert_eq!(status, 200);
    for p in ["/api/v1/hosts/{host}/timeline", "/api/v1/search", "/api/v1/iocs/sweep", "/api/v1/sql"] {
        assert!(doc["paths"][p].is_object(), "{p} missing from openapi");
    }
    Ok(())
}

/// A Prometheus exposition: every series' metric has exactly one HELP and one TYPE line, and a
/// histogram's buckets never decrease.
fn check_exposition(text: &str) {
    use std::collections::BTreeMap;
    let mut help: BTreeMap<&str, usize> = BTreeMap::new();
    let mut kind: BTreeMap<&str, &str> = BTreeMap::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# HELP ") {
            *help.entry(rest.split(' ').next().unwrap_or_default()).or_default() += 1;
        } else if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let name = it.next().unwrap_or_default();
            assert!(kind.insert(name, it.next().unwrap_or_default()).is_none(), "two TYPE lines for {name}");
        }
    }
    assert!(help.values().all(|n| *n == 1), "{help:?}");
    let mut last: Option<(String, f64)> = None;
    for l in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let series = l.split([' ', '{']).next().unwrap_or_default();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| series.strip_suffix(s).filter(|f| kind.get(f) == Some(&"histogram")))
            .unwrap_or(series);
        assert!(help.contains_key(family), "{series} has no HELP");
        if series.ends_with("_bucket") {
            let v: f64 = l.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(-1.0);
            let key = l.split("le=").next().unwrap_or_default().to_owned();
            if let Some((k, before)) = &last
                && *k == key
            {
                assert!(v >= *before, "buckets decrease at {l}");
            }
            last = Some((key, v));
        }
    }
}

#[test]
fn every_route_but_health_needs_a_valid_token() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (server, tok) = (&env.server, env.token.as_str());
    assert_eq!(get(&format!("{}/healthz", server.api), None)?.0, 200);
    for r in api_routes() {
        let url = format!("{}{}", server.api, r.1.replace("{host}", "x"));
        for t in [None, Some("cdn_wrong")] {
            let status = match r.0 {
                "GET" => get(&url, t)?.0,
                "PUT" => tests::put(&url, t, &json!({}))?.0,
                "PATCH" => tests::patch(&url, t, &json!({}))?.0,
                _ => post(&url, t, &json!({}))?.0,
            };
            assert_eq!(status, 401, "{} {} with {t:?}", r.0, r.1);
        }
        let status = match r.0 {
            "GET" => get(&url, Some(tok))?.0,
            "PUT" => tests::put(&url, Some(tok), &json!({}))?.0,
            "PATCH" => tests::patch(&url, Some(tok), &json!({}))?.0,
            _ => post(&url, Some(tok), &json!({"sql": "SELECT 1", "iocs": []}))?.0,
        };
        assert_ne!(status, 401, "{} {} with a valid token", r.0, r.1);
    }
    Ok(())
}

#[test]
fn agents_show_as_active_then_silent_then_dead() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (n, server, tok, spool) = (&env.nats, &env.server, env.token.as_str(), env.spool());
    let sent = agent(&bin(), &n.url, &spool, &["replay", "builtin:log4j-conti"])?;
    let per_agent: std::collections::BTreeMap<String, u64> = sent["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["agent"].as_str().unwrap().to_owned(), a["events_acked"].as_u64().unwrap()))
        .collect();
    let url = |q: &str| format!("{}/api/v1/agents{q}", server.api);
    // Each agent's final heartbeat carries its counters.
    let agents = eventually(Duration::from_secs(30), || {
        let (_, v) = get(&url(""), Some(tok))?;
        let list = v["agents"].as_array().cloned().unwrap_or_default();
        let acked: std::collections::BTreeMap<String, u64> = list
            .iter()
            .map(|a| {
                (a["agent_id"].as_str().unwrap_or("").to_owned(), a["events_acked"].as_u64().unwrap_or(0))
            })
            .collect();
        Ok((acked == per_agent).then_some(list))
    })?;
    assert!(agents.iter().all(|a| a["status"] == "active" && a["events_dropped"] == 0), "{agents:?}");
    let (_, doc) = get(&format!("{}/api/v1/openapi.json", server.api), Some(tok))?;
    let (_, answer) = get(&url(""), Some(tok))?;
    api::openapi::check_answer(&doc, "GET", "/api/v1/agents", &answer).map_err(anyhow::Error::msg)?;
    let (_, answer) = get(&format!("{}/api/v1/hosts?limit=1000", server.api), Some(tok))?;
    api::openapi::check_answer(&doc, "GET", "/api/v1/hosts", &answer).map_err(anyhow::Error::msg)?;
    std::thread::sleep(Duration::from_millis(2100));
    let status = |q: &str| -> anyhow::Result<Vec<String>> {
        let (code, v) = get(&url(q), Some(tok))?;
        anyhow::ensure!(code == 200, "{v}");
        Ok(v["agents"].as_array().unwrap().iter().map(|a| a["status"].as_str().unwrap().to_owned()).collect())
    };
    // The replay is over: heartbeats stopped, and the last ones reported no new events since.
    assert!(status("?silent_secs=1&dead_secs=3600")?.iter().all(|s| s == "silent"));
    assert!(status("?dead_secs=1")?.iter().all(|s| s == "dead"));
    assert!(status("")?.iter().all(|s| s == "active"), "within the default windows");
    let (code, err) = get(&url("?dead_secs=soon"), Some(tok))?;
    assert_eq!((code, err["error"]["code"].as_str()), (400, Some("bad_parameter")), "{err}");
    Ok(())
}

fn api_routes() -> Vec<(&'static str, &'static str)> {
    vec![
        ("GET", "/metrics"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/hosts"),
        ("GET", "/api/v1/agents"),
        ("GET", "/api/v1/hosts/{host}/timeline"),
        ("GET", "/api/v1/search?q=x"),
        ("POST", "/api/v1/iocs/sweep"),
        ("POST", "/api/v1/sql"),
        ("GET", "/api/v1/policy"),
        ("PUT", "/api/v1/policy"),
        ("GET", "/api/v1/policy/versions"),
        ("POST", "/api/v1/policy/preview"),
        ("GET", "/api/v1/attack/coverage"),
        ("GET", "/api/v1/alerts"),
        ("GET", "/api/v1/alerts/{host}"),
        ("PATCH", "/api/v1/alerts/{host}"),
    ]
}

/// A prebuilt fleet (`simulate --prebuilt --start-at T`, what the whole-path bench runs) builds every
/// batch first and sends exactly the events the live fleet would: rate x duration of them, each
/// stamped with its planned send time from T on, stored once each.
#[test]
fn a_prebuilt_fleet_sends_its_planned_events_from_its_start_time() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (n, server, tok, spool) = (&env.nats, &env.server, env.token.as_str(), env.spool());
    let (rate, secs) = (2_000u64, 2u64);
    let start_at = schemas::time::now_micros() + 3_000_000;
    let fleet = agent(
        &bin(),
        &n.url,
        &spool,
        &[
            "simulate",
            "--hosts",
            "10",
            "--rate",
            &rate.to_string(),
            "--duration",
            &secs.to_string(),
            "--seed",
            "5",
            "--prebuilt",
            "--start-at",
            &start_at.to_string(),
        ],
    )?;
    let sent = rate * secs;
    assert_eq!(fleet["events_acked"].as_u64(), Some(sent), "{fleet}");
    assert_eq!(fleet["prebuilt"]["events"].as_u64(), Some(sent), "{fleet}");
    // Every host seals at least once a second; a batch holds at most 100 events.
    let batches = fleet["prebuilt"]["batches"].as_u64().unwrap_or(0);
    assert!(batches >= 10 * secs && batches >= sent / 100, "{fleet}");
    assert_eq!(fleet["prebuilt"]["late_ms"].as_u64(), Some(0), "built within its 3 s lead: {fleet}");
    // Each of the 20 ticks reports how late it was published, in order p50 <= p99 <= max.
    let late: Vec<u64> = (0..3).filter_map(|i| fleet["prebuilt"]["publish_late_ms"][i].as_u64()).collect();
    assert!(late.len() == 3 && late[0] <= late[1] && late[1] <= late[2], "{fleet}");
    assert!(fleet["prebuilt"]["ticks_behind"].as_u64().is_some_and(|t| t <= 20), "{fleet}");

    let (rows, distinct) = eventually(Duration::from_secs(60), || {
        let c = counts(&server.api, tok)?;
        Ok((c.0 >= sent).then_some(c))
    })?;
    assert_eq!((rows, distinct), (sent, sent));
    let span = tests::sql(
        &server.api,
        tok,
        "SELECT min(CAST(time AS BIGINT)), max(CAST(time AS BIGINT)) FROM events",
    )?;
    let (first, last) = (span[0][0].as_i64().unwrap_or(0), span[0][1].as_i64().unwrap_or(0));
    assert_eq!(first, start_at, "the first tick is stamped with the start time");
    assert!(last >= start_at + (secs as i64 - 1) * 1_000_000, "{last}");
    assert!(last < start_at + secs as i64 * 1_000_000, "{last}");
    Ok(())
}
