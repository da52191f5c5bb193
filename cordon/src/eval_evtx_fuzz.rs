//! The EVTX reader against damaged copies of the corpus's real EVTX files (issue 16, fuzzing): each
//! mutant either reads or fails with an error, never a panic, and within a time budget. The project
//! cannot write valid EVTX seeds of its own, so this runs with the corpus evaluations.

use std::path::Path;
use std::time::{Duration, Instant};

/// What the mutants did.
#[derive(Debug, Default, serde::Serialize)]
pub struct EvtxFuzzReport {
    /// Damaged files tried.
    pub mutants: usize,
    /// Of those, read to the end (the damage missed what the reader checks, or it recovered).
    pub read: usize,
    /// Of those, refused with an error.
    pub refused: usize,
    /// Panics (must be 0), as `file: message`.
    pub panics: Vec<String>,
    /// The slowest mutant.
    pub slowest: Duration,
}

/// A small deterministic generator (xorshift64*), so a failing mutant can be made again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Damages `bytes`: a few flipped bytes past the file header (so the reader gets into the chunks),
/// or a cut, or both.
fn mutate(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let start = 128.min(out.len());
    for _ in 0..1 + rng.below(8) {
        if out.len() > start {
            let i = start + rng.below(out.len() - start);
            out[i] ^= 1 << rng.below(8);
        }
    }
    if rng.below(3) == 0 {
        out.truncate(start + rng.below(out.len().saturating_sub(start).max(1)));
    }
    out
}

/// `per_file` mutants of each of the `files` smallest corpus files.
pub fn run(files: &[std::path::PathBuf], per_file: usize, tmp: &Path) -> anyhow::Result<EvtxFuzzReport> {
    let mut report = EvtxFuzzReport::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let path = tmp.join("mutant.evtx");
    for f in files {
        let bytes = std::fs::read(f)?;
        for k in 0..per_file {
            std::fs::write(&path, mutate(&bytes, &mut rng))?;
            let t = Instant::now();
            let outcome = std::panic::catch_unwind(|| sensor_agent::evtx::read(&path).map(|r| r.len()));
            report.slowest = report.slowest.max(t.elapsed());
            report.mutants += 1;
            match outcome {
                Ok(Ok(_)) => report.read += 1,
                Ok(Err(_)) => report.refused += 1,
                Err(p) => {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    report.panics.push(format!("{} mutant {k}: {msg}", f.display()));
                }
            }
        }
    }
    Ok(report)
}

/// `cordon eval evtx`: every corpus file read and counted, tagging measured, and with `mutants`,
/// damaged copies of the smallest files read without a panic.
pub fn command(
    corpus: &Path,
    rules: &[std::path::PathBuf],
    peer: Option<&(String, std::path::PathBuf)>,
    strict: bool,
    mutants: usize,
    min_tagged: usize,
) -> anyhow::Result<()> {
    let mut r = crate::eval_evtx::evtx(corpus, rules)?;
    if let Some((name, timeline)) = peer {
        crate::eval_evtx::score_peer(&mut r, &crate::eval_peer::read_timeline(timeline)?);
        r.peer_name = name.clone();
    }
    crate::eval_evtx::print_evtx(&r);
    if mutants > 0 {
        let mut files = crate::eval::evtx_files(corpus)?;
        files.sort_by_key(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(u64::MAX));
        files.truncate(40);
        let tmp = std::env::temp_dir().join(format!("cordon-evtx-mutants-{}", std::process::id()));
        std::fs::create_dir_all(&tmp)?;
        let f = run(&files, mutants, &tmp);
        let _ = std::fs::remove_dir_all(&tmp);
        let f = f?;
        println!(
            "EVTX mutants: {} damaged copies of the {} smallest files: {} read, {} refused, {} panics; slowest {:.2} s",
            f.mutants,
            files.len(),
            f.read,
            f.refused,
            f.panics.len(),
            f.slowest.as_secs_f64()
        );
        for p in f.panics.iter().take(5) {
            println!("  panic: {p}");
        }
        anyhow::ensure!(f.panics.is_empty(), "the EVTX reader panicked on {} damaged files", f.panics.len());
    }
    anyhow::ensure!(!strict || r.problems.is_empty(), "{} EVTX problems", r.problems.len());
    let tagged = r.labelled.iter().filter(|f| f.agent).count();
    anyhow::ensure!(
        tagged >= min_tagged,
        "only {tagged} labelled files get their label through the agent's path (at least {min_tagged} expected)"
    );
    anyhow::ensure!(
        r.prefilter_disagreements == 0,
        "the rule set's prefilter changed the answer on {} events",
        r.prefilter_disagreements
    );
    Ok(())
}
