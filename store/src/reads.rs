//! The store's DataFusion reads: timelines, login counts, host groups and SQL, each over exactly
//! the catalog's live files for its tenant, checked before use ([`crate::verified`]).
//!
//! A read that meets a damaged file does not serve it: the store checks the file once more itself,
//! quarantines it when it is damaged ([`crate::scrub`]), and runs the read again over what is left.

use crate::catalog::FileEntry;
use crate::query::{self, QueryEngine, QueryError, Scope, SqlLimits, SqlOutput};
use crate::verified::ExpectedFile;
use crate::{Store, StoreError};
use schemas::Record;
use std::future::Future;
use std::sync::Arc;

/// Why the store quarantines a file a read refused.
const READ_DAMAGE: &str = "failed its checksum when a query read it";

impl Store {
    /// Events by id, ordered by time (ids that match nothing are left out).
    pub async fn events_by_id(&self, tenant: &str, ids: Vec<String>) -> Result<Vec<Record>, StoreError> {
        self.checked_read(tenant, |scope, _| {
            let ids = ids.clone();
            self.on_cpu(move |engine| async move { engine.events_by_id(&scope, &ids).await })
        })
        .await
    }

    /// Authentication events per (host, hour, outcome, logon type) in `[from, to)` (see
    /// [`query::QueryEngine::login_counts`]).
    pub async fn login_counts(
        &self,
        tenant: &str,
        host: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<Vec<query::LoginCount>, StoreError> {
        self.checked_read(tenant, |scope, _| {
            let host = host.map(str::to_owned);
            self.on_cpu(
                move |engine| async move { engine.login_counts(&scope, host.as_deref(), from, to).await },
            )
        })
        .await
    }

    /// Each host's group among a tenant's events in `[from, to)`.
    pub async fn host_groups(
        &self,
        tenant: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.checked_read(tenant, |scope, _| {
            self.on_cpu(move |engine| async move { engine.host_groups(&scope, from, to).await })
        })
        .await
    }

    /// Read-only analyst SQL over a tenant's lake, in this process.
    pub async fn sql(&self, tenant: &str, sql: &str, limits: SqlLimits) -> Result<SqlOutput, StoreError> {
        self.checked_read(tenant, |scope, _| {
            let (sql, limits) = (sql.to_owned(), limits.clone());
            self.on_cpu(move |engine| async move { engine.sql(&scope, &sql, &limits).await })
        })
        .await
    }

    /// Analyst SQL (the caller wrote it): on the distributed engine when the store has one;
    /// otherwise in a worker process when the store has them, so a runaway query costs that worker
    /// and never this process.
    pub async fn analyst_sql(
        &self,
        tenant: &str,
        sql: &str,
        limits: SqlLimits,
    ) -> Result<SqlOutput, StoreError> {
        if let Some(remote) = &self.sql_engine {
            return self
                .checked_read(tenant, |scope, _| {
                    let (remote, sql, limits) = (Arc::clone(remote), sql.to_owned(), limits.clone());
                    self.on_cpu(move |engine| async move { remote.sql(&engine, &scope, &sql, &limits).await })
                })
                .await;
        }
        let Some(pool) = &self.sql_pool else { return self.sql(tenant, sql, limits).await };
        self.checked_read(tenant, |scope, _| {
            let limits = &limits;
            async move { Ok(pool.sql(&scope, sql, limits).await?) }
        })
        .await
    }

    /// Runs an engine read on the CPU pool.
    pub(crate) fn on_cpu<T, F, Fut>(
        &self,
        read: F,
    ) -> impl Future<Output = Result<T, StoreError>> + use<'_, T, F, Fut>
    where
        T: Send + 'static,
        F: FnOnce(QueryEngine) -> Fut,
        Fut: Future<Output = Result<T, QueryError>> + Send + 'static,
    {
        let fut = read(self.engine.clone());
        async move { Ok(self.cpu.run_async(fut).await??) }
    }

    /// Runs `read` over `tenant`'s live files (as a query's scope and as the catalog's entries) with
    /// readers held in (no compaction swaps files meanwhile). When it meets a damaged file, that
    /// file is quarantined and `read` runs once more.
    pub(crate) async fn checked_read<T, F, Fut>(&self, tenant: &str, read: F) -> Result<T, StoreError>
    where
        F: Fn(Scope, Arc<[FileEntry]>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut quarantined = None;
        loop {
            let (outcome, files) = {
                let _read = self.swap.read().await;
                let files: Arc<[FileEntry]> = self.catalog.files_of_tenant(tenant).await?.into();
                let scope = Scope {
                    tenant: tenant.to_owned(),
                    files: files.iter().map(ExpectedFile::from).collect(),
                };
                (read(scope, Arc::clone(&files)).await, files)
            };
            match outcome {
                Err(StoreError::Query(QueryError::Damaged(path))) if quarantined.as_ref() != Some(&path) => {
                    self.quarantine_read_damage(&files, &path).await?;
                    quarantined = Some(path);
                }
                other => return other,
            }
        }
    }

    /// Checks the file a read refused and quarantines it if it is damaged; a file that checks out
    /// here (a read that failed part way) is left alone and the read simply runs again.
    pub(crate) async fn quarantine_read_damage(
        &self,
        files: &[FileEntry],
        path: &str,
    ) -> Result<(), StoreError> {
        let Some(entry) = files.iter().find(|f| f.path == path).cloned() else {
            return Err(QueryError::Damaged(path.to_owned()).into());
        };
        let (lake, checked) = (self.lake.clone(), entry.clone());
        match self.cpu.run(move || lake.verify(&checked)).await? {
            Ok(()) => Ok(()),
            Err(e) if e.is_damage() => {
                let _guard = self.commit_lock.lock().await;
                self.quarantine(vec![(entry, format!("{READ_DAMAGE}: {e}"))]).await.map(drop)
            }
            Err(e) => Err(e.into()),
        }
    }
}
