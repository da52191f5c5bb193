//! Nothing on the bus is trusted by position alone (RELIABILITY.md T9's bus half, issue 15 item 9):
//! - another publisher that sends a victim agent's next message ids first makes it lose nothing;
//! - agents apply only the policies and rule files the server's key signed, for their own tenant,
//!   never an older version;
//! - deleted streams and consumer come back, continuing after the catalog's checkpoint, and ingest
//!   resumes for every tenant.

use super::{Env, bin};
use async_nats::jetstream;
use serde_json::{Value, json};
use std::time::Duration;
use tests::{ServerOptions, agent, eventually, get, sql, token_as};

fn event(i: usize, who: &str) -> Value {
    json!({"@timestamp": schemas::time::format_micros(schemas::time::now_micros()),
           "event": {"id": format!("{who}-{i}"), "category": "process", "action": "start"},
           "host": {"name": format!("{who}-pc")}, "process": {"pid": 1000 + i, "command_line": format!("{who} {i}")}})
}

#[test]
fn a_victims_preempted_message_ids_lose_none_of_its_events() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (api, tok) = (env.server.api.clone(), env.token.clone());
    let rt = tokio::runtime::Runtime::new()?;
    let (acked, preempted, victim_id, attacker_id) = rt.block_on(async {
        // Two enrolled agents, each on its own connection with its own credential.
        let (client, victim_id) = tests::connect_agent(&env.nats.url).await?;
        let (attacker, attacker_id) = tests::connect_agent(&env.nats.url).await?;
        let id = sensor_agent::shipper::Identity {
            tenant: schemas::TenantId::default_tenant(),
            agent: schemas::AgentId::new(victim_id.clone())?,
            host: "victim-pc".into(),
        };
        let cfg = sensor_agent::shipper::ShipperConfig { batch_size: 10, ..Default::default() };
        let mut victim = sensor_agent::shipper::Shipper::open(
            client.clone(),
            &schemas::Subjects::default(),
            id,
            cfg,
            &env.dir.path().join("victim-spool"),
        )
        .await?;
        for i in 0..30 {
            victim.push(&event(i, "victim"))?;
        }
        let ids = victim.pending_ids();
        assert_eq!(ids.len(), 3);
        // The attacker learned the ids (heartbeats carry the next sequence) and sends them first,
        // from its own subject.
        let js = jetstream::new(attacker);
        for (k, msg_id) in ids.iter().enumerate() {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", msg_id.as_str());
            let body = format!("{}\n", event(k, "attacker"));
            let subject = format!("cordon.default.{attacker_id}.events");
            let ack = js.publish_with_headers(subject, h, body.into()).await?.await?;
            assert!(!ack.duplicate, "the attacker's copy is the first");
        }
        victim.flush(tokio::time::Instant::now() + Duration::from_secs(30)).await?;
        anyhow::Ok((victim.counters.events_acked, victim.counters.preempted_ids, victim_id, attacker_id))
    })?;
    assert_eq!((acked, preempted), (30, 3), "every batch was re-sent under a new id and acked");
    let stored = eventually(Duration::from_secs(30), || {
        let rows = sql(&api, &tok, &format!("SELECT count(*) FROM events WHERE agent_id = '{victim_id}'"))?;
        Ok((rows[0][0].as_u64() == Some(acked)).then_some(acked))
    })?;
    assert_eq!(stored, 30, "the victim lost none of what it was acked for");
    // The impostor messages were refused: dead-lettered and recorded as security events.
    let (_, dl) = get(&format!("{api}/api/v1/dead-letters?reason=msg_id_mismatch"), Some(&tok))?;
    let dl = dl["dead_letters"].as_array().unwrap();
    assert_eq!(dl.len(), 3, "{dl:?}");
    assert!(dl.iter().all(|d| d["agent_id"] == attacker_id.as_str()));
    let query = format!("SELECT count(*) FROM events WHERE agent_id = '{attacker_id}'");
    assert_eq!(sql(&api, &tok, &query)?[0][0], 0);
    let (_, m) = get(&format!("{api}/metrics"), Some(&tok))?;
    assert!(m.as_str().unwrap().contains("cordon_security_events_total{kind=\"msg_id_mismatch\"} 3"), "{m}");
    Ok(())
}

