//! `--only decode`: issue 21's decode stage alone, fed without NATS: fleet events in messages of 100
//! lines (as agents batch them), a fetch of 256 messages at a time, through `ingest::decode::Decoder` (identity from the subject, the
//! body's checks, each line decoded and validated into a record), beside the floor any decoder of
//! owned JSON pays: `serde_json` parsing the same lines into `serde_json::Value`s.

use crate::{Sample, cpu_seconds, report};
use ingest::decode::{Decoder, Inbound};
use schemas::decode::Limits;
use schemas::subject::Subjects;
use std::time::Instant;

/// Lines per message, as the agents' shipper batches them.
const LINES_PER_MESSAGE: usize = 100;
/// Messages per fetch, ingest's default.
const MESSAGES_PER_FETCH: usize = 256;

/// Runs both sides `reps` times, alternating; prints wall, CPU and events per CPU-second.
pub(crate) fn run(events: usize, reps: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let body = crate::generate(events, &dir.path().join("events.ndjson"))?;
    let lines: Vec<&[u8]> = schemas::wire::lines(&body).map(|(_, l)| l).collect();
    let msgs: Vec<Inbound> = lines
        .chunks(LINES_PER_MESSAGE)
        .enumerate()
        .map(|(i, chunk)| Inbound {
            subject: "cordon.default.bench.events".into(),
            msg_id: Some(format!("bench:1:{i}")),
            wire: Some(schemas::wire::WIRE_VERSION.into()),
            encoding: None,
            payload: chunk.join(&b'\n').into(),
            stream_seq: i as u64 + 1,
            published: None,
        })
        .collect();
    let (subjects, limits) = (Subjects::default(), Limits { max_skew_micros: i64::MAX, ..Limits::default() });
    let decoder = Decoder::new(&subjects, &limits, 64 << 20);
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        // A fetch at a time, each dropped before the next, as ingest holds them.
        let (w, c) = (Instant::now(), cpu_seconds());
        let mut records = 0;
        for fetch in msgs.chunks(MESSAGES_PER_FETCH) {
            records += decoder.decode(fetch, schemas::time::now_micros()).records();
        }
        ours.push(Sample { wall: w.elapsed().as_secs_f64(), cpu: cpu_seconds() - c });
        anyhow::ensure!(records == events, "decoded {records} of {events}");
        let (w, c) = (Instant::now(), cpu_seconds());
        let mut parsed = 0usize;
        for l in &lines {
            parsed += usize::from(serde_json::from_slice::<serde_json::Value>(l)?.is_object());
        }
        floor.push(Sample { wall: w.elapsed().as_secs_f64(), cpu: cpu_seconds() - c });
        anyhow::ensure!(parsed == events);
    }
    let n = events as f64;
    let a = report("Cordon decode stage (records, validated)", n, &ours);
    let b = report("serde_json::Value parse of the same lines", n, &floor);
    println!(
        "  Cordon: {:.0} ns/event; serde_json::Value: {:.0} ns/event; ratio {:.2}x",
        1e9 / a,
        1e9 / b,
        a / b
    );
    Ok(())
}
