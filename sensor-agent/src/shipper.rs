//! One agent identity's path to JetStream: batch -> spool -> publish -> ack -> unspool.
//!
//! Batches get a `Nats-Msg-Id` of `<agent>:<boot>:<seq>` when they are made: `boot` is random per
//! process start and `seq` counts up, so a retry of the same batch is the same message to JetStream
//! and to ingest. JetStream's duplicate window is stream-wide, so another publisher that learns the
//! next ids (heartbeats carry them) could send them first and have this agent's batches acked as
//! duplicates and never stored. A duplicate ack for a batch this process had never sent is therefore
//! not a delivery: the batch is re-sent under a fresh id and counted in `preempted_ids` (ingest refuses
//! the impostor, whose id names an agent its subject does not).

use crate::spool::{Spool, SpoolError, SpooledBatch};
use async_nats::jetstream;
use schemas::subject::{SubjectKind, Subjects};
use schemas::wire::{self, Heartbeat};
use schemas::{AgentId, TenantId};
use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

/// Publishes in flight per shipper before acks are awaited (well under the client's limit).
const WINDOW: usize = 64;

/// Reissued sequence numbers a heartbeat carries, at most.
const MAX_REISSUED: usize = 256;

/// Who a shipper speaks for.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Tenant.
    pub tenant: TenantId,
    /// Agent id.
    pub agent: AgentId,
    /// Host name (a hint carried in heartbeats).
    pub host: String,
}

/// Shipper settings.
#[derive(Clone, Debug)]
pub struct ShipperConfig {
    /// Events per message.
    pub batch_size: usize,
    /// zstd-compress bodies.
    pub compress: bool,
    /// Spool bound in bytes.
    pub spool_max_bytes: u64,
    /// fsync spool writes.
    pub spool_fsync: bool,
    /// Detection at the edge: events are tagged (and blocked process starts terminated) before they
    /// are spooled.
    pub edge: Option<std::sync::Arc<crate::edge::Edge>>,
    /// Where each identity subscribes to its own command subject (with enforcement on).
    pub commands: Option<std::sync::Arc<crate::enforce::Inbox>>,
}

impl Default for ShipperConfig {
    fn default() -> Self {
        Self {
            batch_size: 100,
            compress: true,
            spool_max_bytes: 256 * 1024 * 1024,
            spool_fsync: true,
            edge: None,
            commands: None,
        }
    }
}

/// Counters since this process started.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Counters {
    /// Events handed to the shipper.
    pub events_in: u64,
    /// Events acknowledged by JetStream.
    pub events_acked: u64,
    /// Events dropped because the spool was full.
    pub events_dropped: u64,
    /// Batches acknowledged.
    pub batches_acked: u64,
    /// Acks JetStream marked as duplicates (a retry of a batch it already had).
    pub duplicate_acks: u64,
    /// Batches whose first send was acked as a duplicate (someone else had sent their id): re-sent
    /// under a new id.
    pub preempted_ids: u64,
    /// Spool files found corrupt at start.
    pub spool_corrupt: u64,
}

/// Shipping failures.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// JetStream did not take a batch (it stays spooled).
    #[error("publish failed: {0}")]
    Publish(String),
}

/// One identity's shipper.
#[derive(Debug)]
pub struct Shipper {
    id: Identity,
    subject: String,
    hb_subject: String,
    js: jetstream::Context,
    client: async_nats::Client,
    cfg: ShipperConfig,
    spool: Spool,
    pending: VecDeque<SpooledBatch>,
    /// The open batch (its capacity kept from batch to batch).
    buffer: Vec<u8>,
    zstd: wire::Compressor,
    buffered: u64,
    boot: u64,
    seq: u64,
    /// This boot's sequence numbers whose batches went out again under a new id (heartbeats say so).
    reissued: VecDeque<u64>,
    /// Local ids of batches sent at least once by this process, or found in the spool at start
    /// (those may have been sent before a crash, so a duplicate ack for them is a delivery).
    sent: std::collections::HashSet<u64>,
    /// Batches sealed but not spooled, while the shipper holds them ([`Shipper::hold`]).
    held: Option<Vec<Sealed>>,
    /// Counters.
    pub counters: Counters,
}

