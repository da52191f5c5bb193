//! Analyst SQL over the lake on a distributed DataFusion engine ([datafusion-distributed]).
//!
//! Two halves:
//! - **executors** ([`serve_executor`], `cordon sql-executor`): gRPC workers that run plan
//!   fragments over the lake's object store. They plan nothing and hold no catalog; every request
//!   must carry the cluster's key ([`KEY_HEADER`]), so a process that can reach the port but not
//!   the key runs nothing.
//! - **the coordinator** ([`DistributedSql`], in `cordon serve --sql-executors`): the embedded
//!   engine's own session for the tenant (the same two tables over exactly the catalog's live
//!   files, each checked against its SHA-256 while planning reads its footer) with the distributed
//!   planner on top. The planner cuts the plan into stages at its shuffles, spreads each stage's
//!   tasks over the executors and streams the last stage back here, where the row cap and the time
//!   budget apply as for the embedded engine.
//!
//! The planner is the scheduler: datafusion-distributed has no separate scheduler process, and
//! the executor list is fixed at start. With a CA ([`ExecutorTls`], `https://` addresses) every
//! connection, the coordinator's and the executors' own to each other, is TLS ([`Channels`]).
//!
//! [datafusion-distributed]: https://github.com/datafusion-contrib/datafusion-distributed

use datafusion::common::DataFusionError;
use datafusion::execution::SessionState;
use datafusion_distributed::{
    DistributedExt, SessionStateBuilderExt, Worker, WorkerQueryContext, WorkerResolver,
};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use store::objects::Objects;
use store::query::{QueryEngine, QueryError, Scope, SqlEngine, SqlLimits, SqlOutput};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use url::Url;

mod channels;
pub use channels::Channels;

/// What an executor answers a plan without the key; the coordinator recognises it in the error.
const REFUSED: &str = "refused: the request does not carry the executor key";

/// The request header carrying the cluster's key, from the coordinator to executors and from an
/// executor to the next.
pub const KEY_HEADER: &str = "x-cordon-executor-key";

/// How much Parquet one leaf task reads by default (DataFusion Distributed splits a scan into
/// tasks by bytes, at most one per executor).
pub const BYTES_PER_TASK: usize = 8 << 20;

/// Errors starting an executor or a coordinator.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// An executor address is not a URL.
    #[error("executor address {0:?} is not an http:// or https:// URL")]
    BadExecutor(String),
    /// Executor addresses mix `http://` and `https://`, or their scheme does not match whether
    /// the cluster has a CA.
    #[error(
        "executor addresses must all be https:// with a CA for their certificates, or all http:// without"
    )]
    SchemeMismatch,
    /// No executor was given.
    #[error("a distributed engine needs at least one executor")]
    NoExecutors,
    /// The key is empty or not a valid header value.
    #[error("the executor key must be 16 to 256 visible ASCII characters")]
    BadKey,
    /// The lake or the engine could not be opened.
    #[error("opening the lake: {0}")]
    Lake(String),
    /// The gRPC server failed.
    #[error("executor server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// The cluster's shared secret, with the request headers that carry it (built once: a checked key
/// is always a valid header value).
#[derive(Clone)]
pub struct ExecutorKey {
    key: Arc<str>,
    headers: http::HeaderMap,
}

impl std::fmt::Debug for ExecutorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExecutorKey(..)")
    }
}

impl ExecutorKey {
    /// A key from its text (surrounding whitespace dropped).
    pub fn new(text: &str) -> Result<Self, DistError> {
        let key = text.trim();
        let visible = key.bytes().all(|b| b.is_ascii_graphic());
        if !(16..=256).contains(&key.len()) || !visible {
            return Err(DistError::BadKey);
        }
        let mut headers = http::HeaderMap::new();
        headers.insert(KEY_HEADER, http::HeaderValue::from_str(key).map_err(|_| DistError::BadKey)?);
        Ok(Self { key: key.into(), headers })
    }

    /// Whether `offered` is this key (constant time in the offered bytes).
    fn accepts(&self, offered: &[u8]) -> bool {
        let mine = self.key.as_bytes();
        let mut diff = mine.len() ^ offered.len();
        for (i, b) in offered.iter().enumerate() {
            diff |= usize::from(mine.get(i).copied().unwrap_or(0) ^ b);
        }
        diff == 0
    }

    fn header(&self) -> http::HeaderMap {
        self.headers.clone()
    }
}

/// A fixed list of executors.
#[derive(Clone, Debug)]
pub struct Executors(Arc<[Url]>);

impl Executors {
    /// Executors at `http://host:port` addresses.
    pub fn parse(addresses: &[String]) -> Result<Self, DistError> {
        let urls = addresses
            .iter()
            .map(|a| match Url::parse(a) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(u),
                _ => Err(DistError::BadExecutor(a.clone())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return Err(DistError::NoExecutors);
        }
        if urls.iter().any(|u| u.scheme() != urls[0].scheme()) {
            return Err(DistError::SchemeMismatch);
        }
        Ok(Self(urls.into()))
    }

    /// Whether the addresses are `https://`.
    fn tls(&self) -> bool {
        self.0.first().is_some_and(|u| u.scheme() == "https")
    }
}

impl WorkerResolver for Executors {
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError> {
        Ok(self.0.to_vec())
    }
}

/// The coordinator: analyst SQL planned here over the checked session, run on the executors.
#[derive(Clone, Debug)]
pub struct DistributedSql {
    executors: Executors,
    key: ExecutorKey,
    channels: Channels,
    bytes_per_task: usize,
}

impl DistributedSql {
    /// A coordinator for these executors, over TLS when `channels` has a CA (then the addresses
    /// must be `https://`, and `http://` without).
    pub fn new(executors: Executors, key: ExecutorKey, channels: Channels) -> Result<Self, DistError> {
        if executors.tls() != channels.tls() {
            return Err(DistError::SchemeMismatch);
        }
        Ok(Self { executors, key, channels, bytes_per_task: BYTES_PER_TASK })
    }

