//! Issue 17: the policy's `block` tier as a standing order. Two responders sign an order once (the
//! technique, the agent, a cap, an expiry); from then on a blocked process start reported by that
//! agent makes the server send a trigger, and the agent, holding the order it verified itself,
//! terminates the process and hands in a signed result. Without an active order nothing is sent:
//! the block stays an alert. A withdrawn order is dropped by the agent.

use super::requests::sign;
use super::{Env, bin};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tests::{ServerOptions, agent, get, metric, post, put};

fn process_start(pid: u32, image: &str) -> Value {
    json!({"at_ms": 0, "agent": "lab-1", "event": {
        "event": {"category": "process", "action": "start"},
        "process": {"pid": pid, "executable": image, "name": "updater", "command_line": format!("{image} 300")}}})
}

fn scenario(dir: &std::path::Path, name: &str, events: &[Value]) -> anyhow::Result<String> {
    let header = json!({"scenario": "lab", "hosts": [{"agent": "lab-1", "name": "LAB-1", "os": "linux", "group": "lab"}]});
    let mut text = format!("{header}\n");
    events.iter().for_each(|e| text.push_str(&format!("{e}\n")));
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path.display().to_string())
}

fn respond(nats: &str, state: &std::path::Path, secs: u64) -> anyhow::Result<Child> {
    let mut cmd = Command::new(bin());
    cmd.args(["agent", "--nats-url", nats, "--state-dir"]).arg(state);
    cmd.args(["respond", "--for-secs", &secs.to_string(), "--poll-ms", "300"]);
    Ok(cmd.env("CORDON_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?)
}

fn summary(child: Child) -> anyhow::Result<Value> {
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "respond failed: {:?}", out.status);
    Ok(serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim().lines().last().unwrap_or_default())?)
}

