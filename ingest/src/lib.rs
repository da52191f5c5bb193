//! # ingest: JetStream -> validated records -> the store, exactly once
//!
//! A durable pull consumer on the events stream. For each fetched batch of messages:
//! identity (tenant, agent) comes from the subject — the authenticated channel — and a payload
//! claiming another is rejected and recorded as a security event; bodies are size-capped and
//! decompressed with a cap; each NDJSON line is decoded ([`schemas::decode_line`]); rejected lines go
//! to the dead-letter stream with their reason while the good lines of the same message are kept;
//! the batch is committed by [`store::Store::commit`]; only then are the messages acked.
//!
//! Agent heartbeats arrive on core NATS (`<prefix>.<tenant>.<agent>.hb`) and are recorded in the
//! catalog. Metrics per stage go to a shared [`schemas::metrics::Registry`].
//!
//! Depends on `schemas` and `store`; nothing depends on it but the server binary.

pub mod baselines;
pub mod callout;
mod config;
mod correlation;
mod distribute;
mod dlq;
mod heartbeats;
mod history;
mod incidents;
mod orders;
mod policy;
mod quota;
mod streams;
mod triggers;
pub mod watchdog;

use async_nats::jetstream::{self, Message, consumer::pull, stream};
use futures::StreamExt;
use schemas::decode::{Channel, decode_line};
use schemas::metrics::Registry;
use schemas::subject::SubjectKind;
use schemas::wire;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{MessageBatch, Store};
use tracing::Instrument;

pub use config::IngestConfig;
pub use quota::QuotaConfig;
pub use streams::ensure_streams;