/// A sealed batch body (compressed when the shipper compresses), not yet spooled.
#[derive(Debug)]
pub struct Sealed {
    events: u64,
    compressed: bool,
    body: Vec<u8>,
}

impl Sealed {
    /// Events in it.
    pub fn events(&self) -> u64 {
        self.events
    }
}

impl Shipper {
    /// Opens the shipper, picking up what the spool in `spool_dir` still holds; with enforcement on,
    /// subscribes to the identity's command subject first.
    pub async fn open(
        client: async_nats::Client,
        subjects: &Subjects,
        id: Identity,
        cfg: ShipperConfig,
        spool_dir: &Path,
    ) -> Result<Self, ShipError> {
        if let Some(inbox) = &cfg.commands {
            let subject = subjects.subject(&id.tenant, &id.agent, SubjectKind::Command);
            inbox.subscribe(&client, subject).await.map_err(ShipError::Publish)?;
        }
        let dir = spool_dir.join(format!("{}.{}", id.tenant, id.agent));
        let (spool, left) = Spool::open(&dir, cfg.spool_max_bytes, cfg.spool_fsync)?;
        let counters = Counters { spool_corrupt: spool.corrupt, ..Counters::default() };
        let boot = u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().expect("8 bytes"));
        let sent = left.iter().map(|b| b.local).collect();
        Ok(Self {
            sent,
            subject: subjects.subject(&id.tenant, &id.agent, SubjectKind::Events),
            hb_subject: subjects.subject(&id.tenant, &id.agent, SubjectKind::Heartbeat),
            js: {
                // An ack slower than this counts as a failure: the batch stays spooled and is sent
                // again (the server deduplicates by message id), and the source keeps producing.
                let mut js = jetstream::new(client.clone());
                js.set_timeout(std::time::Duration::from_secs(2));
                js
            },
            client,
            id,
            cfg,
            spool,
            pending: left.into(),
            buffer: Vec::new(),
            zstd: wire::Compressor::new(),
            buffered: 0,
            boot: boot >> 1,
            seq: 0,
            reissued: VecDeque::new(),
            held: None,
            counters,
        })
    }

    /// Waits until everything published on this identity's connection has reached the server.
    pub async fn flush_connection(&self) {
        let _ = self.client.flush().await;
    }

    /// The identity.
    pub fn identity(&self) -> &Identity {
        &self.id
    }

    /// Events waiting in the spool (not yet acked), plus the open buffer.
    pub fn backlog(&self) -> u64 {
        self.pending.iter().map(|b| b.events).sum::<u64>() + self.buffered
    }

    /// Adds an event; a full buffer becomes a spooled batch.
    pub fn push(&mut self, event: &serde_json::Value) -> Result<(), ShipError> {
        let at = self.buffer.len();
        serde_json::to_writer(&mut self.buffer, event).expect("a Value serialises into memory");
        self.tag_written(at);
        self.buffered_one()
    }

    /// Adds an event already serialised (one JSON object, no newline), as the live sources queue
    /// them.
    pub fn push_line(&mut self, line: &[u8]) -> Result<(), ShipError> {
        let at = self.buffer.len();
        self.buffer.extend_from_slice(line);
        self.tag_written(at);
        self.buffered_one()
    }

    /// The edge reads the event written from `at`; one it tags is written again, with its tags.
    fn tag_written(&mut self, at: usize) {
        if let Some(edge) = &self.cfg.edge
            && let Some(tagged) = edge.tag(&self.id, &self.buffer[at..])
        {
            self.buffer.truncate(at);
            serde_json::to_writer(&mut self.buffer, &tagged).expect("a Value serialises into memory");
        }
    }

    /// Counts the event just written to the buffer; a full buffer becomes a spooled batch.
    fn buffered_one(&mut self) -> Result<(), ShipError> {
        self.counters.events_in += 1;
        self.buffer.push(b'\n');
        self.buffered += 1;
        if self.buffered as usize >= self.cfg.batch_size {
            self.seal()?;
        }
        Ok(())
    }

    /// The message ids of the batches waiting to be sent, oldest first.
    pub fn pending_ids(&self) -> Vec<String> {
        self.pending.iter().map(|b| b.msg_id.clone()).collect()
    }

    /// Turns the open buffer into a spooled batch (or a held one, while the shipper holds them).
    pub fn seal(&mut self) -> Result<(), ShipError> {
        if self.buffered == 0 {
            return Ok(());
        }
        let sealed = self.cut();
        match &mut self.held {
            Some(held) => {
                held.push(sealed);
                Ok(())
            }
            None => self.spool_sealed(sealed),
        }
    }

    /// The open buffer as a batch body (compressed when configured); the buffer starts again.
    fn cut(&mut self) -> Sealed {
        let events = std::mem::take(&mut self.buffered);
        let body = if self.cfg.compress {
            let body = self.zstd.compress(&self.buffer);
            self.buffer.clear();
            body
        } else {
            let room = self.buffer.capacity();
            std::mem::replace(&mut self.buffer, Vec::with_capacity(room))
        };
        Sealed { events, compressed: self.cfg.compress, body }
    }

    /// Spools a sealed batch under the next message id, to go out with the next drain.
    pub fn spool_sealed(&mut self, b: Sealed) -> Result<(), ShipError> {
        // A sequence number is used only by a batch that was spooled, so the server can take a
        // missing one for a batch removed on the way (a batch the full spool refused is counted in
        // `events_dropped` instead).
        let seq = self.seq + 1;
        let msg_id = wire::MsgKey { agent: self.id.agent.to_string(), boot: self.boot, seq }.to_string();
        match self.spool.write(&msg_id, b.events, b.compressed, b.body)? {
            Some(spooled) => {
                self.seq = seq;
                self.pending.push_back(spooled);
            }
            None => {
                self.counters.events_dropped += b.events;
                tracing::warn!(agent = %self.id.agent, events = b.events, "spool full: batch dropped");
            }
        }
        Ok(())
    }

    /// From now on sealed batches are kept, not spooled, until taken ([`Shipper::take_held`]): a
    /// run built before it starts (`simulate --prebuilt`). [`Shipper::release`] ends it.
    pub fn hold(&mut self) {
        self.held.get_or_insert_with(Vec::new);
    }

    /// Sealed batches are spooled again; returns those still held.
    pub fn release(&mut self) -> Vec<Sealed> {
        self.held.take().unwrap_or_default()
    }

    /// The batches sealed while held, oldest first.
    pub fn take_held(&mut self) -> Vec<Sealed> {
        self.held.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Publishes spooled batches until none is left or one fails (it then stays spooled).
    pub async fn drain(&mut self) -> Result<(), ShipError> {
        while !self.pending.is_empty() {
            let n = self.pending.len().min(WINDOW);
            let mut acks = Vec::with_capacity(n);
            let mut first = Vec::with_capacity(n);
            for b in self.pending.iter().take(n) {
                first.push(self.sent.insert(b.local));
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", b.msg_id.as_str());
                headers.insert(wire::HEADER_WIRE, wire::WIRE_VERSION);
                if b.compressed {
                    headers.insert(wire::HEADER_ENCODING, wire::ENCODING_ZSTD);
                }
                match self.js.publish_with_headers(self.subject.clone(), headers, b.body.clone().into()).await
                {
                    Ok(ack) => acks.push(ack),
                    Err(e) => {
                        acks.clear();
                        return Err(ShipError::Publish(e.to_string()));
                    }
                }
            }
            let mut failure = None;
            for (ack, first) in acks.into_iter().zip(first) {
                match ack.await {
                    Ok(a) if failure.is_none() && a.duplicate && first => {
                        let b = self.pending.pop_front().expect("one pending batch per ack");
                        self.resend_under_new_id(b)?;
                    }
                    Ok(a) if failure.is_none() => {
                        let b = self.pending.pop_front().expect("one pending batch per ack");
                        self.spool.remove(&b)?;
                        self.counters.events_acked += b.events;
                        self.counters.batches_acked += 1;
                        if a.duplicate {
                            self.counters.duplicate_acks += 1;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        failure.get_or_insert(e.to_string());
                    }
                }
            }
            if let Some(e) = failure {
                return Err(ShipError::Publish(e));
            }
        }
        Ok(())
    }

    /// A batch whose id someone else sent first: spooled again under the next id, to go out with
    /// the next window.
    fn resend_under_new_id(&mut self, b: SpooledBatch) -> Result<(), ShipError> {
        self.seq += 1;
        let msg_id =
            wire::MsgKey { agent: self.id.agent.to_string(), boot: self.boot, seq: self.seq }.to_string();
        tracing::warn!(agent = %self.id.agent, taken = %b.msg_id, new = %msg_id, "security: a batch's message id was sent first by someone else; re-sending under a new id");
        self.counters.preempted_ids += 1;
        if let Some(k) = wire::MsgKey::parse(&b.msg_id).filter(|k| k.boot == self.boot) {
            self.reissue(k.seq);
        }
        // Written under the new id before the old file goes, so a crash in between loses nothing
        // (the old id is then re-sent after the restart, and a duplicate ack for it counts as sent).
        let (events, compressed) = (b.events, b.compressed);
        let mut written = self.spool.write(&msg_id, events, compressed, b.body.clone())?;
        self.spool.remove(&b)?;
        if written.is_none() {
            written = self.spool.write(&msg_id, events, compressed, b.body)?;
        }
        match written {
            Some(nb) => self.pending.push_back(nb),
            None => {
                self.counters.events_dropped += events;
                self.reissue(self.seq);
            }
        }
        Ok(())
    }

    /// The highest sequence number of this boot below which every batch was acked: one below the
    /// oldest of this boot's batches still spooled.
    fn acked_through(&self) -> u64 {
        let oldest = self
            .pending
            .iter()
            .filter_map(|b| wire::MsgKey::parse(&b.msg_id))
            .filter(|k| k.boot == self.boot)
            .map(|k| k.seq)
            .min();
        oldest.map_or(self.seq, |s| s - 1)
    }

    /// Notes a sequence number of this boot that will never arrive under this agent's name.
    fn reissue(&mut self, seq: u64) {
        if self.reissued.len() == MAX_REISSUED {
            self.reissued.pop_front();
        }
        self.reissued.push_back(seq);
    }

    /// Seals and drains, retrying with backoff until everything is acked or `deadline` passes.
    pub async fn flush(&mut self, deadline: tokio::time::Instant) -> Result<(), ShipError> {
        self.seal()?;
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.drain().await {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() + backoff < deadline => {
                    tracing::warn!(agent = %self.id.agent, error = %e, "publish failed; batches stay spooled, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends a heartbeat with the counters (core NATS, best effort).
    pub async fn heartbeat(&self) {
        self.heartbeat_with(Vec::new(), None, false).await;
    }

    /// Sends a heartbeat with the counters and the live sources' health (core NATS, best effort);
    /// `stopping` on the last one before a deliberate stop.
    pub async fn heartbeat_with(
        &self,
        sources: Vec<wire::SourceHealth>,
        usage: Option<wire::AgentUsage>,
        stopping: bool,
    ) {
        let hb = Heartbeat {
            boot: self.boot,
            next_seq: self.seq + 1,
            events_in: self.counters.events_in,
            events_acked: self.counters.events_acked,
            events_spooled: self.backlog(),
            events_dropped: self.counters.events_dropped,
            spool_bytes: self.spool.bytes(),
            host: self.id.host.clone(),
            time: schemas::time::now_micros(),
            acked_through: self.acked_through(),
            stopping,
            usage,
            sources,
            reissued: self.reissued.iter().copied().collect(),
        };
        let body = serde_json::to_vec(&hb).expect("a heartbeat serialises");
        if let Err(e) = self.client.publish(self.hb_subject.clone(), body.into()).await {
            tracing::debug!(error = %e, "heartbeat not sent");
        }
    }
}
