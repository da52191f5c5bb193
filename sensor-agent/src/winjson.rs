//! Windows events as JSON, in the layouts shippers write, read into the flat record the EVTX reader
//! makes ([`crate::evtx::flatten`]): `EventID`, `Channel`, `Computer`, `Provider_Name`, `TimeCreated`
//! and every event-data field under its own name.
//!
//! - flat (nxlog, OTRF's Mordor): `EventID`, `Channel`, `Hostname`, `SourceName`, the fields at the top;
//! - Winlogbeat 7 and 8 (ECS): `winlog.event_id`, `winlog.channel`, `winlog.computer_name`,
//!   `winlog.provider_name`, `winlog.event_data.*`, `@timestamp`;
//! - Winlogbeat 6: `event_id`, `log_name`, `computer_name`, `source_name`, `event_data.*`.
//!
//! Field names holding spaces (Defender's `Threat Name`) are also given without them (`ThreatName`),
//! the names Sigma rules use.

use serde_json::{Map, Value};

/// Where each of the record's own fields is found, per layout: (flat name, winlog.* name, Winlogbeat 6 name).
const SYSTEM: [(&str, &str, &str); 4] = [
    ("EventID", "event_id", "event_id"),
    ("Channel", "channel", "log_name"),
    ("Computer", "computer_name", "computer_name"),
    ("Provider_Name", "provider_name", "source_name"),
];

/// A Windows event in any of the layouts above as the flat record.
pub fn flat_from_json(mut obj: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    let nested = match obj.remove("winlog") {
        Some(Value::Object(w)) => Some(w),
        Some(other) => {
            obj.insert("winlog".into(), other);
            None
        }
        None => None,
    };
    let (system, data) = match nested {
        Some(mut w) => {
            let data = w.remove("event_data");
            (w, data)
        }
        None => {
            let data = obj.remove("event_data");
            let system =
                SYSTEM.iter().filter_map(|(_, _, v6)| Some(((*v6).to_owned(), obj.remove(*v6)?))).collect();
            (system, data)
        }
    };
    for (flat, beat, beat6) in SYSTEM {
        if let Some(v) = system.get(beat).or_else(|| system.get(beat6)) {
            out.insert(flat.into(), v.clone());
        }
    }
    if let Some(Value::Object(d)) = data {
        for (k, v) in d {
            out.entry(k).or_insert(v);
        }
    }
    // The flat layout's own names, and whatever else the line holds, for rules on them.
    for (k, v) in obj {
        let key = match k.as_str() {
            "Hostname" if !out.contains_key("Computer") => "Computer".to_owned(),
            "SourceName" if !out.contains_key("Provider_Name") => "Provider_Name".to_owned(),
            _ => k,
        };
        out.entry(key).or_insert(v);
    }
    // The time: the record's own, else the shipper's zoned `@timestamp`, else NXLog's `EventTime`;
    // a time written without a zone (`2020-10-18 10:56:18.799`) is read as UTC.
    if let Some(t) =
        ["TimeCreated", "@timestamp", "EventTime"].iter().find_map(|k| out.get(*k).and_then(rfc3339))
    {
        out.insert("TimeCreated".into(), Value::String(t));
    }
    if let Some(v) = out.get("EventID").cloned() {
        out.insert("EventID".into(), number_if_digits(v));
    }
    unspaced_names(&mut out);
    crate::evtx::name_access_rights(&mut out);
    out
}

/// A time as RFC 3339: itself when it is one, or `2020-09-21 19:26:05[.fff]` read as UTC.
fn rfc3339(v: &Value) -> Option<String> {
    let t = v.as_str()?.trim();
    if schemas::time::parse_rfc3339_micros(t).is_some() {
        return Some(t.to_owned());
    }
    let (date, time) = t.split_once(' ')?;
    let candidate = format!("{date}T{time}Z");
    schemas::time::parse_rfc3339_micros(&candidate).map(|_| candidate)
}

/// `"4624"` as 4624 (Winlogbeat writes the id as text in some versions).
fn number_if_digits(v: Value) -> Value {
    match &v {
        Value::String(s) => s.parse::<u64>().map_or(v, Value::from),
        _ => v,
    }
}

