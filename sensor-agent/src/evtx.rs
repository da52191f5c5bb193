//! The Windows event log source: EVTX files (the `evtx` crate) read into flat Sigma-named records, then
//! normalised to Cordon's ECS events — Sysmon (process start, network connection, image load, file
//! create, registry, DNS) and Security (4624/4625 logons, 4648, Kerberos 4768/4771, 4688 process
//! start, 4657 registry value, 5156 connection, 4697 service install), System 7045,
//! SQL Server's logins in the Application log (18456, the audit's 33205: [`crate::evtx_sql`]). Every
//! EventData value also stays under `winlog.event_data`, so Sigma rules find fields Cordon has no
//! column for. One host per `Computer`.

use serde_json::{Map, Value, json};
use std::path::Path;

/// Reading an EVTX file failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {message}")]
pub struct EvtxError {
    /// The file.
    pub path: String,
    /// Why.
    pub message: String,
}

/// One Windows event log record as a flat Sigma event: `EventID`, `Channel`, `Computer`,
/// `Provider_Name`, `TimeCreated` from the System block, and every `EventData`/`UserData` value under
/// its own name.
pub fn flatten(record: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    let ev = &record["Event"];
    let sys = &ev["System"];
    let text = |v: &Value| -> Value {
        match v {
            Value::Object(o) if o.contains_key("#text") => o["#text"].clone(),
            other => other.clone(),
        }
    };
    out.insert("EventID".into(), text(&sys["EventID"]));
    out.insert("Channel".into(), text(&sys["Channel"]));
    out.insert("Computer".into(), text(&sys["Computer"]));
    out.insert("Provider_Name".into(), sys["Provider"]["#attributes"]["Name"].clone());
    out.insert("TimeCreated".into(), sys["TimeCreated"]["#attributes"]["SystemTime"].clone());
    fn walk(v: &Value, out: &mut Map<String, Value>) {
        if let Value::Object(o) = v {
            for (k, v) in o {
                if k == "#attributes" {
                    continue;
                }
                match v {
                    Value::Object(inner) if inner.contains_key("#text") => {
                        out.insert(k.clone(), inner["#text"].clone());
                    }
                    Value::Object(_) => walk(v, out),
                    other => {
                        out.insert(k.clone(), other.clone());
                    }
                }
            }
        }
    }
    walk(&ev["EventData"], &mut out);
    walk(&ev["UserData"], &mut out);
    name_access_rights(&mut out);
    crate::winjson::unspaced_names(&mut out);
    out
}

/// The access rights Windows writes as message-table codes in object access events' `AccessList`
/// (4656, 4663, 5145...), with the names Event Viewer shows for them (msobjs.dll).
const ACCESS_RIGHTS: [(&str, &str); 15] = [
    ("%%1537", "DELETE"),
    ("%%1538", "READ_CONTROL"),
    ("%%1539", "WRITE_DAC"),
    ("%%1540", "WRITE_OWNER"),
    ("%%1541", "SYNCHRONIZE"),
    ("%%1542", "ACCESS_SYS_SEC"),
    ("%%4416", "ReadData (or ListDirectory)"),
    ("%%4417", "WriteData (or AddFile)"),
    ("%%4418", "AppendData (or AddSubdirectory or CreatePipeInstance)"),
    ("%%4419", "ReadEA"),
    ("%%4420", "WriteEA"),
    ("%%4421", "Execute/Traverse"),
    ("%%4422", "DeleteChild"),
    ("%%4423", "ReadAttributes"),
    ("%%4424", "WriteAttributes"),
];

