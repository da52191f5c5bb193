//! Refitting a tenant's login baselines from the lake: the hourly login counts and host groups of
//! the last `cfg.history_hours` (DataFusion), fitted off the async runtime on a bounded pool
//! ([`anomaly::live::fit_tenant`]) and installed in the live models ingest counts into. The route
//! `POST /api/v1/baselines/refit` and the server's schedule both run it.

use anomaly::forecast::ForecastConfig;
use anomaly::live::{Live, RefitReport, fit_tenant};
use anomaly::series::{HOUR, LoginSeries, hour_floor};
use std::collections::HashMap;

/// Why a refit failed.
#[derive(Debug, thiserror::Error)]
pub enum RefitError {
    /// The lake or the catalog could not be read.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The fit's thread failed.
    #[error("the fit failed: {0}")]
    Fit(String),
}

/// Refits `tenant`'s models from the lake's logins before the hour of `now`, on `threads` threads,
/// and installs them.
pub async fn refit(
    store: &store::Store,
    live: &Live,
    tenant: &str,
    cfg: &ForecastConfig,
    threads: usize,
    now: i64,
) -> Result<RefitReport, RefitError> {
    let to = hour_floor(now);
    let from = to - cfg.history_hours as i64 * HOUR;
    let counts = store.login_counts(tenant, None, from, to).await?;
    let groups: HashMap<String, String> = store.host_groups(tenant, from, to).await?.into_iter().collect();
    let series = LoginSeries::from_counts(&counts, from, to);
    let cfg = cfg.clone();
    let models = tokio::task::spawn_blocking(move || fit_tenant(&series, &groups, &cfg, threads, now))
        .await
        .map_err(|e| RefitError::Fit(e.to_string()))?;
    let report = RefitReport::of(tenant, &models);
    live.install(tenant, models);
    Ok(report)
}
