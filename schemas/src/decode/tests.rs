//! Decoder tests, and the two-pass reference the single pass is checked against.

use super::*;
use crate::fields::{FIELDS, Origin};
use crate::record::cell_from_json;
use serde_json::Map;

/// The previous two-pass decoder (parse into a `Value`, then take each field's path): the
/// reference the single pass is checked against.
fn reference_decode(
    line: &[u8],
    line_no: usize,
    ch: &Channel<'_>,
    limits: &Limits,
) -> Result<Record, Reject> {
    if line.len() > limits.max_line_bytes {
        return Err(Reject::TooLarge { len: line.len(), max: limits.max_line_bytes });
    }
    let text = std::str::from_utf8(line).map_err(|e| Reject::InvalidUtf8 { offset: e.valid_up_to() })?;
    let value: Value = serde_json::from_str(text).map_err(|e| Reject::InvalidJson(e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(Reject::NotAnObject);
    };
    if depth(&map) > limits.max_depth {
        return Err(Reject::TooDeep { max: limits.max_depth });
    }

    let mut rec = crate::record::RecordBuilder::default();
    for (i, def) in FIELDS.iter().enumerate() {
        let Some(v) = take_path(&mut map, def.path) else { continue };
        if def.origin == Origin::Ingest {
            let actual = match i {
                col::TENANT => ch.tenant,
                col::AGENT_ID => ch.agent,
                _ => continue, // bookkeeping fields are always overwritten
            };
            let claimed = match &v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if !v.is_null() && claimed != actual {
                return Err(Reject::IdentityMismatch { path: def.path, claimed, actual: actual.to_owned() });
            }
            continue;
        }
        let (v, whole) = crate::record::one_of_list(def.kind, v);
        rec.set(
            i,
            cell_from_json(def.kind, v).map_err(|reason| Reject::BadField { path: def.path, reason })?,
        );
        if let Some(w) = whole {
            crate::record::insert_path(&mut map, def.path, w);
        }
    }

    finish(rec, map, line_no, ch, limits)
}

/// Removes the value at a dotted path, pruning objects the removal leaves empty.
fn take_path(map: &mut Map<String, Value>, path: &str) -> Option<Value> {
    match path.split_once('.') {
        None => map.remove(path),
        Some((head, rest)) => {
            // A flat dotted key (`"host.name": ...`, as some shippers send) counts too.
            if let Some(v) = map.remove(path) {
                return Some(v);
            }
            let Value::Object(child) = map.get_mut(head)? else { return None };
            let v = take_path(child, rest);
            if child.is_empty() {
                map.remove(head);
            }
            v
        }
    }
}

fn depth(map: &Map<String, Value>) -> usize {
    let mut max = 1;
    let mut stack: Vec<(&Value, usize)> = map.values().map(|v| (v, 2)).collect();
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Object(m) => {
                max = max.max(d);
                stack.extend(m.values().map(|c| (c, d + 1)));
            }
            Value::Array(a) => {
                max = max.max(d);
                stack.extend(a.iter().map(|c| (c, d + 1)));
            }
            _ => {}
        }
    }
    max
}

use serde_json::json;

fn ch() -> Channel<'static> {
    Channel {
        tenant: "acme",
        agent: "win-dakeqi",
        message_key: "1:7",
        stream_seq: 42,
        received: 1_000_000_000_000_000,
    }
}

fn decode(v: Value) -> Result<Record, Reject> {
    decode_text(&v.to_string(), &Limits::default())
}

/// Decodes `line` with every [`Parser`], which must agree; the default parser's answer.
fn decode_text(line: &str, limits: &Limits) -> Result<Record, Reject> {
    let [a, b] = Parser::ALL.map(|p| decode_line_with(p, line.as_bytes(), 3, &ch(), limits));
    same(line, &a, &b, "serde_json vs sonic-rs");
    if Parser::default() == Parser::ALL[0] { a } else { b }
}

