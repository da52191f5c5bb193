//! T14 at the verifier: every kind of forged, replayed or under-approved command is refused.

use super::*;
use serde_json::json;

const NOW: i64 = 1_800_000_000_000_000;

struct Approvers {
    keys: Vec<SigningKey>,
    set: ApproverSet,
}

fn approvers(n: usize) -> Approvers {
    let keys: Vec<SigningKey> = (0..n).map(|_| SigningKey::generate().unwrap().0).collect();
    let set = ApproverSet::new(keys.iter().map(SigningKey::public), 2).unwrap();
    Approvers { keys, set }
}

fn body(rule: serde_json::Value, targets: &[(&str, u64)], nonce: &str) -> CommandBody {
    CommandBody {
        id: format!("cmd-{nonce}"),
        tenant: "default".into(),
        rule,
        targets: targets.iter().map(|(a, c)| ((*a).to_owned(), *c)).collect(),
        issued_at: NOW,
        expires_at: NOW + 10 * 60 * 1_000_000,
        nonce: nonce.into(),
        reason: "incident 7".into(),
    }
}

fn terminate() -> serde_json::Value {
    json!({"name": "kill", "kind": "handling", "actions": [{"action": "Proc_Terminate", "process": {"name": "conti"}}]})
}

fn scan() -> serde_json::Value {
    json!({"name": "scan", "kind": "handling", "actions": [{"action": "Other_QuickScan"}]})
}

fn signed(b: &CommandBody, by: &[&SigningKey]) -> SignedCommand {
    let mut c = SignedCommand::new(b);
    for k in by {
        c.approve(k);
    }
    c
}

#[test]
fn two_approvers_make_a_destructive_command_and_it_runs_once() {
    let a = approvers(3);
    let mut guard = ReplayGuard::default();
    let cmd = signed(&body(terminate(), &[("agent-1", 1), ("agent-2", 1)], "n1"), &[&a.keys[0], &a.keys[2]]);
    let (b, rule) = verify(&cmd, "agent-1", &a.set, &mut guard, NOW + 1).expect("accepted");
    assert_eq!((b.id.as_str(), rule.actions.len()), ("cmd-n1", 1));
    assert_eq!(guard.last_counter, 1);
    // The same command again: its nonce is spent.
    assert_eq!(verify(&cmd, "agent-1", &a.set, &mut guard, NOW + 2).unwrap_err(), Refusal::Replayed);
    // The guard survives a restart as JSON and still refuses it.
    let mut back: ReplayGuard = serde_json::from_str(&serde_json::to_string(&guard).unwrap()).unwrap();
    assert_eq!(verify(&cmd, "agent-1", &a.set, &mut back, NOW + 3).unwrap_err(), Refusal::Replayed);
}

#[test]
fn forged_and_under_approved_commands_are_refused() {
    let a = approvers(3);
    let stranger = SigningKey::generate().unwrap().0;
    let b = body(terminate(), &[("agent-1", 1)], "n2");
    let cases: Vec<(&str, SignedCommand, Refusal)> = vec![
        ("unsigned", signed(&b, &[]), Refusal::TooFewApprovals { have: 0, need: 2 }),
        (
            "one approver, destructive",
            signed(&b, &[&a.keys[0]]),
            Refusal::TooFewApprovals { have: 1, need: 2 },
        ),
        (
            "one approver twice",
            signed(&b, &[&a.keys[1], &a.keys[1]]),
            Refusal::TooFewApprovals { have: 1, need: 2 },
        ),
        (
            "a stranger's key (a revoked approver)",
            signed(&b, &[&a.keys[0], &stranger]),
            Refusal::UnknownApprover(stranger.public()),
        ),
        (
            "retargeted",
            signed(&body(terminate(), &[("agent-9", 1)], "n2"), &[&a.keys[0], &a.keys[1]]),
            Refusal::NotForMe,
        ),
        (
            "tampered after signing",
            {
                let mut c = signed(&b, &[&a.keys[0], &a.keys[1]]);
                c.body = c.body.replace("conti", "sshd");
                c
            },
            Refusal::BadSignature(a.keys[0].public()),
        ),
        (
            "expired",
            signed(&CommandBody { expires_at: NOW - 1, ..b.clone() }, &[&a.keys[0], &a.keys[1]]),
            Refusal::Expired,
        ),
        (
            "not a command",
            SignedCommand { body: "{}".into(), approvals: vec![] },
            Refusal::Malformed(String::new()),
        ),
    ];
    for (what, cmd, want) in cases {
        let mut guard = ReplayGuard::default();
        let got = verify(&cmd, "agent-1", &a.set, &mut guard, NOW).unwrap_err();
        match (&got, &want) {
            (Refusal::Malformed(_), Refusal::Malformed(_)) => {}
            _ => assert_eq!(got, want, "{what}"),
        }
        assert_eq!(guard, ReplayGuard::default(), "{what}: a refusal changes nothing");
    }
}

#[test]
fn validity_is_bounded_and_counters_only_go_up() {
    let a = approvers(2);
    let two = [&a.keys[0], &a.keys[1]];
    let mut guard = ReplayGuard::default();
    let long = CommandBody { expires_at: NOW + MAX_TTL_MICROS + 1, ..body(scan(), &[("agent-1", 1)], "n3") };
    assert!(matches!(
        verify(&signed(&long, &two), "agent-1", &a.set, &mut guard, NOW),
        Err(Refusal::BadValidity(_))
    ));
    let future = CommandBody {
        issued_at: NOW + 10 * CLOCK_SKEW_MICROS,
        expires_at: NOW + 11 * CLOCK_SKEW_MICROS,
        ..long
    };
    assert!(matches!(
        verify(&signed(&future, &two), "agent-1", &a.set, &mut guard, NOW),
        Err(Refusal::BadValidity(_))
    ));
    // A non-destructive rule needs one approver; the counter then moves to 5.
    let first = body(scan(), &[("agent-1", 5)], "n4");
    verify(&signed(&first, &[&a.keys[0]]), "agent-1", &a.set, &mut guard, NOW)
        .expect("one approval suffices");
    // An older counter under a fresh nonce (a command held back and replayed late) is refused.
    let older = body(scan(), &[("agent-1", 4)], "n5");
    assert_eq!(
        verify(&signed(&older, &two), "agent-1", &a.set, &mut guard, NOW).unwrap_err(),
        Refusal::StaleCounter { got: 4, last: 5 }
    );
}

#[test]
fn an_approver_set_needs_real_keys_and_enough_of_them() {
    assert!(ApproverSet::new(["nope".to_owned()], 2).is_err());
    let one = SigningKey::generate().unwrap().0.public();
    assert!(ApproverSet::new([one.clone()], 2).unwrap_err().contains("cannot meet"));
    let two = SigningKey::generate().unwrap().0.public();
    assert_eq!(
        ApproverSet::new([one, two], 1).unwrap().threshold,
        MIN_DESTRUCTIVE_APPROVALS,
        "never below two"
    );
}
