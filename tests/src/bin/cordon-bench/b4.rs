//! B4 (`../shared/docs/PERF.md`): the analyst's calls over REST on a fleet's events, beside DuckDB
//! on the same Parquet files, in one run.
//!
//! The events (generated, seeded, spread over a week) are committed through the store as ingest
//! commits them (Parquet, catalog, index) under a running server, and compacted as its upkeep would
//! (each day's files merged, Z-ordered by host and time). Then:
//! - **point calls**: `--clients` threads for `--secs` seconds each call in turn a host's timeline
//!   (newest 100), a host + kind + one hour count, and an IOC sweep of one IP, domain or hash;
//!   DuckDB then answers the same questions in SQL from as many threads for as long;
//! - **aggregations**: five analyst questions in SQL, Cordon's `/api/v1/sql` and DuckDB alternating,
//!   `--reps` times each, medians compared.
//!
//! Cordon is measured through HTTP with JSON answers, as an analyst's console calls it; DuckDB is
//! called in its own process with no HTTP in between. Before timing, timelines (their events' ids,
//! in order), counts and sweeps answered by both are compared and every difference printed.

use crate::path::path_server;
use schemas::decode::{Channel, Limits, decode_line};
use schemas::fields::col;
use schemas::{FIELDS, Kind, Record, Search};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Events committed per store commit.
const CHUNK: usize = 100_000;
/// The week the events are spread over.
const SPAN: i64 = 7 * 86_400_000_000;
const START: i64 = 1_790_000_000_000_000;
/// Distinct values sampled per question.
const PER_SHAPE: usize = 1000;

/// The five aggregations (PERF.md), in SQL both engines run as written.
pub(crate) const AGGREGATIONS: [(&str, &str); 5] = [
    (
        "failed logins by source",
        "SELECT source_ip, count(*) AS n FROM events WHERE event_kind = 'authentication' \
         AND event_outcome = 'failure' GROUP BY source_ip ORDER BY n DESC, source_ip LIMIT 100",
    ),
    (
        "rare parent->child pairs",
        "SELECT parent_name, process_name, count(*) AS n FROM events WHERE event_kind = 'process' \
         AND event_action = 'start' GROUP BY parent_name, process_name ORDER BY n, parent_name, process_name LIMIT 20",
    ),
    (
        "egress by host",
        "SELECT host_name, count(*) AS connections, count(DISTINCT destination_ip) AS destinations \
         FROM events WHERE event_kind = 'network' AND network_direction = 'outbound' \
         AND destination_ip NOT LIKE '10.%' GROUP BY host_name ORDER BY connections DESC, host_name LIMIT 100",
    ),
    (
        "hourly logins per host",
        "SELECT host_name, date_trunc('hour', time) AS hour, count(*) AS n FROM events \
         WHERE event_kind = 'authentication' GROUP BY host_name, date_trunc('hour', time) \
         ORDER BY n DESC, host_name, hour LIMIT 1000",
    ),
    (
        "command-line substring",
        "SELECT host_name, count(*) AS n FROM events WHERE process_command_line LIKE '%-NoProfile%' \
         GROUP BY host_name ORDER BY n DESC, host_name LIMIT 100",
    ),
];

/// What the point questions ask about, sampled from the events committed.
#[derive(Default)]
pub(crate) struct Sampled {
    hosts: Vec<String>,
    /// (host, kind, time): a count over the hour around `time`.
    windows: Vec<(String, String, i64)>,
    /// (search role, value).
    iocs: Vec<(Search, String)>,
    seen: std::collections::HashSet<String>,
}

