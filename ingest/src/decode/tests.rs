//! The decode stage fed without NATS: every refusal reason, the good lines kept beside the bad, and
//! event ids stable across a redelivery.

use super::{Decoder, Inbound};
use crate::quota::{QuotaConfig, Quotas};
use schemas::decode::Limits;
use schemas::fields::col;
use schemas::subject::Subjects;
use schemas::wire;

const RECEIVED: i64 = 1_700_000_000_000_000;

fn event(host: &str, n: usize) -> String {
    format!(
        r#"{{"@timestamp":"2026-12-04T10:00:{:02}Z","event":{{"kind":"event","category":["process"],"action":"start"}},"host":{{"name":"{host}"}},"process":{{"pid":{},"name":"sh"}}}}"#,
        n % 60,
        100 + n
    )
}

/// A message from `agent` of tenant `acme` carrying `lines`, with a Cordon agent's message id
/// (`<agent>:<boot>:<seq>`).
fn message(agent: &str, seq: u64, lines: &[String]) -> Inbound {
    Inbound {
        subject: format!("cordon.acme.{agent}.events"),
        msg_id: Some(format!("{agent}:1:{seq}")),
        wire: Some(wire::WIRE_VERSION.to_owned()),
        payload: lines.join("\n").into_bytes().into(),
        stream_seq: seq,
        published: Some(RECEIVED - 1_000),
        ..Inbound::default()
    }
}

fn decode(msgs: &[Inbound]) -> super::Decoded {
    let (subjects, limits) = (Subjects::default(), Limits::default());
    Decoder::new(&subjects, &limits, 64 * 1024).decode(msgs, RECEIVED)
}

#[test]
fn good_lines_are_kept_beside_the_bad_and_bear_their_channel() {
    let lines = vec![event("web-1", 1), "{not json".to_owned(), event("web-1", 2), "[1,2]".to_owned()];
    let out = decode(&[message("a1", 7, &lines)]);
    assert_eq!(out.events, 4);
    assert_eq!(out.batches.len(), 1);
    let b = &out.batches[0];
    assert_eq!((b.key.as_str(), b.stream_seq, b.rejected), ("acme/a1/a1:1:7", 7, 2));
    assert_eq!(b.published, Some(RECEIVED - 1_000));
    assert_eq!(b.records.len(), 2);
    for r in &b.records {
        assert_eq!((r.tenant(), r.host()), ("acme", "web-1"));
        assert_eq!(r.cell(col::AGENT_ID).as_str(), Some("a1"));
        assert_eq!(r.cell(col::STREAM_SEQ), &schemas::Cell::Int(7));
    }
    let refused: Vec<_> = out.refused().collect();
    assert_eq!(refused, [("invalid_json", Some(1)), ("not_an_object", Some(3))]);
    assert!(out.security.is_empty());
}

#[test]
fn a_redelivered_message_decodes_to_the_same_event_ids() {
    let m = message("a1", 9, &[event("h", 1), event("h", 2)]);
    let ids = |d: &super::Decoded| -> Vec<String> {
        d.batches[0]
            .records
            .iter()
            .map(|r| r.cell(col::EVENT_ID).as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let (first, again) = (decode(std::slice::from_ref(&m)), decode(&[m]));
    assert_eq!(ids(&first).len(), 2);
    assert_ne!(ids(&first)[0], ids(&first)[1]);
    assert_eq!(ids(&first), ids(&again));
}

#[test]
fn whole_messages_are_refused_for_their_subject_identity_or_body() {
    let good = event("h", 1);
    let bad_subject = Inbound {
        subject: "cordon.acme.a1.heartbeat.x".into(),
        ..message("a1", 1, std::slice::from_ref(&good))
    };
    let other_agent =
        Inbound { msg_id: Some("a2:1:2".into()), ..message("a1", 2, std::slice::from_ref(&good)) };
    let huge = message("a1", 3, &vec![good.clone(); 2_000]);
    let bad_version = Inbound { wire: Some("99".into()), ..message("a1", 4, std::slice::from_ref(&good)) };
    let corrupt = Inbound {
        encoding: Some(wire::ENCODING_ZSTD.into()),
        ..message("a1", 5, std::slice::from_ref(&good))
    };
    let zstd = Inbound {
        encoding: Some(wire::ENCODING_ZSTD.into()),
        payload: wire::compress(good.as_bytes()).into(),
        ..message("a1", 6, &[])
    };
    let out = decode(&[bad_subject, other_agent, huge, bad_version, corrupt, zstd]);
    let reasons: Vec<_> = out.refused().map(|(r, _)| r).collect();
    assert_eq!(
        reasons,
        ["bad_subject", "msg_id_mismatch", "message_too_large", "bad_version", "corrupt_body"]
    );
    assert!(out.refused().all(|(_, line)| line.is_none()));
    // Every message has its batch, so a redelivery of a refused one is refused by its key.
    let keys: Vec<_> = out.batches.iter().map(|b| b.key.as_str()).collect();
    assert_eq!(
        keys,
        ["s1", "acme/a1/s2", "acme/a1/a1:1:3", "acme/a1/a1:1:4", "acme/a1/a1:1:5", "acme/a1/a1:1:6"]
    );
    assert_eq!(out.records(), 1, "the zstd body decodes");
    assert_eq!(out.security.len(), 1);
    assert_eq!((out.security[0].agent.as_str(), out.security[0].kind), ("a1", "msg_id_mismatch"));
}

#[test]
fn a_line_claiming_another_agent_is_a_security_event_and_its_neighbours_are_kept() {
    let forged =
        r#"{"@timestamp":"2026-12-04T10:00:00Z","cordon":{"agent":{"id":"a2"}},"host":{"name":"h"}}"#;
    let out = decode(&[message("a1", 1, &[event("h", 1), forged.to_owned(), event("h", 2)])]);
    assert_eq!(out.records(), 2);
    assert_eq!(out.refused().collect::<Vec<_>>(), [("identity_mismatch", Some(1))]);
    assert_eq!(out.security.len(), 1);
    assert_eq!(out.security[0].kind, "identity_mismatch");
    assert!(out.security[0].detail.contains("a2"), "{}", out.security[0].detail);
}

#[test]
fn a_message_over_its_agents_quota_is_refused_whole_and_counted() {
    let quotas = Quotas::new(QuotaConfig { events_per_sec: 1.0, bytes_per_sec: 1e9, burst_secs: 3.0 });
    let (subjects, limits) = (Subjects::default(), Limits::default());
    let decoder = Decoder::new(&subjects, &limits, 1 << 20).with_quotas(&quotas);
    let two: Vec<String> = (0..2).map(|n| event("h", n)).collect();
    let out =
        decoder.decode(&[message("a1", 1, &two), message("a1", 2, &two), message("a2", 3, &two)], RECEIVED);
    assert_eq!(out.records(), 4, "the first message and the other agent's are kept");
    assert_eq!(out.refused().collect::<Vec<_>>(), [("over_quota", None)]);
    assert_eq!(out.batches[1].rejected, 2);
    assert_eq!(out.quota_drops.get(&("acme".to_owned(), "a1".to_owned())), Some(&2));
}
