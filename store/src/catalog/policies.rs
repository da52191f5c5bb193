//! The ATT&CK policy, versioned per tenant: every change is a new version with its author and reason;
//! nothing is updated in place.

use super::{Catalog, CatalogError, db};
use sqlx::Row;

/// One version of a tenant's policy.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PolicyVersion {
    /// Tenant.
    pub tenant: String,
    /// 1, 2, ...
    pub version: i64,
    /// The policy as JSON (`schemas::policy::Policy`).
    pub body: String,
    /// Who made the change (the API token's name).
    pub author: String,
    /// Why.
    pub reason: String,
    /// When, microseconds.
    pub created_at: i64,
}

fn row(r: &sqlx::any::AnyRow) -> Result<PolicyVersion, sqlx::Error> {
    Ok(PolicyVersion {
        tenant: r.try_get("tenant")?,
        version: r.try_get("version")?,
        body: r.try_get("body")?,
        author: r.try_get("author")?,
        reason: r.try_get("reason")?,
        created_at: r.try_get("created_at")?,
    })
}

const COLUMNS: &str = "tenant, version, body, author, reason, created_at";

impl Catalog {
    /// Records a new version of `tenant`'s policy, `expected` being the version the change was made
    /// against (0: none yet); a concurrent change in between is a [`CatalogError::Conflict`].
    pub async fn put_policy(
        &self,
        tenant: &str,
        expected: i64,
        body: &str,
        author: &str,
        reason: &str,
        now: i64,
    ) -> Result<i64, CatalogError> {
        let mut tx = self.write_tx("put_policy").await?;
        let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM policies WHERE tenant = $1")
            .bind(tenant)
            .fetch_one(&mut *tx)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(db("put_policy"))?;
        if current != expected {
            return Err(CatalogError::Conflict(format!(
                "the policy is at version {current}, not {expected}: reload it and apply the change again"
            )));
        }
        // The primary key (tenant, version) refuses a second writer of the same version.
        sqlx::query(&format!("INSERT INTO policies ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"))
            .bind(tenant)
            .bind(current + 1)
            .bind(body)
            .bind(author)
            .bind(reason)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                CatalogError::Conflict(format!(
                    "policy version {} was written concurrently: {e}",
                    current + 1
                ))
            })?;
        tx.commit().await.map_err(db("put_policy"))?;
        Ok(current + 1)
    }

    /// Every version of `tenant`'s policy, newest first.
    pub async fn policy_history(&self, tenant: &str) -> Result<Vec<PolicyVersion>, CatalogError> {
        let rows =
            sqlx::query(&format!("SELECT {COLUMNS} FROM policies WHERE tenant = $1 ORDER BY version DESC"))
                .bind(tenant)
                .fetch_all(&self.pool)
                .await
                .map_err(db("policy_history"))?;
        rows.iter().map(row).collect::<Result<_, _>>().map_err(db("policy_history"))
    }

    /// The latest version of every tenant's policy.
    pub async fn current_policies(&self) -> Result<Vec<PolicyVersion>, CatalogError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM policies p WHERE version = (SELECT MAX(version) FROM policies q WHERE q.tenant = p.tenant)"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db("current_policies"))?;
        rows.iter().map(row).collect::<Result<_, _>>().map_err(db("current_policies"))
    }
}
