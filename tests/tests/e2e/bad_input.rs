//! Hostile and malformed input: every bad line rejected with a counted reason and kept in the
//! dead-letter stream; the good lines around it stored; identity from the subject only.

use super::Env;
use async_nats::jetstream;
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;
use tests::{ServerOptions, eventually, get, sql};

fn good(i: usize) -> Value {
    json!({"@timestamp": schemas::time::format_micros(schemas::time::now_micros()), "event": {"id": format!("good-{i}"), "category": "process", "action": "start"},
           "host": {"name": "lab-1"}, "process": {"pid": i, "command_line": format!("good {i}")}})
}

#[test]
fn bad_lines_are_rejected_counted_dead_lettered_and_good_lines_kept() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (n, server, tok) = (&env.nats, &env.server, env.token.as_str());

    let mut body = Vec::new();
    let mut push = |line: &[u8]| {
        body.extend_from_slice(line);
        body.push(b'\n');
    };
    push(good(1).to_string().as_bytes());
    push(b"{this is not json");
    push(good(2).to_string().as_bytes());
    push(b"{\"message\": \"\xff\xfe invalid utf-8\"}");
    push(format!("{}1{}", "{\"a\":".repeat(60), "}".repeat(60)).as_bytes());
    push(
        json!({"cordon": {"agent": {"id": "web-north"}}, "message": "speaking for another agent"})
            .to_string()
            .as_bytes(),
    );
    push(
        json!({"organization": {"id": "other-tenant"}, "message": "claiming another tenant"})
            .to_string()
            .as_bytes(),
    );
    push(json!({"message": "x".repeat(300 * 1024)}).to_string().as_bytes());
    push(json!({"process": {"pid": "not-a-number"}}).to_string().as_bytes());
    // Kept: unknown fields go to `extra`; a far-past time is flagged; a formula string stays inert data.
    let mut odd = good(3);
    odd["vendor"] = json!({"sensor_build": "7.1", "tags": ["a", "b"]});
    odd["@timestamp"] = json!("2001-01-01T00:00:00Z");
    odd["process"]["command_line"] = json!("=HYPERLINK(\"http://evil\")\u{0000}");
    push(odd.to_string().as_bytes());
    // Kept: a Winlogbeat event as it ships (ECS lists, nanoseconds, the beat's own `agent.*`).
    let now = schemas::time::format_micros(schemas::time::now_micros());
    let beat = json!({"@timestamp": now.replace('Z', "789Z"), "agent": {"id": "8b5c2e7e-1f0a", "type": "winlogbeat", "version": "8.15.0"},
        "event": {"id": "good-4", "category": ["process"], "type": ["start"], "action": "start"},
        "host": {"name": "lab-1", "ip": ["10.0.0.7"]}, "process": {"pid": 4, "command_line": "beat 4"}});
    push(beat.to_string().as_bytes());
    let good_lines = 4;
    let bad_reasons = [
        "invalid_json",
        "invalid_utf8",
        "too_deep",
        "identity_mismatch",
        "identity_mismatch",
        "too_large",
        "bad_field",
    ];

    let rt = tokio::runtime::Runtime::new()?;
    let agent = rt.block_on(async {
        // An enrolled agent's own connection: it may publish only on its own subject.
        let (client, agent) = tests::connect_agent(&n.url).await?;
        let subject = format!("cordon.default.{agent}.events");
        let js = jetstream::new(client);
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", format!("{agent}:1:1").as_str());
        js.publish_with_headers(subject.clone(), h, body.into()).await?.await?;
        // A whole message over the size cap (8 MiB by default) is refused by JetStream itself.
        let huge = vec![b'{'; 9 * 1024 * 1024];
        let refused = js.publish(subject.clone(), huge.into()).await;
        let refused = match refused {
            Ok(ack) => ack.await.is_err(),
            Err(_) => true,
        };
        assert!(refused, "an oversized message must be refused at publish");
        // A zstd bomb: small on the wire, over the cap decompressed.
        let bomb = zstd::bulk::compress(&vec![b' '; 20 * 1024 * 1024], 3)?;
        let mut h = async_nats::HeaderMap::new();
        h.insert("Content-Encoding", "zstd");
        js.publish_with_headers(subject, h, bomb.into()).await?.await?;
        anyhow::Ok(agent)
    })?;

    let stored = eventually(Duration::from_secs(30), || {
        let rows = sql(&server.api, tok, "SELECT event_id FROM events ORDER BY event_id")?;
        Ok((rows.len() >= good_lines).then_some(rows))
    })?;
    let ids: Vec<&str> = stored.iter().map(|r| r[0].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["good-1", "good-2", "good-3", "good-4"]);
    let rows =
        sql(&server.api, tok, "SELECT event_kind, agent_id, extra FROM events WHERE event_id = 'good-4'")?;
    assert_eq!(rows[0][0], "process", "a one-item list is its item");
    assert_eq!(rows[0][1], agent.as_str(), "the beat's agent.id is not Cordon's identity");
    let extra: Value = serde_json::from_str(rows[0][2].as_str().unwrap())?;
    assert_eq!(extra["agent"]["type"], "winlogbeat", "the shipper is kept as sent");

    let rows = sql(
        &server.api,
        tok,
        "SELECT extra, time_skewed, agent_id, tenant, process_command_line FROM events WHERE event_id = 'good-3'",
    )?;
    let extra: Value = serde_json::from_str(rows[0][0].as_str().unwrap())?;
    assert_eq!(extra, json!({"vendor": {"sensor_build": "7.1", "tags": ["a", "b"]}}));
    assert_eq!(rows[0][1], json!(true));
    assert_eq!(rows[0][2], agent.as_str(), "agent comes from the subject");
    assert_eq!(rows[0][3], "default", "tenant comes from the subject");
    assert!(rows[0][4].as_str().unwrap().starts_with("=HYPERLINK"));
    let (_, found) = get(&format!("{}/api/v1/search?q=sensor_build", server.api), Some(tok))?;
    assert_eq!(found["total"], 0, "unknown fields are kept, not indexed");
    let (_, page) = get(&format!("{}/api/v1/hosts/lab-1/timeline?limit=10", server.api), Some(tok))?;
    let g3 = page["events"].as_array().unwrap().iter().find(|e| e["event"]["id"] == "good-3").unwrap();
    assert_eq!(g3["vendor"]["sensor_build"], "7.1", "unknown fields come back where they were sent");

    // Every reject is counted by reason...
    // (The zstd bomb is a separate message and may be fetched after the good lines are stored.)
    let metrics = eventually(Duration::from_secs(30), || {
        let (_, m) = get(&format!("{}/metrics", server.api), Some(tok))?;
        let m = m.as_str().unwrap_or("").to_owned();
        Ok(m.contains("reason=\"message_too_large\"").then_some(m))
    })?;
    for reason in ["invalid_json", "invalid_utf8", "too_deep", "too_large", "bad_field", "message_too_large"]
    {
        assert!(
            metrics.contains(&format!("cordon_ingest_rejected_total{{reason=\"{reason}\"}}")),
            "{reason} not counted:\n{metrics}"
        );
    }
    assert!(metrics.contains("cordon_ingest_rejected_total{reason=\"identity_mismatch\"} 2"), "{metrics}");
    assert!(metrics.contains("cordon_security_events_total{kind=\"identity_mismatch\"} 2"), "{metrics}");

    // ...and kept in the dead-letter stream with its reason.
    let reasons = rt.block_on(async {
        let client = tests::connect_operator(&n.url).await?;
        let js = jetstream::new(client);
        let stream = js.get_stream("CORDON_DLQ").await?;
        let consumer: jetstream::consumer::PullConsumer = stream
            .create_consumer(jetstream::consumer::pull::Config { durable_name: None, ..Default::default() })
            .await?;
        let mut msgs = consumer.fetch().max_messages(100).expires(Duration::from_secs(2)).messages().await?;
        let mut reasons = Vec::new();
        while let Some(m) = msgs.next().await {
            let m = m.map_err(|e| anyhow::anyhow!(e))?;
            let v: Value = serde_json::from_slice(&m.payload)?;
            reasons.push(v["reason"].as_str().unwrap_or("").to_owned());
        }
        anyhow::Ok(reasons)
    })?;
    let mut expected: Vec<String> = bad_reasons.iter().map(|s| s.to_string()).collect();
    expected.push("message_too_large".into());
    expected.sort();
    let mut got = reasons.clone();
    got.sort();
    assert_eq!(got, expected);

    // Operators see the same dead letters over the API (rule authors and admins, not viewers), with
    // the agent that sent each and the raw line, so a misconfigured shipper shows why.
    let (_, author) = tests::token_as(&super::bin(), &env.data, None, "default", "rule_author")?;
    let (_, viewer) = tests::token_as(&super::bin(), &env.data, None, "default", "viewer")?;
    let url = format!("{}/api/v1/dead-letters?limit=100", server.api);
    let (status, page) = get(&url, Some(&author))?;
    assert_eq!(status, 200, "{page}");
    let items = page["dead_letters"].as_array().unwrap();
    let mut api_reasons: Vec<String> =
        items.iter().map(|d| d["reason"].as_str().unwrap().to_owned()).collect();
    api_reasons.sort();
    assert_eq!(api_reasons, expected, "the API lists every dead letter once");
    assert!(items.iter().all(|d| d["agent_id"] == agent.as_str()), "{page}");
    let json_bad = items.iter().find(|d| d["reason"] == "invalid_json").unwrap();
    assert_eq!(json_bad["raw"], "{this is not json");
    assert_eq!(json_bad["line"], 1);
    let (status, only) = get(&format!("{url}&reason=identity_mismatch"), Some(&author))?;
    assert_eq!((status, only["dead_letters"].as_array().unwrap().len()), (200, 2));
    let (status, _) = get(&url, Some(&viewer))?;
    assert_eq!(status, 403, "viewers do not read dead letters");
    Ok(())
}
