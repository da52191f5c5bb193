//! The handlers. Parameters are parsed by hand from the query map so every bad value gets a precise,
//! named error instead of a generic rejection.

use crate::detection;
use crate::error::ApiError;
use crate::investigate;
use crate::ioc::classify;
use crate::{AppState, Caller, RouteSpec};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{Method, header};
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use store::index::SearchQuery;
use store::query::{SqlLimits, TimelineQuery};

pub(crate) type Params = Query<HashMap<String, String>>;
pub(crate) type Res = Result<axum::response::Response, ApiError>;

/// The handler of a route in the table.
pub(crate) fn handler(spec: &RouteSpec) -> MethodRouter<Arc<AppState>> {
    match (spec.method.clone(), spec.path) {
        (Method::GET, "/healthz") => get(healthz),
        (Method::GET, "/readyz") => get(readyz),
        (Method::GET, "/metrics") => get(metrics),
        (Method::GET, "/api/v1/openapi.json") => get(|| async { Json(crate::openapi()) }),
        (Method::POST, "/api/v1/session") => post(crate::session::sign_in),
        (Method::GET, "/api/v1/session") => get(crate::session::current),
        (Method::DELETE, "/api/v1/session") => delete(crate::session::sign_out),
        (Method::GET, "/api/v1/hosts") => get(hosts),
        (Method::GET, "/api/v1/agents") => get(agents),
        (Method::GET, "/api/v1/hosts/{host}/timeline") => get(timeline),
        (Method::GET, "/api/v1/search") => get(search),
        (Method::POST, "/api/v1/iocs/sweep") => post(sweep).layer(DefaultBodyLimit::max(4 * 1024 * 1024)),
        (Method::POST, "/api/v1/sql") => post(sql).layer(DefaultBodyLimit::max(64 * 1024)),
        (Method::GET, "/api/v1/policy") => get(detection::policy_get),
        (Method::PUT, "/api/v1/policy") => {
            put(detection::policy_put).layer(DefaultBodyLimit::max(1024 * 1024))
        }
        (Method::GET, "/api/v1/policy/versions") => get(detection::policy_versions),
        (Method::POST, "/api/v1/policy/preview") => {
            post(detection::policy_preview).layer(DefaultBodyLimit::max(1024 * 1024))
        }
        (Method::GET, "/api/v1/attack/coverage") => get(detection::coverage),
        (Method::GET, "/api/v1/rules") => get(detection::rules),
        (Method::GET, "/api/v1/alerts") => get(detection::alerts),
        (Method::GET, "/api/v1/alerts/stream") => get(crate::live::alert_stream),
        (Method::GET, "/api/v1/alerts/{id}") => get(detection::alert_get),
        (Method::PATCH, "/api/v1/alerts/{id}") => {
            patch(detection::alert_patch).layer(DefaultBodyLimit::max(64 * 1024))
        }
        (Method::GET, "/api/v1/incidents") => get(investigate::incidents),
        (Method::GET, "/api/v1/incidents/{id}") => get(investigate::incident_get),
        (Method::GET, "/api/v1/incidents/{id}/graph") => get(investigate::incident_graph),
        (Method::PATCH, "/api/v1/incidents/{id}") => {
            patch(investigate::incident_patch).layer(DefaultBodyLimit::max(64 * 1024))
        }
        (Method::GET, "/api/v1/hosts/{host}/process-tree") => get(investigate::process_tree),
        (Method::GET, "/api/v1/hosts/{host}/logins") => get(investigate::host_logins),
        (Method::GET, "/api/v1/anomalies") => get(detection::anomalies),
        (Method::POST, "/api/v1/baselines/refit") => post(investigate::refit),
        (Method::GET, "/api/v1/reports") => get(crate::reports::reports),
        (Method::GET, "/api/v1/reports/{id}") => get(crate::reports::report_get),
        (Method::POST, "/api/v1/reports/run") => {
            post(crate::reports::report_run).layer(DefaultBodyLimit::max(16 * 1024))
        }
        (Method::GET, "/api/v1/graph/paths") => get(investigate::graph_paths),
        (Method::GET, "/api/v1/graph/neighbors") => get(investigate::graph_neighbors),
        (Method::GET, "/api/v1/audit") => get(crate::trust::audit),
        (Method::POST, "/api/v1/enroll") => post(crate::enroll::enroll),
        (Method::GET, "/api/v1/agents/enrolled") => get(crate::enroll::enrolled),
        (Method::GET, "/api/v1/dead-letters") => get(crate::trust::dead_letters),
        (Method::GET, "/api/v1/response/schema") => get(crate::response::schema),
        (Method::POST, "/api/v1/response/validate") => {
            post(crate::response::validate).layer(DefaultBodyLimit::max(256 * 1024))
        }
        (Method::GET, "/api/v1/response/approvers") => get(crate::requests::approvers),
        (Method::POST, "/api/v1/response/approvers") => {
            post(crate::requests::approver_add).layer(DefaultBodyLimit::max(16 * 1024))
        }
        (Method::DELETE, "/api/v1/response/approvers/{key}") => delete(crate::requests::approver_revoke),
        (Method::GET, "/api/v1/response/settings") => get(crate::requests::settings),
        (Method::PUT, "/api/v1/response/settings") => {
            put(crate::requests::settings_put).layer(DefaultBodyLimit::max(16 * 1024))
        }
        (Method::GET, "/api/v1/response/requests") => get(crate::requests::requests),
        (Method::POST, "/api/v1/response/requests") => {
            post(crate::requests::request_create).layer(DefaultBodyLimit::max(256 * 1024))
        }
        (Method::GET, "/api/v1/response/requests/{id}") => get(crate::requests::request_get),
        (Method::POST, "/api/v1/response/requests/{id}/approvals") => {
            post(crate::requests::request_approve).layer(DefaultBodyLimit::max(16 * 1024))
        }
        (Method::POST, "/api/v1/response/requests/{id}/cancel") => post(crate::requests::request_cancel),
        (Method::GET, "/api/v1/response/approver-sets") => get(crate::approver_sets::list),
        (Method::POST, "/api/v1/response/approver-sets") => post(crate::approver_sets::propose),
        (Method::POST, "/api/v1/response/approver-sets/{version}/approvals") => {
            post(crate::approver_sets::approve).layer(DefaultBodyLimit::max(16 * 1024))
        }
        (Method::GET, "/api/v1/response/standing") => get(crate::standing::list),
        (Method::POST, "/api/v1/response/standing") => {
            post(crate::standing::create).layer(DefaultBodyLimit::max(256 * 1024))
        }
        (Method::GET, "/api/v1/response/standing/{id}") => get(crate::standing::get),
        (Method::POST, "/api/v1/response/standing/{id}/approvals") => {
            post(crate::standing::approve).layer(DefaultBodyLimit::max(16 * 1024))
        }
        (Method::POST, "/api/v1/response/standing/{id}/withdraw") => post(crate::standing::withdraw),
        (m, p) => unreachable!("route {m} {p} is in ROUTES but has no handler"),
    }
}

