//! The CPU pool: a separate tokio runtime for DataFusion execution, Parquet encoding and tantivy
//! indexing, so that CPU-heavy work never stalls the I/O runtime's network tasks.

use std::future::Future;

/// A dedicated multi-threaded runtime for CPU work.
#[derive(Debug)]
pub struct CpuRuntime {
    rt: Option<tokio::runtime::Runtime>,
}

/// The pool is gone (shutting down) or the task panicked.
#[derive(Debug, thiserror::Error)]
#[error("cpu task failed")]
pub struct CpuError(#[source] tokio::task::JoinError);

impl CpuRuntime {
    /// A pool of `threads` worker threads.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("cordon-cpu")
            // I/O too: DataFusion reads a bucket-backed lake from this pool.
            .enable_all()
            .build()?;
        Ok(Self { rt: Some(rt) })
    }

    fn handle(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("the runtime is only taken in drop")
    }

    /// Runs synchronous CPU work on the pool.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, CpuError> {
        self.handle().spawn(async move { f() }).await.map_err(CpuError)
    }

    /// Runs an async CPU-heavy computation (a DataFusion plan) on the pool.
    pub async fn run_async<R: Send + 'static>(
        &self,
        fut: impl Future<Output = R> + Send + 'static,
    ) -> Result<R, CpuError> {
        self.handle().spawn(fut).await.map_err(CpuError)
    }
}

impl Drop for CpuRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
