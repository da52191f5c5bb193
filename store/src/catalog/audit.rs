//! The audit chain: an append-only, hash-chained log of who changed what.
//!
//! Row `n` stores `hash = SHA-256([seq, time, tenant, actor, action, target, detail, prev_hash])` (the
//! JSON array's bytes) with `prev_hash` the hash of row `n - 1` (64 zeros for row 1). Appends are
//! serialised (SQLite: the write lock of `BEGIN IMMEDIATE`; PostgreSQL: a transaction advisory lock), and
//! `audit_head` is moved in the same transaction. Triggers refuse `UPDATE` and `DELETE`; someone who
//! goes around them (a database owner) still cannot edit, delete or reorder a row without
//! [`Catalog::verify_audit`] seeing it.

use super::{Backend, Catalog, CatalogError, db, sha256_hex};
use sqlx::Row;

/// The previous hash of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What to append.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    /// The tenant it concerns (empty for the whole installation).
    pub tenant: String,
    /// Who: `token:<id>`, `cli:<user>`, `scheduler`, `server`.
    pub actor: String,
    /// What: `policy.change`, `alert.handle`, `sql.query`, `token.create`...
    pub action: String,
    /// On what: the route or object.
    pub target: String,
    /// The particulars (JSON).
    pub detail: serde_json::Value,
}

/// One stored row.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When, microseconds.
    pub time: i64,
    /// Tenant.
    pub tenant: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: String,
    /// The particulars, as stored (JSON text).
    pub detail: String,
    /// The previous row's hash.
    pub prev_hash: String,
    /// This row's hash.
    pub hash: String,
}

impl AuditEntry {
    /// The hash this row must have.
    pub fn expected_hash(&self) -> String {
        chain_hash(
            self.seq,
            self.time,
            &self.tenant,
            &self.actor,
            &self.action,
            &self.target,
            &self.detail,
            &self.prev_hash,
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn chain_hash(
    seq: i64,
    time: i64,
    tenant: &str,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
    prev: &str,
) -> String {
    let fields = serde_json::json!([seq, time, tenant, actor, action, target, detail, prev]);
    sha256_hex(fields.to_string().as_bytes())
}

/// What [`Catalog::verify_audit`] found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AuditVerdict {
    /// Rows read.
    pub rows: u64,
    /// The last row's (seq, hash).
    pub head: Option<(i64, String)>,
    /// Every break found, in order; empty when the chain is whole.
    pub problems: Vec<String>,
}

impl AuditVerdict {
    /// True when no break was found.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

const COLUMNS: &str = "seq, time, tenant, actor, action, target, detail, prev_hash, hash";

fn entry(r: &sqlx::any::AnyRow) -> Result<AuditEntry, sqlx::Error> {
    Ok(AuditEntry {
        seq: r.try_get(0)?,
        time: r.try_get(1)?,
        tenant: r.try_get(2)?,
        actor: r.try_get(3)?,
        action: r.try_get(4)?,
        target: r.try_get(5)?,
        detail: r.try_get(6)?,
        prev_hash: r.try_get(7)?,
        hash: r.try_get(8)?,
    })
}

impl Catalog {
    /// Appends one record to the chain; its sequence number.
    pub async fn audit(&self, rec: &AuditRecord, now: i64) -> Result<i64, CatalogError> {
        const OP: &str = "audit";
        let mut tx = self.write_tx(OP).await?;
        if self.backend == Backend::Postgres {
            sqlx::query(
                "SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtextextended('cordon.audit', 0))) l",
            )
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
        }
        let head = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(OP))?;
        let (prev_seq, prev_hash) = match head {
            Some(r) => (r.try_get::<i64, _>(0).map_err(db(OP))?, r.try_get::<String, _>(1).map_err(db(OP))?),
            None => (0, GENESIS.to_owned()),
        };
        let seq = prev_seq + 1;
        let detail = rec.detail.to_string();
        let hash =
            chain_hash(seq, now, &rec.tenant, &rec.actor, &rec.action, &rec.target, &detail, &prev_hash);
        sqlx::query(&format!("INSERT INTO audit_log ({COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)"))
            .bind(seq)
            .bind(now)
            .bind(rec.tenant.as_str())
            .bind(rec.actor.as_str())
            .bind(rec.action.as_str())
            .bind(rec.target.as_str())
            .bind(detail.as_str())
            .bind(prev_hash.as_str())
            .bind(hash.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
        sqlx::query(
            "INSERT INTO audit_head (id, seq, hash) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        )
        .bind(seq)
        .bind(hash.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?;
        tx.commit().await.map_err(db(OP))?;
        Ok(seq)
    }

    /// A tenant's audit rows after `after`, oldest first, at most `limit`.
    pub async fn audit_log(
        &self,
        tenant: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, CatalogError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM audit_log WHERE tenant = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(tenant)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db("audit_log"))?;
        rows.iter().map(entry).collect::<Result<_, _>>().map_err(db("audit_log"))
    }

    /// Walks the whole chain: sequence numbers contiguous from 1, each row's hash recomputed, each
    /// `prev_hash` equal to the previous row's hash, and the last row equal to `audit_head`.
    pub async fn verify_audit(&self) -> Result<AuditVerdict, CatalogError> {
        const OP: &str = "verify_audit";
        let mut v = AuditVerdict::default();
        let mut prev = (0i64, GENESIS.to_owned());
        let mut after = 0i64;
        loop {
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT 10000"
            ))
            .bind(after)
            .fetch_all(&self.pool)
            .await
            .map_err(db(OP))?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let e = entry(r).map_err(db(OP))?;
                check_link(&e, &prev, &mut v.problems);
                v.rows += 1;
                after = e.seq;
                prev = (e.seq, e.hash);
            }
        }
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(db(OP))?;
        let head: Option<(i64, String)> =
            head.map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?))).transpose().map_err(db(OP))?;
        let last = (v.rows > 0).then(|| prev.clone());
        if head != last {
            v.problems.push(format!(
                "the chain ends at {} but the head says {}: rows at the end were removed or added around the log",
                last.as_ref().map_or("nothing".to_owned(), |(s, h)| format!("seq {s} ({h})")),
                head.as_ref().map_or("nothing".to_owned(), |(s, h)| format!("seq {s} ({h})")),
            ));
        }
        v.head = last;
        Ok(v)
    }
}

/// Checks one row against its predecessor, noting every break.
fn check_link(e: &AuditEntry, prev: &(i64, String), problems: &mut Vec<String>) {
    if e.seq != prev.0 + 1 {
        problems.push(format!("seq {} follows seq {}: rows are missing or reordered", e.seq, prev.0));
    }
    if e.prev_hash != prev.1 {
        problems.push(format!("seq {} does not link to the row before it (prev_hash differs)", e.seq));
    }
    if e.hash != e.expected_hash() {
        problems.push(format!("seq {} was edited: its fields no longer give its hash", e.seq));
    }
}
