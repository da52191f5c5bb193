//! Standing orders in the catalog (issue 17): an order's signed text, its approvals (active once
//! `needed` are in), its withdrawal, and the triggers sent within it with the results agents
//! signed. The server stores and relays; what bounds a trigger is the order's text, which only the
//! approvers' keys can sign.

use super::{ApprovalRow, Catalog, CatalogError, RequestRefusal, db};
use sqlx::Row;

/// One standing order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OrderRow {
    /// Its id.
    pub id: String,
    /// Its text (what approvers sign).
    pub body: String,
    /// Who asked for it (token id).
    pub created_by: String,
    /// When.
    pub created_at: i64,
    /// When it stops.
    pub expires_at: i64,
    /// Approvals it needs.
    pub needed: i64,
    /// When enough approvals were in.
    pub active_at: Option<i64>,
    /// When it was withdrawn.
    pub withdrawn_at: Option<i64>,
    /// The approvals.
    pub approvals: Vec<ApprovalRow>,
}

impl OrderRow {
    /// `proposed`, `active`, `withdrawn` or `expired` at `now`.
    pub fn state(&self, now: i64) -> &'static str {
        match (self.withdrawn_at, self.active_at) {
            (Some(_), _) => "withdrawn",
            _ if now > self.expires_at => "expired",
            (None, Some(_)) => "active",
            (None, None) => "proposed",
        }
    }
}

/// One trigger sent within an order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TriggerRow {
    /// The trigger's id.
    pub id: String,
    /// The order.
    pub order_id: String,
    /// The agent told.
    pub agent: String,
    /// The technique that matched.
    pub technique: String,
    /// The event that matched.
    pub event_id: String,
    /// When it was sent.
    pub sent_at: i64,
    /// The agent's outcome, once its result is in.
    pub outcome: Option<String>,
    /// The result's text and the agent's signature.
    pub result_body: Option<String>,
    /// The agent's signature over it.
    pub result_sig: Option<String>,
}

const ORDER_COLUMNS: &str = "id, body, created_by, created_at, expires_at, needed, active_at, withdrawn_at";

