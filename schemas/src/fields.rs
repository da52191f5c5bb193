//! The one definition of an event's fields.
//!
//! Every field Cordon understands is a row of [`FIELDS`]: its ECS path on the wire, its column in the
//! lake, its type, and how the full-text index treats it. The JSON decoder, the Arrow schema, the
//! tantivy schema and the API's JSON output are all derived from this table, so they cannot drift apart.

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use std::sync::{Arc, OnceLock};

/// The value type of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// UTF-8 text.
    Str,
    /// A signed integer (ports, pids, sizes, sequence numbers).
    Int,
    /// A point in time, microseconds since the Unix epoch, UTC. On the wire: RFC 3339 or epoch millis.
    Time,
    /// true / false.
    Bool,
    /// A list of strings (a single string on the wire is taken as a list of one).
    List,
}

/// How the full-text index treats a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Search {
    /// Not indexed; the lake (SQL) still has it.
    None,
    /// Exact, case-preserved keyword: `host:WIN-DAKEQI`.
    Host,
    /// Exact keyword, lowercased: `user:administrator`.
    User,
    /// Exact IP address: `ip:10.20.1.15` (all IP columns share it).
    Ip,
    /// Exact hex digest, lowercased: `hash:...` (md5, sha1, sha256 of processes and files).
    Hash,
    /// Exact domain, lowercased: `domain:example.com` (DNS questions, destinations, URL hosts).
    Domain,
    /// Exact event category: `kind:process`.
    Kind,
    /// Tokenised text: command lines, URLs, paths, names, raw log lines (the default search field).
    Text,
    /// Exact ATT&CK technique id: `technique:T1486`.
    Technique,
}

/// Who sets a field's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The sender (agent or shipper) sets it.
    Sender,
    /// Ingest sets it; a sender's value is checked (identity) or overwritten (bookkeeping).
    Ingest,
}

/// One field of the normalised endpoint event.
#[derive(Debug)]
pub struct FieldDef {
    /// The lake column name (SQL-friendly, `_`-separated).
    pub column: &'static str,
    /// The ECS path on the wire (`.`-separated, nested JSON objects).
    pub path: &'static str,
    /// The value type.
    pub kind: Kind,
    /// The full-text index role.
    pub search: Search,
    /// Who sets it.
    pub origin: Origin,
}

const fn f(column: &'static str, path: &'static str, kind: Kind, search: Search) -> FieldDef {
    FieldDef { column, path, kind, search, origin: Origin::Sender }
}

const fn ingest(column: &'static str, path: &'static str, kind: Kind) -> FieldDef {
    FieldDef { column, path, kind, search: Search::None, origin: Origin::Ingest }
}

use Kind::{Bool, Int, List, Str, Time};

/// All fields, in lake column order. Append only: readers of older files fill new columns with nulls.
pub static FIELDS: &[FieldDef] = &[
    f("event_id", "event.id", Str, Search::None),
    ingest("tenant", "organization.id", Str),
    // Cordon's own identity of the agent, in its own field: `agent.*` describes the shipper (Beats,
    // Elastic Agent) and is kept as sent, never read as an identity claim.
    ingest("agent_id", "cordon.agent.id", Str),
    f("time", "@timestamp", Time, Search::None),
    ingest("ingested", "event.ingested", Time),
    ingest("time_skewed", "cordon.time_skewed", Bool),
    ingest("stream_seq", "cordon.stream_seq", Int),
    f("event_kind", "event.category", Str, Search::Kind),
    f("event_action", "event.action", Str, Search::Text),
    f("event_outcome", "event.outcome", Str, Search::None),
    f("event_severity", "event.severity", Int, Search::None),
    f("host_name", "host.name", Str, Search::Host),
    f("host_ip", "host.ip", List, Search::Ip),
    f("host_os", "host.os.family", Str, Search::None),
    f("host_group", "cordon.host_group", Str, Search::None),
    f("user_name", "user.name", Str, Search::User),
    f("user_domain", "user.domain", Str, Search::None),
    f("process_pid", "process.pid", Int, Search::None),
    f("process_entity_id", "process.entity_id", Str, Search::None),
    f("process_name", "process.name", Str, Search::Text),
    f("process_executable", "process.executable", Str, Search::Text),
    f("process_command_line", "process.command_line", Str, Search::Text),
    f("process_hash_md5", "process.hash.md5", Str, Search::Hash),
    f("process_hash_sha1", "process.hash.sha1", Str, Search::Hash),
    f("process_hash_sha256", "process.hash.sha256", Str, Search::Hash),
    f("process_exit_code", "process.exit_code", Int, Search::None),
    f("parent_pid", "process.parent.pid", Int, Search::None),
    f("parent_entity_id", "process.parent.entity_id", Str, Search::None),
    f("parent_name", "process.parent.name", Str, Search::Text),
    f("parent_executable", "process.parent.executable", Str, Search::Text),
    f("parent_command_line", "process.parent.command_line", Str, Search::Text),
    f("source_ip", "source.ip", Str, Search::Ip),
    f("source_port", "source.port", Int, Search::None),
    f("destination_ip", "destination.ip", Str, Search::Ip),
    f("destination_port", "destination.port", Int, Search::None),
    f("destination_domain", "destination.domain", Str, Search::Domain),
    f("network_transport", "network.transport", Str, Search::None),
    f("network_direction", "network.direction", Str, Search::None),
    f("network_protocol", "network.protocol", Str, Search::None),
    f("dns_question_name", "dns.question.name", Str, Search::Domain),
    f("dns_resolved_ip", "dns.resolved_ip", List, Search::Ip),
    f("url_full", "url.full", Str, Search::Text),
    f("url_domain", "url.domain", Str, Search::Domain),
    f("http_method", "http.request.method", Str, Search::None),
    f("http_status", "http.response.status_code", Int, Search::None),
    f("user_agent", "user_agent.original", Str, Search::Text),
    f("file_path", "file.path", Str, Search::Text),
    f("file_name", "file.name", Str, Search::Text),
    f("file_original_path", "file.original.path", Str, Search::Text),
    f("file_size", "file.size", Int, Search::None),
    f("file_hash_md5", "file.hash.md5", Str, Search::Hash),
    f("file_hash_sha1", "file.hash.sha1", Str, Search::Hash),
    f("file_hash_sha256", "file.hash.sha256", Str, Search::Hash),
    f("file_signed", "file.code_signature.exists", Bool, Search::None),
    f("registry_path", "registry.path", Str, Search::Text),
    f("registry_value", "registry.value", Str, Search::Text),
    f("registry_data", "registry.data.strings", Str, Search::Text),
    f("logon_type", "winlog.logon.type", Str, Search::None),
    f("service_name", "service.name", Str, Search::Text),
    f("dll_path", "dll.path", Str, Search::Text),
    f("threat_technique_id", "threat.technique.id", List, Search::Technique),
    f("threat_tactic_name", "threat.tactic.name", List, Search::None),
    f("rule_name", "rule.name", Str, Search::Text),
    f("policy_tier", "cordon.policy_tier", Str, Search::None),
    f("message", "message", Str, Search::Text),
    ingest("extra", "cordon.extra", Str),
];

