//! The dead-letter stream: every rejected line or message, with its reason, so nothing is lost.
//!
//! Each dead letter is a JSON object on `<prefix>-dlq.<tenant>.<agent>` with a `Nats-Msg-Id` derived
//! from its origin, so a redelivered message does not dead-letter the same line twice.

use crate::{IngestError, js_err};
use async_nats::jetstream;
use schemas::decode::Reject;
use schemas::subject::Subjects;

/// Raw bytes kept with a dead letter, at most.
const RAW_CAP: usize = 16 * 1024;

/// One rejected line or message.
#[derive(Debug, serde::Serialize)]
pub(crate) struct DeadLetter {
    pub tenant: String,
    pub agent: String,
    pub stream_seq: u64,
    pub reason: &'static str,
    pub detail: String,
    pub line: Option<usize>,
    /// The raw bytes, lossily decoded and cut at `RAW_CAP`.
    pub raw: String,
    pub raw_bytes: usize,
    #[serde(skip)]
    pub id: String,
}

fn raw(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(RAW_CAP)]).into_owned()
}

impl DeadLetter {
    pub(crate) fn message(
        tenant: &str,
        agent: &str,
        seq: u64,
        reason: &'static str,
        detail: String,
        body: &[u8],
    ) -> Self {
        Self {
            tenant: tenant.to_owned(),
            agent: agent.to_owned(),
            stream_seq: seq,
            reason,
            detail,
            line: None,
            raw: raw(body),
            raw_bytes: body.len(),
            id: format!("dlq:s{seq}"),
        }
    }

    pub(crate) fn line(
        tenant: &str,
        agent: &str,
        seq: u64,
        key: &str,
        line: usize,
        reject: &Reject,
        bytes: &[u8],
    ) -> Self {
        Self {
            tenant: tenant.to_owned(),
            agent: agent.to_owned(),
            stream_seq: seq,
            reason: reject.reason(),
            detail: reject.to_string(),
            line: Some(line),
            raw: raw(bytes),
            raw_bytes: bytes.len(),
            id: format!("dlq:{key}:{line}"),
        }
    }
}

/// The catalog's copy of dead letters (what `GET /api/v1/dead-letters` shows).
pub(crate) fn rows(dead: &[DeadLetter], now: i64) -> Vec<store::catalog::DeadLetterRow> {
    dead.iter()
        .map(|d| store::catalog::DeadLetterRow {
            id: d.id.clone(),
            tenant: d.tenant.clone(),
            agent_id: d.agent.clone(),
            time: now,
            stream_seq: d.stream_seq as i64,
            line: d.line.map(|l| l as i64),
            reason: d.reason.to_owned(),
            detail: d.detail.clone(),
            raw: d.raw.clone(),
            raw_bytes: d.raw_bytes as i64,
        })
        .collect()
}

/// Publishes dead letters and waits until JetStream has them all.
pub(crate) async fn publish(
    js: &jetstream::Context,
    subjects: &Subjects,
    dead: &[DeadLetter],
) -> Result<(), IngestError> {
    // Await in windows well under the client's in-flight publish limit.
    for chunk in dead.chunks(512) {
        let mut acks = Vec::with_capacity(chunk.len());
        for d in chunk {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", d.id.as_str());
            let body = serde_json::to_vec(d).expect("a dead letter serialises");
            let subject = subjects.dead_letter(&d.tenant, &d.agent);
            let ack = js
                .publish_with_headers(subject, headers, body.into())
                .await
                .map_err(|e| js_err("publish dead letter")(&e))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(|e| js_err("dead letter ack")(&e))?;
        }
    }
    Ok(())
}
