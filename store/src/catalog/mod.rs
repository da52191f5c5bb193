//! The metadata catalog: SQLite (embedded default) or PostgreSQL, chosen by URL.
//!
//! One implementation over `sqlx::Any`: the SQL here is the portable subset both speak (`$n`
//! placeholders, `ON CONFLICT`, `CASE`), and the DDL that differs lives in one migrations directory
//! per backend. SQLite runs with `journal_mode=WAL` and `synchronous=FULL`.

mod agents;
mod alerts;
mod analysed;
mod approver_sets;
mod audit;
mod dead_letters;
mod deliveries;
mod enroll;
mod file_ids;
mod filter;
mod incidents;
mod integrity;
mod lake_files;
mod leases;
use integrity::{probe_sqlite, sqlite_url};
mod migrate;
mod policies;
mod reports;
mod response;
mod retired;
mod standing;
pub use retired::{DAMAGED, DamagedFile};
mod tokens;

pub use agents::AgentRow;
pub use alerts::{AlertComment, AlertFilter};
pub use approver_sets::SetChangeRow;
pub use audit::{AuditEntry, AuditRecord, AuditVerdict, GENESIS};
pub use dead_letters::{DeadLetterRow, KEEP_PER_TENANT};
pub use deliveries::TargetRow;
pub use enroll::{EnrollRefusal, EnrolledAgent};
pub use incidents::{
    INCIDENT_STATUSES, IncidentChange, IncidentComment, IncidentFilter, IncidentRow, IncidentWrite,
};
pub use leases::Fence;
pub use policies::PolicyVersion;
pub use reports::ReportRow;
pub use response::{
    ApprovalRow, ApproverRow, DEFAULT_MAX_DESTRUCTIVE_TARGETS, NewRequest, REQUEST_STATES, RequestRefusal,
    RequestRow, ResponseSettings,
};
pub use standing::{OrderRow, TriggerRow};
pub use tokens::TokenInfo;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::collections::HashSet;
use std::time::Duration;

/// Which database is behind the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Catalog failures.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The URL names no supported database.
    #[error("metadata URL {0:?} is neither sqlite:// nor postgres://")]
    Url(String),
    /// The database failed.
    #[error("metadata database error during {op}: {source}")]
    Db {
        /// What was being done.
        op: &'static str,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// The database holds a newer schema than this build knows.
    #[error("metadata schema version {found} is newer than this build's {known}")]
    NewerSchema {
        /// Found version.
        found: i64,
        /// Newest known.
        known: i64,
    },
    /// Another writer changed what this operation was based on.
    #[error("catalog conflict: {0}")]
    Conflict(String),
    /// A page of the SQLite file no longer matches its checksum: the file was damaged on disk.
    #[error(
        "metadata database damaged: a page read during {op} failed its checksum (SQLITE_IOERR_DATA); restore the database from a backup"
    )]
    PageChecksum {
        /// What was being done.
        op: &'static str,
    },
    /// The SQLite file could not be given page checksums.
    #[error("metadata database page checksums: {0}")]
    Checksums(#[from] sqlite_cksum::Error),
}

fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> CatalogError {
    move |source| {
        let code = source.as_database_error().and_then(|e| e.code());
        if code.is_some_and(|c| c == sqlite_cksum::IOERR_DATA.to_string()) {
            return CatalogError::PageChecksum { op };
        }
        CatalogError::Db { op, source }
    }
}

/// One committed lake file.
#[derive(Clone, Debug, PartialEq)]
pub struct FileEntry {
    /// Catalog id; also the high bits of the full-text index's row references.
    pub id: i64,
    /// Tenant.
    pub tenant: String,
    /// Partition date.
    pub date: String,
    /// Path relative to the lake root.
    pub path: String,
    /// Row count.
    pub rows: i64,
    /// Size in bytes.
    pub bytes: i64,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
    /// Earliest event time.
    pub min_time: i64,
    /// Latest event time.
    pub max_time: i64,
    /// Lowest stream sequence among its rows.
    pub min_seq: i64,
    /// Highest stream sequence among its rows.
    pub max_seq: i64,
}

/// One processed message.
#[derive(Clone, Debug)]
pub struct BatchEntry {
    /// The batch key.
    pub key: String,
    /// Its stream sequence.
    pub stream_seq: i64,
    /// Events stored from it.
    pub events: i64,
    /// Lines rejected from it.
    pub rejected: i64,
}

/// What one commit adds to a host's summary.
#[derive(Clone, Debug)]
pub struct HostDelta {
    /// Tenant.
    pub tenant: String,
    /// Host name.
    pub host: String,
    /// The agent it came through.
    pub agent_id: String,
    /// Earliest event time in the commit.
    pub first_seen: i64,
    /// Latest.
    pub last_seen: i64,
    /// Events in the commit.
    pub events: i64,
}

