//! # store: the lake, the index, the catalog, and the query engine
//!
//! Ingest hands [`Store::commit`] a batch of decoded messages; the store runs the commit protocol of
//! `RELIABILITY.md`:
//!
//! 1. refuse messages whose batch key the catalog already holds (redeliveries, late retries);
//! 2. write one Parquet file per (tenant, date), fsync, rename, fsync the directory ([`lake`]); or,
//!    when the lake is in an S3-compatible bucket, upload it whole ([`objects`]);
//! 3. in one catalog transaction, record the files, the batch keys, host summaries and the consumer
//!    checkpoint ([`catalog`]) — **the commit point**;
//! 4. add the rows to the tantivy writer ([`index`]), whose commits are batched by count and time and
//!    carry the highest file id they cover as payload;
//! 5. return, so that ingest acks.
//!
//! The index and the Delta log ([`delta`]) are derived state, kept up by [`Store::tick`] and rebuilt
//! on open: files the catalog does not know are removed, the index catches up from the lake, and the
//! log gets one commit for whatever it lacks ([`derived`]), so a crash at any step loses nothing and
//! duplicates nothing. Compaction and retention swap files through the catalog too ([`maintain`]); a
//! merge indexes its file without stalling ingest's commits ([`merge`]). Failpoints (`after_parquet`,
//! `after_catalog`, `after_index`) let tests kill the process at each step ([`failpoint`]).
//!
//! Reads: [`Store::search`] and [`Store::sweep`] (tantivy, rows fetched from Parquet by reference),
//! [`Store::timeline`] and [`Store::sql`] (DataFusion over the tenant's lake directory). CPU work runs
//! on a separate runtime ([`cpu`]). Depends on `schemas` only among Cordon's crates.

pub mod alerts_table;
pub mod catalog;
mod commit;
pub mod convert;
pub mod cpu;
pub mod delta;
mod derived;
pub mod failpoint;
#[doc(hidden)]
pub mod fixtures;
pub mod index;
pub mod lake;
mod maintain;
mod merge;
pub mod objects;
pub mod query;
mod reads;
mod repair;
mod rows;
pub mod scrub;
pub mod sql_pool;
pub mod sql_worker;
mod timeline;
pub mod verified;
mod verify_report;
pub use verify_report::VerifyReport;

pub use index::CommitPolicy;
pub use maintain::{CompactOptions, CompactReport, MERGE_FAN_IN, VacuumOptions, VacuumReport};

use catalog::{Catalog, CatalogError, FileEntry};
use cpu::{CpuError, CpuRuntime};
use delta::{DeltaError, DeltaLog};
use index::{FullTextIndex, HostMatches, IndexError, IocField, SearchQuery};
use lake::{Lake, LakeError};
use objects::Objects;
use query::{QueryEngine, QueryError};
use schemas::{Cell, FIELDS, Record, Search};
use std::path::PathBuf;
use std::sync::Arc;

