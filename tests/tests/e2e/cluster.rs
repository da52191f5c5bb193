//! Past one machine on NATS's own clustering (issue 21 item 7): a three-member JetStream cluster with
//! the events stream kept in three copies; its leader is killed while agents publish and comes back;
//! nothing is lost or duplicated, the election is not taken for a deleted stream, and the member that
//! was down catches up. A server started while JetStream has no quorum serves its API, says it is
//! starting, and consumes once the quorum is back.

use super::bin;
use super::crash::assert_exactly_once_within;
use async_nats::jetstream;
use std::time::Duration;
use tests::{NatsCluster, Server, ServerOptions, agent_summary, eventually, spawn_agent};

/// The events stream's copies as the bus reports them.
struct Replicas {
    /// The member leading the stream.
    leader: String,
    /// The other members holding a copy, each with whether it is current.
    peers: Vec<(String, bool)>,
    /// The copies the stream is configured to keep.
    configured: usize,
}

impl Replicas {
    /// Every copy is held and current.
    fn healthy(self) -> Option<Self> {
        (self.peers.len() + 1 == self.configured && self.peers.iter().all(|p| p.1)).then_some(self)
    }
}

fn replicas(url: &str) -> anyhow::Result<Replicas> {
    replicas_of(url, "CORDON_EVENTS")
}

fn replicas_of(url: &str, stream: &str) -> anyhow::Result<Replicas> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let js = jetstream::new(tests::connect_operator(url).await?);
        let mut stream = js.get_stream(stream).await?;
        let info = stream.info().await?;
        let cluster = info.cluster.clone().unwrap_or_default();
        let peers = cluster.replicas.iter().map(|p| (p.name.clone(), p.current && !p.offline)).collect();
        Ok(Replicas {
            leader: cluster.leader.unwrap_or_default(),
            peers,
            configured: info.config.num_replicas,
        })
    })
}

#[test]
fn the_stream_leader_dies_while_agents_publish_and_nothing_is_lost_or_duplicated() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let t0 = std::time::Instant::now();
    let step = |what: &str| println!("cluster test: {what} at {:.1} s", t0.elapsed().as_secs_f64());
    let mut cluster = NatsCluster::start(&dir.path().join("nats"), 3)?;
    let data = dir.path().join("data");
    // A server started before the cluster mattered made its streams with one copy; started again
    // with three, it rescales them.
    step("cluster up");
    let single = Server::start(&bin(), &data, &cluster.url, &ServerOptions::default())?;
    step("one-copy server up");
    // Ingest makes the rules bucket after the API is up (publishing the rules): wait for each to exist.
    for one in ["CORDON_EVENTS", "CORDON_DLQ", "KV_CORDON_POLICY", "OBJ_CORDON_RULES"] {
        let r = eventually(Duration::from_secs(30), || Ok(replicas_of(&cluster.url, one).ok()))?;
        assert_eq!(r.configured, 1, "{one}");
    }
    drop(single);
    let three = ServerOptions { args: vec!["--stream-replicas".into(), "3".into()], ..Default::default() };
    let server = Server::start(&bin(), &data, &cluster.url, &three)?;
    step("three-copy server up");
    let tok = tests::token(&bin(), &data, None)?;
    let r = eventually(Duration::from_secs(30), || Ok(replicas(&cluster.url)?.healthy()))?;
    step("three copies current");
    assert_eq!((r.configured, r.peers.len()), (3, 2), "the stream keeps three copies: {:?}", r.peers);
    // Every other stream and bucket agents depend on was rescaled with it.
    for other in ["CORDON_DLQ", "KV_CORDON_POLICY", "OBJ_CORDON_RULES"] {
        assert_eq!(replicas_of(&cluster.url, other)?.configured, 3, "{other}");
    }
    let leader = r.leader;
    assert!(!leader.is_empty() && r.peers.iter().all(|p| p.0 != leader), "{leader} {:?}", r.peers);

    let child = spawn_agent(
        &bin(),
        &cluster.url,
        &dir.path().join("spool"),
        &["simulate", "--hosts", "10", "--rate", "3000", "--duration", "6", "--seed", "21"],
    )?;
    std::thread::sleep(Duration::from_millis(1500));
    let down = cluster.member(&leader).expect("the leader is a member");
    cluster.kill(down);
    std::thread::sleep(Duration::from_millis(2000));
    cluster.restart(down)?;
    step("leader back");
    let (code, summary) = agent_summary(child)?;
    step("agent done");
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["events_dropped"], 0, "{summary}");
    let acked = summary["events_acked"].as_u64().unwrap_or(0);
    assert!(acked > 10_000, "{summary}");
    // A delivery in flight when the consumer's leader died is delivered again after the ack wait.
    assert_exactly_once_within(&server, &tok, acked, ingest::ACK_WAIT + Duration::from_secs(60))?;
    step("exactly once");
    // A leader election is not a deleted stream: no security event, nothing recreated.
    let (_, m) = tests::get(&format!("{}/metrics", server.api), Some(&tok))?;
    let m = m.as_str().unwrap_or("");
    assert!(!m.contains("cordon_ingest_streams_recreated_total"), "{m}");
    assert!(!m.contains("kind=\"stream_deleted\""), "{m}");

    // The member that was down is back in the replica set and current.
    let now = eventually(Duration::from_secs(60), || Ok(replicas(&cluster.url)?.healthy()))?;
    assert!(
        now.leader == leader || now.peers.iter().any(|p| p.0 == leader),
        "{leader} rejoined: leader {}, peers {:?}",
        now.leader,
        now.peers
    );
    Ok(())
}