/// Two decodes of `line` agree: equal records (the catch-all object compared as JSON: serde_json's
/// key order depends on a feature other crates may enable), or rejects for the same reason.
fn same(line: &str, a: &Result<Record, Reject>, b: &Result<Record, Reject>, what: &str) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => {
            let extra = |r: &Record| -> Option<Value> {
                r.cell(crate::fields::col::EXTRA).as_str().map(|s| serde_json::from_str(s).unwrap())
            };
            assert_eq!(extra(a), extra(b), "{what}: {line}");
            let (mut a, mut b) = (a.clone(), b.clone());
            a.set(crate::fields::col::EXTRA, Cell::Null);
            b.set(crate::fields::col::EXTRA, Cell::Null);
            assert_eq!(a, b, "{what}: {line}");
            true
        }
        (Err(a), Err(b)) => {
            assert_eq!(a.reason(), b.reason(), "{what}: {line}: {a} vs {b}");
            false
        }
        _ => panic!("{what}: {line}: {a:?} vs {b:?}"),
    }
}

/// A tiny deterministic generator (no dependency for one test).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn random_value(r: &mut Lcg, kind: crate::fields::Kind) -> Value {
    use crate::fields::Kind;
    match (kind, r.next(8)) {
        (_, 0) => Value::Null,
        (_, 1) => json!({"nested": r.next(5)}),
        (Kind::Int, 2) => json!(format!("{}", r.next(1000))),
        (Kind::Int, 3) => json!("x1"),
        (Kind::Int, _) => json!(r.next(100_000)),
        (Kind::Time, 2) => json!(1_000_000_000_000u64 + r.next(1_000_000)),
        (Kind::Time, 3) => json!("yesterday"),
        (Kind::Time, _) => json!(format!("2001-09-09T01:4{}:40Z", r.next(10))),
        (Kind::Bool, 2) => json!("true"),
        (Kind::Bool, _) => json!(r.next(2) == 0),
        (Kind::List, 2) => json!(format!("10.0.0.{}", r.next(255))),
        (Kind::List, 3) => json!([1, {"a": 2}]),
        (Kind::List, _) => json!(["a", format!("b{}", r.next(9)), 7]),
        (Kind::Str, 2) => json!(r.next(1000)),
        (Kind::Str, 3) => json!(2.5),
        (Kind::Str, _) => json!(format!("v\"al\\ue {}", r.next(1000))),
    }
}

/// Puts `v` at `path` nested, or flat at the top, or flat below the first segment.
fn place(doc: &mut Map<String, Value>, path: &str, v: Value, how: u64) {
    let parts: Vec<&str> = path.split('.').collect();
    if how == 0 || parts.len() == 1 {
        doc.entry(path.to_owned()).or_insert(v);
        return;
    }
    let split = if how == 1 { 1 } else { parts.len() - 1 };
    let mut cur = doc;
    for p in &parts[..split] {
        let next = cur.entry((*p).to_owned()).or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(m) = next else { return };
        cur = m;
    }
    cur.entry(parts[split..].join(".")).or_insert(v);
}

#[test]
fn single_pass_decodes_exactly_as_the_two_pass_reference() {
    let mut r = Lcg(7);
    let limits = Limits { max_depth: 6, ..Limits::default() };
    let (mut ok, mut rejected) = (0, 0);
    for _ in 0..4000 {
        let mut doc = Map::new();
        let mut used = std::collections::HashSet::new();
        for _ in 0..r.next(14) {
            let i = r.next(FIELDS.len() as u64) as usize;
            let def = &FIELDS[i];
            if !used.insert(def.path) {
                continue;
            }
            let v = match (i, def.origin) {
                (col::TENANT, _) => json!(if r.next(4) == 0 { "other" } else { "acme" }),
                (col::AGENT_ID, _) => json!(if r.next(4) == 0 { "evil" } else { "win-dakeqi" }),
                (_, Origin::Ingest) => json!(r.next(9)),
                _ => {
                    // Mostly well-formed: objects where a scalar belongs are rarer.
                    let v = random_value(&mut r, def.kind);
                    if v.is_object() && r.next(3) != 0 { json!(null) } else { v }
                }
            };
            place(&mut doc, def.path, v, r.next(4));
        }
        // Unknown keys at the top and inside known objects, some deep.
        for _ in 0..r.next(4) {
            let deep = (0..r.next(8)).fold(json!(r.next(3)), |acc, _| json!({"d": acc}));
            match r.next(3) {
                0 => place(&mut doc, &format!("custom{}", r.next(5)), deep, 0),
                1 => place(&mut doc, &format!("host.vendor{}", r.next(3)), deep, 3),
                _ => place(&mut doc, &format!("process.parent.x{}", r.next(3)), deep, 3),
            }
        }
        let line = Value::Object(doc).to_string();
        let n = r.next(5) as usize;
        let want = reference_decode(line.as_bytes(), n, &ch(), &limits);
        for p in Parser::ALL {
            let got = decode_line_with(p, line.as_bytes(), n, &ch(), &limits);
            match same(&line, &got, &want, p.name()) {
                true => ok += 1,
                false => rejected += 1,
            }
        }
    }
    assert!(ok > 1000 && rejected > 1000, "the generator covers both outcomes: {ok} ok, {rejected} rejected");
}

