//! Counters, gauges and histograms shared by the pipeline stages, rendered in the Prometheus text
//! format, plus the process's own (`process_*`, [`Registry::process`]).
//!
//! Plain atomics, no I/O: stages increment them per batch, the API renders them at `GET /metrics`.
//! A histogram's buckets are fixed ([`BUCKETS`], seconds), the same for every one, so stage
//! latencies compare at a glance.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The upper bounds of every histogram's buckets, in seconds (`+Inf` follows).
pub const BUCKETS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// One histogram: a count per bucket (not cumulative; rendered cumulative), the sum in
/// nanoseconds and the count.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one observation of `secs` seconds.
    pub fn observe(&self, secs: f64) {
        let secs = if secs.is_finite() { secs.max(0.0) } else { 0.0 };
        let at = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add((secs * 1e9) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The `q` quantile's bucket bound (the smallest bound with at least `q` of the observations
    /// at or under it; `+Inf` as `f64::INFINITY`), `None` when empty.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen as f64 >= q * total as f64 {
                return Some(BUCKETS.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        Some(f64::INFINITY)
    }

    fn render(&self, name: &str, labels: &str, out: &mut String) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            let le = BUCKETS.get(i).map_or("+Inf".to_owned(), |b| b.to_string());
            out.push_str(&format!("{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}\n"));
        }
        let l = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        out.push_str(&format!("{name}_sum{l} {sum}\n{name}_count{l} {}\n", self.count()));
    }
}

/// A set of named counters, gauges and histograms with optional labels.
#[derive(Default, Debug)]
pub struct Registry {
    counters: Mutex<BTreeMap<(String, String), Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<(String, String), Arc<Histogram>>>,
    help: Mutex<BTreeMap<String, (&'static str, &'static str)>>,
}

impl Registry {
    /// The series `name{labels}` of type `kind`, created at zero on first use.
    fn series(&self, name: &str, labels: &str, help: &'static str, kind: &'static str) -> Arc<AtomicU64> {
        self.help.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), (help, kind));
        let mut map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let c =
            map.entry((name.to_owned(), labels.to_owned())).or_insert_with(|| Arc::new(AtomicU64::new(0)));
        Arc::clone(c)
    }

    /// The counter `name{labels}`, created at zero on first use.
    pub fn counter(&self, name: &str, labels: &str, help: &'static str) -> Arc<AtomicU64> {
        self.series(name, labels, help, "counter")
    }

    /// Adds `n` to `name{labels}`.
    pub fn add(&self, name: &str, labels: &str, help: &'static str, n: u64) {
        self.counter(name, labels, help).fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the gauge `name{labels}` to `v`.
    pub fn set_gauge(&self, name: &str, labels: &str, help: &'static str, v: u64) {
        self.series(name, labels, help, "gauge").store(v, Ordering::Relaxed);
    }

    /// The histogram `name{labels}` (seconds), created empty on first use.
    pub fn histogram(&self, name: &str, labels: &str, help: &'static str) -> Arc<Histogram> {
        self.help.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), (help, "histogram"));
        let mut map = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(map.entry((name.to_owned(), labels.to_owned())).or_default())
    }

    /// Records `secs` seconds in the histogram `name{labels}`.
    pub fn observe(&self, name: &str, labels: &str, help: &'static str, secs: f64) {
        self.histogram(name, labels, help).observe(secs);
    }

    /// The process's own metrics, read from `/proc/self` now: CPU seconds, resident and virtual
    /// memory, open and allowed file descriptors, threads and start time (the names Prometheus's
    /// client libraries use), and `cordon_build_info` with the version.
    pub fn process(&self) {
        let p = process_stats();
        let set = |name, help, v: u64| self.set_gauge(name, "", help, v);
        self.series(
            "process_cpu_seconds_total",
            "",
            "Total user and system CPU time spent in seconds.",
            "counter:f64",
        )
        .store(p.cpu_secs.to_bits(), Ordering::Relaxed);
        set("process_resident_memory_bytes", "Resident memory size in bytes.", p.rss_bytes);
        set("process_virtual_memory_bytes", "Virtual memory size in bytes.", p.vsize_bytes);
        set("process_open_fds", "Number of open file descriptors.", p.open_fds);
        set("process_max_fds", "Maximum number of open file descriptors.", p.max_fds);
        set("process_threads", "Number of OS threads in the process.", p.threads);
        set(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            p.start_secs,
        );
        let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
        self.set_gauge("cordon_build_info", &version, "Cordon's version (the value is always 1).", 1);
    }

    /// The current value of `name{labels}` (0 if never touched; a float series gives its bits).
    pub fn get(&self, name: &str, labels: &str) -> u64 {
        let map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(name.to_owned(), labels.to_owned())).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// All counters in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let help = self.help.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let mut last = "";
        for ((name, labels), c) in map.iter() {
            let (h, kind) = help.get(name).copied().unwrap_or(("", "counter"));
            // A series set as a float (`…:f64`) holds the value's bits.
            let (kind, float) = kind.split_once(':').map_or((kind, false), |(k, _)| (k, true));
            if name != last {
                out.push_str(&format!("# HELP {name} {h}\n# TYPE {name} {kind}\n"));
                last = name;
            }
            let l = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
            let v = c.load(Ordering::Relaxed);
            if float {
                out.push_str(&format!("{name}{l} {}\n", f64::from_bits(v)));
            } else {
                out.push_str(&format!("{name}{l} {v}\n"));
            }
        }
        let hists = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = "";
        for ((name, labels), h) in hists.iter() {
            if name != last {
                let (text, _) = help.get(name).copied().unwrap_or(("", "histogram"));
                out.push_str(&format!("# HELP {name} {text}\n# TYPE {name} histogram\n"));
                last = name;
            }
            h.render(name, labels, &mut out);
        }
        out
    }
}

