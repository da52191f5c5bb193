//! Issue 17, first part: response rules over the API. The instruction set's JSON Schema is served;
//! the talk's "Dark Cloud III" clean-up rule checks and plans for Linux; every malformed field of a
//! rule gets a 400 that names it by its JSON pointer.

use super::Env;
use serde_json::{Value, json};
use tests::{ServerOptions, get, post};

fn rule(actions: Value) -> Value {
    json!({"rule": {"name": "t", "kind": "handling", "actions": actions}})
}

#[test]
fn rules_are_checked_field_by_field_and_planned_per_platform() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (api, tok) = (env.server.api.clone(), env.token.clone());
    let (status, schema) = get(&format!("{api}/api/v1/response/schema"), Some(&tok))?;
    assert_eq!(status, 200, "{schema}");
    let served: Vec<&str> = schema["properties"]["actions"]["items"]["oneOf"]
        .as_array()
        .expect("one schema per instruction")
        .iter()
        .filter_map(|s| s["properties"]["action"]["const"].as_str())
        .collect();
    let table: Vec<&str> = schemas::response::INSTRUCTIONS.iter().map(|i| i.name).collect();
    assert_eq!(served, table);
    for needed in [
        "Reg_Rename",
        "Task_Delete",
        "File_DelText",
        "File_repairMbr",
        "Proc_Module_Threads",
        "Script_PWL",
        "Other_Create_Mutex",
        "Other_QuickScan",
    ] {
        assert!(served.contains(&needed), "{needed}");
    }

    let url = format!("{api}/api/v1/response/validate");
    let dark_cloud = json!({"rule": {"name": "Dark Cloud III clean-up (Linux)", "kind": "cleanup", "actions": [
        {"action": "Proc_Module_Threads", "modules": ["libupcfg.so", "DtCrashCatch.so"], "condition": ""},
        {"action": "File_Delete", "filenames": ["upcfg.db", "DtCrashCatch.so", "DrvSvc.zip"], "condition": "alldisk_deep:8"},
        {"action": "File_repairMbr", "device": "/var/tmp/disk.img", "data": "backup",
         "condition": "[equal],[offset:0],[31 C0 FA 31 D8 8E D3 36 89 26 FE 7B BC FE 7B 1E]"},
        {"action": "Other_QuickScan", "clean": true, "condition": "alldisk"}]}, "platforms": ["linux"]});
    let (status, checked) = post(&url, Some(&tok), &dark_cloud)?;
    assert_eq!(status, 200, "{checked}");
    assert_eq!(checked["destructive"], true);
    let steps = checked["plan"]["linux"].as_array().expect("a Linux plan");
    assert_eq!(steps.len(), 4);
    assert!(steps.iter().all(|s| s["supported"] == true), "{checked}");
    assert_eq!(checked["rule"]["actions"][1]["condition"], "alldisk_deep:8");

    let (status, mixed) =
        post(&url, Some(&tok), &rule(json!([{"action": "Reg_Delete", "key": "HKCU\\Software\\x"}])))?;
    assert_eq!(status, 200, "{mixed}");
    assert_eq!(mixed["plan"]["linux"][0]["reason"], "unsupported on linux");
    assert_eq!(mixed["plan"]["windows"][0]["supported"], true);

    // One malformed field per case: the answer is a 400 that names exactly it.
    let cases = [
        (rule(json!([{"action": "Format_Disk"}])), "/rule/actions/0/action"),
        (
            rule(json!([{"action": "File_Delete", "filenames": ["../../etc"], "condition": "alldisk"}])),
            "/rule/actions/0/filenames",
        ),
        (
            rule(json!([{"action": "File_Delete", "filenames": ["x"], "condition": "everywhere"}])),
            "/rule/actions/0/condition",
        ),
        (rule(json!([{"action": "Proc_Terminate", "process": {"pid": 4242}}])), "/rule/actions/0/process"),
        (rule(json!([{"action": "Proc_Terminate"}])), "/rule/actions/0/process"),
        (rule(json!([{"action": "Other_Disabled_Port", "port": 0}])), "/rule/actions/0/port"),
        (rule(json!([{"action": "Other_Disabled_Ip", "ip": "300.1.1.1"}])), "/rule/actions/0/ip"),
        (
            rule(
                json!([{"action": "File_repairMbr", "data": "backup", "condition": "[equal],[offset:600],[55 AA]"}]),
            ),
            "/rule/actions/0/condition",
        ),
        (
            rule(json!([{"action": "Script_File", "url": "ftp://x/y", "sha256": "0".repeat(64)}])),
            "/rule/actions/0/url",
        ),
        (
            rule(json!([{"action": "Task_Create", "name": "t", "schedule": "@hourly", "command": "x"}])),
            "/rule/actions/0/schedule",
        ),
        (rule(json!([{"action": "Other_NetOff", "allow": ["nats.example"]}])), "/rule/actions/0/allow"),
        (
            rule(json!([{"action": "File_Rename", "path": "/tmp/a", "new_name": "b", "force": true}])),
            "/rule/actions/0/force",
        ),
        (
            json!({"rule": {"name": "t", "kind": "forever", "actions": [{"action": "Other_NetOn"}]}}),
            "/rule/kind",
        ),
        (json!({"rule": {"name": "t", "kind": "cleanup", "actions": []}}), "/rule/actions"),
    ];
    for (body, field) in &cases {
        let (status, answer) = post(&url, Some(&tok), body)?;
        assert_eq!(status, 400, "{field}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_rule", "{answer}");
        let named: Vec<&str> = answer["error"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["field"].as_str())
            .collect();
        assert_eq!(named, [*field], "{answer}");
    }
    let (status, answer) = post(&url, Some(&tok), &json!({"rule": {}, "targets": ["a"]}))?;
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("bad_body")), "{answer}");
    eprintln!(
        "response rules: {} instructions served; {} malformed rules refused, each naming its field",
        served.len(),
        cases.len()
    );
    Ok(())
}