/// Ingest failures.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A JetStream call failed.
    #[error("jetstream {op} failed: {message}")]
    JetStream {
        /// What was being done.
        op: &'static str,
        /// The client's error text.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// Runs CPU-bound work (graph updates and searches) without stalling the runtime's other tasks: on
/// a multi-threaded runtime the worker hands its queue to another first.
pub(crate) fn cpu<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn js_err(op: &'static str) -> impl FnOnce(&dyn std::fmt::Display) -> IngestError {
    move |e| IngestError::JetStream { op, message: e.to_string() }
}

const HELP_RECEIVED: &str = "Messages and events received from JetStream.";
const HELP_STORED: &str = "Events committed to the lake (those it held at start included).";
const HELP_POLICY: &str = "Stored policy versions ingest has applied (any tenant).";
const HELP_ALERTS: &str = "Alert evidence recorded (detections the policy alerts on or blocks).";
const HELP_DETECTIONS: &str =
    "Sigma rule matches on ingested events, by policy tier (counted after the commit).";
const HELP_REJECTED: &str = "Lines or messages rejected, by reason; each is in the dead-letter stream.";
const HELP_FAILURES: &str =
    "Batches whose commit failed since the last one that succeeded (they are redelivered).";
const HELP_QUOTA: &str = "Events refused because their agent was over its quota (each message is in the dead-letter stream as over_quota).";
const HELP_DUP: &str = "Messages refused because their batch was already committed.";
const HELP_STAGE: &str = "Seconds each ingest stage took per fetched batch: decode (decode, validate, tag, the \
     graph), dead_letters, commit (lake, catalog, index) and analysers (correlation, logins, alerts, incidents, triggers).";

/// Records the time since `started` as stage `name`'s latency; the time now, for the next stage.
fn stage(reg: &Registry, name: &str, started: Instant) -> Instant {
    let labels = format!("stage=\"{name}\"");
    reg.observe("cordon_ingest_stage_seconds", &labels, HELP_STAGE, started.elapsed().as_secs_f64());
    Instant::now()
}

pub(crate) const HELP_SECURITY: &str = "Security events, by kind (identity_mismatch, msg_id_mismatch, reply_injection, stream_deleted, token_guessing, revoked_connect, credential_clone).";

/// The pull consumer type ingest uses.
pub type Consumer = jetstream::consumer::Consumer<pull::Config>;

/// The ingest pipeline.
#[derive(Debug)]
pub struct Ingest {
    cfg: IngestConfig,
    store: Arc<Store>,
    metrics: Arc<Registry>,
    client: async_nats::Client,
    js: jetstream::Context,
    /// The rules in use (from `cfg.tagger`; replaced by [`Ingest::reload_rules`]), shared with the
    /// API.
    rules: Arc<correlate::sigma::CurrentRules>,
    /// Per-tenant taggers built from the catalog's policies: (policy version, tagger).
    taggers: std::sync::RwLock<std::collections::HashMap<String, (i64, Arc<correlate::sigma::Tagger>)>>,
    last_policy_read: std::sync::Mutex<Option<std::time::Instant>>,
    /// Where tenants' policies are published to agents ([`schemas::policy::POLICY_BUCKET`]).
    policy_kv: jetstream::kv::Store,
    /// Per-tenant correlation state (see [`correlation`]).
    correlators: std::sync::Mutex<std::collections::HashMap<String, correlate::sigma::Correlator>>,
    /// Alerts whose recording failed, retried with the next batch: a correlation that fired has
    /// consumed its events, so a redelivery alone would not raise it again.
    unrecorded: std::sync::Mutex<Vec<(schemas::alert::Alert, Option<String>)>>,
    /// Per-tenant incident state (see [`incidents`]).
    incidents: tokio::sync::Mutex<incidents::State>,
    /// The hour (since the epoch) silences were last looked for.
    last_silence_check: std::sync::Mutex<i64>,
    /// Historical logins waiting to be judged in their own time (see [`history`]).
    history: history::Pending,
    /// Each agent's quota buckets.
    quotas: quota::Quotas,
    /// Heartbeats' claims of acked batches, waiting for the watchdog (see [`watchdog`]).
    claims: std::sync::Mutex<watchdog::Claims>,
}

impl Ingest {
    /// Connects the pipeline to a NATS client (streams and consumer are created if missing).
    pub async fn new(
        client: async_nats::Client,
        cfg: IngestConfig,
        store: Arc<Store>,
        metrics: Arc<Registry>,
    ) -> Result<Self, IngestError> {
        let js = jetstream::new(client.clone());
        let checkpoint = store.catalog().max_checkpoint().await.map_err(store::StoreError::from)?;
        ensure_streams(&js, &cfg, checkpoint.max(0) as u64).await?;
        let policy_kv = match js.get_key_value(schemas::policy::POLICY_BUCKET).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(jetstream::kv::Config {
                    bucket: schemas::policy::POLICY_BUCKET.to_owned(),
                    description: "Each tenant's current detection policy, for agents".to_owned(),
                    history: 5,
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| js_err("create policy bucket")(&e))?,
        };
        // The stored count starts from what the lake already holds, so it matches the catalog
        // across restarts instead of counting from zero.
        let rows = store.catalog().live_rows().await.map_err(store::StoreError::from)?;
        metrics.add("cordon_ingest_stored_total", "", HELP_STORED, u64::try_from(rows).unwrap_or(0));
        let cfg_quota = cfg.quota;
        Ok(Self {
            policy_kv,
            rules: Arc::new(correlate::sigma::CurrentRules::new(cfg.tagger.clone())),
            cfg,
            store,
            metrics,
            client,
            js,
            taggers: Default::default(),
            last_policy_read: Default::default(),
            correlators: Default::default(),
            unrecorded: Default::default(),
            incidents: Default::default(),
            last_silence_check: Default::default(),
            history: Default::default(),
            quotas: quota::Quotas::new(cfg_quota),
            claims: Default::default(),
        })
    }

    /// Runs until `shutdown` turns true: the consume loop, the heartbeat listener and the lag probe.
    pub async fn run(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), IngestError> {
        let mut consumer = self.recover().await?;
        self.publish_rules().await?;
        self.refresh_policies().await?;
        let recent = self.restore_graphs(self.correlation_replay_from()).await?;
        self.restore_correlations(recent).await?;
        self.update_incidents(&Default::default()).await;
        let hb = tokio::spawn(Arc::clone(&self).heartbeats(shutdown.clone()));
        let lag = tokio::spawn(Arc::clone(&self).lag_probe(shutdown.clone()));
        let watch = tokio::spawn(Arc::clone(&self).watchdog(shutdown.clone()));
        let dist = tokio::spawn(Arc::clone(&self).distribute(shutdown.clone()));
        let mut backoff = Duration::from_millis(100);
        let mut last_check = std::time::Instant::now();
        while !*shutdown.borrow() {
            // Policies are re-read (and published to agents) even when no events arrive.
            if let Err(e) = self.refresh_policies().await {
                tracing::warn!(error = %e, "cannot read policies; keeping the current ones");
            }
            let fetched = consumer
                .fetch()
                .max_messages(self.cfg.fetch_messages)
                .expires(self.cfg.fetch_wait)
                .messages()
                .await;
            let mut batch = match fetched {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "fetch failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    consumer = self.recover().await.unwrap_or(consumer);
                    continue;
                }
            };
            let mut msgs = Vec::new();
            let mut fetch_failed = false;
            while let Some(m) = batch.next().await {
                match m {
                    Ok(m) => msgs.push(m),
                    Err(e) => {
                        tracing::warn!(error = %e, "message error in fetch");
                        fetch_failed = true;
                    }
                }
            }
            if fetch_failed && msgs.is_empty() {
                // A consumer or stream that was deleted answers fetches with errors: bring it back.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                consumer = self.recover().await.unwrap_or(consumer);
                continue;
            }
            if msgs.is_empty() {
                // Quiet: check now and then that the streams and the consumer are still there (a
                // deleted consumer can look like a quiet one).
                if last_check.elapsed() > Duration::from_secs(5) {
                    consumer = self.recover().await.unwrap_or(consumer);
                    last_check = std::time::Instant::now();
                }
                // Silences are looked for at each new hour, and joins that waited for the
                // recheck interval are worked out now.
                let mut silent = self.new_hour_findings(schemas::time::now_micros());
                silent.extend(self.history_findings().await);
                if let Err(e) = self.record_alerts(&silent).await {
                    tracing::warn!(error = %e, "cannot record silence alerts; retried with the next batch");
                }
                self.update_incidents(&self.incident_tenants().await).await;
                continue;
            }
            let seqs = msgs.iter().filter_map(|m| m.info().ok().map(|i| i.stream_sequence));
            let (first_seq, last_seq) = seqs.fold((u64::MAX, 0), |(lo, hi), s| (lo.min(s), hi.max(s)));
            let span = tracing::info_span!("ingest_batch", messages = msgs.len(), first_seq, last_seq);
            match self.process(&msgs).instrument(span).await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    self.metrics.set_gauge("cordon_ingest_commit_failures", "", HELP_FAILURES, 0);
                    for m in &msgs {
                        if let Err(e) = m.ack().await {
                            tracing::warn!(error = %e, "ack failed; the message will be redelivered and deduplicated");
                        }
                    }
                    store::failpoint::hit("after_ack");
                }
                Err(e) => {
                    tracing::error!(error = %schemas::error_chain(&e), messages = msgs.len(), "commit failed; messages will be redelivered");
                    self.metrics.add("cordon_ingest_commit_failures", "", HELP_FAILURES, 1);
                    for m in &msgs {
                        let _ = m.ack_with(jetstream::AckKind::Nak(Some(backoff))).await;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    // A deleted dead-letter stream fails every batch with a reject: bring it back.
                    consumer = self.recover().await.unwrap_or(consumer);
                }
            }
        }
        hb.abort();
        lag.abort();
        watch.abort();
        dist.abort();
        Ok(())
    }

    /// Decodes, dead-letters and commits one fetched batch. Returns once it is durable.
    async fn process(&self, msgs: &[Message]) -> Result<(), IngestError> {
        self.refresh_policies().await?;
        let received = schemas::time::now_micros();
        let started = Instant::now();
        let decode_span = tracing::debug_span!("decode", events = tracing::field::Empty);
        let mut batches = Vec::with_capacity(msgs.len());
        let mut dead = Vec::new();
        let mut security = Vec::new();
        let mut detections: std::collections::BTreeMap<&'static str, u64> = std::collections::BTreeMap::new();
        let mut alerts = Vec::new();
        let mut quota_drops: std::collections::HashMap<(String, String), u64> = Default::default();
        let mut blocks: Vec<triggers::Block> = Vec::new();
        let mut to_correlate: Vec<correlation::Pending> = Vec::new();
        let mut events_in = 0u64;
        let mut touched: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        let mut logins = Vec::new();
        // The guard's scope ends before the first await (it cannot cross one).
        {
            let _entered = decode_span.enter();
            for m in msgs {
                let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
                let msg_id =
                    m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.as_str().to_owned());
                let (tenant, agent) = match self.cfg.subjects.parse(m.subject.as_str()) {
                    Ok((t, a, SubjectKind::Events)) => (t.to_string(), a.to_string()),
                    Ok(_) | Err(_) => {
                        dead.push(dlq::DeadLetter::message(
                            "_",
                            "_",
                            seq,
                            "bad_subject",
                            m.subject.to_string(),
                            &m.payload,
                        ));
                        batches.push(MessageBatch {
                            key: format!("s{seq}"),
                            stream_seq: seq,
                            records: Vec::new(),
                            rejected: 1,
                            published: None,
                        });
                        continue;
                    }
                };
                // A message that cannot be the subject's agent's (see [`dlq::not_from_agent`]).
                if let Some((kind, detail)) = dlq::not_from_agent(msg_id.as_deref(), &agent, &m.payload) {
                    security.push((tenant.clone(), agent.clone(), kind, detail.clone()));
                    dead.push(dlq::DeadLetter::message(&tenant, &agent, seq, kind, detail, &m.payload));
                    batches.push(MessageBatch {
                        key: format!("{tenant}/{agent}/s{seq}"),
                        stream_seq: seq,
                        records: Vec::new(),
                        rejected: 1,
                        published: None,
                    });
                    continue;
                }
                // The key is scoped by the channel, so an agent cannot pre-empt another's batch ids.
                let key = match &msg_id {
                    Some(id) => format!("{tenant}/{agent}/{id}"),
                    None => format!("{tenant}/{agent}/s{seq}"),
                };
                let message_key = match msg_id.as_deref().and_then(wire::MsgKey::parse) {
                    Some(k) if k.agent == agent => format!("{}:{}", k.boot, k.seq),
                    _ => format!("s{seq}"),
                };
                let header =
                    |name: &str| m.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned());
                let body = match wire::decode_body(
                    header(wire::HEADER_WIRE).as_deref(),
                    header(wire::HEADER_ENCODING).as_deref(),
                    &m.payload,
                    self.cfg.max_message_bytes,
                ) {
                    Ok(b) => b,
                    Err(e) => {
                        let reason = match e {
                            wire::WireError::TooLarge { .. } => "message_too_large",
                            wire::WireError::Version(_) => "bad_version",
                            wire::WireError::Encoding(_) => "bad_encoding",
                            wire::WireError::Corrupt(_) => "corrupt_body",
                        };
                        dead.push(dlq::DeadLetter::message(
                            &tenant,
                            &agent,
                            seq,
                            reason,
                            e.to_string(),
                            &m.payload,
                        ));
                        batches.push(MessageBatch {
                            key,
                            stream_seq: seq,
                            records: Vec::new(),
                            rejected: 1,
                            published: None,
                        });
                        continue;
                    }
                };
                let lines = wire::lines(&body).count() as u64;
                if let Err(over) = self.quotas.admit(
                    &tenant,
                    &agent,
                    lines,
                    m.payload.len() as u64,
                    std::time::Instant::now(),
                ) {
                    dead.push(dlq::DeadLetter::message(
                        &tenant,
                        &agent,
                        seq,
                        "over_quota",
                        over.0,
                        &m.payload,
                    ));
                    *quota_drops.entry((tenant.clone(), agent.clone())).or_insert(0) += lines;
                    batches.push(MessageBatch {
                        key,
                        stream_seq: seq,
                        records: Vec::new(),
                        rejected: lines as usize,
                        published: None,
                    });
                    continue;
                }
                let tagger = self.tagger_for(&tenant);
                let ch = Channel {
                    tenant: &tenant,
                    agent: &agent,
                    message_key: &message_key,
                    stream_seq: seq,
                    received,
                };
                let mut records = Vec::new();
                let mut rejected = 0;
                for (line_no, line) in wire::lines(&body) {
                    events_in += 1;
                    match decode_line(line, line_no, &ch, &self.cfg.limits) {
                        Ok(mut r) => {
                            if let Some(t) = &tagger {
                                let (found, hits) = t.tag_and_hits(&mut r);
                                for d in found {
                                    *detections.entry(d.tier.as_str()).or_insert(0u64) += 1;
                                    if let Some(a) = correlate::sigma::tagger::alert_for(&r, &d) {
                                        alerts.push((a, correlate::graph::Graph::process_key(&r)));
                                    }
                                    if let Some(cmd) =
                                        correlate::sigma::tagger::terminate_command(&r, &d, received)
                                    {
                                        blocks.push(triggers::Block {
                                            tenant: tenant.clone(),
                                            agent: agent.clone(),
                                            command: cmd,
                                            techniques: d.techniques.clone(),
                                        });
                                    }
                                }
                                if !hits.is_empty() {
                                    let rules = tagger
                                        .as_ref()
                                        .map(|t| t.sources().digest.clone())
                                        .unwrap_or_default();
                                    to_correlate.push(correlation::Pending {
                                        record: r.clone(),
                                        hits,
                                        rules,
                                    });
                                }
                            }
                            if let Some(l) = baselines::login(&r) {
                                logins.push(l);
                            }
                            records.push(r);
                        }
                        Err(reject) => {
                            rejected += 1;
                            if reject.is_security() {
                                security.push((
                                    tenant.clone(),
                                    agent.clone(),
                                    "identity_mismatch",
                                    reject.to_string(),
                                ));
                            }
                            dead.push(dlq::DeadLetter::line(
                                &tenant, &agent, seq, &key, line_no, &reject, line,
                            ));
                        }
                    }
                }
                // The graph sees the batch before its commit: a failed commit is redelivered, and the
                // graph ignores events it has seen (by id), so it never counts one twice.
                if !records.is_empty() {
                    cpu(|| {
                        self.cfg.graphs.write(&tenant, |g| {
                            for r in &records {
                                g.add(r);
                            }
                        })
                    });
                    touched.insert(tenant.clone());
                }
                let published = m.info().ok().map(|i| (i.published.unix_timestamp_nanos() / 1000) as i64);
                batches.push(MessageBatch { key, stream_seq: seq, records, rejected, published });
            }
        }
        let reg = &self.metrics;
        decode_span.record("events", events_in);
        let mut started = stage(reg, "decode", started);
        reg.add("cordon_ingest_messages_total", "", HELP_RECEIVED, msgs.len() as u64);
        reg.add("cordon_ingest_events_total", "", HELP_RECEIVED, events_in);
        let dead_span = tracing::debug_span!("dead_letters", count = dead.len());
        dlq::publish(&self.js, &self.cfg.subjects, &dead).instrument(dead_span).await?;
        let now = schemas::time::now_micros();
        // The newest per tenant also go to the catalog, for operators (GET /api/v1/dead-letters).
        self.store
            .catalog()
            .record_dead_letters(&dlq::rows(&dead, now))
            .await
            .map_err(store::StoreError::from)?;
        // Counted once the dead letters are durable, so a counted reject is always in the DLQ.
        for d in &dead {
            reg.add("cordon_ingest_rejected_total", &format!("reason=\"{}\"", d.reason), HELP_REJECTED, 1);
        }
        for (t, a, kind, detail) in &security {
            tracing::warn!(tenant = %t, agent = %a, kind, %detail, "security: a message claims another identity");
            reg.add("cordon_security_events_total", &format!("kind=\"{kind}\""), HELP_SECURITY, 1);
            self.store
                .catalog()
                .security_event(t, a, kind, detail, now)
                .await
                .map_err(store::StoreError::from)?;
        }
        started = stage(reg, "dead_letters", started);
        let commit_span = tracing::debug_span!("commit", messages = batches.len());
        let outcome = self.store.commit(&self.cfg.consumer, batches).instrument(commit_span).await?;
        started = stage(reg, "commit", started);
        reg.add("cordon_ingest_stored_total", "", HELP_STORED, outcome.stored as u64);
        // Drops over a quota count once committed (a redelivered batch is refused by key then).
        let dropped: u64 = quota_drops.values().sum();
        if dropped > 0 {
            reg.add("cordon_ingest_quota_dropped_events_total", "", HELP_QUOTA, dropped);
            for (t, a, total) in self.quotas.dropped(&quota_drops, std::time::Instant::now()) {
                tracing::warn!(tenant = %t, agent = %a, dropped = total, "agent over its ingest quota");
                alerts.push((self.quotas.alert(&t, &a, total, now), None));
            }
        }
        // Correlations see events once they are durable: a failed commit is redelivered, and the
        // state rebuilt after a restart (from the lake) then matches what was counted.
        for d in self.correlate(to_correlate) {
            *detections.entry(d.1.tier.as_str()).or_insert(0u64) += 1;
            if let Some(a) = correlate::sigma::tagger::alert_for(&d.0, &d.1) {
                alerts.push((a, correlate::graph::Graph::process_key(&d.0)));
            }
        }
        // Logins are counted once stored (the counts ignore an event id they have seen, so a
        // redelivered batch does not count twice); counts past both bounds are anomalies.
        if !logins.is_empty() {
            alerts.extend(cpu(|| self.count_logins(&logins, now)));
        }
        alerts.extend(self.new_hour_findings(now));
        alerts.extend(self.history_findings().await);
        // Alerts follow the commit (their evidence is stored); recording is idempotent per evidence
        // event, so a batch redelivered after a failure here does not count twice.
        self.record_alerts(&alerts).await?;
        // Incidents: the batch's alerts join what the graph connects them to.
        self.update_incidents(&touched).await;
        // Blocks: within a standing order the approvers signed, the agent that reported the process
        // start is told to terminate it.
        self.send_triggers(&blocks).await;
        for (tier, n) in &detections {
            reg.add("cordon_detections_total", &format!("tier=\"{tier}\""), HELP_DETECTIONS, *n);
        }
        reg.add("cordon_ingest_duplicate_messages_total", "", HELP_DUP, outcome.duplicate_messages as u64);
        stage(reg, "analysers", started);
        tracing::debug!(
            stored = outcome.stored,
            files = outcome.files,
            dup = outcome.duplicate_messages,
            "batch committed"
        );
        Ok(())
    }
}
