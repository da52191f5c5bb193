//! Approver-set changes in the catalog: a proposal per tenant (a newer one replaces one not yet
//! adopted), its approvals, and adoption once enough of them are in, in one transaction.

use super::{ApprovalRow, Catalog, CatalogError, RequestRefusal, db};
use sqlx::Row;

/// One proposed or adopted change.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SetChangeRow {
    /// Its version.
    pub version: i64,
    /// The change's text (what approvers sign).
    pub body: String,
    /// When it was proposed.
    pub created_at: i64,
    /// When enough approvals were in.
    pub adopted_at: Option<i64>,
    /// The approvals.
    pub approvals: Vec<ApprovalRow>,
}

impl Catalog {
    /// A tenant's changes in version order, adopted ones and the open proposal.
    pub async fn set_changes(&self, tenant: &str) -> Result<Vec<SetChangeRow>, CatalogError> {
        const OP: &str = "set_changes";
        let rows = sqlx::query(
            "SELECT version, body, created_at, adopted_at FROM approver_sets WHERE tenant = $1 ORDER BY version",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await
        .map_err(db(OP))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let version: i64 = r.try_get(0).map_err(db(OP))?;
            let approvals = sqlx::query(
                "SELECT public_key, sig, at FROM approver_set_approvals WHERE tenant = $1 AND version = $2 \
                 ORDER BY at, public_key",
            )
            .bind(tenant)
            .bind(version)
            .fetch_all(&self.pool)
            .await
            .map_err(db(OP))?
            .iter()
            .map(|a| {
                Ok(ApprovalRow {
                    public_key: a.try_get(0)?,
                    sig: a.try_get(1)?,
                    by_token: String::new(),
                    at: a.try_get(2)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(db(OP))?;
            out.push(SetChangeRow {
                version,
                body: r.try_get(1).map_err(db(OP))?,
                created_at: r.try_get(2).map_err(db(OP))?,
                adopted_at: r.try_get(3).map_err(db(OP))?,
                approvals,
            });
        }
        Ok(out)
    }

    /// Proposes the next change: `build` makes its text from the version (one above the last
    /// adopted); an open proposal is replaced with its approvals.
    pub async fn propose_set(
        &self,
        tenant: &str,
        build: impl FnOnce(u64) -> String,
        now: i64,
    ) -> Result<SetChangeRow, CatalogError> {
        const OP: &str = "propose_set";
        let mut tx = self.write_tx(OP).await?;
        let last: Option<i64> = sqlx::query(
            "SELECT max(version) FROM approver_sets WHERE tenant = $1 AND adopted_at IS NOT NULL",
        )
        .bind(tenant)
        .fetch_one(&mut *tx)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(db(OP))?;
        let version = last.unwrap_or(0) + 1;
        for table in ["approver_set_approvals", "approver_sets"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE tenant = $1 AND version >= $2"))
                .bind(tenant)
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?;
        }
        let body = build(version as u64);
        sqlx::query("INSERT INTO approver_sets (tenant, version, body, created_at) VALUES ($1,$2,$3,$4)")
            .bind(tenant)
            .bind(version)
            .bind(body.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
        tx.commit().await.map_err(db(OP))?;
        Ok(SetChangeRow { version, body, created_at: now, adopted_at: None, approvals: Vec::new() })
    }

    /// Records an approval (checked by the caller) of the open proposal `version`, adopting it when
    /// `needed` are in.
    pub async fn approve_set(
        &self,
        tenant: &str,
        version: i64,
        approval: &ApprovalRow,
        needed: i64,
    ) -> Result<Result<SetChangeRow, RequestRefusal>, CatalogError> {
        const OP: &str = "approve_set";
        let mut tx = self.write_tx(OP).await?;
        let row = sqlx::query("SELECT adopted_at FROM approver_sets WHERE tenant = $1 AND version = $2")
            .bind(tenant)
            .bind(version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(OP))?;
        let Some(row) = row else { return Ok(Err(RequestRefusal::NotFound)) };
        if row.try_get::<Option<i64>, _>(0).map_err(db(OP))?.is_some() {
            return Ok(Err(RequestRefusal::Closed("adopted".to_owned())));
        }
        let inserted = sqlx::query(
            "INSERT INTO approver_set_approvals (tenant, version, public_key, sig, at) VALUES ($1,$2,$3,$4,$5) \
             ON CONFLICT (tenant, version, public_key) DO NOTHING",
        )
        .bind(tenant)
        .bind(version)
        .bind(approval.public_key.as_str())
        .bind(approval.sig.as_str())
        .bind(approval.at)
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?;
        if inserted.rows_affected() == 0 {
            return Ok(Err(RequestRefusal::AlreadyApproved));
        }
        let have: i64 =
            sqlx::query("SELECT count(*) FROM approver_set_approvals WHERE tenant = $1 AND version = $2")
                .bind(tenant)
                .bind(version)
                .fetch_one(&mut *tx)
                .await
                .and_then(|r| r.try_get(0))
                .map_err(db(OP))?;
        if have >= needed {
            sqlx::query("UPDATE approver_sets SET adopted_at = $3 WHERE tenant = $1 AND version = $2")
                .bind(tenant)
                .bind(version)
                .bind(approval.at)
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?;
        }
        tx.commit().await.map_err(db(OP))?;
        let all = self.set_changes(tenant).await?;
        Ok(all.into_iter().find(|c| c.version == version).ok_or(RequestRefusal::NotFound))
    }
}
