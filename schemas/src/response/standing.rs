//! Standing orders (issue 17 item 3): a defence that stands, such as the policy's `block` tier,
//! signed once by approvers with its scope, cap and expiry. The server may then *trigger* it for an
//! event it matched, without anyone signing again, but cannot widen it: an agent carries out a
//! trigger only within an order it verified itself.
//!
//! An order's body ([`OrderBody`]) names the agents it covers (listed, or the whole tenant, which
//! approvers then see they sign), the ATT&CK techniques it answers (a technique covers its
//! sub-techniques), the one thing it does ([`OrderAction`]: terminate the process that started), a
//! cap per agent per hour and an expiry (at most [`MAX_ORDER_TTL_MICROS`]). Approvers sign its JSON
//! text (domain [`ORDER_DOMAIN`]) with `cordon approve`, as many as the pinned set's threshold.
//!
//! A trigger ([`Trigger`]) is not signed: the agent decides with [`check_trigger`] whether it falls
//! inside an order it holds (the order, this agent, a covered technique, not expired, under the
//! cap, not seen before); the executor then finds the process by pid and start time and checks its
//! executable, so a reused pid is never hit, and the deny-list still applies.

use super::command::{Approval, ApproverSet, CLOCK_SKEW_MICROS, Refusal};
use crate::signed::{SigningKey, verify_detached};
use std::collections::BTreeSet;

/// The signing domain of standing orders.
pub const ORDER_DOMAIN: &str = "cordon.response.standing.v1";
/// The longest an order may stand: 90 days.
pub const MAX_ORDER_TTL_MICROS: i64 = 90 * 24 * 3600 * 1_000_000;
/// The most triggers an order may allow per agent per hour.
pub const MAX_PER_HOUR: u32 = 1000;

/// The agents an order covers.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Agents {
    /// Every agent of the tenant.
    All,
    /// These agents only.
    Only(BTreeSet<String>),
}

/// What an order does when triggered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderAction {
    /// Terminate the process whose start matched (found by pid and start time, executable checked).
    TerminateProcess,
}

/// What approvers sign.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderBody {
    /// The order's id (triggers name it).
    pub id: String,
    /// The tenant.
    pub tenant: String,
    /// Its name.
    pub name: String,
    /// The agents it covers.
    pub agents: Agents,
    /// ATT&CK technique ids it answers (`T1204.002`; `T1204` covers its sub-techniques).
    pub techniques: BTreeSet<String>,
    /// What it does.
    pub action: OrderAction,
    /// Triggers carried out per agent per hour at most.
    pub per_agent_per_hour: u32,
    /// When it was issued (microseconds).
    pub issued_at: i64,
    /// When it stops (microseconds).
    pub expires_at: i64,
    /// Why.
    pub reason: String,
}

/// An order as it travels: the body text and the approvals of it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedOrder {
    /// The [`OrderBody`] as JSON text: the signed bytes.
    pub body: String,
    /// Approvals, one per approver.
    pub approvals: Vec<Approval>,
}

impl SignedOrder {
    /// An order with no approvals yet.
    pub fn new(body: &OrderBody) -> Self {
        Self { body: serde_json::to_string(body).unwrap_or_default(), approvals: Vec::new() }
    }

    /// Adds `key`'s approval.
    pub fn approve(&mut self, key: &SigningKey) {
        let signed = key.sign(ORDER_DOMAIN, self.body.clone());
        self.approvals.push(Approval { key: signed.key, sig: signed.sig });
    }
}

/// Checks an order's body on its own: a known shape, techniques that look like ATT&CK ids, a cap
/// and a validity within bounds.
pub fn check_body(b: &OrderBody) -> Result<(), String> {
    if b.techniques.is_empty() || b.techniques.len() > 256 {
        return Err("an order answers 1 to 256 techniques".into());
    }
    if let Some(t) = b.techniques.iter().find(|t| !is_technique(t)) {
        return Err(format!("{t:?} is not an ATT&CK technique id (T1059, T1059.001)"));
    }
    if let Agents::Only(list) = &b.agents
        && (list.is_empty() || list.len() > 10_000)
    {
        return Err("an order covers 1 to 10,000 listed agents, or all".into());
    }
    if !(1..=MAX_PER_HOUR).contains(&b.per_agent_per_hour) {
        return Err(format!("per_agent_per_hour must be 1 to {MAX_PER_HOUR}"));
    }
    if b.expires_at <= b.issued_at || b.expires_at - b.issued_at > MAX_ORDER_TTL_MICROS {
        return Err(format!("an order stands for at most {} days", MAX_ORDER_TTL_MICROS / 86_400_000_000));
    }
    Ok(())
}

