//! Standing orders at the agent's verifier, and triggers within and outside them.

use super::*;
use crate::signed::SigningKey;

const NOW: i64 = 1_800_000_000_000_000;
const HOUR: i64 = 3600 * 1_000_000;

fn keys(n: usize) -> (Vec<SigningKey>, ApproverSet) {
    let keys: Vec<SigningKey> = (0..n).map(|_| SigningKey::generate().unwrap().0).collect();
    let set = ApproverSet::new(keys.iter().map(SigningKey::public), 2).unwrap();
    (keys, set)
}

fn body(agents: Agents) -> OrderBody {
    OrderBody {
        id: "order-1".into(),
        tenant: "default".into(),
        name: "block user execution".into(),
        agents,
        techniques: ["T1204".to_owned(), "T1059.001".to_owned()].into(),
        action: OrderAction::TerminateProcess,
        per_agent_per_hour: 2,
        issued_at: NOW,
        expires_at: NOW + 24 * HOUR,
        reason: "policy block tier".into(),
    }
}

fn signed(b: &OrderBody, by: &[&SigningKey]) -> SignedOrder {
    let mut o = SignedOrder::new(b);
    by.iter().for_each(|k| o.approve(k));
    o
}

fn trigger(technique: &str, id: &str) -> Trigger {
    Trigger {
        id: id.into(),
        order: "order-1".into(),
        technique: technique.into(),
        pid: 4242,
        start_time: Some(99),
        executable: "/tmp/dropper".into(),
        event_id: "e1".into(),
        reason: "rule x".into(),
        issued_at: NOW,
    }
}

#[test]
fn an_order_stands_only_with_the_sets_threshold_of_its_own_members() {
    let (k, set) = keys(3);
    let (stranger, _) = keys(2);
    let b = body(Agents::All);
    assert_eq!(verify_order(&signed(&b, &[&k[0], &k[1]]), "a1", "default", &set, NOW), Ok(b.clone()));
    assert_eq!(
        verify_order(&signed(&b, &[&k[0]]), "a1", "default", &set, NOW),
        Err(Refusal::TooFewApprovals { have: 1, need: 2 })
    );
    assert_eq!(
        verify_order(&signed(&b, &[&k[0], &k[0]]), "a1", "default", &set, NOW),
        Err(Refusal::TooFewApprovals { have: 1, need: 2 }),
        "the same approver twice counts once"
    );
    assert!(matches!(
        verify_order(&signed(&b, &[&k[0], &stranger[0]]), "a1", "default", &set, NOW),
        Err(Refusal::UnknownApprover(_))
    ));
    // Widened after signing: the signatures no longer hold.
    let mut wide = signed(&b, &[&k[0], &k[1]]);
    wide.body = wide.body.replace("\"per_agent_per_hour\":2", "\"per_agent_per_hour\":900");
    assert!(matches!(verify_order(&wide, "a1", "default", &set, NOW), Err(Refusal::BadSignature(_))));
    // Other tenants, other agents, expiry.
    assert_eq!(verify_order(&signed(&b, &[&k[0], &k[1]]), "a1", "acme", &set, NOW), Err(Refusal::NotForMe));
    let only = body(Agents::Only(["a2".to_owned()].into()));
    assert_eq!(
        verify_order(&signed(&only, &[&k[0], &k[1]]), "a1", "default", &set, NOW),
        Err(Refusal::NotForMe)
    );
    assert_eq!(
        verify_order(&signed(&b, &[&k[0], &k[1]]), "a1", "default", &set, NOW + 25 * HOUR),
        Err(Refusal::Expired)
    );
    let forever = OrderBody { expires_at: NOW + 91 * 24 * HOUR, ..b.clone() };
    assert!(matches!(
        verify_order(&signed(&forever, &[&k[0], &k[1]]), "a1", "default", &set, NOW),
        Err(Refusal::BadValidity(_))
    ));
    let bad = OrderBody { techniques: ["rm -rf".to_owned()].into(), ..b };
    assert!(check_body(&bad).unwrap_err().contains("not an ATT&CK technique"));
}

#[test]
fn triggers_act_only_inside_the_order() {
    let b = body(Agents::All);
    assert_eq!(check_trigger(Some(&b), &trigger("T1204.002", "t1"), 0, false, NOW), Ok(()));
    assert_eq!(check_trigger(Some(&b), &trigger("T1059.001", "t1"), 0, false, NOW), Ok(()));
    assert_eq!(
        check_trigger(Some(&b), &trigger("T1059", "t1"), 0, false, NOW),
        Err(TriggerRefusal::OutsideScope("T1059".into())),
        "a sub-technique does not cover its parent"
    );
    assert_eq!(
        check_trigger(Some(&b), &trigger("T12040", "t1"), 0, false, NOW),
        Err(TriggerRefusal::OutsideScope("T12040".into()))
    );
    assert_eq!(
        check_trigger(None, &trigger("T1204", "t1"), 0, false, NOW),
        Err(TriggerRefusal::NoSuchOrder("order-1".into()))
    );
    assert_eq!(
        check_trigger(Some(&b), &trigger("T1204", "t1"), 2, false, NOW),
        Err(TriggerRefusal::OverCap(2))
    );
    assert_eq!(
        check_trigger(Some(&b), &trigger("T1204", "t1"), 0, true, NOW),
        Err(TriggerRefusal::Replayed("t1".into()))
    );
    assert_eq!(
        check_trigger(Some(&b), &trigger("T1204", "t1"), 0, false, NOW + 25 * HOUR),
        Err(TriggerRefusal::Expired)
    );
    assert_eq!(
        check_trigger(Some(&b), &trigger("T1204", "t1"), 0, false, NOW + 10 * 60 * 1_000_000),
        Err(TriggerRefusal::Stale(600))
    );
}

#[test]
fn technique_ids_are_checked() {
    for ok in ["T1059", "T1059.001", "T1685"] {
        assert!(is_technique(ok), "{ok}");
    }
    for bad in ["T105", "t1059", "T1059.1", "T1059.0011", "TA0001", "T1059."] {
        assert!(!is_technique(bad), "{bad}");
    }
}
