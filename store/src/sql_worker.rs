//! The analyst-SQL worker: a child process that runs one query at a time for [`crate::sql_pool`].
//!
//! DataFusion's memory pool accounts what its operators reserve (sorts, joins, aggregates), not what
//! a scalar or table function builds: `repeat('a', 1500000000)` or `unnest(range(1, 1000000000))`
//! allocate gigabytes the pool never hears of. Analyst SQL therefore runs here, in a process of its
//! own under a data-size limit (`RLIMIT_DATA`) and a resident-size watchdog in the server, so a
//! runaway query ends this process, never the server.
//!
//! The protocol is JSON lines over stdin and stdout: first a [`WorkerConfig`] (the lake's location
//! and options travel here, not in the command line where `ps` would show them), then one
//! [`WorkerRequest`] and one [`WorkerReply`] per query. End of input ends the worker.

use crate::objects::Objects;
use crate::query::{QueryEngine, QueryError, Scope, SqlLimits, SqlOutput};
use std::io::{BufRead, Write};
use std::time::Duration;

/// What a worker is told when it starts.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct WorkerConfig {
    /// The lake: a directory or an object-store URL.
    pub location: String,
    /// Object-store options for `location`.
    pub options: Vec<(String, String)>,
    /// DataFusion's pool for the worker's queries, bytes.
    pub pool_bytes: usize,
    /// The process's data-size limit (`RLIMIT_DATA`), bytes; 0 for none.
    pub data_limit_bytes: u64,
}

/// One query.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct WorkerRequest {
    /// The tenant and the live lake files the query may read (each checked before use).
    pub scope: Scope,
    /// The SQL.
    pub sql: String,
    /// Rows returned at most.
    pub max_rows: usize,
    /// Wall-clock budget, milliseconds.
    pub timeout_ms: u64,
}

/// One query's answer.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum WorkerReply {
    /// The rows.
    Rows(SqlOutput),
    /// The caller's mistake.
    Invalid(String),
    /// Over the time budget.
    Timeout(u64),
    /// Over the memory budget (DataFusion's pool refused).
    Memory(String),
    /// A lake file failed its checksum (its lake path).
    Damaged(String),
    /// Anything else.
    Internal(String),
}

impl WorkerReply {
    fn of(result: Result<SqlOutput, QueryError>) -> Self {
        match result {
            Ok(out) => Self::Rows(out),
            Err(QueryError::Invalid(m)) => Self::Invalid(m),
            Err(QueryError::Timeout(d)) => Self::Timeout(d.as_millis() as u64),
            Err(QueryError::ResourcesExhausted(m)) => Self::Memory(m),
            Err(QueryError::Damaged(p)) => Self::Damaged(p),
            Err(QueryError::Internal(e)) => Self::Internal(e.strip_backtrace()),
            // A worker runs the embedded engine only; should it meet this, it is the server's to report.
            Err(e @ QueryError::Unavailable(_)) => Self::Internal(e.to_string()),
        }
    }

    /// Back into the engine's error type.
    pub fn into_result(self) -> Result<SqlOutput, QueryError> {
        match self {
            Self::Rows(out) => Ok(out),
            Self::Invalid(m) => Err(QueryError::Invalid(m)),
            Self::Timeout(ms) => Err(QueryError::Timeout(Duration::from_millis(ms))),
            Self::Memory(m) => Err(QueryError::ResourcesExhausted(m)),
            Self::Damaged(p) => Err(QueryError::Damaged(p)),
            Self::Internal(m) => Err(QueryError::Internal(datafusion::error::DataFusionError::Execution(m))),
        }
    }
}

/// Worker failures before it can serve.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Reading or writing the pipes.
    #[error("worker i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The first line was not a configuration.
    #[error("worker configuration: {0}")]
    Config(String),
}

/// Serves queries from `input` to `output` until end of input (the body of `cordon sql-worker`).
pub fn serve(input: impl BufRead, mut output: impl Write) -> Result<(), WorkerError> {
    let mut lines = input.lines();
    let first = lines.next().ok_or_else(|| WorkerError::Config("no configuration line".to_owned()))??;
    let config: WorkerConfig =
        serde_json::from_str(&first).map_err(|e| WorkerError::Config(e.to_string()))?;
    limit_data(config.data_limit_bytes)?;
    let objects = Objects::open(&config.location, &config.options, false)
        .map_err(|e| WorkerError::Config(e.to_string()))?;
    let engine =
        QueryEngine::new(objects, config.pool_bytes).map_err(|e| WorkerError::Config(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("cordon-sql-worker")
        .enable_all()
        .build()?;
    for line in lines {
        let reply = match serde_json::from_str::<WorkerRequest>(&line?) {
            Ok(req) => WorkerReply::of(rt.block_on(run(&engine, req))),
            Err(e) => WorkerReply::Internal(format!("bad request line: {e}")),
        };
        serde_json::to_writer(&mut output, &reply).map_err(std::io::Error::from)?;
        output.write_all(b"\n")?;
        output.flush()?;
    }
    Ok(())
}

async fn run(engine: &QueryEngine, req: WorkerRequest) -> Result<SqlOutput, QueryError> {
    let limits = SqlLimits { max_rows: req.max_rows, timeout: Duration::from_millis(req.timeout_ms) };
    engine.sql(&req.scope, &req.sql, &limits).await
}

/// Caps the process's data segment and private writable mappings: an allocation past it fails, and
/// the process aborts (the server reports the query as over its memory budget).
fn limit_data(bytes: u64) -> Result<(), WorkerError> {
    if bytes == 0 {
        return Ok(());
    }
    let limit = rustix::process::Rlimit { current: Some(bytes), maximum: Some(bytes) };
    rustix::process::setrlimit(rustix::process::Resource::Data, limit)
        .map_err(|e| WorkerError::Config(format!("cannot set RLIMIT_DATA to {bytes} bytes: {e}")))
}
