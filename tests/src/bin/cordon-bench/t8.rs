//! T8 (RELIABILITY.md): one agent floods at 100x its quota beside a fleet of normal agents. The same
//! fleet runs twice on one server, without and with the flooder (alternating, `reps` times each);
//! the figure is the age of the fleet's newest searchable event (p50, p99) in each, and their ratio,
//! against the bar of at most +20%.

use crate::path::Fleet;
use crate::{path_run, path_server, percentile};

/// Runs the comparison: the fleet offers `rate` events/s over 200 agents for `secs`; the flooder
/// sends 100x `quota` events/s as one agent while every agent's quota is `quota`.
pub fn run(rate: u64, secs: u64, quota: u64, reps: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (nats, rt, running) = path_server(tmp.path(), Some(quota))?;
    println!(
        "nats-server {}; 200 agents offering {rate} events/s in all for {secs} s; quota {quota} events/s per agent; flooder {} events/s",
        nats.version,
        100 * quota
    );
    let (mut calm, mut flooded) = (Vec::new(), Vec::new());
    for r in 0..reps {
        for flood in [None, Some(100 * quota)] {
            let spool = tmp.path().join(format!("spool-{r}-{}", flood.is_some()));
            let fleet = Fleet { agents: 200, rate, secs, seed: r as u64, prebuilt: false };
            let run = rt.block_on(path_run(&running, &nats, &spool, &fleet, flood))?;
            let mut st = run.staleness.clone();
            st.sort_by(|a, b| a.total_cmp(b));
            println!(
                "  run {r} {}: {} fleet events acked and searchable; newest-searchable age p50 {:.2}s p99 {:.2}s",
                if flood.is_some() { "with the flooder   " } else { "without the flooder" },
                run.acked,
                percentile(&st, 0.5),
                percentile(&st, 0.99)
            );
            if flood.is_some() { &mut flooded } else { &mut calm }.extend(st);
        }
    }
    for v in [&mut calm, &mut flooded] {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    let (p_calm, p_flood) = (percentile(&calm, 0.99), percentile(&flooded, 0.99));
    println!(
        "  all runs: p99 {:.2}s without, {:.2}s with the flooder: {:+.0}% (T8 bar: at most +20%)",
        p_calm,
        p_flood,
        100.0 * (p_flood / p_calm - 1.0)
    );
    rt.block_on(running.stop())?;
    Ok(())
}
