//! `--only console [--alerts N]`: issue 18's speed bars, on a real server (this binary runs `cordon
//! serve`). The Log4j/Conti scenario is ingested, then N alerts (default 100,000) are added to the
//! catalog across 1,000 hosts, ten rules and 30 days, and the server restarted on them. Measured:
//! the alert queue's REST pages (first page, each filter, a page 50,000 alerts deep) over 200
//! requests each, and in Debian's Chromium (`console/bench/perf.mjs`): the first meaningful paint of
//! the queue and of the incident page on the demo data, and the incident graph drawn at 500 nodes
//! with the time from a click on an edge to its events shown.

use crate::percentile;
use schemas::alert::{Alert, Endpoint, Handling, RuleRef, Status, TechniqueTag};
use std::path::Path;
use std::time::{Duration, Instant};
use tests::ServerOptions;

const RULES: [(&str, &str, &str, u8); 10] = [
    ("r-ransom", "File renamed to a ransomware extension", "T1486", 5),
    ("r-vss", "Shadow copies deleted", "T1490", 5),
    ("r-jndi", "JNDI lookup in a request", "T1190", 4),
    ("r-scan", "Internal network scanning", "T1046", 4),
    ("r-enc", "Encoded PowerShell", "T1059.001", 3),
    ("r-run", "Run key persistence", "T1547.001", 3),
    ("r-brute", "Password spraying", "T1110.003", 4),
    ("r-dump", "LSASS memory access", "T1003.001", 5),
    ("r-task", "Scheduled task created", "T1053.005", 2),
    ("r-dl", "Download with certutil", "T1105", 2),
];

/// The `i`th synthetic alert, dated within the 30 days before `now`.
fn alert(i: usize, now: i64) -> Alert {
    let (id, title, technique, level) = RULES[i % RULES.len()];
    let t = schemas::time::format_micros(now - ((i as i64 * 25_920_013) % (30 * 86_400_000_000)));
    Alert {
        id: String::new(),
        tenant: "default".into(),
        level,
        first_seen: t.clone(),
        last_seen: t,
        count: 1,
        object: format!("C:\\Users\\u{}\\obj-{i}.exe", i % 97),
        description: title.into(),
        source: "bench".into(),
        rule: RuleRef { id: id.into(), title: title.into(), author: None },
        status: if level == 5 { Status::Blocked } else { Status::Alerted },
        handling: if i.is_multiple_of(7) { Handling::Handled } else { Handling::Unhandled },
        endpoint: Endpoint { name: format!("ws-{:04}", i % 1000), ..Default::default() },
        file: Default::default(),
        techniques: vec![TechniqueTag { id: technique.into(), name: title.into() }],
        tactics: vec![],
        evidence: vec![format!("bench-{i}")],
        why: serde_json::Value::Null,
        log: None,
    }
}

async fn seed(data: &Path, n: usize) -> anyhow::Result<f64> {
    let url = format!("sqlite://{}", data.join("meta.db").display());
    let catalog = store::catalog::Catalog::connect(&url).await?;
    let now = schemas::time::now_micros();
    let t0 = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(2_000) {
        let batch: Vec<Alert> = chunk.iter().map(|&i| alert(i, now)).collect();
        catalog.record_alerts(&batch, 3_600_000_000, now).await?;
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// Milliseconds per request for `path`, `reps` times: (p50, p99, rows of the last answer).
fn timed(api: &str, token: &str, path: &str, reps: usize) -> anyhow::Result<(f64, f64, usize)> {
    let mut ms = Vec::with_capacity(reps);
    let mut rows = 0;
    for _ in 0..reps {
        let t = Instant::now();
        let (status, v) = tests::get(&format!("{api}{path}"), Some(token))?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(status == 200, "{path}: {status} {v}");
        rows = v["alerts"].as_array().map_or(0, Vec::len);
    }
    ms.sort_by(f64::total_cmp);
    Ok((percentile(&ms, 0.5), percentile(&ms, 0.99), rows))
}

fn rest(api: &str, token: &str) -> anyhow::Result<()> {
    let (_, deep) = tests::get(&format!("{api}/api/v1/alerts?limit=1000"), Some(token))?;
    let mut to = deep["alerts"][999]["last_seen"].as_str().unwrap_or_default().to_owned();
    for _ in 0..49 {
        let (_, page) = tests::get(&format!("{api}/api/v1/alerts?limit=1000&to={to}"), Some(token))?;
        to = page["alerts"][999]["last_seen"].as_str().unwrap_or(&to).to_owned();
    }
    println!("  REST pages of 50 alerts (the queue's page), 200 requests each:");
    let shapes = [
        ("first page", "/api/v1/alerts?limit=50".to_owned()),
        ("level >= 5", "/api/v1/alerts?limit=50&level=5".to_owned()),
        ("one host", "/api/v1/alerts?limit=50&host=ws-0421".to_owned()),
        ("technique T1059 (+ subs)", "/api/v1/alerts?limit=50&technique=T1059".to_owned()),
        ("handled", "/api/v1/alerts?limit=50&handling=handled".to_owned()),
        ("false positive (none)", "/api/v1/alerts?limit=50&handling=false_positive".to_owned()),
        ("50,000 deep", format!("/api/v1/alerts?limit=50&to={to}")),
    ];
    for (name, path) in shapes {
        let (p50, p99, rows) = timed(api, token, &path, 200)?;
        println!("    {name:<32} p50 {p50:7.2} ms   p99 {p99:7.2} ms   ({rows} rows)");
    }
    Ok(())
}

fn browser(api: &str, token: &str) -> anyhow::Result<()> {
    let console = Path::new(env!("CARGO_MANIFEST_DIR")).join("../console");
    let out = std::process::Command::new("node")
        .arg("bench/perf.mjs")
        .current_dir(&console)
        .env("CORDON_URL", api)
        .env("CORDON_TOKEN", token)
        .output()
        .map_err(|e| anyhow::anyhow!("node (Node.js 20+, and `npm ci` in console/): {e}"))?;
    anyhow::ensure!(out.status.success(), "perf.mjs: {}", String::from_utf8_lossy(&out.stderr));
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}

pub(crate) fn run(alerts: usize) -> anyhow::Result<()> {
    let bin = std::env::current_exe()?;
    let tmp = tempfile::tempdir()?;
    let nats = tests::start_nats_with(&tmp.path().join("nats"), &cordon::nats::NatsOptions::default())?;
    let data = tmp.path().join("data");
    let spool = tmp.path().join("spool");
    let server = tests::Server::start(&bin, &data, &nats.url, &ServerOptions::default())?;
    let token = tests::token(&bin, &data, None)?;
    tests::agent(&bin, &nats.url, &spool, &["replay", "builtin:log4j-conti"])?;
    tests::eventually(Duration::from_secs(60), || {
        let (_, v) = tests::get(&format!("{}/api/v1/incidents", server.api), Some(&token))?;
        Ok(v["incidents"].as_array().is_some_and(|i| !i.is_empty()).then_some(()))
    })?;
    println!("console: the Log4j/Conti scenario ingested; its incident formed");
    browser(&server.api, &token)?;
    server.kill();
    let secs = tokio::runtime::Runtime::new()?.block_on(seed(&data, alerts))?;
    println!("console: {alerts} alerts added to the catalog in {secs:.1} s; server restarted on them");
    let server = tests::Server::start(&bin, &data, &nats.url, &ServerOptions::default())?;
    rest(&server.api, &token)?;
    browser(&server.api, &token)?;
    Ok(())
}
