//! The responder against its own state directory: a command runs once, its result is signed with
//! the agent's key and handed back unchanged when asked again, and a command accepted just before a
//! crash (result not yet written) is refused as a replay rather than run twice.

use super::*;
use schemas::response::command::{CommandBody, verify_result};
use schemas::signed::SigningKey;
use serde_json::json;

pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) agent: String,
    pub(crate) public: String,
    pub(crate) approvers: Vec<SigningKey>,
}

/// An enrolled identity in a temporary state directory, two approvers pinned.
pub(crate) fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key = crate::enroll::agent_key(dir.path()).unwrap();
    let agent = schemas::signed::agent_id(&key.public());
    let approvers: Vec<SigningKey> = (0..2).map(|_| SigningKey::generate().unwrap().0).collect();
    let keys: Vec<String> = approvers.iter().map(SigningKey::public).collect();
    let record = json!({"agent_id": agent, "tenant": "default", "approvers": {"keys": keys, "threshold": 2}});
    std::fs::write(dir.path().join("enrollment.json"), record.to_string()).unwrap();
    Fixture { dir, agent, public: key.public(), approvers }
}

fn command(f: &Fixture, nonce: &str, counter: u64, now: i64) -> SignedCommand {
    let body = CommandBody {
        id: format!("cmd-{nonce}"),
        tenant: "default".into(),
        rule: json!({"name": "kill", "kind": "handling", "actions": [
            {"action": "Proc_Terminate", "process": {"executable": "/nonexistent/cordon-test", "sha256": "0".repeat(64)}}]}),
        targets: [(f.agent.clone(), counter)].into(),
        issued_at: now,
        expires_at: now + 60_000_000,
        nonce: nonce.into(),
        reason: "test".into(),
    };
    let mut cmd = SignedCommand::new(&body);
    for k in &f.approvers {
        cmd.approve(k);
    }
    cmd
}

pub(crate) fn responder(f: &Fixture) -> Responder {
    let exec = executor::Config::for_host(f.dir.path());
    Responder::open(f.dir.path(), exec).unwrap()
}

pub(crate) fn outcome(f: &Fixture, r: &SignedResult) -> ResultBody {
    verify_result(r, &f.agent, &f.public).expect("signed by the agent's key")
}

#[test]
fn runs_once_and_hands_the_same_result_back() {
    let f = fixture();
    let now = schemas::time::now_micros();
    let cmd = command(&f, "n1", 1, now);
    let first = responder(&f).handle(&cmd, now).unwrap();
    let body = outcome(&f, &first);
    assert_eq!((body.command.as_str(), body.outcome.as_str()), ("cmd-n1", "executed"));
    assert_eq!(body.actions[0]["outcome"], "nothing_found");
    // A restarted agent given the same command again hands back the same signed result.
    let again = responder(&f).handle(&cmd, now + 1).unwrap();
    assert_eq!(again, first);
}

#[test]
fn a_command_accepted_before_a_crash_is_never_run_twice() {
    let f = fixture();
    let now = schemas::time::now_micros();
    let cmd = command(&f, "n2", 1, now);
    responder(&f).handle(&cmd, now).unwrap();
    // The crash: the guard was written before the command ran, the result was not.
    let path = f.dir.path().join("response-state.json");
    let mut state: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    state["results"] = json!({});
    std::fs::write(&path, state.to_string()).unwrap();
    let r = responder(&f).handle(&cmd, now + 1).unwrap();
    let body = outcome(&f, &r);
    assert_eq!(body.outcome, "refused");
    assert!(body.detail.contains("replayed"), "{body:?}");
}

#[test]
fn unpinned_or_singly_approved_commands_are_refused_with_a_signed_result() {
    let f = fixture();
    let now = schemas::time::now_micros();
    let mut cmd = command(&f, "n3", 1, now);
    cmd.approvals.truncate(1);
    let body = outcome(&f, &responder(&f).handle(&cmd, now).unwrap());
    assert_eq!(body.outcome, "refused");
    assert!(body.detail.contains("needs 2"), "{body:?}");
    // Without a pinned approver set nothing is ever accepted.
    std::fs::write(f.dir.path().join("enrollment.json"), json!({"agent_id": f.agent}).to_string()).unwrap();
    let full = command(&f, "n4", 2, now);
    let body = outcome(
        &f,
        &Responder::open(f.dir.path(), executor::Config::for_host(f.dir.path()))
            .unwrap()
            .handle(&full, now)
            .unwrap(),
    );
    assert_eq!(
        (body.outcome.as_str(), body.detail.as_str()),
        ("refused", "no approver set was pinned at enrollment")
    );
}

#[test]
fn destructive_commands_stop_at_the_hourly_cap() {
    let f = fixture();
    let now = schemas::time::now_micros();
    let mut r = responder(&f).with_cap(2);
    let outcomes: Vec<String> = (1..=3)
        .map(|i| outcome(&f, &r.handle(&command(&f, &format!("c{i}"), i, now), now).unwrap()).outcome)
        .collect();
    assert_eq!(outcomes, ["executed", "executed", "refused"]);
    // The cap holds across a restart, and frees up once the hour has passed.
    let mut again = responder(&f).with_cap(2);
    let late = command(&f, "c4", 4, now);
    let body = outcome(&f, &again.handle(&late, now + 1).unwrap());
    assert!(body.detail.contains("cap of 2"), "{body:?}");
    let later = now + HOUR_MICROS + 1;
    let next = command(&f, "c5", 5, later);
    assert_eq!(outcome(&f, &again.handle(&next, later).unwrap()).outcome, "executed");
}
