//! B5 (`../shared/docs/PERF.md`): text search over the fleet's events in seven query shapes (host,
//! rare term, common term, phrase, IP, hash, and a boolean with a one-hour range), 1,000 queries
//! each, beside SQLite FTS5 on the same documents, in one run.
//!
//! Cordon answers each query as the API does: the newest 10 hits and the total count, from the
//! tantivy index ingest built. FTS5 answers with any 10 matching rows and the count (no order: an
//! order by time would sort every match, which favours Cordon). The query values are sampled from
//! the events: every shape's values exist. Each engine's match count is printed beside the other's;
//! the two tokenise text differently, so counts may differ for text shapes, never for host, IP or
//! hash.

use std::collections::HashMap;
use std::time::Instant;
use store::index::{FullTextIndex, SearchQuery};

/// Queries per shape.
const PER_SHAPE: usize = 1000;

/// One query in both engines' syntax.
#[derive(Clone, serde::Serialize)]
struct Query {
    /// Cordon's query text.
    #[serde(skip)]
    cordon: String,
    /// FTS5's `MATCH` expression.
    fts: String,
    /// Time range (microseconds), for the boolean shape.
    from: Option<i64>,
    to: Option<i64>,
}

/// The seven shapes' queries, sampled from the events (distinct values, up to [`PER_SHAPE`]).
fn sample(records: &[schemas::Record]) -> Vec<(&'static str, Vec<Query>)> {
    let mut hosts: Vec<(String, String, i64)> = Vec::new();
    let mut seen_hosts = std::collections::HashSet::new();
    let (mut ips, mut hashes) = (Vec::new(), Vec::new());
    let mut df: HashMap<String, u32> = HashMap::new();
    let mut phrases = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let kind = r.cell(schemas::fields::col::EVENT_KIND).as_str().unwrap_or_default().to_owned();
        if seen_hosts.insert(r.host().to_owned()) {
            hosts.push((r.host().to_owned(), kind, r.time()));
        }
        for (d, c) in r.iter().map(|(i, c)| (&schemas::FIELDS[i], c)) {
            let Some(s) = c.as_str() else { continue };
            match d.search {
                schemas::Search::Ip if ips.len() < PER_SHAPE && i % 97 == 0 => ips.push(s.to_owned()),
                schemas::Search::Hash if hashes.len() < PER_SHAPE && i % 89 == 0 => {
                    hashes.push(s.to_lowercase())
                }
                schemas::Search::Text => {
                    let tokens = tokens(s);
                    for t in &tokens {
                        *df.entry(t.clone()).or_default() += 1;
                    }
                    if phrases.len() < PER_SHAPE && i % 83 == 0 && tokens.len() >= 2 {
                        phrases.push(format!("{} {}", tokens[0], tokens[1]));
                    }
                }
                _ => {}
            }
        }
    }
    // Rare: the least frequent terms; common: the ten most frequent.
    let mut by_df: Vec<(&String, &u32)> = df.iter().collect();
    by_df.sort_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(b.0)));
    let rare: Vec<&String> = by_df.iter().take(PER_SHAPE).map(|(t, _)| *t).collect();
    println!(
        "rare terms in {}..={} events' text fields; common terms in {}..={}",
        by_df.first().map_or(0, |x| *x.1),
        by_df.get(PER_SHAPE.min(by_df.len()).saturating_sub(1)).map_or(0, |x| *x.1),
        by_df.iter().rev().nth(9).map_or(0, |x| *x.1),
        by_df.last().map_or(0, |x| *x.1)
    );
    let common: Vec<(&String, &u32)> = by_df.iter().rev().take(10).copied().collect();
    let q = |cordon: String, fts: String| Query { cordon, fts, from: None, to: None };
    let host = hosts.iter().map(|(h, _, _)| q(format!("host:\"{h}\""), format!("host : \"{h}\""))).collect();
    let term = |t: &str| q(format!("text:{t}"), format!("text : \"{t}\""));
    let boolean = hosts
        .iter()
        .map(|(h, k, t)| Query {
            cordon: format!("host:\"{h}\" AND kind:{k}"),
            fts: format!("host : \"{h}\" AND kind : \"{k}\""),
            from: Some(t - 1_800_000_000),
            to: Some(t + 1_800_000_000),
        })
        .collect();
    vec![
        ("host", host),
        ("rare term", rare.iter().map(|t| term(t)).collect()),
        ("common term", common.iter().map(|(t, _)| term(t)).collect()),
        ("phrase", phrases.iter().map(|p| q(format!("text:\"{p}\""), format!("text : \"{p}\""))).collect()),
        ("ip", ips.iter().map(|ip| q(format!("ip:\"{ip}\""), format!("ips : \"{ip}\""))).collect()),
        ("hash", hashes.iter().map(|h| q(format!("hash:{h}"), format!("hashes : \"{h}\""))).collect()),
        ("boolean + 1 h", boolean),
    ]
}

