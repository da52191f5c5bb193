//! The OpenAPI 3.1 document, built from the route table ([`crate::ROUTES`]): every route with its
//! access rule, audit action, typed parameters and, where a route returns events, their schema,
//! generated from the event's own field table ([`schemas::FIELDS`]) so the document cannot drift from
//! what the API serves.

use crate::table::{Access, Param, ROUTES, RouteSpec};
use schemas::{FIELDS, Kind};
use serde_json::{Map, Value, json};

/// A time parameter: RFC 3339, or epoch milliseconds.
fn time_schema() -> Value {
    json!({"oneOf": [{"type": "string", "format": "date-time"}, {"type": "integer", "description": "epoch milliseconds"}]})
}

/// Each parameter name means one thing across the API, with one type: the handlers parse it with
/// one helper (`limit_param`, `time_param`...). A name not listed here fails the tests, so a new
/// parameter gets its type when it is added.
fn param_schema(name: &str) -> Option<Value> {
    Some(match name {
        "limit" => json!({"type": "integer", "minimum": 1, "maximum": 1000}),
        "offset" => json!({"type": "integer", "minimum": 0}),
        "level" | "severity" => json!({"type": "integer", "minimum": 1, "maximum": 5}),
        "hops" => json!({"type": "integer", "minimum": 1, "maximum": 4}),
        "max_hops" => json!({"type": "integer", "minimum": 1, "maximum": 64}),
        "window" => json!({"type": "integer", "minimum": 1, "description": "minutes"}),
        "seconds" => json!({"type": "integer", "minimum": 1, "maximum": 300}),
        "dead_secs" | "silent_secs" => json!({"type": "integer", "minimum": 1}),
        "from" | "to" | "since" | "until" | "at" => time_schema(),
        "literal" | "refused" => json!({"type": "boolean"}),
        "handling" => json!({"type": "string", "enum": ["unhandled", "handled", "false_positive"]}),
        "order" => json!({"type": "string", "enum": ["asc", "desc"]}),
        "format" => json!({"type": "string", "enum": ["json", "html", "csv"]}),
        "platform" => json!({"type": "string", "enum": ["Windows", "Linux", "macOS"]}),
        "status" | "host" | "technique" | "kinds" | "cursor" | "q" | "event" | "node" | "id" | "key"
        | "version" | "agent" | "after" | "action" | "tenant" | "reason" => json!({"type": "string"}),
        _ => return None,
    })
}

fn param(p: &Param) -> Value {
    let schema = param_schema(p.name).unwrap_or_else(|| json!({"type": "string"}));
    json!({"name": p.name, "in": p.location, "required": p.location == "path", "description": p.doc, "schema": schema})
}

/// The event, as every route returns it: nested ECS, generated from the field table. Times are RFC
/// 3339; fields Cordon does not know come back where the sender put them.
pub fn event_schema() -> Value {
    let mut root = Map::new();
    for f in FIELDS.iter().filter(|f| f.column != "extra") {
        let ty = match f.kind {
            Kind::Str => json!({"type": "string"}),
            Kind::Int => json!({"type": "integer"}),
            Kind::Bool => json!({"type": "boolean"}),
            Kind::Time => json!({"type": "string", "format": "date-time"}),
            Kind::List => json!({"type": "array", "items": {"type": "string"}}),
        };
        let mut cur = &mut root;
        let mut parts = f.path.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                cur.insert(part.to_owned(), ty);
                break;
            }
            let node = cur
                .entry(part.to_owned())
                .or_insert_with(|| json!({"type": "object", "properties": {}, "additionalProperties": true}));
            cur = node["properties"].as_object_mut().expect("an object node has properties");
        }
    }
    json!({"type": "object", "properties": root, "required": ["@timestamp", "event", "host"], "additionalProperties": true})
}

fn events(key: &str, item: Value) -> Value {
    json!({"type": "object", "properties": {key: {"type": "array", "items": item}}, "required": [key]})
}

/// The 200 body of the routes that return events, by path.
fn response_schema(r: &RouteSpec) -> Option<Value> {
    let event = json!({"$ref": "#/components/schemas/Event"});
    Some(match (r.method.as_str(), r.path) {
        ("GET", "/api/v1/hosts/{host}/timeline" | "/api/v1/alerts/{id}") => events("events", event),
        ("GET", "/api/v1/search") => events(
            "events",
            json!({"type": "object", "properties": {"event": event, "matched": {"type": "array"}}}),
        ),
        ("GET", "/api/v1/incidents/{id}") => events(
            "timeline",
            json!({"type": "object", "properties": {"event": event, "evidence_of": {"type": "array", "items": {"type": "string"}}, "link": {"type": "boolean"}}}),
        ),
        _ => return None,
    })
}

/// The route's parameters: those it documents, and any segment of its path it does not.
fn parameters(r: &RouteSpec) -> Vec<Value> {
    let mut out: Vec<Value> = r.params.iter().map(param).collect();
    for seg in r.path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')) {
        if !r.params.iter().any(|p| p.name == seg && p.location == "path") {
            out.push(param(&Param { name: seg, location: "path", doc: "" }));
        }
    }
    out
}

fn operation(r: &RouteSpec) -> Value {
    let ok = match response_schema(r) {
        Some(schema) => json!({"description": "OK", "content": {"application/json": {"schema": schema}}}),
        None => json!({"description": "OK"}),
    };
    let mut op = json!({
        "summary": r.summary,
        "parameters": parameters(r),
        "responses": {"200": ok, "400": {"description": "Invalid request ({\"error\": {\"code\", \"message\"}})"},
                      "401": {"description": "Missing or bad token"}},
    });
    if let Access::Needs(p) = r.access {
        op["security"] = json!([{"bearer": []}, {"session": []}]);
        op["x-cordon-permission"] = json!(p.as_str());
        op["responses"]["403"] = json!({"description": "The token's role lacks this permission"});
        op["responses"]["429"] = json!({"description": "Too many bad tokens from this address"});
    }
    if let Some(a) = r.audit {
        op["x-cordon-audit"] = json!(a);
    }
    if let Some(b) = r.body {
        op["requestBody"] = json!({"required": true, "description": b,
            "content": {"application/json": {"schema": {"type": "object"}}}});
    }
    op
}

/// The OpenAPI 3.1 document.
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for r in ROUTES.iter() {
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method.as_str().to_lowercase()] = operation(r);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Cordon API", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": crate::session::COOKIE,
                            "description": "The console's session (POST /api/v1/session); changes also carry X-CSRF-Token"},
            },
            "schemas": {"Event": event_schema()},
        },
        "paths": paths,
    })
}

#[cfg(test)]
mod tests;
