//! What a target host's Security log says about access from elsewhere, when only the target logs it:
//! file share and named pipe access (5140, 5145: the source address, the share, the pipe or file),
//! and scheduled tasks registered (4698, with the logon session that did it, which the entity graph
//! ties back to the remote logon that opened the session). Logons (4624) and service installs
//! (4697) are in [`crate::evtx`]; each names its session in `winlog.logon.id`.

use serde_json::{Map, Value, json};

use crate::evtx::{put, s};

/// An address as Windows writes it (IPv4 sources in their IPv6-mapped form made plain), or `None`
/// for "-" and anything else that is not an address.
pub fn address(raw: Option<&str>) -> Option<&str> {
    let ip = raw?.strip_prefix("::ffff:").unwrap_or(raw?);
    ip.parse::<std::net::IpAddr>().is_ok().then_some(ip)
}

/// The account that acted (`Subject*`), and its logon session.
fn subject(flat: &Map<String, Value>, doc: &mut Map<String, Value>) {
    put(doc, "user.name", s(flat, "SubjectUserName").map(|v| json!(v)));
    put(doc, "user.domain", s(flat, "SubjectDomainName").map(|v| json!(v)));
    put(doc, "winlog.logon.id", s(flat, "SubjectLogonId").map(|v| json!(v)));
}

/// Normalises the Security records above into `doc`; `None` for any other record.
pub fn to_ecs(
    id: u64,
    flat: &Map<String, Value>,
    doc: &mut Map<String, Value>,
) -> Option<(&'static str, &'static str)> {
    if !flat.get("Channel").and_then(Value::as_str).is_some_and(|c| c.eq_ignore_ascii_case("Security")) {
        return None;
    }
    match id {
        5140 | 5145 => {
            subject(flat, doc);
            put(doc, "source.ip", address(s(flat, "IpAddress")).map(|v| json!(v)));
            put(doc, "source.port", s(flat, "IpPort").and_then(|p| p.parse::<i64>().ok()).map(|p| json!(p)));
            put(doc, "network.direction", Some(json!("inbound")));
            let share = s(flat, "ShareName").unwrap_or_default();
            let target = s(flat, "RelativeTargetName");
            let path = match target {
                Some(t) => format!("{}\\{t}", share.trim_end_matches('\\')),
                None => share.to_owned(),
            };
            put(doc, "file.path", (!path.is_empty()).then(|| json!(path)));
            // A named pipe is opened through the IPC$ share (svcctl, atsvc, samr...).
            let pipe = share.to_ascii_uppercase().ends_with("IPC$") && target.is_some();
            Some(("network", if pipe { "pipe-access" } else { "share-access" }))
        }
        4698 => {
            subject(flat, doc);
            // The task as the file Windows keeps it in.
            let name = s(flat, "TaskName").unwrap_or_default();
            let path = format!("C:\\Windows\\System32\\Tasks\\{}", name.trim_start_matches('\\'));
            put(doc, "file.path", (!name.is_empty()).then(|| json!(path)));
            put(doc, "file.name", name.rsplit('\\').next().filter(|n| !n.is_empty()).map(|n| json!(n)));
            Some(("configuration", "task-create"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ecs(id: u64, data: Value) -> Value {
        let mut flat = data.as_object().cloned().unwrap();
        flat.insert("EventID".into(), json!(id));
        flat.insert("Channel".into(), json!("Security"));
        flat.insert("Computer".into(), json!("FS01"));
        crate::evtx::to_ecs(&flat)
    }

    #[test]
    fn share_and_pipe_access_carry_the_source_address() {
        let e = ecs(
            5145,
            json!({"IpAddress": "::ffff:10.0.0.66", "IpPort": "50211", "ShareName": "\\\\*\\IPC$",
                                 "RelativeTargetName": "svcctl", "SubjectUserName": "alice", "SubjectLogonId": "0x3e7a1"}),
        );
        assert_eq!(
            (e["event"]["category"].as_str(), e["event"]["action"].as_str()),
            (Some("network"), Some("pipe-access"))
        );
        assert_eq!(
            (e["source"]["ip"].as_str(), e["source"]["port"].as_i64()),
            (Some("10.0.0.66"), Some(50211))
        );
        assert_eq!(e["file"]["path"], "\\\\*\\IPC$\\svcctl");
        assert_eq!(e["winlog"]["logon"]["id"], "0x3e7a1");
        let e = ecs(
            5140,
            json!({"IpAddress": "10.0.0.66", "ShareName": "\\\\*\\C$", "SubjectUserName": "alice"}),
        );
        assert_eq!(e["event"]["action"], "share-access");
        let local = ecs(5140, json!({"IpAddress": "-", "ShareName": "\\\\*\\C$"}));
        assert!(local["source"]["ip"].is_null(), "no address, no source");
    }

    #[test]
    fn a_registered_task_is_its_file_with_the_session_that_registered_it() {
        let e = ecs(
            4698,
            json!({"TaskName": "\\Microsoft\\Updater", "SubjectUserName": "alice", "SubjectLogonId": "0x99"}),
        );
        assert_eq!(
            (e["event"]["category"].as_str(), e["event"]["action"].as_str()),
            (Some("configuration"), Some("task-create"))
        );
        assert_eq!(e["file"]["path"], "C:\\Windows\\System32\\Tasks\\Microsoft\\Updater");
        assert_eq!(
            (e["file"]["name"].as_str(), e["winlog"]["logon"]["id"].as_str()),
            (Some("Updater"), Some("0x99"))
        );
    }
}
