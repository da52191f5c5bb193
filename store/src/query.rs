//! DataFusion over the lake: host timelines and read-only analyst SQL.
//!
//! Each request gets a session holding two tables, `events` and `alerts`, over its own tenant's
//! directories only, so no SQL can reach another tenant's rows. The `events` table is exactly the
//! catalog's live files for the tenant ([`Scope`]), each checked against its SHA-256 before its
//! first byte is used ([`crate::verified`]). Analyst SQL runs through `sql_with_options` with DDL, DML and
//! statements refused (no `COPY`, `CREATE EXTERNAL TABLE`, `INSERT`, `SET`), URL tables never enabled,
//! a memory pool cap, no spilling to disk, a wall-clock cap and a row cap.

use crate::convert::{batch_to_records, str_at};
use crate::objects::Objects;
use crate::verified::{ExpectedFile, Verified, VerifyingStore};
use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::object_store::DefaultObjectStoreRegistry;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{DataFrame, Expr, SQLOptions, SessionConfig, SessionContext, col, lit};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;
use object_store::ObjectStore;
use schemas::Record;
use std::sync::Arc;
use std::time::Duration;

/// Query failures, split by who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query is wrong (parse error, unknown column, refused statement): the caller can fix it.
    #[error("{0}")]
    Invalid(String),
    /// The query ran past its time budget.
    #[error("query ran longer than {0:?}")]
    Timeout(Duration),
    /// The query needed more memory than its budget.
    #[error("query exceeded its memory budget: {0}")]
    ResourcesExhausted(String),
    /// A lake file the query read failed its checksum (its lake path); its rows were not used.
    #[error("lake file {0} is damaged")]
    Damaged(String),
    /// The engine the query runs on elsewhere (a distributed engine's executors) could not run
    /// it: unreachable, or refusing this server.
    #[error("the SQL executors could not run the query: {0}")]
    Unavailable(String),
    /// Anything else.
    #[error("query engine error")]
    Internal(#[source] DataFusionError),
}

fn caller_arrow_error(e: &datafusion::arrow::error::ArrowError) -> bool {
    use datafusion::arrow::error::ArrowError as A;
    matches!(
        e,
        A::ComputeError(_)
            | A::InvalidArgumentError(_)
            | A::CastError(_)
            | A::ParseError(_)
            | A::DivideByZero
            | A::ArithmeticOverflow(_)
    )
}

fn classify(e: DataFusionError) -> QueryError {
    match e.find_root() {
        DataFusionError::SQL(..) | DataFusionError::Plan(..) | DataFusionError::SchemaError(..) => {
            QueryError::Invalid(e.strip_backtrace())
        }
        DataFusionError::ResourcesExhausted(m) => QueryError::ResourcesExhausted(m.clone()),
        DataFusionError::NotImplemented(m) => QueryError::Invalid(format!("not supported: {m}")),
        // What the query's own values did: a regex too big to compile, a bad cast, a division by
        // zero, an overflow. The caller can fix these.
        DataFusionError::ArrowError(a, _) if caller_arrow_error(a) => {
            QueryError::Invalid(e.strip_backtrace())
        }
        _ => {
            let msg = e.strip_backtrace();
            if let Some(path) = crate::verified::damaged_path(&msg) {
                return QueryError::Damaged(path);
            }
            // Functions that reserve before they build (`range`) report a refused allocation (the
            // worker's data limit) as an error of their own.
            if msg.contains("memory allocation failed") || msg.contains("too large to materialize") {
                return QueryError::ResourcesExhausted(msg);
            }
            // Refused statements and type errors surface as Plan or Execution errors.
            if msg.contains("not supported")
                || msg.contains("Only ")
                || msg.contains("Error during planning")
                || msg.contains("egular expression")
                || msg.contains("regex")
            {
                QueryError::Invalid(msg)
            } else {
                QueryError::Internal(e)
            }
        }
    }
}

/// Caps for analyst SQL.
#[derive(Clone, Debug)]
pub struct SqlLimits {
    /// Rows returned at most.
    pub max_rows: usize,
    /// Wall-clock budget.
    pub timeout: Duration,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self { max_rows: 10_000, timeout: Duration::from_secs(30) }
    }
}

