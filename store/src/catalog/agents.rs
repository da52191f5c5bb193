//! Agents as their heartbeats describe them, and security events about them.

use super::{Catalog, CatalogError, db};
use sqlx::Row;

/// An agent as its heartbeats describe it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AgentRow {
    /// Agent id.
    pub agent_id: String,
    /// Host name it reports.
    pub host: String,
    /// Boot id of its current run.
    pub boot: i64,
    /// Last heartbeat, microseconds (server clock).
    pub last_heartbeat: i64,
    /// Last heartbeat that reported new events (or a new boot).
    pub last_activity: i64,
    /// Events the agent took in, this boot.
    pub events_in: i64,
    /// Events JetStream acked, this boot.
    pub events_acked: i64,
    /// Events dropped because the spool was full, this boot.
    pub events_dropped: i64,
    /// Bytes waiting in its spool.
    pub spool_bytes: i64,
}

impl Catalog {
    /// Records an agent heartbeat.
    pub async fn heartbeat(
        &self,
        tenant: &str,
        agent: &str,
        hb: &schemas::wire::Heartbeat,
        now: i64,
    ) -> Result<(), CatalogError> {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO agents (tenant, agent_id, host, boot, last_heartbeat, events_in, events_acked, \
             events_dropped, spool_bytes, last_activity) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$5) \
             ON CONFLICT (tenant, agent_id) DO UPDATE SET host = excluded.host, boot = excluded.boot, \
             last_activity = CASE WHEN excluded.boot <> agents.boot OR excluded.events_in <> agents.events_in \
             THEN excluded.last_heartbeat ELSE agents.last_activity END, \
             last_heartbeat = excluded.last_heartbeat, events_in = excluded.events_in, \
             events_acked = excluded.events_acked, events_dropped = excluded.events_dropped, \
             spool_bytes = excluded.spool_bytes",
        )
        .bind(tenant)
        .bind(agent)
        .bind(hb.host.as_str())
        .bind(n(hb.boot))
        .bind(now)
        .bind(n(hb.events_in))
        .bind(n(hb.events_acked))
        .bind(n(hb.events_dropped))
        .bind(n(hb.spool_bytes))
        .execute(&self.pool)
        .await
        .map_err(db("heartbeat"))?;
        Ok(())
    }

    /// Agents of a tenant as their last heartbeats describe them.
    pub async fn agents(&self, tenant: &str) -> Result<Vec<AgentRow>, CatalogError> {
        let rows = sqlx::query(
            "SELECT agent_id, host, boot, last_heartbeat, last_activity, events_in, events_acked, \
             events_dropped, spool_bytes FROM agents WHERE tenant = $1 ORDER BY agent_id",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await
        .map_err(db("agents"))?;
        rows.iter()
            .map(|r| {
                Ok(AgentRow {
                    agent_id: r.try_get(0)?,
                    host: r.try_get(1)?,
                    boot: r.try_get(2)?,
                    last_heartbeat: r.try_get(3)?,
                    last_activity: r.try_get(4)?,
                    events_in: r.try_get(5)?,
                    events_acked: r.try_get(6)?,
                    events_dropped: r.try_get(7)?,
                    spool_bytes: r.try_get(8)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("agents"))
    }

    /// Records a security event (an agent speaking for another, say).
    pub async fn security_event(
        &self,
        tenant: &str,
        agent: &str,
        kind: &str,
        detail: &str,
        now: i64,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO security_events (time, tenant, agent_id, kind, detail) VALUES ($1,$2,$3,$4,$5)",
        )
        .bind(now)
        .bind(tenant)
        .bind(agent)
        .bind(kind)
        .bind(detail)
        .execute(&self.pool)
        .await
        .map_err(db("security_event"))?;
        Ok(())
    }

    /// Security events of a tenant: (time, agent, kind, detail), newest first.
    pub async fn security_events(
        &self,
        tenant: &str,
    ) -> Result<Vec<(i64, String, String, String)>, CatalogError> {
        let rows = sqlx::query(
            "SELECT time, agent_id, kind, detail FROM security_events WHERE tenant = $1 \
             ORDER BY id DESC LIMIT 1000",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await
        .map_err(db("security_events"))?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("security_events"))
    }
}