#[test]
fn decodes_nested_and_flat_ecs() {
    let rec = decode(json!({
        "@timestamp": "2001-09-09T01:46:40Z",
        "event": {"category": "process", "action": "start"},
        "host": {"name": "WIN-DAKEQI", "ip": ["10.20.1.15"]},
        "process.pid": "4242",
        "process": {"command_line": "cmd.exe /c whoami", "parent": {"pid": 1}},
    }))
    .unwrap();
    assert_eq!(rec.get("process_pid"), Some(&Cell::Int(4242)));
    assert_eq!(rec.get("parent_pid"), Some(&Cell::Int(1)));
    assert_eq!(rec.get("host_ip"), Some(&Cell::List(vec!["10.20.1.15".into()])));
    assert_eq!(rec.get("event_id"), Some(&Cell::Str("win-dakeqi:1:7:3".into())));
    assert_eq!(rec.get("tenant"), Some(&Cell::Str("acme".into())));
    assert_eq!(rec.get("stream_seq"), Some(&Cell::Int(42)));
    assert_eq!(rec.get("time_skewed"), Some(&Cell::Bool(false)));
    assert_eq!(rec.get("extra"), Some(&Cell::Null));
}

#[test]
fn unknown_fields_are_kept_and_round_trip() {
    let input = json!({
        "@timestamp": "2001-09-09T01:46:40Z",
        "host": {"name": "h", "vendor_field": {"x": 1}},
        "custom": "kept",
    });
    let rec = decode(input).unwrap();
    let extra: Value = serde_json::from_str(rec.get("extra").unwrap().as_str().unwrap()).unwrap();
    assert_eq!(extra, json!({"host": {"vendor_field": {"x": 1}}, "custom": "kept"}));
    let out = rec.to_ecs_json();
    assert_eq!(out["host"]["vendor_field"]["x"], 1);
    assert_eq!(out["host"]["name"], "h");
    assert_eq!(out["custom"], "kept");
}

#[test]
fn identity_claims_must_match_the_channel() {
    let err = decode(json!({"cordon": {"agent": {"id": "web-north"}}, "@timestamp": 1})).unwrap_err();
    assert!(err.is_security(), "{err}");
    assert!(decode(json!({"cordon": {"agent": {"id": "win-dakeqi"}}, "@timestamp": 1})).is_ok());
    let err = decode(json!({"organization": {"id": "other"}})).unwrap_err();
    assert_eq!(err.reason(), "identity_mismatch");
}

#[test]
fn bad_lines_get_precise_reasons() {
    for p in Parser::ALL {
        bad_lines_get_precise_reasons_from(p);
    }
}

