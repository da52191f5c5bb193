//! A small migrator: numbered SQL files per backend, each applied once, all in one transaction.
//! (sqlx's `migrate!` needs its macro crate, which compiles every driver a second time.)

use super::{Backend, CatalogError, db};
use sqlx::{AnyPool, Row};

const SQLITE: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../migrations/sqlite/0002_maintenance.sql")),
    (3, include_str!("../../migrations/sqlite/0003_agent_activity.sql")),
    (4, include_str!("../../migrations/sqlite/0004_policies.sql")),
    (5, include_str!("../../migrations/sqlite/0005_alerts.sql")),
    (6, include_str!("../../migrations/sqlite/0006_incidents.sql")),
    (7, include_str!("../../migrations/sqlite/0007_reports.sql")),
    (8, include_str!("../../migrations/sqlite/0008_trust.sql")),
    (9, include_str!("../../migrations/sqlite/0009_enrollment.sql")),
    (10, include_str!("../../migrations/sqlite/0010_response.sql")),
    (11, include_str!("../../migrations/sqlite/0011_approver_sets.sql")),
    (12, include_str!("../../migrations/sqlite/0012_standing_orders.sql")),
    (13, include_str!("../../migrations/sqlite/0013_alert_indexes.sql")),
    (14, include_str!("../../migrations/sqlite/0014_agent_watch.sql")),
    (15, include_str!("../../migrations/sqlite/0015_analysed.sql")),
    (16, include_str!("../../migrations/sqlite/0016_file_ids.sql")),
    (17, include_str!("../../migrations/sqlite/0017_leases.sql")),
    (18, include_str!("../../migrations/sqlite/0018_commit_seq.sql")),
];
const POSTGRES: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_init.sql")),
    (2, include_str!("../../migrations/postgres/0002_maintenance.sql")),
    (3, include_str!("../../migrations/postgres/0003_agent_activity.sql")),
    (4, include_str!("../../migrations/postgres/0004_policies.sql")),
    (5, include_str!("../../migrations/postgres/0005_alerts.sql")),
    (6, include_str!("../../migrations/postgres/0006_incidents.sql")),
    (7, include_str!("../../migrations/postgres/0007_reports.sql")),
    (8, include_str!("../../migrations/postgres/0008_trust.sql")),
    (9, include_str!("../../migrations/postgres/0009_enrollment.sql")),
    (10, include_str!("../../migrations/postgres/0010_response.sql")),
    (11, include_str!("../../migrations/postgres/0011_approver_sets.sql")),
    (12, include_str!("../../migrations/postgres/0012_standing_orders.sql")),
    (13, include_str!("../../migrations/postgres/0013_alert_indexes.sql")),
    (14, include_str!("../../migrations/postgres/0014_agent_watch.sql")),
    (15, include_str!("../../migrations/postgres/0015_analysed.sql")),
    (16, include_str!("../../migrations/postgres/0016_file_ids.sql")),
    (17, include_str!("../../migrations/postgres/0017_leases.sql")),
    (18, include_str!("../../migrations/postgres/0018_commit_seq.sql")),
];

/// Any number to name the advisory lock migrations take on PostgreSQL ("cordon" in ASCII).
const MIGRATION_LOCK: i64 = 0x636f_7264_6f6e;

/// Applies the steps the catalog has not had, in one transaction that holds the catalog's migration
/// lock: processes sharing a catalog (ADR 0009) that start at once migrate it once, the others
/// waiting, then finding it current. (SQLite's `BEGIN IMMEDIATE` is the lock there.)
pub(super) async fn run(pool: &AnyPool, backend: Backend) -> Result<(), CatalogError> {
    let steps = match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    let mut tx = match backend {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => pool.begin().await,
    }
    .map_err(db("migrate"))?;
    if backend == Backend::Postgres {
        sqlx::query("SELECT CAST(pg_advisory_xact_lock($1) AS TEXT)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(db("migrate lock"))?;
    }
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS cordon_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await
    .map_err(db("migrate"))?;
    let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM cordon_migrations")
        .fetch_one(&mut *tx)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(db("migrate"))?;
    let known = steps.last().map_or(0, |s| s.0);
    if current > known {
        return Err(CatalogError::NewerSchema { found: current, known });
    }
    for (version, sql) in steps.iter().filter(|(v, _)| *v > current) {
        sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(db("migrate"))?;
        sqlx::query("INSERT INTO cordon_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(*version)
            .bind(schemas::time::now_micros())
            .execute(&mut *tx)
            .await
            .map_err(db("migrate"))?;
    }
    tx.commit().await.map_err(db("migrate"))
}
