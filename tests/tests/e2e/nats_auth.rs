//! Authentication on the bus (RELIABILITY.md T9 and the NATS half of T15): nats-server with Cordon's
//! auth callout, agents connecting with their enrolled keys. An agent reaches only its own subjects;
//! unknown, anonymous and revoked keys are refused; a revoked agent's live connection is cut within
//! its session; one key used by two processes is alerted.

use super::bin;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tests::{ServerOptions, eventually, get, post, sql};

/// A system on an authenticated bus.
struct Secure {
    server: tests::Server,
    nats: tests::NatsServer,
    data: std::path::PathBuf,
    token: String,
    dir: tempfile::TempDir,
}

impl Secure {
    fn start(opts: &ServerOptions) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let nats = tests::start_nats(&dir.path().join("nats")).unwrap_or_else(|e| panic!("{e:#}"));
        let data = dir.path().join("data");
        let server = tests::Server::start(&bin(), &data, &nats.url, opts)?;
        let token = tests::token(&bin(), &data, None)?;
        Ok(Self { server, nats, data, token, dir })
    }

    /// Enrolls a fresh key of `tenant` through the API; (key, agent id).
    fn enroll(&self, tenant: &str) -> anyhow::Result<(schemas::signed::AgentKey, String)> {
        let (_, token) = tests::enroll_token(&bin(), &self.data, tenant, 1)?;
        let key = schemas::signed::AgentKey::generate()?;
        let body = json!({"token": token, "public_key": key.public(), "proof": key.enroll_proof(&token), "host": "h"});
        let (status, answer) = post(&format!("{}/api/v1/enroll", self.server.api), None, &body)?;
        anyhow::ensure!(status == 200, "enroll: {answer}");
        Ok((key, answer["agent_id"].as_str().unwrap_or_default().to_owned()))
    }

    fn count(&self, query: &str) -> anyhow::Result<i64> {
        Ok(sql(&self.server.api, &self.token, query)?[0][0].as_i64().unwrap_or(-1))
    }
}

/// The server errors a connection was sent (permission violations among them).
type Errors = Arc<Mutex<Vec<String>>>;

/// Connects as `key` with the connection name `cordon-agent <boot>`; the server errors it gets.
async fn connect_as(
    url: &str,
    key: Option<&schemas::signed::AgentKey>,
    agent: &str,
    boot: &str,
) -> Result<(async_nats::Client, Errors), async_nats::ConnectError> {
    let errors: Errors = Arc::default();
    let seen = Arc::clone(&errors);
    let opts = match key {
        Some(k) => async_nats::ConnectOptions::with_nkey(
            sensor_agent::identity::nkey_seed(k).expect("an agent key is an nkey"),
        ),
        None => async_nats::ConnectOptions::new(),
    };
    let client = opts
        .name(format!("cordon-agent {boot}"))
        .custom_inbox_prefix(format!("_INBOX_{agent}"))
        .event_callback(move |event| {
            let seen = Arc::clone(&seen);
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    seen.lock().unwrap().push(e.to_string().to_lowercase());
                }
            }
        })
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await?;
    Ok((client, errors))
}

fn violations(errors: &Errors) -> usize {
    errors.lock().unwrap().iter().filter(|e| e.contains("permissions violation")).count()
}