pub(crate) fn time_param(p: &HashMap<String, String>, name: &'static str) -> Result<Option<i64>, ApiError> {
    let Some(v) = p.get(name).filter(|v| !v.is_empty()) else { return Ok(None) };
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(Some(ms.saturating_mul(1000)));
    }
    schemas::time::parse_rfc3339_micros(v).map(Some).ok_or_else(|| {
        ApiError::invalid("bad_parameter", format!("{name}={v:?} is neither RFC 3339 nor epoch milliseconds"))
    })
}

pub(crate) fn limit_param(p: &HashMap<String, String>, default: usize) -> Result<usize, ApiError> {
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

/// `GET /healthz`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct Health {
    /// `ok`.
    status: &'static str,
    /// Events in the full-text index.
    indexed_events: u64,
}

async fn healthz(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    Json(Health { status: "ok", indexed_events: s.store.indexed_docs() })
}

/// `GET /readyz`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct Ready {
    /// `ready` once ingest consumes from JetStream; `starting` while it waits for it (a NATS cluster
    /// without quorum) or restores its analysers from the lake.
    status: &'static str,
}

/// 200 once ingest consumes, 503 before: a load balancer or an orchestrator sends agents' and
/// analysts' traffic here when it answers 200; `/healthz` only says the process is up.
async fn readyz(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let ready = s.ingest_ready.get().is_none_or(|r| r.load(std::sync::atomic::Ordering::Acquire));
    let (code, status) = if ready {
        (axum::http::StatusCode::OK, "ready")
    } else {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "starting")
    };
    (code, Json(Ready { status }))
}

async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    s.metrics.process();
    let docs = s.store.indexed_docs();
    s.metrics.set_gauge("cordon_index_docs", "", "Documents in the full-text index.", docs);
    s.metrics.set_gauge(
        "cordon_index_behind",
        "",
        "1 while the index has failed a write and not yet caught up with the lake (a full disk).",
        u64::from(s.store.index_is_behind()),
    );
    // The catalog's count is the truth the others are measured against; a metadata database that is
    // down leaves these two out rather than failing the scrape.
    if let Ok(rows) = s.store.catalog().live_rows().await {
        let rows = u64::try_from(rows).unwrap_or(0);
        s.metrics.set_gauge("cordon_lake_rows", "", "Events the lake holds (from the catalog).", rows);
        s.metrics.set_gauge(
            "cordon_index_lag_events",
            "",
            "Events in the lake not yet searchable (lake rows minus index documents).",
            rows.saturating_sub(docs),
        );
    }
    s.metrics.set_gauge(
        "cordon_lake_footer_cache_bytes",
        "",
        "Bytes of parsed Parquet footers kept for point reads (at most 64 MiB).",
        s.store.footer_cache_bytes(),
    );
    s.metrics.set_gauge(
        "cordon_lake_scrubs",
        "",
        "Scrubs of every lake file's checksum finished since start.",
        s.store.scrubs_finished(),
    );
    if let Ok(damaged) = s.store.catalog().damaged_files().await {
        let rows = damaged.iter().map(|d| u64::try_from(d.rows).unwrap_or(0)).sum();
        s.metrics.set_gauge(
            "cordon_lake_damaged_files",
            "",
            "Lake files quarantined as damaged (by a scrub, index catch-up or a query), for good.",
            damaged.len() as u64,
        );
        s.metrics.set_gauge("cordon_lake_damaged_rows", "", "Rows lost with quarantined lake files.", rows);
    }
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
    let hosts = rows
        .iter()
        .map(|h| HostView {
            host: h.host.clone(),
            agent_id: h.agent_id.clone(),
            events: h.events,
            first_seen: h.first_seen,
            last_seen: h.last_seen,
        })
        .collect();
    Ok(Json(HostList { hosts }).into_response())
}

