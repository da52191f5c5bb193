//! The decode stage: fetched messages -> one [`MessageBatch`] per message of validated records, the
//! dead letters of what was refused, and the security events among them.
//!
//! It knows nothing of NATS: it reads [`Inbound`] messages (the consume loop makes them from
//! JetStream's, a test or a benchmark from anything), so it can be fed and measured on its own.
//! Per message: the identity (tenant, agent) comes from the subject, the authenticated channel; a
//! message that cannot be that agent's is refused as a security event; the body is size-capped and
//! decompressed with a cap; the agent's quota admits it or refuses it whole; then each NDJSON line
//! is decoded by [`decode_line`], and a rejected line is dead-lettered while the good lines of the
//! same message are kept.

use crate::dlq::{self, DeadLetter};
use crate::quota::Quotas;
use schemas::decode::{Channel, Limits, decode_line};
use schemas::subject::{SubjectKind, Subjects};
use schemas::wire;
use std::collections::HashMap;
use store::MessageBatch;

/// A fetched message, as the decode stage reads it.
#[derive(Clone, Debug, Default)]
pub struct Inbound {
    /// The subject it was published on.
    pub subject: String,
    /// Its `Nats-Msg-Id` header (`<agent>:<boot>:<seq>` from Cordon's agents).
    pub msg_id: Option<String>,
    /// Its wire-format version header ([`wire::HEADER_WIRE`]).
    pub wire: Option<String>,
    /// Its body encoding header ([`wire::HEADER_ENCODING`]).
    pub encoding: Option<String>,
    /// The body.
    pub payload: bytes::Bytes,
    /// The JetStream stream sequence.
    pub stream_seq: u64,
    /// When JetStream stored it, microseconds since the epoch.
    pub published: Option<i64>,
}

impl Inbound {
    /// The decode stage's view of a JetStream message.
    pub fn from_message(m: &async_nats::jetstream::Message) -> Self {
        let header = |name: &str| m.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned());
        let info = m.info().ok();
        Self {
            subject: m.subject.to_string(),
            msg_id: header("Nats-Msg-Id"),
            wire: header(wire::HEADER_WIRE),
            encoding: header(wire::HEADER_ENCODING),
            payload: m.payload.clone(),
            stream_seq: info.as_ref().map_or(0, |i| i.stream_sequence),
            published: info.map(|i| (i.published.unix_timestamp_nanos() / 1000) as i64),
        }
    }
}

/// A message that claims another identity, or a line that does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityEvent {
    /// The channel's tenant.
    pub tenant: String,
    /// The channel's agent.
    pub agent: String,
    /// `identity_mismatch`, `msg_id_mismatch` or `reply_injection`.
    pub kind: &'static str,
    /// What was claimed.
    pub detail: String,
}

/// What the decode stage made of a fetch.
#[derive(Debug, Default)]
pub struct Decoded {
    /// One per message, in fetch order (refused messages with no records and their count rejected).
    pub batches: Vec<MessageBatch>,
    /// Everything refused, for the dead-letter stream.
    pub(crate) dead: Vec<DeadLetter>,
    /// Claims of another identity.
    pub security: Vec<SecurityEvent>,
    /// Events refused over their agent's quota, per (tenant, agent).
    pub quota_drops: HashMap<(String, String), u64>,
    /// Lines read (decoded or rejected).
    pub events: u64,
}

impl Decoded {
    /// Each dead letter's reason and line number (`None`: the whole message), in order.
    pub fn refused(&self) -> impl Iterator<Item = (&'static str, Option<usize>)> + '_ {
        self.dead.iter().map(|d| (d.reason, d.line))
    }

    /// Records decoded, over all messages.
    pub fn records(&self) -> usize {
        self.batches.iter().map(|b| b.records.len()).sum()
    }

    /// A whole message refused: its dead letter and its empty batch (so its key is committed and a
    /// redelivery is not refused twice).
    fn refuse(&mut self, m: &Inbound, who: &Identity, reason: &'static str, detail: String, events: usize) {
        self.dead.push(DeadLetter::message(
            &who.tenant,
            &who.agent,
            m.stream_seq,
            reason,
            detail,
            &m.payload,
        ));
        self.batches.push(MessageBatch {
            key: who.key.clone(),
            stream_seq: m.stream_seq,
            records: Vec::new(),
            rejected: events,
            published: None,
        });
    }
}

/// Who sent a message, and the keys its events are stored under.
struct Identity {
    tenant: String,
    agent: String,
    /// The batch key, scoped by the channel so an agent cannot pre-empt another's batch ids.
    key: String,
    /// `boot:seq` from the message id, or `s<stream seq>`: event ids derive from it.
    message_key: String,
}

/// The decode stage's settings.
#[derive(Clone, Copy, Debug)]
pub struct Decoder<'a> {
    subjects: &'a Subjects,
    limits: &'a Limits,
    max_message_bytes: usize,
    quotas: Option<&'a Quotas>,
}

