//! Approver-set changes over the API (issue 17 item 3): an admin proposes the registered keys as
//! the tenant's next approver set; approvers sign the change with `cordon approve` and hand it in;
//! once the tenant's threshold of them signed, it is adopted and agents take it with their next
//! orders. Agents check it against the set they hold, so the server cannot add a key by itself.

use crate::error::{ApiError, Kind};
use crate::response_view::{PinnedSet, SetChangeView, SetChanges};
use crate::routes::Res;
use crate::{AppState, Caller};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use schemas::response::approvers::{SET_DOMAIN, SetChange};
use std::sync::Arc;

fn store_err(e: store::catalog::CatalogError) -> ApiError {
    store::StoreError::from(e).into()
}

fn refused(kind: Kind, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError { kind, code, message: message.into() }
}

/// `GET /api/v1/response/approver-sets`: every change, oldest first.
pub(crate) async fn list(State(s): State<Arc<AppState>>, Extension(c): Extension<Caller>) -> Res {
    let rows = s.store.catalog().set_changes(&c.token.tenant).await.map_err(store_err)?;
    Ok(Json(SetChanges { changes: rows.iter().map(SetChangeView::of).collect() }).into_response())
}

/// `POST /api/v1/response/approver-sets` (admin): proposes the live registered keys and the
/// tenant's threshold as the next set.
pub(crate) async fn propose(State(s): State<Arc<AppState>>, Extension(c): Extension<Caller>) -> Res {
    let tenant = c.token.tenant.clone();
    let catalog = s.store.catalog();
    let keys: std::collections::BTreeSet<String> =
        catalog.live_approver_keys(&tenant).await.map_err(store_err)?.into_iter().collect();
    let threshold = catalog.response_threshold(&tenant).await.map_err(store_err)? as usize;
    if keys.len() < threshold {
        return Err(ApiError::invalid(
            "too_few_approvers",
            format!("{} live approvers cannot meet the threshold of {threshold}", keys.len()),
        ));
    }
    let now = schemas::time::now_micros();
    let build = |version: u64| {
        let change =
            SetChange { tenant: tenant.clone(), version, keys: keys.clone(), threshold, issued_at: now };
        serde_json::to_string(&change).unwrap_or_default()
    };
    let row = catalog.propose_set(&tenant, build, now).await.map_err(store_err)?;
    Ok((StatusCode::CREATED, Json(SetChangeView::of(&row))).into_response())
}

/// `POST /api/v1/response/approver-sets/{version}/approvals` (respond): an approval of the open
/// proposal by a live approver, handed in by the token its key is registered to.
pub(crate) async fn approve(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(version): Path<i64>,
    body: Bytes,
) -> Res {
    let tenant = &c.token.tenant;
    let catalog = s.store.catalog();
    let change =
        catalog.set_changes(tenant).await.map_err(store_err)?.into_iter().find(|r| r.version == version);
    let change = change.ok_or_else(|| ApiError::not_found(format!("no approver-set change {version}")))?;
    let approval =
        crate::requests::checked_approval(&s, &c, &body, (SET_DOMAIN, &change.body), "this change").await?;
    let needed = catalog.response_threshold(tenant).await.map_err(store_err)?;
    match catalog.approve_set(tenant, version, &approval, needed).await.map_err(store_err)? {
        Ok(row) => Ok(Json(SetChangeView::of(&row)).into_response()),
        Err(store::catalog::RequestRefusal::NotFound) => Err(ApiError::not_found("no such change")),
        Err(store::catalog::RequestRefusal::Closed(_)) => {
            Err(refused(Kind::Conflict, "change_closed", "the change is already adopted"))
        }
        Err(store::catalog::RequestRefusal::AlreadyApproved) => {
            Err(refused(Kind::Conflict, "already_approved", "this approver already approved the change"))
        }
    }
}

/// The set agents pin at enrollment: the latest adopted change, or the registered live keys
/// (version 0) while none is.
pub(crate) async fn pinned_set(s: &AppState, tenant: &str) -> Result<PinnedSet, ApiError> {
    let catalog = s.store.catalog();
    let adopted = catalog
        .set_changes(tenant)
        .await
        .map_err(store_err)?
        .into_iter()
        .rev()
        .find(|c| c.adopted_at.is_some());
    if let Some(c) = adopted {
        let change: SetChange = serde_json::from_str(&c.body).map_err(|e| ApiError::internal(&e))?;
        return Ok(PinnedSet {
            keys: change.keys.into_iter().collect(),
            threshold: change.threshold,
            version: change.version,
        });
    }
    let keys = catalog.live_approver_keys(tenant).await.map_err(store_err)?;
    let threshold = catalog.response_threshold(tenant).await.map_err(store_err)?;
    Ok(PinnedSet { keys, threshold: usize::try_from(threshold).unwrap_or(0), version: 0 })
}
