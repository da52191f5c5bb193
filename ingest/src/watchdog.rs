//! A silenced agent is itself a signal. The watchdog raises an alert, with the agent's last known
//! state (its last heartbeat as sent), when
//! - a live agent stops heartbeating (`cordon_agent_silent`, T1562.001; at a lower level when its
//!   last heartbeat said it was stopping deliberately). Replays and simulations (heartbeats without
//!   sources) end by design and are only shown as dead by the API;
//! - its heartbeats go on but a source reports it has stopped (`cordon_agent_source_stopped`,
//!   T1562.001), or a steady source (one that produces events on any live host, such as processes)
//!   has produced nothing for `quiet_after` (`cordon_agent_source_quiet`, T1562.006);
//! - its sequence numbers skip (`cordon_agent_sequence_gap`, T1562.006): a heartbeat says every
//!   batch of its boot up to N was acked by JetStream; once the consumer's ack floor has passed the
//!   stream's last message at the heartbeat's time (every message then in the stream is committed
//!   or dead-lettered), each sequence number up to N that ingest never committed, and the agent did
//!   not say it reissued, was removed between the agent and the server.
//!
//! Each occurrence is raised once ([`store::Catalog::raise_once`]), so a restart or a second
//! ingest process raises nothing twice.

use crate::Ingest;
use schemas::alert::{Alert, RuleRef, TechniqueTag};
use schemas::wire::Heartbeat;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use store::catalog::AgentRow;

/// When the watchdog speaks.
#[derive(Clone, Copy, Debug)]
pub struct WatchConfig {
    /// How often agents are looked at.
    pub every: Duration,
    /// A live agent without a heartbeat for this long is silent.
    pub dead_after: Duration,
    /// A steady source without an event for this long (by the agent's clock) is quiet.
    pub quiet_after: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(5),
            dead_after: Duration::from_secs(60),
            quiet_after: Duration::from_secs(600),
        }
    }
}

/// What one look at an agent found.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Finding {
    /// No heartbeat since `last_heartbeat` (server clock); `stopping` when it said goodbye.
    Silent { last_heartbeat: i64, stopping: bool },
    /// A source reported it stopped.
    SourceStopped { source: String, note: String },
    /// A steady source produced nothing since `last_event` (agent clock).
    SourceQuiet { source: String, last_event: i64 },
    /// Sequence numbers of `boot` acked by JetStream and never committed.
    Gap { boot: u64, missing: Vec<u64> },
}

/// Judges an agent from its row alone: silence, stopped and quiet sources. Silence is counted from
/// the later of its last heartbeat and `listening_since` (when this process began listening), so a
/// server that was down does not take its own deafness for the agents' silence.
pub(crate) fn judge(a: &AgentRow, now: i64, listening_since: i64, cfg: &WatchConfig) -> Vec<Finding> {
    let Some(state) = a.state.as_ref().filter(|s| !s.sources.is_empty()) else { return Vec::new() };
    if now - a.last_heartbeat.max(listening_since) > micros(cfg.dead_after) {
        return vec![Finding::Silent { last_heartbeat: a.last_heartbeat, stopping: state.stopping }];
    }
    let mut found = Vec::new();
    for s in &state.sources {
        if !s.running {
            let note = s.note.clone().unwrap_or_else(|| "no reason given".to_owned());
            found.push(Finding::SourceStopped { source: s.name.clone(), note });
        } else if let Some(last) =
            s.last_event.filter(|l| s.steady && state.time - l > micros(cfg.quiet_after))
        {
            found.push(Finding::SourceQuiet { source: s.name.clone(), last_event: last });
        }
    }
    found
}

/// The sequence numbers in `from..=through` neither committed nor reissued.
pub(crate) fn missing(from: u64, through: u64, committed: &[u64], reissued: &[u64]) -> Vec<u64> {
    let have: std::collections::HashSet<u64> = committed.iter().chain(reissued).copied().collect();
    (from..=through).filter(|s| !have.contains(s)).collect()
}

/// `1-3, 7` for `[1, 2, 3, 7]`.
pub(crate) fn ranges(seqs: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < seqs.len() {
        let mut j = i;
        while j + 1 < seqs.len() && seqs[j + 1] == seqs[j] + 1 {
            j += 1;
        }
        out.push(if i == j { seqs[i].to_string() } else { format!("{}-{}", seqs[i], seqs[j]) });
        i = j + 1;
    }
    out.join(", ")
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A heartbeat's claim that every batch up to `through` was acked, waiting for ingest to commit
/// everything the stream held when it came.
#[derive(Clone, Debug)]
pub(crate) struct Claim {
    boot: u64,
    through: u64,
    reissued: Vec<u64>,
    /// The stream's last sequence at or after the heartbeat (set by the first round after it).
    stream_mark: Option<u64>,
}

/// The watchdog's memory: per agent, the claim being waited on and how far each boot is verified.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    waiting: HashMap<(String, String), Claim>,
    verified: HashMap<(String, String, u64), u64>,
}