impl<'a> Decoder<'a> {
    /// A decoder for this subject layout, these line limits and this body cap, without quotas.
    pub fn new(subjects: &'a Subjects, limits: &'a Limits, max_message_bytes: usize) -> Self {
        Self { subjects, limits, max_message_bytes, quotas: None }
    }

    /// The same, admitting each message through the agents' quotas.
    pub(crate) fn with_quotas(self, quotas: &'a Quotas) -> Self {
        Self { quotas: Some(quotas), ..self }
    }

    /// Decodes a fetch; `received` (microseconds) is stamped on every record.
    pub fn decode(&self, msgs: &[Inbound], received: i64) -> Decoded {
        let mut out = Decoded { batches: Vec::with_capacity(msgs.len()), ..Decoded::default() };
        for m in msgs {
            self.message(m, received, &mut out);
        }
        out
    }

    fn message(&self, m: &Inbound, received: i64, out: &mut Decoded) {
        let Some(who) = self.identify(m, out) else { return };
        let body = match wire::decode_body(
            m.wire.as_deref(),
            m.encoding.as_deref(),
            &m.payload,
            self.max_message_bytes,
        ) {
            Ok(b) => b,
            Err(e) => return out.refuse(m, &who, wire_reason(&e), e.to_string(), 1),
        };
        let lines = wire::lines(&body).count() as u64;
        if let Some(q) = self.quotas
            && let Err(over) =
                q.admit(&who.tenant, &who.agent, lines, m.payload.len() as u64, std::time::Instant::now())
        {
            *out.quota_drops.entry((who.tenant.clone(), who.agent.clone())).or_insert(0) += lines;
            return out.refuse(m, &who, "over_quota", over.0, lines as usize);
        }
        self.lines(m, &who, &body, received, out);
    }

    /// The channel's identity, or `None` when the message was refused for it.
    fn identify(&self, m: &Inbound, out: &mut Decoded) -> Option<Identity> {
        let seq = m.stream_seq;
        let (tenant, agent) = match self.subjects.parse(&m.subject) {
            Ok((t, a, SubjectKind::Events)) => (t.to_string(), a.to_string()),
            Ok(_) | Err(_) => {
                let who = Identity {
                    tenant: "_".into(),
                    agent: "_".into(),
                    key: format!("s{seq}"),
                    message_key: String::new(),
                };
                out.refuse(m, &who, "bad_subject", m.subject.clone(), 1);
                return None;
            }
        };
        let key = match &m.msg_id {
            Some(id) => format!("{tenant}/{agent}/{id}"),
            None => format!("{tenant}/{agent}/s{seq}"),
        };
        let message_key = match m.msg_id.as_deref().and_then(wire::MsgKey::parse) {
            Some(k) if k.agent == agent => format!("{}:{}", k.boot, k.seq),
            _ => format!("s{seq}"),
        };
        let who = Identity { tenant, agent, key, message_key };
        // A message that cannot be the subject's agent's (see [`dlq::not_from_agent`]).
        if let Some((kind, detail)) = dlq::not_from_agent(m.msg_id.as_deref(), &who.agent, &m.payload) {
            let event = SecurityEvent { tenant: who.tenant.clone(), agent: who.agent.clone(), kind, detail };
            out.security.push(event.clone());
            let who = Identity { key: format!("{}/{}/s{seq}", who.tenant, who.agent), ..who };
            out.refuse(m, &who, kind, event.detail, 1);
            return None;
        }
        Some(who)
    }

    /// Decodes a message's lines; the good ones become its batch, the others dead letters.
    fn lines(&self, m: &Inbound, who: &Identity, body: &[u8], received: i64, out: &mut Decoded) {
        let ch = Channel {
            tenant: &who.tenant,
            agent: &who.agent,
            message_key: &who.message_key,
            stream_seq: m.stream_seq,
            received,
        };
        let mut records = Vec::new();
        let mut rejected = 0;
        for (line_no, line) in wire::lines(body) {
            out.events += 1;
            match decode_line(line, line_no, &ch, self.limits) {
                Ok(r) => records.push(r),
                Err(reject) => {
                    rejected += 1;
                    if reject.is_security() {
                        out.security.push(SecurityEvent {
                            tenant: who.tenant.clone(),
                            agent: who.agent.clone(),
                            kind: "identity_mismatch",
                            detail: reject.to_string(),
                        });
                    }
                    let (t, a) = (&who.tenant, &who.agent);
                    out.dead.push(DeadLetter::line(t, a, m.stream_seq, &who.key, line_no, &reject, line));
                }
            }
        }
        let published = m.published;
        out.batches.push(MessageBatch {
            key: who.key.clone(),
            stream_seq: m.stream_seq,
            records,
            rejected,
            published,
        });
    }
}

/// The dead-letter reason for a body that cannot be read.
fn wire_reason(e: &wire::WireError) -> &'static str {
    match e {
        wire::WireError::TooLarge { .. } => "message_too_large",
        wire::WireError::Version(_) => "bad_version",
        wire::WireError::Encoding(_) => "bad_encoding",
        wire::WireError::Corrupt(_) => "corrupt_body",
    }
}

#[cfg(test)]
mod tests;
