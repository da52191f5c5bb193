//! Leases (the `leases` table): work that one of the processes sharing the catalog does at a time
//! (ADR 0009), held by one holder until it lapses, renewed while the holder works.

use super::{Catalog, CatalogError, db};

/// A write made for the holder of a lease, refused once another holds it: a process that paused
/// (stopped, swapped out, cut off) past its lease and then resumes must not overwrite what the
/// process that took the lease over has written since.
#[derive(Clone, Copy, Debug)]
pub struct Fence<'a> {
    /// The lease's name.
    pub lease: &'a str,
    /// The process the write is made for.
    pub holder: &'a str,
}

/// Whether `fence`'s holder still holds its lease, checked inside `tx`: its row stays locked until
/// `tx` ends, so a takeover waits for the write (and then reads it) or the write sees the takeover
/// and is refused. A lease that lapsed but that nobody has taken yet still passes: no other holder
/// has written anything the write could overwrite.
pub(super) async fn holds(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    fence: Option<Fence<'_>>,
) -> Result<bool, sqlx::Error> {
    let Some(f) = fence else { return Ok(true) };
    let done = sqlx::query("UPDATE leases SET holder = holder WHERE name = $1 AND holder = $2")
        .bind(f.lease)
        .bind(f.holder)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

impl Catalog {
    /// Takes or renews lease `name` for `holder` until `now + ttl` (microseconds): true when
    /// `holder` holds it now, false while another holder's lease has not lapsed.
    pub async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        ttl: i64,
    ) -> Result<bool, CatalogError> {
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
        )
        .bind(name)
        .bind(holder)
        .bind(now.saturating_add(ttl))
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db("hold_lease"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives lease `name` up, if `holder` holds it, so another can take it at once.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), CatalogError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(db("release_lease"))?;
        Ok(())
    }
}
