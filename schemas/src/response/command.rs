//! Response commands: what approvers sign and agents verify (issue 17 item 3). The server only
//! relays them: it holds no key that can make an agent act.
//!
//! A command's body ([`CommandBody`]) names the rule, the explicit target agents each with that
//! agent's next counter, an expiry (at most [`MAX_TTL_MICROS`] after issue), a nonce and the reason.
//! Its JSON text is what is signed and what travels ([`SignedCommand::body`]), so nobody has to
//! agree on a canonical serialisation: an agent parses the very bytes the approvers signed. Each
//! approver signs `COMMAND_DOMAIN || 0 || body` with an Ed25519 key that stays on their machine.
//!
//! [`verify`] is the agent's whole decision. It refuses, with a [`Refusal`] it reports back:
//! a body that does not parse, a command not addressed to it, a signature by a key outside the
//! approver set it pinned (a revoked approver included) or one that does not verify, fewer distinct
//! approvers than the rule needs (two for anything destructive, or the set's threshold if higher;
//! one otherwise), an expired or over-long command, a nonce it has seen, and a counter not above
//! the last one it accepted. Only an accepted command changes its [`ReplayGuard`], which the agent
//! keeps on disk across restarts.

use super::{FieldError, Rule, parse};
use crate::signed::{SigningKey, check_public_key, verify_detached};
use std::collections::{BTreeMap, BTreeSet};

/// The signing domain of response commands.
pub const COMMAND_DOMAIN: &str = "cordon.response.command.v1";
/// The longest a command may live: 15 minutes.
pub const MAX_TTL_MICROS: i64 = 15 * 60 * 1_000_000;
/// How far an agent's clock may trail the approvers'.
pub const CLOCK_SKEW_MICROS: i64 = 60 * 1_000_000;
/// Destructive rules need at least this many distinct approvers.
pub const MIN_DESTRUCTIVE_APPROVALS: usize = 2;

/// What approvers sign.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandBody {
    /// The command id (results refer to it).
    pub id: String,
    /// The tenant.
    pub tenant: String,
    /// The rule, as [`Rule::to_json`] writes it.
    pub rule: serde_json::Value,
    /// Every target agent, with the counter this command carries for it.
    pub targets: BTreeMap<String, u64>,
    /// When it was issued (microseconds).
    pub issued_at: i64,
    /// When it stops being valid (microseconds).
    pub expires_at: i64,
    /// A random value no other command carries.
    pub nonce: String,
    /// Why.
    pub reason: String,
}

/// One approver's signature.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The approver's public key (hex).
    pub key: String,
    /// Ed25519 over the domain and the body text (hex).
    pub sig: String,
}

/// A command as it travels: the body text and the approvals of it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCommand {
    /// The [`CommandBody`] as JSON text: the signed bytes.
    pub body: String,
    /// Approvals, one per approver.
    pub approvals: Vec<Approval>,
}

impl SignedCommand {
    /// A command with no approvals yet.
    pub fn new(body: &CommandBody) -> Self {
        Self { body: serde_json::to_string(body).unwrap_or_default(), approvals: Vec::new() }
    }

    /// Adds `key`'s approval (what `cordon approve` does on the approver's machine).
    pub fn approve(&mut self, key: &SigningKey) {
        let signed = key.sign(COMMAND_DOMAIN, self.body.clone());
        self.approvals.push(Approval { key: signed.key, sig: signed.sig });
    }
}

/// The approvers an agent trusts: pinned at enrollment.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApproverSet {
    /// Public keys (hex).
    pub keys: BTreeSet<String>,
    /// Distinct approvals a destructive rule needs (at least [`MIN_DESTRUCTIVE_APPROVALS`]).
    pub threshold: usize,
    /// Its version: 0 as registered at enrollment, then each change the set itself signed
    /// ([`super::approvers`]).
    #[serde(default)]
    pub version: u64,
}

impl ApproverSet {
    /// A set of `keys` needing `threshold` approvals for destructive rules; keys must be Ed25519
    /// public keys in hex.
    pub fn new(keys: impl IntoIterator<Item = String>, threshold: usize) -> Result<Self, String> {
        let keys: BTreeSet<String> = keys.into_iter().map(|k| k.to_ascii_lowercase()).collect();
        for k in &keys {
            check_public_key(k).map_err(|e| e.to_string())?;
        }
        let threshold = threshold.max(MIN_DESTRUCTIVE_APPROVALS);
        if keys.len() < threshold {
            return Err(format!("{} approvers cannot meet a threshold of {threshold}", keys.len()));
        }
        Ok(Self { keys, threshold, version: 0 })
    }
}

/// What an agent remembers of the commands it accepted, across restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplayGuard {
    /// The highest counter accepted.
    pub last_counter: u64,
    /// Nonces accepted, with their commands' expiry (forgotten once expired: an expired command
    /// is refused anyway).
    pub nonces: BTreeMap<String, i64>,
}

