//! The process source's events as typed ECS documents, serialised once into the line the shipper
//! sends. Built as `serde_json::Value`s they cost a map and a key string per field, which made
//! allocation the source's largest user-space cost at a hundred starts a second.

use serde::ser::{SerializeMap, Serializer};
use std::sync::Arc;

/// A process start or end (`event.category: process`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProcessEvent {
    /// When the agent saw it, microseconds (RFC 3339 on the wire).
    #[serde(rename = "@timestamp", serialize_with = "rfc3339")]
    pub at: i64,
    /// What happened.
    pub event: Meta,
    /// The host (`host.os.type: linux`).
    pub host: Host,
    /// The process.
    pub process: Process,
    /// The process's user, also at the top level where SigmaHQ's Linux rules read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
}

/// A start or an end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `start`: the process exec'd.
    Start,
    /// `end`: it exited.
    End,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::End => "end",
        }
    }
}

/// The event's `event` object: its action, and why fields are missing when they are.
#[derive(Clone, Debug)]
pub struct Meta {
    /// Start or end.
    pub action: Action,
    /// Why the process's fields are missing (it ended before `/proc` could be read).
    pub reason: Option<&'static str>,
}

impl serde::Serialize for Meta {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let action = self.action.as_str();
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("category", "process")?;
        m.serialize_entry("action", action)?;
        m.serialize_entry("type", &[action])?;
        m.serialize_entry("kind", "event")?;
        m.serialize_entry("dataset", "cordon.process")?;
        if let Some(r) = self.reason {
            m.serialize_entry("reason", r)?;
        }
        m.end()
    }
}

/// The host: its name, and Linux.
#[derive(Clone, Debug)]
pub struct Host {
    /// `host.name`.
    pub name: Arc<str>,
}

impl serde::Serialize for Host {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("name", &*self.name)?;
        m.serialize_entry("os", &Linux)?;
        m.end()
    }
}

/// `host.os`: `{"type": "linux", "family": "linux"}`.
struct Linux;

impl serde::Serialize for Linux {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("type", "linux")?;
        m.serialize_entry("family", "linux")?;
        m.end()
    }
}

/// The process: what is known of it (a process gone before `/proc` was read has its pid, entity id
/// and parent only).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Process {
    /// Process id.
    pub pid: u32,
    /// Identity across pid reuse (see [`super::procfs::entity_id`]).
    pub entity_id: String,
    /// The executable's file name (else `comm`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Arguments joined by spaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_line: Option<String>,
    /// When it started (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// The executable's path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    /// The executable's hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<Sha256>,
    /// Working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    /// Its user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// Its parent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
    /// Exit code (128 + the signal, for a process a signal ended), on ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// The signal sent to the parent at exit, when not `SIGCHLD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<u32>,
}

/// `process.hash`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Sha256 {
    /// Hex SHA-256 of the executable.
    pub sha256: String,
}

/// A user: uid and name.
#[derive(Clone, Debug, serde::Serialize)]
pub struct User {
    /// The uid, as text (ECS `user.id`).
    pub id: String,
    /// The name in `/etc/passwd`, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `process.parent`: its pid, and its identity where the source knows it.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Parent {
    /// Parent's process id.
    pub pid: u32,
    /// See [`Process`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    /// See [`Process`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// See [`Process`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_line: Option<String>,
    /// See [`Process`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
}

fn rfc3339<S: Serializer>(micros: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&schemas::time::format_micros(*micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_serialises_as_the_ecs_the_server_decodes() {
        let e = ProcessEvent {
            at: 1_780_000_000_000_000,
            event: Meta { action: Action::End, reason: None },
            host: Host { name: "h".into() },
            process: Process {
                pid: 7,
                entity_id: "e".into(),
                exit_code: Some(137),
                parent: Some(Parent { pid: 1, ..Parent::default() }),
                ..Process::default()
            },
            user: None,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "@timestamp": "2026-05-28T20:26:40.000000Z",
                "event": {"category": "process", "action": "end", "type": ["end"], "kind": "event",
                          "dataset": "cordon.process"},
                "host": {"name": "h", "os": {"type": "linux", "family": "linux"}},
                "process": {"pid": 7, "entity_id": "e", "exit_code": 137, "parent": {"pid": 1}},
            })
        );
        let ch = schemas::decode::Channel {
            tenant: "t",
            agent: "a",
            message_key: "k",
            stream_seq: 1,
            received: e.at,
        };
        let line = serde_json::to_vec(&e).unwrap();
        let rec = schemas::decode::decode_line(&line, 1, &ch, &schemas::decode::Limits::default()).unwrap();
        assert_eq!((rec.host(), rec.time()), ("h", e.at));
    }
}
