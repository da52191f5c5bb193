//! Investigation: incidents (list, one with its cross-host timeline, its graph, status/owner/comments),
//! a host's process tree, time-respecting path queries and neighbourhoods over the entity graph.
//!
//! Graph queries read the live graph ingest keeps (the hot window); a query that reaches further
//! back than the hot window gets a graph rebuilt from the lake for its time range instead.

use crate::error::ApiError;
use crate::graph_view::{NeighborsAnswer, PathAnswer, ProcessTreeAnswer, Source};
use crate::routes::{Params, Res, limit_param, time_param};
use crate::{AppState, Caller};
use anomaly::series::HOUR;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::response::IntoResponse;
use correlate::graph::{Graph, PathQuery, SearchLimits};
use correlate::incident::Incident;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The longest range a graph is rebuilt from the lake for (microseconds).
const MAX_LAKE_RANGE: i64 = 7 * 24 * 3_600_000_000;
/// Evidence events listed in one incident timeline.
const MAX_TIMELINE: usize = 2_000;

fn safe_id(e: &str) -> bool {
    !e.is_empty()
        && e.len() <= 200
        && e.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '_'))
}

/// Events by id from the lake, ordered by time, in the API's one event shape (nested ECS).
pub(crate) async fn events_by_id(
    s: &AppState,
    tenant: &str,
    ids: &[String],
    max: usize,
) -> Result<Vec<schemas::Record>, ApiError> {
    let ids: Vec<String> = ids.iter().filter(|e| safe_id(e)).take(max).cloned().collect();
    Ok(s.store.events_by_id(tenant, ids).await?)
}

/// Where a query with no start of its own begins: what the live graph covers (the hot window, or
/// less when the graph is at its edge budget), else the hot window before now.
fn live_start(s: &AppState, tenant: &str) -> i64 {
    s.graphs
        .read(tenant, Graph::covers_from)
        .unwrap_or_else(|| schemas::time::now_micros() - s.graphs.config().hot_window)
}

/// Runs `f` on the live graph when `from` lies inside its hot window, else on a graph rebuilt from
/// the lake for `[from, to)`.
async fn with_graph<T: Send + 'static>(
    s: &AppState,
    tenant: &str,
    from: i64,
    to: i64,
    f: impl FnOnce(&Graph) -> T + Send + 'static,
) -> Result<(T, Source), ApiError> {
    let live_from = s.graphs.read(tenant, Graph::covers_from);
    if let Some(start) = live_from
        && from >= start
    {
        // Holding the read lock for one query; writers wait for at most that long.
        let mut f = Some(f);
        if let Some(v) = s.graphs.read(tenant, |g| (f.take().expect("called once"))(g)) {
            return Ok((v, Source::Live));
        }
        return Err(ApiError::internal(&std::io::Error::other("the tenant's graph went away")));
    }
    let to = to.min(from.saturating_add(MAX_LAKE_RANGE));
    let mut recs =
        s.store.scan(tenant, from, to, Vec::new(), |acc: &mut Vec<schemas::Record>, r| acc.push(r)).await?;
    recs.sort_by_key(schemas::Record::time);
    let cfg = s.graphs.config().clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut g = Graph::new(cfg);
        for r in &recs {
            g.add(r);
        }
        f(&g)
    })
    .await
    .map_err(|e| ApiError::internal(&std::io::Error::other(e.to_string())))?;
    Ok((out, Source::Lake))
}

/// An optional integer parameter within `lo..=hi`.
fn int_param(
    p: &std::collections::HashMap<String, String>,
    name: &str,
    lo: i64,
    hi: i64,
) -> Result<Option<i64>, ApiError> {
    match p.get(name) {
        None => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::invalid(
                "bad_parameter",
                format!("{name}={v:?} must be an integer from {lo} to {hi}"),
            )),
        },
    }
}

fn incident_json(row: &store::catalog::IncidentRow) -> Value {
    let mut v = row.body.clone();
    if let Value::Object(o) = &mut v {
        o.insert("status".into(), json!(row.status));
        o.insert("owner".into(), json!(row.owner));
        o.insert("merged_into".into(), json!(row.merged_into));
        o.insert("created".into(), json!(row.created));
        o.insert("updated".into(), json!(row.updated));
        for k in ["first", "last"] {
            if let Some(t) = o.get(k).cloned() {
                o.insert(format!("{k}_seen"), t);
            }
        }
    }
    v
}

