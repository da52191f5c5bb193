//! The store's DataFusion reads: timelines, login counts, host groups and SQL, each over exactly
//! the catalog's live files for its tenant, checked before use ([`crate::verified`]).
//!
//! A read that meets a damaged file does not serve it: the store checks the file once more itself,
//! quarantines it when it is damaged ([`crate::scrub`]), and runs the read again over what is left.

use crate::catalog::FileEntry;
use crate::query::{self, QueryEngine, QueryError, Scope, SqlLimits, SqlOutput, TimelineQuery};
use crate::verified::ExpectedFile;
use crate::{Store, StoreError};
use schemas::Record;
use std::future::Future;

/// Why the store quarantines a file a read refused.
const READ_DAMAGE: &str = "failed its checksum when a query read it";

impl Store {
    /// A page of a host's timeline.
    pub async fn timeline(&self, tenant: &str, q: TimelineQuery) -> Result<Vec<Record>, StoreError> {
        self.checked_read(tenant, |scope| {
            let q = q.clone();
            self.on_cpu(move |engine| async move { engine.timeline(&scope, &q).await })
        })
        .await
    }

    /// Events by id, ordered by time (ids that match nothing are left out).
    pub async fn events_by_id(&self, tenant: &str, ids: Vec<String>) -> Result<Vec<Record>, StoreError> {
        self.checked_read(tenant, |scope| {
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
        self.checked_read(tenant, |scope| {
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
        self.checked_read(tenant, |scope| {
            self.on_cpu(move |engine| async move { engine.host_groups(&scope, from, to).await })
        })
        .await
    }

    /// Read-only analyst SQL over a tenant's lake, in this process.
    pub async fn sql(&self, tenant: &str, sql: &str, limits: SqlLimits) -> Result<SqlOutput, StoreError> {
        self.checked_read(tenant, |scope| {
            let (sql, limits) = (sql.to_owned(), limits.clone());
            self.on_cpu(move |engine| async move { engine.sql(&scope, &sql, &limits).await })
        })
        .await
    }

    /// Analyst SQL (the caller wrote it): in a worker process when the store has them, so a runaway
    /// query costs that worker and never this process.
    pub async fn analyst_sql(
        &self,
        tenant: &str,
        sql: &str,
        limits: SqlLimits,
    ) -> Result<SqlOutput, StoreError> {
        let Some(pool) = &self.sql_pool else { return self.sql(tenant, sql, limits).await };
        self.checked_read(tenant, |scope| {
            let limits = &limits;
            async move { Ok(pool.sql(&scope, sql, limits).await?) }
        })
        .await
    }

    /// Runs an engine read on the CPU pool.
    fn on_cpu<T, F, Fut>(&self, read: F) -> impl Future<Output = Result<T, StoreError>> + use<'_, T, F, Fut>
    where
        T: Send + 'static,
        F: FnOnce(QueryEngine) -> Fut,
        Fut: Future<Output = Result<T, QueryError>> + Send + 'static,
    {
        let fut = read(self.engine.clone());
        async move { Ok(self.cpu.run_async(fut).await??) }
    }

    /// Runs `read` over `tenant`'s live files with readers held in (no compaction swaps files
    /// meanwhile). When it meets a damaged file, that file is quarantined and `read` runs once more.
    async fn checked_read<T, F, Fut>(&self, tenant: &str, read: F) -> Result<T, StoreError>
    where
        F: Fn(Scope) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut quarantined = None;
        loop {
            let (outcome, files) = {
                let _read = self.swap.read().await;
                let files = self.catalog.files_of_tenant(tenant).await?;
                let scope = Scope {
                    tenant: tenant.to_owned(),
                    files: files.iter().map(ExpectedFile::from).collect(),
                };
                (read(scope).await, files)
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
    async fn quarantine_read_damage(&self, files: &[FileEntry], path: &str) -> Result<(), StoreError> {
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

#[cfg(test)]
mod tests {
    use crate::query::TimelineQuery;
    use crate::{MessageBatch, Store, StoreConfig};
    use schemas::decode::{Channel, Limits, decode_line};

    const DAY: i64 = 86_400_000_000;
    const T0: i64 = 1_790_000_000_000_000;

    /// A host's timeline over days: read newest days first and only as far back as a page needs,
    /// it still equals every event of the host in time order (both orders, paged by cursor, and
    /// within a range), as they were sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_timeline_over_many_days_is_every_event_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path().to_path_buf())).await.unwrap();
        let ch = Channel { tenant: "default", agent: "a", message_key: "k", stream_seq: 1, received: 0 };
        let limits = Limits { max_skew_micros: i64::MAX, ..Limits::default() };
        // Nine days; host "h" has 0-6 events a day (none on some), "other" one a day.
        let mut sent: Vec<(i64, String)> = Vec::new();
        let mut records = Vec::new();
        for day in 0..9i64 {
            for i in 0..(day * 5 % 7) {
                let t = T0 + day * DAY + i * 3_600_000_000;
                let id = format!("h-{day}-{i}");
                sent.push((t, id.clone()));
                let line = serde_json::json!({"@timestamp": schemas::time::format_micros(t), "event": {"id": id, "category": "process"}, "host": {"name": "h"}});
                records.push(decode_line(line.to_string().as_bytes(), 1, &ch, &limits).unwrap());
            }
            let other = serde_json::json!({"@timestamp": schemas::time::format_micros(T0 + day * DAY), "event": {"id": format!("o-{day}"), "category": "process"}, "host": {"name": "other"}});
            records.push(decode_line(other.to_string().as_bytes(), 1, &ch, &limits).unwrap());
        }
        let batch = MessageBatch { key: "k".into(), stream_seq: 1, records, rejected: 0, published: None };
        store.commit("c", vec![batch]).await.unwrap();
        sent.sort();
        let page = |ascending: bool,
                    after: Option<(i64, String)>,
                    limit: usize,
                    range: Option<(i64, i64)>| TimelineQuery {
            host: "h".into(),
            from: range.map(|r| r.0),
            to: range.map(|r| r.1),
            kinds: Vec::new(),
            ascending,
            after,
            limit,
        };
        let ids = |rows: &[schemas::Record]| -> Vec<String> {
            rows.iter().map(|r| r.get("event_id").and_then(|c| c.as_str()).unwrap_or("").to_owned()).collect()
        };
        let newest: Vec<String> = sent.iter().rev().take(3).map(|s| s.1.clone()).collect();
        assert_eq!(ids(&store.timeline("default", page(false, None, 3, None)).await.unwrap()), newest);
        for ascending in [false, true] {
            let mut want: Vec<String> = sent.iter().map(|s| s.1.clone()).collect();
            if !ascending {
                want.reverse();
            }
            let (mut got, mut after) = (Vec::new(), None);
            loop {
                let rows = store.timeline("default", page(ascending, after.clone(), 4, None)).await.unwrap();
                got.extend(ids(&rows));
                let Some(last) = rows.last() else { break };
                after = Some((last.time(), ids(std::slice::from_ref(last))[0].clone()));
            }
            assert_eq!(got, want, "ascending {ascending}");
        }
        let (from, to) = (T0 + 2 * DAY + 1, T0 + 6 * DAY);
        let want: Vec<String> =
            sent.iter().filter(|s| s.0 >= from && s.0 < to).rev().map(|s| s.1.clone()).collect();
        let got = store.timeline("default", page(false, None, 100, Some((from, to)))).await.unwrap();
        assert_eq!(ids(&got), want);
    }
}
