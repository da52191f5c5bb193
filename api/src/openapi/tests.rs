use super::*;
use std::path::Path;

#[test]
fn every_parameter_has_a_type() {
    for r in ROUTES.iter() {
        for p in r.params {
            assert!(
                param_schema(p.name).is_some(),
                "{} {}: parameter {} has no type",
                r.method,
                r.path,
                p.name
            );
        }
    }
    let doc = openapi();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for seg in path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')) {
                let declared = op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == seg && p["in"] == "path");
                assert!(declared, "{method} {path}: path parameter {seg} is not declared");
            }
        }
    }
    let limit = &doc["paths"]["/api/v1/alerts"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap()["schema"];
    assert_eq!((limit["type"].as_str(), limit["maximum"].as_u64()), (Some("integer"), Some(1000)));
}

/// Every route documents what it answers, except the few whose answer is not a JSON document.
#[test]
fn every_answer_is_typed() {
    let doc = openapi();
    let mut untyped = Vec::new();
    for r in ROUTES.iter() {
        let answers = &doc["paths"][r.path][r.method.as_str().to_lowercase()]["responses"];
        let ok = if answers["201"].is_null() { &answers["200"] } else { &answers["201"] };
        if ok["content"]["application/json"]["schema"].is_null() && !UNTYPED.contains(&r.path) {
            untyped.push(format!("{} {}", r.method, r.path));
        }
    }
    assert!(untyped.is_empty(), "answers without a schema: {untyped:?}");
    // Every schema the answers refer to is in the document.
    let text = doc.to_string();
    for name in text.split("#/components/schemas/").skip(1).filter_map(|t| t.split('"').next()) {
        assert!(!doc["components"]["schemas"][name].is_null(), "{name} is referred to but not defined");
    }
}

/// A concrete path finds its template, literal segments before parameters.
#[test]
fn calls_find_their_route() {
    let doc = openapi();
    assert_eq!(template_of(&doc, "/api/v1/alerts/stream"), Some("/api/v1/alerts/stream"));
    assert_eq!(template_of(&doc, "/api/v1/alerts/a-1"), Some("/api/v1/alerts/{id}"));
    assert_eq!(template_of(&doc, "/api/v1/hosts/WEB%E6%9C%8D/logins"), Some("/api/v1/hosts/{host}/logins"));
    assert_eq!(template_of(&doc, "/api/v1/nowhere"), None);
    let bad = json!({"status": "ok", "indexed_events": "many"});
    assert!(check_call(&doc, "GET", "/healthz", &bad).is_err());
    assert!(check_call(&doc, "GET", "/healthz", &json!({"status": "ok", "indexed_events": 3})).is_ok());
}

fn body_schema(doc: &Value, method: &str, path: &str) -> Value {
    doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"].clone()
}

/// Every body a route takes is typed from the struct its handler reads, and checks like the handler:
/// the bodies the console sends fit, a misspelt field or a wrong type does not.
#[test]
fn request_bodies_are_typed_from_their_structs() {
    let doc = openapi();
    for r in ROUTES.iter().filter(|r| r.body.is_some()) {
        let schema = body_schema(&doc, &r.method.as_str().to_lowercase(), r.path);
        assert_ne!(
            schema,
            json!({"type": "object"}),
            "{} {}: the body has no typed schema",
            r.method,
            r.path
        );
    }
    let patch = body_schema(&doc, "patch", "/api/v1/alerts/{id}");
    conforms(&doc, &json!({"handling": "false_positive", "comment": "lab scanner"}), &patch, "body").unwrap();
    assert!(
        conforms(&doc, &json!({"handling": "ignored", "comment": ""}), &patch, "body")
            .unwrap_err()
            .contains("handling")
    );
    assert!(
        conforms(&doc, &json!({"handling": "handled", "coment": ""}), &patch, "body")
            .unwrap_err()
            .contains("coment")
    );
    let request = body_schema(&doc, "post", "/api/v1/response/requests");
    let rule = json!({"name": "Contain", "kind": "handling", "actions": [{"action": "Other_NetOff"}]});
    conforms(
        &doc,
        &json!({"rule": rule, "targets": ["a1"], "reason": "alert 1", "ttl_secs": 900}),
        &request,
        "body",
    )
    .unwrap();
    assert!(
        conforms(&doc, &json!({"rule": rule, "targets": "a1", "reason": "x"}), &request, "body").is_err()
    );
    let policy = body_schema(&doc, "put", "/api/v1/policy");
    let body = json!({"policy": {"default": "record", "techniques": {"T1486": "block"}}, "reason": "r", "base_version": 3});
    conforms(&doc, &body, &policy, "body").unwrap();
    let bad = json!({"policy": {"default": "panic"}, "reason": "r", "base_version": 3});
    assert!(conforms(&doc, &bad, &policy, "body").is_err(), "a tier outside block/alert/record/off");
}

