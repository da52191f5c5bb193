//! Test fixtures shared by the store's tests and its callers' (not part of the API).

use crate::{MessageBatch, Store};
use schemas::decode::{Channel, Limits, decode_line};

/// Commits ECS event documents to the default tenant as one message `key`, decoded as ingest
/// decodes them (any event time accepted). Panics when an event does not decode or the commit
/// fails: it is for tests.
pub async fn commit_events(store: &Store, key: &str, events: &[serde_json::Value]) {
    store.commit("fixtures", vec![message(key, events)]).await.expect("a fixture commit");
}

/// ECS event documents as one message `key` to the default tenant, decoded as ingest decodes them
/// (any event time accepted). Panics when an event does not decode.
pub fn message(key: &str, events: &[serde_json::Value]) -> MessageBatch {
    let ch = Channel { tenant: "default", agent: "a", message_key: key, stream_seq: 1, received: 0 };
    let limits = Limits { max_skew_micros: i64::MAX, ..Limits::default() };
    let records = events
        .iter()
        .enumerate()
        .map(|(i, ev)| {
            decode_line(ev.to_string().as_bytes(), i + 1, &ch, &limits).expect("a fixture event decodes")
        })
        .collect();
    MessageBatch { key: key.into(), stream_seq: 1, records, rejected: 0, published: None }
}

/// Commits `per` process events of one host as message `k{c}`: event ids `e-{c}-{i}`, each with
/// the searchable tag `tag-e-{c}-{i}` in its command line.
pub async fn commit_tagged(store: &Store, c: usize, per: usize) {
    let docs: Vec<serde_json::Value> = (0..per)
        .map(|i| {
            serde_json::json!({"@timestamp": "2026-01-01T00:00:00Z", "host": {"name": "h"},
                "event": {"id": format!("e-{c}-{i}"), "category": "process"},
                "process": {"command_line": format!("run.exe tag-e-{c}-{i}")}})
        })
        .collect();
    commit_events(store, &format!("k{c}"), &docs).await;
}
