//! Response requests over the API (issue 17 items 3 and 5): approvers' public keys registered by
//! admins, requests made by analysts, approvals signed on approvers' own machines and handed in by
//! their owners, cancel, and the tenant's lockdown switch. The server verifies and stores; it holds
//! no key that can make an agent act.
//!
//! A request's body is the command text ([`CommandBody`] as JSON) with each target's next counter
//! already in it, so approvers sign exactly what agents will verify. Nobody approves their own
//! request, and an approval counts only when handed in by the token its key was registered to.

use crate::error::{ApiError, Kind};
use crate::requests_view::{RequestList, RequestView};
use crate::response::invalid_rule;
use crate::response_view::{ApproverRevoked, ApproverView, Approvers, SettingsView};
use crate::routes::{Params, Res, limit_param};
use crate::{AppState, Caller};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use schemas::response::command::{COMMAND_DOMAIN, CommandBody, MAX_TTL_MICROS};
use schemas::response::parse;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use store::catalog::{ApprovalRow, NewRequest, RequestRefusal};

/// Targets one request may name at most.
const MAX_TARGETS: usize = 1000;
/// Longest reason, bytes.
const MAX_REASON: usize = 1024;

fn body_of<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid("bad_body", format!("body: {e}")))
}

fn store_err(e: store::catalog::CatalogError) -> ApiError {
    store::StoreError::from(e).into()
}

fn refused(kind: Kind, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError { kind, code, message: message.into() }
}