/// Rows per lake file at most (index references have room for 2^24).
const MAX_FILE_ROWS: usize = 1 << 20;
const _: () = assert!(MAX_FILE_ROWS < (1 << index::ROW_BITS));

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Catalog.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Lake files.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// Full-text index.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Query engine.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// CPU pool.
    #[error(transparent)]
    Cpu(#[from] CpuError),
    /// Delta transaction log.
    #[error(transparent)]
    Delta(#[from] DeltaError),
    /// The index failed a write and has not caught up with the lake yet; the operation waits.
    #[error("the full-text index is behind the lake (a write failed); retried once it has caught up")]
    IndexBehind,
    /// Start-up I/O.
    #[error("cannot prepare the data directory {path}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// How to open the store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Data directory: `index/` lives here, and `lake/` and `meta.db` by default.
    pub data_dir: PathBuf,
    /// Where the lake is instead of `<data_dir>/lake`: another directory or `s3://bucket/prefix`.
    pub lake_url: Option<String>,
    /// Object-store options for `lake_url` (`endpoint`, `region`, `access_key_id`, `allow_http`...),
    /// over the `AWS_*` environment.
    pub lake_options: Vec<(String, String)>,
    /// `sqlite://...` or `postgres://...`.
    pub metadata_url: String,
    /// fsync lake files (turn off only for benchmarks of the encoder).
    pub fsync: bool,
    /// Memory budget for all queries together, bytes.
    pub query_memory_bytes: usize,
    /// Where analyst SQL runs: worker processes started with this command, each given
    /// `query_memory_bytes / slots` (see [`sql_pool`]); `None` runs it in this process.
    pub sql_workers: Option<sql_pool::WorkerCommand>,
    /// Where analyst SQL runs instead of this process or its workers: a distributed engine
    /// (the `distsql` crate), which plans here over the same checked listing.
    pub sql_engine: Option<Arc<dyn query::SqlEngine>>,
    /// Threads in the CPU pool.
    pub cpu_threads: usize,
    /// When buffered index documents are committed.
    pub index_commit: CommitPolicy,
    /// How often [`Store::tick`] brings the Delta log up to the catalog.
    pub delta_interval: std::time::Duration,
    /// Delta versions between checkpoints.
    pub delta_checkpoint_every: i64,
    /// Set aside and rebuild an index or a Delta log that cannot be opened (`cordon verify` turns
    /// this off to report the damage instead).
    pub repair: bool,
    /// How old a lake file the catalog does not know must be before it is removed as an orphan.
    /// Zero when this process is the only one committing to the catalog (every such file is an
    /// interrupted commit of its own). Where several share the catalog and the lake (ADR 0009),
    /// another's file is written before its catalog commit: longer than a commit can take between the
    /// two, as Iceberg's orphan-file removal keeps files younger than its `older_than`. There, too,
    /// files a merge or retention retired stay this long (another's query or index may still read
    /// them) and the maintainer's sweep removes them after.
    pub orphan_grace: std::time::Duration,
    /// Other processes commit to this catalog and lake (ADR 0009): about once a second
    /// [`Store::tick`] has the index take in the files they committed and let go of the files they
    /// retired ([`Store::follow_catalog`]).
    pub shared_catalog: bool,
    /// On a shared catalog, maintenance (merging, compaction, retention) runs in the one store that
    /// holds the catalog's `maintenance` lease, renewed as it works; another takes it over when it
    /// has not been renewed for this long (its holder died).
    pub maintenance_lease: std::time::Duration,
}

impl StoreConfig {
    /// Defaults for a data directory: SQLite inside it, fsync on.
    pub fn new(data_dir: PathBuf) -> Self {
        let metadata_url = format!("sqlite://{}", data_dir.join("meta.db").display());
        Self {
            data_dir,
            lake_url: None,
            lake_options: Vec::new(),
            metadata_url,
            fsync: true,
            query_memory_bytes: 1 << 30,
            sql_workers: None,
            sql_engine: None,
            cpu_threads: 2,
            index_commit: CommitPolicy::default(),
            delta_interval: std::time::Duration::from_secs(10),
            delta_checkpoint_every: delta::CHECKPOINT_EVERY,
            repair: true,
            orphan_grace: std::time::Duration::ZERO,
            shared_catalog: false,
            maintenance_lease: std::time::Duration::from_secs(30),
        }
    }
}

/// The worker pool for analyst SQL, when configured and the lake is reachable from another process.
fn sql_pool(cfg: &StoreConfig, location: &str) -> Option<sql_pool::SqlPool> {
    let command = cfg.sql_workers.clone()?;
    if location.starts_with("memory://") {
        return None;
    }
    let budget = (cfg.query_memory_bytes / command.slots.max(1)) as u64;
    Some(sql_pool::SqlPool::new(command, location.to_owned(), cfg.lake_options.clone(), budget))
}

/// One message's worth of decoded events.
#[derive(Clone, Debug)]
pub struct MessageBatch {
    /// The batch key: the `Nats-Msg-Id`, or `s<stream seq>` for senders without one.
    pub key: String,
    /// The JetStream stream sequence.
    pub stream_seq: u64,
    /// Decoded events.
    pub records: Vec<Record>,
    /// Lines rejected (already sent to the dead-letter stream).
    pub rejected: usize,
    /// When JetStream stored the message (microseconds), for the publish-to-searchable age.
    pub published: Option<i64>,
}

/// The outcome of a commit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommitOutcome {
    /// Events stored.
    pub stored: usize,
    /// Messages refused as already committed.
    pub duplicate_messages: usize,
    /// Lake files written.
    pub files: usize,
    /// The commit's number in the order commits became visible (`None`: it wrote no file; see
    /// [`catalog::Catalog::files_committed_after`]).
    pub commit_seq: Option<i64>,
    /// The events stored, in lake order (file by file, each sorted by host and time), handed back
    /// for the analysers that follow the commit.
    pub records: Vec<Record>,
}

