//! Analyst SQL in worker processes ([`crate::sql_worker`]): a runaway query costs a worker, never
//! the server.
//!
//! A fixed number of slots; each runs one query at a time in a long-lived worker (started on first
//! use, reused while healthy). While a query runs the pool watches the worker's resident size every
//! few milliseconds and stops it at its budget, and stops it at the query's time budget, so the
//! timeout interrupts work in progress instead of abandoning it. A worker that dies or is stopped is
//! replaced on the next query, and so is one that still holds over half its budget after a query.
//! The worker's own `RLIMIT_DATA` is the backstop for growth faster than the watchdog samples.

use crate::query::{QueryError, Scope, SqlLimits, SqlOutput};
use crate::sql_worker::{WorkerConfig, WorkerReply, WorkerRequest};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How often the watchdog samples a running worker's resident size.
const SAMPLE: Duration = Duration::from_millis(5);
/// Extra time the server gives a worker over the query's budget before stopping it.
const GRACE: Duration = Duration::from_secs(2);

/// How to start a worker.
#[derive(Clone, Debug)]
pub struct WorkerCommand {
    /// The program (the server's own binary).
    pub program: PathBuf,
    /// Its arguments (the hidden `sql-worker` subcommand).
    pub args: Vec<String>,
    /// Queries at once.
    pub slots: usize,
}

/// The pool.
#[derive(Debug)]
pub struct SqlPool {
    command: WorkerCommand,
    config: WorkerConfig,
    /// Resident-size budget per worker, bytes.
    budget: u64,
    idle: std::sync::Mutex<Vec<Worker>>,
    slots: tokio::sync::Semaphore,
}

#[derive(Debug)]
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// How waiting for a reply ended.
enum Ended {
    Line(std::io::Result<usize>),
    Stopped(Stopped),
}

/// Why a query ended without a reply.
enum Stopped {
    Timeout,
    Memory(u64),
    Died(std::io::Result<ExitStatus>),
}

impl SqlPool {
    /// A pool whose workers each get `budget` bytes (resident), `3/4` of it for DataFusion's pool.
    pub fn new(
        command: WorkerCommand,
        location: String,
        options: Vec<(String, String)>,
        budget: u64,
    ) -> Self {
        let config = WorkerConfig {
            location,
            options,
            pool_bytes: (budget / 4 * 3) as usize,
            // Address space the allocator reserves but never touches is not data; the resident
            // watchdog is the budget, this only stops growth it could not see in time.
            data_limit_bytes: budget.saturating_mul(2).saturating_add(512 << 20),
        };
        let slots = tokio::sync::Semaphore::new(command.slots.max(1));
        Self { command, config, budget, idle: std::sync::Mutex::new(Vec::new()), slots }
    }

    /// Runs one query in a worker.
    pub async fn sql(&self, scope: &Scope, sql: &str, limits: &SqlLimits) -> Result<SqlOutput, QueryError> {
        let _slot = self.slots.acquire().await.map_err(|_| internal("the SQL pool is closed".to_owned()))?;
        let idle = self.idle.lock().expect("sql pool lock").pop();
        let mut worker = match idle {
            Some(w) => w,
            None => self.spawn().await?,
        };
        let req = WorkerRequest {
            scope: scope.clone(),
            sql: sql.to_owned(),
            max_rows: limits.max_rows,
            timeout_ms: limits.timeout.as_millis() as u64,
        };
        let mut line = serde_json::to_vec(&req).map_err(|e| internal(e.to_string()))?;
        line.push(b'\n');
        if let Err(e) = worker.stdin.write_all(&line).await {
            return Err(self.failed(worker, Stopped::Died(Err(e)), limits).await);
        }
        let mut reply = String::new();
        let pid = worker.child.id();
        let ended = tokio::select! {
            read = worker.stdout.read_line(&mut reply) => Ended::Line(read),
            () = tokio::time::sleep(limits.timeout + GRACE) => Ended::Stopped(Stopped::Timeout),
            rss = watch(pid, self.budget) => Ended::Stopped(Stopped::Memory(rss)),
        };
        let stopped = match ended {
            Ended::Line(Ok(n)) if n > 0 => None,
            Ended::Line(Ok(_)) => Some(Stopped::Died(worker.child.wait().await)),
            Ended::Line(Err(e)) => Some(Stopped::Died(Err(e))),
            Ended::Stopped(why) => Some(why),
        };
        if let Some(why) = stopped {
            return Err(self.failed(worker, why, limits).await);
        }
        let reply: WorkerReply =
            serde_json::from_str(&reply).map_err(|e| internal(format!("unreadable worker reply: {e}")))?;
        self.check_in(worker, &reply).await;
        reply.into_result()
    }