#[test]
fn agents_apply_only_what_the_servers_key_signed() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (api, tok) = (env.server.api.clone(), env.token.clone());
    let key = tests::server_key(&env.nats.url).expect("the server wrote its signing key");
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        // The operator's connection reads and (as an attacker with write access to the bucket would)
        // writes the bucket; the agent asks on its own connection.
        let operator = tests::connect_operator(&env.nats.url).await?;
        let (client, agent_id) = tests::connect_agent(&env.nats.url).await?;
        let js = jetstream::new(operator);
        // Two genuine versions, each waited for in the bucket (signed by the server).
        let (_, current) = get(&format!("{api}/api/v1/policy"), Some(&tok))?;
        let mut policy = current["policy"].clone();
        let mut genuine = Vec::new();
        for (v, tier) in [(0, "alert"), (1, "record")] {
            policy["techniques"]["T1486"] = json!(tier);
            let body = json!({"policy": policy, "reason": "test", "base_version": v});
            let (status, b) = tests::put(&format!("{api}/api/v1/policy"), Some(&tok), &body)?;
            assert_eq!(status, 200, "{b}");
            let bytes = eventually_async(|| async {
                let kv = js.get_key_value(schemas::policy::POLICY_BUCKET).await.ok()?;
                let value = kv.get("default").await.ok()??;
                let signed: schemas::signed::Signed = serde_json::from_slice(&value).ok()?;
                let p: schemas::policy::Published =
                    serde_json::from_str(signed.verify(schemas::signed::POLICY_DOMAIN, &key).ok()?).ok()?;
                (p.version == v + 1).then(|| value.to_vec())
            })
            .await?;
            genuine.push(bytes);
        }
        let genuine_v1 = genuine[0].clone();
        let kv = js.get_key_value(schemas::policy::POLICY_BUCKET).await?;

        // The agent asks the server on its own subject; the server answers with what the bucket holds.
        let me = sensor_agent::shipper::Identity {
            tenant: schemas::TenantId::new("default")?,
            agent: schemas::AgentId::new(agent_id)?,
            host: "EDGE-1".into(),
        };
        let subjects = schemas::subject::Subjects::default();
        let edge = sensor_agent::edge::Edge::new(None);
        edge.follow(client.clone(), &subjects, &me, Duration::from_millis(100), Some(key.clone())).await;
        assert_eq!(edge.summary().policy_version, 2, "the genuine policy applies");
        let blind = sensor_agent::edge::Edge::new(None);
        blind.follow(client.clone(), &subjects, &me, Duration::from_millis(100), None).await;
        assert_eq!(blind.summary().policy_version, 0, "without a server key nothing from the bus applies");

        // What an attacker with write access to the bucket can send.
        let (attacker, _) = schemas::signed::SigningKey::generate()?;
        let published = |version: i64, tenant: &str| {
            serde_json::to_string(&schemas::policy::Published {
                tenant: tenant.into(),
                version,
                author: "mallory".into(),
                rules_digest: String::new(),
                policy: schemas::policy::Policy::cordon_default(),
            })
        };
        let forged = [
            serde_json::to_vec(&attacker.sign(schemas::signed::POLICY_DOMAIN, published(9, "default")?))?,
            published(10, "default")?.into_bytes(),
            {
                let mut s = attacker.sign(schemas::signed::POLICY_DOMAIN, published(11, "default")?);
                s.key = key.clone();
                serde_json::to_vec(&s)?
            },
            genuine_v1.clone(),
        ];
        for (k, body) in forged.iter().enumerate() {
            kv.put("default", body.clone().into()).await?;
            let want = k as u64 + 1;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while edge.summary().refused < want && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(edge.summary().refused, want, "forgery {k} refused");
            assert_eq!(edge.summary().policy_version, 2, "forgery {k} changed nothing");
        }
        // Another tenant's genuine policy under this tenant's key.
        let other = {
            let (_, other_tok) = token_as(&bin(), &env.data, None, "other", "admin")?;
            let body = json!({"policy": policy, "reason": "other", "base_version": 0});
            let (status, _) = tests::put(&format!("{api}/api/v1/policy"), Some(&other_tok), &body)?;
            assert_eq!(status, 200);
            eventually_async(|| async { kv.get("other").await.ok().flatten() }).await?
        };
        kv.put("default", other).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while edge.summary().refused < 5 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            (edge.summary().refused, edge.summary().policy_version),
            (5, 2),
            "another tenant's policy"
        );

        // A rule bundle signed by another key.
        let store = js.get_object_store(schemas::policy::RULES_BUCKET).await?;
        let bundle = schemas::policy::RuleBundle { digest: "forged".into(), files: vec![] };
        let body = serde_json::to_vec(
            &attacker.sign(schemas::signed::RULES_DOMAIN, serde_json::to_string(&bundle)?),
        )?;
        let meta = jetstream::object_store::ObjectMetadata {
            name: schemas::policy::RULES_OBJECT.into(),
            metadata: [("digest".to_owned(), "forged".to_owned())].into(),
            ..Default::default()
        };
        let digest_before = edge.summary().rules_digest;
        store.put(meta, &mut body.as_slice()).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while edge.summary().refused < 6 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(edge.summary().refused, 6, "the forged rule bundle is refused");
        assert_eq!(edge.summary().rules_digest, digest_before);
        anyhow::Ok(())
    })
}

