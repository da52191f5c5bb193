//! The store's upkeep in the server: index commits and Delta syncs, compaction and retention, and
//! the lake scrub, each on its schedule.

use crate::config::ServerConfig;
use anyhow::Context;
use std::sync::Arc;
use store::Store;

const HELP_SEARCHABLE: &str = "Seconds from a batch's publication (JetStream's timestamp) to its events being \
     searchable (the index commit that covers them), per batch.";

/// The store's periodic work: batched index commits and Delta log syncs about once a second,
/// compaction and retention on their schedule, a scrub of the lake's checksums after start and then
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
    let mut next_maintenance = cfg.maintenance_interval.map(|d| tokio::time::Instant::now() + d);
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
        if let (Some(at), Some(every)) = (next_maintenance, cfg.maintenance_interval)
            && tokio::time::Instant::now() >= at
        {
            maintenance(&store, cfg.retention_days).await;
            next_maintenance = Some(tokio::time::Instant::now() + every);
        }
    }
    store.flush().await.context("flushing the index and the Delta log on shutdown")
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
