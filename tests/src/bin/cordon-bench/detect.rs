//! `--only detect`: the detection rules and the correlation windows alone, without NATS or
//! storage. Fleet events (the seeded generator, `--hosts` hosts) at the whole path's density (`--rate`
//! events per second of event time, for `--secs` seconds) are decoded, then tagged by Cordon's rule
//! pack and fed to its correlations, as ingest does after a commit. Printed per slice of 20 s of
//! event time, so a cost that grows as the windows fill (the correlations' spans are one to ten
//! minutes) shows: events per CPU-second for tagging and for correlating, and the events the
//! windows hold.

use crate::cpu_seconds;
use correlate::sigma::Tagger;
use schemas::decode::{Channel, Limits, decode_line};
use schemas::policy::Policy;

/// Event time per printed slice (µs).
const SLICE: i64 = 20_000_000;

/// Runs the bench; fails if the fleet's background fires a correlation (it must not).
pub(crate) fn run(hosts: usize, rate: u64, secs: u64) -> anyhow::Result<()> {
    let tagger = Tagger::cordon_pack(Policy::cordon_default().validated()?)?;
    let mut state = tagger.correlator();
    let mut fleet = fixtures::fleet::FleetGenerator::new(42, hosts);
    let limits = Limits { max_skew_micros: i64::MAX, ..Limits::default() };
    let base = schemas::time::now_micros() - secs as i64 * 1_000_000;
    let step = 1_000_000 / rate.max(1) as i64;
    let total = rate * secs;
    let (mut tag_all, mut corr_all, mut fired) = (0.0, 0.0, 0usize);
    let mut done = 0u64;
    while done < total {
        let slice_start = base + done as i64 * step;
        let mut recs = Vec::new();
        while done < total && base + done as i64 * step < slice_start + SLICE {
            let t = base + done as i64 * step;
            let (h, mut e) = fleet.next_event(t);
            e["event"]["id"] = serde_json::json!(format!("c{done}"));
            let agent = fleet.hosts()[h].agent.clone();
            let ch =
                Channel { tenant: "bench", agent: &agent, message_key: "1:1", stream_seq: 1, received: t };
            let line = e.to_string();
            recs.push(decode_line(line.as_bytes(), 0, &ch, &limits).map_err(|r| anyhow::anyhow!("{r:?}"))?);
            done += 1;
        }
        let c0 = cpu_seconds();
        let hits: Vec<Vec<usize>> = recs.iter_mut().map(|r| tagger.tag_and_hits(r).1).collect();
        let c1 = cpu_seconds();
        let fed = hits.iter().filter(|h| !h.is_empty()).count();
        for (r, h) in recs.iter().zip(&hits) {
            fired += tagger.correlate(&mut state, r, h).len();
        }
        let c2 = cpu_seconds();
        let n = recs.len() as f64;
        println!(
            "  event time {:>4}-{:>4} s: {:>7} events ({fed} fed to correlations): tag {:>9.0} events/CPU-s, \
             correlate {:>9.0} events/CPU-s; windows hold {} events",
            (slice_start - base) / 1_000_000,
            (slice_start - base + SLICE) / 1_000_000,
            recs.len(),
            n / (c1 - c0).max(1e-9),
            n / (c2 - c1).max(1e-9),
            state.entries()
        );
        tag_all += c1 - c0;
        corr_all += c2 - c1;
    }
    println!(
        "  all {total} events: tag {:.0} events/CPU-s ({:.2} µs/event), correlate {:.0} events/CPU-s ({:.2} µs/event)",
        total as f64 / tag_all,
        tag_all * 1e6 / total as f64,
        total as f64 / corr_all,
        corr_all * 1e6 / total as f64
    );
    anyhow::ensure!(fired == 0, "the fleet's background fired {fired} correlations");
    Ok(())
}