impl Sampled {
    fn observe(&mut self, r: &Record, i: usize) {
        let host = r.host().to_owned();
        if self.hosts.len() < PER_SHAPE && self.seen.insert(host.clone()) {
            self.hosts.push(host.clone());
        }
        let kind = r.cell(col::EVENT_KIND).as_str().unwrap_or_default().to_owned();
        if self.windows.len() < PER_SHAPE && i.is_multiple_of(997) && !kind.is_empty() {
            self.windows.push((host, kind, r.time()));
        }
        if !i.is_multiple_of(89) || self.iocs.len() >= 3 * PER_SHAPE {
            return;
        }
        for (name, role) in [
            ("destination_ip", Search::Ip),
            ("destination_domain", Search::Domain),
            ("process_hash_sha256", Search::Hash),
        ] {
            let Some(c) = FIELDS.iter().position(|d| d.column == name) else { continue };
            if let Some(v) = r.cell(c).as_str().filter(|v| !v.is_empty()) {
                let v = v.to_lowercase();
                if self.seen.insert(v.clone()) {
                    self.iocs.push((role, v));
                }
            }
        }
    }
}

/// Generates `events` fleet events over [`SPAN`] and commits them through the store, [`CHUNK`] at a
/// time; returns what the questions will ask about.
pub(crate) fn load(
    rt: &tokio::runtime::Runtime,
    store: &store::Store,
    events: usize,
) -> anyhow::Result<Sampled> {
    let mut fleet = fixtures::fleet::FleetGenerator::new(42, 2000);
    let limits = Limits { max_skew_micros: i64::MAX, ..Limits::default() };
    let ch = Channel { tenant: "default", agent: "bench", message_key: "b4", stream_seq: 1, received: 0 };
    let mut sampled = Sampled::default();
    let t0 = Instant::now();
    for (n, from) in (0..events).step_by(CHUNK).enumerate() {
        let mut records = Vec::with_capacity(CHUNK);
        for i in from..(from + CHUNK).min(events) {
            let (_, e) = fleet.next_event(START + (i as i64) * (SPAN / events as i64));
            let rec = decode_line(&serde_json::to_vec(&e)?, i, &ch, &limits)
                .map_err(|e| anyhow::anyhow!("a generated event did not decode: {e}"))?;
            sampled.observe(&rec, i);
            records.push(rec);
        }
        let batch = store::MessageBatch {
            key: format!("b4-{n}"),
            stream_seq: n as u64 + 1,
            records,
            rejected: 0,
            published: None,
        };
        rt.block_on(store.commit("b4", vec![batch]))?;
        if n % 10 == 9 {
            println!(
                "  committed {} events ({:.0} s)",
                (from + CHUNK).min(events),
                t0.elapsed().as_secs_f64()
            );
        }
    }
    println!("  {events} events committed in {:.0} s", t0.elapsed().as_secs_f64());
    Ok(sampled)
}

