//! Agents as their heartbeats describe them, and security events about them.

use super::{Catalog, CatalogError, db};
use sqlx::Row;

/// An agent as its heartbeats describe it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AgentRow {
    /// Tenant.
    pub tenant: String,
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
    /// Its last heartbeat as sent (sources' health, next sequence number), when it parses.
    pub state: Option<schemas::wire::Heartbeat>,
}

const AGENT_COLUMNS: &str = "tenant, agent_id, host, boot, last_heartbeat, last_activity, events_in, \
     events_acked, events_dropped, spool_bytes, state";

fn agent_row(r: &sqlx::any::AnyRow) -> Result<AgentRow, sqlx::Error> {
    let state: Option<String> = r.try_get(10)?;
    Ok(AgentRow {
        tenant: r.try_get(0)?,
        agent_id: r.try_get(1)?,
        host: r.try_get(2)?,
        boot: r.try_get(3)?,
        last_heartbeat: r.try_get(4)?,
        last_activity: r.try_get(5)?,
        events_in: r.try_get(6)?,
        events_acked: r.try_get(7)?,
        events_dropped: r.try_get(8)?,
        spool_bytes: r.try_get(9)?,
        state: state.and_then(|s| serde_json::from_str(&s).ok()),
    })
}

/// The exclusive upper bound of the keys starting with `prefix` (which ends in `:`).
fn prefix_end(prefix: &str) -> String {
    format!("{};", prefix.strip_suffix(':').unwrap_or(prefix))
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
             events_dropped, spool_bytes, last_activity, state) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$5,$10) \
             ON CONFLICT (tenant, agent_id) DO UPDATE SET host = excluded.host, boot = excluded.boot, \
             last_activity = CASE WHEN excluded.boot <> agents.boot OR excluded.events_in <> agents.events_in \
             THEN excluded.last_heartbeat ELSE agents.last_activity END, \
             last_heartbeat = excluded.last_heartbeat, events_in = excluded.events_in, \
             events_acked = excluded.events_acked, events_dropped = excluded.events_dropped, \
             spool_bytes = excluded.spool_bytes, state = excluded.state",
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
        .bind(serde_json::to_string(hb).unwrap_or_default())
        .execute(&self.pool)
        .await
        .map_err(db("heartbeat"))?;
        Ok(())
    }

    /// Agents of a tenant as their last heartbeats describe them.
    pub async fn agents(&self, tenant: &str) -> Result<Vec<AgentRow>, CatalogError> {
        let sql = format!("SELECT {AGENT_COLUMNS} FROM agents WHERE tenant = $1 ORDER BY agent_id");
        let rows = sqlx::query(&sql).bind(tenant).fetch_all(&self.pool).await.map_err(db("agents"))?;
        rows.iter().map(agent_row).collect::<Result<_, sqlx::Error>>().map_err(db("agents"))
    }

    /// Every tenant's agents (the watchdog's round).
    pub async fn all_agents(&self) -> Result<Vec<AgentRow>, CatalogError> {
        let sql = format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY tenant, agent_id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await.map_err(db("all_agents"))?;
        rows.iter().map(agent_row).collect::<Result<_, sqlx::Error>>().map_err(db("all_agents"))
    }

    /// Notes that the watchdog raises `kind` about `subject` of an agent at `mark`. True when this
    /// is news (nothing was raised for this mark before, by this process or another), false when
    /// it was raised already.
    pub async fn raise_once(
        &self,
        tenant: &str,
        agent: &str,
        kind: &str,
        subject: &str,
        mark: i64,
        now: i64,
    ) -> Result<bool, CatalogError> {
        let done = sqlx::query(
            "INSERT INTO agent_watch (tenant, agent_id, kind, subject, mark, raised_at) \
             VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (tenant, agent_id, kind, subject) DO UPDATE SET \
             mark = excluded.mark, raised_at = excluded.raised_at WHERE agent_watch.mark <> excluded.mark",
        )
        .bind(tenant)
        .bind(agent)
        .bind(kind)
        .bind(subject)
        .bind(mark)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db("raise_once"))?;
        Ok(done.rows_affected() == 1)
    }

    /// The sequence numbers of an agent's batches of one boot that ingest committed (in any order).
    pub async fn committed_seqs(
        &self,
        tenant: &str,
        agent: &str,
        boot: u64,
    ) -> Result<Vec<u64>, CatalogError> {
        let prefix = format!("{tenant}/{agent}/{agent}:{boot}:");
        let rows =
            sqlx::query("SELECT batch_key FROM ingest_batches WHERE batch_key >= $1 AND batch_key < $2")
                .bind(prefix.as_str())
                .bind(prefix_end(&prefix))
                .fetch_all(&self.pool)
                .await
                .map_err(db("committed_seqs"))?;
        let mut seqs = Vec::with_capacity(rows.len());
        for r in &rows {
            let key: String = r.try_get(0).map_err(db("committed_seqs"))?;
            if let Some(seq) = key.strip_prefix(&prefix).and_then(|s| s.parse().ok()) {
                seqs.push(seq);
            }
        }
        Ok(seqs)
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
