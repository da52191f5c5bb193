//! Tenants' policies at ingest: re-read from the catalog (at most once per `policy_refresh`), turned
//! into per-tenant taggers, and published to agents in the JetStream key-value bucket
//! [`schemas::policy::POLICY_BUCKET`].

use super::{HELP_POLICY, Ingest, IngestError};
use std::sync::Arc;

impl Ingest {
    /// Re-reads tenants' policies when `policy_refresh` has passed, rebuilding the taggers of those
    /// whose version changed. A policy that no longer parses keeps the previous tagger (and says so).
    pub(crate) async fn refresh_policies(&self) -> Result<(), IngestError> {
        let Some(base) = &self.cfg.tagger else { return Ok(()) };
        {
            let mut last = self.last_policy_read.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < self.cfg.policy_refresh) {
                return Ok(());
            }
            *last = Some(std::time::Instant::now());
        }
        let current = self.store.catalog().current_policies().await.map_err(store::StoreError::from)?;
        for p in current {
            let known = self.taggers.read().unwrap_or_else(|e| e.into_inner()).get(&p.tenant).map(|t| t.0);
            if known == Some(p.version) {
                continue;
            }
            let parsed = serde_json::from_str::<schemas::policy::Policy>(&p.body)
                .map_err(|e| e.to_string())
                .and_then(|pol| pol.validated().map_err(|e| e.to_string()));
            match parsed {
                Ok(policy) => {
                    tracing::info!(tenant = %p.tenant, version = p.version, author = %p.author, "policy applied");
                    self.metrics.set_gauge(
                        "cordon_policy_version",
                        &format!("tenant=\"{}\"", p.tenant),
                        HELP_POLICY,
                        p.version as u64,
                    );
                    // Agents watch this key and tag (and block) at the edge with the same policy.
                    let published = schemas::policy::Published {
                        tenant: p.tenant.clone(),
                        version: p.version,
                        author: p.author.clone(),
                        rules_digest: correlate::sigma::tagger::pack_digest(),
                        policy: policy.clone(),
                    };
                    if let Ok(body) = serde_json::to_vec(&published)
                        && let Err(e) = self.policy_kv.put(&p.tenant, body.into()).await
                    {
                        tracing::warn!(tenant = %p.tenant, error = %e, "could not publish the policy to agents");
                    }
                    let t = Arc::new(base.with_policy(policy));
                    self.taggers
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(p.tenant.clone(), (p.version, t));
                }
                Err(e) => {
                    tracing::error!(tenant = %p.tenant, version = p.version, error = %e, "stored policy is invalid; keeping the previous one")
                }
            }
        }
        Ok(())
    }

    pub(crate) fn tagger_for(&self, tenant: &str) -> Option<Arc<correlate::sigma::Tagger>> {
        let base = self.cfg.tagger.as_ref()?;
        let by_tenant = self.taggers.read().unwrap_or_else(|e| e.into_inner());
        Some(by_tenant.get(tenant).map_or_else(|| Arc::clone(base), |(_, t)| Arc::clone(t)))
    }
}
