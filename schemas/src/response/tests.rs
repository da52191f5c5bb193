use super::*;
use serde_json::json;

/// The talk's "Dark Cloud III" clean-up rule, as it printed it.
fn dark_cloud() -> Value {
    json!({
        "name": "Dark Cloud III clean-up",
        "kind": "cleanup",
        "actions": [
            {"action": "Proc_Module_Threads", "modules": ["upcfg.db", "DtCrashCatch.dll"], "condition": ""},
            {"action": "File_Delete", "filenames": ["upcfg.db", "DtCrashCatch.dll", "DrvSvc.zip"], "condition": "alldisk"},
            {"action": "File_repairMbr", "data": "backup",
             "condition": "[equal],[offset:0],[31 C0 FA 31 D8 8E D3 36 89 26 FE 7B BC FE 7B 1E]"},
            {"action": "Other_quickScan"}
        ]
    })
}

fn errors(v: Value) -> Vec<FieldError> {
    parse(&v).expect_err("malformed")
}

#[test]
fn the_talks_clean_up_rule_reads_and_runs_on_linux() {
    let rule = parse(&dark_cloud()).unwrap();
    assert_eq!(rule.kind, RuleKind::Cleanup);
    assert_eq!(rule.actions[3].instruction.name, "Other_QuickScan", "names match without regard to case");
    assert_eq!(
        rule.actions[2].condition,
        Some(Condition::Bytes(ByteCondition {
            equal: true,
            offset: 0,
            bytes: vec![
                0x31, 0xC0, 0xFA, 0x31, 0xD8, 0x8E, 0xD3, 0x36, 0x89, 0x26, 0xFE, 0x7B, 0xBC, 0xFE, 0x7B,
                0x1E
            ]
        }))
    );
    assert_eq!(rule.actions[1].condition, Some(Condition::Scope(Scope::AllDisk)));
    assert!(rule.plan(Platform::Linux).iter().all(|s| s.supported));
    assert!(rule.is_destructive());
    // The canonical form reads back to the same rule.
    let again = parse(&rule.to_json()).unwrap();
    assert_eq!(again.to_json(), rule.to_json());
}

#[test]
fn windows_only_instructions_are_unsupported_on_linux_and_say_so() {
    let rule = parse(&json!({"name": "x", "kind": "handling", "actions": [
        {"action": "Reg_Delete_Value", "key": "HKEY_LOCAL_MACHINE\\Software\\Microsoft\\Windows\\CurrentVersion\\Run", "value": "evil"},
        {"action": "Script_PWL", "script": "Stop-Process -Name x"},
        {"action": "Other_Disabled_Ip", "ip": "203.0.113.0/24", "expires_secs": 3600}]}))
    .unwrap();
    assert_eq!(rule.actions[0].args["key"], "HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Run");
    let plan = rule.plan(Platform::Linux);
    assert_eq!(plan.iter().map(|s| s.supported).collect::<Vec<_>>(), [false, false, true]);
    assert_eq!(plan[0].reason.as_deref(), Some("unsupported on linux"));
    assert!(rule.plan(Platform::Windows).iter().all(|s| s.supported));
}

#[test]
fn every_malformed_field_is_named() {
    let errs = errors(json!({"name": "", "kind": "sometimes", "colour": 1, "version": 7, "actions": [
        {"action": "File_Delete", "filenames": [], "condition": "alldisk_deep:101"},
        {"action": "Proc_Terminate", "process": {"pid": 4242}},
        {"action": "Other_Disabled_Port", "port": 70000, "protocol": "icmp"},
        {"action": "File_repairMbr", "data": "zz"},
        {"action": "Format_Disk"},
        {"action": "Script_File", "url": "http://example.com/x", "sha256": "abc", "argv": "-x"},
        {"action": "Task_Create", "name": "a/b", "schedule": "every day", "command": "true"},
        {"action": "File_Attribute", "path": "relative/x", "attributes": ["+sticky"]},
        {"action": "Other_NetOff", "allow": ["10.0.0.0/33"]},
        {"action": "Reg_Create", "key": "HKXX\\Software"},
        {"action": "Proc_Modify", "process": {"name": "x"}, "op": "pause"},
        {"action": "Other_Create_Mutex", "name": "m", "condition": "alldisk"},
        "File_Delete"
    ]}));
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    for want in [
        "/name",
        "/kind",
        "/colour",
        "/version",
        "/actions/0/filenames",
        "/actions/0/condition",
        "/actions/1/process",
        "/actions/2/port",
        "/actions/2/protocol",
        "/actions/3/data",
        "/actions/3/condition",
        "/actions/4/action",
        "/actions/5/url",
        "/actions/5/sha256",
        "/actions/5/argv",
        "/actions/6/name",
        "/actions/6/schedule",
        "/actions/7/path",
        "/actions/7/attributes",
        "/actions/8/allow",
        "/actions/9/key",
        "/actions/10/op",
        "/actions/11/condition",
        "/actions/12",
    ] {
        assert!(fields.contains(&want), "{want} is named: {errs:#?}");
    }
    assert_eq!(errs.len(), 24, "one error per malformed field: {errs:#?}");
}

#[test]
fn missing_required_fields_are_named() {
    let errs = errors(
        json!({"name": "x", "kind": "defence", "actions": [{"action": "File_Rename", "path": "/tmp/a"}]}),
    );
    assert_eq!(
        errs,
        [FieldError { field: "/actions/0/new_name".into(), message: "missing: File_Rename needs it".into() }]
    );
    assert_eq!(errors(json!({"name": "x", "kind": "cleanup", "actions": []}))[0].field, "/actions");
    assert_eq!(errors(json!([]))[0].field, "");
}

#[test]
fn byte_conditions_stay_inside_the_boot_record() {
    let rule = |c: &str| json!({"name": "x", "kind": "cleanup", "actions": [{"action": "File_repairMbr", "data": "backup", "condition": c}]});
    assert!(parse(&rule("[unequal],[offset:510],[55 AA]")).is_ok());
    assert!(errors(rule("[equal],[offset:511],[55 AA]"))[0].message.contains("512-byte"));
    assert!(errors(rule("[equal],[offset:x],[55]"))[0].message.contains("offset"));
}

#[test]
fn the_json_schema_has_every_instruction_with_its_fields() {
    let schema = json_schema();
    let items = schema["properties"]["actions"]["items"]["oneOf"].as_array().unwrap();
    assert_eq!(items.len(), INSTRUCTIONS.len());
    for (ins, s) in INSTRUCTIONS.iter().zip(items) {
        assert_eq!(s["properties"]["action"]["const"], ins.name);
        for f in ins.fields {
            assert!(s["properties"].get(f.name).is_some(), "{}: {}", ins.name, f.name);
            assert_eq!(s["required"].as_array().unwrap().iter().any(|r| r == f.name), f.required);
        }
        assert_eq!(s["x-platforms"].as_array().unwrap().len(), ins.platforms.len());
    }
    let names: std::collections::HashSet<&str> = INSTRUCTIONS.iter().map(|i| i.name).collect();
    assert_eq!(names.len(), INSTRUCTIONS.len(), "instruction names are unique");
}