/// A search result event.
#[derive(Clone, Debug)]
pub struct SearchHit {
    /// The event.
    pub record: Record,
    /// Lake columns that contain a query term.
    pub matched: Vec<&'static str>,
}

/// The store.
#[derive(Debug)]
pub struct Store {
    lake: Lake,
    catalog: Catalog,
    index: Arc<FullTextIndex>,
    engine: QueryEngine,
    /// Analyst SQL's worker processes, when configured.
    sql_pool: Option<sql_pool::SqlPool>,
    /// Analyst SQL's distributed engine, when configured (before the pool).
    sql_engine: Option<Arc<dyn query::SqlEngine>>,
    cpu: CpuRuntime,
    /// Serialises everything that writes: ingest commits, index commits, Delta syncs, maintenance.
    commit_lock: tokio::sync::Mutex<()>,
    /// Readers hold it shared; compaction and retention hold it exclusively while files swap, so a
    /// query sees the lake either before or after, never both or neither.
    swap: tokio::sync::RwLock<()>,
    /// One maintenance run (compaction or retention) at a time.
    maintenance: tokio::sync::Mutex<()>,
    delta: std::sync::Mutex<DeltaLog>,
    index_commit: CommitPolicy,
    delta_interval: std::time::Duration,
    last_delta_sync: std::sync::Mutex<std::time::Instant>,
    /// What recovery removed on open, for `verify`.
    removed_at_open: std::sync::Mutex<Vec<String>>,
    /// The index failed a write (a full disk) and has not caught up with the lake since: commits add
    /// nothing to it until [`Store::tick`] has brought it back from the lake, so no file is skipped.
    index_behind: std::sync::atomic::AtomicBool,
    /// Scrubs finished since open.
    scrubs: std::sync::atomic::AtomicU64,
    /// Every file at or below this id is too large to merge or gone ([`Store::merge_small`]).
    merge_floor: std::sync::atomic::AtomicI64,
    /// See [`StoreConfig::orphan_grace`].
    orphan_grace: std::time::Duration,
    /// See [`StoreConfig::shared_catalog`].
    shared_catalog: bool,
    /// When a tick last followed the shared catalog ([`Store::follow_catalog`]).
    last_follow: std::sync::Mutex<Option<std::time::Instant>>,
    /// When the maintainer of a shared catalog last removed orphans ([`Store::merge_small`]).
    last_sweep: std::sync::Mutex<Option<std::time::Instant>>,
    /// This store's name as a lease holder, and how long its maintenance lease lasts.
    holder: String,
    maintenance_lease: std::time::Duration,
}