/// Adds each field whose name holds spaces under the name without them (`Threat Name` ->
/// `ThreatName`), unless that name is taken.
pub fn unspaced_names(flat: &mut Map<String, Value>) {
    let spaced: Vec<(String, Value)> =
        flat.iter().filter(|(k, _)| k.contains(' ')).map(|(k, v)| (k.replace(' ', ""), v.clone())).collect();
    for (k, v) in spaced {
        flat.entry(k).or_insert(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    /// The same logon, in the three layouts, reads as the same flat record and the same ECS event.
    #[test]
    fn every_layout_reads_as_the_same_record() {
        let flat = obj(
            json!({"EventID": 4624, "Channel": "Security", "Hostname": "WS-7.lab.local", "SourceName": "Microsoft-Windows-Security-Auditing",
            "@timestamp": "2026-11-03T10:00:00.000Z", "TargetUserName": "alice", "LogonType": 3, "IpAddress": "10.0.0.9"}),
        );
        let beat8 = obj(json!({"@timestamp": "2026-11-03T10:00:00.000Z", "event": {"code": "4624"},
            "winlog": {"event_id": "4624", "channel": "Security", "computer_name": "WS-7.lab.local",
                       "provider_name": "Microsoft-Windows-Security-Auditing",
                       "event_data": {"TargetUserName": "alice", "LogonType": "3", "IpAddress": "10.0.0.9"}}}));
        let beat6 =
            obj(json!({"@timestamp": "2026-11-03T10:00:00.000Z", "event_id": 4624, "log_name": "Security",
            "computer_name": "WS-7.lab.local", "source_name": "Microsoft-Windows-Security-Auditing",
            "event_data": {"TargetUserName": "alice", "LogonType": "3", "IpAddress": "10.0.0.9"}}));
        let ecs: Vec<Value> =
            [flat, beat8, beat6].into_iter().map(|o| crate::evtx::to_ecs(&flat_from_json(o))).collect();
        for e in &ecs {
            assert_eq!(e["event"]["category"], "authentication", "{e}");
            assert_eq!(e["event"]["code"], "4624");
            assert_eq!(e["host"]["name"], "WS-7.lab.local");
            assert_eq!(e["user"]["name"], "alice");
            assert_eq!(e["source"]["ip"], "10.0.0.9");
            assert_eq!(e["winlog"]["logon"]["type"], "3");
            assert_eq!(e["@timestamp"], "2026-11-03T10:00:00.000Z");
        }
    }

    /// NXLog writes `EventTime` in the collector's local time without a zone: the zoned
    /// `@timestamp` wins, and a zoneless time alone is read as UTC, never left unreadable.
    #[test]
    fn the_time_is_always_one_a_decoder_reads() {
        let nxlog = |ts: Option<&str>| {
            let mut o = obj(json!({"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational",
                "Hostname": "WS5", "EventTime": "2020-09-21 19:26:05"}));
            if let Some(ts) = ts {
                o.insert("@timestamp".into(), json!(ts));
            }
            flat_from_json(o)
        };
        assert_eq!(nxlog(Some("2020-09-21T23:26:07.434Z"))["TimeCreated"], "2020-09-21T23:26:07.434Z");
        assert_eq!(nxlog(None)["TimeCreated"], "2020-09-21T19:26:05Z");
        assert_eq!(nxlog(None)["EventTime"], "2020-09-21 19:26:05", "the record's own field stays");
        let zoneless =
            flat_from_json(obj(json!({"EventID": 5156, "TimeCreated": "2020-10-18 10:56:18.799"})));
        assert_eq!(zoneless["TimeCreated"], "2020-10-18T10:56:18.799Z");
        let e = crate::evtx::to_ecs(&nxlog(None));
        assert!(schemas::time::parse_rfc3339_micros(e["@timestamp"].as_str().unwrap()).is_some(), "{e}");
    }

    #[test]
    fn spaced_field_names_are_also_given_without_spaces() {
        let defender = obj(
            json!({"winlog": {"event_id": 1116, "channel": "Microsoft-Windows-Windows Defender/Operational",
            "event_data": {"Threat Name": "Trojan:Win32/Meterpreter", "Path": "file:_C:\\x.exe"}}}),
        );
        let f = flat_from_json(defender);
        assert_eq!(f["ThreatName"], "Trojan:Win32/Meterpreter");
        assert_eq!(f["Threat Name"], "Trojan:Win32/Meterpreter", "the original name stays");
        assert_eq!(f["EventID"], 1116);
    }
}