impl Claims {
    /// Notes a heartbeat's claim; a claim already waiting keeps its place (it is nearer done).
    pub(crate) fn heard(&mut self, tenant: &str, agent: &str, hb: &Heartbeat) {
        if hb.acked_through == 0 {
            return;
        }
        let key = (tenant.to_owned(), agent.to_owned());
        let claim = Claim {
            boot: hb.boot,
            through: hb.acked_through,
            reissued: hb.reissued.clone(),
            stream_mark: None,
        };
        match self.waiting.get(&key) {
            Some(c) if c.boot == hb.boot => {}
            _ => {
                self.waiting.insert(key, claim);
            }
        }
    }

    /// Gives claims without a mark the stream's last sequence now.
    fn mark(&mut self, stream_last: u64) {
        for c in self.waiting.values_mut() {
            c.stream_mark.get_or_insert(stream_last);
        }
    }

    /// Takes the claims whose mark the ack floor has passed.
    fn ripe(&mut self, ack_floor: u64) -> Vec<((String, String), Claim)> {
        let keys: Vec<(String, String)> = self
            .waiting
            .iter()
            .filter(|(_, c)| c.stream_mark.is_some_and(|m| m <= ack_floor))
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter().filter_map(|k| self.waiting.remove_entry(&k)).collect()
    }
}

impl Ingest {
    /// Looks at every agent each `watch.every` until shutdown.
    pub(crate) async fn watchdog(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let listening_since = schemas::time::now_micros();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.watch.every) => {}
                _ = shutdown.changed() => return,
            }
            if let Err(e) = self.watch_round(listening_since).await {
                tracing::warn!(error = %e, "agent watchdog round failed");
            }
        }
    }

    async fn watch_round(&self, listening_since: i64) -> Result<(), store::StoreError> {
        let now = schemas::time::now_micros();
        let catalog = self.store.catalog();
        let agents = catalog.all_agents().await?;
        let mut alerts = Vec::new();
        for a in &agents {
            for f in judge(a, now, listening_since, &self.cfg.watch) {
                if let Some(alert) = self.raise(a, f, now).await? {
                    alerts.push(alert);
                }
            }
        }
        for ((tenant, agent), claim) in self.ripe_claims().await {
            let Some(a) = agents.iter().find(|a| a.tenant == tenant && a.agent_id == agent) else { continue };
            if let Some(f) = self.check_claim(&tenant, &agent, &claim).await?
                && let Some(alert) = self.raise(a, f, now).await?
            {
                alerts.push(alert);
            }
        }
        if !alerts.is_empty() {
            let window = micros(self.cfg.alert_window);
            catalog.record_alerts(&alerts, window, now).await?;
            self.metrics.add(
                "cordon_agent_watch_alerts_total",
                "",
                "Alerts the agent watchdog raised (silent agents, stopped or quiet sources, sequence gaps).",
                alerts.len() as u64,
            );
        }
        Ok(())
    }

    /// The claims whose batches are all committed by now: the stream's last sequence marks new
    /// claims, and the consumer's ack floor ripens old ones.
    async fn ripe_claims(&self) -> Vec<((String, String), Claim)> {
        let Ok(mut stream) = self.js.get_stream(&self.cfg.stream).await else { return Vec::new() };
        let Ok(info) = stream.info().await else { return Vec::new() };
        let last = info.state.last_sequence;
        let floor = match stream
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&self.cfg.consumer)
            .await
        {
            Ok(mut c) => match c.info().await {
                Ok(i) => i.ack_floor.stream_sequence,
                Err(_) => return Vec::new(),
            },
            Err(_) => return Vec::new(),
        };
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        let ripe = claims.ripe(floor);
        claims.mark(last);
        ripe
    }

    /// The sequence numbers a ripe claim covers that ingest never committed.
    async fn check_claim(
        &self,
        tenant: &str,
        agent: &str,
        c: &Claim,
    ) -> Result<Option<Finding>, store::StoreError> {
        let vkey = (tenant.to_owned(), agent.to_owned(), c.boot);
        let from =
            self.claims.lock().unwrap_or_else(|p| p.into_inner()).verified.get(&vkey).map_or(1, |v| v + 1);
        if from > c.through {
            return Ok(None);
        }
        let keys: Vec<String> =
            (from..=c.through).map(|s| format!("{tenant}/{agent}/{agent}:{}:{s}", c.boot)).collect();
        let found = self.store.catalog().committed_keys(&keys).await?;
        let committed: Vec<u64> =
            (from..=c.through).zip(&keys).filter(|(_, k)| found.contains(*k)).map(|(s, _)| s).collect();
        self.claims.lock().unwrap_or_else(|p| p.into_inner()).verified.insert(vkey, c.through);
        let gone = missing(from, c.through, &committed, &c.reissued);
        Ok((!gone.is_empty()).then_some(Finding::Gap { boot: c.boot, missing: gone }))
    }

    /// The alert for a finding, when this occurrence was not raised before.
    async fn raise(&self, a: &AgentRow, f: Finding, now: i64) -> Result<Option<Alert>, store::StoreError> {
        let (kind, subject, mark) = match &f {
            Finding::Silent { last_heartbeat, .. } => ("silent", String::new(), *last_heartbeat),
            Finding::SourceStopped { source, .. } => ("source_stopped", source.clone(), a.boot),
            Finding::SourceQuiet { source, last_event } => ("source_quiet", source.clone(), *last_event),
            Finding::Gap { boot, missing } => {
                ("gap", boot.to_string(), i64::try_from(*missing.last().unwrap_or(&0)).unwrap_or(i64::MAX))
            }
        };
        let news = self.store.catalog().raise_once(&a.tenant, &a.agent_id, kind, &subject, mark, now).await?;
        if news {
            tracing::warn!(tenant = %a.tenant, agent = %a.agent_id, ?f, "security: agent watchdog");
        }
        Ok(news.then(|| alert(a, &f, now)))
    }
}