/// Names the access rights of an `AccessList` beside their codes (`%%4417` becomes
/// `%%4417 WriteData (or AddFile)`): Sigma rules test either form (`contains: '%%4417'`, `contains:
/// 'WriteData'`), and the record as read holds only the codes. Other codes are left as they are.
pub fn name_access_rights(flat: &mut Map<String, Value>) {
    let Some(Value::String(list)) = flat.get_mut("AccessList") else { return };
    if !list.contains("%%") {
        return;
    }
    let mut named = String::with_capacity(list.len() * 2);
    let mut rest = list.as_str();
    while let Some(i) = rest.find("%%") {
        named.push_str(&rest[..i]);
        let code_len = 2 + rest[i + 2..].bytes().take_while(u8::is_ascii_digit).count();
        let code = &rest[i..i + code_len];
        named.push_str(code);
        if let Some((_, name)) = ACCESS_RIGHTS.iter().find(|(c, _)| *c == code) {
            named.push(' ');
            named.push_str(name);
        }
        rest = &rest[i + code_len..];
    }
    named.push_str(rest);
    *list = named;
}

/// A record id and its flat event.
pub type FlatRecord = (u64, Map<String, Value>);

/// The records of an EVTX file as (record id, flat event).
pub fn read(path: &Path) -> Result<Vec<FlatRecord>, EvtxError> {
    let err = |m: String| EvtxError { path: path.display().to_string(), message: m };
    let mut parser = evtx::EvtxParser::from_path(path).map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    for r in parser.records_json_value() {
        let r = r.map_err(|e| err(e.to_string()))?;
        out.push((r.event_record_id, flatten(&r.data)));
    }
    Ok(out)
}

/// A text field of a flat record, `None` when absent, empty or Windows' "-".
pub(crate) fn s<'a>(flat: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    flat.get(k).and_then(Value::as_str).filter(|v| !v.is_empty() && *v != "-")
}

fn num(flat: &Map<String, Value>, k: &str) -> Option<i64> {
    match flat.get(k)? {
        Value::Number(n) => n.as_i64(),
        Value::String(t) => {
            t.trim().parse().ok().or_else(|| i64::from_str_radix(t.trim().trim_start_matches("0x"), 16).ok())
        }
        _ => None,
    }
}

fn basename(p: &str) -> &str {
    p.rsplit(['\\', '/']).next().unwrap_or(p)
}

/// Sets `path` (dotted) in `doc` when `v` is present.
pub(crate) fn put(doc: &mut Map<String, Value>, path: &str, v: Option<Value>) {
    if let Some(v) = v {
        schemas::record::insert_path(doc, path, v);
    }
}