/// Index of a column in [`FIELDS`], resolved at compile time by the tests and at first use here.
pub fn column_index(column: &str) -> Option<usize> {
    FIELDS.iter().position(|d| d.column == column)
}

/// Positions of the columns ingest and the store touch directly.
pub mod col {
    /// `event_id`
    pub const EVENT_ID: usize = 0;
    /// `tenant`
    pub const TENANT: usize = 1;
    /// `agent_id`
    pub const AGENT_ID: usize = 2;
    /// `time`
    pub const TIME: usize = 3;
    /// `ingested`
    pub const INGESTED: usize = 4;
    /// `time_skewed`
    pub const TIME_SKEWED: usize = 5;
    /// `stream_seq`
    pub const STREAM_SEQ: usize = 6;
    /// `event_kind`
    pub const EVENT_KIND: usize = 7;
    /// `host_name`
    pub const HOST_NAME: usize = 11;
    /// `host_group`
    pub const HOST_GROUP: usize = 14;
    /// `threat_technique_id`
    pub const THREAT_TECHNIQUE_ID: usize = 60;
    /// `threat_tactic_name`
    pub const THREAT_TACTIC_NAME: usize = 61;
    /// `rule_name`
    pub const RULE_NAME: usize = 62;
    /// `policy_tier`
    pub const POLICY_TIER: usize = 63;
    /// `extra`, the catch-all for fields Cordon does not know.
    pub const EXTRA: usize = 65;
}

fn arrow_type(kind: Kind) -> DataType {
    match kind {
        Kind::Str => DataType::Utf8,
        Kind::Int => DataType::Int64,
        Kind::Time => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Kind::Bool => DataType::Boolean,
        Kind::List => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
    }
}

/// The Arrow schema of the `events` lake table, derived from [`FIELDS`].
pub fn lake_schema() -> Arc<Schema> {
    static SCHEMA: OnceLock<Arc<Schema>> = OnceLock::new();
    let schema = SCHEMA.get_or_init(|| {
        let fields: Vec<Field> = FIELDS
            .iter()
            .map(|d| {
                let required = matches!(d.column, "event_id" | "tenant" | "agent_id" | "time");
                Field::new(d.column, arrow_type(d.kind), !required)
            })
            .collect();
        Arc::new(Schema::new(fields))
    });
    Arc::clone(schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_positions_match_the_table() {
        let expect = [
            (col::EVENT_ID, "event_id"),
            (col::TENANT, "tenant"),
            (col::AGENT_ID, "agent_id"),
            (col::TIME, "time"),
            (col::INGESTED, "ingested"),
            (col::TIME_SKEWED, "time_skewed"),
            (col::STREAM_SEQ, "stream_seq"),
            (col::EVENT_KIND, "event_kind"),
            (col::HOST_NAME, "host_name"),
            (col::HOST_GROUP, "host_group"),
            (col::THREAT_TECHNIQUE_ID, "threat_technique_id"),
            (col::THREAT_TACTIC_NAME, "threat_tactic_name"),
            (col::RULE_NAME, "rule_name"),
            (col::POLICY_TIER, "policy_tier"),
            (col::EXTRA, "extra"),
        ];
        for (i, name) in expect {
            assert_eq!(FIELDS[i].column, name);
        }
        assert_eq!(FIELDS.len(), col::EXTRA + 1, "extra must stay last");
    }

    #[test]
    fn columns_and_paths_are_unique_and_no_path_is_a_prefix_of_another() {
        for (i, a) in FIELDS.iter().enumerate() {
            for b in &FIELDS[i + 1..] {
                assert_ne!(a.column, b.column);
                assert_ne!(a.path, b.path);
                let (pa, pb) = (format!("{}.", a.path), format!("{}.", b.path));
                assert!(!pb.starts_with(&pa) && !pa.starts_with(&pb), "{} vs {}", a.path, b.path);
            }
        }
    }

    #[test]
    fn schema_has_every_field() {
        let schema = lake_schema();
        assert_eq!(schema.fields().len(), FIELDS.len());
        assert_eq!(schema.field(col::TIME).data_type(), &arrow_type(Kind::Time));
    }
}
