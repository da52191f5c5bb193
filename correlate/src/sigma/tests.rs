//! Sigma semantics, one behaviour per test, on rules and events written here.

use super::*;
use serde_json::json;

fn rule(yaml: &str) -> Rule {
    let mut rules = load(yaml, &Pipeline::cordon_ecs());
    assert_eq!(rules.len(), 1);
    rules.remove(0).unwrap_or_else(|e| panic!("{e}"))
}

fn refused(yaml: &str) -> RuleError {
    load(yaml, &Pipeline::cordon_ecs()).remove(0).expect_err("the rule must be refused")
}

fn ev(v: serde_json::Value) -> FlatEvent {
    FlatEvent(v.as_object().cloned().unwrap())
}

fn det(detection: &str) -> String {
    format!("title: t\nid: r1\nlogsource: {{product: windows}}\ndetection:\n{detection}\nlevel: high\n")
}

#[test]
fn plain_values_are_case_insensitive_equality_with_wildcards() {
    let r = rule(&det("  sel:\n    Image: 'C:\\Windows\\System32\\cmd.exe'\n  condition: sel"));
    assert!(r.matches(&ev(json!({"Image": "c:\\windows\\system32\\CMD.EXE"}))));
    assert!(!r.matches(&ev(json!({"Image": "c:\\windows\\system32\\cmd.exe.bak"}))));
    assert!(!r.matches(&ev(json!({"CommandLine": "cmd.exe"}))), "a missing field never equals a value");
    let r = rule(&det("  sel:\n    Image: '*\\\\powershell?.exe'\n  condition: sel"));
    assert!(r.matches(&ev(json!({"Image": "C:\\x\\powershell5.exe"}))));
    assert!(!r.matches(&ev(json!({"Image": "C:\\x\\powershell.exe"}))));
}

#[test]
fn contains_startswith_endswith_and_all() {
    let r = rule(&det(
        "  sel:\n    CommandLine|contains|all:\n      - '-nop'\n      - 'hidden'\n  condition: sel",
    ));
    assert!(r.matches(&ev(json!({"CommandLine": "powershell -NoP -w HIDDEN"}))));
    assert!(!r.matches(&ev(json!({"CommandLine": "powershell -nop"}))), "all values must occur");
    let r =
        rule(&det("  sel:\n    CommandLine|contains:\n      - '-nop'\n      - 'hidden'\n  condition: sel"));
    assert!(r.matches(&ev(json!({"CommandLine": "powershell -nop"}))), "a list is an OR");
    let r = rule(&det(
        "  sel:\n    Image|endswith: '.docx.exe'\n    User|startswith: 'CORP\\'\n  condition: sel",
    ));
    assert!(r.matches(&ev(json!({"Image": "C:\\Users\\a\\Invoice.docx.exe", "User": "corp\\alice"}))));
    assert!(!r.matches(&ev(json!({"Image": "C:\\Users\\a\\Invoice.docx.exe", "User": "other\\alice"}))));
}

#[test]
fn regex_is_case_sensitive_unless_i() {
    let r = rule(&det("  sel:\n    CommandLine|re: 'jndi:(ldap|rmi)://'\n  condition: sel"));
    assert!(r.matches(&ev(json!({"CommandLine": "${jndi:ldap://x}"}))));
    assert!(!r.matches(&ev(json!({"CommandLine": "${JNDI:LDAP://x}"}))));
    let r = rule(&det("  sel:\n    CommandLine|re|i: 'jndi:(ldap|rmi)://'\n  condition: sel"));
    assert!(r.matches(&ev(json!({"CommandLine": "${JNDI:LDAP://x}"}))));
    let e = refused(&det("  sel:\n    CommandLine|re: '(unclosed'\n  condition: sel"));
    assert_eq!(e.class, "regex", "{e}");
    let e = refused(&det("  sel:\n    CommandLine|re: 'a{1000}{1000}'\n  condition: sel"));
    assert_eq!(e.class, "regex", "an oversized regex is refused at load: {e}");
}

