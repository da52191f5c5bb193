//! Response requests in the catalog (issue 17): registered approvers (public keys only), requests
//! holding the exact command text approvers sign, their approvals, each agent's command counter,
//! and the per-tenant switches (lockdown, approvals needed).
//!
//! Each state change is one write transaction: a request takes its agents' next counters as it is
//! created, and an approval is recorded and moves the request to `approved` (when it is the last
//! one needed) together, so no interleaving can approve a request twice or skip a counter.

use super::{Catalog, CatalogError, db};
use sqlx::Row;
use std::collections::BTreeMap;

/// A request's states, in order. `expired` is also what a `requested` or `approved` request past
/// its expiry reads as.
pub const REQUEST_STATES: [&str; 4] = ["requested", "approved", "cancelled", "expired"];

/// A registered approver.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ApproverRow {
    /// Ed25519 public key, hex.
    pub public_key: String,
    /// Who it is.
    pub name: String,
    /// The API token that may hand in this key's approvals.
    pub owner_token: String,
    /// Registered at (microseconds).
    pub added_at: i64,
    /// Revoked at.
    pub revoked_at: Option<i64>,
}

/// One approval of a request.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ApprovalRow {
    /// The approver's key.
    pub public_key: String,
    /// Ed25519 signature over the command domain and the body, hex.
    pub sig: String,
    /// The token that handed it in.
    pub by_token: String,
    /// When.
    pub at: i64,
}

impl From<ApprovalRow> for schemas::response::command::Approval {
    fn from(a: ApprovalRow) -> Self {
        Self { key: a.public_key, sig: a.sig }
    }
}

/// A response request.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RequestRow {
    /// Its id (also the command id).
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// The command body text: what approvers sign, byte for byte.
    pub body: String,
    /// Whether the rule is destructive.
    pub destructive: bool,
    /// Distinct approvals it needs.
    pub needed: i64,
    /// Its state (see [`REQUEST_STATES`]), as of when it was read.
    pub state: String,
    /// The token that asked.
    pub requested_by: String,
    /// When.
    pub requested_at: i64,
    /// Last state change.
    pub updated_at: i64,
    /// When the command stops being valid.
    pub expires_at: i64,
    /// Approvals so far, oldest first.
    pub approvals: Vec<ApprovalRow>,
    /// Per target agent: its counter, delivery and result.
    pub targets: Vec<super::TargetRow>,
}

/// What a new request needs besides its body.
#[derive(Clone, Debug)]
pub struct NewRequest {
    /// Id.
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Target agents.
    pub targets: Vec<String>,
    /// Destructive rule.
    pub destructive: bool,
    /// Approvals needed.
    pub needed: i64,
    /// The asking token.
    pub requested_by: String,
    /// Expiry (microseconds).
    pub expires_at: i64,
}

/// Why an approval or a cancel was not recorded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestRefusal {
    /// No such request in the tenant.
    #[error("no such request")]
    NotFound,
    /// The request is no longer waiting (its state is given).
    #[error("the request is {0}")]
    Closed(String),
    /// This key already approved it.
    #[error("this approver already approved the request")]
    AlreadyApproved,
}

pub(super) const REQUEST_COLUMNS: &str =
    "id, tenant, body, destructive, needed, state, requested_by, requested_at, updated_at, expires_at";

fn lockdown_key(tenant: &str) -> String {
    format!("response_lockdown:{tenant}")
}

/// A change to a tenant's response settings; `None` leaves one as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResponseSettings {
    /// Every response action refused while on.
    pub lockdown: Option<bool>,
    /// Distinct approvals a destructive request needs (2 at least).
    pub threshold: Option<i64>,
    /// Agents one destructive request may target.
    pub max_targets: Option<i64>,
    /// Whether rules may run scripts at all.
    pub scripts: Option<bool>,
}

fn scripts_key(tenant: &str) -> String {
    format!("response_scripts:{tenant}")
}

fn max_targets_key(tenant: &str) -> String {
    format!("response_max_targets:{tenant}")
}

/// Agents a destructive request may target unless the tenant sets otherwise: a fleet-wide
/// destructive action stops here, whoever approves it.
pub const DEFAULT_MAX_DESTRUCTIVE_TARGETS: i64 = 100;

fn threshold_key(tenant: &str) -> String {
    format!("response_threshold:{tenant}")
}

