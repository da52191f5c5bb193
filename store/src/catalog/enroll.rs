//! Enrollment: tokens an operator hands out (tenant-bound, expiring, limited-use, stored as hashes),
//! the agents enrolled with them (each identified by its own public key), revocation, and the
//! "enrollment closed" switch. One enrollment is one write transaction: the token's check, its use and
//! the agent's row commit together, so a token of N uses enrolls at most N agents under any race.

use super::{Catalog, CatalogError, db, sha256_hex};
use sqlx::Row;

/// Why an enrollment was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnrollRefusal {
    /// Enrollment is switched off.
    #[error("enrollment is closed")]
    Closed,
    /// No such token (or revoked).
    #[error("unknown or revoked enrollment token")]
    UnknownToken,
    /// Past its expiry.
    #[error("the enrollment token expired")]
    Expired,
    /// No uses left.
    #[error("the enrollment token is used up")]
    UsedUp,
    /// The key is already enrolled (in another tenant, or revoked).
    #[error("this agent key is already enrolled or was revoked; make a new key")]
    KeyTaken,
}

/// An enrolled agent.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EnrolledAgent {
    /// Agent id (derived from the public key).
    pub agent_id: String,
    /// Tenant.
    pub tenant: String,
    /// The agent's public key (hex).
    pub public_key: String,
    /// Host group from the token.
    pub group: Option<String>,
    /// The host name it gave.
    pub host: String,
    /// The token it enrolled with.
    pub token_id: String,
    /// When, microseconds.
    pub enrolled_at: i64,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
}

const CLOSED: &str = "enrollment_closed";

