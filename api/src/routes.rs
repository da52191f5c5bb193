//! The handlers. Parameters are parsed by hand from the query map so every bad value gets a precise,
//! named error instead of a generic rejection.

use crate::error::ApiError;
use crate::ioc::classify;
use crate::{AppState, Caller, RouteSpec};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{Method, header};
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get, patch, post, put};
use schemas::policy::Policy;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use store::index::SearchQuery;
use store::query::{SqlLimits, TimelineQuery};

type Params = Query<HashMap<String, String>>;
type Res = Result<axum::response::Response, ApiError>;

/// The handler of a route in the table.
pub(crate) fn handler(spec: &RouteSpec) -> MethodRouter<Arc<AppState>> {
    match (spec.method.clone(), spec.path) {
        (Method::GET, "/healthz") => get(healthz),
        (Method::GET, "/metrics") => get(metrics),
        (Method::GET, "/api/v1/openapi.json") => get(|| async { Json(crate::openapi()) }),
        (Method::GET, "/api/v1/hosts") => get(hosts),
        (Method::GET, "/api/v1/agents") => get(agents),
        (Method::GET, "/api/v1/hosts/{host}/timeline") => get(timeline),
        (Method::GET, "/api/v1/search") => get(search),
        (Method::POST, "/api/v1/iocs/sweep") => post(sweep).layer(DefaultBodyLimit::max(4 * 1024 * 1024)),
        (Method::POST, "/api/v1/sql") => post(sql).layer(DefaultBodyLimit::max(64 * 1024)),
        (Method::GET, "/api/v1/policy") => get(policy_get),
        (Method::PUT, "/api/v1/policy") => put(policy_put).layer(DefaultBodyLimit::max(1024 * 1024)),
        (Method::GET, "/api/v1/policy/versions") => get(policy_versions),
        (Method::POST, "/api/v1/policy/preview") => {
            post(policy_preview).layer(DefaultBodyLimit::max(1024 * 1024))
        }
        (Method::GET, "/api/v1/attack/coverage") => get(coverage),
        (Method::GET, "/api/v1/alerts") => get(alerts),
        (Method::GET, "/api/v1/alerts/{id}") => get(alert_get),
        (Method::PATCH, "/api/v1/alerts/{id}") => patch(alert_patch).layer(DefaultBodyLimit::max(64 * 1024)),
        (m, p) => unreachable!("route {m} {p} is in ROUTES but has no handler"),
    }
}

fn time_param(p: &HashMap<String, String>, name: &'static str) -> Result<Option<i64>, ApiError> {
    let Some(v) = p.get(name).filter(|v| !v.is_empty()) else { return Ok(None) };
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(Some(ms.saturating_mul(1000)));
    }
    schemas::time::parse_rfc3339_micros(v).map(Some).ok_or_else(|| {
        ApiError::invalid("bad_parameter", format!("{name}={v:?} is neither RFC 3339 nor epoch milliseconds"))
    })
}

fn limit_param(p: &HashMap<String, String>, default: usize) -> Result<usize, ApiError> {
    match p.get("limit") {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid(
                "bad_parameter",
                format!("limit={v:?} must be an integer from 1 to 1000"),
            )),
        },
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect();
    String::from_utf8(bytes?).ok()
}

fn bad_cursor() -> ApiError {
    ApiError::invalid("bad_cursor", "cursor is not one this server issued; start again without it")
}

async fn healthz(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    Json(json!({"status": "ok", "indexed_events": s.store.indexed_docs()}))
}

async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    s.metrics.set_gauge("cordon_index_docs", "", "Documents in the full-text index.", s.store.indexed_docs());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render())
}

async fn hosts(State(s): State<Arc<AppState>>, Extension(c): Extension<Caller>, Query(p): Params) -> Res {
    let limit = limit_param(&p, 100)?;
    let offset = p.get("offset").map_or(Ok(0), |v| {
        v.parse::<i64>()
            .map_err(|_| ApiError::invalid("bad_parameter", format!("offset={v:?} is not an integer")))
    })?;
    let rows = s
        .store
        .catalog()
        .hosts(&c.token.tenant, limit as i64, offset.max(0))
        .await
        .map_err(store::StoreError::from)?;
    let hosts: Vec<Value> = rows
        .iter()
        .map(|h| {
            json!({"host": h.host, "agent_id": h.agent_id, "events": h.events,
                   "first_seen": schemas::time::format_micros(h.first_seen),
                   "last_seen": schemas::time::format_micros(h.last_seen)})
        })
        .collect();
    Ok(Json(json!({ "hosts": hosts })).into_response())
}

