//! `cordon-bench`: PERF.md's B1 (ingest to Parquet vs DuckDB), B2 (ingest + tantivy vs SQLite FTS5)
//! and B3 (JetStream transport, 100 events per message vs 1), each run side by side with its peer in
//! the same invocation, alternating, with medians, min/max, wall and CPU seconds and the ratio.
//!
//! `--only path` measures the whole path instead: agents (a separate process, spool fsync on) ->
//! nats-server (file storage, `sync_interval: always`) -> `cordon serve` (in this process) -> lake +
//! index, at an offered rate, reporting sustained events/s, CPU-seconds of every process, and how
//! stale the newest searchable event is (publish-to-searchable) while it runs. Its reference is
//! PERF.md's whole-system goal (>= 100k events/s on 2 cores, p99 <= 5 s). With `--prebuilt` the
//! agents build every batch before the run starts and only spool and publish during it, as issue
//! 21's bar asks (the agents run on endpoints); their build CPU is reported apart.
//!
//! `--only b6 --sigma-rules DIR --evtx-dir DIR` runs B6's Cordon half: ~1,000 SigmaHQ Windows and
//! Linux rules (the first that load, by path) over the corpus's EVTX records cycled to `--events`,
//! reporting events per CPU-second and nanoseconds per rule per event. (B6's peer, rsigma-eval, is not
//! wired yet.)
//!
//! `--only b7 [--hosts N] [--peers python3]` runs B7: every host's login forecast refitted (2,000
//! hosts x 672 hours, two threads) beside statsforecast's MSTL(AutoETS), and one hour's scoring.
//!
//! `--only report [--hosts 1000] [--days 90] [--out DIR]` makes issue 5's anomaly report for a
//! simulated fleet end to end and times it (`report.rs`).
//!
//! `--only b8 [--max-edges N] [--peers python3]` runs B8: the entity graph built from fleet events,
//! 1,000 two-hop queries beside networkx and a DuckDB recursive CTE, and the Log4j path query; with
//! an edge budget, the build evicts after each batch as ingest's analyser does, timed apart.
//!
//! `--only b4 [--events N] [--secs S] [--clients C]` runs B4: a host's timeline, a host + kind + hour
//! count and IOC sweeps over REST from C clients, and five aggregations through `/api/v1/sql`, beside
//! DuckDB on the same Parquet files (see `b4.rs`).
//!
//! `--only merge [--files F] [--rows R]` runs one size-tiered merge of F files of R rows and prints
//! its time and the memory it costs above what the process held (see `merge.rs`).
//!
//! `--only distsql [--events N] [--reps R]` runs B4's five aggregations on the distributed SQL engine
//! (two executors) and on the embedded one over the same lake, answers compared (see `dist_sql.rs`).
//! `--only b5 [--events N]` runs B5: seven search shapes, 1,000 queries each, on the index ingest
//! built, beside SQLite FTS5 on the same documents (see `b5.rs`).
//!
//! `--only console [--alerts N]` measures issue 18's speed bars (see `console.rs`).
//!
//! `--only detect [--hosts H] [--rate EPS] [--secs S]` runs the detection rules and the correlation
//! windows alone on fleet events at the whole path's density, per 20 s of event time (see `detect.rs`).
//! `--only decode [--events N]` measures issue 21's decode stage alone, fed without NATS, beside a
//! plain `serde_json::Value` parse of the same lines (see `decode.rs`).
//!
//! `--only sensor [--rates 10,100,1000] [--secs S] [--agent-bin PATH]` measures issue 19's live
//! agent beside auditd and a `/proc` polling baseline (see `sensor.rs`; `./dev bench-sensor`).
//!
//! `--only incidents [--hosts 1000] [--rate 2500] [--secs 600] [--alert-every 500] [--searches 256]` runs
//! the incident pass as ingest runs it, once per second of fleet events, without NATS or storage
//! (see `incidents.rs`).
//!
//! `--only soak [--agents 1000] [--rate 12000] [--secs 1800]` runs issue 21's soak: many agents,
//! each with its own key and connection, through the whole path for a long time; resident-size
//! growth, lost and duplicated events and freshness against their bars (see `soak.rs`).
//!
//! usage: cordon-bench [--events N] [--reps R] [--only b1|b2|b3|path|detect|decode|b4|distsql|b5|b6|b7|b8|incidents|report|console|soak] [--rate EPS] [--secs S]
//! Peers: `pip install duckdb` (B1), Python's sqlite3 with FTS5 (B2), nats-server on PATH (B3).

