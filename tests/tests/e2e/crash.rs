//! Crash safety: kill the server at each step of the commit protocol and at random moments, kill
//! nats-server while agents publish; restart; nothing lost, nothing duplicated, in the lake or index;
//! and a batch acked but not yet analysed when the server died is analysed when it is back.

use super::{Env, bin, scenario_count};
use anyhow::Context;
use std::time::Duration;
use tests::{Server, ServerOptions, agent, agent_summary, counts, eventually, get, run, spawn_agent};

/// Every acked event once in the lake (rows and distinct ids) and in the index.
pub(crate) fn assert_exactly_once(server: &Server, tok: &str, acked: u64) -> anyhow::Result<()> {
    assert_exactly_once_within(server, tok, acked, Duration::from_secs(60))
}

/// Every acked event is stored and searchable once, within `within`.
pub(crate) fn assert_exactly_once_within(
    server: &Server,
    tok: &str,
    acked: u64,
    within: Duration,
) -> anyhow::Result<()> {
    let mut last = None;
    let got = eventually(within, || {
        let c = counts(&server.api, tok)?;
        let (_, h) = get(&format!("{}/healthz", server.api), None)?;
        let docs = h["indexed_events"].as_u64().unwrap_or(0);
        last = Some((c.0, c.1, docs, h));
        Ok((c.0 >= acked && docs >= acked).then_some((c.0, c.1, docs)))
    })
    .with_context(|| {
        let metrics = get(&format!("{}/metrics", server.api), Some(tok)).map(|m| m.1);
        let metrics = metrics.as_ref().ok().and_then(|m| m.as_str()).unwrap_or_default();
        let ingest: Vec<&str> = metrics.lines().filter(|l| l.starts_with("cordon_ingest")).collect();
        format!("{acked} acked; last seen (rows, distinct ids, index docs, health): {last:?}; {ingest:#?}")
    })?;
    assert_eq!(got, (acked, acked, acked), "(rows, distinct ids, index docs) vs acked");
    Ok(())
}

fn verify_clean(data: &std::path::Path) -> anyhow::Result<()> {
    let (code, out) = run(&bin(), &["verify", "--data-dir", &data.display().to_string()])?;
    assert_eq!(code, 0, "verify: {out}");
    let report: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(report["orphans"].as_array().map(Vec::len), Some(0));
    assert_eq!(report["bad_files"].as_array().map(Vec::len), Some(0));
    Ok(())
}

#[test]
fn kill_at_each_commit_failpoint_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    for fp in ["after_parquet", "after_catalog", "after_index", "after_ack"] {
        let opts = ServerOptions { failpoints: Some(format!("{fp}=2")), ..Default::default() };
        let env = Env::start(&opts)?;
        let spool = env.spool();
        let Env { server, nats: n, data, token: tok, dir: _dir } = env;
        // The server dies at the second pass of `fp` while it ingests the first agent's events.
        let a = agent(&bin(), &n.url, &spool, &["replay", "builtin:log4j-conti", "--batch-size", "10"])?;
        let listen = server.api.trim_start_matches("http://").to_owned();
        let status = server.wait_exit(Duration::from_secs(60))?;
        assert!(!status.success(), "{fp}: the server must have died at the failpoint");
        // A second agent starts while the server is down: it can neither enroll nor pass the bus's
        // authentication (the server answers both), so it waits and spools, and ships once the
        // server is back.
        let b = spawn_agent(
            &bin(),
            &n.url,
            &spool,
            &[
                "--drain-secs",
                "120",
                "simulate",
                "--hosts",
                "5",
                "--rate",
                "2000",
                "--duration",
                "2",
                "--seed",
                "3",
            ],
        )?;
        std::thread::sleep(Duration::from_secs(2));
        // Back where the agents expect it.
        let opts = ServerOptions { listen: Some(listen), ..Default::default() };
        let server = Server::start(&bin(), &data, &n.url, &opts)?;
        let (code, b) = tests::agent_summary(b)?;
        assert_eq!(code, 0, "{fp}: the second agent shipped everything once the server was back: {b}");
        let acked = a["events_acked"].as_u64().unwrap() + b["events_acked"].as_u64().unwrap();
        assert_exactly_once(&server, &tok, acked).map_err(|e| e.context(fp))?;
        server.kill();
        verify_clean(&data)?;
    }
    Ok(())
}

#[test]
fn kill_server_at_random_moments_while_events_flow() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let spool = env.spool();
    let Env { mut server, nats: n, data, token: tok, dir: _dir } = env;
    let child = spawn_agent(
        &bin(),
        &n.url,
        &spool,
        &["simulate", "--hosts", "10", "--rate", "4000", "--duration", "6", "--seed", "5"],
    )?;
    for pause_ms in [700u64, 1100, 900] {
        std::thread::sleep(Duration::from_millis(pause_ms));
        server.kill();
        server = Server::start(&bin(), &data, &n.url, &ServerOptions::default())?;
    }
    let (code, summary) = agent_summary(child)?;
    assert_eq!(code, 0, "{summary}");
    assert_exactly_once(&server, &tok, summary["events_acked"].as_u64().unwrap())?;
    server.kill();
    verify_clean(&data)
}

