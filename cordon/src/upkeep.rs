//! The store's upkeep in the server: index commits and Delta syncs, compaction and retention, and
//! the lake scrub, each on its schedule.

use crate::config::ServerConfig;
use anyhow::Context;
use std::sync::Arc;
use store::Store;

const HELP_SEARCHABLE: &str = "Seconds from a batch's publication (JetStream's timestamp) to its events being \
     searchable (the index commit that covers them), per batch.";

/// The store's periodic work: batched index commits and Delta log syncs about once a second, merging,
/// compaction and retention on their own task ([`maintenance_loop`]), a scrub of the lake's checksums after start and then
/// on its own schedule, and a final flush on shutdown. Failures are logged and
/// retried on the next round: the lake and catalog stay correct, only the derived state lags.
pub(crate) async fn housekeeping(
    store: Arc<Store>,
    metrics: Arc<schemas::metrics::Registry>,
    cfg: ServerConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut tick =
        tokio::time::interval(std::time::Duration::from_millis(250).min(cfg.index_commit.max_delay));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let schedule = Schedule { every: cfg.maintenance_interval, retention_days: cfg.retention_days };
    let upkeep =
        tokio::spawn(maintenance_loop(Arc::clone(&store), Arc::clone(&metrics), schedule, stop.clone()));
    let mut last_tick_log: Option<std::time::Instant> = None;
    if let Some(every) = cfg.scrub_interval {
        tokio::spawn(scrub_loop(Arc::clone(&store), every, stop.clone()));
    }
    loop {
        tokio::select! {
            _ = stop.wait_for(|v| *v) => break,
            _ = tick.tick() => {}
        }
        match store.tick().await {
            // Logged when a failure streak starts and every 30 s while it lasts (a full disk fails
            // every tick).
            Err(e) if last_tick_log.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(30)) => {
                tracing::warn!(error = %schemas::error_chain(&e), "store tick failed; retrying");
                last_tick_log = Some(std::time::Instant::now());
            }
            Err(_) => {}
            Ok(()) => {
                if last_tick_log.take().is_some() {
                    tracing::info!("store tick succeeded again");
                }
            }
        }
        for age in store.take_searchable_ages() {
            metrics.observe("cordon_publish_to_searchable_seconds", "", HELP_SEARCHABLE, age as f64 / 1e6);
        }
    }
    // A merge or compaction under way finishes before the last flush.
    if let Err(e) = upkeep.await {
        tracing::error!(error = %e, "the maintenance task failed");
    }
    store.flush().await.context("flushing the index and the Delta log on shutdown")
}

const HELP_MERGED: &str =
    "Small lake files merged away by size-tiered merging (between scheduled compactions).";

/// How often the lake is checked for a size tier of small files to merge.
const MERGE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Maintenance on its own task, so that index commits and Delta syncs never wait for it: ingest's
/// small files merged by size tier every few seconds ([`Store::merge_small`]), compaction and
/// retention on their schedule. Nothing runs when the schedule is off.
/// When maintenance runs.
#[derive(Clone, Copy, Debug)]
struct Schedule {
    /// Compaction and retention this often (`None`: no maintenance at all, merging included).
    every: Option<std::time::Duration>,
    retention_days: Option<u32>,
}

async fn maintenance_loop(
    store: Arc<Store>,
    metrics: Arc<schemas::metrics::Registry>,
    schedule: Schedule,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Some(every) = schedule.every else { return };
    let mut next = tokio::time::Instant::now() + every;
    loop {
        tokio::select! {
            _ = stop.wait_for(|v| *v) => return,
            _ = tokio::time::sleep(MERGE_EVERY.min(every)) => {}
        }
        match store.merge_small().await {
            Ok(r) if r.files_removed > 0 => {
                tracing::debug!(?r, "merged small files");
                metrics.add("cordon_lake_merged_files_total", "", HELP_MERGED, r.files_removed as u64);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %schemas::error_chain(&e), "merging small files failed; retried")
            }
        }
        if tokio::time::Instant::now() >= next {
            maintenance(&store, schedule.retention_days).await;
            next = tokio::time::Instant::now() + every;
        }
    }
}

async fn maintenance(store: &Store, retention_days: Option<u32>) {
    match store.compact(&store::CompactOptions::default()).await {
        Ok(r) if r.files_removed > 0 => tracing::info!(?r, "compaction"),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "compaction failed"),
    }
    let opts = store::VacuumOptions { retain_days: retention_days, now: schemas::time::now_micros() };
    match store.vacuum(&opts).await {
        Ok(r) if r.files_expired > 0 || r.orphans_removed > 0 => tracing::info!(?r, "retention"),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "retention failed"),
    }
}

/// Scrubs the lake once right after start (damage from before a crash or power loss shows within
/// minutes, not a day later) and then every `every`; damaged files are quarantined
/// ([`store::scrub`]).
async fn scrub_loop(
    store: Arc<Store>,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match store.scrub().await {
            Ok(r) if !r.quarantined.is_empty() => {
                tracing::error!(
                    quarantined = r.quarantined.len(),
                    files = r.files_checked,
                    "lake scrub found damage"
                )
            }
            Ok(r) => tracing::info!(
                files = r.files_checked,
                bytes = r.bytes_checked,
                "lake scrub: every file whole"
            ),
            Err(e) => {
                tracing::error!(error = %schemas::error_chain(&e), "lake scrub failed; retried at the next")
            }
        }
        tokio::select! {
            _ = stop.wait_for(|v| *v) => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server's maintenance task merges ingest's small files by tier long before the scheduled
    /// compaction, and counts what it merged.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_files_merge_between_scheduled_compactions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&store::StoreConfig::new(dir.path().to_path_buf())).await.unwrap();
        let files = store::MERGE_FAN_IN + 3;
        for i in 0..files {
            let ev = serde_json::json!({"@timestamp": "2026-01-01T00:00:00Z", "host": {"name": "h"},
                "event": {"id": format!("e-{i}"), "category": "process"}});
            store::fixtures::commit_events(&store, &format!("k{i}"), &[ev]).await;
        }
        let metrics = Arc::new(schemas::metrics::Registry::default());
        let (tx, rx) = tokio::sync::watch::channel(false);
        let schedule = Schedule { every: Some(std::time::Duration::from_secs(3600)), retention_days: None };
        let task = tokio::spawn(maintenance_loop(Arc::clone(&store), Arc::clone(&metrics), schedule, rx));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while store.catalog().files_after(0).await.unwrap().len() == files {
            assert!(std::time::Instant::now() < deadline, "no merge within 30 s");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        tx.send(true).unwrap();
        task.await.unwrap();
        let live = store.catalog().files_after(0).await.unwrap();
        assert_eq!(live.len(), 4, "32 one-row files became one, three wait");
        assert_eq!(live.iter().map(|f| f.rows).sum::<i64>(), files as i64);
        let text = metrics.render();
        assert!(text.contains("cordon_lake_merged_files_total 32"), "{text}");
    }
}
