//! The incident pass as the server runs it, without NATS or storage: fleet events (the seeded
//! generator) arrive one second of event time at a time into a [`Graph`]; some of them raise alerts
//! (one in `--alert-every` events, anchored at its process or, without one, its host, plus a burst of
//! host anchors every minute, as a login anomaly across many hosts raises); after each second the
//! tenant's [`Incidents`] pass runs, as ingest runs it (eviction, then the pass). It prints the pass
//! time early and late in the run, its share of the CPU beside the graph's build, and what it found.
//!
//! This is the soak's finding in isolation: a pass that searches from every live alert gets slower
//! as alerts pile up, until it no longer fits beside ingest.

use crate::cpu_seconds;
use correlate::graph::{Graph, GraphConfig};
use correlate::incident::{Anchor, IncidentConfig, Incidents};
use std::time::Instant;

/// The shape of a run.
pub(crate) struct Stream {
    pub hosts: usize,
    pub rate: usize,
    pub secs: usize,
    pub alert_every: usize,
    /// Searches per pass from alerts searched before ([`IncidentConfig::searches`]).
    pub searches: usize,
}

fn anchor(i: usize, rec: &schemas::record::Record, host_only: bool) -> Anchor {
    let entity = if host_only { None } else { Graph::process_key(rec) };
    Anchor {
        alert: format!("a{i:08}"),
        host: rec.host().to_owned(),
        entity,
        time: rec.time(),
        last: rec.time(),
        level: 3,
        title: "bench".into(),
        techniques: vec![],
        tactics: vec![],
    }
}

/// The `p` quantile of unsorted samples ([`crate::percentile`] on a sorted copy).
fn pct(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    crate::percentile(&s, p)
}

/// Decodes one second of fleet events starting at `t0`.
fn second(
    fleet: &mut fixtures::fleet::FleetGenerator,
    t0: i64,
    rate: usize,
    seq: usize,
) -> anyhow::Result<Vec<schemas::record::Record>> {
    let limits = schemas::decode::Limits::default();
    let step = 1_000_000 / rate.max(1) as i64;
    (0..rate)
        .map(|i| {
            let (h, e) = fleet.next_event(t0 + i as i64 * step);
            let ch = schemas::decode::Channel {
                tenant: "bench",
                agent: &fleet.hosts()[h].agent,
                message_key: "1:1",
                stream_seq: seq as u64,
                received: t0,
            };
            schemas::decode::decode_line(e.to_string().as_bytes(), seq * rate + i + 1, &ch, &limits)
                .map_err(|r| anyhow::anyhow!("{r:?}"))
        })
        .collect()
}

pub(crate) fn run(s: &Stream) -> anyhow::Result<()> {
    println!(
        "  {} hosts, {} events/s of event time for {} s, an alert every {} events and 20 host alerts a minute; \
         {} searches a pass from older alerts",
        s.hosts, s.rate, s.secs, s.alert_every, s.searches
    );
    let mut fleet = fixtures::fleet::FleetGenerator::new(42, s.hosts);
    // A fixed start (2023-11-14T22:13:20Z): the same seed gives the same events and graph every run.
    let base = 1_700_000_000_000_000;
    let mut g = Graph::new(GraphConfig::default());
    let mut inc = Incidents::new(IncidentConfig { searches: s.searches, ..IncidentConfig::default() });
    let (mut build_cpu, mut pass_cpu) = (0.0, 0.0);
    let mut passes: Vec<f64> = Vec::with_capacity(s.secs);
    let (mut alerts, mut changes) = (0usize, 0usize);
    let wall = Instant::now();
    for sec in 0..s.secs {
        let recs = second(&mut fleet, base + sec as i64 * 1_000_000, s.rate, sec)?;
        let c0 = cpu_seconds();
        for r in &recs {
            g.add(r);
        }
        let c1 = cpu_seconds();
        let mut new = Vec::new();
        for (i, r) in recs.iter().enumerate() {
            if i % s.alert_every == 0 {
                new.push(anchor(alerts, r, false));
                alerts += 1;
            }
        }
        if sec % 60 == 59 {
            for r in recs.iter().take(20) {
                new.push(anchor(alerts, r, true));
                alerts += 1;
            }
        }
        let c2 = cpu_seconds();
        let t = Instant::now();
        inc.add(new);
        g.evict();
        changes += inc.update("bench", &g).len();
        passes.push(t.elapsed().as_secs_f64() * 1e3);
        build_cpu += c1 - c0;
        pass_cpu += cpu_seconds() - c2;
        if (sec + 1) % 60 == 0 {
            let last: Vec<f64> = passes[passes.len() - 60..].to_vec();
            let (nodes, edges) = g.size();
            println!(
                "  {:>5} s: pass p50 {:.1} ms, max {:.1} ms over the last minute; {} alerts, {} incidents, \
                 graph {nodes} nodes {edges} edges ({:.0} s wall)",
                sec + 1,
                pct(&last, 0.5),
                pct(&last, 1.0),
                alerts,
                inc.len(),
                wall.elapsed().as_secs_f64()
            );
        }
    }
    let tenth = (passes.len() / 10).max(1);
    println!(
        "  pass: first tenth p50 {:.1} ms, last tenth p50 {:.1} ms p99 {:.1} ms; {changes} incident changes; \
         {} searches from alerts in all",
        pct(&passes[..tenth], 0.5),
        pct(&passes[passes.len() - tenth..], 0.5),
        pct(&passes[passes.len() - tenth..], 0.99),
        inc.searches_run()
    );
    println!(
        "  CPU: graph build {build_cpu:.2} s ({:.2} µs/event), incident passes {pass_cpu:.2} s ({:.0}% of the \
         {} s of event time: must stay well under 100% to keep up)",
        build_cpu * 1e6 / (s.rate * s.secs) as f64,
        100.0 * pass_cpu / s.secs as f64,
        s.secs
    );
    Ok(())
}
