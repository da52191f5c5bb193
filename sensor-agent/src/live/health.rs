//! How each live source fares, for heartbeats: a [`Gauge`] per source that its thread updates with
//! relaxed atomics, and an [`Outlet`] that queues a source's events towards the shipper, counting
//! what it queued and what the full queue made it drop. [`Health::report`] turns the gauges into the
//! heartbeat's [`SourceHealth`] list, with each source's rate since the previous report.

use schemas::wire::SourceHealth;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One source's counters.
#[derive(Debug)]
pub struct Gauge {
    name: &'static str,
    steady: bool,
    facility: Mutex<String>,
    note: Mutex<Option<String>>,
    capabilities: Mutex<Vec<String>>,
    running: AtomicBool,
    events: AtomicU64,
    queue_dropped: AtomicU64,
    lost: AtomicU64,
    last_event: AtomicI64,
}

impl Gauge {
    /// A running source. `steady`: it produces events on any live host, so its silence is a signal.
    pub fn new(name: &'static str, facility: &str, steady: bool) -> Arc<Self> {
        Arc::new(Self {
            name,
            steady,
            facility: Mutex::new(facility.to_owned()),
            note: Mutex::new(None),
            capabilities: Mutex::new(Vec::new()),
            running: AtomicBool::new(true),
            events: AtomicU64::new(0),
            queue_dropped: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            last_event: AtomicI64::new(0),
        })
    }

    /// The facility it reads, and why when it is a fallback.
    pub fn set_facility(&self, facility: &str, note: Option<String>) {
        *self.facility.lock().unwrap_or_else(|p| p.into_inner()) = facility.to_owned();
        *self.note.lock().unwrap_or_else(|p| p.into_inner()) = note;
    }

    /// The capabilities its thread kept (see [`super::caps`]).
    pub fn set_capabilities(&self, kept: Vec<String>) {
        *self.capabilities.lock().unwrap_or_else(|p| p.into_inner()) = kept;
    }

    /// The source stopped (its facility failed): heartbeats say so and why.
    pub fn stopped(&self, why: String) {
        self.running.store(false, Ordering::Relaxed);
        *self.note.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// Events lost before they were queued (a kernel overrun, say).
    pub fn lost(&self, n: u64) {
        self.lost.fetch_add(n, Ordering::Relaxed);
    }

    /// Events the full queue made it drop so far.
    pub fn queue_dropped(&self) -> u64 {
        self.queue_dropped.load(Ordering::Relaxed)
    }

    /// Events dropped so far, in the queue or before it.
    pub fn dropped(&self) -> u64 {
        self.queue_dropped() + self.lost.load(Ordering::Relaxed)
    }

    fn snapshot(&self, rate: f64) -> SourceHealth {
        let last = self.last_event.load(Ordering::Relaxed);
        SourceHealth {
            name: self.name.to_owned(),
            facility: self.facility.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            running: self.running.load(Ordering::Relaxed),
            steady: self.steady,
            events: self.events.load(Ordering::Relaxed),
            dropped: self.dropped(),
            rate,
            last_event: (last > 0).then_some(last),
            note: self.note.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            capabilities: self.capabilities.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

/// A source's way to the shipper: a bounded queue that never blocks the source.
#[derive(Clone)]
pub struct Outlet {
    tx: super::queue::Sender,
    gauge: Arc<Gauge>,
}

impl Outlet {
    /// An outlet for the source `gauge` counts.
    pub fn new(tx: super::queue::Sender, gauge: Arc<Gauge>) -> Self {
        Self { tx, gauge }
    }

    /// Queues an event, serialised here (off the shipper's thread); a full queue drops it and
    /// counts the drop.
    pub fn offer(&self, e: impl serde::Serialize) {
        match serde_json::to_string(&e) {
            Ok(line) => self.offer_line(line),
            // Only a map with keys that are not strings fails; no source builds one.
            Err(_) => self.gauge.lost(1),
        }
    }

    /// Queues an event already serialised (one JSON object), as [`Outlet::offer`] does.
    pub fn offer_line(&self, line: String) {
        match self.tx.try_send(line) {
            Ok(()) => {
                self.gauge.events.fetch_add(1, Ordering::Relaxed);
                self.gauge.last_event.store(schemas::time::now_micros(), Ordering::Relaxed);
            }
            Err(_) => {
                self.gauge.queue_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Queues each of `events` (an `Option` or a `Vec`), as [`Outlet::offer`] does.
    pub fn offer_all<T: serde::Serialize>(&self, events: impl IntoIterator<Item = T>) {
        for e in events {
            self.offer(e);
        }
    }

    /// The source's facility failed (`what`, saying how): logged, and heartbeats say the source
    /// stopped and why.
    pub fn fail(&self, what: &str, e: &dyn std::fmt::Display) {
        tracing::error!(error = %e, source = self.gauge.name, "{what}: the source stops");
        self.gauge.stopped(format!("{what}: {e}"));
    }

    /// The source's gauge.
    pub fn gauge(&self) -> &Gauge {
        &self.gauge
    }
}

/// Every source's gauge, and the counts at the previous report (for rates).
pub struct Health {
    gauges: Vec<Arc<Gauge>>,
    previous: (Instant, Vec<u64>),
}

impl Health {
    /// Reports on `gauges`.
    pub fn new(gauges: Vec<Arc<Gauge>>) -> Self {
        let counts = vec![0; gauges.len()];
        Self { gauges, previous: (Instant::now(), counts) }
    }

    /// Each source's state, with its rate since the previous report.
    pub fn report(&mut self) -> Vec<SourceHealth> {
        let secs = self.previous.0.elapsed().as_secs_f64().max(1e-3);
        let mut counts = Vec::with_capacity(self.gauges.len());
        let list = self
            .gauges
            .iter()
            .zip(&self.previous.1)
            .map(|(g, before)| {
                let now = g.events.load(Ordering::Relaxed);
                counts.push(now);
                g.snapshot(((now - before) as f64 / secs * 10.0).round() / 10.0)
            })
            .collect();
        self.previous = (Instant::now(), counts);
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outlet_counts_what_it_queued_and_what_the_full_queue_dropped() {
        let (tx, rx) = super::super::queue::bounded(2);
        let g = Gauge::new("file", "inotify", false);
        let out = Outlet::new(tx, Arc::clone(&g));
        let mut health = Health::new(vec![Arc::clone(&g)]);
        for i in 0..5 {
            out.offer(serde_json::json!({"i": i}));
        }
        assert_eq!(rx.take().count(), 2);
        g.lost(3);
        g.stopped("inotify: too many watches".into());
        let r = &health.report()[0];
        assert_eq!((r.events, r.dropped, r.running, r.steady), (2, 6, false, false));
        assert_eq!(r.note.as_deref(), Some("inotify: too many watches"));
        assert!(r.rate > 0.0 && r.last_event.is_some(), "{r:?}");
        assert_eq!(health.report()[0].rate, 0.0, "no events since the previous report");
    }
}