    /// Parquet bytes one leaf task reads (smaller spreads a small lake over more executors).
    pub fn with_bytes_per_task(self, bytes: usize) -> Self {
        Self { bytes_per_task: bytes.max(1), ..self }
    }
}

#[async_trait::async_trait]
impl SqlEngine for DistributedSql {
    #[tracing::instrument(name = "distributed_sql", skip_all, fields(tenant = %scope.tenant, files = scope.files.len()))]
    async fn sql(
        &self,
        engine: &QueryEngine,
        scope: &Scope,
        sql: &str,
        limits: &SqlLimits,
    ) -> Result<SqlOutput, QueryError> {
        let headers = self.key.header();
        let ctx = engine
            .session_with(scope, |builder| {
                builder
                    .with_distributed_worker_resolver(self.executors.clone())
                    .with_distributed_channel_resolver(self.channels.clone())
                    .with_distributed_planner()
                    .with_distributed_passthrough_headers(headers)?
                    .with_distributed_file_scan_config_bytes_per_partition(self.bytes_per_task)
            })
            .await?;
        store::query::run_sql(&ctx, sql, limits).await.map_err(executor_failure)
    }
}

/// An engine error that says an executor could not be reached or refused the plan, as
/// [`QueryError::Unavailable`] naming it; anything else as it was.
fn executor_failure(e: QueryError) -> QueryError {
    let QueryError::Internal(inner) = &e else { return e };
    let refused = inner.to_string().contains(REFUSED);
    if !(refused || unreachable(inner)) {
        return e;
    }
    let what = if refused { "an executor refused this server's key" } else { "an executor is unreachable" };
    QueryError::Unavailable(format!("{what} ({})", inner.strip_backtrace()))
}

/// Whether `e` comes of a connection to an executor: one that could not be opened (ours, or the
/// library's message) or a gRPC call that found it gone (`Unavailable`, a transport error).
fn unreachable(e: &DataFusionError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        let gone = c.downcast_ref::<tonic::Status>().is_some_and(|s| s.code() == tonic::Code::Unavailable);
        if gone || c.downcast_ref::<tonic::transport::Error>().is_some() {
            return true;
        }
        cause = c.source();
    }
    e.to_string().contains("Distributed DataFusion worker")
}

/// What an executor has done since it started.
#[derive(Debug, Default)]
pub struct ExecutorCounts {
    /// Plan fragments (tasks) accepted and run.
    pub fragments: AtomicU64,
    /// Plans refused for want of the key.
    pub refused: AtomicU64,
}

/// An executor's per-task session: refused unless the request carries the key, which it passes
/// on to the executors it calls in turn.
async fn executor_session(
    key: ExecutorKey,
    channels: Channels,
    counts: Arc<ExecutorCounts>,
    ctx: WorkerQueryContext,
) -> Result<SessionState, DataFusionError> {
    let offered = ctx.headers.get(KEY_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
    if !key.accepts(offered) {
        counts.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("refused a plan without the executor key");
        return Err(DataFusionError::Execution(REFUSED.into()));
    }
    counts.fragments.fetch_add(1, Ordering::Relaxed);
    tracing::info!("running a plan fragment");
    let headers = key.header();
    let builder = ctx.builder.with_distributed_channel_resolver(channels);
    Ok(builder.with_distributed_passthrough_headers(headers)?.build())
}

/// An executor's settings.
#[derive(Clone, Debug)]
pub struct ExecutorConfig {
    /// The lake it reads.
    pub objects: Objects,
    /// Memory its tasks share, bytes (no spilling to disk).
    pub memory_bytes: usize,
    /// The cluster's key.
    pub key: ExecutorKey,
    /// Where it counts what it does.
    pub counts: Arc<ExecutorCounts>,
    /// Its certificate, and the CA the cluster's certificates chain to; `None`: plain HTTP/2.
    pub tls: Option<ExecutorTls>,
}

/// An executor's TLS: its own certificate and key, and the CA every executor's certificate chains
/// to (for the connections it opens to the others), as PEM.
#[derive(Clone)]
pub struct ExecutorTls {
    /// Its certificate chain.
    pub cert_pem: Vec<u8>,
    /// Its private key.
    pub key_pem: Vec<u8>,
    /// The cluster's CA.
    pub ca_pem: Vec<u8>,
}

impl std::fmt::Debug for ExecutorTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExecutorTls(..)")
    }
}

/// Serves an executor on `listener` until `shutdown` resolves.
pub async fn serve_executor(
    listener: tokio::net::TcpListener,
    cfg: ExecutorConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DistError> {
    let engine =
        QueryEngine::new(cfg.objects, cfg.memory_bytes).map_err(|e| DistError::Lake(e.to_string()))?;
    let channels = Channels::new(cfg.tls.as_ref().map(|t| t.ca_pem.as_slice()));
    let (key, counts) = (cfg.key, cfg.counts);
    let worker = Worker::from_session_builder(move |ctx: WorkerQueryContext| {
        let (key, channels, counts) = (key.clone(), channels.clone(), Arc::clone(&counts));
        async move { executor_session(key, channels, counts, ctx).await }
    })
    .with_runtime_env(engine.lake_runtime());
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut server = Server::builder();
    if let Some(tls) = &cfg.tls {
        let identity = Identity::from_pem(&tls.cert_pem, &tls.key_pem);
        server = server.tls_config(ServerTlsConfig::new().identity(identity))?;
    }
    server.add_service(worker.into_worker_server()).serve_with_incoming_shutdown(incoming, shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests;
