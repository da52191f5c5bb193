//! The server's long-running tasks (API, ingest, housekeeping, reports, baselines, rule reloads),
//! watched as one set. A task that fails (an error or a panic) leaves the server without a part it
//! needs while the API keeps answering, so the server stops the rest and exits with that task's name
//! and error, for its supervisor to restart it. A task that returns `Ok` has nothing (more) to do (the
//! report scheduler with no reports) and the others run on.

use anyhow::Context;
use std::collections::HashMap;
use std::future::Future;
use tokio::task::{Id, JoinSet};

/// Named tasks that run until shutdown.
#[derive(Default)]
pub(crate) struct Tasks {
    set: JoinSet<anyhow::Result<()>>,
    names: HashMap<Id, &'static str>,
}

/// How a task ended: its name and result (a panic is an error).
pub(crate) type Ended = (&'static str, anyhow::Result<()>);

impl Tasks {
    /// Starts `task` as `name`.
    pub(crate) fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name);
    }

    /// The next task to end, or none when every task has.
    pub(crate) async fn next_ended(&mut self) -> Option<Ended> {
        let joined = self.set.join_next_with_id().await?;
        Some(match joined {
            Ok((id, result)) => (self.name(id), result),
            Err(e) => (self.name(e.id()), Err(anyhow::anyhow!("panicked: {e}"))),
        })
    }

    /// The next task to fail, with its error; none when every task has ended without one. Tasks
    /// that return `Ok` before then are let go.
    pub(crate) async fn next_failure(&mut self) -> Option<(&'static str, anyhow::Error)> {
        while let Some((name, result)) = self.next_ended().await {
            match result {
                Ok(()) => tracing::debug!(task = name, "server task finished"),
                Err(e) => return Some((name, e)),
            }
        }
        None
    }

    /// Waits for every task (after shutdown was signalled); the first error, naming its task.
    pub(crate) async fn join_all(mut self) -> anyhow::Result<()> {
        let mut first = Ok(());
        while let Some((name, result)) = self.next_ended().await {
            if let Err(e) = result.with_context(|| format!("the {name} task failed")) {
                tracing::error!(task = name, error = %format!("{e:#}"), "server task failed");
                first = first.and(Err(e));
            }
        }
        first
    }

    fn name(&self, id: Id) -> &'static str {
        self.names.get(&id).copied().unwrap_or("unnamed")
    }
}

/// Why the server stopped on its own: a task failed before shutdown.
pub(crate) fn failed_early((name, e): (&'static str, anyhow::Error)) -> anyhow::Error {
    let e = e.context(format!("the {name} task failed before shutdown"));
    tracing::error!(task = name, error = %format!("{e:#}"), "a server task failed; stopping the server");
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    use tokio::sync::watch;

    /// A task that runs until shutdown and notes that it saw it.
    async fn until_shutdown(mut rx: watch::Receiver<bool>, saw: Arc<AtomicBool>) -> anyhow::Result<()> {
        let _ = rx.wait_for(|v| *v).await;
        saw.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn fails_after(ms: u64) -> anyhow::Result<()> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        anyhow::bail!("restore from the lake failed")
    }

    #[tokio::test]
    async fn a_task_that_fails_is_named_with_its_error_and_the_others_then_stop() {
        let (tx, rx) = watch::channel(false);
        let saw = Arc::new(AtomicBool::new(false));
        let mut tasks = Tasks::default();
        tasks.spawn("api", until_shutdown(rx, Arc::clone(&saw)));
        tasks.spawn("ingest", fails_after(20));
        let e = format!("{:#}", failed_early(tasks.next_failure().await.expect("a task failed")));
        assert!(e.contains("the ingest task failed before shutdown"), "{e}");
        assert!(e.contains("restore from the lake failed"), "{e}");
        assert!(!saw.load(Ordering::SeqCst), "the api task was still running");
        let _ = tx.send(true);
        tasks.join_all().await.expect("the api task stops cleanly");
        assert!(saw.load(Ordering::SeqCst), "the api task saw the shutdown");
    }

    #[tokio::test]
    async fn a_quiet_return_is_let_go_and_a_later_panic_is_reported_by_name() {
        let mut tasks = Tasks::default();
        // The report scheduler with no reports configured returns at once.
        tasks.spawn("reports", async { Ok(()) });
        tasks.spawn("housekeeping", async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            panic!("merge broke")
        });
        let e = format!("{:#}", failed_early(tasks.next_failure().await.expect("a task failed")));
        assert!(e.contains("the housekeeping task failed before shutdown") && e.contains("panicked"), "{e}");
        assert!(tasks.next_failure().await.is_none(), "no task left to fail");
    }

    #[tokio::test]
    async fn join_all_returns_the_first_failure_by_name_after_every_task_ended() {
        let (tx, rx) = watch::channel(false);
        let saw = Arc::new(AtomicBool::new(false));
        let mut tasks = Tasks::default();
        tasks.spawn("baselines", until_shutdown(rx, Arc::clone(&saw)));
        tasks.spawn("ingest", fails_after(0));
        let _ = tx.send(true);
        let e = tasks.join_all().await.expect_err("ingest failed");
        assert!(format!("{e:#}").starts_with("the ingest task failed: restore"), "{e:#}");
        assert!(saw.load(Ordering::SeqCst), "join_all waited for the baselines task");
    }
}
