//! SQL Server's logins in the Windows Application log, as authentication events: 18456 (`Login
//! failed for user 'sa'. Reason: ... [CLIENT: 10.0.0.5]`, its parts in `EventData`'s unnamed `Data`
//! items) and the audit's 33205 (`action_id:LGIF` / `LGIS`, `succeeded:`, `server_principal_name:`,
//! `client_ip:` in one text). Both become `event.action: db-login`, like PostgreSQL's and MySQL's
//! refusals, so the database rules, the brute-force correlations and the login baselines count them.

use serde_json::{Map, Value, json};

/// Whether a record is SQL Server's (provider `MSSQLSERVER`, `MSSQL$INSTANCE`, `SQLAudit`...).
pub fn is_sql_server(flat: &Map<String, Value>) -> bool {
    let provider = flat.get("Provider_Name").and_then(Value::as_str).unwrap_or_default().to_ascii_uppercase();
    let channel = flat.get("Channel").and_then(Value::as_str).unwrap_or_default();
    channel.eq_ignore_ascii_case("Application")
        && (provider.starts_with("MSSQL") || provider.contains("SQLAUDIT"))
}

/// The `Data` items of a record's `EventData`, as text.
fn data(flat: &Map<String, Value>) -> Vec<String> {
    match flat.get("Data") {
        Some(Value::Array(items)) => {
            items.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect()
        }
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// The address in `[CLIENT: 10.0.0.5]`.
fn client(text: &str) -> Option<&str> {
    let rest = text.split_once("CLIENT:")?.1;
    let ip = rest.trim_start().split([']', ' ']).next()?.trim();
    ip.parse::<std::net::IpAddr>().is_ok().then_some(ip)
}

/// (outcome, user, source address, reason) of a SQL Server login record; `None` for its other
/// records.
pub fn login(id: u64, flat: &Map<String, Value>) -> Option<(&'static str, String, Option<String>, String)> {
    match id {
        18456 => {
            let d = data(flat);
            let user = d.first()?.trim().trim_matches('\'').to_owned();
            let reason = d.get(1).map(|r| r.trim().trim_start_matches("Reason:").trim().to_owned());
            let from = d.iter().find_map(|x| client(x)).map(str::to_owned);
            Some(("failure", user, from, reason.unwrap_or_else(|| "login failed".into())))
        }
        33205 => {
            let text = data(flat).join("\n");
            let field = |k: &str| {
                text.split(['\n', '\r']).find_map(|l| l.trim().strip_prefix(k)).map(|v| v.trim().to_owned())
            };
            let outcome = match field("action_id:")?.as_str() {
                "LGIF" => "failure",
                "LGIS" => "success",
                _ => return None,
            };
            let ok = field("succeeded:").map(|s| s.eq_ignore_ascii_case("true"));
            let outcome = if ok == Some(false) { "failure" } else { outcome };
            let user = field("server_principal_name:").unwrap_or_default();
            let from = field("client_ip:").filter(|ip| ip.parse::<std::net::IpAddr>().is_ok());
            let reason = field("additional_information:")
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| if outcome == "failure" { "login failed".into() } else { "login".into() });
            Some((outcome, user, from, reason))
        }
        _ => None,
    }
}

/// Fills `doc` with a SQL Server login; the (category, action) of the event, or `None` when the
/// record is not one.
pub fn to_ecs(
    id: u64,
    flat: &Map<String, Value>,
    doc: &mut Map<String, Value>,
) -> Option<(&'static str, &'static str)> {
    if !matches!(id, 18456 | 33205) || !is_sql_server(flat) {
        return None;
    }
    let (outcome, user, from, reason) = login(id, flat)?;
    let set = |doc: &mut Map<String, Value>, path: &str, v: Value| schemas::record::insert_path(doc, path, v);
    set(doc, "event.outcome", json!(outcome));
    set(doc, "event.reason", json!(reason));
    set(doc, "process.name", json!("sqlservr.exe"));
    if !user.is_empty() {
        set(doc, "user.name", json!(user));
    }
    if let Some(ip) = from {
        set(doc, "source.ip", json!(ip));
    }
    Some(("authentication", "db-login"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, provider: &str, data: Value) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("EventID".into(), json!(id));
        m.insert("Channel".into(), json!("Application"));
        m.insert("Provider_Name".into(), json!(provider));
        m.insert("Data".into(), data);
        m
    }

    #[test]
    fn a_refused_login_18456_is_a_failed_database_login() {
        let r = record(
            18456,
            "MSSQLSERVER",
            json!([
                "sa",
                " Reason: Password did not match that for the login provided.",
                " [CLIENT: 10.0.0.5]"
            ]),
        );
        let mut doc = Map::new();
        assert_eq!(to_ecs(18456, &r, &mut doc), Some(("authentication", "db-login")));
        let doc = Value::Object(doc);
        assert_eq!(doc["event"]["outcome"], "failure");
        assert_eq!(doc["user"]["name"], "sa");
        assert_eq!(doc["source"]["ip"], "10.0.0.5");
        assert_eq!(doc["event"]["reason"], "Password did not match that for the login provided.");
        // A named instance's provider, and a record of another provider, are told apart.
        assert!(
            to_ecs(18456, &record(18456, "MSSQL$SALES", json!(["app", "", ""])), &mut Map::new()).is_some()
        );
        assert!(to_ecs(18456, &record(18456, "Other", json!(["app"])), &mut Map::new()).is_none());
    }

    /// Through the agent's whole normaliser and Cordon's pack: a database login failure alert on
    /// each, and ten from one client within minutes a brute force.
    #[test]
    fn refused_sql_server_logins_raise_the_database_rule_and_a_brute_force() {
        let tagger =
            correlate::sigma::Tagger::cordon_pack(schemas::policy::Policy::cordon_default()).unwrap();
        let mut state = tagger.correlator();
        let (ch, limits) = (
            schemas::decode::Channel {
                tenant: "t",
                agent: "sql-1",
                message_key: "1:1",
                stream_seq: 1,
                received: 0,
            },
            schemas::decode::Limits::default(),
        );
        let mut fired = Vec::new();
        for i in 0..10 {
            let mut r = record(
                18456,
                "MSSQLSERVER",
                json!([
                    format!("user{i}"),
                    " Reason: Could not find a login matching the name provided.",
                    " [CLIENT: 198.51.100.8]"
                ]),
            );
            r.insert("Computer".into(), json!("SQL-1"));
            r.insert("TimeCreated".into(), json!(format!("2026-11-03T10:00:{:02}.000000Z", i * 3)));
            let mut e = crate::evtx::to_ecs(&r);
            e["event"]["id"] = json!(format!("sql-{i}"));
            let mut rec = schemas::decode::decode_line(e.to_string().as_bytes(), i, &ch, &limits).unwrap();
            let (found, hits) = tagger.tag_and_hits(&mut rec);
            assert!(found.iter().any(|d| d.rule == "Database authentication failure"), "{found:?}");
            fired.extend(tagger.correlate(&mut state, &rec, &hits).into_iter().map(|d| d.rule));
        }
        assert!(fired.iter().any(|r| r == "Brute force (many failed logons from one source)"), "{fired:?}");
    }

    #[test]
    fn the_audits_33205_logins_are_read_from_its_text() {
        let text = "Audit event: event_time:2026-11-03 10:00:00.1234567\nsequence_number:1\naction_id:LGIF\nsucceeded:false\nserver_principal_name:svc_report\nclient_ip:192.0.2.44\nadditional_information:<action_info><reason>bad password</reason></action_info>";
        let mut doc = Map::new();
        assert_eq!(
            to_ecs(33205, &record(33205, "MSSQLSERVER", json!([text])), &mut doc),
            Some(("authentication", "db-login"))
        );
        let doc = Value::Object(doc);
        assert_eq!(
            (doc["event"]["outcome"].as_str(), doc["user"]["name"].as_str()),
            (Some("failure"), Some("svc_report"))
        );
        assert_eq!(doc["source"]["ip"], "192.0.2.44");
        let ok = text.replace("LGIF", "LGIS").replace("succeeded:false", "succeeded:true");
        let mut doc = Map::new();
        to_ecs(33205, &record(33205, "MSSQLSERVER", json!([ok])), &mut doc).unwrap();
        assert_eq!(doc["event"]["outcome"], "success");
        let other = text.replace("LGIF", "SL");
        assert!(
            to_ecs(33205, &record(33205, "MSSQLSERVER", json!([other])), &mut Map::new()).is_none(),
            "a SELECT is not a login"
        );
    }
}
