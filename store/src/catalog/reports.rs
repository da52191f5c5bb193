//! Anomaly reports: written once (scheduled or on demand), listed newest first, read by id; the
//! previous report of the same schedule is what the next one compares itself with.

use super::{Catalog, CatalogError, db};
use sqlx::Row;

/// A stored report.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ReportRow {
    /// Report id.
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// The schedule's name, or `on-demand`.
    pub name: String,
    /// Period start, microseconds.
    pub period_from: i64,
    /// Period end (exclusive).
    pub period_to: i64,
    /// Anomalies in the period.
    pub anomalies: i64,
    /// When it was made.
    pub created_at: i64,
    /// The report (`anomaly::report::Report` as JSON); empty in listings.
    pub body: String,
}

fn row(r: &sqlx::any::AnyRow, with_body: bool) -> Result<ReportRow, sqlx::Error> {
    Ok(ReportRow {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        name: r.try_get("name")?,
        period_from: r.try_get("period_from")?,
        period_to: r.try_get("period_to")?,
        anomalies: r.try_get("anomalies")?,
        created_at: r.try_get("created_at")?,
        body: if with_body { r.try_get("body")? } else { String::new() },
    })
}

impl Catalog {
    /// Stores a report.
    pub async fn insert_report(&self, r: &ReportRow) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO reports (id, tenant, name, period_from, period_to, anomalies, created_at, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(r.id.as_str())
        .bind(r.tenant.as_str())
        .bind(r.name.as_str())
        .bind(r.period_from)
        .bind(r.period_to)
        .bind(r.anomalies)
        .bind(r.created_at)
        .bind(r.body.as_str())
        .execute(&self.pool)
        .await
        .map_err(db("insert_report"))?;
        Ok(())
    }

    /// A tenant's reports, newest first, without their bodies.
    pub async fn reports(&self, tenant: &str, limit: usize) -> Result<Vec<ReportRow>, CatalogError> {
        let rows = sqlx::query(
            "SELECT id, tenant, name, period_from, period_to, anomalies, created_at FROM reports \
             WHERE tenant = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(tenant)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db("reports"))?;
        rows.iter().map(|r| row(r, false).map_err(db("reports"))).collect()
    }

    /// One report with its body.
    pub async fn report(&self, tenant: &str, id: &str) -> Result<Option<ReportRow>, CatalogError> {
        let r = sqlx::query("SELECT * FROM reports WHERE tenant = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("report"))?;
        r.map(|r| row(&r, true).map_err(db("report"))).transpose()
    }

    /// The latest report of schedule `name` whose period ended at or before `before`, with its body.
    pub async fn previous_report(
        &self,
        tenant: &str,
        name: &str,
        before: i64,
    ) -> Result<Option<ReportRow>, CatalogError> {
        let r = sqlx::query(
            "SELECT * FROM reports WHERE tenant = $1 AND name = $2 AND period_to <= $3 \
             ORDER BY period_to DESC, created_at DESC LIMIT 1",
        )
        .bind(tenant)
        .bind(name)
        .bind(before)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("previous_report"))?;
        r.map(|r| row(&r, true).map_err(db("previous_report"))).transpose()
    }
}
