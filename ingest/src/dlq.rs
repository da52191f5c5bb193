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
/// Raw bytes kept with a message refused over its agent's quota: a flood is refused message after
/// message, and its bodies are not what an operator needs to see (its count is), so each keeps a
/// sample only; this keeps the cost of refusing a flood off the other agents.
const QUOTA_RAW_CAP: usize = 512;

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

fn raw(bytes: &[u8], cap: usize) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(cap)]).into_owned()
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
            raw: raw(body, if reason == "over_quota" { QUOTA_RAW_CAP } else { RAW_CAP }),
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
            raw: raw(bytes, RAW_CAP),
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

/// Why a message on `agent`'s event subject cannot be that agent's, as (security event kind,
/// detail): a message id in the agent form naming another agent (an attempt to pre-empt that
/// agent's next id in JetStream's stream-wide duplicate window; the victim re-sends under a new
/// id), or a JetStream reply (a publish acknowledgement or API answer) that another client had
/// delivered here by naming this subject as the reply subject of its own publish, which the events
/// stream then captures (nats-server issues 4225 and 8274). Agents always send message ids.
pub(crate) fn not_from_agent(
    msg_id: Option<&str>,
    agent: &str,
    payload: &[u8],
) -> Option<(&'static str, String)> {
    if let Some(claimed) = msg_id.and_then(schemas::wire::MsgKey::parse).filter(|k| k.agent != agent) {
        let id = msg_id.unwrap_or_default();
        return Some((
            "msg_id_mismatch",
            format!("message id {id} claims agent {} on {agent}'s subject", claimed.agent),
        ));
    }
    if msg_id.is_none() && is_jetstream_reply(payload) {
        return Some((
            "reply_injection",
            format!(
                "a JetStream reply arrived on {agent}'s event subject: another client named it as its reply subject"
            ),
        ));
    }
    None
}

/// Whether `payload` is one JSON object of the shape JetStream answers with: a publish
/// acknowledgement (`stream`, `seq`, `duplicate`, `domain`), an error, or a typed API response.
fn is_jetstream_reply(payload: &[u8]) -> bool {
    let Ok(serde_json::Value::Object(o)) = serde_json::from_slice::<serde_json::Value>(payload.trim_ascii())
    else {
        return false;
    };
    let typed = o.get("type").and_then(|t| t.as_str()).is_some_and(|t| t.starts_with("io.nats."));
    let ack = o.contains_key("stream")
        && (o.contains_key("seq") || o.contains_key("error"))
        && o.keys().all(|k| {
            matches!(
                k.as_str(),
                "stream" | "seq" | "duplicate" | "domain" | "error" | "batch" | "count" | "val"
            )
        });
    typed || ack
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jetstream_replies_and_claimed_ids_are_not_the_agents() {
        let ack = br#"{"stream":"CORDON_EVENTS","seq":27}"#;
        assert_eq!(not_from_agent(None, "v", ack).map(|r| r.0), Some("reply_injection"));
        let dup = br#"{"stream":"CORDON_EVENTS","seq":3,"duplicate":true}"#;
        assert_eq!(not_from_agent(None, "v", dup).map(|r| r.0), Some("reply_injection"));
        let api = br#"{"type":"io.nats.jetstream.api.v1.stream_info_response","config":{}}"#;
        assert_eq!(not_from_agent(None, "v", api).map(|r| r.0), Some("reply_injection"));
        // An event that merely has a `stream` field, and anything with the agent's own id, pass.
        let event = br#"{"stream":"x","seq":1,"event":{"kind":"event"}}"#;
        assert_eq!(not_from_agent(None, "v", event), None);
        assert_eq!(not_from_agent(Some("v:1:1"), "v", ack), None);
        assert_eq!(not_from_agent(Some("a:1:1"), "v", b"{}").map(|r| r.0), Some("msg_id_mismatch"));
    }
}
