//! Detection at the edge: the agent runs Cordon's rule pack under its tenant's policy on every event
//! before shipping it, so events leave the endpoint ATT&CK-tagged (`threat.technique.id`,
//! `threat.tactic.name`, `rule.name`, `cordon.policy_tier`), and a process start the policy blocks is
//! terminated on the spot instead of after a round trip to the server.
//!
//! The policy comes from the server: ingest publishes each tenant's current version to the JetStream
//! key-value bucket [`schemas::policy::POLICY_BUCKET`]; the agent reads its tenant's key at start and
//! watches it, so a change applies while the agent runs. Until a policy arrives (or without a
//! server-side one) it uses the shipped default. The published entry carries the digest of the
//! server's rule pack; the agent reports whether its own matches. Ingest re-evaluates every event with
//! the central rules either way, keeping the agent's tags.

use crate::enforce::{self, Outcome};
use crate::shipper::Identity;
use correlate::sigma::Tagger;
use correlate::sigma::tagger::pack_digest;
use schemas::fields::col;
use schemas::policy::{Policy, Published};
use serde_json::Value;
use std::sync::{Arc, Mutex, RwLock};

/// What the edge did, for the run summary.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct EdgeSummary {
    /// The policy version applied last (0: the shipped default).
    pub policy_version: i64,
    /// Whether the server's rule pack is this agent's (`None`: no policy from the server yet).
    pub rules_match: Option<bool>,
    /// Events tagged by a rule.
    pub tagged: u64,
    /// Process starts the policy blocked (terminated here when enforcement is on).
    pub blocked: u64,
}

/// The edge tagger shared by an agent's shippers.
#[derive(Debug)]
pub struct Edge {
    base: Tagger,
    current: RwLock<Arc<Tagger>>,
    summary: Mutex<EdgeSummary>,
    enforce: bool,
    outcomes: Mutex<Vec<Outcome>>,
}

impl Edge {
    /// The pack under the shipped default policy; `enforce`: terminate blocked process starts.
    pub fn new(enforce: bool) -> Arc<Self> {
        let base = Tagger::cordon_pack(Policy::cordon_default())
            .expect("Cordon's rule pack compiles (tested in correlate)");
        Arc::new(Self {
            current: RwLock::new(Arc::new(base.clone())),
            base,
            summary: Mutex::new(EdgeSummary::default()),
            enforce,
            outcomes: Mutex::new(Vec::new()),
        })
    }

    /// Applies a published policy (ignored when it does not validate; the previous one stays).
    pub fn apply(&self, p: &Published) {
        match p.policy.clone().validated() {
            Ok(policy) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) =
                    Arc::new(self.base.with_policy(policy));
                let mut s = self.summary.lock().unwrap_or_else(|e| e.into_inner());
                s.policy_version = p.version;
                s.rules_match = Some(p.rules_digest == pack_digest());
                tracing::info!(version = p.version, author = %p.author, "policy applied at the edge");
            }
            Err(e) => {
                tracing::error!(version = p.version, error = %e, "published policy is invalid; keeping the previous one")
            }
        }
    }

    /// Reads the tenant's published policy now, then re-reads it every `every` in a background
    /// task (a poll rather than a watch: it survives server restarts and never spins).
    pub async fn follow(
        self: &Arc<Self>,
        client: &async_nats::Client,
        tenant: &str,
        every: std::time::Duration,
    ) {
        let js = async_nats::jetstream::new(client.clone());
        let Ok(kv) = js.get_key_value(schemas::policy::POLICY_BUCKET).await else {
            tracing::info!("no policy published by the server yet; using the shipped default");
            return;
        };
        let mut seen = self.poll(&kv, tenant, 0).await;
        let (me, tenant) = (Arc::clone(self), tenant.to_owned());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                seen = me.poll(&kv, &tenant, seen).await;
            }
        });
    }

    /// Applies the tenant's entry when its revision is newer than `seen`; returns the newest seen.
    async fn poll(&self, kv: &async_nats::jetstream::kv::Store, tenant: &str, seen: u64) -> u64 {
        match kv.entry(tenant).await {
            Ok(Some(e)) if e.revision > seen => {
                match serde_json::from_slice::<Published>(&e.value) {
                    Ok(p) => self.apply(&p),
                    Err(err) => tracing::warn!(error = %err, "published policy does not parse"),
                }
                e.revision
            }
            Ok(_) => seen,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the policy now; trying again");
                seen
            }
        }
    }

    /// Tags `event` in place; a blocked process start is terminated (when enforcing). Events that do
    /// not decode are left as they are for ingest to reject with the reason.
    pub fn tag(&self, id: &Identity, event: &mut Value) {
        let tagger = Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()));
        let now = schemas::time::now_micros();
        let ch = schemas::decode::Channel {
            tenant: id.tenant.as_str(),
            agent: id.agent.as_str(),
            message_key: "edge",
            stream_seq: 0,
            received: now,
        };
        let line = event.to_string();
        let Ok(mut rec) =
            schemas::decode::decode_line(line.as_bytes(), 1, &ch, &schemas::decode::Limits::default())
        else {
            return;
        };
        let found = tagger.tag(&mut rec);
        if found.is_empty() {
            return;
        }
        let Value::Object(obj) = event else { return };
        for c in [col::THREAT_TECHNIQUE_ID, col::THREAT_TACTIC_NAME, col::RULE_NAME, col::POLICY_TIER] {
            let v = match rec.cell(c) {
                schemas::Cell::List(l) => serde_json::json!(l),
                schemas::Cell::Str(s) => serde_json::json!(s),
                _ => continue,
            };
            schemas::record::insert_path(obj, schemas::FIELDS[c].path, v);
        }
        let mut s = self.summary.lock().unwrap_or_else(|e| e.into_inner());
        s.tagged += 1;
        // The same command ingest would send, carried out here without the round trip.
        let Some(mut cmd) =
            found.iter().find_map(|d| correlate::sigma::tagger::terminate_command(&rec, d, now))
        else {
            return;
        };
        s.blocked += 1;
        drop(s);
        if self.enforce {
            cmd.id = format!("edge-{}", cmd.id);
            cmd.reason.push_str(", at the edge");
            let o = enforce::execute(&cmd, now);
            tracing::warn!(pid = o.pid, result = %o.result, "enforcement at the edge");
            self.outcomes.lock().unwrap_or_else(|e| e.into_inner()).push(o);
        }
    }

    /// What the edge did so far.
    pub fn summary(&self) -> EdgeSummary {
        self.summary.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The terminations carried out at the edge.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