/// One point question, as Cordon's REST call and as DuckDB's SQL.
#[derive(Clone)]
struct Point {
    shape: &'static str,
    /// A GET path, or a POST path with its body.
    call: (String, Option<serde_json::Value>),
    sql: String,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// DuckDB's SQL for a sweep of `value` in every column of `role` (the columns Cordon's index
/// searches for it), as per-host counts and first and last times.
fn sweep_sql(role: Search, value: &str) -> String {
    let v = quote(value);
    let clauses: Vec<String> = FIELDS
        .iter()
        .filter(|d| d.search == role)
        .map(|d| match d.kind {
            Kind::List => format!("list_contains({}, {v})", d.column),
            _ => format!("lower({}) = {v}", d.column),
        })
        .collect();
    format!(
        "SELECT host_name, count(*), min(time), max(time) FROM events WHERE {} GROUP BY host_name",
        clauses.join(" OR ")
    )
}

fn points(s: &Sampled) -> Vec<Point> {
    let mut out = Vec::new();
    for h in &s.hosts {
        out.push(Point {
            shape: "timeline",
            call: (format!("/api/v1/hosts/{h}/timeline?limit=100"), None),
            sql: format!(
                "SELECT * FROM events WHERE host_name = {} ORDER BY time DESC, event_id DESC LIMIT 100",
                quote(h)
            ),
        });
    }
    for (h, k, t) in &s.windows {
        let (from, to) = (t - 1_800_000_000, t + 1_800_000_000);
        out.push(Point {
            shape: "count",
            call: (format!("/api/v1/search?q=kind:{k}&host={h}&from={}&to={}&limit=1", from / 1000, to / 1000), None),
            sql: format!(
                "SELECT count(*) FROM events WHERE host_name = {} AND event_kind = {} AND time >= make_timestamp({from}) \
                 AND time < make_timestamp({to})",
                quote(h),
                quote(k)
            ),
        });
    }
    for (role, v) in &s.iocs {
        out.push(Point {
            shape: "ioc",
            call: ("/api/v1/iocs/sweep".into(), Some(serde_json::json!({ "iocs": [v] }))),
            sql: sweep_sql(*role, v),
        });
    }
    out
}

/// Latencies (seconds) per shape of `clients` threads calling Cordon for `secs`.
fn cordon_points(
    api: &str,
    token: &str,
    points: &[Point],
    clients: usize,
    secs: u64,
) -> anyhow::Result<BTreeMap<&'static str, Vec<f64>>> {
    let by_shape: BTreeMap<&'static str, Vec<&Point>> = points.iter().fold(BTreeMap::new(), |mut m, p| {
        m.entry(p.shape).or_insert_with(Vec::new).push(p);
        m
    });
    let shapes: Vec<&'static str> = by_shape.keys().copied().collect();
    let until = Instant::now() + Duration::from_secs(secs);
    let results: Vec<anyhow::Result<Vec<(&'static str, f64)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let (by_shape, shapes) = (&by_shape, &shapes);
                scope.spawn(move || {
                    let agent = ureq::Agent::new_with_defaults();
                    let mut out = Vec::new();
                    let mut k = c;
                    while Instant::now() < until {
                        let shape = shapes[k % shapes.len()];
                        let list = &by_shape[shape];
                        let p = list[(k / shapes.len()) % list.len()];
                        let t = Instant::now();
                        call(&agent, api, token, p)?;
                        out.push((shape, t.elapsed().as_secs_f64()));
                        k += clients;
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a client panicked"))))
            .collect()
    });
    let mut lat: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for r in results {
        for (shape, secs) in r? {
            lat.entry(shape).or_default().push(secs);
        }
    }
    Ok(lat)
}

/// One REST call, its answer; an answer other than 200 fails the bench.
fn call(agent: &ureq::Agent, api: &str, token: &str, p: &Point) -> anyhow::Result<serde_json::Value> {
    let url = format!("{api}{}", p.call.0);
    let (status, body) = request(agent, &url, token, p.call.1.as_ref())?;
    anyhow::ensure!(status == 200, "{url}: {status} {body}");
    Ok(body)
}

/// A GET (no body) or a POST of JSON as the analyst's token; (status, JSON answer).
fn request(
    agent: &ureq::Agent,
    url: &str,
    token: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let auth = format!("Bearer {token}");
    let mut resp = match body {
        None => agent
            .get(url)
            .header("Authorization", &auth)
            .config()
            .http_status_as_error(false)
            .build()
            .call()?,
        Some(body) => agent
            .post(url)
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .config()
            .http_status_as_error(false)
            .build()
            .send(body.to_string())?,
    };
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string()?;
    Ok((status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))))
}

/// How many events an answer counted: a search's total, or a sweep's (Cordon); the count, or the
/// per-host counts summed (DuckDB's rows).
fn counted(shape: &str, cordon: &serde_json::Value, duck: &serde_json::Value) -> (u64, u64) {
    let rows = duck["data"].as_array().cloned().unwrap_or_default();
    match shape {
        "count" => {
            (cordon["total"].as_u64().unwrap_or(0), rows.first().and_then(|r| r[0].as_u64()).unwrap_or(0))
        }
        _ => (
            cordon["results"][0]["total"].as_u64().unwrap_or(0),
            rows.iter().filter_map(|r| r[1].as_u64()).sum(),
        ),
    }
}

