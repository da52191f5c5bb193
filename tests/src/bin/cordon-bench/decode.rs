//! `--only decode`: issue 21's decode stage alone, fed without NATS: fleet events in messages of 100
//! lines (as agents batch them), a fetch of 256 messages at a time, through `ingest::decode::Decoder`
//! (identity from the subject, the body's checks, each line decoded and validated into a record).
//! Beside it, per JSON parser Cordon can read lines with (`schemas::decode::Parser`): the records
//! alone (`decode_line_with`, the same lines) and the floor any decoder of owned JSON on that parser
//! pays, the same lines parsed into its own owned JSON values.

use crate::{Sample, cpu_seconds, report};
use ingest::decode::{Decoder, Inbound};
use schemas::decode::{Channel, Limits, Parser, decode_line_with};
use schemas::subject::Subjects;
use std::time::Instant;

/// Lines per message, as the agents' shipper batches them.
const LINES_PER_MESSAGE: usize = 100;
/// Messages per fetch, ingest's default.
const MESSAGES_PER_FETCH: usize = 256;

/// One measured side: a name and what it does to every line, returning how many it read.
type Side<'a> = (String, Box<dyn Fn() -> anyhow::Result<usize> + 'a>);

/// Runs every side `reps` times, alternating; prints wall, CPU and events per CPU-second.
pub(crate) fn run(events: usize, reps: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let body = crate::generate(events, &dir.path().join("events.ndjson"))?;
    let lines: Vec<&[u8]> = schemas::wire::lines(&body).map(|(_, l)| l).collect();
    let msgs = messages(&lines);
    let (subjects, limits) = (Subjects::default(), Limits { max_skew_micros: i64::MAX, ..Limits::default() });
    let decoder = Decoder::new(&subjects, &limits, 64 << 20);
    let mut sides: Vec<Side> = vec![(
        format!("decode stage ({}, default)", Parser::default().name()),
        Box::new(|| {
            // A fetch at a time, each dropped before the next, as ingest holds them.
            let now = schemas::time::now_micros();
            Ok(msgs.chunks(MESSAGES_PER_FETCH).map(|f| decoder.decode(f, now).records()).sum())
        }),
    )];
    for parser in Parser::ALL {
        let (lines, limits) = (&lines, &limits);
        sides.push((
            format!("records on {}", parser.name()),
            Box::new(move || records(parser, lines, limits)),
        ));
    }
    sides.push(("serde_json::Value, the same lines".into(), Box::new(|| floor_serde(&lines))));
    sides.push(("sonic_rs::Value (its DOM), the same lines".into(), Box::new(|| floor_sonic(&lines))));
    let mut samples = vec![Vec::new(); sides.len()];
    for _ in 0..reps {
        for ((name, side), out) in sides.iter().zip(&mut samples) {
            let (w, c) = (Instant::now(), cpu_seconds());
            let n = side()?;
            out.push(Sample { wall: w.elapsed().as_secs_f64(), cpu: cpu_seconds() - c });
            anyhow::ensure!(n == events, "{name}: read {n} of {events}");
        }
    }
    let n = events as f64;
    let rates: Vec<f64> = sides.iter().zip(&samples).map(|((name, _), s)| report(name, n, s)).collect();
    let ns: Vec<String> =
        sides.iter().zip(&rates).map(|((name, _), r)| format!("{name}: {:.0}", 1e9 / r)).collect();
    println!("  ns/event: {}", ns.join("; "));
    println!("  records, sonic-rs against serde_json: {:.2}x", rates[2] / rates[1]);
    Ok(())
}

/// The lines as agents' messages of [`LINES_PER_MESSAGE`].
fn messages(lines: &[&[u8]]) -> Vec<Inbound> {
    lines
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
        .collect()
}

/// Every line decoded into a record with `parser`, as the decode stage does for one message.
fn records(parser: Parser, lines: &[&[u8]], limits: &Limits) -> anyhow::Result<usize> {
    let ch = Channel {
        tenant: "default",
        agent: "bench",
        message_key: "1:1",
        stream_seq: 1,
        received: schemas::time::now_micros(),
    };
    let mut n = 0;
    for (i, l) in lines.iter().enumerate() {
        n += usize::from(decode_line_with(parser, l, i, &ch, limits)?.time() != 0);
    }
    Ok(n)
}

fn floor_serde(lines: &[&[u8]]) -> anyhow::Result<usize> {
    let mut n = 0;
    for l in lines {
        n += usize::from(serde_json::from_slice::<serde_json::Value>(l)?.is_object());
    }
    Ok(n)
}

fn floor_sonic(lines: &[&[u8]]) -> anyhow::Result<usize> {
    use sonic_rs::JsonValueTrait;
    let mut n = 0;
    for l in lines {
        n += usize::from(sonic_rs::from_slice::<sonic_rs::Value>(l)?.is_object());
    }
    Ok(n)
}