fn bad_lines_get_precise_reasons_from(p: Parser) {
    let l = Limits::default();
    let reason = |b: &[u8]| decode_line_with(p, b, 0, &ch(), &l).unwrap_err().reason();
    assert_eq!(reason(b"{not json"), "invalid_json");
    assert_eq!(reason(b"{\"a\":1} x"), "invalid_json");
    assert_eq!(reason(b"{\"a\":1"), "invalid_json");
    assert_eq!(reason(b""), "invalid_json");
    assert_eq!(reason(b"[1,2]"), "not_an_object");
    assert_eq!(reason(b"{\"a\":\"\xff\"}"), "invalid_utf8");
    assert_eq!(reason(&vec![b' '; l.max_line_bytes + 1]), "too_large");
    let deep = format!("{}1{}", "{\"a\":".repeat(40), "}".repeat(40));
    assert_eq!(reason(deep.as_bytes()), "too_deep");
    assert_eq!(reason(br#"{"process":{"pid":"abc"}}"#), "bad_field");
    assert_eq!(reason(br#"{"@timestamp":"tuesday"}"#), "bad_field");
    assert_eq!(reason(br#"{"host":{"name":{"x":1}}}"#), "bad_field");
}

#[test]
fn far_or_missing_times_are_flagged_and_kept() {
    let rec = decode(json!({"@timestamp": "1999-01-01T00:00:00Z"})).unwrap();
    assert_eq!(rec.get("time_skewed"), Some(&Cell::Bool(true)));
    assert_eq!(rec.time(), crate::time::parse_rfc3339_micros("1999-01-01T00:00:00Z").unwrap());
    let rec = decode(json!({"message": "no time"})).unwrap();
    assert_eq!(rec.time(), ch().received);
    assert_eq!(rec.get("time_skewed"), Some(&Cell::Bool(true)));
}

/// Winlogbeat 8 output as it ships: lists where ECS allows them, nanosecond timestamps, and `agent.*`
/// describing the beat. It is stored, not dead-lettered; the beat's `agent.id` is data, not a claim.
#[test]
fn beats_events_are_stored_with_their_lists_and_their_shipper() {
    let beat = json!({
        "@timestamp": "2026-11-03T10:00:00.123456789Z",
        "agent": {"id": "8b5c2e7e-1f0a-4c8e-9d3b-0f6a1c2d3e4f", "name": "WS-7", "type": "winlogbeat", "version": "8.15.0"},
        "ecs": {"version": "8.0.0"},
        "event": {"category": ["process"], "type": ["start"], "code": "1", "kind": "event", "module": "sysmon",
                  "action": "Process Create (rule: ProcessCreate)"},
        "host": {"name": "ws-7", "ip": ["10.0.0.7", "fe80::1"], "os": {"type": "windows", "family": "windows"}},
        "process": {"pid": 480, "executable": "C:\\Windows\\System32\\cmd.exe", "command_line": "cmd /c whoami"},
        "related": {"user": ["svc"]},
        "threat": {"technique": {"id": ["T1059.003"]}}
    });
    let rec = decode(beat).unwrap();
    assert_eq!(
        rec.get("event_kind").and_then(|c| c.as_str()),
        Some("process"),
        "a one-item list is its item"
    );
    assert_eq!(rec.time(), 1_793_700_000_123_456, "nanoseconds are read to the microsecond");
    assert_eq!(rec.get("agent_id").and_then(|c| c.as_str()), Some("win-dakeqi"), "identity from the channel");
    let out = rec.to_ecs_json();
    assert_eq!(out["agent"]["id"], "8b5c2e7e-1f0a-4c8e-9d3b-0f6a1c2d3e4f", "the shipper's agent.id is kept");
    assert_eq!(out["agent"]["type"], "winlogbeat");
    assert_eq!(out["cordon"]["agent"]["id"], "win-dakeqi");
    assert_eq!(out["host"]["ip"], json!(["10.0.0.7", "fe80::1"]));
    assert_eq!(out["event"]["type"], json!(["start"]));
    // A list of several: the first item is the column's, the whole list comes back as sent.
    let two = decode(json!({"@timestamp": 1, "event": {"category": ["network", "authentication"]}})).unwrap();
    assert_eq!(two.get("event_kind").and_then(|c| c.as_str()), Some("network"));
    assert_eq!(two.to_ecs_json()["event"]["category"], json!(["network", "authentication"]));
    // A list whose items are not values of the field is still refused, precisely.
    let err = decode(json!({"@timestamp": 1, "process": {"pid": ["x", "y"]}})).unwrap_err();
    assert_eq!(err.reason(), "bad_field");
}

/// Numbers at the edges of what each parser reads as an integer: both parsers agree on every one.
#[test]
fn numbers_at_the_edges_decode_alike_on_both_parsers() {
    let l = Limits::default();
    let mut ok = 0;
    // Not "-0": serde_json reads a negative zero, sonic-rs a zero, which differ only as text
    // ("-0.0" and "0.0") where a number is given for a text field.
    for n in [
        "-5",
        "0",
        "1.0",
        "2.5",
        "1e3",
        "-1e3",
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "1e400",
    ] {
        for line in [
            format!(r#"{{"@timestamp":1,"process":{{"pid":{n}}}}}"#),
            format!(r#"{{"@timestamp":{n}}}"#),
            format!(r#"{{"@timestamp":1,"host":{{"name":{n}}},"custom":[{n},{{"x":{n}}}]}}"#),
            format!(r#"{{"@timestamp":1,"network":{{"direction":"in"}},"host":{{"ip":[{n}]}}}}"#),
        ] {
            ok += usize::from(decode_text(&line, &l).is_ok());
        }
    }
    assert!(ok > 10, "most of them decode: {ok}");
    assert_eq!(
        decode_text(r#"{"@timestamp":1,"process":{"pid":-5}}"#, &l).unwrap().get("process_pid"),
        Some(&Cell::Int(-5))
    );
}

/// A line nested as deep as the line limit allows is rejected for its depth or as invalid JSON by
/// both parsers (each stops at a fixed depth), not a crashed thread; brackets inside strings are
/// only text.
#[test]
fn lines_nested_to_the_size_limit_are_rejected_not_recursed_through() {
    let l = Limits::default();
    for open in ["[", "{\"a\":"] {
        let close = if open == "[" { "]" } else { "}" };
        let n = l.max_line_bytes / (open.len() + close.len()) - 4;
        let line = format!("{{\"a\":{}1{}}}", open.repeat(n), close.repeat(n));
        for p in Parser::ALL {
            let err = decode_line_with(p, line.as_bytes(), 0, &ch(), &l).unwrap_err();
            assert!(matches!(err.reason(), "too_deep" | "invalid_json"), "{}: {err}", p.name());
        }
    }
    let brackets = "{[".repeat(2000);
    let line =
        json!({"@timestamp": 1, "process": {"command_line": brackets}, "custom": brackets}).to_string();
    let rec = decode_text(&line, &l).unwrap();
    assert_eq!(rec.get("process_command_line").and_then(|c| c.as_str()), Some(brackets.as_str()));
}

/// Strings at the edges of JSON's grammar (escapes, surrogates, raw control bytes, bad escapes):
/// both parsers accept and refuse the same lines, with the same text.
#[test]
fn tricky_strings_decode_alike_on_both_parsers() {
    let l = Limits::default();
    let mut ok = 0;
    for s in [
        r"plain",
        r"caf\u00e9",
        r"\ud83d\ude00",
        r"\ud800",
        r"\udc00x",
        r"\ud800\u0041",
        r"tab\there",
        "raw\ttab",
        "raw\u{1}ctl",
        r"bad \x escape",
        r#"\/\b\f\n\r\t\\\""#,
        r"\u00",
        r"trailing \",
        "utf8 \u{e9}\u{1F600}",
    ] {
        for line in [
            format!(r#"{{"@timestamp":1,"process":{{"command_line":"{s}"}}}}"#),
            format!(r#"{{"@timestamp":1,"custom":"{s}","x{s}":1}}"#),
            format!(r#"{{"@timestamp":1,"host.na{s}me":"h"}}"#),
        ] {
            ok += usize::from(decode_text(&line, &l).is_ok());
        }
    }
    // Six of the strings are valid JSON (lone surrogates, raw control bytes and bad or cut escapes
    // are not), each in three places.
    assert_eq!(ok, 18);
    let rec =
        decode_text(r#"{"@timestamp":1,"process":{"command_line":"caf\u00e9 \ud83d\ude00"}}"#, &l).unwrap();
    assert_eq!(rec.get("process_command_line").and_then(|c| c.as_str()), Some("caf\u{e9} \u{1F600}"));
}
