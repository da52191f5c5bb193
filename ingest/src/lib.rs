//! # ingest: JetStream -> validated records -> the store, exactly once
//!
//! A durable pull consumer on the events stream. Each fetched batch goes through stages with
//! narrow interfaces, each timed (`cordon_ingest_stage_seconds`) and in its own span:
//! 1. **decode** ([`decode::Decoder`], no NATS types): identity (tenant, agent) from the subject,
//!    the authenticated channel, a payload claiming another refused as a security event; bodies
//!    size-capped and decompressed with a cap; each agent's quota; each NDJSON line decoded by
//!    [`schemas::decode_line`], a rejected line dead-lettered while the good lines of its message
//!    are kept;
//! 2. **tag** ([`tag`]): each tenant's Sigma rules and policy write techniques and tiers into the
//!    records, and note the alerts, blocks and correlation candidates they call for;
//! 3. **dead letters** to their stream and the catalog;
//! 4. **commit** ([`store::Store::commit`]): the batch is durable, and its messages are acked;
//! 5. **analysers** ([`analyse::Analyser`]: the entity graph, correlation windows, login counts,
//!    as [`IngestConfig::analysers`] names them; each rebuilds its own state from the lake at start)
//!    read the committed events on the analysis task ([`analysis`]), behind a bounded queue, while
//!    the next fetch is decoded and committed; alerts are recorded, incidents worked out, triggers
//!    sent. How far they have read the lake is kept in the catalog, and what a crash left
//!    unanalysed is analysed when ingest starts again.
//!
//! Agent heartbeats arrive on core NATS (`<prefix>.<tenant>.<agent>.hb`) and are recorded in the
//! catalog. Metrics go to a shared [`schemas::metrics::Registry`].
//!
//! Depends on `schemas`, `store`, `correlate` and `anomaly`; nothing depends on it but the server
//! binary and the tests.

pub mod analyse;
mod analysis;
pub mod baselines;
mod batch;
pub mod callout;
mod config;
mod correlation;
pub mod decode;
mod distribute;
mod dlq;
mod elected;
mod heartbeats;
mod history;
mod incidents;
mod orders;
mod policy;
mod quota;
mod streams;
mod tag;
mod triggers;
pub mod watchdog;

use analyse::Analyser;
use analysis::{Analysis, Work};
use async_nats::jetstream::{self, Message, consumer::pull};
use batch::Next;
use decode::{Decoded, Decoder, Inbound};
use futures::StreamExt;
use schemas::metrics::Registry;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::Store;
use tokio::sync::mpsc;
use tracing::Instrument;

pub use config::IngestConfig;
pub use quota::QuotaConfig;
pub use streams::{ACK_WAIT, ensure_streams};

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
const HELP_START_FAILURES: &str =
    "Times ingest could not start on JetStream (streams, consumer, rules, policies) and tried again.";
const HELP_ALERTS: &str = "Alert evidence recorded (detections the policy alerts on or blocks).";
const HELP_DETECTIONS: &str =
    "Sigma rule matches on ingested events, by policy tier (counted after the commit).";
const HELP_REJECTED: &str = "Lines or messages rejected, by reason; each is in the dead-letter stream.";
const HELP_FAILURES: &str =
    "Batches whose commit failed since the last one that succeeded (they are redelivered).";
const HELP_QUOTA: &str = "Events refused because their agent was over its quota (each message is in the dead-letter stream as over_quota).";
const HELP_DUP: &str = "Messages refused because their batch was already committed.";
const HELP_STAGE: &str = "Seconds each ingest stage took per fetched batch: decode (decode, validate), tag (Sigma \
     rules and the policy), dead_letters, commit (lake, catalog, index) and analysers (the graph, correlation, logins, \
     alerts, incidents, triggers).";

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
    /// Where tenants' policies are published to agents ([`schemas::policy::POLICY_BUCKET`]); made
    /// or found when ingest first reaches JetStream ([`Ingest::run`]).
    policy_kv: std::sync::OnceLock<jetstream::kv::Store>,
    /// True once ingest consumes: JetStream reached, the analysers' state restored (`/readyz`).
    ready: Arc<std::sync::atomic::AtomicBool>,
    /// The analysers (see [`analyse`]) the configuration names, in the order a batch reaches them.
    analysers: Vec<Arc<dyn Analyser>>,
    /// Alerts whose recording failed, retried with the next batch: a correlation that fired has
    /// consumed its events, so a redelivery alone would not raise it again.
    unrecorded: std::sync::Mutex<Vec<(schemas::alert::Alert, Option<String>)>>,
    /// Per-tenant incident state (see [`incidents`]).
    incidents: tokio::sync::Mutex<incidents::State>,
    /// Historical logins waiting to be judged in their own time (see [`history`]).
    history: Arc<history::Pending>,
    /// Each agent's quota buckets.
    quotas: quota::Quotas,
    /// Heartbeats' claims of acked batches, waiting for the watchdog (see [`watchdog`]).
    claims: std::sync::Mutex<watchdog::Claims>,
}