mod b1;
mod b4;
mod b5;
mod b6;
mod b7;
mod b8;
mod callout;
mod console;
mod decode;
mod detect;
mod dist_sql;
mod heap;
mod incidents;
mod merge;
mod path;
mod report;
mod sensor;
mod soak;
mod t8;

use b1::b1_b2;
use b5::b5;
use b6::b6;
use b7::b7;
use b8::b8;
use path::{path_run, path_server, whole_path};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// Process CPU seconds (user + system), from /proc.
pub(crate) fn cpu_seconds() -> f64 {
    proc_cpu("self").0
}

/// A kB field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, `RssAnon`...), `pid` a number or `self`.
pub(crate) fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
}

/// (own, reaped children's) CPU seconds of a process, from /proc/<pid>/stat.
fn proc_cpu(pid: &str) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ((ticks(11) + ticks(12)) / 100.0, (ticks(13) + ticks(14)) / 100.0)
}

#[derive(Clone, Copy)]
struct Sample {
    wall: f64,
    cpu: f64,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn report(name: &str, n: f64, samples: &[Sample]) -> f64 {
    let mut walls: Vec<f64> = samples.iter().map(|s| s.wall).collect();
    let mut cpus: Vec<f64> = samples.iter().map(|s| s.cpu).collect();
    let (w, c) = (median(&mut walls), median(&mut cpus));
    println!(
        "  {name:<44} wall median {w:7.3}s (min {:.3} max {:.3})  CPU median {c:7.3}s  => {:>10.0} events/s  {:>10.0} events/CPU-s",
        walls[0],
        walls[walls.len() - 1],
        n / w,
        n / c
    );
    n / c
}

fn generate(n: usize, path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut fleet = fixtures::fleet::FleetGenerator::new(42, 2000);
    let start = 1_790_000_000_000_000i64;
    let mut out = Vec::with_capacity(n * 600);
    for i in 0..n {
        let (_, e) = fleet.next_event(start + (i as i64) * 3_600_000_000 / n as i64);
        serde_json::to_writer(&mut out, &e)?;
        out.push(b'\n');
    }
    std::fs::write(path, &out)?;
    Ok(out)
}

fn python(script: &str, args: &[&Path]) -> anyhow::Result<serde_json::Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench").join(script);
    let out = Command::new("python3").arg(root).args(args).output()?;
    if !out.status.success() {
        anyhow::bail!("{script} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(out.stdout.trim_ascii())?)
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p).map_or(0, |rd| {
        rd.filter_map(Result::ok)
            .map(
                |e| if e.path().is_dir() { dir_size(&e.path()) } else { e.metadata().map_or(0, |m| m.len()) },
            )
            .sum()
    })
}

/// B3: publish `events` through JetStream (file storage) and consume them with a pull consumer.
async fn transport(url: &str, events: usize, per_msg: usize, run: usize) -> anyhow::Result<Sample> {
    use async_nats::jetstream;
    use futures::StreamExt;
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client);
    let name = format!("BENCH{run}_{per_msg}");
    let subject = format!("bench{run}.{per_msg}");
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await?;
    let mut fleet = fixtures::fleet::FleetGenerator::new(7, 2000);
    let mut bodies = Vec::new();
    let mut batch = Vec::new();
    for i in 0..events {
        batch.push(fleet.next_event(i as i64).1);
        if batch.len() == per_msg {
            bodies.push(schemas::wire::encode_ndjson(&batch));
            batch.clear();
        }
    }
    let (w0, c0) = (Instant::now(), cpu_seconds());
    for chunk in bodies.chunks(1000) {
        let mut acks = Vec::with_capacity(chunk.len());
        for b in chunk {
            acks.push(js.publish(subject.clone(), b.clone().into()).await?);
        }
        for a in acks {
            a.await?;
        }
    }
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("c".into()),
            ..Default::default()
        })
        .await?;
    let mut got = 0;
    while got < bodies.len() {
        let mut msgs = consumer.fetch().max_messages(1000).messages().await?;
        while let Some(m) = msgs.next().await {
            let m = m.map_err(|e| anyhow::anyhow!(e))?;
            m.ack().await.map_err(|e| anyhow::anyhow!(e))?;
            got += 1;
        }
    }
    let s = Sample { wall: w0.elapsed().as_secs_f64(), cpu: cpu_seconds() - c0 };
    js.delete_stream(&name).await?;
    Ok(s)
}

