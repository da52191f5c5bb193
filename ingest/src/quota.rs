//! Per-agent quotas at ingest (RELIABILITY.md T8): each (tenant, agent) has a token bucket of events
//! and of bytes (the message as it came off the bus), refilled at its rate up to `burst_secs` worth.
//! A message that does not fit is refused whole: dead-lettered as `over_quota` (its first 16 KiB kept,
//! its event count in the detail) and counted exactly once it is committed; the other agents' messages
//! are untouched. An agent over its quota raises a flooding alert, at most once a minute (the alert
//! deduplicates within the hour, so its count says for how many minutes it flooded).
//!
//! The quota protects what comes after the stream (decoding, detection, the lake, the index). The
//! stream itself takes what the agent publishes until per-agent limits exist at the NATS layer.

use schemas::alert::{Alert, RuleRef};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Quota settings (the same for every agent).
#[derive(Clone, Copy, Debug)]
pub struct QuotaConfig {
    /// Events per second an agent may send.
    pub events_per_sec: f64,
    /// Bytes (on the wire) per second an agent may send.
    pub bytes_per_sec: f64,
    /// How many seconds of either an agent may send at once.
    pub burst_secs: f64,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self { events_per_sec: 20_000.0, bytes_per_sec: 32.0 * 1024.0 * 1024.0, burst_secs: 10.0 }
    }
}

#[derive(Debug)]
struct Bucket {
    events: f64,
    bytes: f64,
    at: Instant,
    last_alert: Option<Instant>,
    dropped_events: u64,
}

/// The buckets of every agent seen.
#[derive(Debug)]
pub(crate) struct Quotas {
    cfg: QuotaConfig,
    buckets: Mutex<HashMap<(String, String), Bucket>>,
}

/// A message refused by the quota: why, in words.
#[derive(Debug)]
pub(crate) struct Over(pub String);

impl Quotas {
    pub(crate) fn new(cfg: QuotaConfig) -> Self {
        Self { cfg, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes `events` and `bytes` from the agent's buckets, or refuses the message (taking nothing).
    pub(crate) fn admit(
        &self,
        tenant: &str,
        agent: &str,
        events: u64,
        bytes: u64,
        now: Instant,
    ) -> Result<(), Over> {
        let c = self.cfg;
        let mut all = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = all.entry((tenant.to_owned(), agent.to_owned())).or_insert_with(|| Bucket {
            events: c.events_per_sec * c.burst_secs,
            bytes: c.bytes_per_sec * c.burst_secs,
            at: now,
            last_alert: None,
            dropped_events: 0,
        });
        let dt = now.saturating_duration_since(b.at).as_secs_f64();
        b.at = now;
        b.events = (b.events + dt * c.events_per_sec).min(c.events_per_sec * c.burst_secs);
        b.bytes = (b.bytes + dt * c.bytes_per_sec).min(c.bytes_per_sec * c.burst_secs);
        if (events as f64) <= b.events && (bytes as f64) <= b.bytes {
            b.events -= events as f64;
            b.bytes -= bytes as f64;
            return Ok(());
        }
        Err(Over(format!(
            "{events} events, {bytes} bytes: agent {agent} is over its quota of {} events/s and {} bytes/s (bursts of {} s)",
            c.events_per_sec, c.bytes_per_sec, c.burst_secs
        )))
    }

    /// Counts committed drops; the agents due a flooding alert (at most one a minute each), with
    /// their drops so far.
    pub(crate) fn dropped(
        &self,
        drops: &HashMap<(String, String), u64>,
        now: Instant,
    ) -> Vec<(String, String, u64)> {
        let mut all = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let mut due = Vec::new();
        for ((tenant, agent), n) in drops {
            let Some(b) = all.get_mut(&(tenant.clone(), agent.clone())) else { continue };
            b.dropped_events += n;
            if b.last_alert.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60)) {
                b.last_alert = Some(now);
                due.push((tenant.clone(), agent.clone(), b.dropped_events));
            }
        }
        due
    }

    /// The flooding alert for an agent that has dropped `dropped` events so far.
    pub(crate) fn alert(&self, tenant: &str, agent: &str, dropped: u64, now_micros: i64) -> Alert {
        let c = self.cfg;
        let description = format!(
            "agent {agent} sent more than its quota ({} events/s, {} bytes/s); {dropped} events refused so far",
            c.events_per_sec, c.bytes_per_sec
        );
        let rule = RuleRef {
            id: "cordon_agent_flooding".to_owned(),
            title: "Agent over its ingest quota".to_owned(),
            author: None,
        };
        Alert {
            level: 3,
            source: "ingest quota".to_owned(),
            why: serde_json::json!({
                "explanation": description,
                "events_per_sec": c.events_per_sec,
                "bytes_per_sec": c.bytes_per_sec,
                "burst_secs": c.burst_secs,
                "dropped_events": dropped,
            }),
            description,
            ..Alert::about_agent(tenant, agent, "quota", rule, now_micros)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_admits_its_burst_then_its_rate_and_refuses_whole_messages() {
        let q = Quotas::new(QuotaConfig { events_per_sec: 100.0, bytes_per_sec: 1e9, burst_secs: 10.0 });
        let t0 = Instant::now();
        // The burst: 1,000 events at once, then nothing more without time passing.
        for _ in 0..10 {
            q.admit("t", "flood", 100, 10, t0).unwrap();
        }
        assert!(q.admit("t", "flood", 1, 10, t0).is_err());
        // Half a second later, 50 more fit; 51 do not, and a refusal takes nothing.
        let t1 = t0 + Duration::from_millis(500);
        assert!(q.admit("t", "flood", 51, 10, t1).is_err());
        q.admit("t", "flood", 50, 10, t1).unwrap();
        // Another agent has its own bucket.
        q.admit("t", "calm", 1000, 10, t1).unwrap();
        // Bytes count too.
        let q = Quotas::new(QuotaConfig { events_per_sec: 1e9, bytes_per_sec: 100.0, burst_secs: 1.0 });
        assert!(q.admit("t", "a", 1, 101, t0).is_err());
    }

    #[test]
    fn a_flooder_is_alerted_at_most_once_a_minute() {
        let q = Quotas::new(QuotaConfig::default());
        let t0 = Instant::now();
        q.admit("t", "f", 1, 1, t0).unwrap();
        let drops: HashMap<(String, String), u64> = [(("t".to_owned(), "f".to_owned()), 5)].into();
        assert_eq!(q.dropped(&drops, t0), vec![("t".to_owned(), "f".to_owned(), 5)]);
        assert!(q.dropped(&drops, t0 + Duration::from_secs(30)).is_empty());
        assert_eq!(q.dropped(&drops, t0 + Duration::from_secs(61))[0].2, 15);
        let a = q.alert("t", "f", 15, 0);
        assert_eq!(
            (a.rule.id.as_str(), a.level, a.why["dropped_events"].as_u64()),
            ("cordon_agent_flooding", 3, Some(15))
        );
    }
}
