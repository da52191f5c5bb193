//! The newest dead letters per tenant, for operators: what was refused, why, and from which agent.
//! The dead-letter stream keeps every one; the catalog keeps the last [`KEEP_PER_TENANT`].

use super::{Catalog, CatalogError, db};
use sqlx::Row;

/// Dead letters kept per tenant in the catalog.
pub const KEEP_PER_TENANT: i64 = 10_000;

/// One refused line or message.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeadLetterRow {
    /// Unique origin id (`dlq:<batch key>:<line>` or `dlq:s<stream seq>`): a redelivery records nothing twice.
    pub id: String,
    /// Tenant, from the subject.
    pub tenant: String,
    /// The agent that sent it, from the subject.
    pub agent_id: String,
    /// When it was refused, microseconds.
    pub time: i64,
    /// Its message's stream sequence.
    pub stream_seq: i64,
    /// The line within the message (none for a whole message).
    pub line: Option<i64>,
    /// Stable reason code.
    pub reason: String,
    /// What was wrong, in words.
    pub detail: String,
    /// The raw bytes (cut at 16 KiB, lossily decoded).
    pub raw: String,
    /// The raw length before the cut.
    pub raw_bytes: i64,
}

impl Catalog {
    /// Records dead letters (idempotent by id), then trims each tenant to its newest
    /// [`KEEP_PER_TENANT`].
    pub async fn record_dead_letters(&self, rows: &[DeadLetterRow]) -> Result<(), CatalogError> {
        const OP: &str = "record_dead_letters";
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx(OP).await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO dead_letters (id, tenant, agent_id, time, stream_seq, line, reason, detail, raw, raw_bytes) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT (id) DO NOTHING",
            )
            .bind(r.id.as_str())
            .bind(r.tenant.as_str())
            .bind(r.agent_id.as_str())
            .bind(r.time)
            .bind(r.stream_seq)
            .bind(r.line)
            .bind(r.reason.as_str())
            .bind(r.detail.as_str())
            .bind(r.raw.as_str())
            .bind(r.raw_bytes)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
        }
        let mut tenants: Vec<&str> = rows.iter().map(|r| r.tenant.as_str()).collect();
        tenants.sort_unstable();
        tenants.dedup();
        for t in tenants {
            sqlx::query(
                "DELETE FROM dead_letters WHERE tenant = $1 AND seq <= \
                 (SELECT seq FROM dead_letters WHERE tenant = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2)",
            )
            .bind(t)
            .bind(KEEP_PER_TENANT)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
        }
        tx.commit().await.map_err(db(OP))
    }

    /// A tenant's dead letters, newest first, optionally of one agent or reason, before `before`
    /// (a `seq` cursor); each with its cursor.
    pub async fn dead_letters(
        &self,
        tenant: &str,
        agent: Option<&str>,
        reason: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<(i64, DeadLetterRow)>, CatalogError> {
        const OP: &str = "dead_letters";
        let rows = sqlx::query(
            "SELECT seq, id, tenant, agent_id, time, stream_seq, line, reason, detail, raw, raw_bytes \
             FROM dead_letters WHERE tenant = $1 AND ($2 = '' OR agent_id = $2) AND ($3 = '' OR reason = $3) \
             AND seq < $4 ORDER BY seq DESC LIMIT $5",
        )
        .bind(tenant)
        .bind(agent.unwrap_or(""))
        .bind(reason.unwrap_or(""))
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db(OP))?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    DeadLetterRow {
                        id: r.try_get(1)?,
                        tenant: r.try_get(2)?,
                        agent_id: r.try_get(3)?,
                        time: r.try_get(4)?,
                        stream_seq: r.try_get(5)?,
                        line: r.try_get(6)?,
                        reason: r.try_get(7)?,
                        detail: r.try_get(8)?,
                        raw: r.try_get(9)?,
                        raw_bytes: r.try_get(10)?,
                    },
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db(OP))
    }
}