fn secs_param(p: &HashMap<String, String>, name: &'static str, default: i64) -> Result<i64, ApiError> {
    match p.get(name) {
        None => Ok(default),
        Some(v) => v.parse::<i64>().ok().filter(|n| (1..=30 * 86_400).contains(n)).ok_or_else(|| {
            ApiError::invalid(
                "bad_parameter",
                format!("{name}={v:?} must be whole seconds from 1 to 2592000"),
            )
        }),
    }
}

/// An agent's state from its heartbeats: `dead` when none came for `dead_secs` (default 60, twelve
/// of the agent's 5 s intervals), `silent` when heartbeats come but none reported new events for
/// `silent_secs` (default 900), else `active`.
async fn agents(State(s): State<Arc<AppState>>, Extension(c): Extension<Caller>, Query(p): Params) -> Res {
    let dead = secs_param(&p, "dead_secs", 60)? * 1_000_000;
    let silent = secs_param(&p, "silent_secs", 900)? * 1_000_000;
    let rows = s.store.catalog().agents(&c.token.tenant).await.map_err(store::StoreError::from)?;
    let now = schemas::time::now_micros();
    let agents: Vec<Value> = rows
        .iter()
        .map(|a| {
            let status = if now - a.last_heartbeat > dead {
                "dead"
            } else if now - a.last_activity > silent {
                "silent"
            } else {
                "active"
            };
            json!({
                "agent_id": a.agent_id,
                "host": a.host,
                "status": status,
                "boot": a.boot,
                "last_heartbeat": schemas::time::format_micros(a.last_heartbeat),
                "last_activity": schemas::time::format_micros(a.last_activity),
                "events_in": a.events_in,
                "events_acked": a.events_acked,
                "events_dropped": a.events_dropped,
                "spool_bytes": a.spool_bytes,
            })
        })
        .collect();
    Ok(Json(json!({ "agents": agents })).into_response())
}