impl Catalog {
    /// Creates an enrollment token; (id, secret): the secret is shown once and stored as a hash.
    pub async fn create_enroll_token(
        &self,
        tenant: &str,
        group: Option<&str>,
        uses: i64,
        expires_at: i64,
        now: i64,
    ) -> Result<(String, String), CatalogError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let secret = format!("cet_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        sqlx::query(
            "INSERT INTO enroll_tokens (id, tenant, grp, token_sha256, uses_left, expires_at, created_at) \
             VALUES ($1,$2,$3,$4,$5,$6,$7)",
        )
        .bind(id.as_str())
        .bind(tenant)
        .bind(group)
        .bind(sha256_hex(secret.as_bytes()))
        .bind(uses)
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db("create_enroll_token"))?;
        Ok((id, secret))
    }

    /// Revokes an enrollment token; false if there was none active.
    pub async fn revoke_enroll_token(&self, id: &str, now: i64) -> Result<bool, CatalogError> {
        let r = sqlx::query("UPDATE enroll_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db("revoke_enroll_token"))?;
        Ok(r.rows_affected() > 0)
    }

    /// Opens or closes enrollment for every tenant.
    pub async fn set_enrollment_closed(&self, closed: bool) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(CLOSED)
        .bind(if closed { "true" } else { "false" })
        .execute(&self.pool)
        .await
        .map_err(db("set_enrollment_closed"))?;
        Ok(())
    }

    /// Enrolls `public_key` with the token behind `secret`: the agent, or why not. Re-enrolling the
    /// same key with a token of the same tenant returns the existing agent and uses nothing.
    pub async fn enroll(
        &self,
        secret: &str,
        public_key: &str,
        agent_id: &str,
        host: &str,
        now: i64,
    ) -> Result<Result<EnrolledAgent, EnrollRefusal>, CatalogError> {
        const OP: &str = "enroll";
        let mut tx = self.write_tx(OP).await?;
        let closed = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(CLOSED)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(OP))?
            .map(|r| r.try_get::<String, _>(0))
            .transpose()
            .map_err(db(OP))?;
        if closed.as_deref() == Some("true") {
            return Ok(Err(EnrollRefusal::Closed));
        }
        let token = sqlx::query(
            "SELECT id, tenant, grp, uses_left, expires_at FROM enroll_tokens \
             WHERE token_sha256 = $1 AND revoked_at IS NULL",
        )
        .bind(sha256_hex(secret.as_bytes()))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db(OP))?;
        let Some(t) = token else { return Ok(Err(EnrollRefusal::UnknownToken)) };
        let (id, tenant, group, uses_left, expires_at): (String, String, Option<String>, i64, i64) = (
            t.try_get(0).map_err(db(OP))?,
            t.try_get(1).map_err(db(OP))?,
            t.try_get(2).map_err(db(OP))?,
            t.try_get(3).map_err(db(OP))?,
            t.try_get(4).map_err(db(OP))?,
        );
        if now >= expires_at {
            return Ok(Err(EnrollRefusal::Expired));
        }
        if let Some(existing) = self.enrolled_by_key(&mut tx, public_key).await? {
            if existing.tenant == tenant && existing.revoked_at.is_none() {
                return Ok(Ok(existing));
            }
            return Ok(Err(EnrollRefusal::KeyTaken));
        }
        if uses_left <= 0 {
            return Ok(Err(EnrollRefusal::UsedUp));
        }
        // Conditional, so two enrollments racing for the last use cannot both have it (PostgreSQL
        // re-checks the condition once the first one's row lock is released).
        let used =
            sqlx::query("UPDATE enroll_tokens SET uses_left = uses_left - 1 WHERE id = $1 AND uses_left > 0")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?;
        if used.rows_affected() != 1 {
            return Ok(Err(EnrollRefusal::UsedUp));
        }
        let agent = EnrolledAgent {
            agent_id: agent_id.to_owned(),
            tenant,
            public_key: public_key.to_owned(),
            group,
            host: host.to_owned(),
            token_id: id,
            enrolled_at: now,
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO enrolled_agents (agent_id, tenant, public_key, grp, host, token_id, enrolled_at) \
             VALUES ($1,$2,$3,$4,$5,$6,$7)",
        )
        .bind(agent.agent_id.as_str())
        .bind(agent.tenant.as_str())
        .bind(agent.public_key.as_str())
        .bind(agent.group.as_deref())
        .bind(agent.host.as_str())
        .bind(agent.token_id.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?;
        tx.commit().await.map_err(db(OP))?;
        Ok(Ok(agent))
    }

    async fn enrolled_by_key(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        public_key: &str,
    ) -> Result<Option<EnrolledAgent>, CatalogError> {
        let row = sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM enrolled_agents WHERE public_key = $1"))
            .bind(public_key)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db("enroll"))?;
        row.map(|r| enrolled(&r)).transpose().map_err(db("enroll"))
    }

    /// The enrolled agent holding `public_key` (hex), revoked or not.
    pub async fn enrolled_agent(&self, public_key: &str) -> Result<Option<EnrolledAgent>, CatalogError> {
        let row = sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM enrolled_agents WHERE public_key = $1"))
            .bind(public_key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("enrolled_agent"))?;
        row.map(|r| enrolled(&r)).transpose().map_err(db("enrolled_agent"))
    }

    /// A tenant's enrolled agents, newest first.
    pub async fn enrolled_agents(&self, tenant: &str) -> Result<Vec<EnrolledAgent>, CatalogError> {
        let rows = sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM enrolled_agents WHERE tenant = $1 ORDER BY enrolled_at DESC LIMIT 10000"
        ))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await
        .map_err(db("enrolled_agents"))?;
        rows.iter().map(enrolled).collect::<Result<_, _>>().map_err(db("enrolled_agents"))
    }

    /// Revokes an enrolled agent; its tenant, or None if there was no active agent with that id.
    pub async fn revoke_agent(&self, agent_id: &str, now: i64) -> Result<Option<String>, CatalogError> {
        let mut tx = self.write_tx("revoke_agent").await?;
        let tenant =
            sqlx::query("SELECT tenant FROM enrolled_agents WHERE agent_id = $1 AND revoked_at IS NULL")
                .bind(agent_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("revoke_agent"))?
                .map(|r| r.try_get::<String, _>(0))
                .transpose()
                .map_err(db("revoke_agent"))?;
        if tenant.is_some() {
            sqlx::query("UPDATE enrolled_agents SET revoked_at = $1 WHERE agent_id = $2")
                .bind(now)
                .bind(agent_id)
                .execute(&mut *tx)
                .await
                .map_err(db("revoke_agent"))?;
        }
        tx.commit().await.map_err(db("revoke_agent"))?;
        Ok(tenant)
    }
}

const AGENT_COLUMNS: &str = "agent_id, tenant, public_key, grp, host, token_id, enrolled_at, revoked_at";

fn enrolled(r: &sqlx::any::AnyRow) -> Result<EnrolledAgent, sqlx::Error> {
    Ok(EnrolledAgent {
        agent_id: r.try_get(0)?,
        tenant: r.try_get(1)?,
        public_key: r.try_get(2)?,
        group: r.try_get(3)?,
        host: r.try_get(4)?,
        token_id: r.try_get(5)?,
        enrolled_at: r.try_get(6)?,
        revoked_at: r.try_get(7)?,
    })
}