/// The timelines, counts and sweeps of the first `n` questions of each, answered by both, compared
/// (timelines by their events' ids in order).
fn agree(api: &str, token: &str, points: &[Point], peer: &mut Peer, n: usize) -> anyhow::Result<()> {
    let agent = ureq::Agent::new_with_defaults();
    let (mut same, mut checked, mut events) = (0, 0, 0);
    for p in points.iter().filter(|p| p.shape == "timeline").take(n) {
        let ours: Vec<String> = call(&agent, api, token, p)?["events"]
            .as_array()
            .map(|a| a.iter().map(|e| e["event"]["id"].as_str().unwrap_or_default().to_owned()).collect())
            .unwrap_or_default();
        let sql = p.sql.replacen("SELECT *", "SELECT event_id", 1);
        let theirs: Vec<String> =
            peer.ask(&serde_json::json!({"op": "sql", "sql": sql, "data": true}))?["data"]
                .as_array()
                .map(|rows| rows.iter().map(|r| r[0].as_str().unwrap_or_default().to_owned()).collect())
                .unwrap_or_default();
        checked += 1;
        if ours == theirs && !ours.is_empty() {
            same += 1;
        } else {
            println!("  DIFFERENT: {} -> Cordon {} events, DuckDB {}", p.call.0, ours.len(), theirs.len());
        }
    }
    for shape in ["count", "ioc"] {
        for p in points.iter().filter(|p| p.shape == shape).take(n) {
            let ours = call(&agent, api, token, p)?;
            let theirs = peer.ask(&serde_json::json!({"op": "sql", "sql": p.sql, "data": true}))?;
            let (a, b) = counted(shape, &ours, &theirs);
            checked += 1;
            events += a;
            if a == b {
                same += 1;
            } else {
                println!("  DIFFERENT: {} -> Cordon {a}, DuckDB {b}", p.call.0);
            }
        }
    }
    println!(
        "  answers compared: {same} of {checked} timelines, counts and sweeps agree ({events} events counted by Cordon)"
    );
    Ok(())
}

