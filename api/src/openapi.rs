//! The OpenAPI 3.1 document, built from the route table ([`crate::ROUTES`]): every route with its
//! access rule, audit action, typed parameters and, where a route returns events, their schema,
//! generated from the event's own field table ([`schemas::FIELDS`]) so the document cannot drift from
//! what the API serves.

use crate::table::{Access, Param, ROUTES, RouteSpec};
use schemars::generate::{Contract, SchemaSettings};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use schemas::{FIELDS, Kind};
use serde_json::{Map, Value, json};

/// A response rule, as `GET /api/v1/response/schema` serves it (a component of this document).
pub(crate) fn response_rule(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({"$ref": "#/components/schemas/ResponseRule"})
}

/// Schemas generated from the request and response structs, their named parts collected as the
/// document's components.
struct Types {
    requests: SchemaGenerator,
    responses: SchemaGenerator,
}

impl Types {
    fn new() -> Self {
        let settings = |contract: Contract| {
            SchemaSettings::draft2020_12().with(|s| {
                s.definitions_path = "/components/schemas".into();
                s.contract = contract;
            })
        };
        Types {
            requests: SchemaGenerator::new(settings(Contract::Deserialize)),
            responses: SchemaGenerator::new(settings(Contract::Serialize)),
        }
    }

    fn request<T: JsonSchema>(&mut self) -> Value {
        serde_json::to_value(self.requests.subschema_for::<T>()).unwrap_or_default()
    }

    fn response<T: JsonSchema>(&mut self) -> Value {
        serde_json::to_value(self.responses.subschema_for::<T>()).unwrap_or_default()
    }

    /// Every named schema either side generated.
    fn components(&self) -> Map<String, Value> {
        let mut out = self.requests.definitions().clone();
        for (k, v) in self.responses.definitions() {
            out.entry(k.clone()).or_insert_with(|| v.clone());
        }
        out
    }
}

/// The body a route takes, from the struct its handler reads it into.
fn request_schema(t: &mut Types, r: &RouteSpec) -> Option<Value> {
    use crate::{detection, enroll, investigate, reports, requests, response, routes, session, standing};
    Some(match (r.method.as_str(), r.path) {
        ("POST", "/api/v1/iocs/sweep") => t.request::<routes::SweepBody>(),
        ("POST", "/api/v1/sql") => t.request::<routes::SqlBody>(),
        ("PUT", "/api/v1/policy") => t.request::<detection::PolicyBody>(),
        ("POST", "/api/v1/policy/preview") => t.request::<detection::PreviewBody>(),
        ("PATCH", "/api/v1/alerts/{id}") => t.request::<detection::AlertPatch>(),
        ("PATCH", "/api/v1/incidents/{id}") => t.request::<investigate::IncidentPatch>(),
        ("POST", "/api/v1/reports/run") => t.request::<reports::RunRequest>(),
        ("POST", "/api/v1/session") => t.request::<session::SignIn>(),
        ("POST", "/api/v1/enroll") => t.request::<enroll::EnrollRequest>(),
        ("POST", "/api/v1/response/validate") => t.request::<response::ValidateBody>(),
        ("POST", "/api/v1/response/approvers") => t.request::<requests::NewApprover>(),
        ("PUT", "/api/v1/response/settings") => t.request::<requests::Settings>(),
        ("POST", "/api/v1/response/requests") => t.request::<requests::NewRequestBody>(),
        ("POST", "/api/v1/response/standing") => t.request::<standing::NewOrder>(),
        (
            "POST",
            "/api/v1/response/requests/{id}/approvals"
            | "/api/v1/response/approver-sets/{version}/approvals"
            | "/api/v1/response/standing/{id}/approvals",
        ) => t.request::<requests::ApprovalBody>(),
        _ => return None,
    })
}

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
        | "version" | "agent" | "after" | "action" | "tenant" | "reason" | "alert" => {
            json!({"type": "string"})
        }
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