/// A SQL result as JSON-ready columns and rows.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct SqlOutput {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, each a JSON array in column order.
    pub rows: Vec<Vec<serde_json::Value>>,
    /// True when the row cap cut the result.
    pub truncated: bool,
}

/// One row of [`QueryEngine::login_counts`]: (host, hour start in microseconds, outcome, logon type,
/// count).
pub type LoginCount = (String, i64, String, String, u64);

/// A timeline request.
#[derive(Clone, Debug, Default)]
pub struct TimelineQuery {
    /// Host name.
    pub host: String,
    /// From (inclusive, microseconds).
    pub from: Option<i64>,
    /// To (exclusive).
    pub to: Option<i64>,
    /// Only these event kinds.
    pub kinds: Vec<String>,
    /// Oldest first instead of newest first.
    pub ascending: bool,
    /// Continue after this (time, event id).
    pub after: Option<(i64, String)>,
    /// Page size.
    pub limit: usize,
}

/// What one query may read: a tenant and the catalog's live files for it.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Scope {
    /// The tenant.
    pub tenant: String,
    /// Its live lake files, as the catalog recorded them.
    pub files: Vec<ExpectedFile>,
}

impl Scope {
    /// The days (`YYYY-MM-DD`) the tenant's live files hold, each once, oldest first.
    pub fn days(&self) -> Vec<String> {
        let mut days: Vec<String> = self
            .files
            .iter()
            .filter_map(|f| f.path.split('/').find_map(|p| p.strip_prefix("date=")).map(str::to_owned))
            .collect();
        days.sort_unstable();
        days.dedup();
        days
    }
}

/// The query engine: one runtime (memory pool, no disk) shared by all sessions.
#[derive(Clone, Debug)]
pub struct QueryEngine {
    objects: Objects,
    runtime: Arc<RuntimeEnv>,
    /// The lake's object store and the URL DataFusion knows it by.
    lake: (url::Url, Arc<dyn ObjectStore>),
    verified: Arc<Verified>,
}

fn ts(t: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(Some(t), Some("UTC".into())))
}

/// A host's events as `q` asks for them (range, kinds, cursor), in its order, at most `limit`.
async fn timeline_frame(
    ctx: &SessionContext,
    q: &TimelineQuery,
    limit: usize,
) -> Result<DataFrame, QueryError> {
    let mut df = ctx
        .table("events")
        .await
        .map_err(classify)?
        .filter(col("host_name").eq(lit(q.host.as_str())))
        .map_err(classify)?;
    if let Some(from) = q.from {
        df = df.filter(col("time").gt_eq(ts(from))).map_err(classify)?;
    }
    if let Some(to) = q.to {
        df = df.filter(col("time").lt(ts(to))).map_err(classify)?;
    }
    if !q.kinds.is_empty() {
        let kinds = q.kinds.iter().map(|k| lit(k.as_str())).collect();
        df = df.filter(col("event_kind").in_list(kinds, false)).map_err(classify)?;
    }
    if let Some((t, id)) = &q.after {
        let cursor = if q.ascending {
            col("time").gt(ts(*t)).or(col("time").eq(ts(*t)).and(col("event_id").gt(lit(id.as_str()))))
        } else {
            col("time").lt(ts(*t)).or(col("time").eq(ts(*t)).and(col("event_id").lt(lit(id.as_str()))))
        };
        df = df.filter(cursor).map_err(classify)?;
    }
    let asc = q.ascending;
    df.sort(vec![col("time").sort(asc, false), col("event_id").sort(asc, false)])
        .map_err(classify)?
        .limit(0, Some(limit))
        .map_err(classify)
}

