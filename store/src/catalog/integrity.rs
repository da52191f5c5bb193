//! Opening a SQLite catalog through the page-checksum VFS, and what each backend's own checks find.

use super::{Backend, Catalog, CatalogError, db};

/// A SQLite URL as the catalog opens it: created if missing, through the page-checksum VFS
/// ([`sqlite_cksum`]), so a page damaged on disk is an error and never a row.
pub(super) fn sqlite_url(url: &str) -> String {
    let mut url = url.to_owned();
    for (key, value) in [("mode", "rwc"), ("vfs", sqlite_cksum::VFS_NAME)] {
        if !url.contains(&format!("{key}=")) {
            let sep = if url.contains('?') { '&' } else { '?' };
            url = format!("{url}{sep}{key}={value}");
        }
    }
    url
}

/// Opens one connection and reads the schema, so that a damaged database file fails with SQLite's
/// own words at once (a pool would retry it until its acquire timeout and report only that).
pub(super) async fn probe_sqlite(url: &str) -> Result<(), CatalogError> {
    use sqlx::Connection;
    let mut conn = sqlx::AnyConnection::connect(url).await.map_err(db("open"))?;
    sqlx::query("SELECT count(*) FROM sqlite_master").fetch_one(&mut conn).await.map_err(db("open"))?;
    conn.close().await.map_err(db("open"))
}

impl Catalog {
    /// What the database's own consistency check finds (SQLite's `PRAGMA integrity_check`, which
    /// reads every page through the checksum VFS; PostgreSQL checks its pages itself, when its data
    /// checksums are on: see [`Self::integrity_warnings`]). Empty when it is whole.
    pub async fn integrity_problems(&self) -> Result<Vec<String>, CatalogError> {
        if self.backend != Backend::Sqlite {
            return Ok(Vec::new());
        }
        let rows: Vec<(String,)> = match sqlx::query_as("PRAGMA integrity_check").fetch_all(&self.pool).await
        {
            Ok(rows) => rows,
            Err(e) => match db("integrity_check")(e) {
                e @ CatalogError::PageChecksum { .. } => return Ok(vec![e.to_string()]),
                e => return Err(e),
            },
        };
        Ok(rows.into_iter().map(|(r,)| r).filter(|r| r != "ok").collect())
    }

    /// What leaves damage undetectable. PostgreSQL detects damaged pages only when the cluster was
    /// initialised with data checksums (`initdb --data-checksums`, the default from PostgreSQL 18):
    /// without them a flipped bit is served as data. SQLite files always get checksums here.
    pub async fn integrity_warnings(&self) -> Result<Vec<String>, CatalogError> {
        if self.backend != Backend::Postgres {
            return Ok(Vec::new());
        }
        let (on,): (String,) = sqlx::query_as("SHOW data_checksums")
            .fetch_one(&self.pool)
            .await
            .map_err(db("data_checksums"))?;
        Ok(if on == "on" {
            Vec::new()
        } else {
            vec![
                "PostgreSQL data checksums are off: damaged pages would be served as rows (initdb --data-checksums, or pg_checksums --enable with the cluster stopped)".to_owned(),
            ]
        })
    }
}