impl Ingest {
    /// The pipeline on a NATS client. Nothing is asked of JetStream yet: [`Ingest::run`] makes or
    /// checks the streams, the consumer and the policy bucket, and waits for a JetStream that cannot
    /// answer yet (a cluster without quorum) rather than fail the server's start.
    pub async fn new(
        client: async_nats::Client,
        cfg: IngestConfig,
        store: Arc<Store>,
        metrics: Arc<Registry>,
    ) -> Result<Self, IngestError> {
        let js = jetstream::new(client.clone());
        // The stored count starts from what the lake already holds, so it matches the catalog
        // across restarts instead of counting from zero.
        let rows = store.catalog().live_rows().await.map_err(store::StoreError::from)?;
        metrics.add("cordon_ingest_stored_total", "", HELP_STORED, u64::try_from(rows).unwrap_or(0));
        let history = Arc::new(history::Pending::default());
        let rules = Arc::new(correlate::sigma::CurrentRules::new(cfg.tagger.clone()));
        let wiring = analyse::Wiring {
            graphs: &cfg.graphs,
            rules: &rules,
            baselines: &cfg.baselines,
            history: &history,
            metrics: &metrics,
        };
        let analysers = analyse::build(&cfg.analysers, &wiring);
        Ok(Self {
            policy_kv: std::sync::OnceLock::new(),
            ready: Arc::default(),
            rules,
            analysers,
            quotas: quota::Quotas::new(cfg.quota),
            cfg,
            store,
            metrics,
            client,
            js,
            taggers: Default::default(),
            last_policy_read: Default::default(),
            unrecorded: Default::default(),
            incidents: Default::default(),
            history,
            claims: Default::default(),
        })
    }

    /// True once ingest consumes (JetStream reached, the analysers' state restored): what the
    /// server's `/readyz` answers.
    pub fn readiness(&self) -> Arc<std::sync::atomic::AtomicBool> {
        Arc::clone(&self.ready)
    }

    /// Runs until `shutdown` turns true: the consume loop, the heartbeat listener and the lag probe.
    pub async fn run(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), IngestError> {
        let Some(mut consumer) = self.connect_when_ready(&mut shutdown).await else { return Ok(()) };
        if self.cfg.elected_analysis.is_none() {
            // Where processes share the catalog, the one that takes the analysis lease restores.
            self.restore().await?;
        }
        self.ready.store(true, std::sync::atomic::Ordering::Release);
        tracing::info!("ingest is consuming");
        let tasks = [
            tokio::spawn(Arc::clone(&self).heartbeats(shutdown.clone())),
            tokio::spawn(Arc::clone(&self).lag_probe(shutdown.clone())),
            tokio::spawn(Arc::clone(&self).watchdog(shutdown.clone())),
            tokio::spawn(Arc::clone(&self).distribute(shutdown.clone())),
        ];
        let (work, queue) = tokio::sync::mpsc::channel(analysis::ANALYSIS_QUEUE);
        let analysing = tokio::spawn(Arc::clone(&self).analysis(queue));
        let mut backoff = Backoff::default();
        let mut last_check = Instant::now();
        let mut ahead = None;
        while !*shutdown.borrow() {
            // Policies are re-read (and published to agents) even when no events arrive.
            if let Err(e) = self.refresh_policies().await {
                tracing::warn!(error = %e, "cannot read policies; keeping the current ones");
            }
            let next = match ahead.take() {
                Some(n) => n,
                None => self.next(&consumer).await,
            };
            let healthy = match next {
                Next::Batch(batch) => {
                    // The next batch is fetched, decoded and tagged (on the CPU pool) while this
                    // one commits and is acked: the bus delivers it and the decoder reads it
                    // while the commit encodes Parquet, indexes and waits for its fsyncs.
                    let handled = self.handle(*batch, &work, &mut backoff);
                    let (healthy, following) = tokio::join!(handled, self.next(&consumer));
                    ahead = Some(following);
                    healthy
                }
                Next::Empty => {
                    // The analysis task's idle work, unless it is busy anyway.
                    let _ = work.try_send(Work::Idle);
                    // Check now and then that the streams and the consumer are still there (a
                    // deleted consumer can look like a quiet one).
                    last_check.elapsed() < Duration::from_secs(5)
                }
                Next::Failed => {
                    backoff.wait(&mut shutdown).await;
                    false
                }
            };
            if !healthy {
                // A consumer or stream that was deleted answers fetches with errors, and a deleted
                // dead-letter stream fails every batch with a reject: bring them back.
                consumer = self.recover().await.unwrap_or(consumer);
                last_check = Instant::now();
            }
        }
        if let Some(Next::Batch(batch)) = ahead {
            self.give_back(&batch.msgs).await;
        }
        tasks.iter().for_each(tokio::task::JoinHandle::abort);
        // What was committed is analysed before ingest stops.
        drop(work);
        let _ = analysing.await;
        Ok(())
    }