async fn refuse_in_lockdown(s: &AppState, tenant: &str) -> Result<(), ApiError> {
    if s.store.catalog().response_lockdown(tenant).await.map_err(store_err)? {
        return Err(refused(
            Kind::Conflict,
            "lockdown",
            "response is locked down for this tenant: no request, approval or dispatch until an admin lifts it",
        ));
    }
    Ok(())
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewApprover {
    name: String,
    public_key: String,
    owner_token: String,
}

/// `POST /api/v1/response/approvers` (admin): registers an approver's public key, bound to the API
/// token that will hand in its approvals.
pub(crate) async fn approver_add(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    body: Bytes,
) -> Res {
    let a: NewApprover = body_of(&body)?;
    let key = a.public_key.to_ascii_lowercase();
    schemas::signed::check_public_key(&key)
        .map_err(|e| ApiError::invalid("bad_public_key", format!("public_key: {e}")))?;
    if a.name.trim().is_empty() || a.owner_token.trim().is_empty() {
        return Err(ApiError::invalid("bad_body", "name and owner_token must not be empty"));
    }
    let now = schemas::time::now_micros();
    let catalog = s.store.catalog();
    catalog.add_approver(&c.token.tenant, &key, &a.name, &a.owner_token, now).await.map_err(store_err)?;
    let body = ApproverView {
        public_key: key,
        name: a.name,
        owner_token: a.owner_token,
        added_at: now,
        revoked_at: None,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /api/v1/response/approvers`: the tenant's approvers, revoked ones included.
pub(crate) async fn approvers(State(s): State<Arc<AppState>>, Extension(c): Extension<Caller>) -> Res {
    let rows = s.store.catalog().approvers(&c.token.tenant).await.map_err(store_err)?;
    let approvers = rows
        .into_iter()
        .map(|a| ApproverView {
            public_key: a.public_key,
            name: a.name,
            owner_token: a.owner_token,
            added_at: a.added_at,
            revoked_at: a.revoked_at,
        })
        .collect();
    Ok(Json(Approvers { approvers }).into_response())
}

/// `DELETE /api/v1/response/approvers/{key}` (admin): the key's approvals no longer count.
pub(crate) async fn approver_revoke(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(key): Path<String>,
) -> Res {
    let now = schemas::time::now_micros();
    let key = key.to_ascii_lowercase();
    if !s.store.catalog().revoke_approver(&c.token.tenant, &key, now).await.map_err(store_err)? {
        return Err(ApiError::not_found(format!("no live approver with key {key}")));
    }
    Ok(Json(ApproverRevoked { public_key: key, revoked_at: now }).into_response())
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    lockdown: Option<bool>,
    approvals_needed: Option<i64>,
    max_destructive_targets: Option<i64>,
    scripts: Option<bool>,
}

async fn settings_json(s: &AppState, tenant: &str) -> Result<SettingsView, ApiError> {
    let c = s.store.catalog();
    Ok(SettingsView {
        lockdown: c.response_lockdown(tenant).await.map_err(store_err)?,
        approvals_needed: c.response_threshold(tenant).await.map_err(store_err)?,
        max_destructive_targets: c.response_max_targets(tenant).await.map_err(store_err)?,
        scripts: c.response_scripts(tenant).await.map_err(store_err)?,
    })
}

/// `GET /api/v1/response/settings`.
pub(crate) async fn settings(State(s): State<Arc<AppState>>, Extension(c): Extension<Caller>) -> Res {
    Ok(Json(settings_json(&s, &c.token.tenant).await?).into_response())
}

/// `PUT /api/v1/response/settings` (admin): the lockdown switch and the approvals a destructive
/// request needs (2 at least).
pub(crate) async fn settings_put(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    body: Bytes,
) -> Res {
    let set: Settings = body_of(&body)?;
    if let Some(k) = set.approvals_needed.filter(|k| !(2..=16).contains(k)) {
        return Err(ApiError::invalid("bad_body", format!("approvals_needed {k} must be from 2 to 16")));
    }
    if let Some(n) = set.max_destructive_targets.filter(|n| !(1..=MAX_TARGETS as i64).contains(n)) {
        return Err(ApiError::invalid(
            "bad_body",
            format!("max_destructive_targets {n} must be from 1 to {MAX_TARGETS}"),
        ));
    }
    let tenant = &c.token.tenant;
    s.store
        .catalog()
        .set_response_settings(
            tenant,
            &store::catalog::ResponseSettings {
                lockdown: set.lockdown,
                threshold: set.approvals_needed,
                max_targets: set.max_destructive_targets,
                scripts: set.scripts,
            },
        )
        .await
        .map_err(store_err)?;
    Ok(Json(settings_json(&s, tenant).await?).into_response())
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRequestBody {
    #[schemars(schema_with = "crate::openapi::response_rule")]
    rule: Value,
    targets: Vec<String>,
    reason: String,
    #[serde(default)]
    ttl_secs: Option<i64>,
}

/// `POST /api/v1/response/requests` (handle): a request for `rule` on `targets`, waiting for
/// approvals; 400 naming every malformed field, unknown target or bad validity.
pub(crate) async fn request_create(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    body: Bytes,
) -> Res {
    let req: NewRequestBody = body_of(&body)?;
    let tenant = c.token.tenant.clone();
    refuse_in_lockdown(&s, &tenant).await?;
    let rule = match parse(&req.rule) {
        Ok(r) => r,
        Err(errs) => return Ok(invalid_rule(&errs)),
    };
    let ttl = ttl_micros(req.ttl_secs)?;
    if req.reason.trim().is_empty() || req.reason.len() > MAX_REASON {
        return Err(ApiError::invalid("bad_reason", format!("reason must be 1 to {MAX_REASON} bytes")));
    }
    let targets = known_targets(&s, &tenant, &req.targets).await?;
    let catalog = s.store.catalog();
    if rule.runs_scripts() && !catalog.response_scripts(&tenant).await.map_err(store_err)? {
        return Err(refused(
            Kind::Conflict,
            "scripts_disabled",
            "scripts are off in this tenant: an admin turns them on (PUT /api/v1/response/settings {\"scripts\": true}), and each agent runs only the scripts it allows by hash",
        ));
    }
    let cap = catalog.response_max_targets(&tenant).await.map_err(store_err)?;
    if rule.is_destructive() && targets.len() as i64 > cap {
        return Err(ApiError::invalid(
            "over_target_cap",
            format!(
                "a destructive request may target at most {cap} agents here ({} asked); split it, or an admin raises max_destructive_targets",
                targets.len()
            ),
        ));
    }
    let needed = if rule.is_destructive() {
        catalog.response_threshold(&tenant).await.map_err(store_err)?
    } else {
        1
    };
    let now = schemas::time::now_micros();
    let new = NewRequest {
        id: uuid::Uuid::new_v4().simple().to_string(),
        tenant: tenant.clone(),
        targets,
        destructive: rule.is_destructive(),
        needed,
        requested_by: c.token.id.clone(),
        expires_at: now + ttl,
    };
    let nonce = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let command = |targets: &std::collections::BTreeMap<String, u64>| {
        let body = CommandBody {
            id: new.id.clone(),
            tenant: tenant.clone(),
            rule: rule.to_json(),
            targets: targets.clone(),
            issued_at: now,
            expires_at: new.expires_at,
            nonce: nonce.clone(),
            reason: req.reason.clone(),
        };
        serde_json::to_string(&body).unwrap_or_default()
    };
    let row = catalog.create_request(&new, command, now).await.map_err(store_err)?;
    Ok((StatusCode::CREATED, Json(RequestView::of(&row))).into_response())
}

fn ttl_micros(ttl_secs: Option<i64>) -> Result<i64, ApiError> {
    let max = MAX_TTL_MICROS / 1_000_000;
    match ttl_secs {
        None => Ok(MAX_TTL_MICROS),
        Some(t) if (60..=max).contains(&t) => Ok(t * 1_000_000),
        Some(t) => Err(ApiError::invalid("bad_ttl", format!("ttl_secs {t} must be from 60 to {max}"))),
    }
}

/// The targets, deduplicated, each an agent the tenant has enrolled (and not revoked) or seen.
pub(crate) async fn known_targets(
    s: &AppState,
    tenant: &str,
    targets: &[String],
) -> Result<Vec<String>, ApiError> {
    if targets.is_empty() || targets.len() > MAX_TARGETS {
        return Err(ApiError::invalid("bad_targets", format!("targets must name 1 to {MAX_TARGETS} agents")));
    }
    let catalog = s.store.catalog();
    let mut known: HashSet<String> = catalog
        .enrolled_agents(tenant)
        .await
        .map_err(store_err)?
        .into_iter()
        .filter(|a| a.revoked_at.is_none())
        .map(|a| a.agent_id)
        .collect();
    known.extend(catalog.agents(tenant).await.map_err(store_err)?.into_iter().map(|a| a.agent_id));
    let mut out: Vec<String> = Vec::new();
    for t in targets {
        if !known.contains(t) {
            return Err(ApiError::invalid("unknown_target", format!("{t:?} is not an agent of this tenant")));
        }
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    Ok(out)
}

/// `GET /api/v1/response/requests`: newest first.
pub(crate) async fn requests(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Query(p): Params,
) -> Res {
    let limit = limit_param(&p, 100)?;
    let now = schemas::time::now_micros();
    let rows = s.store.catalog().requests(&c.token.tenant, limit as i64, now).await.map_err(store_err)?;
    Ok(Json(RequestList { requests: rows.iter().map(RequestView::of).collect() }).into_response())
}

/// `GET /api/v1/response/requests/{id}`.
pub(crate) async fn request_get(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Res {
    let now = schemas::time::now_micros();
    let row = s.store.catalog().request(&c.token.tenant, &id, now).await.map_err(store_err)?;
    let row = row.ok_or_else(|| ApiError::not_found(format!("no request {id}")))?;
    Ok(Json(RequestView::of(&row)).into_response())
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApprovalBody {
    public_key: String,
    sig: String,
}

/// `POST /api/v1/response/requests/{id}/approvals` (respond): one approver's signature over the
/// request's body, handed in by the token the key is registered to, never the requester's.
pub(crate) async fn request_approve(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    let tenant = &c.token.tenant;
    refuse_in_lockdown(&s, tenant).await?;
    let catalog = s.store.catalog();
    let now = schemas::time::now_micros();
    let req = catalog.request(tenant, &id, now).await.map_err(store_err)?;
    let req = req.ok_or_else(|| ApiError::not_found(format!("no request {id}")))?;
    let approval =
        checked_approval(&s, &c, &body, (COMMAND_DOMAIN, &req.body), "this request's command body").await?;
    if req.requested_by == c.token.id {
        return Err(refused(Kind::Forbidden, "own_request", "nobody approves their own request"));
    }
    match catalog.approve_request(tenant, &id, &approval).await.map_err(store_err)? {
        Ok(row) => Ok(Json(RequestView::of(&row)).into_response()),
        Err(e) => Err(refusal(e)),
    }
}

/// An approval handed in as `{"public_key", "sig"}` over `signed` (domain, text): the key must be a
/// live approver registered to the caller and the signature must verify over the text (`what`
/// names it in the error). The row to store.
pub(crate) async fn checked_approval(
    s: &AppState,
    c: &Caller,
    raw: &Bytes,
    signed: (&str, &str),
    what: &str,
) -> Result<ApprovalRow, ApiError> {
    let a: ApprovalBody = body_of(raw)?;
    let key = a.public_key.to_ascii_lowercase();
    check_approver(s, &c.token.tenant, &key, &c.token.id).await?;
    schemas::signed::verify_detached(signed.0, &key, signed.1, &a.sig).map_err(|_| {
        ApiError::invalid("bad_signature", format!("the signature does not verify over {what}"))
    })?;
    Ok(ApprovalRow {
        public_key: key,
        sig: a.sig.to_ascii_lowercase(),
        by_token: c.token.id.clone(),
        at: schemas::time::now_micros(),
    })
}

/// Refuses unless `key` is a live approver of `tenant` registered to the token `caller`.
pub(crate) async fn check_approver(
    s: &AppState,
    tenant: &str,
    key: &str,
    caller: &str,
) -> Result<(), ApiError> {
    let approvers = s.store.catalog().approvers(tenant).await.map_err(store_err)?;
    let approver = approvers.iter().find(|r| r.public_key == key).ok_or_else(|| {
        refused(Kind::Forbidden, "unknown_approver", format!("{key} is not a registered approver"))
    })?;
    if approver.revoked_at.is_some() {
        return Err(refused(Kind::Forbidden, "revoked_approver", format!("approver {key} was revoked")));
    }
    if approver.owner_token != caller {
        return Err(refused(
            Kind::Forbidden,
            "not_your_key",
            "this approver's key is registered to another token",
        ));
    }
    Ok(())
}

/// `POST /api/v1/response/requests/{id}/cancel` (handle): before it goes out.
pub(crate) async fn request_cancel(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Res {
    let now = schemas::time::now_micros();
    match s.store.catalog().cancel_request(&c.token.tenant, &id, now).await.map_err(store_err)? {
        Ok(row) => Ok(Json(RequestView::of(&row)).into_response()),
        Err(e) => Err(refusal(e)),
    }
}

fn refusal(e: RequestRefusal) -> ApiError {
    match e {
        RequestRefusal::NotFound => ApiError::not_found("no such request"),
        RequestRefusal::Closed(state) => {
            refused(Kind::Conflict, "request_closed", format!("the request is {state}"))
        }
        RequestRefusal::AlreadyApproved => {
            refused(Kind::Conflict, "already_approved", "this approver already approved the request")
        }
    }
}