/// Lower-cased alphanumeric runs of 3 or more characters: a term both engines index alike.
fn tokens(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| t.len() >= 3)
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Latencies of one shape's queries on Cordon's index (seconds), and the matches of each.
fn run_cordon(index: &FullTextIndex, queries: &[Query]) -> anyhow::Result<(Vec<f64>, Vec<u64>)> {
    let (mut lat, mut matches) = (Vec::with_capacity(queries.len()), Vec::with_capacity(queries.len()));
    for q in queries {
        let sq = SearchQuery { q: q.cordon.clone(), from: q.from, to: q.to, limit: 10, ..Default::default() };
        let t = Instant::now();
        let (_, total) = index.search("default", &sq)?;
        lat.push(t.elapsed().as_secs_f64());
        matches.push(total as u64);
    }
    Ok((lat, matches))
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// `cordon-bench --only b5 [--events N]`.
pub(crate) fn b5(events: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let ndjson = tmp.path().join("events.ndjson");
    let body = crate::generate(events, &ndjson)?;
    crate::b1::cordon_ingest(&body, &tmp.path().join("cordon"), true)?;
    let index = FullTextIndex::open(&tmp.path().join("cordon/index"))?;
    let records = crate::b1::decode_all(&body);
    let shapes = sample(&records);
    let distinct: Vec<String> = shapes.iter().map(|(s, q)| format!("{s} {}", q.len())).collect();
    println!("distinct query values sampled: {}", distinct.join(", "));
    if let Some((shape, _)) = shapes.iter().find(|(_, q)| q.is_empty()) {
        anyhow::bail!("no {shape} query could be sampled from {events} events");
    }
    let shapes: Vec<(&str, Vec<Query>)> =
        shapes.into_iter().map(|(s, q)| (s, q.into_iter().cycle().take(PER_SHAPE).collect())).collect();
    let tsv = tmp.path().join("docs.tsv");
    crate::b1::docs_tsv(&records, &tsv)?;
    drop(records);
    let qfile = tmp.path().join("queries.json");
    let all: Vec<(&str, &Vec<Query>)> = shapes.iter().map(|(s, q)| (*s, q)).collect();
    std::fs::write(&qfile, serde_json::to_vec(&all)?)?;
    let peer = crate::python("sqlite_fts_search.py", &[&tsv, &qfile, tmp.path()])?;
    let idx_bytes = crate::dir_size(&tmp.path().join("cordon/index"));
    println!(
        "{events} events, NDJSON {:.1} MB; tantivy index {:.1} MB in {} segments ({:.1}% of NDJSON); FTS5 \
         database {:.1} MB; {PER_SHAPE} queries per shape (newest 10 + count; FTS5: any 10 + count)",
        body.len() as f64 / 1e6,
        idx_bytes as f64 / 1e6,
        index.segments(),
        100.0 * idx_bytes as f64 / body.len() as f64,
        peer["bytes"].as_f64().unwrap_or(0.0) / 1e6,
    );
    println!(
        "  {:14} {:>10} {:>10} {:>10} {:>10} {:>8} {:>12} {:>12}",
        "shape", "p50 us", "p99 us", "FTS5 p50", "FTS5 p99", "x mean", "matches", "FTS5 matches"
    );
    let mut ratios = Vec::new();
    for (shape, queries) in &shapes {
        let (mut lat, matches) = run_cordon(&index, queries)?;
        let mean = lat.iter().sum::<f64>() / lat.len() as f64;
        let theirs = &peer["shapes"][*shape];
        let their_mean = theirs["mean"].as_f64().unwrap_or(f64::NAN);
        ratios.push(their_mean / mean);
        println!(
            "  {:14} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>7.0}x {:>12} {:>12}",
            shape,
            1e6 * pct(&mut lat, 0.5),
            1e6 * pct(&mut lat, 0.99),
            1e6 * theirs["p50"].as_f64().unwrap_or(f64::NAN),
            1e6 * theirs["p99"].as_f64().unwrap_or(f64::NAN),
            their_mean / mean,
            matches.iter().sum::<u64>(),
            theirs["matches"].as_u64().unwrap_or(0),
        );
    }
    let geo = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
    println!(
        "  geomean of FTS5/Cordon mean latency: {geo:.0}x (PERF.md goal >= 100x; p50 <= 10 us for host/ip/hash; p99 <= 10 ms)"
    );
    Ok(())
}