    /// Before the first fetch, on JetStream: the streams and consumer, the rules and policies
    /// published. Each step is idempotent, so a failed attempt can be repeated whole.
    async fn connect(&self) -> Result<Consumer, IngestError> {
        // Made when missing, as on a first start; only a loss while running is a security event
        // ([`Ingest::recover`]).
        let checkpoint = self.store.catalog().max_checkpoint().await.map_err(store::StoreError::from)?;
        let consumer = ensure_streams(&self.js, &self.cfg, checkpoint.max(0) as u64).await?;
        if self.policy_kv.get().is_none() {
            let _ = self.policy_kv.set(streams::policy_bucket(&self.js, &self.cfg).await?);
        }
        self.publish_rules().await?;
        self.refresh_policies().await?;
        Ok(consumer)
    }

    /// Then, once: the analysers' state rebuilt from the lake, and what was committed but not
    /// analysed before a restart analysed.
    async fn restore(&self) -> Result<(), IngestError> {
        let (unanalysed, last) = self.unanalysed().await?;
        self.restore_analysers(&analysis::event_ids(&unanalysed)).await?;
        self.restore_incidents().await?;
        self.analyse_again(unanalysed, last).await?;
        self.update_incidents(&Default::default()).await;
        Ok(())
    }

    /// [`Ingest::connect`], again after each failure until it succeeds (`None` at shutdown). A
    /// JetStream that cannot answer yet (a cluster electing leaders, streams being rescaled to more
    /// copies) delays ingest; it must not end it while the API keeps serving.
    async fn connect_when_ready(
        &self,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Option<Consumer> {
        until_ok(shutdown, || self.connect(), |e, retry_in| {
            tracing::warn!(error = %schemas::error_chain(e), ?retry_in, "ingest cannot start yet; retrying");
            self.metrics.add("cordon_ingest_start_failures_total", "", HELP_START_FAILURES, 1);
        })
        .await
    }
}

/// `attempt`'s value once it succeeds, with the [`Backoff`] between failures (each told to `failed`
/// with the wait before the next try); `None` once `shutdown` turns true.
async fn until_ok<T, E, F: std::future::Future<Output = Result<T, E>>>(
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    mut attempt: impl FnMut() -> F,
    mut failed: impl FnMut(&E, Duration),
) -> Option<T> {
    let mut backoff = Backoff::default();
    while !*shutdown.borrow() {
        match attempt().await {
            Ok(v) => return Some(v),
            Err(e) => failed(&e, backoff.current()),
        }
        backoff.wait(shutdown).await;
    }
    None
}

/// The retry delay after a failure: 100 ms, doubling to 5 s, reset by a success.
#[derive(Debug)]
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(Duration::from_millis(100))
    }
}

impl Backoff {
    fn current(&self) -> Duration {
        self.0
    }

    fn grow(&mut self) {
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }

    fn reset(&mut self) {
        *self = Self::default();
    }

    /// Waits the current delay (or until shutdown), then grows it.
    async fn wait(&mut self, shutdown: &mut tokio::sync::watch::Receiver<bool>) {
        tokio::select! {
            _ = tokio::time::sleep(self.0) => {}
            _ = shutdown.changed() => {}
        }
        self.grow();
    }
}

#[cfg(test)]
mod retry_tests {
    use super::*;

    /// A start that fails is tried again after the backoff (each failure told with the wait before
    /// the next try) until it succeeds; at shutdown, retrying ends.
    #[tokio::test]
    async fn a_failed_start_is_tried_again_until_it_succeeds_and_shutdown_ends_the_retries() {
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let (mut tries, mut waits) = (0, Vec::new());
        let attempt = || {
            tries += 1;
            std::future::ready(if tries < 3 { Err("no quorum") } else { Ok(tries) })
        };
        let started = until_ok(&mut rx, attempt, |e, wait| {
            assert_eq!(*e, "no quorum");
            waits.push(wait);
        })
        .await;
        assert_eq!(started, Some(3));
        assert_eq!(waits, [Duration::from_millis(100), Duration::from_millis(200)]);

        tx.send(true).unwrap();
        assert_eq!(until_ok(&mut rx, || std::future::ready(Err::<(), _>("down")), |_, _| {}).await, None);
    }
}