/// A host summary.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HostRow {
    /// Host name.
    pub host: String,
    /// The agent it reports through.
    pub agent_id: String,
    /// Earliest event, microseconds.
    pub first_seen: i64,
    /// Latest event, microseconds.
    pub last_seen: i64,
    /// Events stored.
    pub events: i64,
}

/// Everything one ingest commit records, applied in one transaction.
#[derive(Clone, Debug, Default)]
pub struct CommitRecord {
    /// The consumer whose checkpoint advances.
    pub consumer: String,
    /// The new checkpoint (highest stream sequence in the commit).
    pub checkpoint: i64,
    /// Files written.
    pub files: Vec<FileEntry>,
    /// Messages processed.
    pub batches: Vec<BatchEntry>,
    /// Host summaries to fold in.
    pub hosts: Vec<HostDelta>,
}

/// The catalog handle (cheap to clone).
#[derive(Clone, Debug)]
pub struct Catalog {
    pool: AnyPool,
    backend: Backend,
}

impl Catalog {
    /// Connects (creating a SQLite file if needed) and applies migrations.
    pub async fn connect(url: &str) -> Result<Self, CatalogError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(CatalogError::Url(url.to_owned()));
        };
        // A connection whose transaction could not be ended (a COMMIT refused for a full disk, after
        // which SQLite rolled back by itself and sqlx's ROLLBACK failed) still counts as inside it;
        // back in the pool it would refuse every later BEGIN. Such a connection is closed instead.
        let mut opts =
            AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30)).after_release(|conn, _| {
                Box::pin(async move {
                    use sqlx::Connection;
                    conn.ping().await?;
                    if conn.is_in_transaction() {
                        tracing::warn!("closing a metadata connection left inside a transaction");
                        return Ok(false);
                    }
                    Ok(true)
                })
            });
        if backend == Backend::Sqlite {
            opts = opts.max_connections(4).after_connect(|conn, _| {
                Box::pin(async move {
                    for pragma in
                        ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=10000"]
                    {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            });
        } else {
            // A process that stalls inside a transaction (stopped, swapped out, its host frozen)
            // holds its row locks, and where processes share the catalog every other commit waits
            // on the commit counter's row behind it. PostgreSQL ends such a session; the stalled
            // commit then fails and its batch is redelivered.
            opts = opts.max_connections(8).after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("SET idle_in_transaction_session_timeout = '10s'")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            });
        }
        let url = match backend {
            Backend::Sqlite => sqlite_url(url),
            Backend::Postgres => url.to_owned(),
        };
        if backend == Backend::Sqlite {
            if let Err(e) = sqlite_cksum::enable(&url).await {
                // A damaged file fails here first; the probe below names what SQLite found.
                probe_sqlite(&url).await?;
                return Err(e.into());
            }
            probe_sqlite(&url).await?;
        }
        let pool = opts.connect(&url).await.map_err(db("connect"))?;
        let cat = Self { pool, backend };
        migrate::run(&cat.pool, backend).await?;
        for warning in cat.integrity_warnings().await? {
            tracing::warn!("{warning}");
        }
        Ok(cat)
    }

    /// Begins a transaction that writes. SQLite's default (deferred) transaction starts as a reader
    /// and must upgrade to a writer at its first write; in WAL mode that upgrade fails at once
    /// (`SQLITE_BUSY`, which the busy timeout does not cover) when another connection wrote since the
    /// transaction's first read. `BEGIN IMMEDIATE` takes the write lock up front, so concurrent
    /// writers wait on the busy timeout instead. PostgreSQL's `BEGIN` already allows that.
    pub(crate) async fn write_tx(
        &self,
        op: &'static str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, CatalogError> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db(op)),
            Backend::Postgres => self.pool.begin().await.map_err(db(op)),
        }
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Which of `keys` were committed already.
    pub async fn committed_keys(&self, keys: &[String]) -> Result<HashSet<String>, CatalogError> {
        let mut found = HashSet::new();
        for chunk in keys.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT batch_key FROM ingest_batches WHERE batch_key IN ({})",
                placeholders.join(",")
            );
            let mut q = sqlx::query(&sql);
            for k in chunk {
                q = q.bind(k.as_str());
            }
            for row in q.fetch_all(&self.pool).await.map_err(db("committed_keys"))? {
                found.insert(row.try_get::<String, _>(0).map_err(db("committed_keys"))?);
            }
        }
        Ok(found)
    }

    /// Applies one commit atomically: batch keys, host summaries, files, checkpoint. Returns the
    /// commit's number in the order commits become visible ([`Catalog::files_committed_after`]),
    /// `None` when it adds no file.
    pub async fn commit(&self, c: &CommitRecord, now: i64) -> Result<Option<i64>, CatalogError> {
        let mut tx = self.write_tx("commit").await?;
        for b in &c.batches {
            sqlx::query(
                "INSERT INTO ingest_batches (batch_key, stream_seq, events, rejected, committed_at) \
                 VALUES ($1,$2,$3,$4,$5)",
            )
            .bind(b.key.as_str())
            .bind(b.stream_seq)
            .bind(b.events)
            .bind(b.rejected)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db("commit batch"))?;
        }
        for h in &c.hosts {
            sqlx::query(
                "INSERT INTO hosts (tenant, host, agent_id, first_seen, last_seen, events) \
                 VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (tenant, host) DO UPDATE SET \
                 agent_id = excluded.agent_id, \
                 first_seen = CASE WHEN excluded.first_seen < hosts.first_seen \
                     THEN excluded.first_seen ELSE hosts.first_seen END, \
                 last_seen = CASE WHEN excluded.last_seen > hosts.last_seen \
                     THEN excluded.last_seen ELSE hosts.last_seen END, \
                 events = hosts.events + excluded.events",
            )
            .bind(h.tenant.as_str())
            .bind(h.host.as_str())
            .bind(h.agent_id.as_str())
            .bind(h.first_seen)
            .bind(h.last_seen)
            .bind(h.events)
            .execute(&mut *tx)
            .await
            .map_err(db("commit host"))?;
        }
        // Last but the checkpoint: the commit number's row stays locked until the transaction ends.
        let seq = match c.files.is_empty() {
            true => None,
            false => Some(lake_files::take_commit_seq(&mut tx).await.map_err(db("commit seq"))?),
        };
        lake_files::insert_files(&mut tx, &c.files, now, seq).await.map_err(db("commit file"))?;
        sqlx::query(
            "INSERT INTO checkpoints (consumer, stream_seq, updated_at) VALUES ($1,$2,$3) \
             ON CONFLICT (consumer) DO UPDATE SET \
             stream_seq = CASE WHEN excluded.stream_seq > checkpoints.stream_seq \
                 THEN excluded.stream_seq ELSE checkpoints.stream_seq END, \
             updated_at = excluded.updated_at",
        )
        .bind(c.consumer.as_str())
        .bind(c.checkpoint)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("commit checkpoint"))?;
        tx.commit().await.map_err(db("commit"))?;
        Ok(seq)
    }

    /// Replaces lake files in one transaction (the commit point of compaction and retention): `retire`
    /// leave the table and are recorded as retired with `reason`; `add` join it; `expired` (tenant,
    /// host, events) come off the hosts' event counts when rows leave the table for good.
    pub async fn swap_files(
        &self,
        retire: &[FileEntry],
        add: &[FileEntry],
        reason: &str,
        now: i64,
        expired: &[(String, String, i64)],
    ) -> Result<(), CatalogError> {
        let mut tx = self.write_tx("swap_files").await?;
        for (tenant, host, events) in expired {
            sqlx::query("UPDATE hosts SET events = CASE WHEN events > $3 THEN events - $3 ELSE 0 END WHERE tenant = $1 AND host = $2")
                .bind(tenant.as_str())
                .bind(host.as_str())
                .bind(*events)
                .execute(&mut *tx)
                .await
                .map_err(db("swap_files hosts"))?;
        }
        for f in retire {
            let gone = sqlx::query("DELETE FROM lake_files WHERE id = $1")
                .bind(f.id)
                .execute(&mut *tx)
                .await
                .map_err(db("swap_files retire"))?;
            if gone.rows_affected() != 1 {
                return Err(CatalogError::Conflict(format!("lake file {} is no longer live", f.id)));
            }
            sqlx::query(
                "INSERT INTO retired_files (id, tenant, date, path, rows, reason, retired_at, index_purged) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,0)",
            )
            .bind(f.id)
            .bind(f.tenant.as_str())
            .bind(f.date.as_str())
            .bind(f.path.as_str())
            .bind(f.rows)
            .bind(reason)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db("swap_files retire"))?;
        }
        lake_files::insert_files(&mut tx, add, now, None).await.map_err(db("swap_files add"))?;
        tx.commit().await.map_err(db("swap_files"))
    }

    /// The consumer's checkpoint, if it has committed anything.
    pub async fn checkpoint(&self, consumer: &str) -> Result<Option<i64>, CatalogError> {
        let row = sqlx::query("SELECT stream_seq FROM checkpoints WHERE consumer = $1")
            .bind(consumer)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("checkpoint"))?;
        row.map(|r| r.try_get::<i64, _>(0)).transpose().map_err(db("checkpoint"))
    }

    /// The highest checkpoint of any consumer (0 before the first commit).
    pub async fn max_checkpoint(&self) -> Result<i64, CatalogError> {
        let row = sqlx::query("SELECT CAST(COALESCE(MAX(stream_seq), 0) AS BIGINT) FROM checkpoints")
            .fetch_one(&self.pool)
            .await
            .map_err(db("max_checkpoint"))?;
        row.try_get::<i64, _>(0).map_err(db("max_checkpoint"))
    }

    /// Rows in the live files, all tenants: the events the lake holds.
    pub async fn live_rows(&self) -> Result<i64, CatalogError> {
        let row = sqlx::query("SELECT CAST(COALESCE(SUM(rows), 0) AS BIGINT) FROM lake_files")
            .fetch_one(&self.pool)
            .await
            .map_err(db("live_rows"))?;
        row.try_get::<i64, _>(0).map_err(db("live_rows"))
    }

    /// The tenants with events in the lake.
    pub async fn tenants(&self) -> Result<Vec<String>, CatalogError> {
        let rows = sqlx::query("SELECT DISTINCT tenant FROM lake_files ORDER BY tenant")
            .fetch_all(&self.pool)
            .await
            .map_err(db("tenants"))?;
        rows.iter().map(|r| r.try_get::<String, _>(0).map_err(db("tenants"))).collect()
    }

    /// Committed files with an id above `after`, in id order.
    pub async fn files_after(&self, after: i64) -> Result<Vec<FileEntry>, CatalogError> {
        let rows = sqlx::query(
            "SELECT id, tenant, date, path, rows, bytes, sha256, min_time, max_time, min_seq, max_seq \
             FROM lake_files WHERE id > $1 ORDER BY id",
        )
        .bind(after)
        .fetch_all(&self.pool)
        .await
        .map_err(db("files_after"))?;
        rows.iter().map(file_entry).collect::<Result<_, _>>().map_err(db("files_after"))
    }

    /// A tenant's committed files, in id order.
    pub async fn files_of_tenant(&self, tenant: &str) -> Result<Vec<FileEntry>, CatalogError> {
        let rows = sqlx::query(
            "SELECT id, tenant, date, path, rows, bytes, sha256, min_time, max_time, min_seq, max_seq \
             FROM lake_files WHERE tenant = $1 ORDER BY id",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await
        .map_err(db("files_of_tenant"))?;
        rows.iter().map(file_entry).collect::<Result<_, _>>().map_err(db("files_of_tenant"))
    }

    /// The files with these ids.
    pub async fn files_by_id(&self, ids: &[i64]) -> Result<Vec<FileEntry>, CatalogError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT id, tenant, date, path, rows, bytes, sha256, min_time, max_time, min_seq, max_seq \
                 FROM lake_files WHERE id IN ({})",
                placeholders.join(",")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&self.pool).await.map_err(db("files_by_id"))? {
                out.push(file_entry(&row).map_err(db("files_by_id"))?);
            }
        }
        Ok(out)
    }

    /// Total rows and files committed (optionally for one tenant).
    pub async fn totals(&self, tenant: Option<&str>) -> Result<(i64, i64), CatalogError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(rows), 0) AS BIGINT), COUNT(*) FROM lake_files WHERE ($1 = '' OR tenant = $1)",
        )
        .bind(tenant.unwrap_or(""))
        .fetch_one(&self.pool)
        .await
        .map_err(db("totals"))?;
        Ok((row.try_get::<i64, _>(0).map_err(db("totals"))?, row.try_get::<i64, _>(1).map_err(db("totals"))?))
    }

    /// A tenant's hosts, most recently seen first.
    pub async fn hosts(&self, tenant: &str, limit: i64, offset: i64) -> Result<Vec<HostRow>, CatalogError> {
        let rows = sqlx::query(
            "SELECT host, agent_id, first_seen, last_seen, events FROM hosts WHERE tenant = $1 \
             ORDER BY last_seen DESC, host LIMIT $2 OFFSET $3",
        )
        .bind(tenant)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(db("hosts"))?;
        rows.iter()
            .map(|r| {
                Ok(HostRow {
                    host: r.try_get(0)?,
                    agent_id: r.try_get(1)?,
                    first_seen: r.try_get(2)?,
                    last_seen: r.try_get(3)?,
                    events: r.try_get(4)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("hosts"))
    }
}

fn file_entry(r: &AnyRow) -> Result<FileEntry, sqlx::Error> {
    Ok(FileEntry {
        id: r.try_get(0)?,
        tenant: r.try_get(1)?,
        date: r.try_get(2)?,
        path: r.try_get(3)?,
        rows: r.try_get(4)?,
        bytes: r.try_get(5)?,
        sha256: r.try_get(6)?,
        min_time: r.try_get(7)?,
        max_time: r.try_get(8)?,
        min_seq: r.try_get(9)?,
        max_seq: r.try_get(10)?,
    })
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}