pub(crate) async fn incidents(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Query(p): Params,
) -> Res {
    let severity = int_param(&p, "severity", 1, 5)?.map(|v| v as u8);
    let status = match p.get("status") {
        None => None,
        Some(v) if v == "merged" || store::catalog::INCIDENT_STATUSES.contains(&v.as_str()) => {
            Some(v.clone())
        }
        Some(v) => {
            return Err(ApiError::invalid(
                "bad_parameter",
                format!("status={v:?} must be one of {:?} or \"merged\"", store::catalog::INCIDENT_STATUSES),
            ));
        }
    };
    let f = store::catalog::IncidentFilter {
        status,
        min_severity: severity,
        host: p.get("host").cloned(),
        technique: p.get("technique").map(|t| t.to_ascii_uppercase()),
        alert: match p.get("alert") {
            Some(a) if !a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || a.is_empty() => {
                return Err(ApiError::invalid("bad_parameter", format!("alert={a:?} is not an alert id")));
            }
            a => a.cloned(),
        },
        from: time_param(&p, "from")?,
        to: time_param(&p, "to")?,
        limit: limit_param(&p, 100)?,
    };
    let rows = s.store.catalog().incidents(&c.token.tenant, &f).await.map_err(store::StoreError::from)?;
    let list: Vec<Value> = rows.iter().map(incident_json).collect();
    Ok(Json(json!({ "incidents": list })).into_response())
}

async fn load(
    s: &AppState,
    tenant: &str,
    id: &str,
) -> Result<(store::catalog::IncidentRow, Vec<store::catalog::IncidentComment>, Incident), ApiError> {
    let Some((row, comments)) =
        s.store.catalog().incident(tenant, id).await.map_err(store::StoreError::from)?
    else {
        return Err(ApiError::not_found(format!("no incident {id}")));
    };
    let inc: Incident = serde_json::from_value(row.body.clone()).map_err(|e| {
        ApiError::internal(&std::io::Error::other(format!("stored incident does not parse: {e}")))
    })?;
    Ok((row, comments, inc))
}

