//! Changing the approver set an agent trusts (issue 17 item 3): agents pin the set when they
//! enroll and accept a new one only when enough of the set they hold signed it. The server
//! proposes a change (the keys an admin registered) and relays the approvals; it cannot add a key
//! of its own, because no agent takes a set that its current approvers did not sign.
//!
//! A change names the tenant, the next version, the new keys and threshold. Its JSON text is what
//! approvers sign (domain [`SET_DOMAIN`]) with `cordon approve`, like a command.

use super::command::{Approval, ApproverSet};
use crate::signed::{SigningKey, verify_detached};
use std::collections::BTreeSet;

/// The signing domain of approver-set changes.
pub const SET_DOMAIN: &str = "cordon.response.approvers.v1";

/// What approvers sign to change the set.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetChange {
    /// The tenant.
    pub tenant: String,
    /// The set's new version (one above the one it replaces).
    pub version: u64,
    /// The new set's public keys (hex).
    pub keys: BTreeSet<String>,
    /// The new set's threshold for destructive commands.
    pub threshold: usize,
    /// When it was proposed (microseconds).
    pub issued_at: i64,
}

/// A change as it travels: the body text and approvals by members of the set it replaces.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedSetChange {
    /// The [`SetChange`] as JSON text.
    pub body: String,
    /// Approvals by the current set's members.
    pub approvals: Vec<Approval>,
}

impl SignedSetChange {
    /// A change with no approvals yet.
    pub fn new(change: &SetChange) -> Self {
        Self { body: serde_json::to_string(change).unwrap_or_default(), approvals: Vec::new() }
    }

    /// Adds `key`'s approval.
    pub fn approve(&mut self, key: &SigningKey) {
        let signed = key.sign(SET_DOMAIN, self.body.clone());
        self.approvals.push(Approval { key: signed.key, sig: signed.sig });
    }
}

/// The set `change` makes of `current` for `tenant`: refused unless it is the next version, for
/// this tenant, a valid set, and approved by at least `current.threshold` distinct members of
/// `current`. Approvals by others do not count; a member's signature that does not verify refuses
/// the change whole (its text was edited after signing).
pub fn apply(current: &ApproverSet, change: &SignedSetChange, tenant: &str) -> Result<ApproverSet, String> {
    let body: SetChange = serde_json::from_str(&change.body).map_err(|e| format!("set change: {e}"))?;
    if body.tenant != tenant {
        return Err(format!("the change is for tenant {}, not {tenant}", body.tenant));
    }
    if body.version != current.version + 1 {
        return Err(format!("version {} does not follow {}", body.version, current.version));
    }
    let mut signers = BTreeSet::new();
    for a in &change.approvals {
        let key = a.key.to_ascii_lowercase();
        if !current.keys.contains(&key) {
            continue;
        }
        verify_detached(SET_DOMAIN, &key, &change.body, &a.sig)
            .map_err(|_| format!("the signature by {key} does not match the change"))?;
        signers.insert(key);
    }
    if signers.len() < current.threshold {
        return Err(format!("{} of the current set signed; {} must", signers.len(), current.threshold));
    }
    let mut next = ApproverSet::new(body.keys, body.threshold)?;
    next.version = body.version;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<SigningKey> {
        (0..n).map(|_| SigningKey::generate().unwrap().0).collect()
    }

    fn set(of: &[SigningKey]) -> ApproverSet {
        ApproverSet::new(of.iter().map(SigningKey::public), 2).unwrap()
    }

    fn change(to: &[SigningKey], version: u64) -> SignedSetChange {
        SignedSetChange::new(&SetChange {
            tenant: "default".into(),
            version,
            keys: to.iter().map(SigningKey::public).collect(),
            threshold: 2,
            issued_at: 0,
        })
    }

    #[test]
    fn only_the_current_set_can_change_itself() {
        let (old, new) = (keys(2), keys(3));
        let current = set(&old);
        let mut c = change(&new, 1);
        c.approve(&old[0]);
        assert!(apply(&current, &c, "default").unwrap_err().contains("1 of the current set signed"));
        c.approve(&old[1]);
        let next = apply(&current, &c, "default").unwrap();
        assert_eq!((next.version, next.keys.len()), (1, 3));
        assert!(apply(&current, &c, "other").unwrap_err().contains("tenant"), "per tenant");
        assert!(apply(&next, &c, "default").unwrap_err().contains("does not follow"), "no replay");
        // The new keys alone (what a compromised server would register) cannot make a change.
        let mut forged = change(&new, 1);
        forged.approve(&new[0]);
        forged.approve(&new[1]);
        assert!(apply(&current, &forged, "default").unwrap_err().contains("0 of the current set signed"));
        // A change whose text was edited after signing is refused.
        let mut tampered = c.clone();
        tampered.body = tampered.body.replace("\"threshold\":2", "\"threshold\":3");
        assert!(apply(&current, &tampered, "default").unwrap_err().contains("does not match"));
    }
}