#[test]
fn a_blocked_process_start_is_terminated_within_a_signed_standing_order() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (api, admin) = (env.server.api.clone(), env.token.clone());
    let dir = tempfile::tempdir()?;
    let super::requests::Approvers { analyst, r1, r2 } =
        super::requests::register_approvers(&env, dir.path())?;
    // The lab group blocks user execution of dropped files.
    let mut policy = get(&format!("{api}/api/v1/policy"), Some(&admin))?.1["policy"].clone();
    policy["groups"] = json!({"lab": {"techniques": {"T1204.002": "block"}}});
    let body = json!({"policy": policy, "reason": "lab: block payloads run from temp", "base_version": 0});
    assert_eq!(put(&format!("{api}/api/v1/policy"), Some(&admin), &body)?.0, 200);
    std::thread::sleep(Duration::from_millis(1500));

    let work = env.dir.path().join("dropper");
    std::fs::create_dir_all(&work)?;
    let exe = work.join("updater");
    std::fs::copy("/bin/sleep", &exe)?;
    let exe_s = exe.display().to_string();

    // lab-1 enrolls (pinning alice and bob) with its first events; no order yet, so a blocked start
    // is only an alert.
    let mut early = tests::procs::spawn_copied(Command::new(&exe).arg("300"))?;
    let s = scenario(work.as_path(), "first.ndjson", &[process_start(early.id(), &exe_s)])?;
    agent(&bin(), &env.nats.url, &env.spool(), &["replay", &s, "--no-edge-rules"])?;
    let state = env.spool().join("state").join("ids").join("lab-1");
    let agent_id =
        serde_json::from_str::<Value>(&std::fs::read_to_string(state.join("enrollment.json"))?)?["agent_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
    let metrics = || {
        get(&format!("{api}/metrics"), Some(&admin)).map(|(_, m)| m.as_str().unwrap_or_default().to_owned())
    };
    tests::eventually(Duration::from_secs(20), || {
        Ok((metric(&metrics()?, "cordon_block_unordered_total") >= 1.0).then_some(()))
    })?;
    assert!(early.try_wait()?.is_none(), "without an order nothing is sent");

    // The analyst proposes the order; alice and bob sign it.
    let orders = format!("{api}/api/v1/response/standing");
    let ask = json!({"name": "block dropped payloads", "techniques": ["T1204"], "agents": [agent_id],
                     "per_agent_per_hour": 5, "ttl_secs": 3600, "reason": "lab policy block tier"});
    let bad = json!({"name": "x", "techniques": ["rm -rf /"], "per_agent_per_hour": 5, "ttl_secs": 60, "reason": "x"});
    assert_eq!(post(&orders, Some(&analyst), &bad)?.1["error"]["code"], "invalid_order");
    let (status, proposed) = post(&orders, Some(&analyst), &ask)?;
    assert_eq!((status, proposed["state"].as_str()), (201, Some("proposed")), "{proposed}");
    let id = proposed["id"].as_str().unwrap_or_default().to_owned();
    let file = |v: &Value| json!({"id": id, "command": v["order"]});
    let approve = |tok: &str, a: &schemas::response::command::Approval| {
        post(&format!("{orders}/{id}/approvals"), Some(tok), &json!({"public_key": a.key, "sig": a.sig}))
    };
    let (_, half) = approve(&r1, &sign(dir.path(), &file(&proposed), "alice.key")?)?;
    assert_eq!(half["state"], "proposed", "{half}");
    let (_, active) = approve(&r2, &sign(dir.path(), &file(&half), "bob.key")?)?;
    assert_eq!(active["state"], "active", "{active}");

    // The agent answers while lab-1 reports the dropper starting again.
    let responder = respond(&env.nats.url, &state, 12)?;
    std::thread::sleep(Duration::from_secs(2));
    let mut target = tests::procs::spawn_copied(Command::new(&exe).arg("300"))?;
    let s = scenario(work.as_path(), "second.ndjson", &[process_start(target.id(), &exe_s)])?;
    agent(&bin(), &env.nats.url, &env.spool(), &["replay", &s, "--no-edge-rules"])?;
    let done = summary(responder)?;
    assert_eq!(done["standing_orders"], json!([id]), "{done}");
    let handled = done["handled"].as_array().cloned().unwrap_or_default();
    assert_eq!(handled.len(), 1, "{done}");
    assert_eq!(handled[0]["outcome"], "executed", "{done}");
    assert!(handled[0]["command"].as_str().unwrap_or_default().starts_with("trigger:"), "{done}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(target.wait()?.signal(), Some(9), "the blocked process was terminated");
    assert!(early.try_wait()?.is_none(), "the start reported before the order stays alone");

    // The order shows the trigger and the agent's signed result; the audit chain has it.
    let (_, shown) = get(&format!("{orders}/{id}"), Some(&analyst))?;
    let trigger = &shown["triggers"][0];
    assert_eq!(
        (trigger["outcome"].as_str(), trigger["technique"].as_str()),
        (Some("executed"), Some("T1204.002")),
        "{shown}"
    );
    let key: [u8; 32] = std::fs::read(state.join("agent.key"))?.try_into().unwrap();
    let signed = schemas::response::command::SignedResult {
        body: trigger["result_body"].as_str().unwrap_or_default().to_owned(),
        sig: trigger["result_sig"].as_str().unwrap_or_default().to_owned(),
    };
    let public = schemas::signed::AgentKey::from_seed(key)?.public();
    schemas::response::command::verify_result(&signed, &agent_id, &public).map_err(anyhow::Error::msg)?;
    assert_eq!(metric(&metrics()?, "cordon_block_triggers_total"), 1.0);
    let (_, audit) = get(&format!("{api}/api/v1/audit?limit=1000"), Some(&admin))?;
    let chain = audit["entries"].as_array().cloned().unwrap_or_default();
    let result_audited = chain.iter().any(|e| {
        e["action"] == "response.result"
            && e["target"] == format!("trigger:{}", trigger["id"].as_str().unwrap_or_default())
    });
    assert!(result_audited, "the trigger's result is in the audit chain");
    let approvals = chain
        .iter()
        .filter(|e| e["action"] == "response.standing.approve" && e["detail"]["outcome"] == "done")
        .count();
    assert_eq!(approvals, 2);

    // Withdrawn, the agent drops it.
    let (status, withdrawn) = post(&format!("{orders}/{id}/withdraw"), Some(&analyst), &json!({}))?;
    assert_eq!((status, withdrawn["state"].as_str()), (200, Some("withdrawn")), "{withdrawn}");
    let after = summary(respond(&env.nats.url, &state, 2)?)?;
    assert_eq!(after["standing_orders"], json!([]), "{after}");
    let _ = early.kill();
    eprintln!(
        "standing order: signed once by 2 approvers; 1 blocked start terminated by trigger, 1 before it left alone; withdrawn and dropped"
    );
    Ok(())
}

/// Registers two responders' approver keys, has them sign a standing order for `technique` on every
/// agent, enrolls lab-1 in the test's agent spool and lets its responder take the order; lab-1's
/// state directory.
pub(super) fn standing_order_held(env: &Env, technique: &str) -> anyhow::Result<std::path::PathBuf> {
    let (api, dir) = (env.server.api.clone(), env.dir.path().join("approvers"));
    std::fs::create_dir_all(&dir)?;
    let super::requests::Approvers { analyst, r1, r2 } = super::requests::register_approvers(env, &dir)?;
    let responders = [("alice.key", r1), ("bob.key", r2)];
    let state = env.spool().join("state").join("ids").join("lab-1");
    let (_, enroll_token) = tests::enroll_token(&bin(), &env.data, "default", 1)?;
    let st = state.display().to_string();
    let args = [
        "agent",
        "enroll",
        "--server",
        &api,
        "--token",
        &enroll_token,
        "--state-dir",
        &st,
        "--host",
        "LAB-1",
    ];
    let (code, out) = tests::run(&bin(), &args)?;
    anyhow::ensure!(code == 0, "enroll lab-1: {out}");
    let orders = format!("{api}/api/v1/response/standing");
    let ask = json!({"name": "lab blocks", "techniques": [technique], "per_agent_per_hour": 10,
                     "ttl_secs": 3600, "reason": "lab policy block tier"});
    let (status, mut order) = tests::post(&orders, Some(&analyst), &ask)?;
    anyhow::ensure!(status == 201, "{order}");
    let id = order["id"].as_str().unwrap_or_default().to_owned();
    for (key, tok) in &responders {
        let a = sign(&dir, &json!({"id": id, "command": order["order"]}), key)?;
        let body = json!({"public_key": a.key, "sig": a.sig});
        order = tests::post(&format!("{orders}/{id}/approvals"), Some(tok), &body)?.1;
    }
    anyhow::ensure!(order["state"] == "active", "{order}");
    let args = [
        "agent",
        "--nats-url",
        &env.nats.url,
        "--state-dir",
        &st,
        "respond",
        "--for-secs",
        "1",
        "--poll-ms",
        "200",
    ];
    let (code, out) = tests::run(&bin(), &args)?;
    let held: Value = serde_json::from_str(out.trim().lines().last().unwrap_or_default())?;
    anyhow::ensure!(
        code == 0 && held["standing_orders"] == json!([id]),
        "lab-1 did not take the order: {out}"
    );
    Ok(state)
}
