//! # schemas: Cordon's shared vocabulary
//!
//! The bottom of the dependency graph: every other crate speaks these types, and this crate does no
//! I/O and knows nothing of tokio, NATS, Parquet or HTTP.
//!
//! - [`fields::FIELDS`]: the one definition of the normalised endpoint event (ECS paths, lake columns,
//!   types, full-text roles). [`fields::lake_schema`] derives the Arrow schema of the lake from it.
//! - [`record::Record`]: a decoded event; [`decode::decode_line`] turns a wire line into one, with a
//!   precise [`decode::Reject`] otherwise.
//! - [`wire`]: the NDJSON batch format, its headers, and agent heartbeats.
//! - [`subject::Subjects`]: the NATS subject layout `<prefix>.<tenant>.<agent>.<kind>`; identity comes
//!   from the subject, never from the payload.
//! - [`ids`]: identifier newtypes.
//! - [`access`]: API roles and the permissions they grant.
//! - [`signed`]: what the server signs for agents (policies, rule bundles), and how agents verify it.
//! - [`response`]: response rules, the open instruction set agents carry out, with its JSON Schema.
//!
//! ```
//! use schemas::decode::{decode_line, Channel, Limits};
//! let ch = Channel { tenant: "default", agent: "ws-1", message_key: "1:1", stream_seq: 1, received: 0 };
//! let rec = decode_line(br#"{"@timestamp":0,"host":{"name":"ws-1"}}"#, 0, &ch, &Limits::default()).unwrap();
//! assert_eq!(rec.host(), "ws-1");
//! ```

pub mod access;
pub mod alert;
pub mod attack;
pub mod decode;
pub mod fields;
pub mod hash;
pub mod ids;
pub mod metrics;
pub mod policy;
pub mod record;
pub mod response;
pub mod signed;
pub mod subject;
pub mod time;
pub mod wire;

pub use decode::{Channel, Limits, Reject, decode_line};
pub use fields::{FIELDS, FieldDef, Kind, Search, lake_schema};
pub use ids::{AgentId, TenantId, sanitize_token};
pub use record::{Cell, Record};
pub use subject::{SubjectKind, Subjects};

/// An error and its causes, outermost first, joined by `: ` (for log lines, where a bare
/// `Display` would say "parquet error in FILE" and hide the full disk beneath it).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        // Some errors already print their cause: say it once.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}
