//! Two `cordon serve` processes on one PostgreSQL catalog and one lake, sharing the durable consumer
//! of a three-member NATS cluster (issue 21 item 7, ADR 0009). A fleet publishes throughout. The
//! Log4j / Conti attack arrives in two halves, each committed by one process while the other is
//! paused (SIGSTOP): the phishing PC's events by one, the web servers' by the other. The process that
//! analyses is then killed and started again while a copy of the attack arrives. Every acknowledged
//! event is stored once and searchable once in both processes' indexes, the other process takes the
//! analysis over, and the attack is one incident joined across the halves, its alerts raised once.
//! (With each process analysing what it commits, each sees one half and the chain between them in
//! neither: the incident does not join.)

use super::backends::PgDb;
use super::bin;
use super::crash::assert_exactly_once_within;
use super::incidents::{alert_ids, ids_in, incidents};
use anyhow::Context;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;
use tests::{NatsCluster, Server, ServerOptions, agent_summary, eventually, get, metric, spawn_agent};

/// Whether the server analyses for both (it holds the analysis lease), and the events it consumed.
fn role(server: &Server, tok: &str) -> anyhow::Result<(bool, f64)> {
    let (_, m) = get(&format!("{}/metrics", server.api), Some(tok))?;
    let m = m.as_str().unwrap_or("");
    Ok((metric(m, "cordon_ingest_analysis_lease") == 1.0, metric(m, "cordon_ingest_events_total")))
}

/// The one server of the two that analyses, once exactly one does.
fn analyser(servers: [&Server; 2], tok: &str) -> anyhow::Result<usize> {
    eventually(Duration::from_secs(30), || {
        let leads = [role(servers[0], tok)?.0, role(servers[1], tok)?.0];
        Ok(match leads {
            [true, false] => Some(0),
            [false, true] => Some(1),
            _ => None,
        })
    })
}

/// Every alert of `host` once: no two share their rule and object (one alert per rule, host and
/// object within an hour, however many processes analysed its events).
fn assert_alerts_once(api: &str, tok: &str, host: &str) -> anyhow::Result<usize> {
    let url = format!("{api}/api/v1/alerts?limit=1000&host={}", tests::urlencode(host));
    let (status, v) = get(&url, Some(tok))?;
    anyhow::ensure!(status == 200, "alerts: {v}");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for a in v["alerts"].as_array().cloned().unwrap_or_default() {
        *seen.entry(format!("{} {}", a["rule"], a["object"])).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "alerts raised twice on {host}: {twice:?}");
    Ok(seen.len())
}

/// The attack's events sent by `agents` (the scenario's agent ids), with the scenario's header.
fn part(agents: &[&str]) -> String {
    let mut lines = fixtures::scenario::LOG4J_CONTI.lines();
    let header = lines.next().unwrap_or_default();
    let picked = lines.filter(|l| agents.iter().any(|a| l.contains(&format!("\"agent\": \"{a}\""))));
    std::iter::once(header).chain(picked).map(|l| format!("{l}\n")).collect()
}

/// Stops (SIGSTOP) or resumes (SIGCONT) a server's process.
fn signal(server: &Server, sig: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill").args([sig, &server.pid().to_string()]).status()?;
    anyhow::ensure!(status.success(), "kill {sig} failed");
    Ok(())
}

/// Replays `text` through an agent while only `running` consumes (`paused` is stopped), and waits
/// until `running` has stored it: `hosts`' events in the lake number what the agent had acked.
fn replay_through(
    [running, paused]: [&Server; 2],
    tok: &str,
    cluster: &NatsCluster,
    spool: &Path,
    (file, text): (&Path, &str),
    hosts: &[&str],
) -> anyhow::Result<u64> {
    std::fs::write(file, text)?;
    tests::enroll_through(&cluster.url, &running.api);
    signal(paused, "-STOP")?;
    // A pull request the paused process had open when it stopped would take what the agent sends
    // and hold it until the ack wait (60 s): let such requests expire (fetch_wait, 200 ms) first.
    std::thread::sleep(Duration::from_secs(1));
    let replayed = (|| {
        let args = ["replay", file.to_str().unwrap_or_default(), "--batch-size", "5"];
        let (code, summary) = agent_summary(spawn_agent(&bin(), &cluster.url, spool, &args)?)?;
        anyhow::ensure!(code == 0, "{summary}");
        let acked = summary["events_acked"].as_u64().unwrap_or(0);
        let list = hosts.iter().map(|h| format!("'{h}'")).collect::<Vec<_>>().join(",");
        let q = format!("SELECT count(*) FROM events WHERE host_name IN ({list})");
        eventually(Duration::from_secs(30), || {
            let n = tests::sql(&running.api, tok, &q)?[0][0].as_u64().unwrap_or(0);
            Ok((n == acked).then_some(acked))
        })
    })();
    signal(paused, "-CONT")?;
    replayed
}

/// Every alert of the workstation and the exploited web server (the oracle is the alert list,
/// not the incident).
fn attack_alerts(api: &str, tok: &str) -> anyhow::Result<BTreeSet<String>> {
    eventually(Duration::from_secs(30), || {
        let pc = alert_ids(api, tok, "WIN-DAKEQI")?;
        let web = alert_ids(api, tok, "Web服务器-北机房")?;
        Ok((!pc.is_empty() && web.len() >= 3).then(|| pc.into_iter().chain(web).collect()))
    })
}