    /// Keeps a worker for the next query, or retires it: a timed-out query may still be computing
    /// inside it, and a worker still holding much of its budget after a query (memory its allocator
    /// has not returned yet, typically after the pool refused a query) would charge it to the next.
    async fn check_in(&self, mut worker: Worker, reply: &WorkerReply) {
        let held = resident(worker.child.id()).await;
        if matches!(reply, WorkerReply::Timeout(_)) || held > self.budget / 2 {
            tracing::debug!(pid = worker.child.id(), held_mib = held >> 20, "SQL worker retired");
            let _ = worker.child.start_kill();
            let _ = worker.child.wait().await;
            return;
        }
        self.idle.lock().expect("sql pool lock").push(worker);
    }

    async fn spawn(&self) -> Result<Worker, QueryError> {
        let mut child = Command::new(&self.command.program)
            .args(&self.command.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                internal(format!("cannot start a SQL worker ({}): {e}", self.command.program.display()))
            })?;
        let mut stdin = child.stdin.take().ok_or_else(|| internal("worker stdin".to_owned()))?;
        let stdout = BufReader::new(child.stdout.take().ok_or_else(|| internal("worker stdout".to_owned()))?);
        let mut line = serde_json::to_vec(&self.config).map_err(|e| internal(e.to_string()))?;
        line.push(b'\n');
        stdin.write_all(&line).await.map_err(|e| internal(format!("configuring a SQL worker: {e}")))?;
        tracing::debug!(pid = child.id(), "SQL worker started");
        Ok(Worker { child, stdin, stdout })
    }

    /// Stops a worker that failed a query and says why, as the query's error.
    async fn failed(&self, mut worker: Worker, why: Stopped, limits: &SqlLimits) -> QueryError {
        let _ = worker.child.start_kill();
        let failure = match why {
            Stopped::Timeout => Failure::Timeout,
            Stopped::Memory(rss) => Failure::Memory(rss),
            Stopped::Died(status) => {
                let _ = worker.child.wait().await;
                match status {
                    Ok(s) if aborted(&s) => Failure::Aborted,
                    Ok(s) => Failure::Other(format!("the SQL worker exited ({s}) during the query")),
                    Err(e) => Failure::Other(format!("the SQL worker's pipe failed: {e}")),
                }
            }
        };
        failure.with_limits(limits, self.budget)
    }
}

/// A failed query before it is phrased for the caller.
enum Failure {
    Timeout,
    Memory(u64),
    /// Killed by `SIGABRT`: an allocation past `RLIMIT_DATA` failed.
    Aborted,
    Other(String),
}

impl Failure {
    fn with_limits(self, limits: &SqlLimits, budget: u64) -> QueryError {
        let mib = |b: u64| b >> 20;
        match self {
            Self::Timeout => QueryError::Timeout(limits.timeout),
            Self::Memory(rss) => QueryError::ResourcesExhausted(format!(
                "stopped at {} MiB resident, over the {} MiB a query may use",
                mib(rss),
                mib(budget)
            )),
            Self::Aborted => QueryError::ResourcesExhausted(format!(
                "an allocation failed past the {} MiB a query may use",
                mib(budget)
            )),
            Self::Other(m) => {
                tracing::error!(error = %m, "SQL worker failed");
                internal(m)
            }
        }
    }
}

fn internal(m: String) -> QueryError {
    QueryError::Internal(datafusion::error::DataFusionError::Execution(m))
}

#[cfg(unix)]
fn aborted(s: &ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    s.signal() == Some(6)
}

#[cfg(not(unix))]
fn aborted(_: &ExitStatus) -> bool {
    false
}

/// Resolves with the resident size once the process `pid` holds more than `budget` bytes.
async fn watch(pid: Option<u32>, budget: u64) -> u64 {
    if pid.is_none() {
        return std::future::pending().await;
    }
    loop {
        tokio::time::sleep(SAMPLE).await;
        let held = resident(pid).await;
        if held > budget {
            return held;
        }
    }
}

/// The resident size of process `pid` in bytes; 0 when it cannot be read.
async fn resident(pid: Option<u32>) -> u64 {
    let Some(pid) = pid else { return 0 };
    let Ok(text) = tokio::fs::read_to_string(format!("/proc/{pid}/statm")).await else { return 0 };
    let pages = text.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0);
    pages * rustix::param::page_size() as u64
}
