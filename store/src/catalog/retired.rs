//! Retired lake files: what compaction, retention and quarantine took out of the table, and whether
//! the index has dropped their documents yet.

use super::{Catalog, CatalogError, db};
use sqlx::Row;

/// The retirement reason of a file quarantined because its bytes no longer match its checksum.
pub const DAMAGED: &str = "damaged";

/// A lake file quarantined as damaged: its rows are lost.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DamagedFile {
    /// Its path in the lake when it was live.
    pub path: String,
    /// The rows it held.
    pub rows: i64,
    /// When it was quarantined (microseconds).
    pub retired_at: i64,
}

impl Catalog {
    /// Retired file ids whose index documents may still exist.
    pub async fn retired_unpurged(&self) -> Result<Vec<i64>, CatalogError> {
        let rows = sqlx::query("SELECT id FROM retired_files WHERE index_purged = 0 ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(db("retired_unpurged"))?;
        rows.iter().map(|r| r.try_get::<i64, _>(0)).collect::<Result<_, _>>().map_err(db("retired_unpurged"))
    }

    /// Records that the index has committed the deletion of these retired files' documents.
    pub async fn mark_purged(&self, ids: &[i64]) -> Result<(), CatalogError> {
        for chunk in ids.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql =
                format!("UPDATE retired_files SET index_purged = 1 WHERE id IN ({})", placeholders.join(","));
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&self.pool).await.map_err(db("mark_purged"))?;
        }
        Ok(())
    }

    /// The paths of files retired at or after `since` (microseconds).
    pub async fn paths_retired_since(&self, since: i64) -> Result<Vec<String>, CatalogError> {
        let rows = sqlx::query("SELECT path FROM retired_files WHERE retired_at >= $1")
            .bind(since)
            .fetch_all(&self.pool)
            .await
            .map_err(db("paths_retired_since"))?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()
            .map_err(db("paths_retired_since"))
    }

    /// Every file quarantined as damaged, oldest first.
    pub async fn damaged_files(&self) -> Result<Vec<DamagedFile>, CatalogError> {
        let rows =
            sqlx::query("SELECT path, rows, retired_at FROM retired_files WHERE reason = $1 ORDER BY id")
                .bind(DAMAGED)
                .fetch_all(&self.pool)
                .await
                .map_err(db("damaged_files"))?;
        rows.iter()
            .map(|r| Ok(DamagedFile { path: r.try_get(0)?, rows: r.try_get(1)?, retired_at: r.try_get(2)? }))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("damaged_files"))
    }
}
