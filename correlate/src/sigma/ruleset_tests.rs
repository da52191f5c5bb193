//! The rule set against each rule alone and against every rule evaluated: the prefilter, the
//! logsource lookups, anchors and slots never change an answer.

use super::*;
use crate::sigma::{FlatEvent, Pipeline, load};
use serde_json::json;

fn rules() -> Vec<Rule> {
    let docs = [
        ("cmd", "  s:\n    Image|endswith: '\\cmd.exe'\n    CommandLine|contains: '/c'\n  condition: s"),
        ("enc", "  s:\n    CommandLine|contains|windash: '-enc'\n  condition: s"),
        ("b64", "  s:\n    CommandLine|base64offset|contains: 'http://'\n  condition: s"),
        ("kw", "  keywords:\n    - 'mimikatz'\n  condition: keywords"),
        ("not", "  f:\n    Image|endswith: '\\svchost.exe'\n  condition: not f"),
        ("uni", "  s:\n    CommandLine|contains: 'ÄRGER'\n  condition: s"),
        ("cased", "  s:\n    CommandLine|contains|cased: 'SeDebug'\n  condition: s"),
        ("glob", "  s:\n    TargetFilename: '*\\temp\\\\*.ps1'\n  condition: s"),
        ("num", "  s:\n    ProcessId|gt: 1000\n  condition: s"),
        ("pid", "  s:\n    ProcessId: 4242\n  condition: s"),
        ("zero", "  s:\n    ProcessId: 0\n  condition: s"),
        ("int", "  s:\n    EventID: 4688\n    NewProcessName|endswith: '\\whoami.exe'\n  condition: s"),
    ];
    // A rule for another product loads but never runs on Windows records.
    let linux = "title: lx\nid: lx\nlogsource: {product: linux, category: process_creation}\n\
                 detection:\n  s:\n    CommandLine|contains: 'whoami'\n  condition: s\n";
    let pipeline = Pipeline::windows_flat();
    docs.iter()
        .flat_map(|(id, d)| {
            let text = format!(
                "title: {id}\nid: {id}\nlogsource: {{product: windows, category: process_creation}}\ndetection:\n{d}\n"
            );
            load(&text, &pipeline)
        })
        .chain(load(linux, &pipeline))
        .map(Result::unwrap)
        .collect()
}

