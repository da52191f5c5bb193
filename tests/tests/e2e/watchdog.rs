//! Issue 19 item 1: a silenced agent is itself a signal. A live agent's heartbeats carry its
//! sources' health; the server alerts, with the agent's last known state, when a live agent stops
//! heartbeating (killed: level 4; stopped deliberately: level 2), when a source stops or a steady
//! source goes quiet while heartbeats go on, and when batch sequence numbers the agent was acked
//! for never reach ingest.

use super::{Env, bin};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;
use tests::{ServerOptions, eventually, get};

fn watchful() -> ServerOptions {
    ServerOptions {
        args: ["--agent-dead-secs", "4", "--agent-quiet-secs", "10"].map(str::to_owned).to_vec(),
        ..Default::default()
    }
}

/// The alerts of one rule about one agent.
fn alerts_of(api: &str, tok: &str, rule: &str, agent: &str) -> anyhow::Result<Vec<Value>> {
    let (_, v) = get(&format!("{api}/api/v1/alerts?limit=500"), Some(tok))?;
    Ok(v["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["rule"]["id"] == rule && a["endpoint"]["name"] == agent)
        .collect())
}

fn agent_view(api: &str, tok: &str, host: &str) -> anyhow::Result<Option<Value>> {
    let (_, v) = get(&format!("{api}/api/v1/agents"), Some(tok))?;
    Ok(v["agents"].as_array().and_then(|l| l.iter().find(|a| a["host"] == host).cloned()))
}

#[test]
fn a_live_agent_reports_its_sources_and_its_silence_is_alerted() -> anyhow::Result<()> {
    let env = Env::start(&watchful())?;
    let (api, tok) = (env.server.api.as_str(), env.token.as_str());
    let run = |host: &str, spool: &str| {
        tests::spawn_agent(
            &bin(),
            &env.nats.url,
            &env.dir.path().join(spool),
            &["--heartbeat-secs", "1", "run", "--host", host, "--max-secs", "300"],
        )
    };
    let killed = run("live-killed", "s1")?;
    let stopped = run("live-stopped", "s2")?;
    // Each heartbeat reports the process source: running on the connector, counting events.
    let view = eventually(Duration::from_secs(30), || {
        let _ = Command::new("/bin/true").status();
        let v = agent_view(api, tok, "live-killed")?;
        Ok(v.filter(|a| a["sources"][0]["events"].as_u64() > Some(0)))
    })?;
    let p = &view["sources"][0];
    assert_eq!(
        (p["name"].as_str(), p["facility"].as_str(), p["running"].as_bool()),
        (Some("process"), Some("netlink"), Some(true)),
        "{view}"
    );
    assert_eq!((p["steady"].as_bool(), p["dropped"].as_u64()), (Some(true), Some(0)), "{view}");
    eventually(Duration::from_secs(30), || {
        Ok(agent_view(api, tok, "live-stopped")?.filter(|a| a["sources"][0]["events"].as_u64() > Some(0)))
    })?;
    let killed_id = view["agent_id"].as_str().unwrap().to_owned();
    let stopped_id = agent_view(api, tok, "live-stopped")?.unwrap()["agent_id"].as_str().unwrap().to_owned();
    assert!(alerts_of(api, tok, "cordon_agent_silent", &killed_id)?.is_empty(), "heard from: no alert");

    // One is killed outright, the other stopped with SIGTERM (its last heartbeat says so).
    Command::new("kill").args(["-KILL", &killed.id().to_string()]).status()?;
    Command::new("kill").args(["-TERM", &stopped.id().to_string()]).status()?;
    let (code, _) = tests::agent_summary(stopped)?;
    assert_eq!(code, 0);
    let _ = killed.wait_with_output();
    let silent = eventually(Duration::from_secs(30), || {
        let a = alerts_of(api, tok, "cordon_agent_silent", &killed_id)?;
        Ok((!a.is_empty()).then_some(a))
    })?;
    assert_eq!(silent.len(), 1, "{silent:?}");
    let a = &silent[0];
    assert_eq!((a["level"].as_u64(), a["techniques"][0]["id"].as_str()), (Some(4), Some("T1562.001")), "{a}");
    assert!(a["description"].as_str().unwrap().contains("without saying it was stopping"), "{a}");
    assert_eq!(a["why"]["last_state"]["sources"][0]["name"], "process", "the last known state: {a}");
    assert_eq!(a["why"]["last_state"]["host"], "live-killed");
    let bye = eventually(Duration::from_secs(30), || {
        let a = alerts_of(api, tok, "cordon_agent_silent", &stopped_id)?;
        Ok((!a.is_empty()).then_some(a))
    })?;
    assert_eq!(
        (bye.len(), bye[0]["level"].as_u64()),
        (1, Some(2)),
        "a deliberate stop is noted lower: {bye:?}"
    );
    assert_eq!(agent_view(api, tok, "live-stopped")?.unwrap()["stopping"], true);
    // A silence is raised once, however many rounds see it.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(alerts_of(api, tok, "cordon_agent_silent", &killed_id)?[0]["count"], 1);
    Ok(())
}

#[test]
fn missing_sequence_numbers_and_quiet_or_stopped_sources_are_alerted() -> anyhow::Result<()> {
    let env = Env::start(&watchful())?;
    let (api, tok) = (env.server.api.clone(), env.token.clone());
    let rt = tokio::runtime::Runtime::new()?;
    let agent = rt.block_on(async {
        let (client, agent) = tests::connect_agent(&env.nats.url).await?;
        let js = async_nats::jetstream::new(client.clone());
        let boot = 77u64;
        // Batches 1, 3 and 5 reach the bus; 2 was removed on the way; 4 went out again under
        // another id (the agent says so in `reissued`).
        for seq in [1u64, 3, 5] {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", format!("{agent}:{boot}:{seq}").as_str());
            let e = json!({"@timestamp": schemas::time::format_micros(schemas::time::now_micros()),
                "event": {"id": format!("w-{seq}"), "category": "process", "action": "start"},
                "host": {"name": "gappy"}, "process": {"pid": 100 + seq}});
            js.publish_with_headers(format!("cordon.default.{agent}.events"), h, format!("{e}\n").into())
                .await?
                .await?;
        }
        let now = schemas::time::now_micros();
        let hb = |time: i64| {
            json!({"boot": boot, "next_seq": 6, "acked_through": 5, "reissued": [4], "events_in": 3,
                "events_acked": 3, "events_spooled": 0, "events_dropped": 0, "spool_bytes": 0,
                "host": "gappy", "time": time, "sources": [
                    {"name": "process", "facility": "netlink", "running": true, "steady": true,
                     "events": 3, "dropped": 0, "last_event": now - 60_000_000},
                    {"name": "network", "facility": "sock_diag", "running": false, "steady": true,
                     "events": 0, "dropped": 0, "note": "sock_diag: permission denied"}]})
        };
        for _ in 0..12 {
            client
                .publish(
                    format!("cordon.default.{agent}.hb"),
                    hb(schemas::time::now_micros()).to_string().into(),
                )
                .await?;
            client.flush().await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        anyhow::Ok(agent)
    })?;
    let (api, tok) = (api.as_str(), tok.as_str());
    let find = |rule: &str| {
        eventually(Duration::from_secs(30), || {
            let a = alerts_of(api, tok, rule, &agent)?;
            Ok((!a.is_empty()).then_some(a))
        })
    };
    let gap = find("cordon_agent_sequence_gap")?;
    assert_eq!(gap.len(), 1, "{gap:?}");
    let d = gap[0]["description"].as_str().unwrap();
    assert!(d.contains("1 batch(es) of boot 77") && d.ends_with(": 2"), "only 2 is missing: {d}");
    assert_eq!(gap[0]["techniques"][0]["id"], "T1562.006");
    let quiet = find("cordon_agent_source_quiet")?;
    assert!(
        quiet[0]["description"].as_str().unwrap().contains("process source has sent nothing"),
        "{quiet:?}"
    );
    let stopped = find("cordon_agent_source_stopped")?;
    assert!(
        stopped[0]["description"].as_str().unwrap().contains("sock_diag: permission denied"),
        "{stopped:?}"
    );
    // The heartbeats stopped with the loop: the agent is silent now, and never said it was stopping.
    let silent = find("cordon_agent_silent")?;
    assert_eq!(silent[0]["level"], 4);
    // The stored batches are all there: the alert is about what is missing, not about what arrived.
    let rows = tests::sql(api, tok, &format!("SELECT count(*) FROM events WHERE agent_id = '{agent}'"))?;
    assert_eq!(rows[0][0], 3);
    Ok(())
}