/// `T` and four digits, optionally `.` and three digits.
pub fn is_technique(t: &str) -> bool {
    let (main, sub) = t.split_once('.').map_or((t, None), |(m, s)| (m, Some(s)));
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    main.strip_prefix('T').is_some_and(|d| digits(d, 4)) && sub.is_none_or(|s| digits(s, 3))
}

/// The agent's check of an order it is handed: parses, is for its tenant, covers it, is valid and
/// not expired, and carries at least the set's threshold of distinct approvals by its members (a
/// stranger's or a broken signature refuses it whole).
pub fn verify_order(
    o: &SignedOrder,
    me: &str,
    tenant: &str,
    set: &ApproverSet,
    now: i64,
) -> Result<OrderBody, Refusal> {
    let body: OrderBody = serde_json::from_str(&o.body).map_err(|e| Refusal::Malformed(e.to_string()))?;
    if body.tenant != tenant || !covers(&body.agents, me) {
        return Err(Refusal::NotForMe);
    }
    check_body(&body).map_err(Refusal::BadValidity)?;
    if body.issued_at > now + CLOCK_SKEW_MICROS {
        return Err(Refusal::BadValidity("issued in the future".into()));
    }
    if now > body.expires_at {
        return Err(Refusal::Expired);
    }
    let mut signers = BTreeSet::new();
    for a in &o.approvals {
        let key = a.key.to_ascii_lowercase();
        if !set.keys.contains(&key) {
            return Err(Refusal::UnknownApprover(key));
        }
        verify_detached(ORDER_DOMAIN, &key, &o.body, &a.sig)
            .map_err(|_| Refusal::BadSignature(key.clone()))?;
        signers.insert(key);
    }
    if signers.len() < set.threshold {
        return Err(Refusal::TooFewApprovals { have: signers.len(), need: set.threshold });
    }
    Ok(body)
}

fn covers(agents: &Agents, me: &str) -> bool {
    match agents {
        Agents::All => true,
        Agents::Only(list) => list.contains(me),
    }
}

/// The server's request to carry out an order for one matched event.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// This trigger's id (each is carried out once).
    pub id: String,
    /// The order it invokes.
    pub order: String,
    /// The technique the event matched.
    pub technique: String,
    /// The process: its pid, kernel start time when the sensor knows it, and executable.
    pub pid: i64,
    /// Clock ticks after boot (`/proc/<pid>/stat`), when known.
    #[serde(default)]
    pub start_time: Option<i64>,
    /// The executable the event reported.
    pub executable: String,
    /// The event that matched.
    pub event_id: String,
    /// The rule that matched and why it blocks.
    pub reason: String,
    /// When the server sent it (microseconds).
    pub issued_at: i64,
}

/// Why an agent refused a trigger.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "refusal", content = "detail")]
pub enum TriggerRefusal {
    /// No order with that id is held (never approved, withdrawn, or not for this agent).
    #[error("no standing order {0} is held by this agent")]
    NoSuchOrder(String),
    /// The technique is outside the order.
    #[error("technique {0} is outside the order")]
    OutsideScope(String),
    /// The order has expired.
    #[error("the order expired")]
    Expired,
    /// The order's cap for this hour is reached.
    #[error("the order's cap of {0} per hour is reached")]
    OverCap(u32),
    /// Seen before.
    #[error("trigger {0} was already handled")]
    Replayed(String),
    /// Too old to act on (the process it names may be gone and its pid reused).
    #[error("the trigger is {0} s old")]
    Stale(i64),
}

/// How long after the server sent it a trigger is still acted on.
pub const TRIGGER_TTL_MICROS: i64 = 5 * 60 * 1_000_000;

/// Whether `t` falls inside `order` (found by the caller among the orders it holds), given the
/// triggers of that order carried out in the last hour and whether this trigger id was seen.
pub fn check_trigger(
    order: Option<&OrderBody>,
    t: &Trigger,
    fired_last_hour: usize,
    seen: bool,
    now: i64,
) -> Result<(), TriggerRefusal> {
    let order = order.ok_or_else(|| TriggerRefusal::NoSuchOrder(t.order.clone()))?;
    if seen {
        return Err(TriggerRefusal::Replayed(t.id.clone()));
    }
    if now > order.expires_at {
        return Err(TriggerRefusal::Expired);
    }
    if now - t.issued_at > TRIGGER_TTL_MICROS {
        return Err(TriggerRefusal::Stale((now - t.issued_at) / 1_000_000));
    }
    let covered =
        order.techniques.iter().any(|o| t.technique == *o || t.technique.starts_with(&format!("{o}.")));
    if !covered {
        return Err(TriggerRefusal::OutsideScope(t.technique.clone()));
    }
    if fired_last_hour >= order.per_agent_per_hour as usize {
        return Err(TriggerRefusal::OverCap(order.per_agent_per_hour));
    }
    Ok(())
}

#[cfg(test)]
#[path = "standing_tests.rs"]
mod tests;
