//! The cost of agent authentication (ADR 0007): what Cordon's auth callout adds to a connect, and how
//! many connects a second it answers when a fleet connects at once (after a NATS restart, say). The
//! peer is the same nats-server with authentication off. Each connect is measured to its first
//! round trip (`flush`), which is when the client knows it is in.

use crate::{path_server, percentile};
use std::time::{Duration, Instant};

/// Enrolls `agents` keys, then measures `samples` sequential connects on each server and all the
/// agents connecting at once on the authenticated one.
pub fn run(agents: usize, samples: usize, reps: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (secure, rt, running) = path_server(tmp.path(), None)?;
    let open = cordon::nats::start(&tmp.path().join("open-nats"))?;
    let api = format!("http://{}", running.addr);
    let now = schemas::time::now_micros();
    let (_, token) = rt.block_on(running.store.catalog().create_enroll_token(
        "default",
        None,
        agents as i64,
        now + 3_600_000_000,
        now,
    ))?;
    let started = Instant::now();
    let keys = enroll(&api, &token, agents)?;
    println!(
        "nats-server {}; {agents} agents enrolled in {:.1} s; session {} s",
        secure.version,
        started.elapsed().as_secs_f64(),
        cordon::nats_auth::NatsAuthArgs::default().agent_session_secs
    );
    for r in 0..reps {
        let with = rt.block_on(sequential(&secure.url, Some(&keys), samples))?;
        let without = rt.block_on(sequential(&open.url, None, samples))?;
        let (wall, failed) = rt.block_on(all_at_once(&secure.url, &keys))?;
        println!(
            "  run {r}: connect to first round trip p50 {:.2} ms p99 {:.2} ms with the callout, {:.2} ms / {:.2} ms without; {} agents at once: {:.2} s => {:.0} connects/s ({failed} failed)",
            percentile(&with, 0.5),
            percentile(&with, 0.99),
            percentile(&without, 0.5),
            percentile(&without, 0.99),
            keys.len(),
            wall,
            keys.len() as f64 / wall
        );
    }
    let session = cordon::nats_auth::NatsAuthArgs::default().agent_session_secs as f64;
    println!(
        "  steady state: {agents} agents re-authenticating every {session:.0} s => {:.0} connects/s asked of the callout",
        agents as f64 / session
    );
    rt.block_on(running.stop())?;
    Ok(())
}

/// (agent id, nkey seed) of `n` freshly enrolled keys.
fn enroll(api: &str, token: &str, n: usize) -> anyhow::Result<Vec<(String, String)>> {
    let mut keys = Vec::with_capacity(n);
    for _ in 0..n {
        let key = schemas::signed::AgentKey::generate()?;
        let body = serde_json::json!({"token": token, "public_key": key.public(),
            "proof": key.enroll_proof(token), "host": "bench"});
        let answer: serde_json::Value =
            ureq::post(&format!("{api}/api/v1/enroll")).send_json(&body)?.body_mut().read_json()?;
        let id = answer["agent_id"].as_str().unwrap_or_default().to_owned();
        let seed = sensor_agent::identity::nkey_seed(&key)?;
        keys.push((id, seed));
    }
    Ok(keys)
}

async fn connect(url: &str, key: Option<&(String, String)>) -> anyhow::Result<async_nats::Client> {
    let opts = match key {
        Some((id, seed)) => {
            async_nats::ConnectOptions::with_nkey(seed.clone()).custom_inbox_prefix(format!("_INBOX_{id}"))
        }
        None => async_nats::ConnectOptions::new(),
    };
    let client =
        opts.name("cordon-agent bench").connection_timeout(Duration::from_secs(30)).connect(url).await?;
    client.flush().await?;
    Ok(client)
}

/// Milliseconds from connect to first round trip, `n` times one after another, sorted.
async fn sequential(url: &str, keys: Option<&[(String, String)]>, n: usize) -> anyhow::Result<Vec<f64>> {
    let mut ms = Vec::with_capacity(n);
    for i in 0..n {
        let key = keys.map(|k| &k[i % k.len()]);
        let t = Instant::now();
        let client = connect(url, key).await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        drop(client);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    Ok(ms)
}

/// Every key connecting at once; (seconds until all are in, failures).
async fn all_at_once(url: &str, keys: &[(String, String)]) -> anyhow::Result<(f64, usize)> {
    let t = Instant::now();
    let tasks: Vec<_> = keys
        .iter()
        .cloned()
        .map(|k| {
            let url = url.to_owned();
            tokio::spawn(async move { connect(&url, Some(&k)).await })
        })
        .collect();
    let mut clients = Vec::new();
    let mut failed = 0;
    for t in tasks {
        match t.await? {
            Ok(c) => clients.push(c),
            Err(_) => failed += 1,
        }
    }
    let wall = t.elapsed().as_secs_f64();
    drop(clients);
    Ok((wall, failed))
}
