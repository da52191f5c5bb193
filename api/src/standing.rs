//! Standing orders over the API (issue 17 item 3): an analyst proposes an order (the techniques the
//! policy's `block` tier should act on, the agents, a cap per agent per hour, how long it stands);
//! approvers sign its text with `cordon approve` and hand it in, nobody their own; once the
//! tenant's threshold of them signed, it is active and agents take it with their orders. Withdrawn,
//! the server stops sending it and agents drop it. Each order lists the triggers sent within it
//! with the results the agents signed.

use crate::error::{ApiError, Kind};
use crate::response_view::{OrderView, Orders};
use crate::routes::Res;
use crate::{AppState, Caller};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use schemas::response::standing::{
    Agents, MAX_ORDER_TTL_MICROS, ORDER_DOMAIN, OrderAction, OrderBody, check_body,
};
use std::sync::Arc;
use store::catalog::{OrderRow, RequestRefusal};

fn store_err(e: store::catalog::CatalogError) -> ApiError {
    store::StoreError::from(e).into()
}

fn refused(kind: Kind, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError { kind, code, message: message.into() }
}

/// `GET /api/v1/response/standing`: the tenant's orders, newest first.
pub(crate) async fn list(State(s): State<Arc<AppState>>, Extension(c): Extension<Caller>) -> Res {
    let now = schemas::time::now_micros();
    let rows = s.store.catalog().orders(&c.token.tenant).await.map_err(store_err)?;
    Ok(Json(Orders { orders: rows.iter().map(|o| OrderView::of(o, now)).collect() }).into_response())
}

/// `GET /api/v1/response/standing/{id}`: one order with the triggers sent within it.
pub(crate) async fn get(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Res {
    let catalog = s.store.catalog();
    let o = catalog.order(&c.token.tenant, &id).await.map_err(store_err)?;
    let o = o.ok_or_else(|| ApiError::not_found(format!("no standing order {id}")))?;
    let triggers = catalog.triggers(&c.token.tenant, &id).await.map_err(store_err)?;
    Ok(Json(OrderView::of(&o, schemas::time::now_micros()).with_triggers(&triggers)).into_response())
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewOrder {
    name: String,
    techniques: Vec<String>,
    /// Agent ids, or omitted for every agent of the tenant.
    #[serde(default)]
    agents: Option<Vec<String>>,
    per_agent_per_hour: u32,
    /// How long it stands (at most 90 days).
    ttl_secs: i64,
    reason: String,
}

/// `POST /api/v1/response/standing` (handle): proposes an order, waiting for the tenant's
/// threshold of approvals; 400 naming what is malformed.
pub(crate) async fn create(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    body: Bytes,
) -> Res {
    let req: NewOrder =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("bad_body", format!("body: {e}")))?;
    let tenant = c.token.tenant.clone();
    let catalog = s.store.catalog();
    if catalog.response_lockdown(&tenant).await.map_err(store_err)? {
        return Err(refused(Kind::Conflict, "lockdown", "response is locked down for this tenant"));
    }
    if req.name.trim().is_empty()
        || req.name.len() > 200
        || req.reason.trim().is_empty()
        || req.reason.len() > 2000
    {
        return Err(ApiError::invalid(
            "bad_body",
            "name (1-200 bytes) and reason (1-2000 bytes) are required",
        ));
    }
    if !(1..=MAX_ORDER_TTL_MICROS / 1_000_000).contains(&req.ttl_secs) {
        return Err(ApiError::invalid(
            "bad_validity",
            format!("ttl_secs must be 1 to {}", MAX_ORDER_TTL_MICROS / 1_000_000),
        ));
    }
    let agents = match req.agents {
        None => Agents::All,
        Some(list) => {
            Agents::Only(crate::requests::known_targets(&s, &tenant, &list).await?.into_iter().collect())
        }
    };
    let now = schemas::time::now_micros();
    let body = OrderBody {
        id: uuid::Uuid::new_v4().simple().to_string(),
        tenant: tenant.clone(),
        name: req.name,
        agents,
        techniques: req.techniques.iter().map(|t| t.trim().to_ascii_uppercase()).collect(),
        action: OrderAction::TerminateProcess,
        per_agent_per_hour: req.per_agent_per_hour,
        issued_at: now,
        expires_at: now + req.ttl_secs * 1_000_000,
        reason: req.reason,
    };
    check_body(&body).map_err(|e| ApiError::invalid("invalid_order", e))?;
    let row = OrderRow {
        id: body.id.clone(),
        body: serde_json::to_string(&body).map_err(|e| ApiError::internal(&e))?,
        created_by: c.token.id.clone(),
        created_at: now,
        expires_at: body.expires_at,
        needed: catalog.response_threshold(&tenant).await.map_err(store_err)?,
        active_at: None,
        withdrawn_at: None,
        approvals: Vec::new(),
    };
    catalog.create_order(&tenant, &row).await.map_err(store_err)?;
    Ok((StatusCode::CREATED, Json(OrderView::of(&row, now))).into_response())
}

/// `POST /api/v1/response/standing/{id}/approvals` (respond): an approval by a live approver,
/// handed in by the token its key is registered to; nobody approves an order they proposed.
pub(crate) async fn approve(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    let tenant = &c.token.tenant;
    let catalog = s.store.catalog();
    if catalog.response_lockdown(tenant).await.map_err(store_err)? {
        return Err(refused(Kind::Conflict, "lockdown", "response is locked down for this tenant"));
    }
    let o = catalog.order(tenant, &id).await.map_err(store_err)?;
    let o = o.ok_or_else(|| ApiError::not_found(format!("no standing order {id}")))?;
    if o.created_by == c.token.id {
        return Err(refused(Kind::Forbidden, "own_request", "nobody approves an order they proposed"));
    }
    let approval =
        crate::requests::checked_approval(&s, &c, &body, (ORDER_DOMAIN, &o.body), "this order").await?;
    match catalog.approve_order(tenant, &id, &approval).await.map_err(store_err)? {
        Ok(row) => Ok(Json(OrderView::of(&row, approval.at)).into_response()),
        Err(RequestRefusal::NotFound) => Err(ApiError::not_found("no such order")),
        Err(RequestRefusal::Closed(state)) => {
            Err(refused(Kind::Conflict, "order_closed", format!("the order is {state}")))
        }
        Err(RequestRefusal::AlreadyApproved) => {
            Err(refused(Kind::Conflict, "already_approved", "this approver already approved the order"))
        }
    }
}

/// `POST /api/v1/response/standing/{id}/withdraw` (handle): the server stops sending it; agents
/// drop it with their next orders.
pub(crate) async fn withdraw(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Res {
    let now = schemas::time::now_micros();
    let catalog = s.store.catalog();
    if catalog.order(&c.token.tenant, &id).await.map_err(store_err)?.is_none() {
        return Err(ApiError::not_found(format!("no standing order {id}")));
    }
    if !catalog.withdraw_order(&c.token.tenant, &id, now).await.map_err(store_err)? {
        return Err(refused(
            Kind::Conflict,
            "order_closed",
            format!("standing order {id} is already withdrawn"),
        ));
    }
    let o = catalog.order(&c.token.tenant, &id).await.map_err(store_err)?;
    let o = o.ok_or_else(|| ApiError::not_found("no such order"))?;
    Ok(Json(OrderView::of(&o, now)).into_response())
}
