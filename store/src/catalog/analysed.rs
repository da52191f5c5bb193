//! How far ingest's analysers have read the lake (the `analysed` table): a lake file id per reader.

use super::{Catalog, CatalogError, db};
use sqlx::Row;

impl Catalog {
    /// The highest lake file id `name` has analysed, if it has ever recorded one.
    pub async fn analysed_through(&self, name: &str) -> Result<Option<i64>, CatalogError> {
        let row = sqlx::query("SELECT file_id FROM analysed WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("analysed_through"))?;
        row.map(|r| r.try_get::<i64, _>(0)).transpose().map_err(db("analysed_through"))
    }

    /// Records that `name` has analysed every lake file up to `file_id`; the mark never moves back.
    /// With a `fence`, only while its holder holds the lease: false, and the mark left, once another
    /// process has taken it.
    pub async fn set_analysed_through(
        &self,
        name: &str,
        file_id: i64,
        now: i64,
        fence: Option<super::Fence<'_>>,
    ) -> Result<bool, CatalogError> {
        let mut tx = self.write_tx("set_analysed_through").await?;
        if !super::leases::holds(&mut tx, fence).await.map_err(db("set_analysed_through"))? {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO analysed (name, file_id, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET file_id = excluded.file_id, updated_at = excluded.updated_at \
             WHERE excluded.file_id > analysed.file_id",
        )
        .bind(name)
        .bind(file_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("set_analysed_through"))?;
        tx.commit().await.map_err(db("set_analysed_through"))?;
        Ok(true)
    }
}
