//! Issue 17 items 3 and 5: response requests over the API. An analyst asks; two responders approve
//! with keys that never leave their machines (`cordon approve`), each handing in only the approval
//! of the key registered to their token; nobody approves their own request; revoked keys, forged
//! signatures, repeats, closed requests and a locked-down tenant are refused with their own codes;
//! the command the server ends up holding is one the agent's verifier accepts; all of it is in the
//! audit chain.

use super::{Env, bin};
use schemas::response::command::{Approval, ApproverSet, ReplayGuard, SignedCommand, verify};
use serde_json::{Value, json};
use std::path::Path;
use tests::{ServerOptions, get, post, put, token_as};

pub(super) fn keygen(dir: &Path, name: &str) -> anyhow::Result<String> {
    let out = dir.join(name).display().to_string();
    let (code, public) = tests::run(&bin(), &["approver", "keygen", "--out", &out])?;
    anyhow::ensure!(code == 0, "keygen {name}: {public}");
    Ok(public.trim().to_owned())
}

/// The request's command saved to a file in `dir` and signed there with `key` by `cordon approve`,
/// as an approver does on their own machine: the file.
pub(super) fn signed_file(dir: &Path, request: &Value, key: &str) -> anyhow::Result<std::path::PathBuf> {
    let file = dir.join(format!("{}.json", request["id"].as_str().unwrap_or("request")));
    std::fs::write(&file, request["command"].to_string())?;
    let (f, k) = (file.display().to_string(), dir.join(key).display().to_string());
    let (code, out) = tests::run(&bin(), &["approve", &f, "--key", &k])?;
    anyhow::ensure!(code == 0, "cordon approve with {key}: {out}");
    Ok(file)
}

/// Signs the request's command with `key` as an approver does ([`signed_file`]); the new approval.
pub(super) fn sign(dir: &Path, request: &Value, key: &str) -> anyhow::Result<Approval> {
    let file = signed_file(dir, request, key)?;
    let signed: SignedCommand = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
    signed.approvals.last().cloned().ok_or_else(|| anyhow::anyhow!("no approval written"))
}

pub(super) fn hand_in(api: &str, tok: &str, id: &str, a: &Approval) -> anyhow::Result<(u16, Value)> {
    post(
        &format!("{api}/api/v1/response/requests/{id}/approvals"),
        Some(tok),
        &json!({"public_key": a.key, "sig": a.sig}),
    )
}

/// The people around a response: an analyst who asks and two responders whose approver keys
/// (`alice.key`, `bob.key` in the directory given) are registered to their tokens.
pub(super) struct Approvers {
    /// The analyst's token.
    pub analyst: String,
    /// alice's token (her key is `alice.key`).
    pub r1: String,
    /// bob's token (his key is `bob.key`).
    pub r2: String,
}

/// Makes the tokens and keys of [`Approvers`] on `env`'s server and registers the keys.
pub(super) fn register_approvers(env: &Env, dir: &Path) -> anyhow::Result<Approvers> {
    let (_, analyst) = token_as(&bin(), &env.data, None, "default", "analyst")?;
    let mut tokens = Vec::new();
    for name in ["alice", "bob"] {
        let (id, token) = token_as(&bin(), &env.data, None, "default", "responder")?;
        let key = keygen(dir, &format!("{name}.key"))?;
        let body = json!({"name": name, "public_key": key, "owner_token": id});
        let (status, answer) =
            post(&format!("{}/api/v1/response/approvers", env.server.api), Some(&env.token), &body)?;
        anyhow::ensure!(status == 201, "registering {name}: {answer}");
        tokens.push(token);
    }
    let r2 = tokens.pop().unwrap_or_default();
    let r1 = tokens.pop().unwrap_or_default();
    Ok(Approvers { analyst, r1, r2 })
}

fn code(answer: &(u16, Value)) -> (u16, String) {
    (answer.0, answer.1["error"]["code"].as_str().unwrap_or_default().to_owned())
}

fn terminate_rule() -> Value {
    json!({"name": "stop conti", "kind": "handling", "actions": [
        {"action": "Proc_Terminate", "process": {"executable": "/tmp/conti", "sha256": "ab".repeat(32)}}]})
}