/// Approvers sign on their own machines with `cordon approver keygen` and `cordon approve`; the
/// agent's verifier accepts a destructive command only once two registered approvers signed it.
#[test]
fn approvers_sign_commands_on_their_own_machines() -> anyhow::Result<()> {
    use schemas::response::command::{ApproverSet, CommandBody, Refusal, ReplayGuard, SignedCommand, verify};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    let keygen = |name: &str| -> anyhow::Result<String> {
        let out = dir.path().join(name).display().to_string();
        let (code, public) = tests::run(&super::bin(), &["approver", "keygen", "--out", &out])?;
        anyhow::ensure!(code == 0, "keygen {name}: {public}");
        Ok(public.trim().to_owned())
    };
    let (alice, bob) = (keygen("alice.key")?, keygen("bob.key")?);
    let mode = std::fs::metadata(dir.path().join("alice.key"))?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key is private");
    let (code, _) = tests::run(
        &super::bin(),
        &["approver", "keygen", "--out", &dir.path().join("alice.key").display().to_string()],
    )?;
    assert_ne!(code, 0, "an existing key is never overwritten");

    let now = schemas::time::now_micros();
    let rule = json!({"name": "stop conti", "kind": "handling", "actions": [
        {"action": "Proc_Terminate", "process": {"executable": "/tmp/conti", "sha256": "ab".repeat(32)}}]});
    let body = CommandBody {
        id: "cmd-1".into(),
        tenant: "default".into(),
        rule,
        targets: [("agent-1".to_owned(), 1)].into(),
        issued_at: now,
        expires_at: now + 300_000_000,
        nonce: format!("{now:x}"),
        reason: "incident 1".into(),
    };
    let request = dir.path().join("cmd-1.json");
    std::fs::write(&request, serde_json::to_string(&SignedCommand::new(&body))?)?;
    let approve = |key: &str| {
        let (r, k) = (request.display().to_string(), dir.path().join(key).display().to_string());
        tests::run(&super::bin(), &["approve", &r, "--key", &k])
    };
    let read = || -> anyhow::Result<SignedCommand> {
        Ok(serde_json::from_str(&std::fs::read_to_string(&request)?)?)
    };
    let set = ApproverSet::new([alice.clone(), bob.clone()], 2).map_err(anyhow::Error::msg)?;
    let (code, by) = approve("alice.key")?;
    assert_eq!((code, by.trim()), (0, alice.as_str()));
    assert_ne!(approve("alice.key")?.0, 0, "one approver signs once");
    let once = read()?;
    assert_eq!(
        verify(&once, "agent-1", &set, &mut ReplayGuard::default(), now).unwrap_err(),
        Refusal::TooFewApprovals { have: 1, need: 2 }
    );
    assert_eq!(approve("bob.key")?.0, 0);
    let (accepted, _) = verify(&read()?, "agent-1", &set, &mut ReplayGuard::default(), now)
        .map_err(|e| anyhow::anyhow!("two approvals: {e}"))?;
    assert_eq!(accepted, body);
    Ok(())
}
