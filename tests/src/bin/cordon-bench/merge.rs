//! `--only merge [--files F] [--rows R] [--reps N]`: one size-tiered merge alone (issue 21's soak:
//! where a server's resident size swings). F files of R fleet events each, one day's partition,
//! committed through the store as ingest commits them; then `Store::merge_small` merges them (one
//! tier's group: F a multiple of the fan-in) while a sampler reads the process's resident size and,
//! with `--features count-heap`, the bytes the Rust heap holds. Prints the merge's wall and CPU time
//! and the peaks above what the process held before it: the memory one merge costs a server.

use crate::path::{anon_bytes, rss_bytes};
use crate::{cpu_seconds, heap};
use schemas::decode::{Channel, Limits, decode_line};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The peaks a sampler saw.
#[derive(Default)]
struct Peaks {
    rss: AtomicU64,
    anon: AtomicU64,
    held: AtomicU64,
}

impl Peaks {
    fn sample(&self) {
        self.rss.fetch_max(rss_bytes(), Ordering::Relaxed);
        self.anon.fetch_max(anon_bytes(), Ordering::Relaxed);
        self.held.fetch_max(heap::in_use().unwrap_or(0), Ordering::Relaxed);
    }
}

/// One merge's figures.
struct Figures {
    wall: f64,
    cpu: f64,
    rss: f64,
    anon: f64,
    held: Option<f64>,
    /// Bytes of the inputs and of the merged file.
    bytes: (i64, i64),
}

const MIB: f64 = 1_048_576.0;

/// `files` files of `rows` events each, one partition, committed through `store`.
async fn load(store: &store::Store, files: usize, rows: usize) -> anyhow::Result<()> {
    let mut fleet = fixtures::fleet::FleetGenerator::new(7, 1000);
    let limits = Limits { max_skew_micros: i64::MAX, ..Limits::default() };
    let ch = Channel { tenant: "default", agent: "bench", message_key: "merge", stream_seq: 1, received: 0 };
    // One day, so every file falls in one partition and one tier.
    let (start, step) = (1_767_225_600_000_000i64, 80_000_000_000i64 / (files * rows) as i64);
    for f in 0..files {
        let mut records = Vec::with_capacity(rows);
        for i in f * rows..(f + 1) * rows {
            let (_, e) = fleet.next_event(start + i as i64 * step);
            let rec = decode_line(&serde_json::to_vec(&e)?, i, &ch, &limits)
                .map_err(|e| anyhow::anyhow!("a generated event did not decode: {e}"))?;
            records.push(rec);
        }
        let batch = store::MessageBatch {
            key: format!("merge-{f}"),
            stream_seq: f as u64 + 1,
            records,
            rejected: 0,
            published: None,
        };
        store.commit("merge", vec![batch]).await?;
    }
    Ok(())
}

/// One repetition: a fresh store, the files, then the merge under the sampler.
fn one(files: usize, rows: usize) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Runtime::new()?;
    let store = rt.block_on(store::Store::open(&store::StoreConfig::new(dir.path().to_path_buf())))?;
    rt.block_on(load(&store, files, rows))?;
    let before = (rss_bytes(), anon_bytes(), heap::in_use());
    let peaks = Arc::new(Peaks::default());
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peaks, done) = (Arc::clone(&peaks), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peaks.sample();
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let (w, c) = (Instant::now(), cpu_seconds());
    let report = rt.block_on(store.merge_small())?;
    let (wall, cpu) = (w.elapsed().as_secs_f64(), cpu_seconds() - c);
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let want = (files * rows) as i64;
    anyhow::ensure!(
        report.files_removed == files && report.rows == want,
        "merged {} files and {} rows, not the {files} files and {want} rows committed",
        report.files_removed,
        report.rows
    );
    let grew = |peak: &AtomicU64, from: u64| peak.load(Ordering::Relaxed).saturating_sub(from) as f64 / MIB;
    Ok(Figures {
        wall,
        cpu,
        rss: grew(&peaks.rss, before.0),
        anon: grew(&peaks.anon, before.1),
        held: before.2.map(|h| grew(&peaks.held, h)),
        bytes: (report.bytes_before, report.bytes_after),
    })
}

/// Runs `reps` merges of `files` x `rows` and prints each and the median.
pub(crate) fn run(files: usize, rows: usize, reps: usize) -> anyhow::Result<()> {
    println!(
        "  {files} files x {rows} rows (tier {}), fan-in {}",
        (rows as u64).max(1).ilog(store::MERGE_FAN_IN as u64),
        store::MERGE_FAN_IN
    );
    let mut all = Vec::new();
    for r in 0..reps {
        let f = one(files, rows)?;
        let held = f.held.map_or("not counted (--features count-heap)".into(), |h| format!("{h:.0} MiB"));
        println!(
            "  rep {r}: {:.2} s wall, {:.2} CPU-s, {:.0} k rows/s, {:.1} -> {:.1} MB; peak above before: resident {:.0} MiB, anonymous {:.0} MiB, Rust heap {held}",
            f.wall,
            f.cpu,
            (files * rows) as f64 / f.wall / 1e3,
            f.bytes.0 as f64 / 1e6,
            f.bytes.1 as f64 / 1e6,
            f.rss,
            f.anon
        );
        all.push(f);
    }
    let med = |get: fn(&Figures) -> f64| {
        let mut v: Vec<f64> = all.iter().map(get).collect();
        crate::median(&mut v)
    };
    println!(
        "  median: {:.2} s wall, {:.2} CPU-s, resident +{:.0} MiB, anonymous +{:.0} MiB",
        med(|f| f.wall),
        med(|f| f.cpu),
        med(|f| f.rss),
        med(|f| f.anon)
    );
    Ok(())
}