#[test]
fn cidr_exists_null_numbers_and_fieldref() {
    let r = rule(&det(
        "  sel:\n    DestinationIp|cidr:\n      - '10.0.0.0/8'\n      - '192.168.0.0/16'\n  condition: sel",
    ));
    assert!(r.matches(&ev(json!({"DestinationIp": "10.2.3.4"}))));
    assert!(!r.matches(&ev(json!({"DestinationIp": "8.8.8.8"}))));
    let r = rule(&det("  sel:\n    ParentImage|exists: false\n  condition: sel"));
    assert!(r.matches(&ev(json!({"Image": "x"}))) && !r.matches(&ev(json!({"ParentImage": "y"}))));
    let r = rule(&det("  sel:\n    OriginalFileName: null\n  condition: sel"));
    assert!(r.matches(&ev(json!({"Image": "x"}))) && r.matches(&ev(json!({"OriginalFileName": null}))));
    assert!(!r.matches(&ev(json!({"OriginalFileName": "a.exe"}))));
    // The specification keeps null and the empty string apart, as rules' filters do.
    assert!(!r.matches(&ev(json!({"OriginalFileName": ""}))), "empty is not null");
    let r = rule(&det("  sel:\n    OriginalFileName: ''\n  condition: sel"));
    assert!(r.matches(&ev(json!({"OriginalFileName": ""}))) && !r.matches(&ev(json!({"Image": "x"}))));
    let r = rule(&det("  sel:\n    EventID: 4625\n  condition: sel"));
    assert!(r.matches(&ev(json!({"EventID": 4625}))) && r.matches(&ev(json!({"EventID": "4625"}))));
    assert!(!r.matches(&ev(json!({"EventID": 4624}))));
    let r = rule(&det("  sel:\n    DestinationPort|gte: 1024\n  condition: sel"));
    assert!(
        r.matches(&ev(json!({"DestinationPort": 8080}))) && !r.matches(&ev(json!({"DestinationPort": 443})))
    );
    let r = rule(&det("  sel:\n    User|fieldref: TargetUserName\n  condition: sel"));
    assert!(r.matches(&ev(json!({"User": "Bob", "TargetUserName": "bob"}))));
    assert!(!r.matches(&ev(json!({"User": "bob", "TargetUserName": "eve"}))));
}

#[test]
fn encodings_base64_wide_and_windash() {
    // PowerShell -EncodedCommand carries UTF-16LE text in base64.
    let payload = super::value::base64(&super::value::utf16("prefix IEX (New-Object Net.WebClient)", false));
    let r = rule(&det("  sel:\n    CommandLine|wide|base64offset|contains: 'IEX ('\n  condition: sel"));
    assert!(r.matches(&ev(json!({"CommandLine": format!("powershell -enc {payload}")}))));
    assert!(
        !r.matches(&ev(json!({"CommandLine": format!("powershell -enc {}", payload.to_lowercase())}))),
        "base64 is case-sensitive"
    );
    let r = rule(&det("  sel:\n    CommandLine|base64|contains: 'http://'\n  condition: sel"));
    assert!(r.matches(&ev(json!({"CommandLine": "x aHR0cDovLw== y"}))));
    let r = rule(&det("  sel:\n    CommandLine|windash|contains: ' -enc '\n  condition: sel"));
    for c in ["powershell -enc AAA", "powershell /enc AAA", "powershell \u{2013}enc AAA"] {
        assert!(r.matches(&ev(json!({"CommandLine": c}))), "{c}");
    }
    assert!(!r.matches(&ev(json!({"CommandLine": "powershell enc AAA"}))));
}

#[test]
fn arrays_match_element_by_element_never_as_json_text() {
    // Windows' Application log keeps its event data as a `Data` list.
    let r = rule(&det("  sel:\n    Data|contains: '\\\\\\\\'\n  condition: sel"));
    let local = ev(json!({"Data": ["C:\\Program Files\\Google\\Update\\helper.msi", "2128"]}));
    assert!(!r.matches(&local), "one backslash per separator: the JSON text's escapes must not count");
    assert!(r.matches(&ev(json!({"Data": ["x", "\\\\fileserver\\share\\a.msi"]}))), "a UNC path");
    let r = rule(&det("  sel:\n    Data: '2128'\n  condition: sel"));
    assert!(r.matches(&local), "any element equals");
}