async fn eventually_async<T, F, Fut>(f: F) -> anyhow::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn deleted_streams_come_back_and_ingest_resumes_for_every_tenant() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (api, tok) = (env.server.api.clone(), env.token.clone());
    let sent =
        agent(&bin(), &env.nats.url, &env.spool(), &["replay", "builtin:log4j-conti"])?["events_acked"]
            .as_u64()
            .unwrap();
    eventually(Duration::from_secs(60), || Ok((tests::counts(&api, &tok)?.0 == sent).then_some(())))?;
    let (_, t2) = token_as(&bin(), &env.data, None, "t2", "admin")?;
    let (_, t3) = token_as(&bin(), &env.data, None, "t3", "admin")?;
    let rt = tokio::runtime::Runtime::new()?;
    let client = rt.block_on(tests::connect_operator(&env.nats.url))?;
    let (t2_agent, t2_id) = rt.block_on(tests::connect_agent_of(&env.nats.url, "t2"))?;
    let _in_runtime = rt.enter();
    let js = jetstream::new(client);

    // The dead-letter stream goes: a batch with a bad line cannot be dead-lettered until it is back.
    rt.block_on(js.delete_stream("CORDON_DLQ"))?;
    let body = format!("{}\n{{not json\n", event(1, "t2"));
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Msg-Id", format!("{t2_id}:1:1").as_str());
    let subject = format!("cordon.t2.{t2_id}.events");
    rt.block_on(async {
        jetstream::new(t2_agent).publish_with_headers(subject, h, body.into()).await?.await
    })?;
    eventually(Duration::from_secs(60), || {
        Ok((sql(&api, &t2, "SELECT count(*) FROM events")?[0][0] == 1).then_some(()))
    })?;
    let (_, dl) = get(&format!("{api}/api/v1/dead-letters"), Some(&t2))?;
    assert_eq!(dl["dead_letters"][0]["reason"], "invalid_json", "{dl}");

    // The events stream (and with it the consumer) goes: it comes back after the checkpoint.
    let seqs = |js: &jetstream::Context| {
        rt.block_on(async {
            let mut s = js.get_stream("CORDON_EVENTS").await?;
            let i = s.info().await?;
            anyhow::Ok((i.state.first_sequence, i.state.last_sequence))
        })
    };
    let last = seqs(&js)?.1;
    rt.block_on(js.delete_stream("CORDON_EVENTS"))?;
    let spool3 = env.dir.path().join("spool3");
    let sent3 = agent(&bin(), &env.nats.url, &spool3, &["--tenant", "t3", "replay", "builtin:log4j-conti"])?
        ["events_acked"]
        .as_u64()
        .unwrap();
    assert_eq!(sent3, sent);
    eventually(Duration::from_secs(60), || Ok((tests::counts(&api, &t3)?.0 == sent3).then_some(())))?;
    let first = seqs(&js)?.0;
    assert!(first > last, "the new stream continues after the checkpoint ({first} after {last})");
    assert_eq!(tests::counts(&api, &tok)?.0, sent, "the first tenant's events are all there");

    let (_, m) = get(&format!("{api}/metrics"), Some(&tok))?;
    let m = m.as_str().unwrap_or("");
    let value = |name: &str| {
        m.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<u64>().ok())).unwrap_or(0)
    };
    assert!(value("cordon_ingest_streams_recreated_total") >= 2, "{m}");
    assert!(value("cordon_security_events_total{kind=\"stream_deleted\"}") >= 2, "{m}");
    eventually(Duration::from_secs(10), || {
        let (_, m) = get(&format!("{api}/metrics"), Some(&tok))?;
        Ok(m.as_str().unwrap_or("").contains("cordon_ingest_consumer_up 1").then_some(()))
    })?;
    Ok(())
}