#[test]
fn an_agent_reaches_only_its_own_subjects() -> anyhow::Result<()> {
    let sys = Secure::start(&ServerOptions::default())?;
    let url = sys.nats.url.clone();
    // A real agent, enrolled on the fly, ships the scenario through the callout: all of it stored.
    let spool = sys.dir.path().join("spool");
    let sent = tests::agent(&bin(), &url, &spool, &["replay", "builtin:log4j-conti"])?;
    let acked = sent["events_acked"].as_i64().unwrap();
    assert_eq!(acked, fixtures::scenario::log4j_conti().events.len() as i64, "{sent}");
    eventually(Duration::from_secs(60), || {
        Ok((sys.count("SELECT count(*) FROM events")? == acked).then_some(()))
    })?;
    let ids: Vec<String> =
        sent["agents"].as_array().unwrap().iter().map(|a| a["agent"].as_str().unwrap().to_owned()).collect();
    assert!(ids.iter().all(|id| id.len() == 21 && id.starts_with('a')), "ids derive from keys: {ids:?}");

    let (attacker_key, attacker) = sys.enroll("default")?;
    let (victim_key, victim) = sys.enroll("default")?;
    let rt = tokio::runtime::Runtime::new()?;
    let (refused_connects, delivered, errors, streams) = rt.block_on(async {
        // No key, and a key nobody enrolled: refused at connect.
        let anonymous = connect_as(&url, None, "x", "b0").await.is_err();
        let stranger = schemas::signed::AgentKey::generate()?;
        let unknown = connect_as(&url, Some(&stranger), "x", "b0").await.is_err();

        let (victim_c, _) = connect_as(&url, Some(&victim_key), &victim, "v1").await?;
        let mut victim_cmds = victim_c.subscribe(format!("cordon.default.{victim}.cmd")).await?;
        victim_c.flush().await?;
        let (c, errors) = connect_as(&url, Some(&attacker_key), &attacker, "a1").await?;
        let line =
            json!({"@timestamp": "2026-12-01T00:00:00Z", "event": {"kind": "event", "category": "process",
            "action": "start"}, "host": {"name": "forged"}, "process": {"name": "forged.exe"}})
            .to_string();
        // 1-2: events as another agent and as another tenant's agent.
        c.publish(format!("cordon.default.{victim}.events"), line.clone().into()).await?;
        c.publish(format!("cordon.t2.{attacker}.events"), line.clone().into()).await?;
        // 3-4: read another agent's commands and inbox; everything.
        let mut stolen = c.subscribe(format!("cordon.default.{victim}.cmd")).await?;
        let _inbox = c.subscribe(format!("_INBOX_{victim}.>")).await?;
        let _all = c.subscribe(">").await?;
        // 5: send a command.
        let cmd = json!({"kind": "terminate", "pid": 1, "exe": "/sbin/init"}).to_string();
        c.publish(format!("cordon.default.{victim}.cmd"), cmd.clone().into()).await?;
        c.publish(format!("cordon.default.{attacker}.cmd"), cmd.into()).await?;
        // 6: the JetStream API (delete the events stream) and the system account.
        c.publish("$JS.API.STREAM.DELETE.CORDON_EVENTS", "".into()).await?;
        c.publish("$SYS.REQ.SERVER.PING", "".into()).await?;
        // 7: its own subject, with a reply subject naming the victim's (the stream's ack would be
        // written there, where the stream captures it).
        c.publish_with_reply(
            format!("cordon.default.{attacker}.events"),
            format!("cordon.default.{victim}.events"),
            line.into(),
        )
        .await?;
        c.flush().await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut delivered = 0;
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_millis(200), futures::StreamExt::next(&mut victim_cmds)).await
        {
            delivered += 1;
        }
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_millis(200), futures::StreamExt::next(&mut stolen)).await
        {
            delivered += 1;
        }
        let streams = async_nats::jetstream::new(c.clone()).get_stream("CORDON_EVENTS").await.is_ok();
        anyhow::Ok(([anonymous, unknown], delivered, errors, streams))
    })?;
    assert_eq!(refused_connects, [true, true], "anonymous and unknown keys are refused");
    assert_eq!(delivered, 0, "no command reached the victim or the attacker");
    assert!(!streams, "an agent has no JetStream API access");
    // Every forbidden publish and subscribe was refused by nats-server (1, 2, 3 x3, 5 x2, 6 x2, and
    // the stream-info request above).
    let refused = violations(&errors);
    assert!(refused >= 9, "permission violations: {:?}", errors.lock().unwrap());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sys.count(&format!("SELECT count(*) FROM events WHERE agent_id = '{victim}'"))?, 0);
    assert_eq!(
        sys.count("SELECT count(*) FROM events WHERE host_name = 'forged' AND tenant <> 'default'")?,
        0
    );
    // The stream is there and ingest goes on: the attacker's own event (its only allowed one) lands.
    eventually(Duration::from_secs(30), || {
        Ok((sys.count(&format!("SELECT count(*) FROM events WHERE agent_id = '{attacker}'"))? == 1)
            .then_some(()))
    })?;
    let (_, metrics) = get(&format!("{}/metrics", sys.server.api), Some(&sys.token))?;
    let text = metrics.as_str().unwrap_or_default();
    assert!(text.contains("cordon_nats_auth_total{outcome=\"unknown_key\"}"), "{text}");
    assert!(text.contains("cordon_nats_auth_total{outcome=\"no_key\"}"), "{text}");
    // The stream's acknowledgement, sent to the victim's subject as the attacker asked, was caught.
    assert!(text.contains("cordon_security_events_total{kind=\"reply_injection\"} 1"), "{text}");
    Ok(())
}

