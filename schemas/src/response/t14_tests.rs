//! T14 at fleet scale (RELIABILITY.md): 1,000 agents' verifiers, each with the approver set it
//! pinned and its own replay guard, are handed one legitimate fleet-wide command and then every
//! kind of forged, replayed, stale, expired, retargeted, tampered and revoked-approver command.
//! Exactly the legitimate command is accepted, once per agent; every other delivery is refused for
//! its own reason and leaves the agent's guard as it was. (A real agent carries commands out in
//! `tests/tests/e2e/requests.rs`; this is the verifier alone standing in for the rest of the fleet.)

use super::approvers::{SetChange, SignedSetChange, apply};
use super::command::*;
use crate::signed::SigningKey;
use serde_json::json;
use std::collections::BTreeMap;

const NOW: i64 = 1_800_000_000_000_000;
const FLEET: usize = 1000;

struct Agent {
    id: String,
    set: ApproverSet,
    guard: ReplayGuard,
}

fn command(targets: &BTreeMap<String, u64>, nonce: &str, expires_at: i64) -> CommandBody {
    CommandBody {
        id: format!("cmd-{nonce}"),
        tenant: "default".into(),
        rule: json!({"name": "isolate", "kind": "handling", "actions": [
            {"action": "Proc_Terminate", "process": {"name": "conti"}}]}),
        targets: targets.clone(),
        issued_at: NOW,
        expires_at,
        nonce: nonce.into(),
        reason: "incident 7".into(),
    }
}

fn signed(b: &CommandBody, by: &[&SigningKey]) -> SignedCommand {
    let mut c = SignedCommand::new(b);
    for k in by {
        c.approve(k);
    }
    c
}

/// The refusal's kind, without its detail.
fn kind(r: &Refusal) -> &'static str {
    match r {
        Refusal::Malformed(_) => "malformed",
        Refusal::InvalidRule(_) => "invalid_rule",
        Refusal::NotForMe => "not_for_me",
        Refusal::UnknownApprover(_) => "unknown_approver",
        Refusal::BadSignature(_) => "bad_signature",
        Refusal::TooFewApprovals { .. } => "too_few_approvals",
        Refusal::Expired => "expired",
        Refusal::BadValidity(_) => "bad_validity",
        Refusal::Replayed => "replayed",
        Refusal::StaleCounter { .. } => "stale_counter",
    }
}

#[test]
fn a_thousand_verifiers_accept_only_what_their_approvers_signed() {
    let keys: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate().unwrap().0).collect();
    let (alice, bob, carol) = (&keys[0], &keys[1], &keys[2]);
    let pinned = ApproverSet::new(keys.iter().map(SigningKey::public), 2).unwrap();
    let mut fleet: Vec<Agent> = (0..FLEET)
        .map(|i| Agent { id: format!("a{i:04}"), set: pinned.clone(), guard: ReplayGuard::default() })
        .collect();
    let all = |counter: u64| fleet_targets(FLEET, counter);
    let started = std::time::Instant::now();

    // The legitimate fleet-wide command: accepted by every agent, once.
    let good = signed(&command(&all(1), "good", NOW + 600_000_000), &[alice, bob]);
    let mut accepted = 0;
    for a in &mut fleet {
        accepted += usize::from(verify(&good, &a.id, &a.set, &mut a.guard, NOW).is_ok());
    }
    assert_eq!(accepted, FLEET);

    // Carol is revoked: a change to {alice, bob} that alice and bob signed, applied by every agent.
    let mut change = SignedSetChange::new(&SetChange {
        tenant: "default".into(),
        version: 1,
        keys: [alice.public(), bob.public()].into(),
        threshold: 2,
        issued_at: NOW,
    });
    change.approve(alice);
    change.approve(bob);
    for a in &mut fleet {
        a.set = apply(&a.set, &change, "default").unwrap();
    }

    let fresh = |nonce: &str| command(&all(2), nonce, NOW + 600_000_000);
    let attacks: Vec<(&str, SignedCommand, &str)> = vec![
        ("unsigned", signed(&fresh("u"), &[]), "too_few_approvals"),
        ("singly signed destructive", signed(&fresh("s"), &[alice]), "too_few_approvals"),
        ("replayed (same nonce)", good.clone(), "replayed"),
        (
            "older counter, fresh nonce",
            signed(&command(&all(1), "o", NOW + 600_000_000), &[alice, bob]),
            "stale_counter",
        ),
        ("expired", signed(&command(&all(2), "e", NOW - 1), &[alice, bob]), "expired"),
        (
            "retargeted",
            signed(&command(&fleet_targets_named("other", 2), "r", NOW + 600_000_000), &[alice, bob]),
            "not_for_me",
        ),
        (
            "tampered",
            {
                let mut c = signed(&fresh("t"), &[alice, bob]);
                c.body = c.body.replace("conti", "sshd");
                c
            },
            "bad_signature",
        ),
        ("revoked approver", signed(&fresh("v"), &[alice, carol]), "unknown_approver"),
    ];
    let mut refusals: BTreeMap<&str, usize> = BTreeMap::new();
    for (what, cmd, want) in &attacks {
        for a in &mut fleet {
            let before = a.guard.clone();
            let got = verify(cmd, &a.id, &a.set, &mut a.guard, NOW).expect_err(what);
            assert_eq!(kind(&got), *want, "{what} at {}", a.id);
            assert_eq!(a.guard, before, "{what}: a refusal changes nothing");
            *refusals.entry(want).or_default() += 1;
        }
    }
    let deliveries = attacks.len() * FLEET;
    assert_eq!(refusals.values().sum::<usize>(), deliveries, "every attack refused at every agent");
    eprintln!(
        "T14: {FLEET} verifiers, 1 legitimate command accepted by each, {deliveries} forged deliveries \
         refused ({refusals:?}), 0 executed; {:.1} s for {} verifications",
        started.elapsed().as_secs_f64(),
        deliveries + FLEET
    );
}

fn fleet_targets(n: usize, counter: u64) -> BTreeMap<String, u64> {
    (0..n).map(|i| (format!("a{i:04}"), counter)).collect()
}

fn fleet_targets_named(name: &str, counter: u64) -> BTreeMap<String, u64> {
    [(name.to_owned(), counter)].into()
}