/// A server and the people around a request: an analyst who asks and two responders (token id and
/// secret each) who approve.
struct Cast {
    env: Env,
    dir: tempfile::TempDir,
    analyst: String,
    r1: (String, String),
    r2: (String, String),
}

fn cast() -> anyhow::Result<Cast> {
    let env = Env::start(&ServerOptions::default())?;
    let (_, analyst) = token_as(&bin(), &env.data, None, "default", "analyst")?;
    let r1 = token_as(&bin(), &env.data, None, "default", "responder")?;
    let r2 = token_as(&bin(), &env.data, None, "default", "responder")?;
    Ok(Cast { env, dir: tempfile::tempdir()?, analyst, r1, r2 })
}

#[test]
fn requests_wait_for_two_approvers_none_of_them_the_requester() -> anyhow::Result<()> {
    let Cast { env, dir, analyst, r1: (r1_id, r1), r2: (r2_id, r2) } = cast()?;
    let (api, admin) = (env.server.api.clone(), env.token.clone());
    // Two enrolled agents to target.
    let (_, enroll_token) = tests::enroll_token(&bin(), &env.data, "default", 2)?;
    let mut agents = Vec::new();
    for host in ["web-1", "web-2"] {
        let key = schemas::signed::AgentKey::generate()?;
        let (status, enrolled) = post(
            &format!("{api}/api/v1/enroll"),
            None,
            &json!({"token": enroll_token, "public_key": key.public(),
                    "proof": key.enroll_proof(&enroll_token), "host": host}),
        )?;
        assert_eq!(status, 200, "{enrolled}");
        agents.push(enrolled["agent_id"].as_str().unwrap().to_owned());
    }
    let agent = agents[0].clone();

    let (alice, bob) = (keygen(dir.path(), "alice.key")?, keygen(dir.path(), "bob.key")?);
    let approvers = format!("{api}/api/v1/response/approvers");
    for (name, key, owner) in [("alice", &alice, &r1_id), ("bob", &bob, &r2_id)] {
        let body = json!({"name": name, "public_key": key, "owner_token": owner});
        assert_eq!(post(&approvers, Some(&admin), &body)?.0, 201);
        assert_eq!(
            code(&post(&approvers, Some(&admin), &body)?),
            (409, "conflict".into()),
            "registered once"
        );
    }
    let bad_key = json!({"name": "x", "public_key": "zz", "owner_token": r1_id});
    assert_eq!(code(&post(&approvers, Some(&admin), &bad_key)?), (400, "bad_public_key".into()));
    assert_eq!(post(&approvers, Some(&r1), &json!({}))?.0, 403, "responders do not register approvers");

    let requests = format!("{api}/api/v1/response/requests");
    let ask = |tok: &str, rule: Value, targets: Value| {
        post(&requests, Some(tok), &json!({"rule": rule, "targets": targets, "reason": "incident 7"}))
    };
    assert_eq!(
        code(&ask(&analyst, terminate_rule(), json!(["no-such-agent"]))?),
        (400, "unknown_target".into())
    );
    let bad_rule = json!({"name": "x", "kind": "handling", "actions": [{"action": "Proc_Terminate"}]});
    assert_eq!(code(&ask(&analyst, bad_rule, json!([agent]))?), (400, "invalid_rule".into()));
    let (status, req) = ask(&analyst, terminate_rule(), json!([agent]))?;
    assert_eq!(status, 201, "{req}");
    assert_eq!((req["state"].as_str(), req["approvals_needed"].as_i64()), (Some("requested"), Some(2)));
    let id = req["id"].as_str().unwrap().to_owned();

    let a = sign(dir.path(), &req, "alice.key")?;
    assert_eq!(code(&hand_in(&api, &r2, &id, &a)?), (403, "not_your_key".into()));
    assert_eq!(
        code(&hand_in(&api, &analyst, &id, &a)?),
        (403, "forbidden".into()),
        "analysts do not approve"
    );
    let forged = Approval { key: alice.clone(), sig: sign(dir.path(), &req, "bob.key")?.sig };
    assert_eq!(code(&hand_in(&api, &r1, &id, &forged)?), (400, "bad_signature".into()));
    let (status, once) = hand_in(&api, &r1, &id, &a)?;
    assert_eq!((status, once["state"].as_str()), (200, Some("requested")), "{once}");
    assert_eq!(code(&hand_in(&api, &r1, &id, &a)?), (409, "already_approved".into()));
    let b = sign(dir.path(), &once, "bob.key")?;
    let (status, approved) = hand_in(&api, &r2, &id, &b)?;
    assert_eq!((status, approved["state"].as_str()), (200, Some("approved")), "{approved}");
    // The answers fit the OpenAPI document (its request schemas generated from the types).
    let (_, doc) = get(&format!("{api}/api/v1/openapi.json"), Some(&admin))?;
    let fits = |path: &str, answer: &Value| api::openapi::check_answer(&doc, "GET", path, answer);
    fits("/api/v1/response/requests/{id}", &approved).map_err(anyhow::Error::msg)?;
    let (_, listed) = get(&requests, Some(&admin))?;
    fits("/api/v1/response/requests", &listed).map_err(anyhow::Error::msg)?;

    // What the server holds is what the agent accepts: its body, untouched, and both approvals.
    let command: SignedCommand = serde_json::from_value(approved["command"].clone())?;
    let set = ApproverSet::new([alice.clone(), bob.clone()], 2).map_err(anyhow::Error::msg)?;
    let now = schemas::time::now_micros();
    let (body, rule) = verify(&command, &agent, &set, &mut ReplayGuard::default(), now)
        .map_err(|e| anyhow::anyhow!("the agent refuses the approved command: {e}"))?;
    assert_eq!((body.id.as_str(), body.targets.get(&agent)), (id.as_str(), Some(&1)));
    assert!(rule.is_destructive());

    // A second request takes the agent's next counter; a responder cannot approve their own.
    let (_, own) = ask(&r1, terminate_rule(), json!([agent]))?;
    let own_id = own["id"].as_str().unwrap().to_owned();
    assert!(own["command"]["body"].as_str().unwrap().contains(&format!("\"{agent}\":2")), "{own}");
    let mine = sign(dir.path(), &own, "alice.key")?;
    assert_eq!(code(&hand_in(&api, &r1, &own_id, &mine)?), (403, "own_request".into()));
    // Cancelled, it takes no more approvals.
    let cancel = format!("{requests}/{own_id}/cancel");
    let (status, cancelled) = post(&cancel, Some(&analyst), &json!({}))?;
    assert_eq!((status, cancelled["state"].as_str()), (200, Some("cancelled")), "{cancelled}");
    assert_eq!(cancelled["phase"], "cancelled", "{cancelled}");
    let late = sign(dir.path(), &own, "bob.key")?;
    assert_eq!(code(&hand_in(&api, &r2, &own_id, &late)?), (409, "request_closed".into()));
    assert_eq!(code(&post(&cancel, Some(&analyst), &json!({}))?), (409, "request_closed".into()));

    // A revoked approver's approvals stop counting.
    let (status, _) = tests::delete(&format!("{approvers}/{bob}"), Some(&admin))?;
    assert_eq!(status, 200);
    let (_, third) = ask(&analyst, terminate_rule(), json!([agent]))?;
    let third_id = third["id"].as_str().unwrap().to_owned();
    let revoked = sign(dir.path(), &third, "bob.key")?;
    assert_eq!(code(&hand_in(&api, &r2, &third_id, &revoked)?), (403, "revoked_approver".into()));

    // Lockdown refuses every request and approval until lifted.
    let settings = format!("{api}/api/v1/response/settings");
    assert_eq!(put(&settings, Some(&admin), &json!({"lockdown": true}))?.0, 200);
    assert_eq!(code(&ask(&analyst, terminate_rule(), json!([agent]))?), (409, "lockdown".into()));
    let during = sign(dir.path(), &third, "alice.key")?;
    assert_eq!(code(&hand_in(&api, &r1, &third_id, &during)?), (409, "lockdown".into()));
    let (status, lifted) = put(&settings, Some(&admin), &json!({"lockdown": false, "approvals_needed": 3}))?;
    assert_eq!((status, lifted["approvals_needed"].as_i64()), (200, Some(3)), "{lifted}");
    let (_, fourth) = ask(&analyst, terminate_rule(), json!([agent]))?;
    assert_eq!(fourth["approvals_needed"], 3, "a destructive request needs the tenant's threshold");
    // A destructive action on more agents than the tenant's cap is refused before anyone approves.
    let (status, capped) = put(&settings, Some(&admin), &json!({"max_destructive_targets": 1}))?;
    assert_eq!((status, capped["max_destructive_targets"].as_i64()), (200, Some(1)), "{capped}");
    assert_eq!(code(&ask(&analyst, terminate_rule(), json!(agents))?), (400, "over_target_cap".into()));
    let scan = json!({"name": "scan", "kind": "handling", "actions": [{"action": "Other_QuickScan"}]});
    let (status, wide) = ask(&analyst, scan, json!(agents))?;
    assert_eq!(
        (status, wide["approvals_needed"].as_i64()),
        (201, Some(1)),
        "the cap is for destructive rules: {wide}"
    );

    // Scripts are off in a tenant until an admin turns them on.
    let script = json!({"name": "collect", "kind": "handling", "actions": [
        {"action": "Script_Shell", "script": "ss -tanp > /tmp/conns.txt"}]});
    assert_eq!(code(&ask(&analyst, script.clone(), json!([agent]))?), (409, "scripts_disabled".into()));
    let (status, on) = put(&settings, Some(&admin), &json!({"scripts": true}))?;
    assert_eq!((status, on["scripts"].as_bool()), (200, Some(true)), "{on}");
    assert_eq!(ask(&analyst, script, json!([agent]))?.0, 201);

    // Every step is in the audit chain, refusals included.
    let (_, audit) = get(&format!("{api}/api/v1/audit?limit=1000"), Some(&admin))?;
    let entries = audit["entries"].as_array().unwrap();
    let count = |action: &str, outcome: &str| {
        entries.iter().filter(|e| e["action"] == action && e["detail"]["outcome"] == outcome).count()
    };
    assert_eq!(count("response.approver.add", "done"), 2);
    assert_eq!(count("response.request", "done"), 6);
    assert_eq!(count("response.request", "refused"), 5);
    assert_eq!(count("response.approve", "done"), 2);
    assert_eq!(count("response.approve", "denied"), 4);
    assert_eq!(count("response.approver.revoke", "done"), 1);
    assert_eq!(count("response.cancel", "done"), 1);
    eprintln!(
        "response requests: 6 requested, 2 approvals counted, every refusal with its own code, all audited"
    );
    Ok(())
}

