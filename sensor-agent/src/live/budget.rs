//! The agent's own CPU and memory budget, enforced on itself: endpoint stability comes first.
//!
//! Every second the run loop gives the [`Governor`] the process's CPU time and resident memory
//! (from `/proc/self`). Over the CPU budget (averaged over [`WINDOW`]), the agent degrades what costs
//! and can wait, never what detection needs: executables and files are no longer hashed unless
//! their hash is cached, and the polling sources (network, file rescans, inventory) poll
//! [`SLOWDOWN`] times less often; back under 70% of the budget, it recovers. Over the memory budget,
//! the sources drop their caches (hashes, remembered processes) once. Events are never dropped for
//! the budget: the bounded queue and the spool are the only places that drop, and count it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The CPU average is taken over this long.
pub const WINDOW: Duration = Duration::from_secs(5);
/// Polling sources poll this many times less often while degraded.
pub const SLOWDOWN: u32 = 4;

static DEGRADED: AtomicBool = AtomicBool::new(false);
static TRIM: AtomicU64 = AtomicU64::new(0);

/// Whether the agent is over its CPU budget (hash only from caches, poll less).
pub fn degraded() -> bool {
    DEGRADED.load(Ordering::Relaxed)
}

/// How many times the memory budget was exceeded so far: a source that sees it change drops its
/// caches.
pub fn trims() -> u64 {
    TRIM.load(Ordering::Relaxed)
}

/// A polling source's interval, stretched while degraded.
pub fn interval(normal: Duration) -> Duration {
    if degraded() { normal * SLOWDOWN } else { normal }
}

/// The budget.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Share of one core (0.05: 5%).
    pub cpu_share: f64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
}

/// What the agent uses now.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Usage {
    /// CPU over the last window, share of one core.
    pub cpu_share: f64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// Whether it is degraded now.
    pub degraded: bool,
    /// Seconds spent degraded so far.
    pub degraded_secs: u64,
    /// Times the memory budget was exceeded.
    pub trims: u64,
}

/// Watches the process against its budget.
pub struct Governor {
    budget: Budget,
    samples: std::collections::VecDeque<(Instant, f64)>,
    last_tick: Instant,
    usage: Usage,
}

impl Governor {
    /// A governor for `budget`; the process starts undegraded.
    pub fn new(budget: Budget) -> Self {
        DEGRADED.store(false, Ordering::Relaxed);
        Self { budget, samples: Default::default(), last_tick: Instant::now(), usage: Usage::default() }
    }

    /// Reads `/proc/self` and applies the budget (call about once a second).
    pub fn tick(&mut self) -> Usage {
        let now = Instant::now();
        let (cpu, rss) = self_usage();
        self.apply(now, cpu, rss)
    }

    /// Applies the budget to a reading: `cpu` seconds used so far, `rss` bytes resident now.
    fn apply(&mut self, now: Instant, cpu: f64, rss: u64) -> Usage {
        if self.usage.degraded {
            self.usage.degraded_secs += now.duration_since(self.last_tick).as_secs();
        }
        self.last_tick = now;
        self.samples.push_back((now, cpu));
        while self.samples.len() > 2 && now.duration_since(self.samples[0].0) > WINDOW {
            self.samples.pop_front();
        }
        let (t0, c0) = self.samples[0];
        let wall = now.duration_since(t0).as_secs_f64();
        if wall >= 1.0 {
            self.usage.cpu_share = (cpu - c0) / wall;
            let over = self.usage.cpu_share > self.budget.cpu_share;
            let under = self.usage.cpu_share < 0.7 * self.budget.cpu_share;
            if over && !self.usage.degraded {
                tracing::warn!(
                    cpu = self.usage.cpu_share,
                    budget = self.budget.cpu_share,
                    "over the CPU budget: hashing from caches only, polling less"
                );
            }
            self.usage.degraded = over || (self.usage.degraded && !under);
            DEGRADED.store(self.usage.degraded, Ordering::Relaxed);
        }
        if rss > self.budget.rss_bytes && self.usage.rss_bytes <= self.budget.rss_bytes {
            tracing::warn!(rss, budget = self.budget.rss_bytes, "over the memory budget: caches dropped");
            self.usage.trims = TRIM.fetch_add(1, Ordering::Relaxed) + 1;
        }
        self.usage.rss_bytes = rss;
        self.usage
    }
}

/// (CPU seconds, resident bytes) of this process.
pub fn self_usage() -> (f64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as u64;
    let rss_pages = f.get(21).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    ((ticks(11) + ticks(12)) / hz, rss_pages * page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_the_cpu_budget_degrades_and_well_under_recovers() {
        let mut g = Governor::new(Budget { cpu_share: 0.05, rss_bytes: 64 << 20 });
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        g.apply(at(0), 10.0, 1 << 20);
        assert!(!g.apply(at(2), 10.06, 1 << 20).degraded, "3% of a core");
        let u = g.apply(at(4), 10.5, 1 << 20);
        assert!(
            u.degraded && degraded() && interval(Duration::from_millis(250)) == Duration::from_secs(1),
            "{u:?}"
        );
        // 4.5% is under the budget but not under 70% of it: still degraded.
        let mut cpu = 10.5;
        for s in 5..=12 {
            cpu += 0.045;
            g.apply(at(s), cpu, 1 << 20);
        }
        assert!(g.usage.degraded);
        for s in 13..=20 {
            cpu += 0.01;
            g.apply(at(s), cpu, 1 << 20);
        }
        assert!(!g.usage.degraded && !degraded());
        assert!(g.usage.degraded_secs >= 8, "{:?}", g.usage);
        let before = trims();
        g.apply(at(21), cpu, 65 << 20);
        g.apply(at(22), cpu, 66 << 20);
        assert_eq!(trims(), before + 1, "one trim per crossing");
        let t = Instant::now();
        let mut x = 0u64;
        while self_usage().0 == 0.0 && t.elapsed() < Duration::from_secs(2) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1); // CPU for the tick counter
        }
        let (c, r) = self_usage();
        assert!(c > 0.0 && r > 1 << 20, "{c} {r} {x}");
    }
}
