//! What agents run, by request and reply: an agent asks on its own subject
//! (`<prefix>.<tenant>.<agent>.policy` or `.rules`) and the server answers with the signed object it
//! published. Agents need no JetStream API access (ADR 0007), and the tenant comes from the subject,
//! which the agent's credential pins, so an agent can only ever read its own tenant's policy.

use super::Ingest;
use futures::StreamExt;
use schemas::subject::SubjectKind;
use std::sync::Arc;

impl Ingest {
    /// Answers agents' policy, rule and response ([`crate::orders`]) requests until `shutdown` turns true.
    pub(crate) async fn distribute(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let subjects = &self.cfg.subjects;
        let subscribe = |kind| self.client.queue_subscribe(subjects.filter(kind), "cordon-dist".to_owned());
        let mut subs = Vec::new();
        for kind in [SubjectKind::Policy, SubjectKind::Rules, SubjectKind::Orders, SubjectKind::Result] {
            match subscribe(kind).await {
                Ok(s) => subs.push(s),
                Err(e) => {
                    tracing::error!(error = %e, "cannot answer agents' policy, rule and response requests");
                    return;
                }
            }
        }
        let mut requests = futures::stream::select_all(subs);
        loop {
            let msg = tokio::select! {
                m = requests.next() => m,
                _ = shutdown.wait_for(|v| *v) => None,
            };
            let Some(msg) = msg else { break };
            let Some(reply) = msg.reply.clone() else { continue };
            let answer = match subjects.parse(msg.subject.as_str()) {
                Ok((tenant, _, SubjectKind::Policy)) => self.signed_policy(tenant.as_str()).await,
                Ok((_, _, SubjectKind::Rules)) => self.signed_rules(&msg.payload).await,
                Ok((tenant, agent, SubjectKind::Orders)) => {
                    self.orders(tenant.as_str(), agent.as_str()).await
                }
                Ok((tenant, agent, SubjectKind::Result)) => {
                    self.result(tenant.as_str(), agent.as_str(), &msg.payload).await
                }
                _ => continue,
            };
            if let Err(e) = self.client.publish(reply, answer.into()).await {
                tracing::debug!(error = %e, "could not answer an agent's request");
            }
        }
    }

    /// The tenant's signed policy as published, or nothing when none is.
    async fn signed_policy(&self, tenant: &str) -> Vec<u8> {
        let Some(kv) = self.policy_kv.get() else { return Vec::new() };
        match kv.get(tenant).await {
            Ok(Some(body)) => body.to_vec(),
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the published policy");
                Vec::new()
            }
        }
    }

    /// The signed rule bundle, or nothing when the agent's `digest` is current.
    async fn signed_rules(&self, digest: &[u8]) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let Ok(bucket) = self.js.get_object_store(schemas::policy::RULES_BUCKET).await else {
            return Vec::new();
        };
        let Ok(info) = bucket.info(schemas::policy::RULES_OBJECT).await else { return Vec::new() };
        if info.metadata.get("digest").map(String::as_bytes) == Some(digest) {
            return Vec::new();
        }
        let mut body = Vec::new();
        match bucket.get(schemas::policy::RULES_OBJECT).await {
            Ok(mut object) => {
                if let Err(e) = object.read_to_end(&mut body).await {
                    tracing::warn!(error = %e, "cannot read the rule bundle");
                    body.clear();
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the rule bundle"),
        }
        body
    }
}