impl QueryEngine {
    /// An engine over the lake on `objects` with a memory budget for all queries together.
    pub fn new(objects: Objects, memory_bytes: usize) -> Result<Self, QueryError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(memory_bytes, 1.0)
            .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
            // Files are immutable (footer and statistics caches are safe) but the directory grows with
            // every commit: never cache listings.
            .with_cache_manager(CacheManagerConfig::default().with_list_files_cache_limit(0))
            .build_arc()
            .map_err(QueryError::Internal)?;
        let lake = objects.object_store().unwrap_or_else(|| {
            let local: Arc<dyn ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new());
            (url::Url::parse("file://").expect("file URL"), local)
        });
        Ok(Self { objects, runtime, lake, verified: Arc::default() })
    }

    /// Files this process has found matching their checksums (the scrub adds to it).
    pub fn verified(&self) -> &Arc<Verified> {
        &self.verified
    }

    /// A runtime like the engine's (same memory pool and caches) whose lake store reads through a
    /// [`VerifyingStore`] over `scope`'s files.
    fn scoped_runtime(&self, table: &ListingTableUrl, scope: &Scope) -> Arc<RuntimeEnv> {
        let rel = format!("events/tenant={}", scope.tenant);
        let store = VerifyingStore::new(
            Arc::clone(&self.lake.1),
            table.prefix().clone(),
            &rel,
            scope.files.clone(),
            Arc::clone(&self.verified),
        );
        let mut runtime = (*self.runtime).clone();
        runtime.object_store_registry = Arc::new(DefaultObjectStoreRegistry::new());
        runtime.register_object_store(&self.lake.0, Arc::new(store));
        Arc::new(runtime)
    }

    /// A session with two tables: `events`, the tenant's rows in `scope`'s files, and `alerts`.
    pub async fn session(&self, scope: &Scope) -> Result<SessionContext, QueryError> {
        self.session_with(scope, Ok).await
    }

    /// [`Self::session`] with its state builder passed through `customize` first (a distributed
    /// planner, say): the same tables, the same checked listing of `scope`'s files.
    pub async fn session_with(
        &self,
        scope: &Scope,
        customize: impl FnOnce(SessionStateBuilder) -> Result<SessionStateBuilder, DataFusionError>,
    ) -> Result<SessionContext, QueryError> {
        let tenant = scope.tenant.as_str();
        let config = SessionConfig::new()
            .with_target_partitions(2)
            .with_information_schema(false)
            // Statistics read every file's footer while planning, through the checking store: each
            // file is checked before a plan that names it leaves this process.
            .set_bool("datafusion.execution.collect_statistics", true)
            .set_bool("datafusion.execution.parquet.pushdown_filters", true)
            .set_bool("datafusion.execution.parquet.reorder_filters", true);
        let rel = format!("events/tenant={tenant}");
        if let Some(root) = self.objects.local_root() {
            // A local listing of a missing directory fails; a bucket prefix is simply empty.
            std::fs::create_dir_all(root.join(&rel))
                .map_err(|e| QueryError::Internal(DataFusionError::IoError(e)))?;
        }
        let url = ListingTableUrl::parse(self.objects.dir_url(&rel)).map_err(classify)?;
        let builder = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(self.scoped_runtime(&url, scope))
            .with_default_features();
        let ctx = SessionContext::new_with_state(customize(builder).map_err(classify)?.build());
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![("date".to_owned(), DataType::Utf8)]);
        let config =
            ListingTableConfig::new(url).with_listing_options(options).with_schema(schemas::lake_schema());
        let table = ListingTable::try_new(config).map_err(classify)?;
        ctx.register_table("events", Arc::new(table)).map_err(classify)?;
        // The tenant's alerts, exported by `Store::export_alerts`.
        let rel = crate::alerts_table::alerts_dir(tenant);
        if let Some(root) = self.objects.local_root() {
            std::fs::create_dir_all(root.join(&rel))
                .map_err(|e| QueryError::Internal(DataFusionError::IoError(e)))?;
        }
        let url = ListingTableUrl::parse(self.objects.dir_url(&rel)).map_err(classify)?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(crate::alerts_table::alerts_schema());
        let table = ListingTable::try_new(config).map_err(classify)?;
        ctx.register_table("alerts", Arc::new(table)).map_err(classify)?;
        Ok(ctx)
    }

    /// A page of a host's timeline. Days are read newest first (oldest first when ascending), one
    /// day, then two, then four...: a page is usually filled from the last days, and the rest of
    /// the retention is not scanned (each day's rows are all newer than the day before's, as a lake
    /// file holds one day by its events' times).
    pub async fn timeline(&self, scope: &Scope, q: &TimelineQuery) -> Result<Vec<Record>, QueryError> {
        let ctx = self.session(scope).await?;
        let mut days = scope.days();
        days.retain(|d| {
            q.from.is_none_or(|f| *d >= schemas::time::date_of_micros(f))
                && q.to.is_none_or(|t| *d <= schemas::time::date_of_micros(t))
        });
        if !q.ascending {
            days.reverse();
        }
        let mut out: Vec<Record> = Vec::new();
        let (mut at, mut width) = (0, 1);
        while at < days.len() && out.len() < q.limit {
            let window = &days[at..(at + width).min(days.len())];
            let (lo, hi) = if q.ascending {
                (&window[0], &window[window.len() - 1])
            } else {
                (&window[window.len() - 1], &window[0])
            };
            let df = timeline_frame(&ctx, q, q.limit - out.len())
                .await?
                .filter(col("date").gt_eq(lit(lo.as_str())).and(col("date").lt_eq(lit(hi.as_str()))));
            let batches = df.map_err(classify)?.collect().await.map_err(classify)?;
            out.extend(batches.iter().flat_map(batch_to_records));
            at += width;
            width *= 2;
        }
        Ok(out)
    }

    /// Events by id (at most `ids.len()`), ordered by time.
    pub async fn events_by_id(&self, scope: &Scope, ids: &[String]) -> Result<Vec<Record>, QueryError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ctx = self.session(scope).await?;
        let list = ids.iter().map(|i| lit(i.as_str())).collect();
        let df = ctx
            .table("events")
            .await
            .map_err(classify)?
            .filter(col("event_id").in_list(list, false))
            .map_err(classify)?
            .sort(vec![col("time").sort(true, false), col("event_id").sort(true, false)])
            .map_err(classify)?
            .limit(0, Some(ids.len()))
            .map_err(classify)?;
        let batches = df.collect().await.map_err(classify)?;
        Ok(batches.iter().flat_map(batch_to_records).collect())
    }

    /// Authentication events counted per (host, hour, outcome, logon type) in `[from, to)`, for one
    /// host or all: `(host, hour start in microseconds, outcome, logon type, count)`.
    pub async fn login_counts(
        &self,
        scope: &Scope,
        host: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<Vec<LoginCount>, QueryError> {
        use datafusion::functions::expr_fn::date_trunc;
        use datafusion::functions_aggregate::expr_fn::count;
        use datafusion::logical_expr::cast;
        let ctx = self.session(scope).await?;
        let mut df = ctx
            .table("events")
            .await
            .map_err(classify)?
            .filter(
                col("event_kind")
                    .eq(lit("authentication"))
                    .and(col("time").gt_eq(ts(from)))
                    .and(col("time").lt(ts(to)))
                    .and(col("date").gt_eq(lit(schemas::time::date_of_micros(from))))
                    .and(col("date").lt_eq(lit(schemas::time::date_of_micros(to)))),
            )
            .map_err(classify)?;
        if let Some(h) = host {
            df = df.filter(col("host_name").eq(lit(h))).map_err(classify)?;
        }
        let hour = cast(date_trunc(lit("hour"), col("time")), DataType::Int64).alias("hour");
        let outcome =
            datafusion::functions::expr_fn::coalesce(vec![col("event_outcome"), lit("")]).alias("outcome");
        let kind =
            datafusion::functions::expr_fn::coalesce(vec![col("logon_type"), lit("")]).alias("logon_type");
        let batches = df
            .aggregate(vec![col("host_name"), hour, outcome, kind], vec![count(lit(1)).alias("n")])
            .map_err(classify)?
            .collect()
            .await
            .map_err(classify)?;
        let mut out: Vec<LoginCount> = json_rows(&batches)
            .map(|v| {
                (
                    v[0].as_str().unwrap_or_default().to_owned(),
                    v[1].as_i64().unwrap_or(0),
                    v[2].as_str().unwrap_or_default().to_owned(),
                    v[3].as_str().unwrap_or_default().to_owned(),
                    v[4].as_u64().unwrap_or(0),
                )
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Each host's group (the latest named, by name order when several) among events in
    /// `[from, to)`: `(host, group)`.
    pub async fn host_groups(
        &self,
        scope: &Scope,
        from: i64,
        to: i64,
    ) -> Result<Vec<(String, String)>, QueryError> {
        use datafusion::functions_aggregate::expr_fn::max;
        let ctx = self.session(scope).await?;
        let batches = ctx
            .table("events")
            .await
            .map_err(classify)?
            .filter(
                col("host_group")
                    .is_not_null()
                    .and(col("time").gt_eq(ts(from)))
                    .and(col("time").lt(ts(to)))
                    .and(col("date").gt_eq(lit(schemas::time::date_of_micros(from))))
                    .and(col("date").lt_eq(lit(schemas::time::date_of_micros(to)))),
            )
            .map_err(classify)?
            .aggregate(vec![col("host_name")], vec![max(col("host_group")).alias("g")])
            .map_err(classify)?
            .collect()
            .await
            .map_err(classify)?;
        let mut out: Vec<(String, String)> = json_rows(&batches)
            .filter_map(|v| Some((v[0].as_str()?.to_owned(), v[1].as_str()?.to_owned())))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Runs read-only SQL for a tenant under the limits.
    pub async fn sql(&self, scope: &Scope, sql: &str, limits: &SqlLimits) -> Result<SqlOutput, QueryError> {
        run_sql(&self.session(scope).await?, sql, limits).await
    }

    /// The engine's runtime with the lake's own store (unchecked, every tenant): for an executor of
    /// a distributed engine, which runs plan fragments whose files a coordinator's checked session
    /// chose and checked.
    pub fn lake_runtime(&self) -> Arc<RuntimeEnv> {
        let mut runtime = (*self.runtime).clone();
        runtime.object_store_registry = Arc::new(DefaultObjectStoreRegistry::new());
        runtime.register_object_store(&self.lake.0, Arc::clone(&self.lake.1));
        Arc::new(runtime)
    }
}

/// Runs read-only SQL in `ctx` under the limits: DDL, DML and statements refused, at most
/// `max_rows` rows, stopped at `timeout`.
pub async fn run_sql(ctx: &SessionContext, sql: &str, limits: &SqlLimits) -> Result<SqlOutput, QueryError> {
    let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    let run = async {
        let df = ctx.sql_with_options(sql, options).await.map_err(classify)?;
        let columns: Vec<String> = df.schema().fields().iter().map(|f| f.name().clone()).collect();
        let mut stream = df.execute_stream().await.map_err(classify)?;
        let mut rows = Vec::new();
        let mut truncated = false;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(classify)?;
            for r in 0..batch.num_rows() {
                if rows.len() == limits.max_rows {
                    truncated = true;
                    break;
                }
                rows.push(batch.columns().iter().map(|c| json_value(c.as_ref(), r)).collect());
            }
            if truncated {
                break;
            }
        }
        Ok(SqlOutput { columns, rows, truncated })
    };
    tokio::time::timeout(limits.timeout, run).await.map_err(|_| QueryError::Timeout(limits.timeout))?
}

/// Where analyst SQL runs when not in this engine: another engine (a distributed one) given this
/// engine to build its checked session from.
#[async_trait::async_trait]
pub trait SqlEngine: std::fmt::Debug + Send + Sync {
    /// Runs read-only SQL over `scope` under the limits.
    async fn sql(
        &self,
        engine: &QueryEngine,
        scope: &Scope,
        sql: &str,
        limits: &SqlLimits,
    ) -> Result<SqlOutput, QueryError>;
}

fn json_value(a: &dyn Array, row: usize) -> serde_json::Value {
    use serde_json::Value;
    if a.is_null(row) {
        return Value::Null;
    }
    match a.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            str_at(a, row).map_or(Value::Null, Value::String)
        }
        DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float32
        | DataType::Float64 => {
            let s = array_value_to_string(a, row).unwrap_or_default();
            serde_json::from_str(&s).unwrap_or(Value::String(s))
        }
        _ => Value::String(array_value_to_string(a, row).unwrap_or_default()),
    }
}

/// Every row of `batches` as JSON values, column by column.
fn json_rows(
    batches: &[datafusion::arrow::record_batch::RecordBatch],
) -> impl Iterator<Item = Vec<serde_json::Value>> + '_ {
    batches.iter().flat_map(|b| {
        (0..b.num_rows()).map(move |r| b.columns().iter().map(|c| json_value(c.as_ref(), r)).collect())
    })
}
