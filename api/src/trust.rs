//! The trust routes: the audit chain (admins) and the dead letters (rule authors and admins).

use crate::error::ApiError;
use crate::routes::{Params, Res, limit_param};
use crate::{AppState, Caller};
use axum::Json;
use axum::extract::{Extension, Query, State};
use axum::response::IntoResponse;
use std::collections::HashMap;
use std::sync::Arc;

fn int_param(p: &HashMap<String, String>, name: &'static str) -> Result<Option<i64>, ApiError> {
    match p.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse::<i64>().ok().filter(|n| *n >= 0).map(Some).ok_or_else(|| {
            ApiError::invalid("bad_parameter", format!("{name}={v:?} must be a non-negative integer"))
        }),
    }
}

/// One row of the audit chain: each row's hash covers the row and the hash before it.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct AuditEntry {
    seq: i64,
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    time: i64,
    actor: String,
    action: String,
    target: String,
    /// What the action carried (JSON where it was JSON).
    detail: serde_json::Value,
    prev_hash: String,
    hash: String,
}

/// `GET /api/v1/audit`: oldest first; `next_after` continues.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct AuditAnswer {
    entries: Vec<AuditEntry>,
    next_after: Option<i64>,
}

/// A refused line or message, kept with its reason.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct DeadLetterView {
    id: String,
    agent_id: String,
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    time: i64,
    stream_seq: i64,
    line: Option<i64>,
    /// Why it was refused (`malformed_json`, `unknown_field`, `oversized`...).
    reason: String,
    detail: String,
    /// The refused bytes (cut at the dead-letter limit).
    raw: String,
    raw_bytes: i64,
}

/// `GET /api/v1/dead-letters`: newest first; `next_cursor` continues.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct DeadLetters {
    dead_letters: Vec<DeadLetterView>,
    next_cursor: Option<String>,
}

/// `GET /api/v1/audit`: the tenant's audit rows after `after`, oldest first.
pub(crate) async fn audit(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Query(p): Params,
) -> Res {
    let after = int_param(&p, "after")?.unwrap_or(0);
    let limit = limit_param(&p, 100)?;
    let rows = s
        .store
        .catalog()
        .audit_log(&c.token.tenant, after, limit as i64)
        .await
        .map_err(store::StoreError::from)?;
    let next_after = (rows.len() == limit).then(|| rows.last().map(|r| r.seq)).flatten();
    let entries = rows
        .into_iter()
        .map(|r| AuditEntry {
            seq: r.seq,
            time: r.time,
            actor: r.actor,
            action: r.action,
            target: r.target,
            detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::String(r.detail)),
            prev_hash: r.prev_hash,
            hash: r.hash,
        })
        .collect();
    Ok(Json(AuditAnswer { entries, next_after }).into_response())
}

/// `GET /api/v1/dead-letters`: the tenant's refused lines and messages, newest first.
pub(crate) async fn dead_letters(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Query(p): Params,
) -> Res {
    let limit = limit_param(&p, 100)?;
    let before = int_param(&p, "cursor")?;
    let agent = p.get("agent").map(String::as_str).filter(|v| !v.is_empty());
    let reason = p.get("reason").map(String::as_str).filter(|v| !v.is_empty());
    let rows = s
        .store
        .catalog()
        .dead_letters(&c.token.tenant, agent, reason, before, limit as i64)
        .await
        .map_err(store::StoreError::from)?;
    let next_cursor = (rows.len() == limit).then(|| rows.last().map(|r| r.0.to_string())).flatten();
    let dead_letters = rows
        .into_iter()
        .map(|(_, d)| DeadLetterView {
            id: d.id,
            agent_id: d.agent_id,
            time: d.time,
            stream_seq: d.stream_seq,
            line: d.line,
            reason: d.reason,
            detail: d.detail,
            raw: d.raw,
            raw_bytes: d.raw_bytes,
        })
        .collect();
    Ok(Json(DeadLetters { dead_letters, next_cursor }).into_response())
}
