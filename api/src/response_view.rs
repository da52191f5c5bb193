//! The response layer's other answers, typed: approvers, settings, approver-set changes, standing
//! orders and a checked rule. (Requests are in [`crate::requests_view`].)

use schemas::response::standing::{Agents, OrderBody};
use serde::Serialize;
use std::collections::BTreeMap;
use store::catalog::{OrderRow, SetChangeRow, TriggerRow};

/// An approver's key and signature over a body `cordon approve` signed.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct KeySig {
    key: String,
    sig: String,
}

/// A signed file: the body text and the approvals of it (what `cordon approve` reads and writes).
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Signed {
    body: String,
    approvals: Vec<KeySig>,
}

/// An approver: a public key bound to the token that hands in its approvals.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct ApproverView {
    pub public_key: String,
    pub name: String,
    pub owner_token: String,
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub added_at: i64,
    #[serde(with = "schemas::time::rfc3339_opt")]
    #[schemars(with = "Option<schemas::time::Rfc3339>")]
    pub revoked_at: Option<i64>,
}

/// `GET /api/v1/response/approvers`.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Approvers {
    pub approvers: Vec<ApproverView>,
}

/// `DELETE /api/v1/response/approvers/{key}`.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct ApproverRevoked {
    pub public_key: String,
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub revoked_at: i64,
}

/// The tenant's response settings.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct SettingsView {
    /// No response action is dispatched while on.
    pub lockdown: bool,
    /// Approvals a destructive request needs.
    pub approvals_needed: i64,
    /// Targets one destructive request may name at most.
    pub max_destructive_targets: i64,
    /// Whether rules may run scripts.
    pub scripts: bool,
}

/// An approver-set change; `change` is the file `cordon approve` signs.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct SetChangeView {
    version: i64,
    /// `proposed` or `adopted`.
    state: &'static str,
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    created_at: i64,
    #[serde(with = "schemas::time::rfc3339_opt")]
    #[schemars(with = "Option<schemas::time::Rfc3339>")]
    adopted_at: Option<i64>,
    change: Signed,
}

impl SetChangeView {
    pub(crate) fn of(c: &SetChangeRow) -> Self {
        SetChangeView {
            version: c.version,
            state: if c.adopted_at.is_some() { "adopted" } else { "proposed" },
            created_at: c.created_at,
            adopted_at: c.adopted_at,
            change: Signed {
                body: c.body.clone(),
                approvals: c
                    .approvals
                    .iter()
                    .map(|a| KeySig { key: a.public_key.clone(), sig: a.sig.clone() })
                    .collect(),
            },
        }
    }
}

/// `GET /api/v1/response/approver-sets`: oldest first.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct SetChanges {
    pub changes: Vec<SetChangeView>,
}

/// The approver set an agent pins at enrollment.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct PinnedSet {
    pub keys: Vec<String>,
    pub threshold: usize,
    /// The adopted change it comes from (0: the registered keys, none adopted yet).
    pub version: u64,
}

/// A trigger sent within a standing order, with the result the agent signed.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct TriggerView {
    id: String,
    agent: String,
    technique: String,
    event_id: String,
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    sent_at: i64,
    outcome: Option<String>,
    /// The signed result, parsed (null until it arrives).
    result: serde_json::Value,
    result_body: Option<String>,
    result_sig: Option<String>,
}

impl TriggerView {
    pub(crate) fn of(t: &TriggerRow) -> Self {
        TriggerView {
            id: t.id.clone(),
            agent: t.agent.clone(),
            technique: t.technique.clone(),
            event_id: t.event_id.clone(),
            sent_at: t.sent_at,
            outcome: t.outcome.clone(),
            result: t.result_body.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or_default(),
            result_body: t.result_body.clone(),
            result_sig: t.result_sig.clone(),
        }
    }
}

/// A standing order; `order` is the file `cordon approve` signs.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct OrderView {
    id: String,
    /// `proposed`, `active`, `withdrawn` or `expired`.
    state: &'static str,
    name: String,
    techniques: Vec<String>,
    agents: Agents,
    per_agent_per_hour: u32,
    created_by: String,
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    created_at: i64,
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    expires_at: i64,
    approvals_needed: i64,
    /// Approvals handed in.
    approvals: usize,
    #[serde(with = "schemas::time::rfc3339_opt")]
    #[schemars(with = "Option<schemas::time::Rfc3339>")]
    active_at: Option<i64>,
    #[serde(with = "schemas::time::rfc3339_opt")]
    #[schemars(with = "Option<schemas::time::Rfc3339>")]
    withdrawn_at: Option<i64>,
    order: Signed,
    /// The triggers sent within it (one order's page only).
    #[serde(skip_serializing_if = "Option::is_none")]
    triggers: Option<Vec<TriggerView>>,
}

impl OrderView {
    /// The order at `now`. Its body was checked when it was stored.
    pub(crate) fn of(o: &OrderRow, now: i64) -> Self {
        let body: Option<OrderBody> = serde_json::from_str(&o.body).ok();
        OrderView {
            id: o.id.clone(),
            state: o.state(now),
            name: body.as_ref().map(|b| b.name.clone()).unwrap_or_default(),
            techniques: body.as_ref().map(|b| b.techniques.iter().cloned().collect()).unwrap_or_default(),
            agents: body.as_ref().map_or(Agents::Only(Default::default()), |b| b.agents.clone()),
            per_agent_per_hour: body.as_ref().map_or(0, |b| b.per_agent_per_hour),
            created_by: o.created_by.clone(),
            created_at: o.created_at,
            expires_at: o.expires_at,
            approvals_needed: o.needed,
            approvals: o.approvals.len(),
            active_at: o.active_at,
            withdrawn_at: o.withdrawn_at,
            order: Signed {
                body: o.body.clone(),
                approvals: o
                    .approvals
                    .iter()
                    .map(|a| KeySig { key: a.public_key.clone(), sig: a.sig.clone() })
                    .collect(),
            },
            triggers: None,
        }
    }

    /// With the triggers sent within it.
    pub(crate) fn with_triggers(mut self, triggers: &[TriggerRow]) -> Self {
        self.triggers = Some(triggers.iter().map(TriggerView::of).collect());
        self
    }
}

/// `GET /api/v1/response/standing`: newest first.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Orders {
    pub orders: Vec<OrderView>,
}

/// `POST /api/v1/response/validate`: the rule as Cordon reads it and what it would do per platform.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Validated {
    #[schemars(schema_with = "crate::openapi::response_rule")]
    pub rule: serde_json::Value,
    pub destructive: bool,
    pub plan: BTreeMap<String, Vec<schemas::response::Step>>,
}