pub(crate) async fn incident_get(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Res {
    let tenant = c.token.tenant.as_str();
    let (row, comments, inc) = load(&s, tenant, &id).await?;
    // The cross-host timeline: every evidence event of every alert, and the events that prove each
    // join, as one list in time order; each says what it is evidence of.
    let mut role: BTreeMap<String, (BTreeSet<String>, bool)> = BTreeMap::new();
    let mut alerts = Vec::new();
    let mut seen_alerts = BTreeSet::new();
    for a in &inc.alerts {
        if !seen_alerts.insert(a.alert.clone()) {
            continue;
        }
        if let Some((alert, _)) =
            s.store.catalog().alert(tenant, &a.alert).await.map_err(store::StoreError::from)?
        {
            for e in &alert.evidence {
                role.entry(e.clone()).or_default().0.insert(a.alert.clone());
            }
            alerts.push(json!({"anchor": a, "alert": alert}));
        }
    }
    for j in &inc.joins {
        for h in &j.hops {
            for e in &h.events {
                role.entry(e.clone()).or_default().1 = true;
            }
        }
    }
    for cn in &inc.contacts {
        for e in &cn.events {
            role.entry(e.clone()).or_default().1 = true;
        }
    }
    let ids: Vec<String> = role.keys().take(MAX_TIMELINE).cloned().collect();
    let events = events_by_id(&s, tenant, &ids, MAX_TIMELINE).await?;
    let timeline: Vec<Value> = events
        .iter()
        .map(|e| {
            let id = e.get("event_id").and_then(|c| c.as_str()).unwrap_or_default();
            let (of, link) = role.get(id).cloned().unwrap_or_default();
            json!({"event": e.to_ecs_json(), "evidence_of": of, "link": link})
        })
        .collect();
    Ok(Json(json!({
        "incident": incident_json(&row),
        "alerts": alerts,
        "timeline": timeline,
        "timeline_truncated": role.len() > MAX_TIMELINE,
        "comments": comments,
    }))
    .into_response())
}

pub(crate) async fn incident_graph(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Res {
    let tenant = c.token.tenant.clone();
    let (_, _, inc) = load(&s, &tenant, &id).await?;
    // From the incident itself: anchors, hops, contacts; from the graph (live, or rebuilt for the
    // incident's time): the process ancestry of each anchor and the nodes' attributes.
    let from = inc.first - 3_600_000_000;
    let to = inc.last + 3_600_000_000;
    let inc2 = inc.clone();
    let ((nodes, edges), source) =
        with_graph(&s, &tenant, from, to, move |g| crate::graph_view::incident_graph(g, &inc2)).await?;
    Ok(Json(crate::graph_view::IncidentGraph { incident: id, source, nodes, edges }).into_response())
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IncidentPatch {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    owner: Option<String>,
    comment: String,
}

pub(crate) async fn incident_patch(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    let req: IncidentPatch =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("bad_body", format!("body: {e}")))?;
    if let Some(st) = &req.status
        && !store::catalog::INCIDENT_STATUSES.contains(&st.as_str())
    {
        return Err(ApiError::invalid(
            "bad_body",
            format!("status {st:?} must be one of {:?}", store::catalog::INCIDENT_STATUSES),
        ));
    }
    if req.status.is_none() && req.owner.is_none() && req.comment.trim().is_empty() {
        return Err(ApiError::invalid("bad_body", "nothing to change: give status, owner or a comment"));
    }
    if req.owner.as_ref().is_some_and(|o| o.len() > 200) {
        return Err(ApiError::invalid("bad_body", "owner is longer than 200 characters"));
    }
    let found = s
        .store
        .catalog()
        .update_incident(
            &c.token.tenant,
            &id,
            &store::catalog::IncidentChange {
                status: req.status.clone(),
                owner: req.owner.clone(),
                comment: req.comment.trim().to_owned(),
                author: c.token.name.clone(),
            },
            schemas::time::now_micros(),
        )
        .await
        .map_err(store::StoreError::from)?;
    if !found {
        return Err(ApiError::not_found(format!("no incident {id}")));
    }
    let (row, comments, _) = load(&s, &c.token.tenant, &id).await?;
    Ok(Json(json!({"incident": incident_json(&row), "comments": comments})).into_response())
}

pub(crate) async fn process_tree(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(host): Path<String>,
    Query(p): Params,
) -> Res {
    let tenant = c.token.tenant.clone();
    let half = int_param(&p, "window", 1, 7 * 24 * 60)?.unwrap_or(60) * 60_000_000; // minutes
    let (at, focus) = match (p.get("event"), time_param(&p, "at")?) {
        (Some(ev), _) => {
            if !safe_id(ev) {
                return Err(ApiError::invalid("bad_parameter", format!("event={ev:?} is not an event id")));
            }
            let found = events_by_id(&s, &tenant, std::slice::from_ref(ev), 1).await?;
            let Some(e) = found.first() else {
                return Err(ApiError::not_found(format!("no event {ev}")));
            };
            let on = e.get("host_name").and_then(|c| c.as_str()).unwrap_or_default();
            if on != host {
                return Err(ApiError::invalid(
                    "bad_parameter",
                    format!("event {ev} is on host {on:?}, not {host}"),
                ));
            }
            let key = e.get("process_entity_id").and_then(|c| c.as_str()).map(str::to_owned).or_else(|| {
                match e.get("process_pid") {
                    Some(schemas::Cell::Int(pid)) => Some(format!("{host}|pid:{pid}")),
                    _ => None,
                }
            });
            (e.time(), key.map(|k| format!("process:{k}")))
        }
        (None, Some(t)) => (t, None),
        (None, None) => {
            return Err(ApiError::invalid("bad_parameter", "give at=<time> or event=<event id>"));
        }
    };
    let (from, to) = (at - half, at + half);
    let h = host.clone();
    let (tree, source) = with_graph(&s, &tenant, from, to, move |g| g.process_tree(&h, from, to)).await?;
    Ok(Json(ProcessTreeAnswer { host, from, to, focus, source, processes: tree }).into_response())
}

pub(crate) async fn graph_paths(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Query(p): Params,
) -> Res {
    let tenant = c.token.tenant.clone();
    let from_id = p.get("from").cloned().ok_or_else(|| {
        ApiError::invalid("bad_parameter", "from=<node id> is required (kind:key, or a host name)")
    })?;
    let to_id = p.get("to").cloned().unwrap_or_else(|| "external".to_owned());
    let since = time_param(&p, "since")?.unwrap_or(0);
    let until = time_param(&p, "until")?.unwrap_or(i64::MAX);
    let max_hops = int_param(&p, "max_hops", 1, 64)?.unwrap_or(16) as usize;
    let lake_from = if since == 0 { live_start(&s, &tenant) } else { since };
    let (out, source) = with_graph(&s, &tenant, lake_from, until, move |g| {
        let Some(start) = g.find_id(&from_id) else { return Err(format!("no node {from_id} in the graph")) };
        let to = match to_id.as_str() {
            "external" | "" => None,
            id => Some(g.find_id(id).ok_or_else(|| format!("no node {id} in the graph"))?),
        };
        let q = PathQuery {
            from: start,
            to,
            since,
            limits: SearchLimits { until, max_hops, ..SearchLimits::default() },
        };
        Ok(g.path(&q))
    })
    .await?;
    let (path, truncated) = out.map_err(ApiError::not_found)?;
    Ok(Json(PathAnswer { found: path.is_some(), hops: path.unwrap_or_default(), truncated, source })
        .into_response())
}

pub(crate) async fn graph_neighbors(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Query(p): Params,
) -> Res {
    let tenant = c.token.tenant.clone();
    let id = p.get("node").cloned().ok_or_else(|| {
        ApiError::invalid("bad_parameter", "node=<node id> is required (kind:key, or a host name)")
    })?;
    let hops = int_param(&p, "hops", 1, 4)?.unwrap_or(1) as usize;
    let from = time_param(&p, "from")?.unwrap_or(0);
    let to = time_param(&p, "to")?.unwrap_or(i64::MAX);
    let limit = limit_param(&p, 500)?;
    let lake_from = if from == 0 { live_start(&s, &tenant) } else { from };
    let (out, source) = with_graph(&s, &tenant, lake_from, to, move |g| {
        let start = g.find_id(&id).ok_or_else(|| format!("no node {id} in the graph"))?;
        Ok::<_, String>(g.neighbors(start, hops, from, to, limit))
    })
    .await?;
    let sub = out.map_err(ApiError::not_found)?;
    Ok(Json(NeighborsAnswer { sub, source }).into_response())
}

pub(crate) async fn host_logins(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(host): Path<String>,
    Query(p): Params,
) -> Res {
    // Default: the last seven days, to the end of the current hour.
    let now = schemas::time::now_micros();
    let to = time_param(&p, "to")?.unwrap_or(anomaly::series::hour_floor(now) + HOUR);
    let from = time_param(&p, "from")?.unwrap_or(to - 7 * 24 * HOUR);
    if from >= to {
        return Err(ApiError::invalid("bad_parameter", "from must be before to"));
    }
    if to - from > 400 * 24 * HOUR {
        return Err(ApiError::invalid("bad_parameter", "at most 400 days of hourly series at once"));
    }
    let counts = s.store.login_counts(&c.token.tenant, Some(&host), from, to).await?;
    let series = anomaly::series::LoginSeries::from_counts(&counts, from, to)
        .pop()
        .unwrap_or_else(|| anomaly::series::LoginSeries::empty(&host, from, to));
    let models = s.baselines.models(&c.token.tenant);
    let running = s.baselines.recent(&c.token.tenant, &host);
    Ok(Json(crate::logins_view::LoginsAnswer::new(host, series, models.as_deref(), running)).into_response())
}

/// Refits the caller's tenant's baselines now.
pub(crate) async fn refit(State(s): State<Arc<AppState>>, Extension(c): Extension<Caller>) -> Res {
    let report = crate::baselines::refit(
        &s.store,
        &s.baselines,
        &c.token.tenant,
        &s.forecast,
        anomaly::pool::default_threads(),
        schemas::time::now_micros(),
    )
    .await
    .map_err(|e| ApiError::internal(&e))?;
    Ok(Json(json!({ "refit": report })).into_response())
}
