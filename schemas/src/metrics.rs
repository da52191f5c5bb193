//! Counters shared by the pipeline stages, rendered in the Prometheus text format.
//!
//! Plain atomics, no I/O: stages increment them per batch, the API renders them at `GET /metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A set of named counters with optional labels.
#[derive(Default, Debug)]
pub struct Registry {
    counters: Mutex<BTreeMap<(String, String), Arc<AtomicU64>>>,
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

    /// The current value of `name{labels}` (0 if never touched).
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
            if name != last {
                let (h, kind) = help.get(name).copied().unwrap_or(("", "counter"));
                out.push_str(&format!("# HELP {name} {h}\n# TYPE {name} {kind}\n"));
                last = name;
            }
            let l = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
            out.push_str(&format!("{name}{l} {}\n", c.load(Ordering::Relaxed)));
        }
        out
    }
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
}