/// The alert for a finding about agent `a`, with its last known state.
pub(crate) fn alert(a: &AgentRow, f: &Finding, now: i64) -> Alert {
    let (id, title, level, technique, description) = match f {
        Finding::Silent { last_heartbeat, stopping } => (
            "cordon_agent_silent",
            "Agent stopped heartbeating",
            if *stopping { 2 } else { 4 },
            "T1562.001",
            format!(
                "agent {} on {} last heartbeat at {}{}",
                a.agent_id,
                a.host,
                schemas::time::format_micros(*last_heartbeat),
                if *stopping { ", saying it was stopping" } else { ", without saying it was stopping" }
            ),
        ),
        Finding::SourceStopped { source, note } => (
            "cordon_agent_source_stopped",
            "Agent source stopped",
            4,
            "T1562.001",
            format!("agent {} on {}: its {source} source stopped: {note}", a.agent_id, a.host),
        ),
        Finding::SourceQuiet { source, last_event } => (
            "cordon_agent_source_quiet",
            "Agent source went quiet",
            3,
            "T1562.006",
            format!(
                "agent {} on {} heartbeats, but its {source} source has sent nothing since {}",
                a.agent_id,
                a.host,
                schemas::time::format_micros(*last_event)
            ),
        ),
        Finding::Gap { boot, missing } => (
            "cordon_agent_sequence_gap",
            "Agent batches missing",
            4,
            "T1562.006",
            format!(
                "agent {} on {}: {} batch(es) of boot {boot} were acked by the bus and never reached ingest: {}",
                a.agent_id,
                a.host,
                missing.len(),
                ranges(missing)
            ),
        ),
    };
    let name = schemas::attack::catalog().technique(technique).map_or("", |t| t.name).to_owned();
    let subject = match f {
        Finding::SourceStopped { source, .. } | Finding::SourceQuiet { source, .. } => source.as_str(),
        _ => "",
    };
    Alert {
        level,
        source: "agent watchdog".to_owned(),
        techniques: vec![TechniqueTag { id: technique.to_owned(), name }],
        why: serde_json::json!({
            "explanation": description,
            "finding": format!("{f:?}"),
            "last_state": a.state,
            "last_heartbeat": schemas::time::format_micros(a.last_heartbeat),
        }),
        description,
        ..Alert::about_agent(&a.tenant, &a.agent_id, &format!("{id}:{subject}"), rule(id, title), now)
    }
}