/// What `/proc/self` says of this process.
#[derive(Debug, Default)]
struct ProcessStats {
    cpu_secs: f64,
    rss_bytes: u64,
    vsize_bytes: u64,
    open_fds: u64,
    max_fds: u64,
    threads: u64,
    start_secs: u64,
}

fn process_stats() -> ProcessStats {
    let mut p = ProcessStats::default();
    let page = 4096u64;
    let ticks = 100u64; // USER_HZ on every Linux architecture Cordon builds for
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        && let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r)
    {
        // Fields after the command: state is 3; utime 14, stime 15, threads 20, starttime 22,
        // vsize 23, rss 24 (numbered from 1 with pid).
        let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
        let at = |n: usize| f.get(n - 3).copied().unwrap_or(0);
        p.cpu_secs = (at(14) + at(15)) as f64 / ticks as f64;
        p.threads = at(20);
        p.vsize_bytes = at(23);
        p.rss_bytes = at(24) * page;
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse::<u64>().ok()))
        });
        p.start_secs = boot.unwrap_or(0) + at(22) / ticks;
    }
    p.open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
    p.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|x| x.starts_with("Max open files"))
                .and_then(|x| x.split_whitespace().nth(3).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let r = Registry::default();
        r.add("cordon_ingest_rejected_total", "reason=\"invalid_json\"", "lines rejected", 2);
        r.add("cordon_ingest_rejected_total", "reason=\"invalid_json\"", "lines rejected", 1);
        assert_eq!(r.get("cordon_ingest_rejected_total", "reason=\"invalid_json\""), 3);
        let text = r.render();
        assert!(text.contains("# TYPE cordon_ingest_rejected_total counter"));
        assert!(text.contains("cordon_ingest_rejected_total{reason=\"invalid_json\"} 3"));
        r.set_gauge("cordon_index_docs", "", "docs", 7);
        assert!(r.render().contains("# TYPE cordon_index_docs gauge\ncordon_index_docs 7\n"));
    }

    #[test]
    fn histograms_render_cumulative_buckets_sum_and_count() {
        let r = Registry::default();
        for secs in [0.0002, 0.003, 0.003, 7.0, 500.0] {
            r.observe("cordon_stage_seconds", "stage=\"commit\"", "Stage latency.", secs);
        }
        let text = r.render();
        assert!(
            text.contains(
                "# HELP cordon_stage_seconds Stage latency.\n# TYPE cordon_stage_seconds histogram\n"
            )
        );
        for (le, n) in
            [("0.0005", 1), ("0.0025", 1), ("0.005", 3), ("5", 3), ("10", 4), ("60", 4), ("+Inf", 5)]
        {
            let line = format!("cordon_stage_seconds_bucket{{stage=\"commit\",le=\"{le}\"}} {n}\n");
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(text.contains("cordon_stage_seconds_count{stage=\"commit\"} 5\n"), "{text}");
        let sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("cordon_stage_seconds_sum{stage=\"commit\"} "))
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!((sum - 507.0062).abs() < 1e-6, "{sum}");
        let h = r.histogram("cordon_stage_seconds", "stage=\"commit\"", "Stage latency.");
        assert_eq!((h.quantile_bound(0.5), h.quantile_bound(0.99)), (Some(0.005), Some(f64::INFINITY)));
    }

    #[test]
    fn the_process_reports_itself() {
        let r = Registry::default();
        r.process();
        let text = r.render();
        assert!(r.get("process_resident_memory_bytes", "") > 1 << 20, "{text}");
        assert!(
            r.get("process_open_fds", "") >= 3
                && r.get("process_max_fds", "") >= r.get("process_open_fds", "")
        );
        assert!(r.get("process_threads", "") >= 1);
        let started = r.get("process_start_time_seconds", "");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert!(started <= now && started + 24 * 3600 > now, "started {started}, now {now}");
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"), "{text}");
        let cpu: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_cpu_seconds_total "))
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!((0.0..3600.0).contains(&cpu), "in seconds: {cpu}");
        assert!(text.contains(&format!("cordon_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))));
    }
}
