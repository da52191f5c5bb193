//! B1 (NDJSON -> sorted Parquet, beside DuckDB) and B2 (the same plus the tantivy index, beside
//! SQLite FTS5): Cordon's side of both, and the run that alternates them with their peers.

use crate::{Sample, cpu_seconds, dir_size, generate, median, proc_cpu, python, report};
use schemas::decode::{Channel, Limits, decode_line};
use schemas::{Cell, FIELDS, Record, Search};
use std::io::Write;
use std::path::Path;
use std::time::Instant;
pub(crate) fn decode_all(body: &[u8]) -> Vec<Record> {
    let limits = Limits { max_skew_micros: i64::MAX, ..Limits::default() };
    let ch = Channel { tenant: "default", agent: "bench", message_key: "1:1", stream_seq: 1, received: 0 };
    schemas::wire::lines(body).filter_map(|(i, l)| decode_line(l, i, &ch, &limits).ok()).collect()
}

/// B1's Cordon side: parse -> typed records -> Arrow -> Parquet (zstd 1, sorted), one file per date.
/// Returns (events, whole sample, index CPU-s, decode CPU-s).
pub(crate) fn cordon_ingest(
    body: &[u8],
    dir: &Path,
    index: bool,
) -> anyhow::Result<(usize, Sample, f64, f64)> {
    let _ = std::fs::remove_dir_all(dir);
    let lake = store::lake::Lake::open(&dir.join("lake"), true)?;
    if !index {
        return cordon_load(body, &lake);
    }
    let idx = Some(store::index::FullTextIndex::open(&dir.join("index"))?);
    let (w0, c0) = (Instant::now(), cpu_seconds());
    let records = decode_all(body);
    let decode_cpu = cpu_seconds() - c0;
    let n = records.len();
    // By day, as the commit groups them (the date string is made once per file).
    let mut groups: std::collections::BTreeMap<i64, Vec<Record>> = Default::default();
    for r in records {
        groups.entry(r.time().div_euclid(86_400_000_000)).or_default().push(r);
    }
    let mut index_cpu = 0.0;
    for (i, mut recs) in groups.into_values().enumerate() {
        let date = schemas::time::date_of_micros(recs[0].time());
        let entry = lake.write_file(i as i64 + 1, "default", &date, &mut recs)?;
        if let Some(idx) = &idx {
            let c = cpu_seconds();
            idx.add_file(entry.id, 0, &recs)?;
            idx.commit()?;
            index_cpu += cpu_seconds() - c;
        }
    }
    Ok((n, Sample { wall: w0.elapsed().as_secs_f64(), cpu: cpu_seconds() - c0 }, index_cpu, decode_cpu))
}