#[test]
fn rules_for_another_product_never_run_on_windows_event_logs() {
    let yaml = "title: t\nid: l1\nlogsource: {product: linux}\ndetection:\n  keywords: ['AAAA']\n  condition: keywords\n";
    let r = load(yaml, &Pipeline::windows_flat()).remove(0).unwrap();
    let record = ev(
        json!({"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1, "CommandLine": "echo AAAAAAAA"}),
    );
    assert!(!r.matches(&record));
    // The category's and the service's conditions both hold for a rule that names both.
    let yaml = "title: t\nid: s1\nlogsource: {category: process_creation, product: windows, service: security}\n\
                detection:\n  sel: {CommandLine|contains: AAAA}\n  condition: sel\n";
    let r = load(yaml, &Pipeline::windows_flat()).remove(0).unwrap();
    assert!(!r.matches(&record), "a Sysmon record is not from the Security channel");
}

#[test]
fn keywords_search_every_string() {
    let with_mods = rule(&det(
        "  keywords:\n    '|contains|all':\n      - 'jndi'\n      - 'ldap'\n  condition: keywords",
    ));
    assert!(with_mods.matches(&ev(json!({"a": "${jndi:ldap://x}"}))));
    assert!(!with_mods.matches(&ev(json!({"a": "${jndi:rmi://x}"}))), "all keywords must occur");
    let r = rule(&det("  keywords:\n    - '${jndi:'\n    - 'Log4Shell'\n  condition: keywords"));
    assert!(r.matches(&ev(json!({"UserAgent": "Mozilla ${JNDI:ldap://1.2.3.4/a}"}))));
    assert!(!r.matches(&ev(json!({"UserAgent": "Mozilla"}))));
}

#[test]
fn conditions_with_filters_lists_of_maps_and_patterns() {
    let r = rule(&det(concat!(
        "  selection_img:\n    - Image|endswith: '\\java.exe'\n    - OriginalFileName: 'java.exe'\n",
        "  selection_child:\n    CommandLine|contains: ['cmd', 'powershell']\n",
        "  filter_main:\n    CommandLine|contains: 'update-check'\n",
        "  condition: all of selection_* and not 1 of filter_*"
    )));
    assert!(r.matches(&ev(json!({"Image": "C:\\jdk\\bin\\java.exe", "CommandLine": "cmd /c whoami"}))));
    assert!(r.matches(&ev(json!({"OriginalFileName": "java.exe", "CommandLine": "powershell -c id"}))));
    assert!(!r.matches(&ev(json!({"Image": "C:\\jdk\\bin\\java.exe", "CommandLine": "cmd update-check"}))));
    assert!(!r.matches(&ev(json!({"Image": "C:\\jdk\\bin\\javaw.exe", "CommandLine": "cmd"}))));
    let why = r.explain(&ev(json!({"Image": "C:\\jdk\\bin\\java.exe", "CommandLine": "cmd /c whoami"})));
    assert!(why.iter().any(|m| m.field == "Image" && m.value.ends_with("java.exe")), "{why:?}");
    assert!(why.iter().any(|m| m.selection == "selection_child" && m.field == "CommandLine"), "{why:?}");
    assert!(why.iter().all(|m| m.selection != "filter_main"), "filters are not the why: {why:?}");
}

#[test]
fn metadata_tags_and_unknown_techniques() {
    let r = rule(
        "title: Java spawns a shell\nid: 11111111-2222-3333-4444-555555555555\nstatus: test\nlevel: critical\n\
         tags: [attack.execution, attack.t1059.001, attack.t1999, cve.2021-44228]\n\
         logsource: {category: process_creation, product: windows}\n\
         detection:\n  sel:\n    ParentImage|endswith: '\\java.exe'\n  condition: sel\n",
    );
    assert_eq!((r.level, r.level.number()), (Level::Critical, 5));
    assert_eq!(r.techniques, vec!["T1059.001"]);
    assert_eq!(r.tactics, vec!["execution"]);
    assert_eq!(r.unknown_tags, vec!["attack.t1999"]);
}

#[test]
fn rules_run_on_cordon_records_through_the_pipeline() {
    let r = rule(
        "title: t\nid: r\nlogsource: {category: process_creation, product: windows}\n\
         detection:\n  sel:\n    Image|endswith: '.docx.exe'\n    ParentImage|endswith: '\\explorer.exe'\n  condition: sel\n",
    );
    assert_eq!(r.fields()[0].target, "process.executable");
    let line = |category: &str| {
        json!({
            "@timestamp": "2026-11-23T10:00:00Z",
            "event": {"category": category, "action": "start"},
            "host": {"name": "WIN-DAKEQI"},
            "process": {"executable": "C:\\Users\\a\\Invoice.docx.exe", "parent": {"executable": "C:\\Windows\\explorer.exe"}}
        })
        .to_string()
    };
    let parse = |l: String| decode(&serde_json::from_str(&l).unwrap());
    assert!(r.matches(&parse(line("process"))));
    assert!(!r.matches(&parse(line("file"))), "the logsource gate: only process starts");
}

/// An ECS event decoded as ingest decodes it (time and host filled in when missing).
pub(crate) fn decode(event: &serde_json::Value) -> schemas::Record {
    let mut e = event.clone();
    let obj = e.as_object_mut().unwrap();
    obj.entry("@timestamp").or_insert(json!("2026-11-23T10:00:00Z"));
    obj.entry("host").or_insert(json!({"name": "HOST-1"}));
    let ch = schemas::decode::Channel {
        tenant: "default",
        agent: "a",
        message_key: "1:1",
        stream_seq: 1,
        received: schemas::time::parse_rfc3339_micros("2026-11-23T10:00:00Z").unwrap(),
    };
    schemas::decode::decode_line(e.to_string().as_bytes(), 1, &ch, &schemas::decode::Limits::default())
        .unwrap_or_else(|r| panic!("{r:?}: {e}"))
}

#[test]
fn unsupported_constructs_are_refused_with_their_class() {
    assert_eq!(refused(&det("  sel:\n    Image|expand: '%x%'\n  condition: sel")).class, "placeholder");
    assert_eq!(refused(&det("  sel:\n    Image|frobnicate: 'x'\n  condition: sel")).class, "modifier");
    assert_eq!(refused(&det("  sel:\n    Image: x\n  condition: sel | count() > 5")).class, "condition");
    assert_eq!(refused(&det("  sel:\n    Image: x\n  condition: nosuch")).class, "condition");
    assert_eq!(refused("title: t\ncorrelation: {type: event_count}\n").class, "correlation");
    assert_eq!(refused("title: t\ndetection: [\n").class, "yaml");
}

#[test]
fn a_rule_for_one_os_runs_on_that_os_and_on_events_that_do_not_say() {
    let r = rule(
        "title: t\nid: r1\nlogsource: {product: windows, category: process_creation}\ndetection:\n  sel:\n    CommandLine|contains: 'whoami'\n  condition: sel\n",
    );
    let on = |os: Option<&str>| {
        let mut host = json!({"name": "h"});
        if let Some(os) = os {
            host["os"] = json!({"family": os});
        }
        r.matches(&decode(&json!({"event": {"category": "process", "action": "start"},
            "host": host, "process": {"command_line": "whoami /all"}})))
    };
    assert!(on(Some("windows")) && on(None));
    assert!(!on(Some("linux")), "a Windows rule never runs on a Linux host's events");
    // A rule for a product no Cordon source produces loads but never runs.
    let zeek = rule(
        "title: z\nid: z1\nlogsource: {product: zeek, service: http}\ndetection:\n  keywords: ['whoami']\n  condition: keywords\n",
    );
    assert!(zeek.inapplicable.is_some());
    assert!(!zeek.matches(&ev(json!({"CommandLine": "whoami"}))));
}

#[test]
fn a_strict_pipeline_never_runs_a_rule_whose_logsource_it_does_not_map() {
    let load_flat = |ls: &str| {
        let text = format!(
            "title: t\nid: r1\nlogsource: {ls}\ndetection:\n  sel:\n    EventID: 4663\n  condition: sel\n"
        );
        load(&text, &Pipeline::windows_flat()).remove(0).unwrap()
    };
    let unmapped = load_flat("{product: windows, category: file_access}");
    assert!(
        unmapped.inapplicable.as_deref().unwrap_or("").contains("file_access"),
        "{:?}",
        unmapped.inapplicable
    );
    assert!(!unmapped.matches(&ev(json!({"Channel": "Security", "EventID": 4663}))));
    let mapped = load_flat("{product: windows, service: security}");
    assert!(mapped.inapplicable.is_none());
    assert!(mapped.matches(&ev(json!({"Channel": "Security", "EventID": 4663}))));
    assert!(!mapped.matches(&ev(json!({"Channel": "System", "EventID": 4663}))), "another channel");
}

#[test]
fn withdrawn_rules_are_refused_as_withdrawn_and_authors_are_kept() {
    for status in ["deprecated", "unsupported"] {
        let text = det("  sel:\n    Image: x\n  condition: sel")
            .replace("level: high", &format!("status: {status}"));
        let e = refused(&text);
        assert_eq!(e.class, "withdrawn", "{status}");
        assert!(e.reason.contains(status), "{}", e.reason);
    }
    let r = rule(&format!("author: Zach Mathis\n{}", det("  sel:\n    Image: x\n  condition: sel")));
    assert_eq!(r.author.as_deref(), Some("Zach Mathis"));
}

/// A Windows record as the agent ships it: ECS columns, and the record's own fields under
/// `winlog.event_data` (a Security 4720, a user account created, has no column for its account).
fn account_created() -> schemas::Record {
    decode(&json!({
        "event": {"category": "eventlog", "action": "record", "code": "4720"},
        "host": {"name": "DC01", "os": {"family": "windows"}},
        "winlog": {"channel": "Security", "provider_name": "Microsoft-Windows-Security-Auditing",
                   "event_data": {"TargetUserName": "backdoor$", "SubjectUserName": "admin"}}
    }))
}

#[test]
fn rules_naming_the_channel_and_event_data_run_on_the_agents_windows_records() {
    // Hayabusa's form: the channel and event id in the detection, Windows field names throughout.
    let r = rule(
        "title: t\nid: r\nlogsource: {product: windows, service: security}\n\
         detection:\n  sel:\n    Channel: Security\n    EventID: 4720\n    TargetUserName|endswith: '$'\n  condition: sel\n",
    );
    let rec = account_created();
    assert!(r.matches(&RecordEvent::new(&rec)), "Channel, EventID and an empty column's own field");
    assert!(r.matches(&rec), "a bare record reads the same");
    let other_channel = rule(
        "title: t\nid: r\nlogsource: {product: windows}\n\
         detection:\n  sel:\n    Channel: System\n    EventID: 4720\n  condition: sel\n",
    );
    assert!(!other_channel.matches(&RecordEvent::new(&rec)));
    // A column that holds a value is what the rule reads (the event data is not searched then).
    let by_column = rule(
        "title: t\nid: r\nlogsource: {product: windows}\n\
         detection:\n  sel:\n    Computer: DC01\n  condition: sel\n",
    );
    assert!(by_column.matches(&RecordEvent::new(&rec)));
}

/// A value the pipeline says differently: Sigma's `Initiated: 'true'` (Sysmon's words) is ECS's
/// `network.direction` egress or outbound, for every rule that tests it.
#[test]
fn initiated_maps_to_the_network_direction() {
    let yaml = "title: t\nid: r1\nlogsource: {category: network_connection, product: linux}\ndetection:\n  \
                sel:\n    Initiated: 'true'\n    DestinationPort: 4444\n  condition: sel\nlevel: high\n";
    let r = rule(yaml);
    let flow = |dir: &str| {
        ev(json!({"event.category": "network", "network.direction": dir, "destination.port": 4444}))
    };
    assert!(r.matches(&flow("egress")) && r.matches(&flow("outbound")));
    assert!(!r.matches(&flow("ingress")) && !r.matches(&flow("inbound")));
    let inbound = rule(&yaml.replace("'true'", "false"));
    assert!(inbound.matches(&flow("ingress")) && !inbound.matches(&flow("egress")));
}