fn b3(events: usize, reps: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let nats = cordon::nats::start(&tmp.path().join("nats"))?;
    println!("nats-server {} (file storage, sync_interval always), {} events", nats.version, events);
    let rt = tokio::runtime::Runtime::new()?;
    let (mut batched, mut single) = (Vec::new(), Vec::new());
    let single_events = (events / 10).max(1000);
    for r in 0..reps {
        batched.push(rt.block_on(transport(&nats.url, events, 100, r))?);
        single.push(rt.block_on(transport(&nats.url, single_events, 1, r))?);
    }
    let a = report("B3 JetStream, 100 events/message (client CPU)", events as f64, &batched);
    let b = report(
        &format!("B3 JetStream, 1 event/message ({single_events} events)"),
        single_events as f64,
        &single,
    );
    println!(
        "  ratio batched/single per client CPU-s: {:.1}x (server CPU not counted; wall includes it)",
        a / b
    );
    Ok(())
}

/// The `p` quantile of sorted values (NaN when empty).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN)
}

fn main() -> anyhow::Result<()> {
    let mut raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if raw.get(1).is_some_and(|a| a == "agent") {
        raw.remove(1);
        raw[0] = "cordon-agent".into();
        let code = sensor_agent::cli::main_with_args(raw);
        return if code == std::process::ExitCode::SUCCESS { Ok(()) } else { anyhow::bail!("agent failed") };
    }
    // Any other command (`serve`, `token`, `enroll-token`...): the server's CLI, for benches that run
    // the server as its own process.
    if raw.get(1).is_some_and(|a| !a.to_string_lossy().starts_with("--")) {
        raw[0] = "cordon".into();
        let code = cordon::main_with_args(raw);
        return if code == std::process::ExitCode::SUCCESS { Ok(()) } else { anyhow::bail!("cordon failed") };
    }
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    if args.get(1).is_some_and(|a| a == "--generate") {
        let n = |i: usize| args.get(i).map_or(Ok(0), |v| v.parse::<u64>());
        return sensor::generate(n(2)?, n(3)?);
    }
    let events: usize = flag("--events").map_or(Ok(1_000_000), |v| v.parse())?;
    let reps: usize = flag("--reps").map_or(Ok(5), |v| v.parse())?;
    let only = flag("--only");
    let profile = if cfg!(debug_assertions) { "debug build (dev profile)" } else { "release build" };
    println!(
        "cordon-bench, {profile}, {reps} repetitions alternating with the peer, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if only.as_deref().is_none_or(|o| o == "b1") {
        println!("\nB1 ingest to Parquet");
        b1_b2(events, reps, false)?;
    }
    if only.as_deref().is_none_or(|o| o == "b2") {
        println!("\nB2 ingest, searchable");
        b1_b2(events, reps, true)?;
    }
    if only.as_deref().is_none_or(|o| o == "b3") {
        println!("\nB3 transport");
        b3(events, reps)?;
    }
    if only.as_deref() == Some("b4") {
        println!("\nB4 timeline, counts, IOC sweeps and aggregations over REST, beside DuckDB");
        b4::b4(
            flag("--events").map_or(Ok(10_000_000), |v| v.parse())?,
            flag("--secs").map_or(Ok(60), |v| v.parse())?,
            flag("--clients").map_or(Ok(8), |v| v.parse())?,
            reps,
        )?;
        return Ok(());
    }
    if only.as_deref() == Some("distsql") {
        println!("\nAnalyst SQL: the distributed engine (two executors) beside the embedded one");
        return dist_sql::run(flag("--events").map_or(Ok(2_000_000), |v| v.parse())?, reps);
    }
    if only.as_deref() == Some("b5") {
        println!("\nB5 text search");
        b5(events)?;
        return Ok(());
    }
    if only.as_deref() == Some("b6") {
        let rules = flag("--sigma-rules").ok_or_else(|| anyhow::anyhow!("b6 needs --sigma-rules DIR"))?;
        let evtx = flag("--evtx-dir").ok_or_else(|| anyhow::anyhow!("b6 needs --evtx-dir DIR"))?;
        println!("\nB6 Sigma detection (Cordon's engine)");
        let peer = flag("--rsigma");
        b6(
            Path::new(&rules),
            Path::new(&evtx),
            flag("--events").map_or(Ok(200_000), |v| v.parse())?,
            reps,
            peer.as_deref().map(Path::new),
        )?;
        return Ok(());
    }
    if only.as_deref() == Some("report") {
        println!("\nIssue 5's report for a simulated fleet (lake, weekly refits, live counts, the report)");
        let out = flag("--out").map(std::path::PathBuf::from);
        report::report(
            flag("--hosts").map_or(Ok(1000), |v| v.parse())?,
            flag("--days").map_or(Ok(90), |v| v.parse())?,
            out.as_deref(),
        )?;
        return Ok(());
    }
    if only.as_deref() == Some("b7") {
        println!("\nB7 login baselines (Cordon; statsforecast with --peers PYTHON)");
        let peers = flag("--peers");
        b7(flag("--hosts").map_or(Ok(2000), |v| v.parse())?, reps, peers.as_deref())?;
        return Ok(());
    }
    if only.as_deref() == Some("b8") {
        println!("\nB8 entity graph (Cordon; peers with --peers PYTHON)");
        let peers = flag("--peers");
        let budget = flag("--max-edges").map(|v| v.parse()).transpose()?;
        b8(flag("--events").map_or(Ok(10_000_000), |v| v.parse())?, reps.min(3), budget, peers.as_deref())?;
        return Ok(());
    }
    if only.as_deref() == Some("detect") {
        println!("\nThe detection rules and correlation windows alone, fleet events at the path's density");
        let n = |name: &str, default: u64| flag(name).map_or(Ok(default), |v| v.parse::<u64>());
        return detect::run(n("--hosts", 200)? as usize, n("--rate", 30_000)?, n("--secs", 120)?);
    }
    if only.as_deref() == Some("decode") {
        println!("\nThe decode stage alone (issue 21), without NATS");
        return decode::run(events, reps);
    }
    if only.as_deref() == Some("console") {
        return console::run(flag("--alerts").map_or(Ok(100_000), |v| v.parse())?);
    }
    if only.as_deref() == Some("callout") {
        let agents: usize = flag("--agents").map_or(Ok(1_000), |v| v.parse())?;
        println!("\nAgent authentication: Cordon's NATS auth callout beside no authentication");
        callout::run(agents, 200, reps.min(3))?;
        return Ok(());
    }
    if only.as_deref() == Some("sensor") {
        let rates: Vec<u64> = flag("--rates")
            .unwrap_or_else(|| "10,100,1000".into())
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let secs: u64 = flag("--secs").map_or(Ok(20), |v| v.parse())?;
        println!("\nIssue 19: the live agent's process source beside auditd and /proc polling");
        return sensor::sensor(&rates, secs, flag("--agent-bin").map(std::path::PathBuf::from));
    }
    if only.as_deref() == Some("merge") {
        println!("\nOne size-tiered merge: time and the memory it costs (issue 21's soak)");
        let n = |name: &str, default: usize| flag(name).map_or(Ok(default), |v| v.parse::<usize>());
        return merge::run(n("--files", store::MERGE_FAN_IN)?, n("--rows", 16_384)?, n("--reps", 1)?);
    }
    if only.as_deref() == Some("soak") {
        let agents: usize = flag("--agents").map_or(Ok(1_000), |v| v.parse())?;
        let rate: u64 = flag("--rate").map_or(Ok(12_000), |v| v.parse())?;
        let secs: u64 = flag("--secs").map_or(Ok(1_800), |v| v.parse())?;
        return soak::soak(agents, rate, secs);
    }
    if only.as_deref() == Some("incidents") {
        println!("\nIncident passes while fleet events arrive (the graph and incidents alone)");
        let n = |name: &str, default: usize| flag(name).map_or(Ok(default), |v| v.parse::<usize>());
        return incidents::run(&incidents::Stream {
            hosts: n("--hosts", 1000)?,
            rate: n("--rate", 2500)?,
            secs: n("--secs", 600)?,
            alert_every: n("--alert-every", 500)?.max(1),
            searches: n("--searches", correlate::incident::IncidentConfig::default().searches)?,
        });
    }
    if only.as_deref() == Some("t8") {
        let rate: u64 = flag("--rate").map_or(Ok(2_000), |v| v.parse())?;
        let secs: u64 = flag("--secs").map_or(Ok(20), |v| v.parse())?;
        let quota: u64 = flag("--quota").map_or(Ok(100), |v| v.parse())?;
        println!("\nT8: one agent at 100x its quota beside a fleet of 200");
        t8::run(rate, secs, quota, reps.min(3))?;
        return Ok(());
    }
    if only.as_deref().is_none_or(|o| o == "path") {
        let rate: u64 = flag("--rate").map_or(Ok(50_000), |v| v.parse())?;
        let secs: u64 = flag("--secs").map_or(Ok(20), |v| v.parse())?;
        println!("\nWhole path: agents -> NATS JetStream -> lake + index");
        whole_path(rate, secs, reps.min(3), args.iter().any(|a| a == "--prebuilt"))?;
    }
    Ok(())
}