/// `GET /api/v1/hosts`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct HostList {
    hosts: Vec<HostView>,
}

/// A host with the agent that reported it, its event count and first and last events.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct HostView {
    host: String,
    agent_id: String,
    events: i64,
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    first_seen: i64,
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    last_seen: i64,
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
    let agents = rows
        .iter()
        .map(|a| {
            let status = if now - a.last_heartbeat > dead {
                AgentStatus::Dead
            } else if now - a.last_activity > silent {
                AgentStatus::Silent
            } else {
                AgentStatus::Active
            };
            AgentView {
                agent_id: a.agent_id.clone(),
                host: a.host.clone(),
                status,
                boot: a.boot,
                last_heartbeat: a.last_heartbeat,
                last_activity: a.last_activity,
                events_in: a.events_in,
                events_acked: a.events_acked,
                events_dropped: a.events_dropped,
                spool_bytes: a.spool_bytes,
                stopping: a.state.as_ref().is_some_and(|h| h.stopping),
                sources: a.state.as_ref().map(|h| h.sources.clone()).unwrap_or_default(),
            }
        })
        .collect();
    Ok(Json(AgentList { agents }).into_response())
}

/// `GET /api/v1/agents`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct AgentList {
    agents: Vec<AgentView>,
}

/// Whether an agent is heard from: see [`agents`].
#[derive(serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
enum AgentStatus {
    Active,
    Silent,
    Dead,
}

/// One agent with its status, last heartbeat and activity, and the counters its heartbeats carry.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct AgentView {
    agent_id: String,
    host: String,
    status: AgentStatus,
    /// The agent process's boot counter.
    boot: i64,
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    last_heartbeat: i64,
    /// The last heartbeat that reported new events.
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    last_activity: i64,
    events_in: i64,
    events_acked: i64,
    events_dropped: i64,
    spool_bytes: i64,
    /// Its last heartbeat said it was stopping deliberately.
    stopping: bool,
    /// A live agent's sources as its last heartbeat reported them (empty for replays).
    sources: Vec<schemas::wire::SourceHealth>,
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

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SweepBody {
    iocs: Vec<String>,
}

/// One indicator's result: where it was seen, or why it is not one.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(crate) enum SweepResult {
    /// Swept: the hosts that saw it.
    Swept {
        /// As given.
        ioc: String,
        /// Refanged and normalised.
        value: String,
        /// `ip`, `domain`, `url`, `sha256`...
        #[serde(rename = "type")]
        kind: String,
        /// Events that carry it, fleet-wide.
        total: u64,
        hosts: Vec<store::index::HostMatches>,
    },
    /// Not an indicator.
    Refused { ioc: String, error: String },
}

/// `POST /api/v1/iocs/sweep`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct SweepAnswer {
    /// Indicators given.
    swept: usize,
    /// Indicators seen somewhere.
    matched: usize,
    results: Vec<SweepResult>,
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
    let mut results: Vec<SweepResult> = Vec::new();
    for (i, raw) in req.iocs.iter().enumerate() {
        match classify(raw) {
            Ok(ioc) => valid.push((i, ioc)),
            Err(e) => results.push(SweepResult::Refused { ioc: raw.clone(), error: e.to_string() }),
        }
    }
    let found = s
        .store
        .sweep(&c.token.tenant, valid.iter().map(|(_, i)| (i.field, i.value.clone())).collect())
        .await?;
    let mut matched = 0;
    for ((_, ioc), hosts) in valid.iter().zip(found) {
        let total: u64 = hosts.iter().map(|h| h.count).sum();
        matched += usize::from(total > 0);
        results.push(SweepResult::Swept {
            ioc: ioc.input.clone(),
            value: ioc.value.clone(),
            kind: ioc.kind.to_owned(),
            total,
            hosts,
        });
    }
    Ok(Json(SweepAnswer { swept: req.iocs.len(), matched, results }).into_response())
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SqlBody {
    sql: String,
    #[serde(default)]
    max_rows: Option<usize>,
}

async fn sql(State(s): State<Arc<AppState>>, Extension(c): Extension<Caller>, body: Bytes) -> Res {
    let req: SqlBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("bad_body", format!("body: {e}")))?;
    let limits = SqlLimits {
        max_rows: req.max_rows.unwrap_or(10_000).clamp(1, 100_000),
        timeout: s.sql_timeout.get().copied().unwrap_or(Duration::from_secs(30)),
    };
    let out = s.store.analyst_sql(&c.token.tenant, &req.sql, limits).await?;
    Ok(Json(out).into_response())
}