/// Waits until the workstation is in one incident holding every one of `expected`.
fn joined(api: &str, tok: &str, expected: &BTreeSet<String>) -> anyhow::Result<()> {
    let mut last = Vec::new();
    eventually(Duration::from_secs(30), || {
        last = incidents(api, tok, "host=WIN-DAKEQI")?;
        Ok((last.len() == 1 && ids_in(&last[0]).is_superset(expected)).then_some(()))
    })
    .with_context(|| format!("the attack is not one incident: {last:#?}"))
}

fn start(data: &Path, cluster: &NatsCluster, shared: &[String], catalog: &str) -> anyhow::Result<Server> {
    let opts =
        ServerOptions { metadata_url: Some(catalog.to_owned()), args: shared.to_vec(), ..Default::default() };
    Server::start(&bin(), data, &cluster.url, &opts)
}

#[test]
fn two_servers_share_the_consumer_and_one_analyses_what_both_commit() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let db = rt.block_on(PgDb::create())?;
    let result = two_servers(&db.url);
    rt.block_on(db.drop_db())?;
    result
}

fn two_servers(catalog: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = NatsCluster::start(&dir.path().join("nats"), 3)?;
    let shared: Vec<String> = [
        "--shared-catalog",
        "--lease-secs",
        "3",
        "--stream-replicas",
        "3",
        "--lake-url",
        &dir.path().join("lake").display().to_string(),
        "--signing-key",
        &dir.path().join("signing.pk8").display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    let data = [dir.path().join("a"), dir.path().join("b")];
    let mut servers =
        [start(&data[0], &cluster, &shared, catalog)?, start(&data[1], &cluster, &shared, catalog)?];
    let tok = tests::token(&bin(), &data[0], Some(catalog))?;
    analyser([&servers[0], &servers[1]], &tok)?;

    // A fleet for the whole run; the attack in halves, each committed by one process.
    let spool = |s: &str| dir.path().join(format!("spool-{s}"));
    let fleet_args = ["simulate", "--hosts", "20", "--rate", "1500", "--duration", "25", "--seed", "5"];
    let mut agents = vec![spawn_agent(&bin(), &cluster.url, &spool("fleet"), &fleet_args)?];
    eventually(Duration::from_secs(30), || {
        let both = [role(&servers[0], &tok)?.1, role(&servers[1], &tok)?.1];
        Ok(both.iter().all(|n| *n > 200.0).then_some(()))
    })?;
    let pc = (dir.path().join("pc.ndjson"), part(&["win-dakeqi"]));
    let web = (dir.path().join("web.ndjson"), part(&["web-north", "web-south", "c2-host"]));
    let [a, b] = [&servers[0], &servers[1]];
    let mut acked = replay_through([a, b], &tok, &cluster, &spool("pc"), (&pc.0, &pc.1), &["WIN-DAKEQI"])?;
    let web_hosts = ["Web服务器-北机房", "Web服务器-南机房", "cdn-update-edge"];
    acked += replay_through([b, a], &tok, &cluster, &spool("web"), (&web.0, &web.1), &web_hosts)?;
    assert_eq!(acked, 85, "the attack's events");
    // One analyser read both halves: the attack is one incident already.
    let expected = attack_alerts(&servers[0].api, &tok)?;
    joined(&servers[1].api, &tok, &expected)?;
    // Then the process that analyses is killed.
    let consumed = [role(&servers[0], &tok)?.1, role(&servers[1], &tok)?.1];
    let leader = analyser([&servers[0], &servers[1]], &tok)?;
    println!("scale-out: events consumed by each before the kill: {consumed:?}");
    let [a, b] = servers;
    let (killed, survivor) = if leader == 0 { (a, b) } else { (b, a) };
    killed.kill();
    // The survivor takes the analysis over within the lease, while the agents keep publishing.
    eventually(Duration::from_secs(15), || Ok(role(&survivor, &tok)?.0.then_some(())))?;
    tests::enroll_through(&cluster.url, &survivor.api);
    let copy = dir.path().join("elsewhere.ndjson");
    std::fs::write(&copy, fixtures::scenario::log4j_conti_elsewhere("OTHER"))?;
    agents.push(spawn_agent(&bin(), &cluster.url, &spool("copy"), &["replay", copy.to_str().unwrap()])?);
    let restarted = start(&data[leader], &cluster, &shared, catalog)?;
    servers = if leader == 0 { [restarted, survivor] } else { [survivor, restarted] };

    for child in agents {
        let (code, summary) = agent_summary(child)?;
        assert_eq!(code, 0, "{summary}");
        assert_eq!(summary["events_dropped"], 0, "{summary}");
        acked += summary["events_acked"].as_u64().unwrap_or(0);
    }
    assert!(acked > 15_000, "{acked} acked");
    // Every acked event once in the lake, read through each process, and once in each one's index.
    for server in &servers {
        assert_exactly_once_within(server, &tok, acked, ingest::ACK_WAIT + Duration::from_secs(60))?;
    }
    let (restarted_leads, _) = role(&servers[leader], &tok)?;
    assert!(!restarted_leads && role(&servers[1 - leader], &tok)?.0, "the survivor kept the analysis");

    // The attack is one incident though both processes committed its events and the analyser
    // changed on the way; the copy on another host is its own; no alert twice.
    let api = servers[0].api.clone();
    joined(&api, &tok, &expected)?;
    eventually(Duration::from_secs(30), || {
        Ok((incidents(&api, &tok, "host=WIN-OTHER")?.len() == 1).then_some(()))
    })?;
    for host in ["WIN-DAKEQI", "Web服务器-北机房", "WIN-OTHER"] {
        assert!(assert_alerts_once(&api, &tok, host)? > 0, "{host} alerted");
    }
    Ok(())
}