fn rule(id: &str, title: &str) -> RuleRef {
    RuleRef { id: id.to_owned(), title: title.to_owned(), author: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::wire::SourceHealth;

    fn row(last_heartbeat: i64, sources: Vec<SourceHealth>, time: i64) -> AgentRow {
        AgentRow {
            tenant: "t".into(),
            agent_id: "a".into(),
            host: "h".into(),
            boot: 1,
            last_heartbeat,
            last_activity: last_heartbeat,
            events_in: 0,
            events_acked: 0,
            events_dropped: 0,
            spool_bytes: 0,
            state: Some(Heartbeat { boot: 1, time, sources, ..Default::default() }),
        }
    }

    fn source(name: &str, steady: bool, running: bool, last_event: Option<i64>) -> SourceHealth {
        SourceHealth { name: name.into(), steady, running, last_event, ..Default::default() }
    }

    #[test]
    fn silence_stopped_and_quiet_sources_are_found_and_replays_are_left_alone() {
        let cfg = WatchConfig {
            every: Duration::from_secs(1),
            dead_after: Duration::from_secs(60),
            quiet_after: Duration::from_secs(600),
        };
        let s = 1_000_000;
        let live = row(100 * s, vec![source("process", true, true, Some(99 * s))], 100 * s);
        assert!(judge(&live, 150 * s, 0, &cfg).is_empty(), "heard from 50 s ago, process events 1 s before");
        assert_eq!(
            judge(&live, 161 * s, 0, &cfg),
            vec![Finding::Silent { last_heartbeat: 100 * s, stopping: false }]
        );
        assert!(
            judge(&live, 161 * s, 150 * s, &cfg).is_empty(),
            "a server listening for 11 s only has not heard the agent's silence"
        );
        assert!(!judge(&live, 211 * s, 150 * s, &cfg).is_empty());
        let replay = row(100 * s, Vec::new(), 100 * s);
        assert!(judge(&replay, 10_000 * s, 0, &cfg).is_empty(), "a replay ends by design");
        let quiet = row(
            1000 * s,
            vec![source("process", true, true, Some(300 * s)), source("file", false, true, Some(s))],
            1000 * s,
        );
        assert_eq!(
            judge(&quiet, 1001 * s, 0, &cfg),
            vec![Finding::SourceQuiet { source: "process".into(), last_event: 300 * s }],
            "an event-driven source may be quiet for long"
        );
        let mut stopped = source("network", true, false, None);
        stopped.note = Some("sock_diag refused".into());
        assert_eq!(
            judge(&row(1000 * s, vec![stopped], 1000 * s), 1001 * s, 0, &cfg),
            vec![Finding::SourceStopped { source: "network".into(), note: "sock_diag refused".into() }]
        );
    }

    #[test]
    fn a_gap_is_what_was_acked_and_neither_committed_nor_reissued() {
        assert_eq!(missing(1, 8, &[1, 2, 5, 8], &[4]), vec![3, 6, 7]);
        assert!(missing(9, 8, &[], &[]).is_empty());
        assert_eq!(ranges(&[3, 6, 7, 8, 10]), "3, 6-8, 10");
    }

    #[test]
    fn a_claim_ripens_once_the_ack_floor_passes_the_stream_at_its_heartbeat() {
        let mut c = Claims::default();
        let hb = Heartbeat { boot: 2, acked_through: 5, ..Default::default() };
        c.heard("t", "a", &hb);
        assert!(c.ripe(1_000).is_empty(), "not marked yet: the heartbeat may be newer than the stream read");
        c.mark(40);
        c.heard("t", "a", &Heartbeat { acked_through: 9, ..hb.clone() });
        assert!(c.ripe(39).is_empty());
        let ripe = c.ripe(40);
        assert_eq!((ripe.len(), ripe[0].1.through), (1, 5), "the older claim keeps its place");
        c.heard("t", "a", &Heartbeat { acked_through: 0, ..hb });
        assert!(c.waiting.is_empty(), "nothing acked yet claims nothing");
    }

    #[test]
    fn alerts_carry_the_technique_and_the_last_state() {
        let a = row(5, vec![source("process", true, true, None)], 5);
        let al = alert(&a, &Finding::Gap { boot: 1, missing: vec![3, 4] }, 10);
        assert_eq!(
            (al.rule.id.as_str(), al.level, al.techniques[0].name.as_str()),
            ("cordon_agent_sequence_gap", 4, "Indicator Blocking")
        );
        assert!(al.description.contains("3-4"), "{}", al.description);
        assert_eq!(al.why["last_state"]["sources"][0]["name"], "process");
        let bye = alert(&a, &Finding::Silent { last_heartbeat: 5, stopping: true }, 10);
        assert_eq!((bye.level, bye.techniques[0].name.as_str()), (2, "Disable or Modify Tools"));
    }
}