/// An answer holding one list, `{key: [item, ...]}`.
fn list_of(key: &str, item: Value) -> Value {
    json!({"type": "object", "properties": {key: {"type": "array", "items": item}}, "required": [key]})
}

/// An incident as the API shows it: the stored incident with the analysts' status, owner and the
/// catalog's times beside it.
fn incident_view(t: &mut Types) -> Value {
    let time = json!({"type": "string", "format": "date-time"});
    json!({"allOf": [t.response::<correlate::incident::Incident>(), {"type": "object", "properties": {
        "status": {"type": "string", "enum": ["open", "investigating", "contained", "resolved", "false_positive", "merged"]},
        "owner": {"type": "string"}, "merged_into": {"type": ["string", "null"]},
        "created": time, "updated": time, "first_seen": time, "last_seen": time,
    }, "required": ["status", "owner", "first_seen", "last_seen"]}]})
}

/// The 200 body of the routes whose answers are typed: events (from the field table) and alerts (from
/// the alert struct).
fn response_schema(t: &mut Types, r: &RouteSpec) -> Option<Value> {
    let event = json!({"$ref": "#/components/schemas/Event"});
    Some(match (r.method.as_str(), r.path) {
        ("GET", "/api/v1/alerts") => list_of("alerts", t.response::<schemas::alert::Alert>()),
        ("GET", "/api/v1/alerts/{id}") => json!({"type": "object", "properties": {
            "alert": t.response::<schemas::alert::Alert>(),
            "events": {"type": "array", "items": event},
            "comments": {"type": "array", "items": t.response::<store::catalog::AlertComment>()},
        }, "required": ["alert", "events", "comments"]}),
        ("GET", "/api/v1/agents") => t.response::<crate::routes::AgentList>(),
        ("GET", "/api/v1/hosts") => t.response::<crate::routes::HostList>(),
        ("GET", "/api/v1/policy") => t.response::<crate::detection::PolicyNow>(),
        ("GET", "/api/v1/policy/versions") => t.response::<crate::detection::PolicyVersions>(),
        ("GET", "/api/v1/response/requests") => t.response::<crate::requests_view::RequestList>(),
        ("GET", "/api/v1/response/requests/{id}") => t.response::<crate::requests_view::RequestView>(),
        ("GET", "/api/v1/anomalies") => t.response::<crate::detection::AnomalyList>(),
        ("GET", "/api/v1/incidents") => list_of("incidents", incident_view(t)),
        ("GET", "/api/v1/incidents/{id}") => json!({"type": "object", "properties": {
            "incident": incident_view(t),
            "alerts": {"type": "array", "items": {"type": "object", "properties": {
                "anchor": t.response::<correlate::incident::Anchor>(), "alert": t.response::<schemas::alert::Alert>()}}},
            "timeline": {"type": "array", "items": {"type": "object", "properties": {
                "event": event, "evidence_of": {"type": "array", "items": {"type": "string"}}, "link": {"type": "boolean"}}}},
            "timeline_truncated": {"type": "boolean"},
            "comments": {"type": "array", "items": t.response::<store::catalog::IncidentComment>()},
        }, "required": ["incident", "alerts", "timeline", "comments"]}),
        ("GET", "/api/v1/reports/{id}") | ("POST", "/api/v1/reports/run") => json!({"type": "object",
            "properties": {"report": t.response::<anomaly::report::Report>()}, "required": ["report"]}),
        ("GET", "/api/v1/hosts/{host}/timeline") => json!({"type": "object", "properties": {
            "host": {"type": "string"}, "events": {"type": "array", "items": event},
            "next_cursor": {"type": ["string", "null"]}}, "required": ["host", "events"]}),
        ("PATCH", "/api/v1/incidents/{id}") => json!({"type": "object", "properties": {
            "incident": incident_view(t),
            "comments": {"type": "array", "items": t.response::<store::catalog::IncidentComment>()},
        }, "required": ["incident", "comments"]}),
        ("GET", "/healthz") => t.response::<crate::routes::Health>(),
        ("GET", "/readyz") => t.response::<crate::routes::Ready>(),
        ("POST", "/api/v1/iocs/sweep") => t.response::<crate::routes::SweepAnswer>(),
        ("POST", "/api/v1/sql") => t.response::<store::query::SqlOutput>(),
        ("PUT", "/api/v1/policy") => t.response::<crate::detection_view::PolicySaved>(),
        ("POST", "/api/v1/policy/preview") => t.response::<crate::detection_view::Preview>(),
        ("PATCH", "/api/v1/alerts/{id}") => t.response::<crate::detection_view::HandlingSet>(),
        ("GET", "/api/v1/attack/coverage") => t.response::<crate::detection_view::Coverage>(),
        ("GET", "/api/v1/rules") => t.response::<crate::detection_view::RulesAnswer>(),
        ("GET", "/api/v1/reports") => t.response::<crate::reports::ReportList>(),
        ("POST", "/api/v1/baselines/refit") => json!({"type": "object",
            "properties": {"refit": t.response::<anomaly::live::RefitReport>()}, "required": ["refit"]}),
        ("GET", "/api/v1/incidents/{id}/graph") => t.response::<crate::graph_view::IncidentGraph>(),
        ("GET", "/api/v1/hosts/{host}/process-tree") => t.response::<crate::graph_view::ProcessTreeAnswer>(),
        ("GET", "/api/v1/graph/paths") => t.response::<crate::graph_view::PathAnswer>(),
        ("GET", "/api/v1/graph/neighbors") => t.response::<crate::graph_view::NeighborsAnswer>(),
        ("GET", "/api/v1/hosts/{host}/logins") => t.response::<crate::logins_view::LoginsAnswer>(),
        ("POST", "/api/v1/enroll") => t.response::<crate::enroll::Enrolled>(),
        ("GET", "/api/v1/agents/enrolled") => t.response::<crate::enroll::EnrolledList>(),
        ("GET", "/api/v1/audit") => t.response::<crate::trust::AuditAnswer>(),
        ("GET", "/api/v1/dead-letters") => t.response::<crate::trust::DeadLetters>(),
        ("GET" | "POST", "/api/v1/session") => t.response::<crate::session::Who>(),
        ("DELETE", "/api/v1/session") => t.response::<crate::session::SignedOut>(),
        ("POST", "/api/v1/response/validate") => t.response::<crate::response_view::Validated>(),
        ("GET", "/api/v1/response/approvers") => t.response::<crate::response_view::Approvers>(),
        ("POST", "/api/v1/response/approvers") => t.response::<crate::response_view::ApproverView>(),
        ("DELETE", "/api/v1/response/approvers/{key}") => {
            t.response::<crate::response_view::ApproverRevoked>()
        }
        ("GET" | "PUT", "/api/v1/response/settings") => t.response::<crate::response_view::SettingsView>(),
        (
            "POST",
            "/api/v1/response/requests"
            | "/api/v1/response/requests/{id}/approvals"
            | "/api/v1/response/requests/{id}/cancel",
        ) => t.response::<crate::requests_view::RequestView>(),
        ("GET", "/api/v1/response/approver-sets") => t.response::<crate::response_view::SetChanges>(),
        ("POST", "/api/v1/response/approver-sets" | "/api/v1/response/approver-sets/{version}/approvals") => {
            t.response::<crate::response_view::SetChangeView>()
        }
        ("GET", "/api/v1/response/standing") => t.response::<crate::response_view::Orders>(),
        (
            "GET" | "POST",
            "/api/v1/response/standing/{id}"
            | "/api/v1/response/standing/{id}/approvals"
            | "/api/v1/response/standing/{id}/withdraw",
        )
        | ("POST", "/api/v1/response/standing") => t.response::<crate::response_view::OrderView>(),
        ("GET", "/api/v1/response/schema") => json!({"type": "object",
            "description": "The response rule's JSON Schema (draft 2020-12); the ResponseRule component is this document without $schema and $id",
            "properties": {"$schema": {"type": "string"}, "$id": {"type": "string"}, "type": {"const": "object"}},
            "required": ["$schema", "properties"]}),
        ("GET", "/api/v1/search") => list_of(
            "events",
            json!({"type": "object", "properties": {"event": event, "matched": {"type": "array"}}}),
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

/// The routes that answer 201 Created: they make a new request, approver, set change or order.
fn creates(r: &RouteSpec) -> bool {
    r.method == axum::http::Method::POST
        && matches!(
            r.path,
            "/api/v1/response/requests"
                | "/api/v1/response/approvers"
                | "/api/v1/response/approver-sets"
                | "/api/v1/response/standing"
        )
}

/// The routes whose answer is not a JSON document of their own: Prometheus text, the server-sent
/// event stream, and the OpenAPI document itself.
pub(crate) const UNTYPED: &[&str] = &["/metrics", "/api/v1/alerts/stream", "/api/v1/openapi.json"];

fn operation(t: &mut Types, r: &RouteSpec) -> Value {
    let (status, text) = if creates(r) { ("201", "Created") } else { ("200", "OK") };
    let ok = match response_schema(t, r) {
        Some(schema) => json!({"description": text, "content": {"application/json": {"schema": schema}}}),
        None => json!({"description": text}),
    };
    let mut op = json!({
        "summary": r.summary,
        "parameters": parameters(r),
        "responses": {"400": {"description": "Invalid request ({\"error\": {\"code\", \"message\"}})"},
                      "401": {"description": "Missing or bad token"}},
    });
    op["responses"][status] = ok;
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
        let schema = request_schema(t, r).unwrap_or_else(|| json!({"type": "object"}));
        op["requestBody"] = json!({"required": true, "description": b,
            "content": {"application/json": {"schema": schema}}});
    }
    op
}

/// The OpenAPI 3.1 document.
pub fn openapi() -> Value {
    let mut paths = Map::new();
    let mut types = Types::new();
    for r in ROUTES.iter() {
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method.as_str().to_lowercase()] = operation(&mut types, r);
    }
    let mut schemas = types.components();
    schemas.insert("Event".into(), event_schema());
    let mut rule = schemas::response::json_schema();
    if let Some(o) = rule.as_object_mut() {
        o.remove("$schema");
        o.remove("$id");
    }
    schemas.insert("ResponseRule".into(), rule);
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Cordon API", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": crate::session::COOKIE,
                            "description": "The console's session (POST /api/v1/session); changes also carry X-CSRF-Token"},
            },
            "schemas": schemas,
        },
        "paths": paths,
    })
}

