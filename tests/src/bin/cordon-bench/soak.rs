//! The soak (issue 21): many simulated agents, each enrolled with its own key and on its own
//! connection, offer a steady rate for a long time through the whole path (authenticated
//! nats-server, `cordon serve` in this process). Against the bars: the server's resident size grows
//! at most 10% from early in the run to its end, no acked event is lost or stored twice (lake rows and
//! distinct event ids against what the agents acked, and the index's count), and the newest event is
//! searchable within 5 s at p99.

use crate::path::{Fleet, PathRun, path_run, path_server};
use crate::percentile;

/// Runs the soak: `agents` agents offering `rate` events/s in all for `secs`. Fails when an event
/// was lost or duplicated; the other bars are printed as met or not.
pub(crate) fn soak(agents: usize, rate: u64, secs: u64) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (nats, rt, running) = path_server(tmp.path(), None)?;
    println!(
        "Soak: nats-server {}; {agents} agents (own keys, own connections) offering {rate} events/s for {secs} s",
        nats.version
    );
    let fleet = Fleet { agents, rate, secs, seed: 7, prebuilt: false };
    let run = rt.block_on(path_run(&running, &nats, &tmp.path().join("spool"), &fleet, None))?;
    let (rows, distinct) = rt.block_on(lake_counts(&running.store))?;
    rt.block_on(running.stop())?;
    report(&run, rows, distinct)
}

/// Rows and distinct event ids in the default tenant's lake. Distinct ids are counted one bucket
/// at a time (by the ids' last two characters; a duplicate has the same id, so it falls in the same
/// bucket): a single `count(DISTINCT)` over a 30-minute soak's 20M ids outgrew the engine's query
/// memory budget.
async fn lake_counts(store: &store::Store) -> anyhow::Result<(u64, u64)> {
    let sql = |q: String| async move { store.sql("default", &q, Default::default()).await };
    let n = |row: &[serde_json::Value], i: usize| row.get(i).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let buckets = sql("SELECT right(event_id, 2) AS k, count(*) FROM events GROUP BY k".into()).await?;
    anyhow::ensure!(buckets.rows.len() < 10_000, "too many id buckets: {}", buckets.rows.len());
    let (mut rows, mut distinct) = (0, 0);
    for b in &buckets.rows {
        let key = b.first().and_then(serde_json::Value::as_str).unwrap_or_default().replace('\'', "''");
        rows += n(b, 1);
        let q = format!("SELECT count(DISTINCT event_id) FROM events WHERE right(event_id, 2) = '{key}'");
        distinct += sql(q).await?.rows.first().map_or(0, |r| n(r, 0));
    }
    Ok((rows, distinct))
}

/// Prints the figures against the bars.
fn report(run: &PathRun, rows: u64, distinct: u64) -> anyhow::Result<()> {
    let (lost, duplicated) = (run.acked.saturating_sub(distinct), rows - distinct);
    let growth = rss_growth(&run.rss);
    let anon = rss_growth(&run.anon);
    let mut st = run.staleness.clone();
    st.sort_by(f64::total_cmp);
    let p99 = percentile(&st, 0.99);
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "  {} events acked in {:.0} s ({:.0}/s); lake {rows} rows, {distinct} distinct ids; index {} searchable",
        run.acked,
        run.wall,
        run.acked as f64 / run.wall,
        run.searchable
    );
    println!("  lost {lost}, duplicated {duplicated} (bar 0, 0: {})", verdict(lost == 0 && duplicated == 0));
    println!(
        "  resident size: {:.0} MiB early, {:.0} MiB at the end, growth {:+.1}% (bar <= 10%: {})",
        growth.0 / 1048576.0,
        growth.1 / 1048576.0,
        growth.2 * 100.0,
        verdict(growth.2 <= 0.10)
    );
    println!(
        "    of which anonymous (heap; the rest is mapped index and lake files): {:.0} MiB early, {:.0} MiB \
         at the end, {:+.1}%",
        anon.0 / 1048576.0,
        anon.1 / 1048576.0,
        anon.2 * 100.0
    );
    let heap = rss_growth(&run.heap);
    if run.heap.is_empty() {
        println!("    (what the program itself holds: build with --features count-heap)");
    } else {
        println!(
            "    of which the program holds (allocated, not freed; the rest the allocator keeps): {:.0} MiB \
         early, {:.0} MiB at the end, {:+.1}%",
            heap.0 / 1048576.0,
            heap.1 / 1048576.0,
            heap.2 * 100.0
        );
    }
    println!("    by tenths of the run (MiB resident / anonymous / held): {}", tenths(run));
    let footers = rss_growth(&run.footers);
    println!(
        "    the lake's parsed-footer cache (bounded at 64 MiB) in it: {:.0} MiB early, {:.0} MiB at the end",
        footers.0 / 1048576.0,
        footers.1 / 1048576.0
    );
    println!(
        "  newest-searchable age p50 {:.2} s, p99 {p99:.2} s, max {:.2} s (bar p99 <= 5 s: {})",
        percentile(&st, 0.5),
        st.last().copied().unwrap_or(f64::NAN),
        verdict(p99 <= 5.0)
    );
    println!(
        "  CPU s: server {:.1}, nats-server {:.1}, agents {:.1}",
        run.server_cpu, run.nats_cpu, run.agent_cpu
    );
    anyhow::ensure!(
        lost == 0 && duplicated == 0 && run.searchable == run.acked,
        "events lost or duplicated: {lost} lost, {duplicated} duplicated, {} of {} searchable",
        run.searchable,
        run.acked
    );
    Ok(())
}

/// The resident, anonymous and held (when counted) sizes at the end of each tenth of the run, MiB.
fn tenths(run: &PathRun) -> String {
    let end = run.rss.last().map_or(0.0, |s| s.0);
    let at = |v: &[(f64, u64)], t: f64| {
        v.iter().rev().find(|s| s.0 <= t).map_or("-".to_owned(), |s| format!("{}", s.1 >> 20))
    };
    (1..=10)
        .map(|i| {
            let t = end * i as f64 / 10.0;
            format!("{}/{}/{}", at(&run.rss, t), at(&run.anon, t), at(&run.heap, t))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// (early, end, growth): the median resident size from 10% to 20% into the run (past start-up and
/// the first fills of caches) and over its last 10%.
fn rss_growth(samples: &[(f64, u64)]) -> (f64, f64, f64) {
    let end = samples.last().map_or(0.0, |s| s.0);
    let window = |from: f64, to: f64| {
        let mut v: Vec<f64> =
            samples.iter().filter(|s| s.0 >= from * end && s.0 <= to * end).map(|s| s.1 as f64).collect();
        if v.is_empty() { f64::NAN } else { crate::median(&mut v) }
    };
    let (early, late) = (window(0.1, 0.2), window(0.9, 1.0));
    (early, late, late / early - 1.0)
}
