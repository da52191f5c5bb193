//! Response commands to agents, by request and reply like the policy (ADR 0007): an agent asks on
//! `<prefix>.<tenant>.<agent>.orders` for its approved commands and hands in each signed result on
//! `.result`. The subject, which the agent's credential pins, says who asks; the answer holds only
//! that agent's commands, exactly as its approvers signed them. Results count only when they verify
//! with the key the agent enrolled with.

use super::Ingest;
use schemas::response::approvers::SignedSetChange;
use schemas::response::command::{Approval, ResultBody, SignedCommand, SignedResult, verify_result};
use schemas::response::standing::{Agents, OrderBody, SignedOrder};
use serde_json::json;

const HELP_RESULTS: &str = "Response results handed in by agents, by outcome (refused: not stored).";

impl Ingest {
    /// The agent's approved, unexpired commands it has not reported on (`commands`, signed
    /// commands; none when the catalog cannot be read: the agent asks again) and the tenant's
    /// adopted approver-set changes (`approver_sets`).
    pub(crate) async fn orders(&self, tenant: &str, agent: &str) -> Vec<u8> {
        let now = schemas::time::now_micros();
        let rows = match self.store.catalog().orders_for(tenant, agent, now).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, tenant, agent, "cannot read an agent's response orders");
                return br#"{"commands": [], "approver_sets": []}"#.to_vec();
            }
        };
        let orders: Vec<SignedCommand> = rows
            .into_iter()
            .map(|r| SignedCommand {
                body: r.body,
                approvals: r.approvals.into_iter().map(Approval::from).collect(),
            })
            .collect();
        if !orders.is_empty() {
            tracing::info!(tenant, agent, commands = orders.len(), "response commands handed to an agent");
        }
        let sets = self.adopted_sets(tenant).await;
        let standing = self.standing_for(tenant, agent, now).await;
        serde_json::to_vec(&json!({"commands": orders, "approver_sets": sets, "standing": standing}))
            .unwrap_or_default()
    }

    /// The tenant's active standing orders whose text covers `agent`, as signed (the agent checks
    /// the signatures and the scope itself; an order it no longer receives it drops).
    async fn standing_for(&self, tenant: &str, agent: &str, now: i64) -> Option<Vec<SignedOrder>> {
        let rows = match self.store.catalog().active_orders(tenant, now).await {
            Ok(rows) => rows,
            Err(e) => {
                // None: the agent keeps the orders it holds rather than dropping them on an error.
                tracing::warn!(error = %e, tenant, "cannot read the standing orders");
                return None;
            }
        };
        let covers = |body: &str| {
            serde_json::from_str::<OrderBody>(body).is_ok_and(|b| match b.agents {
                Agents::All => true,
                Agents::Only(list) => list.contains(agent),
            })
        };
        Some(
            rows.into_iter()
                .filter(|o| covers(&o.body))
                .map(|o| SignedOrder {
                    body: o.body,
                    approvals: o.approvals.into_iter().map(Approval::from).collect(),
                })
                .collect(),
        )
    }

    /// The tenant's adopted approver-set changes, in version order, for agents to apply to the set
    /// they hold (each checks the signatures against its own).
    async fn adopted_sets(&self, tenant: &str) -> Vec<SignedSetChange> {
        match self.store.catalog().set_changes(tenant).await {
            Ok(all) => all
                .into_iter()
                .filter(|c| c.adopted_at.is_some())
                .map(|c| SignedSetChange {
                    body: c.body,
                    approvals: c.approvals.into_iter().map(Approval::from).collect(),
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, tenant, "cannot read the approver-set changes");
                Vec::new()
            }
        }
    }

    /// Verifies and stores an agent's signed result; the answer is `{"stored": bool}` or
    /// `{"error": why}`.
    pub(crate) async fn result(&self, tenant: &str, agent: &str, payload: &[u8]) -> Vec<u8> {
        let answer = match self.store_result(tenant, agent, payload).await {
            Ok(stored) => json!({ "stored": stored }),
            Err(why) => {
                tracing::warn!(tenant, agent, %why, "response result refused");
                self.metrics.add("cordon_response_results_total", "outcome=\"refused\"", HELP_RESULTS, 1);
                json!({ "error": why })
            }
        };
        answer.to_string().into_bytes()
    }

    /// A verified result in the audit chain, beside the request and its approvals.
    async fn audit_result(&self, tenant: &str, agent: &str, body: &ResultBody, stored: bool, now: i64) {
        let rec = store::catalog::AuditRecord {
            tenant: tenant.to_owned(),
            actor: format!("agent:{agent}"),
            action: "response.result".to_owned(),
            target: match body.command.strip_prefix("trigger:") {
                Some(_) => body.command.clone(),
                None => format!("request:{}", body.command),
            },
            detail: json!({"outcome": body.outcome, "detail": body.detail, "stored": stored, "at": body.at}),
        };
        if let Err(e) = self.store.catalog().audit(&rec, now).await {
            tracing::error!(error = %e, tenant, agent, "could not write a response result to the audit chain");
        }
    }

    async fn store_result(&self, tenant: &str, agent: &str, payload: &[u8]) -> Result<bool, String> {
        let result: SignedResult = serde_json::from_slice(payload).map_err(|e| format!("result: {e}"))?;
        let catalog = self.store.catalog();
        let key = catalog.agent_public_key(tenant, agent).await.map_err(|e| e.to_string())?;
        let key = key.ok_or_else(|| format!("{agent} is not an enrolled agent: it cannot sign results"))?;
        let body = verify_result(&result, agent, &key)?;
        let now = schemas::time::now_micros();
        let stored = match body.command.strip_prefix("trigger:") {
            Some(id) => {
                catalog.trigger_result(tenant, id, agent, &body.outcome, (&result.body, &result.sig)).await
            }
            None => {
                catalog
                    .record_result(
                        tenant,
                        agent,
                        &body.command,
                        &body.outcome,
                        &result.body,
                        &result.sig,
                        now,
                    )
                    .await
            }
        }
        .map_err(|e| e.to_string())?;
        self.audit_result(tenant, agent, &body, stored, now).await;
        let label = format!("outcome=\"{}\"", body.outcome);
        self.metrics.add("cordon_response_results_total", &label, HELP_RESULTS, 1);
        tracing::info!(tenant, agent, command = %body.command, outcome = %body.outcome, stored, "response result");
        Ok(stored)
    }
}