/// The alert routes answer with the alert struct's schema; a stored alert fits it.
#[test]
fn alerts_are_typed_from_the_alert_struct() {
    let doc = openapi();
    let list =
        &doc["paths"]["/api/v1/alerts"]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
    let alert: schemas::alert::Alert = serde_json::from_value(json!({
        "id": "a1", "tenant": "t", "level": 4, "first_seen": "2026-11-23T09:20:01Z", "last_seen": "2026-11-23T09:21:01Z",
        "count": 2, "object": "x.exe", "description": "d", "source": "sigma", "rule": {"id": "r", "title": "R"},
        "status": "alerted", "handling": "unhandled", "endpoint": {"name": "Web服务器-北机房", "ip": ["10.20.1.15"], "group": null, "account": null},
        "file": {}, "techniques": [{"id": "T1190", "name": "Exploit Public-Facing Application"}], "tactics": ["initial-access"],
        "evidence": ["e1"], "why": {"rule": "r"}
    }))
    .unwrap();
    conforms(&doc, &json!({"alerts": [serde_json::to_value(&alert).unwrap()]}), list, "alerts").unwrap();
    let mut broken = serde_json::to_value(&alert).unwrap();
    broken["level"] = json!("high");
    assert!(conforms(&doc, &json!({"alerts": [broken]}), list, "alerts").unwrap_err().contains("level"));
}

/// An event decoded as ingest decodes it, served as the API serves it, fits the document's Event;
/// and the same event in the old flat-row shape (`host_ip` as one string, times as integers) would not.
#[test]
fn a_served_event_fits_the_event_schema() {
    use schemas::decode::{Channel, Limits, decode_line};
    let ch = Channel { tenant: "t", agent: "a", message_key: "1:1", stream_seq: 9, received: 5 };
    let line = r#"{"@timestamp":"2026-11-23T09:20:01Z","host":{"name":"Web服务器-北机房","ip":["10.20.1.15"]},"event":{"category":"process","action":"start"},"process":{"pid":7,"command_line":"<img src=x onerror=alert(1)>"},"user":{"name":"svc"},"zz":{"keep":1}}"#.as_bytes();
    let served = decode_line(line, 0, &ch, &Limits::default()).unwrap().to_ecs_json();
    conforms(&json!({}), &served, &event_schema(), "event").unwrap();
    assert_eq!(served["host"]["ip"], json!(["10.20.1.15"]));
    assert_eq!(served["zz"]["keep"], 1, "unknown fields come back where they were sent");
    let mut flat = served.clone();
    flat["host"]["ip"] = json!("[10.20.1.15]");
    assert!(conforms(&json!({}), &flat, &event_schema(), "event").unwrap_err().contains("event.host.ip"));
    let mut micros = served;
    micros["@timestamp"] = json!(1_700_000_000_000_000i64);
    assert!(conforms(&json!({}), &micros, &event_schema(), "event").is_err());
    let doc = openapi();
    let timeline = &doc["paths"]["/api/v1/hosts/{host}/timeline"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    let page = json!({"host": "WIN-DAKEQI", "next_cursor": null,
        "events": [decode_line(line, 0, &ch, &Limits::default()).unwrap().to_ecs_json()]});
    conforms(&doc, &page, timeline, "timeline").unwrap();
}

/// One call the console makes: method, path (with `{}` for each interpolated segment) and the query
/// keys it passes, as written in its source.
#[derive(Debug)]
struct Call {
    file: String,
    method: String,
    path: String,
    keys: Vec<String>,
}

/// The API calls in the console's source: every string or template literal starting `/api/v1/`.
fn console_calls() -> Vec<Call> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../console/web/assets");
    let mut calls = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "js") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut rest = src.as_str();
        while let Some(i) = rest.find("/api/v1/") {
            let quote = rest[..i].chars().last().unwrap_or(' ');
            let tail = &rest[i..];
            let end = tail.find(quote).unwrap_or(tail.len());
            let literal = &tail[..end];
            let after = &tail[end..tail.len().min(end + 200)];
            let stop = after.find("api(").unwrap_or(after.len());
            let method = ["POST", "PUT", "PATCH", "DELETE"]
                .into_iter()
                .find(|m| after[..stop].contains(&format!("method: \"{m}\"")))
                .unwrap_or("GET");
            calls.push(parse_call(&file, method, literal));
            rest = &tail[end.max(1)..];
        }
    }
    calls
}

