//! T5 (issue 16 item 4), on SQLite: the server (and with it the embedded database) killed with
//! SIGKILL while an analyst's writes stream in. Every write the API acknowledged is there after the
//! restart, and no state transition is half applied: policy versions are contiguous and each is whole
//! (its reason and its content are the ones one request sent).

use super::{Env, bin};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tests::{Server, ServerOptions, get, put};

const TIERS: [&str; 3] = ["alert", "record", "block"];

/// The acknowledged policy writes as (version, reason, tier), how many were refused, and how many
/// were in flight across an outage: `phase` is odd while the database is down, and counts up at
/// each stop and start.
type Written = (Vec<(i64, String, String)>, usize, usize);

/// Policy writes until `stop`: each names its number in its reason and sets T1486 by it.
fn write_policies(
    api: Arc<Mutex<String>>,
    tok: String,
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicU64>,
) -> Written {
    let mut acked = Vec::new();
    let (mut refused, mut during_outage) = (0, 0);
    let mut base = 0i64;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let before = phase.load(Ordering::SeqCst);
        let url = format!("{}/api/v1/policy", api.lock().unwrap());
        let tier = TIERS[(i % 3) as usize];
        let reason = format!("write {i}");
        let body = json!({"policy": {"default": "record", "techniques": {"T1486": tier}}, "reason": reason, "base_version": base});
        i += 1;
        match put(&url, Some(&tok), &body) {
            Ok((200, b)) => {
                base = b["version"].as_i64().expect("a version");
                acked.push((base, reason, tier.to_owned()));
            }
            // A conflict, or the server down: learn the current version when it answers again.
            _ => {
                refused += 1;
                std::thread::sleep(Duration::from_millis(50));
                if let Ok((200, cur)) = get(&url, Some(&tok)) {
                    base = cur["version"].as_i64().unwrap_or(base);
                }
            }
        }
        let after = phase.load(Ordering::SeqCst);
        during_outage += usize::from(before % 2 == 1 || before != after);
    }
    (acked, refused, during_outage)
}

/// The tenant's policy versions after the crashes: contiguous from 1, each whole (its reason names
/// a write and its content is that write's), every acknowledged write among them. Returns how many.
fn check_policy_versions(api: &str, tok: &str, acked: &[(i64, String, String)]) -> anyhow::Result<i64> {
    let (_, v) = get(&format!("{api}/api/v1/policy/versions"), Some(tok))?;
    let versions: Vec<&Value> = v["versions"].as_array().expect("versions").iter().collect();
    let mut numbers: Vec<i64> = versions.iter().filter_map(|x| x["version"].as_i64()).collect();
    numbers.sort_unstable();
    let n = numbers.len() as i64;
    assert_eq!(numbers, (1..=n).collect::<Vec<_>>(), "versions are contiguous");
    for x in &versions {
        let reason = x["reason"].as_str().unwrap_or_default();
        let i: u64 = reason.strip_prefix("write ").and_then(|k| k.parse().ok()).expect("a reason we sent");
        assert_eq!(
            x["policy"]["techniques"]["T1486"],
            TIERS[(i % 3) as usize],
            "version {}: {x}",
            x["version"]
        );
    }
    for (version, reason, tier) in acked {
        let found = versions.iter().find(|x| x["version"].as_i64() == Some(*version));
        let found = found.unwrap_or_else(|| panic!("acknowledged version {version} ({reason}) is missing"));
        assert_eq!(
            (found["reason"].as_str(), found["policy"]["techniques"]["T1486"].as_str()),
            (Some(reason.as_str()), Some(tier.as_str()))
        );
    }
    Ok(n)
}

const HANDLINGS: [&str; 3] = ["handled", "false_positive", "unhandled"];

