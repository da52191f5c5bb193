//! Response requests as the API shows them: typed, so the OpenAPI document describes them.

use std::collections::BTreeMap;
use store::catalog::{RequestRow, TargetRow};

/// A request: its state and phase, approvals, the command approvers sign, and each target's
/// delivery and result.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct RequestView {
    id: String,
    /// As stored: requested, approved, cancelled or expired.
    state: String,
    /// Where it is in its life (see `phase`).
    phase: &'static str,
    destructive: bool,
    approvals_needed: i64,
    approvals: Vec<ApprovalView>,
    /// The requester's token id.
    requested_by: String,
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    requested_at: i64,
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    updated_at: i64,
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    expires_at: i64,
    /// The form `cordon approve` signs: the body text and the approvals so far.
    command: CommandView,
    targets: Vec<TargetView>,
    /// Targets per delivery state.
    progress: BTreeMap<&'static str, usize>,
}

/// One approval handed in.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct ApprovalView {
    public_key: String,
    /// The token that handed it in.
    by_token: String,
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    at: i64,
}

/// The signed command.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct CommandView {
    body: String,
    approvals: Vec<KeySig>,
}

/// An approver's key and signature over the body.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct KeySig {
    key: String,
    sig: String,
}

/// A target's delivery and its signed result (the body parsed, the signature kept for checking).
#[derive(serde::Serialize, schemars::JsonSchema)]
struct TargetView {
    agent: String,
    counter: i64,
    state: String,
    #[serde(with = "schemas::time::rfc3339_opt")]
    #[schemars(with = "Option<schemas::time::Rfc3339>")]
    delivered_at: Option<i64>,
    result: Option<serde_json::Value>,
    result_body: Option<String>,
    result_sig: Option<String>,
    #[serde(with = "schemas::time::rfc3339_opt")]
    #[schemars(with = "Option<schemas::time::Rfc3339>")]
    result_at: Option<i64>,
}

/// `GET /api/v1/response/requests`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct RequestList {
    pub(crate) requests: Vec<RequestView>,
}

/// Where a request is in its life, from its stored state and its targets: `requested`, `approved`
/// (no agent has fetched it), `delivered` (some have, not all reported), then once every target
/// reported `executed` (all carried out and verified), `failed` (some action failed on some agent)
/// or `refused` (some agent refused it); `cancelled` and `expired` as stored.
fn phase(r: &RequestRow) -> &'static str {
    let reported = |t: &TargetRow| matches!(t.state.as_str(), "executed" | "failed" | "refused");
    let any = |state: &str| r.targets.iter().any(|t| t.state == state);
    match r.state.as_str() {
        "requested" => "requested",
        "cancelled" => "cancelled",
        "expired" if !r.targets.iter().any(reported) => "expired",
        _ if !r.targets.is_empty() && r.targets.iter().all(reported) => {
            if any("failed") {
                "failed"
            } else if any("refused") {
                "refused"
            } else {
                "executed"
            }
        }
        _ if r.targets.iter().any(|t| t.state != "pending") => "delivered",
        "expired" => "expired",
        _ => "approved",
    }
}

fn target(t: &TargetRow) -> TargetView {
    TargetView {
        agent: t.agent.clone(),
        counter: t.counter,
        state: t.state.clone(),
        delivered_at: t.delivered_at,
        result: t.result.as_deref().map(|b| serde_json::from_str(b).unwrap_or(serde_json::Value::Null)),
        result_body: t.result.clone(),
        result_sig: t.result_sig.clone(),
        result_at: t.result_at,
    }
}

impl RequestView {
    pub(crate) fn of(r: &RequestRow) -> Self {
        let mut progress = BTreeMap::new();
        for state in ["pending", "delivered", "executed", "failed", "refused"] {
            progress.insert(state, r.targets.iter().filter(|t| t.state == state).count());
        }
        RequestView {
            id: r.id.clone(),
            state: r.state.clone(),
            phase: phase(r),
            destructive: r.destructive,
            approvals_needed: r.needed,
            approvals: r
                .approvals
                .iter()
                .map(|a| ApprovalView {
                    public_key: a.public_key.clone(),
                    by_token: a.by_token.clone(),
                    at: a.at,
                })
                .collect(),
            requested_by: r.requested_by.clone(),
            requested_at: r.requested_at,
            updated_at: r.updated_at,
            expires_at: r.expires_at,
            command: CommandView {
                body: r.body.clone(),
                approvals: r
                    .approvals
                    .iter()
                    .map(|a| KeySig { key: a.public_key.clone(), sig: a.sig.clone() })
                    .collect(),
            },
            targets: r.targets.iter().map(target).collect(),
            progress,
        }
    }
}
