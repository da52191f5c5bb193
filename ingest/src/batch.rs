//! The stages of one fetched batch, pipelined by [`Ingest::run`]: fetch, then decode and tag on the
//! store's CPU pool (`prepare_batch`), while the batch before it goes through dead letters, the commit
//! and the acks (`ingest_batch`).

use super::*;

impl Ingest {
    /// One fetch from the durable consumer.
    pub(crate) async fn fetch(&self, consumer: &Consumer) -> Fetched {
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
                return Fetched::Failed;
            }
        };
        let (mut msgs, mut failed) = (Vec::new(), false);
        while let Some(m) = batch.next().await {
            match m {
                Ok(m) => msgs.push(m),
                Err(e) => {
                    tracing::warn!(error = %e, "message error in fetch");
                    failed = true;
                }
            }
        }
        match (msgs.is_empty(), failed) {
            (false, _) => Fetched::Messages(msgs),
            (true, false) => Fetched::Empty,
            (true, true) => Fetched::Failed,
        }
    }

    /// Hands messages fetched ahead back to the bus at shutdown, for another process (or this one
    /// started again) to take at once rather than after the ack wait.
    pub(crate) async fn give_back(&self, msgs: &[Message]) {
        for m in msgs {
            let _ = m.ack_with(jetstream::AckKind::Nak(None)).await;
        }
        if let Err(e) = self.client.flush().await {
            tracing::warn!(error = %e, "cannot flush the naks; the messages come back after the ack wait");
        }
        tracing::info!(messages = msgs.len(), "messages fetched ahead handed back at shutdown");
    }

    /// The next fetch, decoded and tagged on the CPU pool when it brought messages.
    pub(crate) async fn next(self: &Arc<Self>, consumer: &Consumer) -> Next {
        match self.fetch(consumer).await {
            Fetched::Messages(msgs) => {
                let (first_seq, last_seq) = seq_range(&msgs);
                let span = tracing::info_span!("prepare_batch", messages = msgs.len(), first_seq, last_seq);
                let prepared = Arc::clone(self).prepare(&msgs).instrument(span).await;
                Next::Batch(Box::new(Batch { msgs, prepared }))
            }
            Fetched::Empty => Next::Empty,
            Fetched::Failed => Next::Failed,
        }
    }

    /// The stages of a fetched batch before its commit, decode and tag, on the store's CPU pool.
    async fn prepare(self: Arc<Self>, msgs: &[Message]) -> Result<Prepared, IngestError> {
        self.refresh_policies().await?;
        let inbound: Vec<Inbound> = msgs.iter().map(Inbound::from_message).collect();
        let store = Arc::clone(&self.store);
        let stages = move || {
            let (reg, received, started) = (&self.metrics, schemas::time::now_micros(), Instant::now());
            let mut decoded = tracing::debug_span!("decode", messages = inbound.len())
                .in_scope(|| self.decoder().decode(&inbound, received));
            let started = stage(reg, "decode", started);
            let tagged = tracing::debug_span!("tag", events = decoded.records())
                .in_scope(|| self.tag(&mut decoded.batches, received));
            stage(reg, "tag", started);
            Prepared { decoded, tagged }
        };
        let span = tracing::Span::current();
        Ok(store.run_cpu(move || span.in_scope(stages)).await?)
    }

    /// Commits a prepared batch, acks it once committed (or naks it for redelivery) and queues it
    /// for the analysers; false when it failed.
    pub(crate) async fn handle(
        &self,
        batch: Batch,
        work: &mpsc::Sender<Work>,
        backoff: &mut Backoff,
    ) -> bool {
        let Batch { msgs, prepared } = batch;
        let (first_seq, last_seq) = seq_range(&msgs);
        let span = tracing::info_span!("ingest_batch", messages = msgs.len(), first_seq, last_seq);
        let committed = async { self.commit_batch(msgs.len(), prepared?).await };
        match committed.instrument(span).await {
            Ok(analysis) => {
                backoff.reset();
                self.metrics.set_gauge("cordon_ingest_commit_failures", "", HELP_FAILURES, 0);
                for m in &msgs {
                    if let Err(e) = m.ack().await {
                        tracing::warn!(error = %e, "ack failed; the message will be redelivered and deduplicated");
                    }
                }
                // The acks leave before anything else can fail (the analysed mark covers the rest).
                if let Err(e) = self.client.flush().await {
                    tracing::warn!(error = %e, "cannot flush the acks; they are sent with what follows");
                }
                store::failpoint::hit("after_ack");
                // A full queue holds the loop back: the analysers set the pace.
                let _ = work.send(Work::Batch(Box::new(analysis))).await;
                true
            }
            Err(e) => {
                tracing::error!(error = %schemas::error_chain(&e), messages = msgs.len(), "commit failed; messages will be redelivered");
                self.metrics.add("cordon_ingest_commit_failures", "", HELP_FAILURES, 1);
                for m in &msgs {
                    let _ = m.ack_with(jetstream::AckKind::Nak(Some(backoff.current()))).await;
                }
                tokio::time::sleep(backoff.current()).await;
                backoff.grow();
                false
            }
        }
    }

    /// The stages of a prepared batch up to the commit: dead letters, commit. Returns once the
    /// batch is durable, with what the analysers need of it.
    async fn commit_batch(&self, messages: usize, p: Prepared) -> Result<Analysis, IngestError> {
        let Prepared { mut decoded, tagged } = p;
        let reg = &self.metrics;
        reg.add("cordon_ingest_messages_total", "", HELP_RECEIVED, messages as u64);
        reg.add("cordon_ingest_events_total", "", HELP_RECEIVED, decoded.events);
        let started = Instant::now();
        let dead_span = tracing::debug_span!("dead_letters", count = decoded.dead.len());
        self.dead_letters(&decoded).instrument(dead_span).await?;
        let started = stage(reg, "dead_letters", started);
        let batches = std::mem::take(&mut decoded.batches);
        let commit_span = tracing::debug_span!("commit", messages = batches.len());
        let outcome = self.store.commit(&self.cfg.consumer, batches).instrument(commit_span).await?;
        stage(reg, "commit", started);
        reg.add("cordon_ingest_stored_total", "", HELP_STORED, outcome.stored as u64);
        reg.add("cordon_ingest_duplicate_messages_total", "", HELP_DUP, outcome.duplicate_messages as u64);
        tracing::debug!(
            stored = outcome.stored,
            files = outcome.files,
            dup = outcome.duplicate_messages,
            "batch committed"
        );
        let alerts = self.quota_alerts(&decoded, schemas::time::now_micros());
        Ok(Analysis { tagged, alerts, records: outcome.records, commit_seq: outcome.commit_seq })
    }

    /// The decode stage as this ingest runs it: its subjects, limits, body cap and quotas.
    fn decoder(&self) -> Decoder<'_> {
        Decoder::new(&self.cfg.subjects, &self.cfg.limits, self.cfg.max_message_bytes)
            .with_quotas(&self.quotas)
    }

    /// Dead letters to their stream and the catalog, then counted (so a counted reject is always in
    /// the dead-letter stream); claims of another identity recorded as security events.
    async fn dead_letters(&self, decoded: &Decoded) -> Result<(), IngestError> {
        let (reg, catalog) = (&self.metrics, self.store.catalog());
        dlq::publish(&self.js, &self.cfg.subjects, &decoded.dead).await?;
        let now = schemas::time::now_micros();
        // The newest per tenant also go to the catalog, for operators (GET /api/v1/dead-letters).
        catalog.record_dead_letters(&dlq::rows(&decoded.dead, now)).await.map_err(store::StoreError::from)?;
        for d in &decoded.dead {
            reg.add("cordon_ingest_rejected_total", &format!("reason=\"{}\"", d.reason), HELP_REJECTED, 1);
        }
        for s in &decoded.security {
            let (t, a, kind, detail) = (&s.tenant, &s.agent, s.kind, &s.detail);
            tracing::warn!(tenant = %t, agent = %a, kind, %detail, "security: a message claims another identity");
            reg.add("cordon_security_events_total", &format!("kind=\"{kind}\""), HELP_SECURITY, 1);
            catalog.security_event(t, a, kind, detail, now).await.map_err(store::StoreError::from)?;
        }
        Ok(())
    }

    /// Events dropped over agents' quotas, counted once committed (a redelivered batch is refused by
    /// key then); an alert per flooding agent, at most once a minute.
    fn quota_alerts(&self, decoded: &Decoded, now: i64) -> Vec<(schemas::alert::Alert, Option<String>)> {
        let dropped: u64 = decoded.quota_drops.values().sum();
        if dropped == 0 {
            return Vec::new();
        }
        self.metrics.add("cordon_ingest_quota_dropped_events_total", "", HELP_QUOTA, dropped);
        let flooding = self.quotas.dropped(&decoded.quota_drops, Instant::now());
        flooding
            .into_iter()
            .map(|(t, a, total)| {
                tracing::warn!(tenant = %t, agent = %a, dropped = total, "agent over its ingest quota");
                (self.quotas.alert(&t, &a, total, now), None)
            })
            .collect()
    }
}

/// The stream sequence range of a fetched batch, for its spans.
fn seq_range(msgs: &[Message]) -> (u64, u64) {
    let seqs = msgs.iter().filter_map(|m| m.info().ok().map(|i| i.stream_sequence));
    seqs.fold((u64::MAX, 0), |(lo, hi), s| (lo.min(s), hi.max(s)))
}

/// A fetched batch decoded and tagged: what its commit takes.
pub(crate) struct Prepared {
    decoded: Decoded,
    tagged: tag::Tagged,
}

/// A fetched batch and what preparing it gave (an error naks it, as a failed commit does).
pub(crate) struct Batch {
    pub(crate) msgs: Vec<Message>,
    prepared: Result<Prepared, IngestError>,
}

/// What the loop has next.
pub(crate) enum Next {
    Batch(Box<Batch>),
    Empty,
    Failed,
}

/// What a fetch brought.
pub(crate) enum Fetched {
    Messages(Vec<Message>),
    /// Nothing within the fetch's wait.
    Empty,
    /// The fetch failed (a deleted consumer or stream answers with errors).
    Failed,
}
