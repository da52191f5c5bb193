//! Crash safety: kill the server at each step of the commit protocol and at random moments, kill
//! nats-server while agents publish; restart; nothing lost, nothing duplicated, in the lake or index.

use super::{Env, bin};
use std::time::Duration;
use tests::{Server, ServerOptions, agent, agent_summary, counts, eventually, get, run, spawn_agent};

fn assert_exactly_once(server: &Server, tok: &str, acked: u64) -> anyhow::Result<()> {
    let got = eventually(Duration::from_secs(60), || {
        let c = counts(&server.api, tok)?;
        let (_, h) = get(&format!("{}/healthz", server.api), None)?;
        let docs = h["indexed_events"].as_u64().unwrap_or(0);
        Ok((c.0 >= acked && docs >= acked).then_some((c.0, c.1, docs)))
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
