//! Tenants' policies at ingest: re-read from the catalog (at most once per `policy_refresh`), turned
//! into per-tenant taggers, and published to agents in the JetStream key-value bucket
//! [`schemas::policy::POLICY_BUCKET`].

use super::{HELP_POLICY, Ingest, IngestError};
use std::sync::Arc;

impl Ingest {
    /// Re-reads tenants' policies when `policy_refresh` has passed, rebuilding the taggers of those
    /// whose version changed. A policy that no longer parses keeps the previous tagger (and says so).
    pub(crate) async fn refresh_policies(&self) -> Result<(), IngestError> {
        // Before ingest first reaches JetStream there is nowhere to publish: its start does this.
        let Some(kv) = self.policy_kv.get() else { return Ok(()) };
        let Some(base) = self.rules.get() else { return Ok(()) };
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
                    // No tenant label: /metrics is scraped across tenants and names none of them.
                    self.metrics.add("cordon_policy_applied_total", "", HELP_POLICY, 1);
                    // Agents watch this key and tag (and block) at the edge with the same policy.
                    let published = schemas::policy::Published {
                        tenant: p.tenant.clone(),
                        version: p.version,
                        author: p.author.clone(),
                        rules_digest: base.sources().digest.clone(),
                        policy: policy.clone(),
                    };
                    // Signed: agents refuse a policy the server's key did not sign, whoever wrote it.
                    let signed = serde_json::to_string(&published)
                        .map(|text| self.cfg.signing.sign(schemas::signed::POLICY_DOMAIN, text));
                    if let Ok(body) = signed.and_then(|s| serde_json::to_vec(&s))
                        && let Err(e) = kv.put(&p.tenant, body.into()).await
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

    /// Publishes the operator's rule files (with the digest of the whole rule set) to
    /// [`schemas::policy::RULES_BUCKET`], where agents fetch them, unless the current object
    /// already holds this digest. Without operator rules the bundle is empty: agents run the pack.
    pub(crate) async fn publish_rules(&self) -> Result<(), IngestError> {
        use async_nats::jetstream::object_store;
        use schemas::policy::{RULES_BUCKET, RULES_OBJECT, RuleBundle};
        let Some(base) = self.rules.get() else { return Ok(()) };
        let sources = base.sources();
        let bucket = match self.js.get_object_store(RULES_BUCKET).await {
            Ok(b) => b,
            Err(_) => self
                .js
                .create_object_store(object_store::Config {
                    bucket: RULES_BUCKET.to_owned(),
                    description: Some(
                        "The rule files the server runs beside Cordon's pack, for agents".into(),
                    ),
                    storage: async_nats::jetstream::stream::StorageType::File,
                    num_replicas: self.cfg.stream_replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| super::js_err("create rules bucket")(&e))?,
        };
        let stream = format!("OBJ_{RULES_BUCKET}");
        super::streams::rescale(&self.js, &stream, self.cfg.stream_replicas).await?;
        let signer = self.cfg.signing.public();
        if let Ok(info) = bucket.info(RULES_OBJECT).await
            && info.metadata.get("digest") == Some(&sources.digest)
            && info.metadata.get("signed_by") == Some(&signer)
        {
            return Ok(());
        }
        let bundle = RuleBundle {
            digest: sources.digest.clone(),
            files: sources.files.iter().map(|f| (f.name.clone(), f.text.clone())).collect(),
        };
        let encode = |e: serde_json::Error| IngestError::JetStream {
            op: "encode rule bundle",
            message: e.to_string(),
        };
        let text = serde_json::to_string(&bundle).map_err(encode)?;
        let signed = self.cfg.signing.sign(schemas::signed::RULES_DOMAIN, text);
        let body = serde_json::to_vec(&signed).map_err(encode)?;
        let meta = object_store::ObjectMetadata {
            name: RULES_OBJECT.to_owned(),
            description: Some(format!("{} rule files", bundle.files.len())),
            metadata: [("digest".to_owned(), sources.digest.clone()), ("signed_by".to_owned(), signer)]
                .into(),
            ..Default::default()
        };
        bucket.put(meta, &mut body.as_slice()).await.map_err(|e| super::js_err("publish rule bundle")(&e))?;
        tracing::info!(digest = %sources.digest, files = bundle.files.len(), bytes = body.len(), "rule files published to agents");
        Ok(())
    }

    pub(crate) fn tagger_for(&self, tenant: &str) -> Option<Arc<correlate::sigma::Tagger>> {
        let base = self.rules.get()?;
        let by_tenant = self.taggers.read().unwrap_or_else(|e| e.into_inner());
        Some(by_tenant.get(tenant).map_or(base, |(_, t)| Arc::clone(t)))
    }

    /// The rules in use, shared (the API reads the same cell).
    pub fn rules(&self) -> Arc<correlate::sigma::CurrentRules> {
        Arc::clone(&self.rules)
    }

    /// Replaces the rules (the operator's files were reloaded): tenants' taggers are rebuilt under
    /// their policies at once, agents are sent the new files, and correlation state starts afresh
    /// (its rules' numbering changed; windows under way are lost, which is logged).
    pub async fn reload_rules(&self, tagger: correlate::sigma::Tagger) -> Result<(), IngestError> {
        let digest = tagger.sources().digest.clone();
        self.rules.set(Arc::new(tagger));
        self.taggers.write().unwrap_or_else(|e| e.into_inner()).clear();
        let windows: usize = self.analysers.iter().map(|a| a.rules_changed()).sum();
        if windows > 0 {
            tracing::warn!(tenants = windows, "rules reloaded: correlation windows under way start afresh");
        }
        *self.last_policy_read.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.publish_rules().await?;
        self.refresh_policies().await?;
        tracing::info!(%digest, "rules reloaded");
        Ok(())
    }
}