/// Cordon's ECS event for a flat record.
pub fn to_ecs(flat: &Map<String, Value>) -> Value {
    let mut doc = Map::new();
    let channel = s(flat, "Channel").unwrap_or_default();
    let id = num(flat, "EventID").unwrap_or(0);
    let sysmon = channel == "Microsoft-Windows-Sysmon/Operational";
    let security = channel.eq_ignore_ascii_case("Security");
    let system = channel.eq_ignore_ascii_case("System");
    let time = s(flat, "TimeCreated").map(|t| json!(t));
    put(&mut doc, "@timestamp", time);
    put(&mut doc, "host.name", s(flat, "Computer").map(|v| json!(v)));
    put(&mut doc, "host.os.family", Some(json!("windows")));
    put(&mut doc, "event.code", Some(json!(id.to_string())));
    put(&mut doc, "winlog.channel", Some(json!(channel)));
    put(&mut doc, "winlog.provider_name", flat.get("Provider_Name").cloned());
    let str_of = |k: &str| s(flat, k).map(|v| json!(v));
    let int_of = |k: &str| num(flat, k).map(|v| json!(v));
    let user = |doc: &mut Map<String, Value>, k: &str| {
        if let Some(u) = s(flat, k) {
            match u.split_once('\\') {
                Some((d, n)) => {
                    put(doc, "user.domain", Some(json!(d)));
                    put(doc, "user.name", Some(json!(n)));
                }
                None => put(doc, "user.name", Some(json!(u))),
            }
        }
    };
    let process = |doc: &mut Map<String, Value>, image: &str| {
        if let Some(img) = s(flat, image) {
            put(doc, "process.executable", Some(json!(img)));
            put(doc, "process.name", Some(json!(basename(img))));
        }
        put(doc, "process.pid", int_of("ProcessId"));
        put(doc, "process.entity_id", str_of("ProcessGuid"));
    };
    let (category, action): (&str, &str) = match (sysmon, security, id) {
        (true, _, 1) => {
            process(&mut doc, "Image");
            put(&mut doc, "process.command_line", str_of("CommandLine"));
            put(&mut doc, "process.parent.executable", str_of("ParentImage"));
            put(&mut doc, "process.parent.name", s(flat, "ParentImage").map(|p| json!(basename(p))));
            put(&mut doc, "process.parent.command_line", str_of("ParentCommandLine"));
            put(&mut doc, "process.parent.pid", int_of("ParentProcessId"));
            put(&mut doc, "process.parent.entity_id", str_of("ParentProcessGuid"));
            user(&mut doc, "User");
            if let Some(h) = s(flat, "Hashes") {
                for pair in h.split(',') {
                    if let Some((k, v)) = pair.split_once('=') {
                        let field = match k.trim().to_ascii_uppercase().as_str() {
                            "MD5" => "process.hash.md5",
                            "SHA1" => "process.hash.sha1",
                            "SHA256" => "process.hash.sha256",
                            _ => continue,
                        };
                        put(&mut doc, field, Some(json!(v.trim().to_ascii_lowercase())));
                    }
                }
            }
            ("process", "start")
        }
        (true, _, 3) => {
            process(&mut doc, "Image");
            user(&mut doc, "User");
            put(&mut doc, "source.ip", str_of("SourceIp"));
            put(&mut doc, "source.port", int_of("SourcePort"));
            put(&mut doc, "destination.ip", str_of("DestinationIp"));
            put(&mut doc, "destination.port", int_of("DestinationPort"));
            put(&mut doc, "destination.domain", str_of("DestinationHostname"));
            put(&mut doc, "network.transport", str_of("Protocol"));
            let outbound = matches!(flat.get("Initiated"), Some(Value::Bool(true)))
                || s(flat, "Initiated") == Some("true");
            put(&mut doc, "network.direction", Some(json!(if outbound { "outbound" } else { "inbound" })));
            ("network", "connect")
        }
        (true, _, 7) => {
            process(&mut doc, "Image");
            put(&mut doc, "dll.path", str_of("ImageLoaded"));
            ("library", "load")
        }
        (true, _, 8 | 10) => {
            // CreateRemoteThread / ProcessAccess: the acting process is the source; the target
            // stays in the event data (TargetImage, GrantedAccess...) for rules.
            if let Some(img) = s(flat, "SourceImage") {
                put(&mut doc, "process.executable", Some(json!(img)));
                put(&mut doc, "process.name", Some(json!(basename(img))));
            }
            put(&mut doc, "process.pid", int_of("SourceProcessId"));
            put(
                &mut doc,
                "process.entity_id",
                str_of("SourceProcessGuid").or_else(|| str_of("SourceProcessGUID")),
            );
            user(&mut doc, "SourceUser");
            ("process", if id == 8 { "remote-thread" } else { "access" })
        }
        (true, _, 11) => {
            process(&mut doc, "Image");
            put(&mut doc, "file.path", str_of("TargetFilename"));
            put(&mut doc, "file.name", s(flat, "TargetFilename").map(|p| json!(basename(p))));
            ("file", "create")
        }
        (true, _, 12..=14) => {
            process(&mut doc, "Image");
            put(&mut doc, "registry.path", str_of("TargetObject"));
            put(&mut doc, "registry.data.strings", str_of("Details"));
            ("registry", "modify")
        }
        (true, _, 22) => {
            process(&mut doc, "Image");
            put(&mut doc, "dns.question.name", str_of("QueryName"));
            ("network", "dns-query")
        }
        (_, true, 4624 | 4625 | 4648 | 4768 | 4771) => {
            put(&mut doc, "user.name", str_of("TargetUserName"));
            put(&mut doc, "user.domain", str_of("TargetDomainName"));
            put(
                &mut doc,
                "winlog.logon.type",
                flat.get("LogonType").map(|v| json!(v.to_string().trim_matches('"'))),
            );
            // The session it opened (4624), which later records of the session name as theirs.
            put(&mut doc, "winlog.logon.id", str_of("TargetLogonId"));
            // Windows writes "-" (or "::1"/127.0.0.1 for local logons) where there is no remote address;
            // Kerberos events (4768, 4771) write IPv4 sources in their IPv6-mapped form.
            let ip = crate::evtx_remote::address(s(flat, "IpAddress"));
            put(&mut doc, "source.ip", ip.map(|ip| json!(ip)));
            // A Kerberos ticket request (4768) or pre-authentication (4771) with a failure code is a
            // failed attempt like a failed logon.
            let kerberos_failed =
                matches!(id, 4768 | 4771) && s(flat, "Status").is_some_and(|st| st != "0x0");
            let failed = id == 4625 || kerberos_failed;
            put(&mut doc, "event.outcome", Some(json!(if failed { "failure" } else { "success" })));
            if failed {
                let code = s(flat, "SubStatus").filter(|c| *c != "0x0").or_else(|| s(flat, "Status"));
                put(&mut doc, "event.reason", Some(json!(logon_failure_reason(code.unwrap_or_default()))));
            }
            ("authentication", "logon")
        }
        (_, true, 4697) | (false, false, 7045) if security || system => {
            // A service installed (4697 Security, 7045 Service Control Manager): its name and what it runs.
            put(&mut doc, "service.name", str_of("ServiceName"));
            put(&mut doc, "file.path", str_of("ServiceFileName").or_else(|| str_of("ImagePath")));
            user(&mut doc, "SubjectUserName");
            put(&mut doc, "winlog.logon.id", str_of("SubjectLogonId"));
            if s(flat, "SubjectUserName").is_none()
                && let Some(a) = s(flat, "AccountName")
            {
                put(&mut doc, "user.name", Some(json!(a)));
            }
            ("configuration", "service-install")
        }
        (_, true, 5156) => {
            // Windows Filtering Platform: a connection allowed. Source and destination are the
            // connection's initiator and responder whichever way it went.
            put(&mut doc, "source.ip", str_of("SourceAddress"));
            put(&mut doc, "source.port", int_of("SourcePort"));
            put(&mut doc, "destination.ip", str_of("DestAddress"));
            put(&mut doc, "destination.port", int_of("DestPort"));
            if let Some(app) = s(flat, "Application") {
                put(&mut doc, "process.executable", Some(json!(app)));
                put(&mut doc, "process.name", Some(json!(basename(app))));
            }
            put(&mut doc, "process.pid", int_of("ProcessID").or_else(|| int_of("ProcessId")));
            let dir = match s(flat, "Direction") {
                Some("%%14592") | Some("Inbound") => "inbound",
                _ => "outbound",
            };
            put(&mut doc, "network.direction", Some(json!(dir)));
            ("network", "connect")
        }
        (_, true, 4657) => {
            // A registry value changed (object access auditing): the key and value as one path, as
            // Sysmon writes `TargetObject`.
            let key = s(flat, "ObjectName").unwrap_or_default();
            let path = match s(flat, "ObjectValueName").filter(|v| !v.is_empty() && *v != "-") {
                Some(v) => format!("{key}\\{v}"),
                None => key.to_owned(),
            };
            put(&mut doc, "registry.path", Some(json!(path)));
            put(&mut doc, "registry.value", str_of("ObjectValueName"));
            put(&mut doc, "registry.data.strings", str_of("NewValue"));
            if let Some(img) = s(flat, "ProcessName") {
                put(&mut doc, "process.executable", Some(json!(img)));
                put(&mut doc, "process.name", Some(json!(basename(img))));
            }
            user(&mut doc, "SubjectUserName");
            ("registry", "modify")
        }
        (_, true, 4688) => {
            if let Some(img) = s(flat, "NewProcessName") {
                put(&mut doc, "process.executable", Some(json!(img)));
                put(&mut doc, "process.name", Some(json!(basename(img))));
            }
            put(&mut doc, "process.command_line", str_of("CommandLine"));
            put(&mut doc, "process.parent.executable", str_of("ParentProcessName"));
            put(&mut doc, "user.name", str_of("SubjectUserName"));
            ("process", "start")
        }
        _ => {
            let id = u64::try_from(id).unwrap_or(0);
            crate::evtx_remote::to_ecs(id, flat, &mut doc)
                .or_else(|| crate::evtx_sql::to_ecs(id, flat, &mut doc))
                .unwrap_or(("eventlog", "record"))
        }
    };
    put(&mut doc, "event.category", Some(json!(category)));
    put(&mut doc, "event.action", Some(json!(action)));
    // Everything the record said, under its own names, for rules on fields Cordon has no column for.
    let data: Map<String, Value> = flat
        .iter()
        .filter(|(k, _)| {
            !matches!(k.as_str(), "EventID" | "Channel" | "Computer" | "Provider_Name" | "TimeCreated")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    put(&mut doc, "winlog.event_data", Some(Value::Object(data)));
    Value::Object(doc)
}

/// The words for a logon failure's NTSTATUS code (4625 `SubStatus`/`Status`, 4771 `Status`).
fn logon_failure_reason(code: &str) -> &'static str {
    match code.to_ascii_lowercase().as_str() {
        "0xc0000064" | "0x6" => "unknown user name",
        "0xc000006a" | "0x18" => "bad password",
        "0xc000006d" => "unknown user name or bad password",
        "0xc0000234" | "0x12" => "account locked out",
        "0xc0000072" => "account disabled",
        "0xc000006f" => "outside logon hours",
        "0xc0000070" => "workstation restriction",
        "0xc0000071" | "0x17" => "password expired",
        "0xc0000193" => "account expired",
        "0xc0000133" | "0x25" => "clock skew",
        "0xc000015b" => "logon type not granted",
        "0xc0000224" => "password must change",
        _ => "unknown user name or bad password",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn access_rights_are_named_beside_their_codes() {
        let mut flat = serde_json::Map::new();
        flat.insert("AccessList".into(), serde_json::json!("%%1538\r\n\t\t\t\t%%4417\r\n\t\t\t\t%%9999 %%"));
        super::name_access_rights(&mut flat);
        assert_eq!(
            flat["AccessList"],
            "%%1538 READ_CONTROL\r\n\t\t\t\t%%4417 WriteData (or AddFile)\r\n\t\t\t\t%%9999 %%"
        );
        let mut other = serde_json::Map::new();
        other.insert("AccessList".into(), serde_json::json!(["%%4417"]));
        super::name_access_rights(&mut other);
        assert_eq!(other["AccessList"], serde_json::json!(["%%4417"]), "only text is named");
    }

    use super::*;

    fn sysmon1() -> Value {
        json!({"Event": {
            "System": {"Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}}, "EventID": 1,
                       "Channel": "Microsoft-Windows-Sysmon/Operational", "Computer": "WS-7",
                       "TimeCreated": {"#attributes": {"SystemTime": "2025-10-22T20:30:29.3190000Z"}}},
            "EventData": {"Image": "C:\\Windows\\System32\\cmd.exe", "CommandLine": "cmd /c whoami",
                          "ProcessId": 480, "ProcessGuid": "{5AB40FD1-3EE5-68F9-3A31-000000003B02}",
                          "ParentImage": "C:\\jdk\\bin\\java.exe", "User": "CORP\\svc",
                          "Hashes": "SHA1=AB,MD5=CD,SHA256=EF,IMPHASH=00", "OriginalFileName": "Cmd.Exe"}
        }})
    }

    #[test]
    fn sysmon_process_start_becomes_an_ecs_process_event() {
        let e = to_ecs(&flatten(&sysmon1()));
        assert_eq!(
            (e["event"]["category"].as_str(), e["event"]["action"].as_str()),
            (Some("process"), Some("start"))
        );
        assert_eq!(e["host"]["name"], "WS-7");
        assert_eq!(e["process"]["name"], "cmd.exe");
        assert_eq!(e["process"]["parent"]["executable"], "C:\\jdk\\bin\\java.exe");
        assert_eq!((e["user"]["domain"].as_str(), e["user"]["name"].as_str()), (Some("CORP"), Some("svc")));
        assert_eq!(
            (e["process"]["hash"]["md5"].as_str(), e["process"]["hash"]["sha256"].as_str()),
            (Some("cd"), Some("ef"))
        );
        assert_eq!(e["event"]["code"], "1");
        assert_eq!(e["winlog"]["event_data"]["OriginalFileName"], "Cmd.Exe", "every field stays");
    }

    #[test]
    fn an_audited_registry_value_change_is_a_registry_event_with_the_value_in_its_path() {
        let rec = json!({"Event": {
            "System": {"EventID": 4657, "Channel": "Security", "Computer": "WS1",
                       "TimeCreated": {"#attributes": {"SystemTime": "2025-10-22T20:30:29Z"}}},
            "EventData": {"ObjectName": "\\REGISTRY\\MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run",
                          "ObjectValueName": "updater", "NewValue": "C:\\Users\\Public\\u.exe",
                          "ProcessName": "C:\\Windows\\System32\\reg.exe", "SubjectUserName": "alice"}
        }});
        let e = to_ecs(&flatten(&rec));
        assert_eq!(
            (e["event"]["category"].as_str(), e["event"]["action"].as_str()),
            (Some("registry"), Some("modify"))
        );
        assert_eq!(
            e["registry"]["path"],
            "\\REGISTRY\\MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\\updater"
        );
        assert_eq!(
            (e["registry"]["data"]["strings"].as_str(), e["process"]["name"].as_str()),
            (Some("C:\\Users\\Public\\u.exe"), Some("reg.exe"))
        );
        assert_eq!(
            e["winlog"]["event_data"]["ObjectValueName"], "updater",
            "the record's own fields stay for rules"
        );
    }

    #[test]
    fn security_logon_failures_are_authentication_failures() {
        let rec = json!({"Event": {
            "System": {"EventID": {"#text": 4625, "#attributes": {"Qualifiers": 0}}, "Channel": "Security", "Computer": "DC1",
                       "TimeCreated": {"#attributes": {"SystemTime": "2025-10-22T20:30:29Z"}}},
            "EventData": {"TargetUserName": "admin", "TargetDomainName": "CORP", "LogonType": 3, "IpAddress": "10.0.0.7"}
        }});
        let e = to_ecs(&flatten(&rec));
        assert_eq!(
            (e["event"]["category"].as_str(), e["event"]["outcome"].as_str()),
            (Some("authentication"), Some("failure"))
        );
        assert_eq!(
            (e["user"]["name"].as_str(), e["source"]["ip"].as_str()),
            (Some("admin"), Some("10.0.0.7"))
        );
        assert_eq!(e["winlog"]["logon"]["type"], "3");
    }

    #[test]
    fn kerberos_ticket_and_preauthentication_failures_are_failed_attempts() {
        let kerberos = |id: u32, status: &str| {
            let rec = json!({"Event": {
                "System": {"EventID": id, "Channel": "Security", "Computer": "DC1",
                           "TimeCreated": {"#attributes": {"SystemTime": "2025-10-22T20:30:29Z"}}},
                "EventData": {"TargetUserName": "jdoe", "TargetDomainName": "CORP", "Status": status,
                              "IpAddress": "::ffff:10.0.0.9", "IpPort": "50123"}
            }});
            to_ecs(&flatten(&rec))
        };
        for id in [4768, 4771] {
            let bad = kerberos(id, "0x18");
            assert_eq!(
                (bad["event"]["category"].as_str(), bad["event"]["outcome"].as_str()),
                (Some("authentication"), Some("failure")),
                "{id}"
            );
            assert_eq!(bad["source"]["ip"], "10.0.0.9", "the IPv6-mapped form is read as IPv4");
            assert_eq!(bad["user"]["name"], "jdoe");
            assert_eq!(kerberos(id, "0x0")["event"]["outcome"], "success", "{id} with status 0 succeeded");
        }
    }
}