/// A stop (SIGTERM) while events flow: the server finishes the batch in hand, hands the one it
/// had fetched ahead back to the bus (a nak) and exits cleanly; started again, it stores every acked
/// event once well within the ack wait (60 s), which a batch held and not handed back would take.
#[test]
fn a_stop_while_events_flow_hands_back_what_was_fetched_ahead() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let spool = env.spool();
    let Env { server, nats: n, data, token: tok, dir: _dir } = env;
    let args = ["simulate", "--hosts", "10", "--rate", "4000", "--duration", "8", "--seed", "11"];
    let child = spawn_agent(&bin(), &n.url, &spool, &args)?;
    std::thread::sleep(Duration::from_secs(3));
    let sent = std::process::Command::new("kill").args(["-TERM", &server.pid().to_string()]).status()?;
    anyhow::ensure!(sent.success(), "kill -TERM failed");
    let status = server.wait_exit(Duration::from_secs(60))?;
    assert!(status.success(), "a stop exits cleanly: {status}");
    let server = Server::start(&bin(), &data, &n.url, &ServerOptions::default())?;
    let (code, summary) = agent_summary(child)?;
    assert_eq!(code, 0, "{summary}");
    let acked = summary["events_acked"].as_u64().unwrap_or(0);
    assert_exactly_once_within(&server, &tok, acked, ingest::ACK_WAIT / 2)?;
    server.kill();
    verify_clean(&data)
}

#[test]
fn nats_restart_while_agents_publish_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let spool = env.spool();
    let Env { server, nats: mut n, data: _, token: tok, dir } = env;
    let port = n.port();
    let child = spawn_agent(
        &bin(),
        &n.url,
        &spool,
        &["simulate", "--hosts", "10", "--rate", "3000", "--duration", "6", "--seed", "9"],
    )?;
    std::thread::sleep(Duration::from_millis(1500));
    n.kill();
    std::thread::sleep(Duration::from_millis(1500));
    let _n2 = tests::start_nats_on(&dir.path().join("nats"), Some(port))?;
    let (code, summary) = agent_summary(child)?;
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["events_dropped"], 0);
    let acked = summary["events_acked"].as_u64().unwrap();
    assert!(acked > 10_000, "{summary}");
    assert_exactly_once(&server, &tok, acked)
}

#[test]
fn a_batch_acked_but_not_analysed_before_a_crash_raises_its_alerts_after_it() -> anyhow::Result<()> {
    // The scenario as one message: the server commits and acks it, then dies before its analysers run.
    let opts = ServerOptions { failpoints: Some("before_analysis=1".into()), ..Default::default() };
    let env = Env::start(&opts)?;
    let spool = env.spool();
    let Env { server, nats: n, data, token: tok, dir: _dir } = env;
    let a = agent(&bin(), &n.url, &spool, &["replay", "builtin:log4j-conti", "--batch-size", "10000"])?;
    let listen = server.api.trim_start_matches("http://").to_owned();
    let status = server.wait_exit(Duration::from_secs(60))?;
    assert!(!status.success(), "the server must have died before analysing the batch");
    let opts = ServerOptions { listen: Some(listen.clone()), ..Default::default() };
    let server = Server::start(&bin(), &data, &n.url, &opts)?;
    // What the first agent could not ship before the crash (its spool) goes with a second one.
    let b = agent(&bin(), &n.url, &spool, &["simulate", "--hosts", "1", "--rate", "10", "--duration", "1"])?;
    let acked = a["events_acked"].as_u64().unwrap() + b["events_acked"].as_u64().unwrap();
    assert_exactly_once(&server, &tok, acked)?;
    let again = |server: &Server| -> anyhow::Result<f64> {
        let (_, m) = get(&format!("{}/metrics", server.api), Some(&tok))?;
        Ok(tests::metric(m.as_str().unwrap_or_default(), "cordon_ingest_reanalysed_events_total"))
    };
    // What was committed before the crash (the agents count JetStream's acks, so some of theirs
    // may have reached ingest only after the restart).
    let reanalysed = again(&server)?;
    assert!(reanalysed >= 1.0 && reanalysed <= acked as f64, "{reanalysed} of {acked}");
    // Whichever messages were analysed again, every alert of the scenario is there, as without a
    // crash: the ransomware's renames as one blocked T1486 alert with each rename as evidence, and
    // the workstation's exploit scans (T1595.002).
    let text = |e: &serde_json::Value| e.to_string();
    let renames = scenario_count(|e, _| e["event"]["action"] == "rename" && text(e).contains(".CONTI"));
    let scans = scenario_count(|e, a| {
        a == "win-dakeqi" && e["event"]["action"] == "http-request" && text(e).contains("${jndi:")
    });
    let count =
        |list: &[serde_json::Value]| list.iter().map(|a| a["count"].as_u64().unwrap_or(0)).sum::<u64>();
    let alert = eventually(Duration::from_secs(30), || {
        let with = |t: &str| -> anyhow::Result<Vec<serde_json::Value>> {
            let (_, v) = get(&format!("{}/api/v1/alerts?technique={t}", server.api), Some(&tok))?;
            Ok(v["alerts"].as_array().cloned().unwrap_or_default())
        };
        let (ransom, scanning) = (with("T1486")?, with("T1595.002")?);
        let done = ransom.len() == 1 && count(&ransom) == renames as u64 && count(&scanning) >= scans as u64;
        Ok(done.then(|| ransom[0].clone()))
    })?;
    assert_eq!(alert["status"], "blocked", "{alert}");
    // The mark moved past what was analysed again at start: a second restart analyses at most what
    // was committed after it (its mark possibly not yet written at the kill).
    server.kill();
    let server =
        Server::start(&bin(), &data, &n.url, &ServerOptions { listen: Some(listen), ..Default::default() })?;
    assert_exactly_once(&server, &tok, acked)?;
    assert!(again(&server)? <= acked as f64 - reanalysed, "{} of {acked}", again(&server)?);
    server.kill();
    verify_clean(&data)
}
