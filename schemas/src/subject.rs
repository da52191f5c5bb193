//! The NATS subject layout: `<prefix>.<tenant>.<agent>.<kind>`.
//!
//! The subject is the authenticated channel: with per-agent credentials an agent may publish only under
//! its own `<prefix>.<tenant>.<agent>.>`, so ingest takes tenant and agent from here, never from a payload.

use crate::ids::{AgentId, IdError, TenantId};

/// The servers of a NATS URL list (`nats://a:4222,nats://b:4222`, as the `nats` tool and
/// nats-server's own clients take it), trimmed, empty entries left out. A client connects to any of
/// them and learns the cluster's other members from the one it reaches.
pub fn nats_urls(list: &str) -> Vec<&str> {
    list.split(',').map(str::trim).filter(|u| !u.is_empty()).collect()
}

/// What a message on a subject carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubjectKind {
    /// A batch of events (NDJSON).
    Events,
    /// An agent heartbeat (one JSON object).
    Heartbeat,
    /// A command to the agent (one JSON object, [`crate::wire::Command`]).
    Command,
    /// The agent asks for its tenant's signed policy (request/reply; the server answers).
    Policy,
    /// The agent asks for the server's signed rule bundle (request/reply; the body is the digest
    /// it has, and an empty answer means it is current).
    Rules,
    /// The agent asks for its approved response commands (request/reply; the answer is a JSON
    /// array of [`crate::response::command::SignedCommand`]).
    Orders,
    /// The agent hands in its signed result of a response command (request/reply; the answer
    /// says whether it was stored).
    Result,
}

impl SubjectKind {
    fn token(self) -> &'static str {
        match self {
            SubjectKind::Events => "events",
            SubjectKind::Heartbeat => "hb",
            SubjectKind::Command => "cmd",
            SubjectKind::Policy => "policy",
            SubjectKind::Rules => "rules",
            SubjectKind::Orders => "orders",
            SubjectKind::Result => "result",
        }
    }
}

/// Why a subject was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubjectError {
    /// Not `<prefix>.<tenant>.<agent>.<kind>`.
    #[error("subject {0:?} is not <prefix>.<tenant>.<agent>.<kind>")]
    Shape(String),
    /// A token is not a valid id.
    #[error("subject {subject:?} has an invalid id")]
    Id {
        /// The subject.
        subject: String,
        /// The cause.
        #[source]
        source: IdError,
    },
}

/// The subject namespace of one deployment.
#[derive(Clone, Debug)]
pub struct Subjects {
    prefix: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Self { prefix: "cordon".to_owned() }
    }
}

impl Subjects {
    /// A namespace under `prefix` (itself a subject token, e.g. `cordon`).
    pub fn new(prefix: &str) -> Result<Self, IdError> {
        TenantId::new(prefix)?;
        Ok(Self { prefix: prefix.to_owned() })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The subject an agent publishes `kind` on.
    pub fn subject(&self, tenant: &TenantId, agent: &AgentId, kind: SubjectKind) -> String {
        format!("{}.{}.{}.{}", self.prefix, tenant, agent, kind.token())
    }

    /// The wildcard that covers every agent's `kind` messages.
    pub fn filter(&self, kind: SubjectKind) -> String {
        format!("{}.*.*.{}", self.prefix, kind.token())
    }

    /// The dead-letter subject for rejects from one channel.
    pub fn dead_letter(&self, tenant: &str, agent: &str) -> String {
        format!("{}-dlq.{}.{}", self.prefix, tenant, agent)
    }

    /// The wildcard of all dead letters.
    pub fn dead_letter_filter(&self) -> String {
        format!("{}-dlq.>", self.prefix)
    }

    /// Splits a subject into tenant, agent and kind.
    pub fn parse(&self, subject: &str) -> Result<(TenantId, AgentId, SubjectKind), SubjectError> {
        let shape = || SubjectError::Shape(subject.to_owned());
        let mut parts = subject.split('.');
        let (Some(p), Some(t), Some(a), Some(k), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(shape());
        };
        if p != self.prefix {
            return Err(shape());
        }
        let kind = match k {
            "events" => SubjectKind::Events,
            "hb" => SubjectKind::Heartbeat,
            "cmd" => SubjectKind::Command,
            "policy" => SubjectKind::Policy,
            "rules" => SubjectKind::Rules,
            "orders" => SubjectKind::Orders,
            "result" => SubjectKind::Result,
            _ => return Err(shape()),
        };
        let id_err = |source| SubjectError::Id { subject: subject.to_owned(), source };
        Ok((TenantId::new(t).map_err(id_err)?, AgentId::new(a).map_err(id_err)?, kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nats_url_list_is_split_and_trimmed() {
        assert_eq!(nats_urls("nats://a:1"), ["nats://a:1"]);
        assert_eq!(
            nats_urls(" nats://a:1, tls://b:2 ,,nats://c:3,"),
            ["nats://a:1", "tls://b:2", "nats://c:3"]
        );
        assert!(nats_urls(" , ").is_empty());
    }

    #[test]
    fn round_trip() {
        let s = Subjects::default();
        let t = TenantId::new("acme").unwrap();
        let a = AgentId::new("win-dakeqi").unwrap();
        let subj = s.subject(&t, &a, SubjectKind::Events);
        assert_eq!(subj, "cordon.acme.win-dakeqi.events");
        let (t2, a2, k) = s.parse(&subj).unwrap();
        assert_eq!((t2, a2, k), (t.clone(), a.clone(), SubjectKind::Events));
        assert!(s.parse("cordon.acme.a.b.events").is_err());
        assert!(s.parse("other.acme.a.events").is_err());
        assert_eq!(s.parse("cordon.acme.a.cmd").unwrap().2, SubjectKind::Command);
        assert_eq!(s.subject(&t, &a, SubjectKind::Command), "cordon.acme.win-dakeqi.cmd");
        assert!(s.parse("cordon.acme.a.exec").is_err());
    }
}