impl Store {
    /// Opens the store and recovers: orphan files removed, index caught up with the lake.
    pub async fn open(cfg: &StoreConfig) -> Result<Arc<Self>, StoreError> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|source| StoreError::Io { path: cfg.data_dir.display().to_string(), source })?;
        let catalog = Catalog::connect(&cfg.metadata_url).await?;
        let location =
            cfg.lake_url.clone().unwrap_or_else(|| cfg.data_dir.join("lake").display().to_string());
        let objects = Objects::open(&location, &cfg.lake_options, cfg.fsync).map_err(LakeError::from)?;
        let lake = Lake::new(objects.clone(), cfg.fsync);
        let index = Arc::new(repair::open_index(&cfg.data_dir.join("index"), cfg.repair)?);
        let engine = QueryEngine::new(objects.clone(), cfg.query_memory_bytes)?;
        let sql_pool = sql_pool(cfg, &location);
        let cpu = CpuRuntime::new(cfg.cpu_threads)
            .map_err(|source| StoreError::Io { path: "cpu runtime".to_owned(), source })?;
        let delta =
            repair::open_delta(&objects, cfg.repair)?.with_checkpoint_every(cfg.delta_checkpoint_every);
        let store = Arc::new(Self {
            lake,
            catalog,
            index,
            engine,
            sql_pool,
            sql_engine: cfg.sql_engine.clone(),
            cpu,
            commit_lock: tokio::sync::Mutex::new(()),
            swap: tokio::sync::RwLock::new(()),
            maintenance: tokio::sync::Mutex::new(()),
            delta: std::sync::Mutex::new(delta),
            index_commit: cfg.index_commit,
            delta_interval: cfg.delta_interval,
            last_delta_sync: std::sync::Mutex::new(std::time::Instant::now()),
            removed_at_open: std::sync::Mutex::new(Vec::new()),
            index_behind: std::sync::atomic::AtomicBool::new(false),
            scrubs: std::sync::atomic::AtomicU64::new(0),
            merge_floor: std::sync::atomic::AtomicI64::new(0),
            orphan_grace: cfg.orphan_grace,
            shared_catalog: cfg.shared_catalog,
            last_follow: std::sync::Mutex::new(None),
            last_sweep: std::sync::Mutex::new(None),
            holder: uuid::Uuid::new_v4().simple().to_string(),
            maintenance_lease: cfg.maintenance_lease,
        });
        store.recover().await?;
        Ok(store)
    }

    /// How long (microseconds) each batch took from its publication to being searchable, for the
    /// batches the index commits made searchable since the last call (those indexed on catch-up
    /// from the lake are not counted).
    pub fn take_searchable_ages(&self) -> Vec<i64> {
        self.index.take_ages()
    }

    /// Runs synchronous CPU work (ingest's decode and tag stages) on the store's CPU pool, off the
    /// I/O runtime and beside the commits' Parquet encoding and indexing.
    pub async fn run_cpu<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, StoreError> {
        Ok(self.cpu.run(f).await?)
    }

    /// This store's name as a holder of the catalog's leases (one per process that opened it).
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The lake.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// Full-text search in a tenant, newest first. The hits' rows are read from the tenant's live
    /// files, each checked first ([`rows::RowReader`]); a damaged one is quarantined and the search
    /// runs once more.
    pub async fn search(&self, tenant: &str, q: SearchQuery) -> Result<(Vec<SearchHit>, usize), StoreError> {
        let mut quarantined: Option<String> = None;
        loop {
            match self.search_once(tenant, &q).await {
                Err(StoreError::Query(QueryError::Damaged(path))) if quarantined.as_ref() != Some(&path) => {
                    let files = self.catalog.files_of_tenant(tenant).await?;
                    self.quarantine_read_damage(&files, &path).await?;
                    quarantined = Some(path);
                }
                other => return other,
            }
        }
    }

    async fn search_once(
        &self,
        tenant: &str,
        q: &SearchQuery,
    ) -> Result<(Vec<SearchHit>, usize), StoreError> {
        let _read = self.swap.read().await;
        let (index, tenant_owned, query) = (Arc::clone(&self.index), tenant.to_owned(), q.clone());
        let (hits, total, terms) = self
            .cpu
            .run(move || -> Result<_, IndexError> {
                let (hits, total) = index.search(&tenant_owned, &query)?;
                Ok((hits, total, index.match_terms(&query)))
            })
            .await??;
        let refs: Vec<(i64, usize)> = hits.iter().map(|h| (h.file_id, h.row)).collect();
        let mut ids: Vec<i64> = refs.iter().map(|r| r.0).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut files = self.catalog.files_by_id(&ids).await?;
        files.retain(|f| f.tenant == tenant);
        let reader = rows::RowReader::new(self.lake.clone(), Arc::clone(self.engine.verified()), files);
        let records = self.cpu.run(move || reader.rows(&refs)).await??;
        let out = records
            .into_iter()
            .flatten()
            .map(|record| {
                let matched = matched_columns(&record, &terms);
                SearchHit { record, matched }
            })
            .collect();
        Ok((out, total))
    }

    /// Looks IOCs up in a tenant: per IOC, matches per host.
    pub async fn sweep(
        &self,
        tenant: &str,
        iocs: Vec<(IocField, String)>,
    ) -> Result<Vec<Vec<HostMatches>>, StoreError> {
        let _read = self.swap.read().await;
        let (index, tenant) = (Arc::clone(&self.index), tenant.to_owned());
        let r = self
            .cpu
            .run(move || iocs.iter().map(|(f, v)| index.sweep(&tenant, *f, v)).collect::<Result<Vec<_>, _>>())
            .await??;
        Ok(r)
    }

    /// The tenants with events in the lake.
    pub async fn tenants(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.catalog.tenants().await?)
    }

    /// Folds every event of `tenant` with a time in `[from, to)` into `acc`, file by file on the CPU
    /// pool (files are chosen by their time range; rows outside it are skipped). For whole-history
    /// work such as policy previews.
    pub async fn scan<T: Send + 'static>(
        &self,
        tenant: &str,
        from: i64,
        to: i64,
        acc: T,
        f: impl Fn(&mut T, Record) + Send + 'static,
    ) -> Result<T, StoreError> {
        let _read = self.swap.read().await;
        let files: Vec<FileEntry> = self
            .catalog
            .files_after(0)
            .await?
            .into_iter()
            .filter(|e| e.tenant == tenant && e.max_time >= from && e.min_time < to)
            .collect();
        let lake = self.lake.clone();
        self.cpu
            .run(move || -> Result<T, StoreError> {
                let mut acc = acc;
                for file in &files {
                    let recs = match lake.read_all(file) {
                        Ok(recs) => recs,
                        Err(e) if e.is_damage() => {
                            tracing::error!(file = %file.path, error = %e, "skipping a damaged lake file; the scrub quarantines it");
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    };
                    for rec in recs.into_iter().filter(|r| (from..to).contains(&r.time())) {
                        f(&mut acc, rec);
                    }
                }
                Ok(acc)
            })
            .await?
    }

    /// Documents in the index.
    pub fn indexed_docs(&self) -> u64 {
        self.index.num_docs()
    }

    /// The latest event time the index can return, over all tenants, read from each index segment's time column.
    pub fn latest_indexed_time(&self) -> Option<i64> {
        self.index.latest_time()
    }

    /// Bytes of parsed Parquet footers the lake keeps for point reads.
    pub fn footer_cache_bytes(&self) -> u64 {
        self.lake.footer_cache_bytes() as u64
    }
}

fn matched_columns(rec: &Record, terms: &[String]) -> Vec<&'static str> {
    rec.iter()
        .map(|(i, c)| (&FIELDS[i], c))
        .filter(|(d, _)| d.search != Search::None)
        .filter(|(_, c)| {
            let hit = |s: &str| {
                let s = s.to_lowercase();
                terms.iter().any(|t| !t.is_empty() && s.contains(t.as_str()))
            };
            match c {
                Cell::Str(s) => hit(s),
                Cell::List(l) => l.iter().any(|s| hit(s)),
                _ => false,
            }
        })
        .map(|(d, _)| d.column)
        .collect()
}