/// A `sleep` under a name of the test's own, and its SHA-256.
pub(super) fn victim(dir: &Path) -> anyhow::Result<(std::process::Child, String, String)> {
    let exe = dir.join("cordon-e2e-victim");
    std::fs::copy("/bin/sleep", &exe)?;
    let child = tests::procs::spawn_copied(std::process::Command::new(&exe).arg("120"))?;
    let out = std::process::Command::new("sha256sum").arg(&exe).output()?;
    let sha = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_owned();
    Ok((child, exe.display().to_string(), sha))
}

/// Item 4 end to end with a real agent: the approvers' keys are pinned when the agent enrolls; an
/// approved terminate reaches the agent over its own subject, runs once, and comes back as a result
/// signed with the agent's key; asked again, the agent gets nothing more.
#[test]
fn an_approved_command_runs_once_on_its_agent_and_comes_back_signed() -> anyhow::Result<()> {
    let Cast { env, dir, analyst, r1: (r1_id, r1), r2: (r2_id, r2) } = cast()?;
    let (api, admin) = (env.server.api.clone(), env.token.clone());
    let (alice, bob) = (keygen(dir.path(), "alice.key")?, keygen(dir.path(), "bob.key")?);
    for (name, key, owner) in [("alice", &alice, &r1_id), ("bob", &bob, &r2_id)] {
        let body = json!({"name": name, "public_key": key, "owner_token": owner});
        assert_eq!(post(&format!("{api}/api/v1/response/approvers"), Some(&admin), &body)?.0, 201);
    }
    // The agent enrolls after the approvers are registered, and pins them.
    let (_, enroll_token) = tests::enroll_token(&bin(), &env.data, "default", 1)?;
    let state = dir.path().join("agent-state");
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
        "web-1",
    ];
    let (status, out) = tests::run(&bin(), &args)?;
    assert_eq!(status, 0, "{out}");
    let enrolled: Value = serde_json::from_str(out.trim())?;
    let agent = enrolled["agent_id"].as_str().unwrap().to_owned();
    let mut pinned: Vec<&str> =
        enrolled["approvers"]["keys"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    pinned.sort();
    let mut registered = [alice.as_str(), bob.as_str()];
    registered.sort();
    assert_eq!(pinned, registered, "{enrolled}");

    let (mut child, exe, sha) = victim(dir.path())?;
    let rule = json!({"name": "stop the victim", "kind": "handling", "actions": [
        {"action": "Proc_Terminate", "process": {"executable": exe, "sha256": sha}}]});
    let body = json!({"rule": rule, "targets": [agent], "reason": "incident 9"});
    let (status, req) = post(&format!("{api}/api/v1/response/requests"), Some(&analyst), &body)?;
    assert_eq!(status, 201, "{req}");
    let id = req["id"].as_str().unwrap().to_owned();
    let a = sign(dir.path(), &req, "alice.key")?;
    let (_, once) = hand_in(&api, &r1, &id, &a)?;
    let b = sign(dir.path(), &once, "bob.key")?;
    let (status, approved) = hand_in(&api, &r2, &id, &b)?;
    assert_eq!((status, approved["state"].as_str()), (200, Some("approved")), "{approved}");
    assert!(child.try_wait()?.is_none(), "nothing runs before the agent asks");
    assert_eq!(approved["progress"]["pending"], 1, "{approved}");
    assert_eq!(approved["phase"], "approved", "{approved}");

    let respond = |secs: &str| {
        let args = [
            "agent",
            "--nats-url",
            &env.nats.url,
            "--state-dir",
            &st,
            "respond",
            "--for-secs",
            secs,
            "--poll-ms",
            "300",
        ];
        tests::run(&bin(), &args)
    };
    let (status, out) = respond("4")?;
    assert_eq!(status, 0, "{out}");
    let summary: Value = serde_json::from_str(out.trim().lines().last().unwrap_or_default())?;
    let handled = summary["handled"].as_array().unwrap();
    assert_eq!(handled.len(), 1, "{summary}");
    assert_eq!(
        (handled[0]["command"].as_str(), handled[0]["outcome"].as_str()),
        (Some(id.as_str()), Some("executed"))
    );
    assert_eq!(handled[0]["stored"], true, "{summary}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(child.wait()?.signal(), Some(9), "the victim was killed");

    // The result is stored against the target and verifies with the agent's enrolled key.
    let (_, shown) = get(&format!("{api}/api/v1/response/requests/{id}"), Some(&analyst))?;
    let target = &shown["targets"][0];
    assert_eq!(
        (target["agent"].as_str(), target["state"].as_str()),
        (Some(agent.as_str()), Some("executed")),
        "{shown}"
    );
    let signed = schemas::response::command::SignedResult {
        body: target["result_body"].as_str().unwrap().to_owned(),
        sig: target["result_sig"].as_str().unwrap().to_owned(),
    };
    let key: [u8; 32] = std::fs::read(state.join("agent.key"))?.try_into().unwrap();
    let public = schemas::signed::AgentKey::from_seed(key)?.public();
    let result =
        schemas::response::command::verify_result(&signed, &agent, &public).map_err(anyhow::Error::msg)?;
    assert_eq!(result.command, id);
    assert_eq!(target["result"]["actions"][0]["outcome"], "done", "{shown}");
    assert_eq!(shown["progress"]["executed"], 1, "{shown}");
    assert_eq!(shown["phase"], "executed", "{shown}");

    // The request, its approvals and the agent's result are all in the audit chain.
    let (_, audit) = get(&format!("{api}/api/v1/audit?limit=1000"), Some(&admin))?;
    let chain = audit["entries"].as_array().unwrap();
    let result =
        chain.iter().find(|e| e["action"] == "response.result" && e["target"] == format!("request:{id}"));
    let result = result.ok_or_else(|| anyhow::anyhow!("no result in the audit chain: {audit}"))?;
    assert_eq!(
        (result["actor"].as_str(), result["detail"]["outcome"].as_str()),
        (Some(&*format!("agent:{agent}")), Some("executed"))
    );
    assert_eq!(
        chain
            .iter()
            .filter(|e| e["action"] == "response.approve" && e["detail"]["outcome"] == "done")
            .count(),
        2
    );
    assert_eq!(
        chain
            .iter()
            .filter(|e| e["action"] == "response.request" && e["detail"]["outcome"] == "done")
            .count(),
        1
    );

    // Asked again, the agent has nothing to do: the command ran once.
    let (_, out) = respond("2")?;
    let again: Value = serde_json::from_str(out.trim().lines().last().unwrap_or_default())?;
    assert_eq!(again["handled"], json!([]), "{again}");

    // A new approver counts on the agent only once the set it pinned signed her in.
    let (r3_id, r3) = token_as(&bin(), &env.data, None, "default", "responder")?;
    let carol = keygen(dir.path(), "carol.key")?;
    let body = json!({"name": "carol", "public_key": carol, "owner_token": r3_id});
    assert_eq!(post(&format!("{api}/api/v1/response/approvers"), Some(&admin), &body)?.0, 201);
    let second_dir = dir.path().join("b");
    std::fs::create_dir_all(&second_dir)?;
    let (mut second, exe2, sha2) = victim(&second_dir)?;
    let ask = |reason: &str| -> anyhow::Result<String> {
        let rule = json!({"name": "stop", "kind": "handling", "actions": [
            {"action": "Proc_Terminate", "process": {"executable": exe2, "sha256": sha2}}]});
        let body = json!({"rule": rule, "targets": [agent], "reason": reason});
        let (status, req) = post(&format!("{api}/api/v1/response/requests"), Some(&analyst), &body)?;
        anyhow::ensure!(status == 201, "{req}");
        let id = req["id"].as_str().unwrap().to_owned();
        let (_, once) = hand_in(&api, &r3, &id, &sign(dir.path(), &req, "carol.key")?)?;
        let (status, done) = hand_in(&api, &r1, &id, &sign(dir.path(), &once, "alice.key")?)?;
        anyhow::ensure!(status == 200 && done["state"] == "approved", "{done}");
        Ok(id)
    };
    let early = ask("carol's first")?;
    let sets = format!("{api}/api/v1/response/approver-sets");
    let (status, proposed) = post(&sets, Some(&admin), &json!({}))?;
    assert_eq!((status, proposed["version"].as_i64()), (201, Some(1)), "{proposed}");
    let change_file = |p: &Value| json!({"id": "set", "command": p["change"]});
    let approve_set = |tok: &str, a: &Approval| {
        post(&format!("{sets}/1/approvals"), Some(tok), &json!({"public_key": a.key, "sig": a.sig}))
    };
    let (_, half) = approve_set(&r1, &sign(dir.path(), &change_file(&proposed), "alice.key")?)?;
    assert_eq!(half["state"], "proposed", "{half}");
    let (_, out) = respond("2")?;
    let refused: Value = serde_json::from_str(out.trim().lines().last().unwrap_or_default())?;
    assert_eq!(refused["handled"][0]["outcome"], "refused", "{refused}");
    assert!(refused["handled"][0]["detail"].as_str().unwrap_or_default().contains(&carol), "{refused}");
    assert!(second.try_wait()?.is_none(), "carol's approval did not count yet");
    let (_, shown) = get(&format!("{api}/api/v1/response/requests/{early}"), Some(&analyst))?;
    assert_eq!(shown["targets"][0]["state"], "refused", "{shown}");
    assert_eq!(shown["phase"], "refused", "{shown}");
    let (_, adopted) = approve_set(&r2, &sign(dir.path(), &change_file(&half), "bob.key")?)?;
    assert_eq!(adopted["state"], "adopted", "{adopted}");
    ask("carol's second")?;
    let (_, out) = respond("2")?;
    let done: Value = serde_json::from_str(out.trim().lines().last().unwrap_or_default())?;
    assert_eq!(done["handled"][0]["outcome"], "executed", "{done}");
    assert_eq!(second.wait()?.signal(), Some(9), "carol counts once the set signed her in");
    eprintln!(
        "response delivery: approved terminate carried out once by agent {agent}, result signed and stored"
    );
    eprintln!(
        "approver sets: a key registered after enrollment counted only once the pinned set signed it in"
    );
    Ok(())
}