/// Checks `v` against the subset of JSON Schema the document uses (types, formats, const, enum,
/// properties, patternProperties, required, additionalProperties, items, allOf, anyOf/oneOf,
/// references into the document's components); returns the first mismatch. The tests check the
/// API's live answers with it.
pub fn conforms(doc: &Value, v: &Value, schema: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name =
            r.strip_prefix("#/components/schemas/").ok_or_else(|| format!("{at}: bad reference {r}"))?;
        let target = &doc["components"]["schemas"][name];
        if target.is_null() {
            return Err(format!("{at}: {r} is not in the document"));
        }
        return conforms(doc, v, target, at);
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        conforms(doc, v, part, at)?;
    }
    if let Some(any) = schema["anyOf"].as_array().or_else(|| schema["oneOf"].as_array()) {
        return if any.iter().any(|s| conforms(doc, v, s, at).is_ok()) {
            Ok(())
        } else {
            Err(format!("{at}: {v} fits no alternative"))
        };
    }
    let fits = |ty: &str| match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => true,
    };
    let ok = match &schema["type"] {
        Value::String(t) => fits(t),
        Value::Array(ts) => ts.iter().any(|t| fits(t.as_str().unwrap_or_default())),
        _ => true,
    };
    if !ok {
        return Err(format!("{at}: {v} is not {}", schema["type"]));
    }
    if let Some(c) = schema.get("const")
        && c != v
    {
        return Err(format!("{at}: {v} is not {c}"));
    }
    if let Some(e) = schema["enum"].as_array()
        && !e.contains(v)
    {
        return Err(format!("{at}: {v} is not one of {e:?}"));
    }
    // A format constrains strings only (a null beside it is the type's business).
    if schema["format"] == "date-time"
        && v.as_str().is_some_and(|t| schemas::time::parse_rfc3339_micros(t).is_none())
    {
        return Err(format!("{at}: {v} is not an RFC 3339 time"));
    }
    if let Some(o) = v.as_object() {
        let props = schema["properties"].as_object();
        for (k, x) in o {
            let pattern = schema["patternProperties"].as_object().and_then(|pp| {
                pp.iter()
                    .find(|(re, _)| regex::Regex::new(re).is_ok_and(|re| re.is_match(k)))
                    .map(|(_, sub)| sub)
            });
            match props.and_then(|p| p.get(k)).or(pattern) {
                Some(sub) => conforms(doc, x, sub, &format!("{at}.{k}"))?,
                None if schema["additionalProperties"] == false => {
                    return Err(format!("{at}: unknown field {k}"));
                }
                None => {
                    if let extra @ Value::Object(_) = &schema["additionalProperties"] {
                        conforms(doc, x, extra, &format!("{at}.{k}"))?;
                    }
                }
            }
        }
        for k in schema["required"].as_array().into_iter().flatten() {
            if !o.contains_key(k.as_str().unwrap_or_default()) {
                return Err(format!("{at}: {k} is required"));
            }
        }
    }
    if let (Some(items), Some(list)) = (schema.get("items"), v.as_array()) {
        for (i, x) in list.iter().enumerate() {
            conforms(doc, x, items, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Checks a 200 answer of `method path` (the route's template, `/api/v1/incidents/{id}`) against
/// the document's schema for it.
pub fn check_answer(doc: &Value, method: &str, path: &str, answer: &Value) -> Result<(), String> {
    let answers = &doc["paths"][path][method.to_lowercase()]["responses"];
    let ok = if answers["201"].is_null() { &answers["200"] } else { &answers["201"] };
    let schema = &ok["content"]["application/json"]["schema"];
    if schema.is_null() {
        return Err(format!("{method} {path} has no typed answer in the document"));
    }
    conforms(doc, answer, schema, &format!("{method} {path}"))
}

/// The document's route template a concrete path falls under (`/api/v1/alerts/stream` before
/// `/api/v1/alerts/{id}`: the template with the fewest parameters wins).
pub fn template_of<'a>(doc: &'a Value, path: &str) -> Option<&'a str> {
    let segs: Vec<&str> = path.split('/').collect();
    let fits = |t: &str| {
        let ts: Vec<&str> = t.split('/').collect();
        ts.len() == segs.len()
            && ts.iter().zip(&segs).all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty()))
    };
    doc["paths"]
        .as_object()?
        .keys()
        .filter(|t| fits(t))
        .min_by_key(|t| t.matches('{').count())
        .map(String::as_str)
}

/// Checks a successful answer of a call (`GET /api/v1/incidents/inc-1?x=1`) against the document:
/// every answer of a documented route fits its schema; a route the document lacks is an error.
/// Answers that are not JSON documents ([`UNTYPED`] routes, reports as HTML or CSV) pass.
pub fn check_call(doc: &Value, method: &str, url: &str, answer: &Value) -> Result<(), String> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let not_json = query.split('&').any(|kv| kv.starts_with("format=") && kv != "format=json");
    if UNTYPED.contains(&path) || not_json {
        return Ok(());
    }
    let template = template_of(doc, path).ok_or_else(|| format!("{method} {path} is not in the document"))?;
    check_answer(doc, method, template, answer)
}

#[cfg(test)]
mod tests;