/// Why an agent refused a command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "refusal", content = "detail")]
pub enum Refusal {
    /// The body is not a command.
    #[error("malformed command: {0}")]
    Malformed(String),
    /// The rule inside is not a valid rule.
    #[error("the rule is invalid: {0:?}")]
    InvalidRule(Vec<FieldError>),
    /// This agent is not among the targets.
    #[error("not addressed to this agent")]
    NotForMe,
    /// Signed by a key outside the pinned approver set (or a revoked approver).
    #[error("signed by {0}, not an approver this agent trusts")]
    UnknownApprover(String),
    /// A signature that does not verify over the body.
    #[error("the signature by {0} does not match the command")]
    BadSignature(String),
    /// Fewer distinct approvers than the rule needs.
    #[error("{have} distinct approvals; this rule needs {need}")]
    TooFewApprovals {
        /// Distinct valid approvals.
        have: usize,
        /// Needed.
        need: usize,
    },
    /// Past its expiry.
    #[error("expired")]
    Expired,
    /// Issued in the future, or valid for longer than allowed.
    #[error("validity {0}")]
    BadValidity(String),
    /// A nonce already accepted.
    #[error("replayed: nonce already used")]
    Replayed,
    /// A counter not above the last accepted.
    #[error("counter {got} is not above the last accepted {last}")]
    StaleCounter {
        /// The command's counter for this agent.
        got: u64,
        /// The last accepted.
        last: u64,
    },
}

/// The agent's decision on `cmd` (the module doc lists the checks). On acceptance `guard` records
/// the nonce and the counter; on refusal it is unchanged.
pub fn verify(
    cmd: &SignedCommand,
    me: &str,
    set: &ApproverSet,
    guard: &mut ReplayGuard,
    now: i64,
) -> Result<(CommandBody, Rule), Refusal> {
    let body: CommandBody = serde_json::from_str(&cmd.body).map_err(|e| Refusal::Malformed(e.to_string()))?;
    let counter = *body.targets.get(me).ok_or(Refusal::NotForMe)?;
    let approvers = approvers(cmd, set)?;
    let rule = parse(&body.rule).map_err(Refusal::InvalidRule)?;
    let need = if rule.is_destructive() { set.threshold.max(MIN_DESTRUCTIVE_APPROVALS) } else { 1 };
    if approvers < need {
        return Err(Refusal::TooFewApprovals { have: approvers, need });
    }
    if now > body.expires_at {
        return Err(Refusal::Expired);
    }
    if body.issued_at > now + CLOCK_SKEW_MICROS || body.expires_at - body.issued_at > MAX_TTL_MICROS {
        return Err(Refusal::BadValidity(format!(
            "issued {} s from now, valid {} s (at most {} s)",
            (body.issued_at - now) / 1_000_000,
            (body.expires_at - body.issued_at) / 1_000_000,
            MAX_TTL_MICROS / 1_000_000
        )));
    }
    if guard.nonces.contains_key(&body.nonce) {
        return Err(Refusal::Replayed);
    }
    if counter <= guard.last_counter {
        return Err(Refusal::StaleCounter { got: counter, last: guard.last_counter });
    }
    guard.nonces.retain(|_, exp| *exp >= now);
    guard.nonces.insert(body.nonce.clone(), body.expires_at);
    guard.last_counter = counter;
    Ok((body, rule))
}

/// Distinct approvers whose signatures verify; any signature by a stranger or that does not
/// verify refuses the whole command (it was tampered with, or someone tried).
fn approvers(cmd: &SignedCommand, set: &ApproverSet) -> Result<usize, Refusal> {
    let mut seen = BTreeSet::new();
    for a in &cmd.approvals {
        let key = a.key.to_ascii_lowercase();
        if !set.keys.contains(&key) {
            return Err(Refusal::UnknownApprover(key));
        }
        verify_detached(COMMAND_DOMAIN, &key, &cmd.body, &a.sig)
            .map_err(|_| Refusal::BadSignature(key.clone()))?;
        seen.insert(key);
    }
    Ok(seen.len())
}

/// The signing domain of agents' results.
pub const RESULT_DOMAIN: &str = "cordon.response.result.v1";

/// What an agent reports about one command, signed with its own key.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultBody {
    /// The command id.
    pub command: String,
    /// The reporting agent.
    pub agent: String,
    /// `executed` (every action done and verified), `failed` (some action failed or did not
    /// verify) or `refused` (the command was not carried out).
    pub outcome: String,
    /// Why it was refused, or a summary.
    pub detail: String,
    /// Per action: what was touched and verified (the executor's results).
    pub actions: serde_json::Value,
    /// When (microseconds).
    pub at: i64,
}

/// A result as it travels: the body text and the agent's signature (hex) over the domain and it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedResult {
    /// The [`ResultBody`] as JSON text.
    pub body: String,
    /// The agent's Ed25519 signature, hex.
    pub sig: String,
}

/// The outcomes a result may report.
pub const OUTCOMES: [&str; 3] = ["executed", "failed", "refused"];

/// Checks `result` against the agent's enrolled `public_key`; its body when the signature holds,
/// the outcome is known and it names `agent`.
pub fn verify_result(result: &SignedResult, agent: &str, public_key: &str) -> Result<ResultBody, String> {
    verify_detached(RESULT_DOMAIN, public_key, &result.body, &result.sig)
        .map_err(|_| "the result's signature does not verify with the agent's key".to_owned())?;
    let body: ResultBody = serde_json::from_str(&result.body).map_err(|e| format!("result body: {e}"))?;
    if body.agent != agent {
        return Err(format!("the result names agent {} but came from {agent}", body.agent));
    }
    if !OUTCOMES.contains(&body.outcome.as_str()) {
        return Err(format!("unknown outcome {:?}", body.outcome));
    }
    Ok(body)
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