async fn timeline(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(host): Path<String>,
    Query(p): Params,
) -> Res {
    let ascending = match p.get("order").map(String::as_str) {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(o) => {
            return Err(ApiError::invalid("bad_parameter", format!("order={o:?} must be asc or desc")));
        }
    };
    let after = match p.get("cursor") {
        None => None,
        Some(cur) => {
            let raw = unhex(cur).ok_or_else(bad_cursor)?;
            let (t, id) = raw.split_once('|').ok_or_else(bad_cursor)?;
            Some((t.parse::<i64>().map_err(|_| bad_cursor())?, id.to_owned()))
        }
    };
    let limit = limit_param(&p, 100)?;
    let kinds = p
        .get("kinds")
        .map(|k| k.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let q = TimelineQuery {
        host: host.clone(),
        from: time_param(&p, "from")?,
        to: time_param(&p, "to")?,
        kinds,
        ascending,
        after,
        limit,
    };
    let rows = s.store.timeline(&c.token.tenant, q).await?;
    let next = (rows.len() == limit).then(|| {
        let last = rows.last().expect("a full page has a last row");
        let id = last.get("event_id").and_then(|c| c.as_str()).unwrap_or("");
        hex(&format!("{}|{id}", last.time()))
    });
    let events: Vec<Value> = rows.iter().map(schemas::Record::to_ecs_json).collect();
    Ok(Json(json!({"host": host, "events": events, "next_cursor": next})).into_response())
}

async fn search(State(s): State<Arc<AppState>>, Extension(c): Extension<Caller>, Query(p): Params) -> Res {
    let text = p
        .get("q")
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::invalid("bad_parameter", "q is required"))?;
    let literal = match p.get("literal").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(v) => {
            return Err(ApiError::invalid("bad_parameter", format!("literal={v:?} must be true or false")));
        }
    };
    let limit = limit_param(&p, 50)?;
    let offset = match p.get("cursor") {
        None => 0,
        Some(c) => unhex(c)
            .and_then(|s| s.strip_prefix("o:").and_then(|n| n.parse::<usize>().ok()))
            .ok_or_else(bad_cursor)?,
    };
    if offset > 100_000 {
        return Err(ApiError::invalid(
            "too_deep",
            "paging stops at 100000 hits; narrow the query or the time range",
        ));
    }
    let q = SearchQuery {
        q: text.to_owned(),
        literal,
        from: time_param(&p, "from")?,
        to: time_param(&p, "to")?,
        host: p.get("host").cloned(),
        limit,
        offset,
    };
    let (hits, total) = s.store.search(&c.token.tenant, q).await?;
    let next =
        (offset + hits.len() < total && !hits.is_empty()).then(|| hex(&format!("o:{}", offset + hits.len())));
    let events: Vec<Value> =
        hits.iter().map(|h| json!({"event": h.record.to_ecs_json(), "matched": h.matched})).collect();
    Ok(Json(json!({"total": total, "events": events, "next_cursor": next})).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepBody {
    iocs: Vec<String>,
}

async fn sweep(State(s): State<Arc<AppState>>, Extension(c): Extension<Caller>, body: Bytes) -> Res {
    let req: SweepBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("bad_body", format!("body: {e}")))?;
    if req.iocs.len() > 5000 {
        return Err(ApiError::invalid(
            "too_many",
            format!("{} indicators; at most 5000 per sweep", req.iocs.len()),
        ));
    }
    let mut valid = Vec::new();
    let mut results: Vec<Value> = Vec::new();
    for (i, raw) in req.iocs.iter().enumerate() {
        match classify(raw) {
            Ok(ioc) => valid.push((i, ioc)),
            Err(e) => results.push(json!({"ioc": raw, "error": e})),
        }
    }
    let found = s
        .store
        .sweep(&c.token.tenant, valid.iter().map(|(_, i)| (i.field, i.value.clone())).collect())
        .await?;
    for ((_, ioc), hosts) in valid.iter().zip(found) {
        let total: u64 = hosts.iter().map(|h| h.count).sum();
        let hosts: Vec<Value> = hosts
            .iter()
            .map(|h| json!({"host": h.host, "count": h.count,
                "first_seen": schemas::time::format_micros(h.first_seen), "last_seen": schemas::time::format_micros(h.last_seen)}))
            .collect();
        results.push(
            json!({"ioc": ioc.input, "value": ioc.value, "type": ioc.kind, "total": total, "hosts": hosts}),
        );
    }
    let hit = results.iter().filter(|r| r["total"].as_u64().unwrap_or(0) > 0).count();
    Ok(Json(json!({"swept": req.iocs.len(), "matched": hit, "results": results})).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlBody {
    sql: String,
    #[serde(default)]
    max_rows: Option<usize>,
}

async fn sql(State(s): State<Arc<AppState>>, Extension(c): Extension<Caller>, body: Bytes) -> Res {
    let req: SqlBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("bad_body", format!("body: {e}")))?;
    let limits = SqlLimits {
        max_rows: req.max_rows.unwrap_or(10_000).clamp(1, 100_000),
        timeout: Duration::from_secs(30),
    };
    let out = s.store.sql(&c.token.tenant, &req.sql, limits).await?;
    Ok(Json(out).into_response())
}

/// The tenant's current policy: (version, author, reason, created, policy); version 0 is the shipped
/// default.
async fn current_policy(s: &AppState, tenant: &str) -> Result<(i64, String, String, i64, Policy), ApiError> {
    let hist = s.store.catalog().policy_history(tenant).await.map_err(store::StoreError::from)?;
    match hist.into_iter().next() {
        Some(p) => {
            let policy: Policy = serde_json::from_str(&p.body).map_err(|e| ApiError::internal(&e))?;
            Ok((p.version, p.author, p.reason, p.created_at, policy))
        }
        None => Ok((0, "cordon".into(), "the shipped default policy".into(), 0, Policy::cordon_default())),
    }
}

async fn policy_get(State(s): State<Arc<AppState>>, Extension(c): Extension<Caller>) -> Res {
    let (version, author, reason, created, policy) = current_policy(&s, &c.token.tenant).await?;
    let summary: serde_json::Map<String, Value> = ["Windows", "Linux", "macOS"]
        .iter()
        .map(|p| ((*p).to_owned(), json!(policy.summary(p, None))))
        .collect();
    Ok(Json(json!({
        "version": version,
        "author": author,
        "reason": reason,
        "created": (created > 0).then(|| schemas::time::format_micros(created)),
        "policy": policy,
        "summary": summary,
    }))
    .into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    policy: Policy,
    reason: String,
    base_version: i64,
}

async fn policy_put(State(s): State<Arc<AppState>>, Extension(c): Extension<Caller>, body: Bytes) -> Res {
    let req: PolicyBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("bad_body", format!("body: {e}")))?;
    if req.reason.trim().is_empty() {
        return Err(ApiError::invalid("bad_body", "say why the policy changes: reason must not be empty"));
    }
    let policy = req.policy.validated().map_err(|e| ApiError::invalid("invalid_policy", e.to_string()))?;
    let text = serde_json::to_string(&policy).map_err(|e| ApiError::internal(&e))?;
    let version = s
        .store
        .catalog()
        .put_policy(
            &c.token.tenant,
            req.base_version,
            &text,
            &c.token.name,
            req.reason.trim(),
            schemas::time::now_micros(),
        )
        .await
        .map_err(store::StoreError::from)?;
    Ok(Json(json!({ "version": version, "author": c.token.name, "policy": policy })).into_response())
}

async fn policy_versions(State(s): State<Arc<AppState>>, Extension(c): Extension<Caller>) -> Res {
    let hist = s.store.catalog().policy_history(&c.token.tenant).await.map_err(store::StoreError::from)?;
    let versions: Vec<Value> = hist
        .iter()
        .map(|p| {
            json!({
                "version": p.version,
                "author": p.author,
                "reason": p.reason,
                "created": schemas::time::format_micros(p.created_at),
                "policy": serde_json::from_str::<Value>(&p.body).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Json(json!({ "versions": versions })).into_response())
}

async fn coverage(State(s): State<Arc<AppState>>, Extension(c): Extension<Caller>, Query(p): Params) -> Res {
    let now = schemas::time::now_micros();
    let from = time_param(&p, "from")?.unwrap_or(now - 7 * 86_400_000_000);
    let to = time_param(&p, "to")?;
    let platform = p.get("platform").map_or("Windows", String::as_str);
    if !["Windows", "Linux", "macOS"].contains(&platform) {
        return Err(ApiError::invalid(
            "bad_parameter",
            format!("platform={platform:?} must be Windows, Linux or macOS"),
        ));
    }
    let (_, _, _, _, policy) = current_policy(&s, &c.token.tenant).await?;
    // Events per technique in the range, from the lake.
    let upper = to.map(|to| format!(" AND time < to_timestamp_micros({to})")).unwrap_or_default();
    let q = format!(
        "SELECT t, count(*) FROM (SELECT unnest(threat_technique_id) AS t FROM events \
         WHERE time >= to_timestamp_micros({from}){upper}) GROUP BY t"
    );
    let out = s
        .store
        .sql(&c.token.tenant, &q, SqlLimits { max_rows: 100_000, timeout: Duration::from_secs(30) })
        .await?;
    let events: HashMap<String, u64> = out
        .rows
        .iter()
        .filter_map(|r| Some((r.first()?.as_str()?.to_owned(), r.get(1)?.as_u64()?)))
        .collect();
    let catalog = schemas::attack::catalog();
    let rules_for = |id: &str| -> Vec<Value> {
        s.rules
            .iter()
            .filter(|r| r.techniques.iter().any(|t| t == id || t.starts_with(&format!("{id}."))))
            .map(|r| json!({"id": r.id, "title": r.title, "level": r.level}))
            .collect()
    };
    let parents: std::collections::HashSet<&str> =
        catalog.techniques().iter().filter_map(|t| t.parent).collect();
    let (mut total, mut covered) = (0usize, 0usize);
    let tactics: Vec<Value> = catalog
        .tactics()
        .iter()
        .map(|tac| {
            let techniques: Vec<Value> = catalog
                .techniques()
                .iter()
                .filter(|t| t.parent.is_none() && t.tactics.contains(&tac.shortname))
                .map(|t| {
                    let subs: Vec<Value> = catalog
                        .techniques()
                        .iter()
                        .filter(|x| x.parent == Some(t.id))
                        .map(|x| {
                            let d = policy.decide(Some(x.id), &[tac.shortname], None);
                            json!({"id": x.id, "name": x.name, "tier": d.tier, "because": d.because,
                                   "rules": rules_for(x.id), "events": events.get(x.id).copied().unwrap_or(0)})
                        })
                        .collect();
                    let d = policy.decide(Some(t.id), &[tac.shortname], None);
                    json!({"id": t.id, "name": t.name, "tier": d.tier, "because": d.because,
                           "rules": rules_for(t.id), "events": events.get(t.id).copied().unwrap_or(0),
                           "subtechniques": subs})
                })
                .collect();
            json!({"id": tac.id, "shortname": tac.shortname, "name": tac.name, "techniques": techniques})
        })
        .collect();
    for t in catalog.techniques() {
        if parents.contains(t.id) || !t.platforms.contains(&platform) {
            continue;
        }
        total += 1;
        let exact = s.rules.iter().any(|r| r.techniques.iter().any(|x| x == t.id));
        let via_parent =
            t.parent.is_some_and(|p| s.rules.iter().any(|r| r.techniques.iter().any(|x| x == p)));
        covered += usize::from(exact || via_parent);
    }
    let tiers = policy.summary(platform, None);
    let text = format!(
        "covers {covered} of {total} {platform} endpoint (sub-)techniques with rules; policy: {} block, {} alert, {} record, {} off",
        tiers.block, tiers.alert, tiers.record, tiers.off
    );
    Ok(Json(json!({
        "summary": {"platform": platform, "techniques": total, "covered": covered, "tiers": tiers, "text": text},
        "tactics": tactics,
    }))
    .into_response())
}

async fn alerts(State(s): State<Arc<AppState>>, Extension(c): Extension<Caller>, Query(p): Params) -> Res {
    let level = match p.get("level") {
        None => None,
        Some(v) => Some(
            v.parse::<u8>()
                .ok()
                .filter(|l| (1..=5).contains(l))
                .ok_or_else(|| ApiError::invalid("bad_parameter", format!("level={v:?} must be 1 to 5")))?,
        ),
    };
    let one_of = |name: &'static str, allowed: &[&str]| -> Result<Option<String>, ApiError> {
        match p.get(name) {
            None => Ok(None),
            Some(v) if allowed.contains(&v.as_str()) => Ok(Some(v.clone())),
            Some(v) => {
                Err(ApiError::invalid("bad_parameter", format!("{name}={v:?} must be one of {allowed:?}")))
            }
        }
    };
    let f = store::catalog::AlertFilter {
        min_level: level,
        status: one_of("status", &["blocked", "alerted"])?,
        handling: one_of("handling", &["unhandled", "handled", "false_positive"])?,
        host: p.get("host").cloned(),
        technique: p.get("technique").map(|t| t.to_ascii_uppercase()),
        from: time_param(&p, "from")?,
        to: time_param(&p, "to")?,
        limit: limit_param(&p, 100)?,
    };
    let list = s.store.catalog().alerts(&c.token.tenant, &f).await.map_err(store::StoreError::from)?;
    Ok(Json(json!({ "alerts": list })).into_response())
}

async fn alert_get(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Res {
    let Some((alert, comments)) =
        s.store.catalog().alert(&c.token.tenant, &id).await.map_err(store::StoreError::from)?
    else {
        return Err(ApiError::not_found(format!("no alert {id}")));
    };
    // The evidence events themselves, from the lake (ids are Cordon's own: hex, `-` and `:`).
    let ids: Vec<&String> = alert
        .evidence
        .iter()
        .filter(|e| {
            !e.is_empty() && e.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '_'))
        })
        .collect();
    let mut events = Vec::new();
    if !ids.is_empty() {
        let list = ids.iter().map(|i| format!("'{i}'")).collect::<Vec<_>>().join(",");
        let q = format!("SELECT * FROM events WHERE event_id IN ({list}) ORDER BY time");
        let out = s
            .store
            .sql(&c.token.tenant, &q, SqlLimits { max_rows: 200, timeout: Duration::from_secs(30) })
            .await?;
        for row in out.rows {
            let obj: serde_json::Map<String, Value> =
                out.columns.iter().cloned().zip(row).filter(|(_, v)| !v.is_null()).collect();
            events.push(Value::Object(obj));
        }
    }
    Ok(Json(json!({ "alert": alert, "events": events, "comments": comments })).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertPatch {
    handling: schemas::alert::Handling,
    comment: String,
}

async fn alert_patch(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    let req: AlertPatch =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("bad_body", format!("body: {e}")))?;
    let found = s
        .store
        .catalog()
        .handle_alert(
            &c.token.tenant,
            &id,
            req.handling,
            req.comment.trim(),
            &c.token.name,
            schemas::time::now_micros(),
        )
        .await
        .map_err(store::StoreError::from)?;
    if !found {
        return Err(ApiError::not_found(format!("no alert {id}")));
    }
    Ok(Json(json!({ "id": id, "handling": req.handling })).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewBody {
    policy: Policy,
    #[serde(default = "seven")]
    days: u32,
}

fn seven() -> u32 {
    7
}

/// (technique or host) -> [current alerts, current blocks, proposed alerts, proposed blocks].
type Tally = std::collections::BTreeMap<String, [u64; 4]>;

async fn policy_preview(State(s): State<Arc<AppState>>, Extension(c): Extension<Caller>, body: Bytes) -> Res {
    let req: PreviewBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("bad_body", format!("body: {e}")))?;
    if !(1..=90).contains(&req.days) {
        return Err(ApiError::invalid("bad_body", format!("days={} must be from 1 to 90", req.days)));
    }
    let proposed = req.policy.validated().map_err(|e| ApiError::invalid("invalid_policy", e.to_string()))?;
    let (_, _, _, _, current) = current_policy(&s, &c.token.tenant).await?;
    let now = schemas::time::now_micros();
    let from = now - i64::from(req.days) * 86_400_000_000;
    let taggers = [
        correlate::sigma::Tagger::new(s.rules.clone(), current),
        correlate::sigma::Tagger::new(s.rules.clone(), proposed),
    ];
    let (events, by_technique, by_host) = s
        .store
        .scan(&c.token.tenant, from, i64::MAX, (0u64, Tally::new(), Tally::new()), move |acc, rec| {
            acc.0 += 1;
            for (k, t) in taggers.iter().enumerate() {
                for d in t.tag(&mut rec.clone()) {
                    let slot = match d.tier {
                        schemas::policy::Tier::Alert => 2 * k,
                        schemas::policy::Tier::Block => 2 * k + 1,
                        _ => continue,
                    };
                    for tech in &d.techniques {
                        acc.1.entry(tech.clone()).or_default()[slot] += 1;
                    }
                    acc.2.entry(rec.host().to_owned()).or_default()[slot] += 1;
                }
            }
        })
        .await?;
    let rows = |t: &Tally, key: &str| -> Vec<Value> {
        t.iter()
            .map(|(k, v)| {
                json!({key: k, "current": {"alerts": v[0], "blocks": v[1]}, "proposed": {"alerts": v[2], "blocks": v[3]}})
            })
            .collect()
    };
    let total = |i: usize| by_host.values().map(|v| v[i]).sum::<u64>();
    Ok(Json(json!({
        "days": req.days,
        "events_scanned": events,
        "current": {"alerts": total(0), "blocks": total(1)},
        "proposed": {"alerts": total(2), "blocks": total(3)},
        "by_technique": rows(&by_technique, "technique"),
        "by_host": rows(&by_host, "host"),
    }))
    .into_response())
}
