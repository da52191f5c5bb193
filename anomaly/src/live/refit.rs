//! What a refit of a tenant's models did, as the API and the server's schedule report it.

use super::TenantModels;

/// What a refit did.
#[derive(Clone, Debug, serde::Serialize, schemars::JsonSchema)]
pub struct RefitReport {
    /// Tenant.
    pub tenant: String,
    /// Hosts with series.
    pub hosts: usize,
    /// Series with a forecast of their own.
    pub forecasts: usize,
    /// Series judged on the fleet band alone (too short, or the model failed).
    pub fallbacks: usize,
    /// Groups with bands.
    pub groups: usize,
    /// Wall milliseconds of the fit.
    pub fit_millis: u64,
}

impl RefitReport {
    /// The report of `tenant`'s fitted `models`.
    pub fn of(tenant: &str, models: &TenantModels) -> Self {
        let (mut forecasts, mut fallbacks) = (0, 0);
        for f in models.hosts.values().flat_map(|m| m.forecasts.values()) {
            if f.is_ok() {
                forecasts += 1;
            } else {
                fallbacks += 1;
            }
        }
        Self {
            tenant: tenant.to_owned(),
            hosts: models.hosts.len(),
            forecasts,
            fallbacks,
            groups: models.bands.keys().map(|(g, _)| g).collect::<std::collections::BTreeSet<_>>().len(),
            fit_millis: models.fit_millis,
        }
    }
}