/// B1's Cordon side as a bulk load runs, on both cores: the NDJSON is cut in two at a line (each
/// half read as one message), each half decoded a slice of lines at a time on its own thread, each
/// slice's records sorted and converted to Arrow by day and dropped; then each day's batches are
/// merged into one file sorted on (host, time), the days shared between two threads. Returns
/// (events, whole sample, 0, decode CPU-s).
fn cordon_load(body: &[u8], lake: &store::lake::Lake) -> anyhow::Result<(usize, Sample, f64, f64)> {
    let (w0, c0) = (Instant::now(), cpu_seconds());
    let cut = body[..body.len() / 2].iter().rposition(|b| *b == b'\n').map_or(0, |at| at + 1);
    let halves = [("1:1", &body[..cut]), ("1:2", &body[cut..])];
    let parts = std::thread::scope(|s| {
        let threads: Vec<_> = halves.map(|(key, half)| s.spawn(move || load_part(half, key))).into();
        threads
            .into_iter()
            .map(|t| t.join().expect("a load thread panicked"))
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let (mut n, mut decode_cpu) = (0, 0.0);
    let mut days: std::collections::BTreeMap<i64, Vec<_>> = Default::default();
    for part in parts {
        n += part.events;
        decode_cpu += part.decode_cpu;
        for (day, batches) in part.days {
            days.entry(day).or_default().extend(batches);
        }
    }
    let days: Vec<_> = days.into_iter().enumerate().collect();
    std::thread::scope(|s| {
        let threads: Vec<_> = days
            .chunks(days.len().div_ceil(2).max(1))
            .map(|share| {
                s.spawn(move || {
                    share.iter().try_for_each(|(i, (day, batches))| {
                        let date = schemas::time::date_of_micros(day * 86_400_000_000);
                        lake.write_batches(*i as i64 + 1, "default", &date, batches).map(drop)
                    })
                })
            })
            .collect();
        threads.into_iter().try_for_each(|t| t.join().expect("a write thread panicked"))
    })?;
    Ok((n, Sample { wall: w0.elapsed().as_secs_f64(), cpu: cpu_seconds() - c0 }, 0.0, decode_cpu))
}

/// One half of a bulk load: its days' sorted batches, its events, and its thread's decode CPU-s.
struct LoadPart {
    days: std::collections::BTreeMap<i64, Vec<store::convert::Batch>>,
    events: usize,
    decode_cpu: f64,
}

fn load_part(body: &[u8], message_key: &str) -> anyhow::Result<LoadPart> {
    const SLICE_LINES: usize = 16 * 1024;
    let limits = Limits { max_skew_micros: i64::MAX, ..Limits::default() };
    let ch = Channel { tenant: "default", agent: "bench", message_key, stream_seq: 1, received: 0 };
    let mut part = LoadPart { days: Default::default(), events: 0, decode_cpu: 0.0 };
    let mut lines = schemas::wire::lines(body).peekable();
    let mut by_day: std::collections::BTreeMap<i64, Vec<Record>> = Default::default();
    while lines.peek().is_some() {
        let c = thread_cpu_seconds();
        for (i, l) in lines.by_ref().take(SLICE_LINES) {
            if let Ok(r) = decode_line(l, i, &ch, &limits) {
                by_day.entry(r.time().div_euclid(86_400_000_000)).or_default().push(r);
                part.events += 1;
            }
        }
        part.decode_cpu += thread_cpu_seconds() - c;
        for (day, mut recs) in std::mem::take(&mut by_day) {
            store::lake::sort_host_time(&mut recs);
            part.days.entry(day).or_default().push(store::convert::records_to_batch(&recs)?);
        }
    }
    Ok(part)
}

/// CPU seconds of the calling thread.
fn thread_cpu_seconds() -> f64 {
    proc_cpu("thread-self").0
}

pub(crate) fn docs_tsv(records: &[Record], path: &Path) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for r in records {
        let mut cols: [Vec<String>; 7] = Default::default();
        cols[0].push(r.host().to_owned());
        for (d, c) in r.iter().map(|(i, c)| (&FIELDS[i], c)) {
            let slot = match d.search {
                Search::Kind => 1,
                Search::User => 2,
                Search::Ip => 3,
                Search::Hash => 4,
                Search::Domain => 5,
                Search::Text => 6,
                _ => continue,
            };
            match c {
                Cell::Str(s) => cols[slot].push(s.replace(['\t', '\n'], " ")),
                Cell::List(l) => cols[slot].extend(l.iter().cloned()),
                _ => {}
            }
        }
        let line: Vec<String> = cols.iter().map(|c| c.join(" ")).collect();
        writeln!(f, "{}\t{}", line.join("\t"), r.time())?;
    }
    Ok(())
}

pub(crate) fn b1_b2(events: usize, reps: usize, with_index: bool) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let ndjson = tmp.path().join("events.ndjson");
    let body = generate(events, &ndjson)?;
    println!(
        "{} events, {:.1} MB NDJSON (seeded fleet, 2000 hosts, PERF.md mix)",
        events,
        body.len() as f64 / 1e6
    );
    let (mut ours, mut peer, mut ours_idx, mut peer_idx) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let tsv = tmp.path().join("docs.tsv");
    if with_index {
        docs_tsv(&decode_all(&body), &tsv)?;
    }
    let mut decode = Vec::new();
    let mut parquet_bytes = 0;
    let mut duck_bytes = 0;
    for _ in 0..reps {
        let (n, s, idx_cpu, decode_cpu) = cordon_ingest(&body, &tmp.path().join("cordon"), with_index)?;
        assert_eq!(n, events);
        decode.push(decode_cpu / s.cpu.max(1e-9));
        if with_index {
            ours_idx.push(Sample { wall: idx_cpu, cpu: idx_cpu });
        }
        parquet_bytes = dir_size(&tmp.path().join("cordon/lake"));
        ours.push(s);
        let d = python("duckdb_ingest.py", &[&ndjson, tmp.path()])?;
        duck_bytes = d["bytes"].as_u64().unwrap_or(0);
        peer.push(Sample { wall: d["wall"].as_f64().unwrap_or(0.0), cpu: d["cpu"].as_f64().unwrap_or(0.0) });
        if with_index {
            let f = python("sqlite_fts.py", &[&tsv, tmp.path()])?;
            peer_idx.push(Sample {
                wall: f["wall"].as_f64().unwrap_or(0.0),
                cpu: f["cpu"].as_f64().unwrap_or(0.0),
            });
        }
    }
    let n = events as f64;
    let label = if with_index {
        "B2 cordon: NDJSON -> Parquet + tantivy"
    } else {
        "B1 cordon: NDJSON -> typed -> Arrow -> Parquet"
    };
    let a = report(label, n, &ours);
    println!(
        "    of which decoding NDJSON into records: {:.0}% of the CPU (median)",
        100.0 * median(&mut decode)
    );
    let b = report("DuckDB COPY read_json -> Parquet (sorted)", n, &peer);
    println!(
        "  ratio cordon/DuckDB per CPU-s: {:.2}x   Parquet {:.1} MB vs DuckDB {:.1} MB",
        a / b,
        parquet_bytes as f64 / 1e6,
        duck_bytes as f64 / 1e6
    );
    if with_index {
        let a = report("B2 tantivy indexing alone (CPU)", n, &ours_idx);
        let b = report("SQLite FTS5 indexing alone", n, &peer_idx);
        println!("  ratio tantivy/FTS5 per CPU-s: {:.2}x", a / b);
    }
    if let Ok(keep) = std::env::var("CORDON_BENCH_KEEP") {
        // The last run's files, to look at: Cordon's lake under `cordon/lake`, DuckDB's file.
        let kept = tmp.keep();
        println!("  files kept in {} (CORDON_BENCH_KEEP={keep})", kept.display());
    }
    Ok(())
}
