//! Delivery of approved response commands (issue 17 item 4): agents fetch their orders over their
//! own subject and hand in signed results. A command lives in the catalog until its target reports
//! or it expires, so an agent that was offline gets it when it returns; the first result for a
//! (command, agent) is the one kept.

use super::response::{REQUEST_COLUMNS, request_row};
use super::{Catalog, CatalogError, RequestRow, db};
use sqlx::Row;

/// One target of a request.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TargetRow {
    /// The agent.
    pub agent: String,
    /// The counter its command carries.
    pub counter: i64,
    /// `pending`, `delivered`, or the result's outcome (`executed`, `failed`, `refused`).
    pub state: String,
    /// When it first fetched the command.
    pub delivered_at: Option<i64>,
    /// Its signed result's body text.
    pub result: Option<String>,
    /// The agent's signature over it.
    pub result_sig: Option<String>,
    /// When the result arrived.
    pub result_at: Option<i64>,
}

impl Catalog {
    pub(super) async fn targets_of(&self, id: &str) -> Result<Vec<TargetRow>, CatalogError> {
        let rows = sqlx::query(
            "SELECT agent, counter, state, delivered_at, result, result_sig, result_at FROM response_targets \
             WHERE request_id = $1 ORDER BY agent",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("targets"))?;
        rows.iter()
            .map(|r| {
                Ok(TargetRow {
                    agent: r.try_get(0)?,
                    counter: r.try_get(1)?,
                    state: r.try_get(2)?,
                    delivered_at: r.try_get(3)?,
                    result: r.try_get(4)?,
                    result_sig: r.try_get(5)?,
                    result_at: r.try_get(6)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("targets"))
    }

    /// The approved, unexpired commands `agent` of `tenant` has not reported on, oldest first (by
    /// counter), with their approvals; each is marked delivered the first time.
    pub async fn orders_for(
        &self,
        tenant: &str,
        agent: &str,
        now: i64,
    ) -> Result<Vec<RequestRow>, CatalogError> {
        const OP: &str = "orders_for";
        let cols = REQUEST_COLUMNS.split(", ").map(|c| format!("r.{c}")).collect::<Vec<_>>().join(", ");
        let rows = sqlx::query(&format!(
            "SELECT {cols} FROM response_requests r JOIN response_targets t ON t.request_id = r.id \
             WHERE r.tenant = $1 AND t.agent = $2 AND r.state = 'approved' AND r.expires_at >= $3 \
             AND t.state IN ('pending', 'delivered') ORDER BY t.counter"
        ))
        .bind(tenant)
        .bind(agent)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(db(OP))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut req = request_row(r, now).map_err(db(OP))?;
            req.approvals = self.approvals_of(&req.id).await?;
            sqlx::query(
                "UPDATE response_targets SET state = 'delivered', delivered_at = $3 \
                 WHERE request_id = $1 AND agent = $2 AND state = 'pending'",
            )
            .bind(req.id.as_str())
            .bind(agent)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db(OP))?;
            out.push(req);
        }
        Ok(out)
    }

    /// Stores an agent's (already verified) result for a command of its tenant; false when the
    /// command is not the agent's or a result is already stored.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_result(
        &self,
        tenant: &str,
        agent: &str,
        request_id: &str,
        outcome: &str,
        body: &str,
        sig: &str,
        now: i64,
    ) -> Result<bool, CatalogError> {
        let r = sqlx::query(
            "UPDATE response_targets SET state = $4, result = $5, result_sig = $6, result_at = $7 \
             WHERE request_id = $1 AND agent = $2 AND state IN ('pending', 'delivered') \
             AND request_id IN (SELECT id FROM response_requests WHERE tenant = $3)",
        )
        .bind(request_id)
        .bind(agent)
        .bind(tenant)
        .bind(outcome)
        .bind(body)
        .bind(sig)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db("record_result"))?;
        Ok(r.rows_affected() == 1)
    }

    /// The public key of a live enrolled agent of `tenant`.
    pub async fn agent_public_key(&self, tenant: &str, agent: &str) -> Result<Option<String>, CatalogError> {
        let row = sqlx::query(
            "SELECT public_key FROM enrolled_agents WHERE tenant = $1 AND agent_id = $2 AND revoked_at IS NULL",
        )
        .bind(tenant)
        .bind(agent)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("agent_public_key"))?;
        row.map(|r| r.try_get::<String, _>(0)).transpose().map_err(db("agent_public_key"))
    }
}