fn parse_call(file: &str, method: &str, literal: &str) -> Call {
    let (path, query) = match literal.find("${query(") {
        Some(q) => (&literal[..q], Some(&literal[q + 8..])),
        None => (literal, None),
    };
    // `${encodeURIComponent(x)}` segments become `{}`.
    let mut norm = String::new();
    let mut rest = path;
    while let Some(i) = rest.find("${") {
        norm.push_str(&rest[..i]);
        norm.push_str("{}");
        let close = rest[i..].find('}').map_or(rest.len(), |c| i + c + 1);
        rest = &rest[close..];
    }
    norm.push_str(rest);
    let keys = query
        .and_then(|q| q.strip_prefix('{'))
        .map(|q| {
            top_level_items(q)
                .into_iter()
                .map(|k| k.split(':').next().unwrap_or("").trim().to_owned())
                .filter(|k| !k.is_empty() && !k.starts_with("..."))
                .collect()
        })
        .unwrap_or_default();
    Call { file: file.to_owned(), method: method.to_owned(), path: norm, keys }
}

/// The comma-separated items of an object literal's body, up to its closing brace (commas inside
/// brackets, calls and strings do not split).
fn top_level_items(body: &str) -> Vec<&str> {
    let (mut items, mut depth, mut quote, mut start) = (Vec::new(), 0i32, None, 0);
    for (i, ch) in body.char_indices() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(ch),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']') => depth -= 1,
            (None, '}') if depth == 0 => {
                items.push(&body[start..i]);
                return items;
            }
            (None, '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                items.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&body[start..]);
    items
}

fn matches(route: &str, call: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (route.split('/').collect(), call.split('/').collect());
    a.len() == b.len() && a.iter().zip(&b).all(|(r, c)| r == c || (r.starts_with('{') && *c == "{}"))
}

/// The console's client checked against the document: every call it makes is a documented route with
/// that method, and every query key it passes is one of the route's documented parameters.
#[test]
fn the_console_calls_only_documented_routes_and_parameters() {
    let calls = console_calls();
    assert!(calls.len() > 30, "the scan found the console's calls: {calls:?}");
    let mut problems = Vec::new();
    for c in &calls {
        let route = ROUTES.iter().find(|r| matches(r.path, &c.path) && r.method.as_str() == c.method);
        let Some(route) = route else {
            problems.push(format!("{}: {} {} is not a documented route", c.file, c.method, c.path));
            continue;
        };
        for k in &c.keys {
            if !route.params.iter().any(|p| p.name == k && p.location == "query") {
                problems
                    .push(format!("{}: {} {} has no query parameter {k:?}", c.file, c.method, route.path));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    // The check can fail: a call to an undocumented route or parameter is caught.
    let bad = parse_call("x.js", "GET", "/api/v1/alerts${query({ level, colour: 1 })}");
    assert_eq!(bad.keys, ["level", "colour"]);
    let nested = parse_call(
        "x.js",
        "GET",
        "/api/v1/hosts/${encodeURIComponent(h)}/timeline${query({ kinds: [...k].join(\",\"), limit: page, cursor })}",
    );
    assert_eq!(
        (nested.path.as_str(), nested.keys.clone()),
        ("/api/v1/hosts/{}/timeline", vec!["kinds".to_owned(), "limit".into(), "cursor".into()])
    );
    assert!(
        !ROUTES
            .iter()
            .find(|r| matches(r.path, &bad.path))
            .unwrap()
            .params
            .iter()
            .any(|p| p.name == "colour")
    );
    assert!(ROUTES.iter().all(|r| !matches(r.path, "/api/v1/alertz")));
}
