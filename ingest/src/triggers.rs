//! The policy's `block` tier as standing orders (issue 17): for a process start the policy blocks,
//! the server looks for an active standing order of the tenant that covers the agent and one of
//! the detection's techniques, records a trigger within it and pushes it to the agent's command
//! subject (core NATS: an offline agent misses it, as it would miss the process). Without such an
//! order nothing is sent: the block is an alert until approvers sign one. The server cannot widen
//! an order; the agent checks every trigger against the order text it verified itself.

use super::Ingest;
use schemas::response::standing::{Agents, OrderBody, Trigger};
use schemas::subject::SubjectKind;

const HELP_TRIGGERS: &str =
    "Triggers of standing orders sent to agents for process starts the policy blocks.";
const HELP_UNORDERED: &str =
    "Blocked process starts no active standing order covers (alerted, nothing sent).";

/// A block the batch found: the tenant, the agent, the process and the detection's techniques.
#[derive(Debug)]
pub(crate) struct Block {
    pub tenant: String,
    pub agent: String,
    pub command: schemas::wire::Command,
    pub techniques: Vec<String>,
}

/// The first order that covers `agent` and one of `techniques`; the order's id and the technique.
fn covering(orders: &[OrderBody], agent: &str, techniques: &[String]) -> Option<(String, String)> {
    orders.iter().find_map(|o| {
        let mine = match &o.agents {
            Agents::All => true,
            Agents::Only(list) => list.contains(agent),
        };
        let t = techniques
            .iter()
            .map(|t| t.to_ascii_uppercase())
            .find(|t| o.techniques.iter().any(|s| t == s || t.starts_with(&format!("{s}."))))?;
        mine.then(|| (o.id.clone(), t))
    })
}

impl Ingest {
    /// Sends a trigger for each block an active standing order covers.
    pub(crate) async fn send_triggers(&self, blocks: &[Block]) {
        let now = schemas::time::now_micros();
        let mut orders: std::collections::HashMap<String, Vec<OrderBody>> = Default::default();
        for b in blocks {
            if !orders.contains_key(&b.tenant) {
                let active = self.store.catalog().active_orders(&b.tenant, now).await.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, tenant = %b.tenant, "cannot read the standing orders; no triggers sent");
                    Vec::new()
                });
                let bodies = active.iter().filter_map(|o| serde_json::from_str(&o.body).ok()).collect();
                orders.insert(b.tenant.clone(), bodies);
            }
            let Some((order, technique)) = covering(&orders[&b.tenant], &b.agent, &b.techniques) else {
                self.metrics.add("cordon_block_unordered_total", "", HELP_UNORDERED, 1);
                tracing::info!(tenant = %b.tenant, agent = %b.agent, pid = b.command.pid, "blocked, but no standing order covers it: alert only");
                continue;
            };
            self.send_trigger(b, order, technique, now).await;
        }
    }

    async fn send_trigger(&self, b: &Block, order: String, technique: String, now: i64) {
        let t = Trigger {
            id: uuid::Uuid::new_v4().simple().to_string(),
            order,
            technique,
            pid: b.command.pid,
            start_time: None,
            executable: b.command.executable.clone(),
            event_id: b.command.event_id.clone(),
            reason: b.command.reason.clone(),
            issued_at: now,
        };
        let (Ok(tenant), Ok(agent)) =
            (schemas::TenantId::new(b.tenant.clone()), schemas::AgentId::new(b.agent.clone()))
        else {
            return;
        };
        let row = store::catalog::TriggerRow {
            id: t.id.clone(),
            order_id: t.order.clone(),
            agent: b.agent.clone(),
            technique: t.technique.clone(),
            event_id: t.event_id.clone(),
            sent_at: now,
            outcome: None,
            result_body: None,
            result_sig: None,
        };
        if let Err(e) = self.store.catalog().record_trigger(&b.tenant, &row).await {
            tracing::warn!(error = %e, "cannot record a trigger; not sending it");
            return;
        }
        let subject = self.cfg.subjects.subject(&tenant, &agent, SubjectKind::Command);
        let body = serde_json::to_vec(&t).unwrap_or_default();
        match self.client.publish(subject, body.into()).await {
            Ok(()) => self.metrics.add("cordon_block_triggers_total", "", HELP_TRIGGERS, 1),
            Err(e) => tracing::warn!(error = %e, agent = %b.agent, "could not send a trigger"),
        }
    }
}