/// DuckDB in its own process, answering one JSON request per line.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn start(glob: &str) -> anyhow::Result<Self> {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/duckdb_b4.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(glob)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow::anyhow!("no stdin"))?;
        let stdout = BufReader::new(child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?);
        let mut peer = Self { child, stdin, stdout };
        let hello = peer.ask(&serde_json::json!({"op": "version"}))?;
        println!("  peer: DuckDB {}", hello["version"].as_str().unwrap_or("?"));
        Ok(peer)
    }

    fn ask(&mut self, req: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
        writeln!(self.stdin, "{req}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let v: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("the DuckDB peer answered {line:?}: {e}"))?;
        if let Some(e) = v["error"].as_str() {
            anyhow::bail!("the DuckDB peer failed: {e}");
        }
        Ok(v)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// The goal PERF.md sets for a point shape's p99 (milliseconds).
fn goal_ms(shape: &str) -> f64 {
    match shape {
        "timeline" => 25.0,
        "count" => 15.0,
        _ => 10.0,
    }
}

/// `cordon-bench --only b4 [--events N] [--secs S] [--clients C] [--reps R]`.
pub(crate) fn b4(events: usize, secs: u64, clients: usize, reps: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_nats, rt, running) = path_server(tmp.path(), None)?;
    let now = schemas::time::now_micros();
    let (_, token) = rt.block_on(running.store.catalog().create_token(
        "b4",
        "default",
        schemas::access::Role::Analyst,
        now,
    ))?;
    let sampled = load(&rt, &running.store, events)?;
    // The lake as the server's upkeep keeps it: each day's files merged and Z-ordered by host and time.
    let t = Instant::now();
    let c = rt.block_on(running.store.compact(&store::CompactOptions::default()))?;
    println!(
        "  compacted as upkeep does: {} files into {} ({:.0} MB) in {:.0} s",
        c.files_removed,
        c.files_added,
        c.bytes_after as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let api = format!("http://{}", running.addr);
    let glob = tmp.path().join("data/lake/events/tenant=default/*/*.parquet").display().to_string();
    let mut peer = Peer::start(&glob)?;
    let points = points(&sampled);
    point_phase(&api, &token, &points, &mut peer, clients, secs)?;
    aggregation_phase(&api, &token, &mut peer, reps)?;
    drop(peer);
    rt.block_on(running.stop())?;
    Ok(())
}

/// The point calls: Cordon, then DuckDB, each from `clients` threads for `secs`.
fn point_phase(
    api: &str,
    token: &str,
    points: &[Point],
    peer: &mut Peer,
    clients: usize,
    secs: u64,
) -> anyhow::Result<()> {
    agree(api, token, points, peer, 25)?;
    let c0 = crate::cpu_seconds();
    let mut lat = cordon_points(api, token, points, clients, secs)?;
    let cordon_cpu = crate::cpu_seconds() - c0;
    let by_shape: BTreeMap<&str, Vec<&str>> = points.iter().fold(BTreeMap::new(), |mut m, p| {
        m.entry(p.shape).or_insert_with(Vec::new).push(p.sql.as_str());
        m
    });
    let duck = peer
        .ask(&serde_json::json!({"op": "points", "clients": clients, "secs": secs, "queries": by_shape}))?;
    println!(
        "  point calls, {clients} clients x {secs} s: Cordon {} calls ({:.1} CPU-s in this process), DuckDB {} ({:.1} CPU-s)",
        lat.values().map(Vec::len).sum::<usize>(),
        cordon_cpu,
        duck["calls"].as_u64().unwrap_or(0),
        duck["cpu"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "  {:10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "shape", "p50 ms", "p99 ms", "goal p99", "calls", "Duck p50", "Duck p99"
    );
    for (shape, v) in &mut lat {
        let d = &duck["shapes"][*shape];
        println!(
            "  {:10} {:>9.2} {:>9.2} {:>9.0} {:>9} {:>9.2} {:>10.2}",
            shape,
            1e3 * pct(v, 0.5),
            1e3 * pct(v, 0.99),
            goal_ms(shape),
            v.len(),
            1e3 * d["p50"].as_f64().unwrap_or(f64::NAN),
            1e3 * d["p99"].as_f64().unwrap_or(f64::NAN),
        );
    }
    Ok(())
}

/// The five aggregations, Cordon and DuckDB alternating `reps` times; medians and their ratio.
fn aggregation_phase(api: &str, token: &str, peer: &mut Peer, reps: usize) -> anyhow::Result<()> {
    let agent = ureq::Agent::new_with_defaults();
    println!(
        "  {:26} {:>12} {:>12} {:>8} {:>7} {:>7}",
        "aggregation", "Cordon ms", "DuckDB ms", "ratio", "rows", "Duck rows"
    );
    let mut ratios = Vec::new();
    for (name, sql) in AGGREGATIONS {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let (mut rows, mut their_rows) = (0, 0);
        let mut refused = None;
        // One unmeasured run each first: both read the files' footers once.
        for rep in 0..=reps {
            let t = Instant::now();
            let body = serde_json::json!({ "sql": sql, "max_rows": 10_000 });
            let (status, body) = request(&agent, &format!("{api}/api/v1/sql"), token, Some(&body))?;
            let wall = t.elapsed().as_secs_f64();
            if status != 200 {
                // A query over its budget is refused (422), as it would be for an analyst: said, not timed.
                refused = Some(format!("{status} {}", body["error"]["message"].as_str().unwrap_or("")));
                break;
            }
            rows = body["rows"].as_array().map_or(0, Vec::len);
            let d = peer.ask(&serde_json::json!({"op": "sql", "sql": sql}))?;
            their_rows = d["rows"].as_u64().unwrap_or(0) as usize;
            if rep > 0 {
                ours.push(wall);
                theirs.push(d["secs"].as_f64().unwrap_or(f64::NAN));
            }
        }
        if let Some(why) = refused {
            println!("  {name:26} refused by Cordon: {why}");
            continue;
        }
        let (o, t) = (crate::median(&mut ours), crate::median(&mut theirs));
        ratios.push(o / t);
        println!("  {name:26} {:>12.1} {:>12.1} {:>7.2}x {rows:>7} {their_rows:>9}", 1e3 * o, 1e3 * t, o / t);
    }
    let geo = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
    println!(
        "  aggregations: geomean of Cordon/DuckDB median time over the {} answered: {geo:.2}x (PERF.md goal <= 1.0x)",
        ratios.len()
    );
    Ok(())
}