impl Catalog {
    /// Registers an approver's public key for a tenant; a conflict if it is already registered
    /// (a revoked key stays revoked: make a new one).
    pub async fn add_approver(
        &self,
        tenant: &str,
        public_key: &str,
        name: &str,
        owner_token: &str,
        now: i64,
    ) -> Result<(), CatalogError> {
        let r = sqlx::query(
            "INSERT INTO approvers (tenant, public_key, name, owner_token, added_at) VALUES ($1,$2,$3,$4,$5) \
             ON CONFLICT (tenant, public_key) DO NOTHING",
        )
        .bind(tenant)
        .bind(public_key)
        .bind(name)
        .bind(owner_token)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db("add_approver"))?;
        if r.rows_affected() == 0 {
            return Err(CatalogError::Conflict(format!("approver key {public_key} is already registered")));
        }
        Ok(())
    }

    /// Revokes an approver; false when there was no live one with that key.
    pub async fn revoke_approver(
        &self,
        tenant: &str,
        public_key: &str,
        now: i64,
    ) -> Result<bool, CatalogError> {
        let r = sqlx::query(
            "UPDATE approvers SET revoked_at = $3 WHERE tenant = $1 AND public_key = $2 AND revoked_at IS NULL",
        )
        .bind(tenant)
        .bind(public_key)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db("revoke_approver"))?;
        Ok(r.rows_affected() > 0)
    }

    /// A tenant's approvers, revoked ones included, in registration order.
    pub async fn approvers(&self, tenant: &str) -> Result<Vec<ApproverRow>, CatalogError> {
        let rows = sqlx::query(
            "SELECT public_key, name, owner_token, added_at, revoked_at FROM approvers \
             WHERE tenant = $1 ORDER BY added_at, public_key",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await
        .map_err(db("approvers"))?;
        rows.iter()
            .map(|r| {
                Ok(ApproverRow {
                    public_key: r.try_get(0)?,
                    name: r.try_get(1)?,
                    owner_token: r.try_get(2)?,
                    added_at: r.try_get(3)?,
                    revoked_at: r.try_get(4)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("approvers"))
    }

    /// The public keys of a tenant's live (not revoked) approvers.
    pub async fn live_approver_keys(&self, tenant: &str) -> Result<Vec<String>, CatalogError> {
        let all = self.approvers(tenant).await?;
        Ok(all.into_iter().filter(|a| a.revoked_at.is_none()).map(|a| a.public_key).collect())
    }

    /// The tenant's lockdown switch (every response action refused while on).
    pub async fn response_lockdown(&self, tenant: &str) -> Result<bool, CatalogError> {
        Ok(self.setting(&lockdown_key(tenant)).await?.as_deref() == Some("true"))
    }

    /// The tenant's script switch (off unless an admin turns it on).
    pub async fn response_scripts(&self, tenant: &str) -> Result<bool, CatalogError> {
        Ok(self.setting(&scripts_key(tenant)).await?.as_deref() == Some("true"))
    }

    /// Distinct approvals a destructive request needs in the tenant (2 unless set higher).
    pub async fn response_threshold(&self, tenant: &str) -> Result<i64, CatalogError> {
        Ok(self.setting(&threshold_key(tenant)).await?.and_then(|v| v.parse().ok()).unwrap_or(2).max(2))
    }

    /// Agents one destructive request may target in the tenant.
    pub async fn response_max_targets(&self, tenant: &str) -> Result<i64, CatalogError> {
        let set = self.setting(&max_targets_key(tenant)).await?.and_then(|v| v.parse().ok());
        Ok(set.unwrap_or(DEFAULT_MAX_DESTRUCTIVE_TARGETS).max(1))
    }

    /// Sets the tenant's switches and limits; `None`s stay as they are.
    pub async fn set_response_settings(
        &self,
        tenant: &str,
        change: &ResponseSettings,
    ) -> Result<(), CatalogError> {
        let ResponseSettings { lockdown, threshold, max_targets, scripts } = *change;
        if let Some(on) = scripts {
            self.set_setting(&scripts_key(tenant), if on { "true" } else { "false" }).await?;
        }
        if let Some(n) = max_targets {
            self.set_setting(&max_targets_key(tenant), &n.max(1).to_string()).await?;
        }
        if let Some(on) = lockdown {
            self.set_setting(&lockdown_key(tenant), if on { "true" } else { "false" }).await?;
        }
        if let Some(k) = threshold {
            self.set_setting(&threshold_key(tenant), &k.max(2).to_string()).await?;
        }
        Ok(())
    }

    async fn setting(&self, key: &str) -> Result<Option<String>, CatalogError> {
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("setting"))?;
        row.map(|r| r.try_get::<String, _>(0)).transpose().map_err(db("setting"))
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(db("set_setting"))?;
        Ok(())
    }

    /// Creates a request: each target's next counter is taken, `body` builds the command text from
    /// them, and the request is stored as `requested`, all in one transaction.
    pub async fn create_request(
        &self,
        req: &NewRequest,
        body: impl FnOnce(&BTreeMap<String, u64>) -> String,
        now: i64,
    ) -> Result<RequestRow, CatalogError> {
        const OP: &str = "create_request";
        let mut tx = self.write_tx(OP).await?;
        let mut counters = BTreeMap::new();
        for agent in &req.targets {
            let last: Option<i64> =
                sqlx::query("SELECT last FROM response_counters WHERE tenant = $1 AND agent = $2")
                    .bind(req.tenant.as_str())
                    .bind(agent.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db(OP))?
                    .map(|r| r.try_get(0))
                    .transpose()
                    .map_err(db(OP))?;
            let next = last.unwrap_or(0) + 1;
            sqlx::query(
                "INSERT INTO response_counters (tenant, agent, last) VALUES ($1,$2,$3) \
                 ON CONFLICT (tenant, agent) DO UPDATE SET last = excluded.last",
            )
            .bind(req.tenant.as_str())
            .bind(agent.as_str())
            .bind(next)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
            counters.insert(agent.clone(), next as u64);
            sqlx::query("INSERT INTO response_targets (request_id, agent, counter, state) VALUES ($1,$2,$3,'pending')")
                .bind(req.id.as_str())
                .bind(agent.as_str())
                .bind(next)
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?;
        }
        let row = RequestRow {
            id: req.id.clone(),
            tenant: req.tenant.clone(),
            body: body(&counters),
            destructive: req.destructive,
            needed: req.needed,
            state: "requested".to_owned(),
            requested_by: req.requested_by.clone(),
            requested_at: now,
            updated_at: now,
            expires_at: req.expires_at,
            approvals: Vec::new(),
            targets: Vec::new(),
        };
        sqlx::query(&format!(
            "INSERT INTO response_requests ({REQUEST_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)"
        ))
        .bind(row.id.as_str())
        .bind(row.tenant.as_str())
        .bind(row.body.as_str())
        .bind(i64::from(row.destructive))
        .bind(row.needed)
        .bind(row.state.as_str())
        .bind(row.requested_by.as_str())
        .bind(now)
        .bind(now)
        .bind(row.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?;
        tx.commit().await.map_err(db(OP))?;
        Ok(row)
    }

    /// One request with its approvals, its state as of `now`.
    pub async fn request(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<RequestRow>, CatalogError> {
        let row = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM response_requests WHERE tenant = $1 AND id = $2"
        ))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("request"))?;
        let Some(row) = row else { return Ok(None) };
        let mut req = request_row(&row, now).map_err(db("request"))?;
        req.approvals = self.approvals_of(id).await?;
        req.targets = self.targets_of(id).await?;
        Ok(Some(req))
    }

    /// A tenant's requests, newest first (approvals included), at most `limit`.
    pub async fn requests(
        &self,
        tenant: &str,
        limit: i64,
        now: i64,
    ) -> Result<Vec<RequestRow>, CatalogError> {
        let rows = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM response_requests WHERE tenant = $1 \
             ORDER BY requested_at DESC, id DESC LIMIT $2"
        ))
        .bind(tenant)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db("requests"))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut req = request_row(r, now).map_err(db("requests"))?;
            req.approvals = self.approvals_of(&req.id).await?;
            req.targets = self.targets_of(&req.id).await?;
            out.push(req);
        }
        Ok(out)
    }

    pub(super) async fn approvals_of(&self, id: &str) -> Result<Vec<ApprovalRow>, CatalogError> {
        let rows = sqlx::query(
            "SELECT public_key, sig, by_token, at FROM response_approvals WHERE request_id = $1 ORDER BY at, public_key",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("approvals"))?;
        rows.iter()
            .map(|r| {
                Ok(ApprovalRow {
                    public_key: r.try_get(0)?,
                    sig: r.try_get(1)?,
                    by_token: r.try_get(2)?,
                    at: r.try_get(3)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("approvals"))
    }

    /// Records an approval (already checked by the caller: a live approver's valid signature,
    /// handed in by its owner, not the requester) and moves the request to `approved` when it is
    /// the last one needed; one transaction.
    pub async fn approve_request(
        &self,
        tenant: &str,
        id: &str,
        approval: &ApprovalRow,
    ) -> Result<Result<RequestRow, RequestRefusal>, CatalogError> {
        const OP: &str = "approve_request";
        let now = approval.at;
        let mut tx = self.write_tx(OP).await?;
        let Some(req) = locked_request(&mut tx, tenant, id, now).await? else {
            return Ok(Err(RequestRefusal::NotFound));
        };
        if req.state != "requested" {
            return Ok(Err(RequestRefusal::Closed(req.state)));
        }
        let inserted = sqlx::query(
            "INSERT INTO response_approvals (request_id, public_key, sig, by_token, at) VALUES ($1,$2,$3,$4,$5) \
             ON CONFLICT (request_id, public_key) DO NOTHING",
        )
        .bind(id)
        .bind(approval.public_key.as_str())
        .bind(approval.sig.as_str())
        .bind(approval.by_token.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?;
        if inserted.rows_affected() == 0 {
            return Ok(Err(RequestRefusal::AlreadyApproved));
        }
        let have: i64 = sqlx::query("SELECT count(*) FROM response_approvals WHERE request_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(db(OP))?;
        if have >= req.needed {
            set_state(&mut tx, id, "approved", now).await?;
        }
        tx.commit().await.map_err(db(OP))?;
        Ok(self.request(tenant, id, now).await?.ok_or(RequestRefusal::NotFound))
    }

    /// Cancels a request that has not gone out yet.
    pub async fn cancel_request(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<Result<RequestRow, RequestRefusal>, CatalogError> {
        const OP: &str = "cancel_request";
        let mut tx = self.write_tx(OP).await?;
        let Some(req) = locked_request(&mut tx, tenant, id, now).await? else {
            return Ok(Err(RequestRefusal::NotFound));
        };
        if !matches!(req.state.as_str(), "requested" | "approved") {
            return Ok(Err(RequestRefusal::Closed(req.state)));
        }
        set_state(&mut tx, id, "cancelled", now).await?;
        tx.commit().await.map_err(db(OP))?;
        Ok(self.request(tenant, id, now).await?.ok_or(RequestRefusal::NotFound))
    }
}

/// The request, read inside a write transaction (SQLite's write lock, or PostgreSQL's row lock).
async fn locked_request(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    tenant: &str,
    id: &str,
    now: i64,
) -> Result<Option<RequestRow>, CatalogError> {
    // A no-op write first takes PostgreSQL's row lock (SQLite's write transaction is exclusive).
    sqlx::query("UPDATE response_requests SET updated_at = updated_at WHERE tenant = $1 AND id = $2")
        .bind(tenant)
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(db("locked_request"))?;
    let row = sqlx::query(&format!(
        "SELECT {REQUEST_COLUMNS} FROM response_requests WHERE tenant = $1 AND id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db("locked_request"))?;
    row.map(|r| request_row(&r, now)).transpose().map_err(db("locked_request"))
}

async fn set_state(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: &str,
    state: &str,
    now: i64,
) -> Result<(), CatalogError> {
    sqlx::query("UPDATE response_requests SET state = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(state)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db("set_state"))?;
    Ok(())
}

pub(super) fn request_row(r: &sqlx::any::AnyRow, now: i64) -> Result<RequestRow, sqlx::Error> {
    let stored: String = r.try_get(5)?;
    let expires_at: i64 = r.try_get(9)?;
    let waiting = matches!(stored.as_str(), "requested" | "approved");
    let state = if waiting && now > expires_at { "expired".to_owned() } else { stored };
    Ok(RequestRow {
        id: r.try_get(0)?,
        tenant: r.try_get(1)?,
        body: r.try_get(2)?,
        destructive: r.try_get::<i64, _>(3)? != 0,
        needed: r.try_get(4)?,
        state,
        requested_by: r.try_get(6)?,
        requested_at: r.try_get(7)?,
        updated_at: r.try_get(8)?,
        expires_at,
        approvals: Vec::new(),
        targets: Vec::new(),
    })
}