/// T8 at test scale: one agent sends 5,000 events at once against a quota of 100 events/s (bursts of
/// 10 s) while ten others send well under theirs; the flooder is held to its quota, every refused
/// event is counted, it raises a flooding alert, and every other agent's events are stored.
#[test]
fn a_flooding_agent_is_held_to_its_quota_and_the_others_are_not() -> anyhow::Result<()> {
    let opts =
        ServerOptions { args: vec!["--agent-events-per-sec".into(), "100".into()], ..Default::default() };
    let env = Env::start(&opts)?;
    let (api, tok) = (env.server.api.clone(), env.token.clone());
    let mut lines = vec![
        json!({"scenario": "flood", "hosts": [{"agent": "flooder", "name": "FLOOD-1", "os": "linux"}]})
            .to_string(),
    ];
    for i in 0..5_000 {
        lines.push(json!({"at_ms": 0, "agent": "flooder", "event": event(i, "flood")}).to_string());
    }
    let path = env.dir.path().join("flood.ndjson");
    std::fs::write(&path, lines.join("\n") + "\n")?;
    let started = std::time::Instant::now();
    let normal = tests::spawn_agent(
        &bin(),
        &env.nats.url,
        &env.dir.path().join("normal-spool"),
        &["--no-edge-rules", "simulate", "--hosts", "10", "--rate", "200", "--duration", "4"],
    )?;
    let flood = agent(
        &bin(),
        &env.nats.url,
        &env.dir.path().join("flood-spool"),
        &["--no-edge-rules", "replay", path.to_str().unwrap()],
    )?;
    let (code, normal) = tests::agent_summary(normal)?;
    assert_eq!(code, 0, "{normal}");
    let flood_acked = flood["events_acked"].as_u64().unwrap();
    let normal_acked = normal["events_acked"].as_u64().unwrap();
    assert_eq!(flood_acked, 5_000);
    // Its agent id is the one derived from the key it enrolled, as it reports.
    let flooder = flood["agents"][0]["agent"].as_str().unwrap().to_owned();
    let dropped = |m: &str| {
        m.lines()
            .find_map(|l| {
                l.strip_prefix("cordon_ingest_quota_dropped_events_total ")
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    // Everything acked is either stored or refused, exactly.
    let (stored, refused) = eventually(Duration::from_secs(60), || {
        let stored = sql(&api, &tok, &format!("SELECT count(*) FROM events WHERE agent_id = '{flooder}'"))?
            [0][0]
            .as_u64()
            .unwrap_or(0);
        let (_, m) = get(&format!("{api}/metrics"), Some(&tok))?;
        let refused = dropped(m.as_str().unwrap_or(""));
        Ok((stored + refused == flood_acked).then_some((stored, refused)))
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(stored >= 1_000, "the burst is admitted: {stored}");
    assert!(
        (stored as f64) <= 1_000.0 + 100.0 * elapsed + 100.0,
        "held to 100/s after the burst: {stored} in {elapsed:.1} s"
    );
    assert!(refused > 0);
    // The others are unaffected.
    eventually(Duration::from_secs(60), || {
        let n = sql(&api, &tok, &format!("SELECT count(*) FROM events WHERE agent_id <> '{flooder}'"))?[0][0]
            .as_u64()
            .unwrap_or(0);
        Ok((n == normal_acked).then_some(()))
    })?;
    // The flooding alert, and the refused messages in the dead letters.
    let (_, alerts) = get(&format!("{api}/api/v1/alerts"), Some(&tok))?;
    let flooding: Vec<&Value> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule"]["id"] == "cordon_agent_flooding")
        .collect();
    assert_eq!(flooding.len(), 1, "{alerts}");
    assert_eq!(flooding[0]["endpoint"]["name"], flooder.as_str());
    let (_, dl) = get(&format!("{api}/api/v1/dead-letters?reason=over_quota&limit=1000"), Some(&tok))?;
    let dl = dl["dead_letters"].as_array().unwrap();
    assert!(!dl.is_empty() && dl.iter().all(|d| d["agent_id"] == flooder.as_str()));
    eprintln!(
        "T8 (test scale): flooder acked {flood_acked}, stored {stored}, refused {refused} in {elapsed:.1} s; 10 others: {normal_acked} acked, all stored"
    );
    Ok(())
}