/// Two of three members down: core NATS (and the agents' authentication) answers, JetStream does not.
/// The server starts anyway: `/healthz` 200, `/readyz` 503 and ingest's start failures counted; once
/// the members are back it becomes ready and an agent's events are stored exactly once.
#[test]
fn a_server_started_without_a_jetstream_quorum_serves_and_consumes_once_it_returns() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cluster = NatsCluster::start(&dir.path().join("nats"), 3)?;
    cluster.kill(1);
    cluster.kill(2);
    let data = dir.path().join("data");
    let opts = ServerOptions { healthy_only: true, ..Default::default() };
    let server = Server::start(&bin(), &data, &cluster.url, &opts)?;
    let tok = tests::token(&bin(), &data, None)?;
    let failures = eventually(Duration::from_secs(60), || {
        let (_, m) = tests::get(&format!("{}/metrics", server.api), Some(&tok))?;
        Ok(Some(tests::metric(m.as_str().unwrap_or(""), "cordon_ingest_start_failures_total"))
            .filter(|n| *n > 0.0))
    })?;
    let (code, body) = tests::get(&format!("{}/readyz", server.api), None)?;
    assert_eq!((code, body["status"].as_str()), (503, Some("starting")), "after {failures} failed starts");
    let (code, _) = tests::get(&format!("{}/api/v1/hosts", server.api), Some(&tok))?;
    assert_eq!(code, 200, "the API answers while ingest waits");

    cluster.restart(1)?;
    cluster.restart(2)?;
    eventually(Duration::from_secs(90), || {
        Ok((tests::get(&format!("{}/readyz", server.api), None)?.0 == 200).then_some(()))
    })?;
    let child = spawn_agent(
        &bin(),
        &cluster.url,
        &dir.path().join("spool"),
        &["simulate", "--hosts", "4", "--rate", "500", "--duration", "2", "--seed", "5"],
    )?;
    let (code, summary) = agent_summary(child)?;
    assert_eq!(code, 0, "{summary}");
    let acked = summary["events_acked"].as_u64().unwrap_or(0);
    assert!(acked > 500, "{summary}");
    assert_exactly_once_within(&server, &tok, acked, Duration::from_secs(60))?;
    // Streams made on a first start are not streams lost: no security event.
    let (_, m) = tests::get(&format!("{}/metrics", server.api), Some(&tok))?;
    let m = m.as_str().unwrap_or("");
    assert!(!m.contains("kind=\"stream_deleted\""), "{m}");
    assert!(!m.contains("cordon_ingest_streams_recreated_total"), "{m}");
    Ok(())
}