#[test]
fn a_revoked_agent_is_cut_off_and_a_cloned_key_is_alerted() -> anyhow::Result<()> {
    let session = 4;
    let opts = ServerOptions {
        args: vec!["--agent-session-secs".into(), session.to_string()],
        ..Default::default()
    };
    let sys = Secure::start(&opts)?;
    let url = sys.nats.url.clone();
    let (key, agent) = sys.enroll("default")?;
    let (restarted_key, restarted) = sys.enroll("default")?;
    let rt = tokio::runtime::Runtime::new()?;
    let dd = sys.data.display().to_string();
    let (clone_after, cut_after) = rt.block_on(async {
        // A restart is not a clone: one boot id stops, another takes over.
        let (first, _) = connect_as(&url, Some(&restarted_key), &restarted, "r1").await?;
        tokio::time::sleep(Duration::from_secs(session + 1)).await;
        drop(first);
        let (_second, _) = connect_as(&url, Some(&restarted_key), &restarted, "r2").await?;
        // A clone: the same key from two processes at once.
        let (original, _) = connect_as(&url, Some(&key), &agent, "boot-a").await?;
        let started = Instant::now();
        let (_copy, _) = connect_as(&url, Some(&key), &agent, "boot-b").await?;
        let alerts = format!("{}/api/v1/alerts?limit=100", sys.server.api);
        let clone_after = loop {
            let (_, page) = get(&alerts, Some(&sys.token))?;
            let hit = page["alerts"].as_array().into_iter().flatten().any(|a: &Value| {
                a["rule"]["id"] == "cordon_agent_credential_clone" && a["object"] == format!("agent {agent}")
            });
            if hit {
                break started.elapsed();
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "no clone alert within 60 s: {page}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let (_, page) = get(&alerts, Some(&sys.token))?;
        let wrongly = page["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a: &Value| a["object"] == format!("agent {restarted}"));
        anyhow::ensure!(!wrongly, "a restart was taken for a clone: {page}");

        // Revocation under load: the agent keeps publishing, a fleet of 20 ships beside it; its live
        // connection is cut and reconnection refused within one session.
        let fleet = tests::spawn_agent(
            &bin(),
            &url,
            &sys.dir.path().join("fleet-spool"),
            &["--no-edge-rules", "simulate", "--hosts", "20", "--rate", "2000", "--duration", "15"],
        )?;
        let subject = format!("cordon.default.{agent}.events");
        let publisher = {
            let (client, subject) = (original.clone(), subject.clone());
            tokio::spawn(async move {
                for i in 0u64.. {
                    let line = json!({"@timestamp": schemas::time::format_micros(schemas::time::now_micros()),
                        "event": {"id": format!("revoked-{i}"), "category": "process", "action": "start"},
                        "host": {"name": "revoked-pc"}});
                    let _ = client.publish(subject.clone(), format!("{line}\n").into()).await;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (code, _) = tests::run(&bin(), &["agent", "revoke", &agent, "--data-dir", &dd])?;
        anyhow::ensure!(code == 0, "agent revoke failed");
        let revoked = Instant::now();
        loop {
            let state = original.connection_state();
            if state != async_nats::connection::State::Connected {
                break;
            }
            anyhow::ensure!(
                revoked.elapsed() < Duration::from_secs(60),
                "still connected 60 s after revocation"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let cut_after = revoked.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        anyhow::ensure!(
            original.connection_state() != async_nats::connection::State::Connected,
            "reconnected after revocation"
        );
        anyhow::ensure!(
            connect_as(&url, Some(&key), &agent, "boot-c").await.is_err(),
            "a revoked key connected"
        );
        // Nothing it publishes after the cut is stored, and the fleet is unaffected.
        let stored = |who: &str| sys.count(&format!("SELECT count(*) FROM events WHERE agent_id = '{who}'"));
        tokio::time::sleep(Duration::from_secs(3)).await; // what it sent before the cut is ingested
        let settled = stored(&agent)?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        publisher.abort();
        anyhow::ensure!(
            settled > 0 && stored(&agent)? == settled,
            "the revoked agent's events kept arriving"
        );
        let (code, summary) = tests::agent_summary(fleet)?;
        anyhow::ensure!(code == 0, "the fleet beside it: {summary}");
        let acked = summary["events_acked"].as_i64().unwrap_or(-1);
        eventually(Duration::from_secs(60), || {
            Ok((sys.count(&format!("SELECT count(*) FROM events WHERE agent_id <> '{agent}'"))? == acked)
                .then_some(()))
        })?;
        anyhow::Ok((clone_after, cut_after))
    })?;
    eprintln!(
        "clone alerted after {clone_after:?}; revoked connection cut after {cut_after:?} (session {session} s)"
    );
    assert!(clone_after <= Duration::from_secs(2 * session + 2), "{clone_after:?}");
    assert!(cut_after <= Duration::from_secs(session + 2), "{cut_after:?}");
    let (_, metrics) = get(&format!("{}/metrics", sys.server.api), Some(&sys.token))?;
    let text = metrics.as_str().unwrap_or_default();
    for kind in ["credential_clone", "revoked_connect"] {
        assert!(text.contains(&format!("cordon_security_events_total{{kind=\"{kind}\"}}")), "{kind}: {text}");
    }
    assert!(text.contains("cordon_nats_auth_total{outcome=\"revoked\"}"), "{text}");
    Ok(())
}

/// A shipper that is not Cordon's agent (Vector's `nats` sink, say) uses an enrolled key as its
/// credential: plain publishes, no headers, no replies, on the one subject the key allows.
#[test]
fn another_shipper_publishes_with_an_enrolled_key() -> anyhow::Result<()> {
    let sys = Secure::start(&ServerOptions::default())?;
    let state = sys.dir.path().join("vector-state");
    let st = state.display().to_string();
    let (_, token) = tests::enroll_token(&bin(), &sys.data, "default", 1)?;
    let args = ["agent", "enroll", "--server", &sys.server.api, "--enroll-token", &token, "--state-dir", &st];
    let (code, out) = tests::run(&bin(), &args)?;
    assert_eq!(code, 0, "{out}");
    let (code, out) = tests::run(&bin(), &["agent", "credential", "--state-dir", &st])?;
    assert_eq!(code, 0, "{out}");
    let cred: Value = serde_json::from_str(out.trim())?;
    let agent = cred["agent_id"].as_str().unwrap().to_owned();
    assert_eq!(cred["subject"], format!("cordon.default.{agent}.events"));
    let rt = tokio::runtime::Runtime::new()?;
    let sent = rt.block_on(async {
        let client = async_nats::ConnectOptions::with_nkey(cred["seed"].as_str().unwrap().to_owned())
            .connect(&sys.nats.url)
            .await?;
        let lines: Vec<String> = (0..20)
            .map(|i| {
                json!({"@timestamp": schemas::time::format_micros(schemas::time::now_micros()),
                       "event": {"id": format!("vec-{i}"), "category": "process", "action": "start"},
                       "host": {"name": "web-9"}, "process": {"pid": i}})
                .to_string()
            })
            .collect();
        for pair in lines.chunks(2) {
            client
                .publish(cred["subject"].as_str().unwrap().to_owned(), (pair.join("\n") + "\n").into())
                .await?;
        }
        client.flush().await?;
        anyhow::Ok(lines.len() as i64)
    })?;
    eventually(Duration::from_secs(30), || {
        Ok((sys.count(&format!("SELECT count(*) FROM events WHERE agent_id = '{agent}'"))? == sent)
            .then_some(()))
    })?;
    Ok(())
}