fn ev(fields: serde_json::Value) -> FlatEvent {
    let mut m = json!({"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1});
    m.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
    FlatEvent(m.as_object().unwrap().clone())
}

#[test]
fn the_prefilter_gives_the_same_matches_as_evaluating_every_rule() {
    let set = RuleSet::new(rules());
    let stats = set.prefilter_stats();
    assert_eq!((stats.keyed, stats.always), (10, 2), "`not` and `gt` rules cannot be keyed");
    assert_eq!(stats.inapplicable, 1, "the Linux rule");
    let lx = set.rules().iter().find(|r| r.id == "lx").unwrap();
    assert!(lx.inapplicable.as_deref().unwrap_or("").contains("\"linux\""), "{:?}", lx.inapplicable);
    let b64 = super::super::value::base64(b"xx http://evil/a.ps1");
    let cases = [
        (
            json!({"Image": "C:\\Windows\\System32\\CMD.EXE", "CommandLine": "cmd /c whoami"}),
            vec!["cmd", "not"],
        ),
        (json!({"Image": "C:\\x\\svchost.exe", "CommandLine": "powershell \u{2013}EnC abc"}), vec!["enc"]),
        (json!({"Image": "C:\\x\\svchost.exe", "CommandLine": format!("powershell -e {b64}")}), vec!["b64"]),
        (json!({"Image": "C:\\x\\svchost.exe", "User": "MIMIKATZ"}), vec!["kw"]),
        (json!({"Image": "C:\\x\\svchost.exe", "CommandLine": "echo ärger"}), vec!["uni"]),
        (json!({"Image": "C:\\x\\svchost.exe", "CommandLine": "x sedebug"}), vec![]),
        (json!({"Image": "C:\\x\\svchost.exe", "CommandLine": "x SeDebugPrivilege"}), vec!["cased"]),
        (json!({"Image": "C:\\x\\svchost.exe", "TargetFilename": "C:\\Users\\a\\TEMP\\x.PS1"}), vec!["glob"]),
        (json!({"Image": "C:\\x\\svchost.exe", "ProcessId": 4242}), vec!["num", "pid"]),
        (json!({"Image": "C:\\x\\svchost.exe", "ProcessId": " 04242"}), vec!["num", "pid"]),
        (json!({"Image": "C:\\x\\svchost.exe", "ProcessId": "-0"}), vec!["zero"]),
    ];
    for (fields, want) in cases {
        let e = ev(fields.clone());
        let got: Vec<&str> = set.matching(&e).iter().map(|r| r.id.as_str()).collect();
        assert_eq!(got, want, "{fields}");
        assert_eq!(set.matching_indices(&e), set.matching_indices_unfiltered(&e), "{fields}");
    }
    // Another logsource's gate keeps every rule out (a Security 4688 is a process creation too).
    let other = FlatEvent(
        json!({"Channel": "Security", "EventID": 4624, "CommandLine": "mimikatz"})
            .as_object()
            .unwrap()
            .clone(),
    );
    assert!(set.matching_indices(&other).is_empty());
}

/// The set's shortcuts (event ids and channels looked up, literals anchored, fields read once
/// into slots) answer as each rule alone does.
#[test]
fn the_set_answers_as_each_rule_alone() {
    let docs = [
        (
            "cleared",
            "security",
            "  a:\n    EventID: 517\n    Provider_Name: Security\n  b:\n    EventID: 1102\n    Provider_Name: Microsoft-Windows-Eventlog\n  condition: 1 of a or b",
        ),
        ("svc", "system", "  s:\n    EventID: 7045\n    ImagePath|startswith: 'C:\\Temp'\n  condition: s"),
        ("exact", "security", "  s:\n    TargetUserName: 'admin'\n  condition: s"),
        ("tail", "security", "  s:\n    ProcessName|endswith: '\\net.exe'\n  condition: s"),
        ("uni", "security", "  s:\n    TargetUserName: 'ÄDMIN'\n  condition: s"),
    ];
    let pipeline = Pipeline::windows_flat();
    let rules: Vec<Rule> = docs
        .iter()
        .flat_map(|(id, service, d)| {
            load(
                &format!("title: {id}\nid: {id}\nlogsource: {{product: windows, service: {service}}}\ndetection:\n{d}\n"),
                &pipeline,
            )
        })
        .map(Result::unwrap)
        .collect();
    let set = RuleSet::new(rules.clone());
    let events = [
        json!({"Channel": "Security", "EventID": 517, "Provider_Name": "Security"}),
        json!({"Channel": "SECURITY", "EventID": "517", "Provider_Name": "security"}),
        json!({"Channel": "Security", "EventID": 517, "Provider_Name": "Microsoft-Windows-Security-Auditing"}),
        json!({"Channel": "Security", "EventID": 1102, "Provider_Name": "Microsoft-Windows-Eventlog"}),
        json!({"Channel": "System", "EventID": 7045, "ImagePath": "c:\\temp\\x.exe"}),
        json!({"Channel": "System", "EventID": 7045, "ImagePath": "D:\\C:\\Temp\\x.exe"}),
        json!({"Channel": "Security", "EventID": 4625, "TargetUserName": "ADMIN"}),
        json!({"Channel": "Security", "EventID": 4625, "TargetUserName": "admins"}),
        json!({"Channel": "Security", "EventID": 4625, "TargetUserName": "ädmin"}),
        json!({"Channel": "Security", "EventID": 4688, "ProcessName": "C:\\Windows\\NET.EXE"}),
        json!({"Channel": "Security", "EventID": 4688, "ProcessName": "C:\\net.exe.bak"}),
        json!({"Channel": ["Application", "Security"], "EventID": 4688, "ProcessName": "C:\\net.exe"}),
        json!({"Channel": "Sécurité", "EventID": 4688, "ProcessName": "C:\\net.exe"}),
        json!({"EventID": 4688, "ProcessName": "C:\\net.exe"}),
    ];
    let mut fired = 0;
    for e in events {
        let flat = FlatEvent(e.as_object().unwrap().clone());
        let alone: Vec<usize> = (0..rules.len()).filter(|&i| rules[i].matches(&flat)).collect();
        assert_eq!(set.matching_indices(&flat), alone, "{e}");
        fired += alone.len();
    }
    assert_eq!(fired, 8, "the cases exercise matches as well as misses");
}
