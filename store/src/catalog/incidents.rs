//! Incidents: the correlator's view (an opaque JSON body with filter columns beside it) and the
//! analysts' fields (status, owner, comments). Ingest writes bodies; analysts write status and owner;
//! neither overwrites the other's, except that a merge marks the absorbed incident `merged`.

use super::{Catalog, CatalogError, db};
use sqlx::Row;

/// Incident statuses an analyst may set (`merged` is set by the correlator).
pub const INCIDENT_STATUSES: &[&str] = &["open", "investigating", "contained", "resolved", "false_positive"];

/// What ingest writes for one incident.
#[derive(Clone, Debug)]
pub struct IncidentWrite {
    /// Incident id.
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Highest alert level.
    pub severity: u8,
    /// Hosts, root first.
    pub hosts: Vec<String>,
    /// Technique ids.
    pub techniques: Vec<String>,
    /// First and last evidence (microseconds).
    pub first: i64,
    /// See `first`.
    pub last: i64,
    /// Set when it was merged into another incident.
    pub merged_into: Option<String>,
    /// The correlator's body (JSON).
    pub body: String,
}

/// An incident as read back.
#[derive(Clone, Debug, serde::Serialize)]
pub struct IncidentRow {
    /// The correlator's body.
    pub body: serde_json::Value,
    /// `open`, `investigating`, ..., or `merged`.
    pub status: String,
    /// Who owns it ("" for nobody).
    pub owner: String,
    /// The incident it was merged into.
    pub merged_into: Option<String>,
    /// Created / updated (RFC 3339).
    pub created: String,
    /// See `created`.
    pub updated: String,
}

/// An analyst's change with its note.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct IncidentComment {
    /// Who.
    pub author: String,
    /// The status after the change.
    pub status: String,
    /// The owner after the change.
    pub owner: String,
    /// The note.
    pub comment: String,
    /// When (RFC 3339).
    pub at: String,
}

/// An analyst's change to an incident.
#[derive(Clone, Debug, Default)]
pub struct IncidentChange {
    /// New status, if any.
    pub status: Option<String>,
    /// New owner, if any.
    pub owner: Option<String>,
    /// The note.
    pub comment: String,
    /// Who (the token's name).
    pub author: String,
}

/// Filters for listing incidents (all optional).
#[derive(Clone, Debug, Default)]
pub struct IncidentFilter {
    /// Status.
    pub status: Option<String>,
    /// At least this severity.
    pub min_severity: Option<u8>,
    /// Involves this host.
    pub host: Option<String>,
    /// Has this technique (or a sub-technique of it).
    pub technique: Option<String>,
    /// Holds this alert (an alert id: letters, digits and `-`).
    pub alert: Option<String>,
    /// Last evidence at or after (microseconds).
    pub from: Option<i64>,
    /// Last evidence before.
    pub to: Option<i64>,
    /// At most this many, most recent first.
    pub limit: usize,
}

fn list(v: &[String]) -> String {
    format!(",{},", v.join(","))
}

fn row_of(r: &sqlx::any::AnyRow) -> Result<IncidentRow, sqlx::Error> {
    let body: String = r.try_get("body")?;
    let merged: String = r.try_get("merged_into")?;
    Ok(IncidentRow {
        body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        status: r.try_get("status")?,
        owner: r.try_get("owner")?,
        merged_into: (!merged.is_empty()).then_some(merged),
        created: schemas::time::format_micros(r.try_get("created_at")?),
        updated: schemas::time::format_micros(r.try_get("updated_at")?),
    })
}

const COLS: &str = "body, status, owner, merged_into, created_at, updated_at";

impl Catalog {
    /// Inserts or updates incidents in one transaction. Status and owner of an existing incident are
    /// kept, unless it was merged. With a `fence`, only while its holder holds the lease: false, and
    /// nothing written, once another process has taken it.
    pub async fn upsert_incidents(
        &self,
        items: &[IncidentWrite],
        now: i64,
        fence: Option<super::Fence<'_>>,
    ) -> Result<bool, CatalogError> {
        if items.is_empty() {
            return Ok(true);
        }
        let mut tx = self.write_tx("upsert_incidents").await?;
        if !super::leases::holds(&mut tx, fence).await.map_err(db("upsert_incidents"))? {
            return Ok(false);
        }
        for i in items {
            sqlx::query(
                "INSERT INTO incidents (id, tenant, status, owner, severity, hosts, techniques, first_seen, last_seen, \
                 merged_into, body, created_at, updated_at) VALUES ($1,$2,$3,'',$4,$5,$6,$7,$8,$9,$10,$11,$11) \
                 ON CONFLICT (id) DO UPDATE SET severity = excluded.severity, hosts = excluded.hosts, \
                 techniques = excluded.techniques, first_seen = excluded.first_seen, last_seen = excluded.last_seen, \
                 merged_into = excluded.merged_into, body = excluded.body, updated_at = excluded.updated_at, \
                 status = CASE WHEN excluded.merged_into <> '' THEN 'merged' ELSE incidents.status END",
            )
            .bind(i.id.as_str())
            .bind(i.tenant.as_str())
            .bind(if i.merged_into.is_some() { "merged" } else { "open" })
            .bind(i64::from(i.severity))
            .bind(list(&i.hosts))
            .bind(list(&i.techniques))
            .bind(i.first)
            .bind(i.last)
            .bind(i.merged_into.clone().unwrap_or_default())
            .bind(i.body.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db("upsert_incidents"))?;
        }
        tx.commit().await.map_err(db("upsert_incidents"))?;
        Ok(true)
    }

