//! What ingest needs on the bus, and keeping it there: the events stream, the dead-letter stream and
//! the durable consumer (created, and recreated when someone deleted them), and the lag they show.

use super::{Consumer, HELP_SECURITY, Ingest, IngestConfig, IngestError, js_err};
use async_nats::jetstream::{self, consumer::pull, stream};
use schemas::subject::SubjectKind;
use std::sync::Arc;
use std::time::Duration;

/// How long the durable consumer waits for an ack before it delivers a message again. A delivery
/// lost on its way (the consumer's leader died with the reply in flight) waits this long too: after a
/// NATS member fails, a few messages can be this late.
pub const ACK_WAIT: Duration = Duration::from_secs(60);

const HELP_LAG: &str =
    "Messages in the stream not yet committed by ingest (pending delivery, or delivered and not acked).";
const HELP_UP: &str = "1 when ingest's durable consumer exists, 0 when it is gone (it is recreated).";
const HELP_RECREATED: &str = "Streams and consumers ingest recreated because they were missing.";

/// The bucket tenants' policies are published to agents in ([`schemas::policy::POLICY_BUCKET`]),
/// made when missing and rescaled to the configured copies.
pub(crate) async fn policy_bucket(
    js: &jetstream::Context,
    cfg: &IngestConfig,
) -> Result<jetstream::kv::Store, IngestError> {
    let kv = match js.get_key_value(schemas::policy::POLICY_BUCKET).await {
        Ok(kv) => kv,
        Err(_) => js
            .create_key_value(jetstream::kv::Config {
                bucket: schemas::policy::POLICY_BUCKET.to_owned(),
                description: "Each tenant's current detection policy, for agents".to_owned(),
                history: 5,
                storage: stream::StorageType::File,
                num_replicas: cfg.stream_replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| js_err("create policy bucket")(&e))?,
    };
    rescale(js, &format!("KV_{}", schemas::policy::POLICY_BUCKET), cfg.stream_replicas).await?;
    Ok(kv)
}

/// Creates (or checks) the streams and the durable consumer. A missing events stream is created to
/// continue after `checkpoint` (the highest stream sequence the catalog has committed), so the
/// sequence-keyed batches of shippers without message ids (`s<seq>`) never repeat a committed key.
pub async fn ensure_streams(
    js: &jetstream::Context,
    cfg: &IngestConfig,
    checkpoint: u64,
) -> Result<Consumer, IngestError> {
    let events = js
        .get_or_create_stream(stream::Config {
            name: cfg.stream.clone(),
            subjects: vec![cfg.subjects.filter(SubjectKind::Events)],
            storage: stream::StorageType::File,
            // Work-queue retention: a message leaves the stream when ingest acks it (after the lake
            // has it), so the stream holds only what is not yet stored and cannot grow without end.
            // At its cap the stream refuses new messages (discard new): agents keep them spooled
            // and send them again; nothing already accepted is ever discarded.
            retention: stream::RetentionPolicy::WorkQueue,
            discard: stream::DiscardPolicy::New,
            max_bytes: cfg.stream_max_bytes.unwrap_or(-1),
            duplicate_window: cfg.duplicate_window,
            max_message_size: i32::try_from(cfg.max_message_bytes).unwrap_or(i32::MAX),
            first_sequence: (checkpoint > 0).then_some(checkpoint + 1),
            num_replicas: cfg.stream_replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| js_err("create events stream")(&e))?;
    let mut events = events;
    if let Ok(info) = events.info().await
        && info.config.retention != stream::RetentionPolicy::WorkQueue
    {
        tracing::warn!(
            stream = %cfg.stream,
            "the events stream keeps every message (it was made before work-queue retention); \
             it grows until nats-server's store is full: recreate it when ingest has caught up"
        );
    }
    rescale(js, &cfg.stream, cfg.stream_replicas).await?;
    js.get_or_create_stream(stream::Config {
        name: cfg.dlq_stream.clone(),
        subjects: vec![cfg.subjects.dead_letter_filter()],
        storage: stream::StorageType::File,
        max_age: Duration::from_secs(30 * 24 * 3600),
        num_replicas: cfg.stream_replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| js_err("create dead-letter stream")(&e))?;
    rescale(js, &cfg.dlq_stream, cfg.stream_replicas).await?;
    events
        .get_or_create_consumer(
            &cfg.consumer,
            pull::Config {
                durable_name: Some(cfg.consumer.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_ack_pending: 100_000,
                filter_subject: cfg.subjects.filter(SubjectKind::Events),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| js_err("create consumer")(&e))
}

/// Whether JetStream answered that the stream does not exist.
fn gone(e: &jetstream::context::GetStreamError) -> bool {
    use jetstream::{ErrorCode, context::GetStreamErrorKind};
    matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Gives the existing stream `name` (a bucket's too: `KV_<bucket>`, `OBJ_<bucket>`) `replicas`
/// copies when it has another number (the operator changed `--stream-replicas`, or the stream was
/// made on one node before the cluster grew). JetStream moves the data itself; a cluster with fewer
/// members than `replicas` refuses, and that is the error.
pub(crate) async fn rescale(js: &jetstream::Context, name: &str, replicas: usize) -> Result<(), IngestError> {
    let mut s = js.get_stream(name).await.map_err(|e| js_err("read stream")(&e))?;
    let info = s.info().await.map_err(|e| js_err("read stream")(&e))?;
    let have = info.config.num_replicas.max(1);
    if have == replicas {
        return Ok(());
    }
    let name = info.config.name.clone();
    let config = stream::Config { num_replicas: replicas, ..info.config.clone() };
    js.update_stream(config).await.map_err(|e| js_err("rescale stream")(&e))?;
    tracing::info!(stream = %name, from = have, to = replicas, "stream rescaled");
    Ok(())
}

impl Ingest {
    /// Every 2 s: the messages not yet committed (pending delivery plus delivered and not acked, so
    /// a stalled ingest shows as growing lag, not 0), and whether the consumer is there at all.
    pub(crate) async fn lag_probe(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            let info = match self.js.get_stream(&self.cfg.stream).await {
                Ok(s) => match s.get_consumer::<pull::Config>(&self.cfg.consumer).await {
                    Ok(mut c) => c.info().await.cloned().ok(),
                    Err(_) => None,
                },
                Err(_) => None,
            };
            match info {
                Some(i) => {
                    let lag = i.num_pending + i.num_ack_pending as u64;
                    self.metrics.set_gauge("cordon_ingest_lag_messages", "", HELP_LAG, lag);
                    self.metrics.set_gauge("cordon_ingest_consumer_up", "", HELP_UP, 1);
                }
                None => self.metrics.set_gauge("cordon_ingest_consumer_up", "", HELP_UP, 0),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// What the bus says is gone. Only its definite "not found" counts: a cluster electing a new
    /// leader answers nothing, or an error, for a few seconds, and that is not a deletion.
    async fn missing(&self) -> Vec<&'static str> {
        use async_nats::jetstream::context::ConsumerInfoErrorKind;
        let mut missing = Vec::new();
        match self.js.get_stream(&self.cfg.stream).await {
            Ok(s) => match s.consumer_info(&self.cfg.consumer).await.map_err(|e| e.kind()) {
                Err(ConsumerInfoErrorKind::NotFound) => missing.push("consumer"),
                Err(ConsumerInfoErrorKind::StreamNotFound) => missing.push("events stream"),
                _ => {}
            },
            Err(e) if gone(&e) => missing.push("events stream"),
            Err(_) => {}
        }
        if matches!(self.js.get_stream(&self.cfg.dlq_stream).await, Err(e) if gone(&e)) {
            missing.push("dead-letter stream");
        }
        missing
    }

    /// Brings back whatever of the streams and the consumer is missing (deleted by someone, or a NATS
    /// store lost), continuing the events stream after the catalog's checkpoint; a loss is a security
    /// event, since only the server's credential may manage streams.
    pub(crate) async fn recover(&self) -> Result<Consumer, IngestError> {
        let missing = self.missing().await;
        let checkpoint = self.store.catalog().max_checkpoint().await.map_err(store::StoreError::from)?;
        let consumer = ensure_streams(&self.js, &self.cfg, checkpoint.max(0) as u64).await?;
        if !missing.is_empty() {
            let detail =
                format!("recreated: {} (continuing after stream sequence {checkpoint})", missing.join(", "));
            tracing::warn!(%detail, "security: JetStream objects Cordon needs were gone");
            self.metrics.add(
                "cordon_ingest_streams_recreated_total",
                "",
                HELP_RECREATED,
                missing.len() as u64,
            );
            self.metrics.add("cordon_security_events_total", "kind=\"stream_deleted\"", HELP_SECURITY, 1);
            let now = schemas::time::now_micros();
            if let Err(e) =
                self.store.catalog().security_event("", "ingest", "stream_deleted", &detail, now).await
            {
                tracing::error!(error = %e, "cannot record the stream_deleted security event");
            }
        }
        Ok(consumer)
    }
}