impl Catalog {
    /// Records a new order, waiting for `needed` approvals.
    pub async fn create_order(&self, tenant: &str, row: &OrderRow) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO standing_orders (tenant, id, body, created_by, created_at, expires_at, needed) \
             VALUES ($1,$2,$3,$4,$5,$6,$7)",
        )
        .bind(tenant)
        .bind(row.id.as_str())
        .bind(row.body.as_str())
        .bind(row.created_by.as_str())
        .bind(row.created_at)
        .bind(row.expires_at)
        .bind(row.needed)
        .execute(&self.pool)
        .await
        .map_err(db("create_order"))?;
        Ok(())
    }

    /// A tenant's orders, newest first, with their approvals.
    pub async fn orders(&self, tenant: &str) -> Result<Vec<OrderRow>, CatalogError> {
        const OP: &str = "orders";
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM standing_orders WHERE tenant = $1 ORDER BY created_at DESC, id"
        ))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await
        .map_err(db(OP))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: String = r.try_get(0).map_err(db(OP))?;
            let approvals = self.order_approvals(tenant, &id).await?;
            out.push(OrderRow {
                id,
                body: r.try_get(1).map_err(db(OP))?,
                created_by: r.try_get(2).map_err(db(OP))?,
                created_at: r.try_get(3).map_err(db(OP))?,
                expires_at: r.try_get(4).map_err(db(OP))?,
                needed: r.try_get(5).map_err(db(OP))?,
                active_at: r.try_get(6).map_err(db(OP))?,
                withdrawn_at: r.try_get(7).map_err(db(OP))?,
                approvals,
            });
        }
        Ok(out)
    }

    /// One order of the tenant.
    pub async fn order(&self, tenant: &str, id: &str) -> Result<Option<OrderRow>, CatalogError> {
        Ok(self.orders(tenant).await?.into_iter().find(|o| o.id == id))
    }

    async fn order_approvals(&self, tenant: &str, id: &str) -> Result<Vec<ApprovalRow>, CatalogError> {
        const OP: &str = "order_approvals";
        sqlx::query(
            "SELECT public_key, sig, by_token, at FROM standing_order_approvals WHERE tenant = $1 AND id = $2 \
             ORDER BY at, public_key",
        )
        .bind(tenant)
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(db(OP))?
        .iter()
        .map(|a| {
            Ok(ApprovalRow { public_key: a.try_get(0)?, sig: a.try_get(1)?, by_token: a.try_get(2)?, at: a.try_get(3)? })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(db(OP))
    }

    /// Records an approval (checked by the caller) of a proposed order, activating it when its
    /// `needed` are in.
    pub async fn approve_order(
        &self,
        tenant: &str,
        id: &str,
        approval: &ApprovalRow,
    ) -> Result<Result<OrderRow, RequestRefusal>, CatalogError> {
        const OP: &str = "approve_order";
        let Some(order) = self.order(tenant, id).await? else { return Ok(Err(RequestRefusal::NotFound)) };
        let state = order.state(approval.at);
        if state != "proposed" {
            return Ok(Err(RequestRefusal::Closed(state.to_owned())));
        }
        let mut tx = self.write_tx(OP).await?;
        let inserted = sqlx::query(
            "INSERT INTO standing_order_approvals (tenant, id, public_key, sig, by_token, at) VALUES ($1,$2,$3,$4,$5,$6) \
             ON CONFLICT (tenant, id, public_key) DO NOTHING",
        )
        .bind(tenant)
        .bind(id)
        .bind(approval.public_key.as_str())
        .bind(approval.sig.as_str())
        .bind(approval.by_token.as_str())
        .bind(approval.at)
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?;
        if inserted.rows_affected() == 0 {
            return Ok(Err(RequestRefusal::AlreadyApproved));
        }
        // Counted inside the transaction: two approvals handed in at once each see the other's.
        let have: i64 =
            sqlx::query("SELECT count(*) FROM standing_order_approvals WHERE tenant = $1 AND id = $2")
                .bind(tenant)
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .and_then(|r| r.try_get(0))
                .map_err(db(OP))?;
        if have >= order.needed {
            sqlx::query("UPDATE standing_orders SET active_at = $3 WHERE tenant = $1 AND id = $2 AND active_at IS NULL")
                .bind(tenant)
                .bind(id)
                .bind(approval.at)
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?;
        }
        tx.commit().await.map_err(db(OP))?;
        Ok(self.order(tenant, id).await?.ok_or(RequestRefusal::NotFound))
    }

    /// Withdraws an order that is not yet withdrawn; false when there is none.
    pub async fn withdraw_order(&self, tenant: &str, id: &str, now: i64) -> Result<bool, CatalogError> {
        let done = sqlx::query(
            "UPDATE standing_orders SET withdrawn_at = $3 WHERE tenant = $1 AND id = $2 AND withdrawn_at IS NULL",
        )
        .bind(tenant)
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db("withdraw_order"))?;
        Ok(done.rows_affected() == 1)
    }

    /// The tenant's active orders at `now`, with their approvals (which orders cover an agent is
    /// in their text; agents check it themselves).
    pub async fn active_orders(&self, tenant: &str, now: i64) -> Result<Vec<OrderRow>, CatalogError> {
        Ok(self.orders(tenant).await?.into_iter().filter(|o| o.state(now) == "active").collect())
    }

    /// Records a trigger sent.
    pub async fn record_trigger(&self, tenant: &str, t: &TriggerRow) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO standing_triggers (tenant, id, order_id, agent, technique, event_id, sent_at) \
             VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (tenant, id) DO NOTHING",
        )
        .bind(tenant)
        .bind(t.id.as_str())
        .bind(t.order_id.as_str())
        .bind(t.agent.as_str())
        .bind(t.technique.as_str())
        .bind(t.event_id.as_str())
        .bind(t.sent_at)
        .execute(&self.pool)
        .await
        .map_err(db("record_trigger"))?;
        Ok(())
    }

    /// Stores the agent's signed result of trigger `id` (checked by the caller); false when the
    /// trigger is unknown or not this agent's.
    pub async fn trigger_result(
        &self,
        tenant: &str,
        id: &str,
        agent: &str,
        outcome: &str,
        result: (&str, &str),
    ) -> Result<bool, CatalogError> {
        let done = sqlx::query(
            "UPDATE standing_triggers SET outcome = $4, result_body = $5, result_sig = $6 \
             WHERE tenant = $1 AND id = $2 AND agent = $3",
        )
        .bind(tenant)
        .bind(id)
        .bind(agent)
        .bind(outcome)
        .bind(result.0)
        .bind(result.1)
        .execute(&self.pool)
        .await
        .map_err(db("trigger_result"))?;
        Ok(done.rows_affected() == 1)
    }

    /// An order's triggers, newest first.
    pub async fn triggers(&self, tenant: &str, order_id: &str) -> Result<Vec<TriggerRow>, CatalogError> {
        const OP: &str = "triggers";
        sqlx::query(
            "SELECT id, order_id, agent, technique, event_id, sent_at, outcome, result_body, result_sig \
             FROM standing_triggers WHERE tenant = $1 AND order_id = $2 ORDER BY sent_at DESC, id",
        )
        .bind(tenant)
        .bind(order_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db(OP))?
        .iter()
        .map(|r| {
            Ok(TriggerRow {
                id: r.try_get(0)?,
                order_id: r.try_get(1)?,
                agent: r.try_get(2)?,
                technique: r.try_get(3)?,
                event_id: r.try_get(4)?,
                sent_at: r.try_get(5)?,
                outcome: r.try_get(6)?,
                result_body: r.try_get(7)?,
                result_sig: r.try_get(8)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(db(OP))
    }
}
