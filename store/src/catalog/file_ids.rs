//! Where lake file ids come from (the `file_ids` table): one counter for every process sharing the
//! catalog (ADR 0009), so no two commits or merges take the same id.

use super::{Backend, Catalog, CatalogError, db};
use sqlx::Row;

impl Catalog {
    /// The id the next lake file gets: above every live, retired and handed-out id, so ids are never
    /// reused.
    pub async fn next_file_id(&self) -> Result<i64, CatalogError> {
        let row = sqlx::query("SELECT next_id FROM file_ids WHERE one = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(db("next_file_id"))?;
        row.try_get::<i64, _>(0).map_err(db("next_file_id"))
    }

    /// Hands out `n` lake file ids no other commit or merge, of this process or another sharing
    /// the catalog, takes: the first of them (the rest follow it). Ids a commit takes and does not
    /// use (it failed) are skipped, never handed out again.
    pub async fn take_file_ids(&self, n: usize) -> Result<i64, CatalogError> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let mut tx = self.write_tx("take_file_ids").await?;
        if self.backend == Backend::Postgres {
            // Not waited for on disk. A take lost in a crash only hands its ids out again, which
            // is harmless: lake file names carry a uuid beside the id, and a catalog commit that
            // inserts one of the ids is flushed after this take and so keeps it.
            sqlx::query("SET LOCAL synchronous_commit TO OFF")
                .execute(&mut *tx)
                .await
                .map_err(db("take_file_ids"))?;
        }
        let row =
            sqlx::query("UPDATE file_ids SET next_id = next_id + $1 WHERE one = 1 RETURNING next_id - $1")
                .bind(n)
                .fetch_one(&mut *tx)
                .await
                .map_err(db("take_file_ids"))?;
        let first = row.try_get::<i64, _>(0).map_err(db("take_file_ids"))?;
        tx.commit().await.map_err(db("take_file_ids"))?;
        Ok(first)
    }
}

/// Moves the counter past `id`, the highest inserted into `lake_files` in `tx`: an id not handed out by
/// [`Catalog::take_file_ids`] (a catalog restored, a caller of its own) is never handed out after.
/// A no-op, taking no lock, for an id that was.
pub(super) async fn lift_past(tx: &mut sqlx::Transaction<'_, sqlx::Any>, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE file_ids SET next_id = $1 + 1 WHERE one = 1 AND next_id <= $1")
        .bind(id)
        .execute(&mut **tx)
        .await
        .map(drop)
}
