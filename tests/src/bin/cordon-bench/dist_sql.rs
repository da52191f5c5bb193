//! `--only distsql [--events N] [--reps R]`: analyst SQL on the distributed engine beside the
//! embedded one, on the same lake, in one run: B4's events (generated, committed through the store,
//! compacted as upkeep does) and B4's five aggregations, the two engines alternating `--reps` times
//! each, every answer compared. The two executors run in this process, each on a runtime of its own,
//! so both engines share this machine's cores: the figure is what the distributed plan costs here,
//! not what more machines would gain.

use std::sync::Arc;
use std::time::{Duration, Instant};
use store::query::SqlLimits;

const KEY: &str = "bench-executor-key-0123456789";

/// An executor on its own runtime; dropping it stops it.
struct Executor {
    url: String,
    counts: Arc<distsql::ExecutorCounts>,
    _stop: tokio::sync::oneshot::Sender<()>,
    _rt: tokio::runtime::Runtime,
}

fn executor(lake: &std::path::Path) -> anyhow::Result<Executor> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let counts = Arc::new(distsql::ExecutorCounts::default());
    let cfg = distsql::ExecutorConfig {
        objects: store::objects::Objects::local(lake, false)?,
        memory_bytes: 1 << 30,
        key: distsql::ExecutorKey::new(KEY)?,
        counts: Arc::clone(&counts),
        tls: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    rt.spawn(distsql::serve_executor(listener, cfg, async {
        let _ = stopped.await;
    }));
    Ok(Executor { url, counts, _stop: stop, _rt: rt })
}

/// Runs the comparison.
pub(crate) fn run(events: usize, reps: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let lake = tmp.path().join("lake");
    let executors = [executor(&lake)?, executor(&lake)?];
    let urls: Vec<String> = executors.iter().map(|e| e.url.clone()).collect();
    let engine = distsql::DistributedSql::new(
        distsql::Executors::parse(&urls)?,
        distsql::ExecutorKey::new(KEY)?,
        distsql::Channels::new(None),
    )?;
    let rt = tokio::runtime::Runtime::new()?;
    let mut cfg = store::StoreConfig::new(tmp.path().to_owned());
    cfg.fsync = false;
    cfg.sql_engine = Some(Arc::new(engine));
    let store = rt.block_on(store::Store::open(&cfg))?;
    crate::b4::load(&rt, &store, events)?;
    let c = rt.block_on(store.compact(&store::CompactOptions::default()))?;
    println!("  compacted: {} files ({:.0} MB)", c.files_added, c.bytes_after as f64 / 1e6);
    let limits = SqlLimits { max_rows: 10_000, timeout: Duration::from_secs(600) };
    println!(
        "  {:26} {:>13} {:>15} {:>8} {:>6} {:>10}",
        "aggregation", "embedded ms", "distributed ms", "ratio", "rows", "fragments"
    );
    let fragments = || -> Vec<u64> {
        executors.iter().map(|e| e.counts.fragments.load(std::sync::atomic::Ordering::Relaxed)).collect()
    };
    for (name, sql) in crate::b4::AGGREGATIONS {
        let (mut embedded, mut distributed) = (Vec::new(), Vec::new());
        let before = fragments();
        let mut rows = 0;
        // One unmeasured run each first: both read the files' footers once.
        for rep in 0..=reps {
            let t = Instant::now();
            let here = rt.block_on(store.sql("default", sql, limits.clone()))?;
            let here_secs = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let there = rt.block_on(store.analyst_sql("default", sql, limits.clone()))?;
            let there_secs = t.elapsed().as_secs_f64();
            anyhow::ensure!(here.rows == there.rows, "{name}: the engines answer differently");
            rows = here.rows.len();
            if rep > 0 {
                embedded.push(here_secs);
                distributed.push(there_secs);
            }
        }
        let (e, d) = (crate::median(&mut embedded), crate::median(&mut distributed));
        // Fragments each executor ran for this question's runs: both take part, or it was not distributed.
        let ran: Vec<u64> = fragments().iter().zip(&before).map(|(a, b)| a - b).collect();
        if ran.iter().all(|n| *n == 0) {
            println!("  ({name}: no executor ran a fragment; the lake is one task, so the plan stayed here)");
        }
        let ran: Vec<String> = ran.iter().map(u64::to_string).collect();
        let ran = ran.join("+");
        println!("  {name:26} {:>13.1} {:>15.1} {:>7.2}x {rows:>6} {ran:>10}", 1e3 * e, 1e3 * d, d / e);
    }
    Ok(())
}
