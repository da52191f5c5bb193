//! Files joining `lake_files`, and the order ingest's commits became visible in (the `commit_seqs`
//! counter, migration 18; ADR 0009).
//!
//! A commit takes the next number inside its catalog transaction, and the counter's row stays locked
//! until that transaction ends: on PostgreSQL another commit's take waits for it, on SQLite there is
//! one writer. So numbers become visible in order and without gaps (a transaction that rolls back
//! gives its number back), and a reader that sees number n sees every number below it, whichever
//! process committed it. File ids cannot give that order: they are taken before the files are
//! written, and commit out of id order across processes.

use super::{Catalog, CatalogError, FileEntry, db, file_entry, file_ids};
use sqlx::Row;
use std::collections::HashSet;

impl Catalog {
    /// The number the latest commit took (0 before any).
    pub async fn last_commit_seq(&self) -> Result<i64, CatalogError> {
        let row = sqlx::query("SELECT last_seq FROM commit_seqs WHERE one = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(db("last_commit_seq"))?;
        row.try_get::<i64, _>(0).map_err(db("last_commit_seq"))
    }

    /// The live files ingest's commits numbered after `after` and up to `through` added, in commit
    /// order, each with its number. A merge's output has no number and is not among them: its rows
    /// came from commits. Every number up to [`Catalog::last_commit_seq`] is visible once that is.
    pub async fn files_committed_after(
        &self,
        after: i64,
        through: i64,
    ) -> Result<Vec<(i64, FileEntry)>, CatalogError> {
        let rows = sqlx::query(
            "SELECT id, tenant, date, path, rows, bytes, sha256, min_time, max_time, min_seq, max_seq, \
             commit_seq FROM lake_files WHERE commit_seq > $1 AND commit_seq <= $2 ORDER BY commit_seq, id",
        )
        .bind(after)
        .bind(through)
        .fetch_all(&self.pool)
        .await
        .map_err(db("files_committed_after"))?;
        let one = |r: &sqlx::any::AnyRow| Ok::<_, sqlx::Error>((r.try_get::<i64, _>(11)?, file_entry(r)?));
        rows.iter().map(one).collect::<Result<_, _>>().map_err(db("files_committed_after"))
    }

    /// The live files some reader of the `analysed` table has not analysed yet: maintenance leaves
    /// them alone, so a reader behind finds every committed file it has still to read (a merge's
    /// output carries no commit number). Empty while nothing reads.
    pub async fn unanalysed_file_ids(&self) -> Result<HashSet<i64>, CatalogError> {
        let rows =
            sqlx::query("SELECT id FROM lake_files WHERE commit_seq > (SELECT MIN(file_id) FROM analysed)")
                .fetch_all(&self.pool)
                .await
                .map_err(db("unanalysed_file_ids"))?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()
            .map_err(db("unanalysed_file_ids"))
    }
}

/// Takes the next commit number in `tx`; the counter's row stays locked until `tx` ends.
pub(super) async fn take_commit_seq(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("UPDATE commit_seqs SET last_seq = last_seq + 1 WHERE one = 1 RETURNING last_seq")
        .fetch_one(&mut **tx)
        .await?;
    row.try_get::<i64, _>(0)
}

/// Inserts `files` into `lake_files` in `tx`, numbered `commit_seq` (a commit's) or not (a merge's
/// output), and moves the id counter past the highest of them once.
pub(super) async fn insert_files(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    files: &[FileEntry],
    now: i64,
    commit_seq: Option<i64>,
) -> Result<(), sqlx::Error> {
    for f in files {
        insert_file(tx, f, now, commit_seq).await?;
    }
    match files.iter().map(|f| f.id).max() {
        Some(highest) => file_ids::lift_past(tx, highest).await,
        None => Ok(()),
    }
}

async fn insert_file(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    f: &FileEntry,
    now: i64,
    commit_seq: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO lake_files (id, tenant, date, path, rows, bytes, sha256, min_time, max_time, \
         min_seq, max_seq, committed_at, commit_seq) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)",
    )
    .bind(f.id)
    .bind(f.tenant.as_str())
    .bind(f.date.as_str())
    .bind(f.path.as_str())
    .bind(f.rows)
    .bind(f.bytes)
    .bind(f.sha256.as_str())
    .bind(f.min_time)
    .bind(f.max_time)
    .bind(f.min_seq)
    .bind(f.max_seq)
    .bind(now)
    .bind(commit_seq)
    .execute(&mut **tx)
    .await
    .map(drop)
}