/// Alert handling until `stop`, round the alerts: each with the comment `handle <n>`. Returns the
/// acknowledged ones as (alert id, comment, handling).
fn handle_alerts(
    api: Arc<Mutex<String>>,
    tok: String,
    ids: Vec<String>,
    stop: Arc<AtomicBool>,
) -> Vec<(String, String, String)> {
    let mut acked = Vec::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let id = &ids[i % ids.len()];
        let handling = HANDLINGS[i % 3];
        let comment = format!("handle {i}");
        i += 1;
        let url = format!("{}/api/v1/alerts/{id}", api.lock().unwrap());
        match tests::patch(&url, Some(&tok), &json!({"handling": handling, "comment": comment})) {
            Ok((200, _)) => acked.push((id.clone(), comment, handling.to_owned())),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    acked
}

#[test]
fn acknowledged_api_writes_survive_the_server_killed_under_them() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let alerts = {
        tests::agent(&bin(), &env.nats.url, &env.spool(), &["replay", "builtin:log4j-conti"])?;
        tests::eventually(Duration::from_secs(60), || {
            let (_, a) = get(&format!("{}/api/v1/alerts?limit=20", env.server.api), Some(&env.token))?;
            let ids: Vec<String> = a["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x["id"].as_str().map(str::to_owned))
                .collect();
            Ok((ids.len() >= 3).then_some(ids))
        })?
    };
    let Env { mut server, nats, data, token: tok, dir: _dir } = env;
    let listen = server.api.trim_start_matches("http://").to_owned();
    let api = Arc::new(Mutex::new(server.api.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (api, tok, stop) = (Arc::clone(&api), tok.clone(), Arc::clone(&stop));
        std::thread::spawn(move || write_policies(api, tok, stop, Arc::new(AtomicU64::new(0))))
    };
    let handler = {
        let (api, tok, stop, ids) = (Arc::clone(&api), tok.clone(), Arc::clone(&stop), alerts.clone());
        std::thread::spawn(move || handle_alerts(api, tok, ids, stop))
    };
    for round in 0..3u64 {
        std::thread::sleep(Duration::from_millis(700 + 400 * round));
        server.kill();
        let opts = ServerOptions { listen: Some(listen.clone()), ..Default::default() };
        server = Server::start(&bin(), &data, &nats.url, &opts)?;
    }
    std::thread::sleep(Duration::from_millis(800));
    stop.store(true, Ordering::Relaxed);
    let (acked, _, _) = writer.join().expect("the writer thread");
    let handled = handler.join().expect("the handling thread");
    assert!(
        acked.len() >= 10 && handled.len() >= 10,
        "writes got through: {} policies, {} handlings",
        acked.len(),
        handled.len()
    );

    let n = check_policy_versions(&server.api, &tok, &acked)?;
    // Alert handling: every acknowledged change is there, each comment carries the handling it set,
    // and each alert's handling is its newest comment's (never one without the other).
    for id in &alerts {
        let (_, a) = get(&format!("{}/api/v1/alerts/{id}", server.api), Some(&tok))?;
        let comments = a["comments"].as_array().cloned().unwrap_or_default();
        for (_, comment, handling) in handled.iter().filter(|h| &h.0 == id) {
            let c = comments.iter().find(|c| c["comment"] == comment.as_str());
            let c = c.unwrap_or_else(|| panic!("acknowledged handling {comment:?} of {id} is missing"));
            assert_eq!(c["handling"], handling.as_str(), "{c}");
        }
        if let Some(newest) = comments.iter().max_by_key(|c| {
            c["comment"]
                .as_str()
                .and_then(|t| t.strip_prefix("handle "))
                .and_then(|n| n.parse::<usize>().ok())
        }) {
            assert_eq!(
                a["alert"]["handling"], newest["handling"],
                "{id}: handling and its newest comment agree"
            );
        }
    }
    eprintln!(
        "T5 SQLite: {} policy writes and {} alert handlings acknowledged across 3 kills, {n} versions, all whole",
        acked.len(),
        handled.len()
    );
    Ok(())
}

/// A PostgreSQL cluster of the test's own (initdb in a temp dir, run as `postgres`), so that it can
/// be crashed (`pg_ctl stop -m immediate`) without touching the machine's shared server.
struct PrivatePostgres {
    dir: std::path::PathBuf,
    port: u16,
}

impl PrivatePostgres {
    fn bin(name: &str) -> anyhow::Result<std::path::PathBuf> {
        let found = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|v| v.path().join("bin").join(name))
            .find(|p| p.exists());
        found.ok_or_else(|| {
            anyhow::anyhow!("T5 starts its own PostgreSQL and needs {name} (apt-get install postgresql)")
        })
    }

    fn as_postgres(args: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
        let out = std::process::Command::new("runuser").args(["-u", "postgres", "--"]).args(args).output()?;
        anyhow::ensure!(out.status.success(), "{:?}: {}", args, String::from_utf8_lossy(&out.stderr));
        Ok(())
    }

    fn start_new(parent: &std::path::Path) -> anyhow::Result<Self> {
        let dir = parent.join("pg");
        std::fs::create_dir_all(&dir)?;
        let ok =
            std::process::Command::new("chown").args(["-R", "postgres:postgres"]).arg(parent).status()?;
        anyhow::ensure!(ok.success(), "chown {} to postgres", parent.display());
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let initdb = Self::bin("initdb")?;
        Self::as_postgres(&[
            initdb.as_os_str(),
            "-D".as_ref(),
            dir.as_os_str(),
            "--auth=trust".as_ref(),
            "-U".as_ref(),
            "postgres".as_ref(),
        ])?;
        let pg = Self { dir, port };
        pg.start()?;
        Ok(pg)
    }

    fn start(&self) -> anyhow::Result<()> {
        let opts =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on", self.port, self.dir.display());
        let log = self.dir.join("log");
        let ctl = Self::bin("pg_ctl")?;
        Self::as_postgres(&[
            ctl.as_os_str(),
            "-D".as_ref(),
            self.dir.as_os_str(),
            "-o".as_ref(),
            opts.as_ref(),
            "-l".as_ref(),
            log.as_os_str(),
            "-w".as_ref(),
            "start".as_ref(),
        ])
    }

    /// Stops it the way a crash would: no checkpoint, no goodbye to the clients.
    fn crash(&self) -> anyhow::Result<()> {
        let ctl = Self::bin("pg_ctl")?;
        Self::as_postgres(&[
            ctl.as_os_str(),
            "-D".as_ref(),
            self.dir.as_os_str(),
            "-m".as_ref(),
            "immediate".as_ref(),
            "-w".as_ref(),
            "stop".as_ref(),
        ])
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.crash();
    }
}

/// T5 on PostgreSQL: the database crashes twice under policy writes and ingest, and comes back;
/// the server is never restarted. Acknowledged writes are all there and whole, ingest resumes by
/// itself, and every event an agent was acked for is stored once.
#[test]
fn the_server_rides_out_postgresql_crashes_without_a_restart() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let pg = PrivatePostgres::start_new(tmp.path())?;
    let env = Env::start(&ServerOptions { metadata_url: Some(pg.url()), ..Default::default() })?;
    let Env { mut server, nats, token: tok, dir, .. } = env;
    let api = Arc::new(Mutex::new(server.api.clone()));
    let (stop, phase) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let writer = {
        let (api, tok, stop, phase) = (Arc::clone(&api), tok.clone(), Arc::clone(&stop), Arc::clone(&phase));
        std::thread::spawn(move || write_policies(api, tok, stop, phase))
    };
    let shipper = tests::spawn_agent(
        &bin(),
        &nats.url,
        &dir.path().join("spool"),
        &[
            "--drain-secs",
            "120",
            "simulate",
            "--hosts",
            "4",
            "--rate",
            "400",
            "--duration",
            "8",
            "--seed",
            "5",
        ],
    )?;
    for _ in 0..2 {
        std::thread::sleep(Duration::from_secs(2));
        phase.fetch_add(1, Ordering::SeqCst);
        pg.crash()?;
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(server.exited(), None, "the server outlived its database");
        pg.start()?;
        phase.fetch_add(1, Ordering::SeqCst);
    }
    // Writes go through again without a restart.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    // A write sent while the database is down is refused, or waits for it and is acknowledged
    // once it is back (the pool retries its connection); either way it is whole or absent below.
    let (acked, refused, during_outage) = writer.join().expect("the writer thread");
    assert!(during_outage > 0, "writes were in flight while the database was down");
    let (code, shipped) = tests::agent_summary(shipper)?;
    assert_eq!(code, 0, "{shipped}");
    let sent = shipped["events_acked"].as_u64().unwrap();
    let mut last = (0, 0);
    tests::eventually(Duration::from_secs(60), || {
        last = tests::counts(&server.api, &tok)?;
        Ok((last == (sent, sent)).then_some(()))
    })
    .map_err(|e| {
        e.context(format!(
            "ingest resumed and stored every acked event once: {sent} acked, last (rows, distinct) {last:?}"
        ))
    })?;
    let n = check_policy_versions(&server.api, &tok, &acked)?;
    let last = acked.last().map_or(0, |a| a.0);
    assert_eq!(last, n, "the last write after the database came back was acknowledged");
    eprintln!(
        "T5 PostgreSQL: {} writes acknowledged, {refused} refused, {during_outage} in flight across the outages (2 crashes), {sent} events stored once",
        acked.len()
    );
    server.kill();
    Ok(())
}