    /// A tenant's incidents matching `f`, most recent first (merged ones only when asked for).
    pub async fn incidents(
        &self,
        tenant: &str,
        f: &IncidentFilter,
    ) -> Result<Vec<IncidentRow>, CatalogError> {
        let mut l = super::filter::Listing::new(COLS, "incidents");
        match &f.status {
            Some(v) => l.text(" AND status = ?", v.clone()),
            None => l.raw(" AND status <> 'merged'"),
        };
        if let Some(v) = f.min_severity {
            l.int(" AND severity >= ?", i64::from(v));
        }
        if let Some(v) = &f.host {
            l.text(" AND hosts LIKE ?", format!("%,{v},%"));
        }
        if let Some(t) = &f.technique {
            l.technique(t);
        }
        if let Some(a) = &f.alert {
            // The body holds each alert's anchor as `"alert":"<id>"` (compact JSON).
            l.text(" AND body LIKE ?", format!("%\"alert\":\"{a}\"%"));
        }
        if let Some(v) = f.from {
            l.int(" AND last_seen >= ?", v);
        }
        if let Some(v) = f.to {
            l.int(" AND last_seen < ?", v);
        }
        let rows = l.fetch(&self.pool, tenant, f.limit, "incidents").await?;
        rows.iter().map(row_of).collect::<Result<_, _>>().map_err(db("incidents"))
    }

    /// Bodies of incidents (of every tenant) with evidence at or after `since`, for the correlator
    /// to carry on from after a restart.
    pub async fn recent_incident_bodies(&self, since: i64) -> Result<Vec<(String, String)>, CatalogError> {
        let rows =
            sqlx::query("SELECT tenant, body FROM incidents WHERE last_seen >= $1 AND merged_into = ''")
                .bind(since)
                .fetch_all(&self.pool)
                .await
                .map_err(db("recent_incident_bodies"))?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("recent_incident_bodies"))
    }

    /// One incident with its comments (oldest first).
    pub async fn incident(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(IncidentRow, Vec<IncidentComment>)>, CatalogError> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM incidents WHERE tenant = $1 AND id = $2"))
            .bind(tenant)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("incident"))?;
        let Some(row) = row else { return Ok(None) };
        let inc = row_of(&row).map_err(db("incident"))?;
        let comments = sqlx::query(
            "SELECT author, status, owner, comment, created_at FROM incident_comments WHERE incident_id = $1 \
             ORDER BY created_at",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("incident"))?
        .iter()
        .map(|r| {
            Ok(IncidentComment {
                author: r.try_get(0)?,
                status: r.try_get(1)?,
                owner: r.try_get(2)?,
                comment: r.try_get(3)?,
                at: schemas::time::format_micros(r.try_get(4)?),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(db("incident"))?;
        Ok(Some((inc, comments)))
    }

    /// Sets an incident's status and/or owner with a note; `false` when the tenant has no such
    /// incident.
    pub async fn update_incident(
        &self,
        tenant: &str,
        id: &str,
        change: &IncidentChange,
        now: i64,
    ) -> Result<bool, CatalogError> {
        let (status, owner) = (change.status.as_deref(), change.owner.as_deref());
        let (comment, author) = (change.comment.as_str(), change.author.as_str());
        let mut tx = self.write_tx("update_incident").await?;
        let row = sqlx::query("SELECT status, owner FROM incidents WHERE tenant = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("update_incident"))?;
        let Some(row) = row else { return Ok(false) };
        let cur_status: String = row.try_get(0).map_err(db("update_incident"))?;
        let cur_owner: String = row.try_get(1).map_err(db("update_incident"))?;
        let status = status.map_or(cur_status, str::to_owned);
        let owner = owner.map_or(cur_owner, str::to_owned);
        sqlx::query("UPDATE incidents SET status = $1, owner = $2, updated_at = $3 WHERE id = $4")
            .bind(status.as_str())
            .bind(owner.as_str())
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db("update_incident"))?;
        sqlx::query(
            "INSERT INTO incident_comments (incident_id, author, status, owner, comment, created_at) \
             VALUES ($1,$2,$3,$4,$5,$6)",
        )
        .bind(id)
        .bind(author)
        .bind(status.as_str())
        .bind(owner.as_str())
        .bind(comment)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("update_incident"))?;
        tx.commit().await.map_err(db("update_incident"))?;
        Ok(true)
    }
}
