//! Standing orders on the responder: held only when the pinned set signed them, kept across a
//! restart, dropped when the server stops sending them; triggers kill the process the event named
//! and nothing outside the order, and never the same trigger twice.

use super::*;
use crate::respond::tests::{Fixture, fixture, outcome, responder};
use schemas::response::standing::{Agents, OrderAction};
use std::process::{Child, Command};

fn order(f: &Fixture, id: &str, by: usize, now: i64) -> SignedOrder {
    let body = OrderBody {
        id: id.into(),
        tenant: "default".into(),
        name: "block user execution".into(),
        agents: Agents::Only([f.agent.clone()].into()),
        techniques: ["T1204".to_owned()].into(),
        action: OrderAction::TerminateProcess,
        per_agent_per_hour: 2,
        issued_at: now,
        expires_at: now + 3_600_000_000,
        reason: "policy block tier".into(),
    };
    let mut o = SignedOrder::new(&body);
    f.approvers.iter().take(by).for_each(|k| o.approve(k));
    o
}

fn dropper(dir: &std::path::Path) -> (Child, String) {
    let exe = dir.join("cordon-dropper");
    std::fs::copy("/bin/sleep", &exe).unwrap();
    let child = crate::executor::linux::tests_support::spawn_copied(Command::new(&exe).arg("60"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while executor::linux::start_time(child.id() as i32).is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    (child, exe.display().to_string())
}

fn trigger(id: &str, technique: &str, pid: u32, exe: &str, now: i64) -> Trigger {
    Trigger {
        id: id.into(),
        order: "order-1".into(),
        technique: technique.into(),
        pid: i64::from(pid),
        start_time: None,
        executable: exe.into(),
        event_id: "e1".into(),
        reason: "rule".into(),
        issued_at: now,
    }
}

#[test]
fn orders_are_held_only_when_signed_by_the_set_and_survive_a_restart() {
    let f = fixture();
    let now = schemas::time::now_micros();
    let mut r = responder(&f);
    let refused = r.hold_orders(&[order(&f, "order-1", 2, now), order(&f, "order-2", 1, now)], now).unwrap();
    assert_eq!(r.orders_held(), vec!["order-1".to_owned()]);
    assert_eq!(refused.len(), 1);
    assert!(refused[0].detail.contains("1 distinct approvals"), "{refused:?}");
    drop(r);
    let mut r = responder(&f);
    assert_eq!(r.orders_held(), vec!["order-1".to_owned()], "kept on disk");
    r.hold_orders(&[], now).unwrap();
    assert!(r.orders_held().is_empty(), "an order the server stops sending is dropped");
}

#[test]
fn a_trigger_kills_the_process_the_event_named_within_the_order_only() {
    let f = fixture();
    let now = schemas::time::now_micros();
    let mut r = responder(&f);
    r.hold_orders(&[order(&f, "order-1", 2, now)], now).unwrap();
    let (mut victim, exe) = dropper(f.dir.path());
    let (mut bystander, _) = {
        let other = f.dir.path().join("b");
        std::fs::create_dir_all(&other).unwrap();
        dropper(&other)
    };

    // Outside the order: another technique; the pid of a process running something else.
    let out = outcome(&f, &r.trigger(&trigger("t0", "T1059.001", victim.id(), &exe, now), now).unwrap());
    assert_eq!((out.outcome.as_str(), out.command.as_str()), ("refused", "trigger:t0"), "{out:?}");
    assert!(out.detail.contains("outside the order"), "{out:?}");
    let out = outcome(
        &f,
        &r.trigger(&trigger("t1", "T1204.002", bystander.id(), "/usr/bin/other", now), now).unwrap(),
    );
    assert!(out.detail.contains("the pid was reused"), "{out:?}");
    assert!(bystander.try_wait().unwrap().is_none());

    let out = outcome(&f, &r.trigger(&trigger("t2", "T1204.002", victim.id(), &exe, now), now).unwrap());
    assert_eq!(out.outcome, "executed", "{out:?}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(victim.wait().unwrap().signal(), Some(9));
    // The same trigger again is a replay; a third within the hour is over the order's cap of 2.
    let again = outcome(&f, &r.trigger(&trigger("t2", "T1204.002", victim.id(), &exe, now), now).unwrap());
    assert!(again.detail.contains("already handled"), "{again:?}");
    let capped = outcome(&f, &r.trigger(&trigger("t3", "T1204", bystander.id(), &exe, now), now).unwrap());
    assert!(capped.detail.contains("cap of 2"), "{capped:?}");
    assert!(bystander.try_wait().unwrap().is_none(), "nothing past the cap runs");
    let unknown = Trigger { order: "order-9".into(), ..trigger("t4", "T1204", victim.id(), &exe, now) };
    assert!(outcome(&f, &r.trigger(&unknown, now).unwrap()).detail.contains("no standing order"));
    let _ = bystander.kill();
}

#[test]
fn the_edge_acts_only_within_an_order_an_identity_holds() {
    let f = fixture();
    let now = schemas::time::now_micros();
    let edge = HeldOrders::new(Some(f.dir.path().to_path_buf()));
    let t = |s: &str| vec![s.to_owned()];
    assert!(edge.allow(&f.agent, &t("T1204.002"), now).unwrap_err().contains("no standing order"));
    let mut r = responder(&f);
    r.hold_orders(&[order(&f, "order-1", 2, now)], now).unwrap();
    assert_eq!(edge.allow(&f.agent, &t("T1204.002"), now), Ok("order-1".to_owned()));
    assert!(edge.allow(&f.agent, &t("T1059"), now).is_err(), "outside the order's techniques");
    assert!(edge.allow("another-agent", &t("T1204"), now).is_err(), "another identity holds nothing");
    assert_eq!(edge.allow(&f.agent, &t("T1204"), now), Ok("order-1".to_owned()));
    assert!(edge.allow(&f.agent, &t("T1204"), now).is_err(), "the order's cap of 2 per hour");
    assert!(HeldOrders::new(None).allow(&f.agent, &t("T1204"), now).is_err(), "no enrolled identities");
}
