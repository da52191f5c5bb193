//! Issue 5's first step end to end: the fleet login simulator's events, shipped through an agent,
//! come back from the lake as each host's hourly series, hour for hour (the oracle is the
//! simulator's own counts).

use super::{Env, bin};
use fixtures::logins::{LoginFleet, LoginSimConfig, Role};
use serde_json::json;
use std::time::Duration;
use tests::{ServerOptions, agent, counts, eventually, get};

#[test]
fn simulated_logins_come_back_as_hourly_series() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let tok = env.token.as_str();
    let fleet = LoginFleet::generate(&LoginSimConfig {
        hosts: 20,
        days: 3,
        seed: 5,
        first_weekday: 0,
        anomalies_per_kind: 0,
    });
    let server = fleet.hosts.iter().position(|h| h.role == Role::Server).unwrap();
    let ws = fleet.hosts.iter().position(|h| h.role == Role::Workstation).unwrap();
    // Day 1 of the simulation, placed in the past two days.
    let hour = 3_600_000_000i64;
    let base = anomaly::series::hour_floor(schemas::time::now_micros()) - 48 * hour - 24 * hour;
    let hours = 24..48;
    let mut lines = vec![
        json!({"scenario": "logins", "hosts": [
        {"agent": "srv", "name": fleet.hosts[server].name},
        {"agent": "ws", "name": fleet.hosts[ws].name}]})
        .to_string(),
    ];
    for (agent, h) in [("srv", server), ("ws", ws)] {
        for t in hours.clone() {
            for e in fleet.events_in_hour(h, t, base) {
                lines.push(json!({"at_ms": 0, "agent": agent, "event": e}).to_string());
            }
        }
    }
    let path = env.dir.path().join("logins.ndjson");
    std::fs::write(&path, lines.join("\n") + "\n")?;
    let sent = agent(&bin(), &env.nats.url, &env.spool(), &["replay", path.to_str().unwrap()])?;
    let acked = sent["events_acked"].as_u64().unwrap();
    assert_eq!(acked as usize, lines.len() - 1);
    eventually(Duration::from_secs(60), || Ok((counts(&env.server.api, tok)?.0 == acked).then_some(())))?;
    let (from, to) = (base + 24 * hour, base + 48 * hour);
    for h in [server, ws] {
        let name = tests::urlencode(&fleet.hosts[h].name);
        let url =
            format!("{}/api/v1/hosts/{name}/logins?from={}&to={}", env.server.api, from / 1000, to / 1000);
        let (status, v) = get(&url, Some(tok))?;
        assert_eq!(status, 200, "{v}");
        let s = &v["series"];
        assert_eq!(v["hours"], 24);
        let want = |x: &[u32]| json!(x[24..48].to_vec());
        assert_eq!(s["success"], want(&fleet.success[h]), "{}", fleet.hosts[h].name);
        assert_eq!(s["failure"], want(&fleet.failure[h]));
        if fleet.hosts[h].role == Role::Server {
            let interactive = s["by_type"]["2"].clone();
            let expected = want(&fleet.interactive[h]);
            assert!(
                interactive == expected
                    || (interactive.is_null() && fleet.interactive[h][24..48].iter().all(|x| *x == 0))
            );
        }
    }
    // A host with no logins: a series of zeros, not an error; a bad range: 400.
    let (status, v) = get(
        &format!("{}/api/v1/hosts/nobody/logins?from={}&to={}", env.server.api, from / 1000, to / 1000),
        Some(tok),
    )?;
    assert_eq!((status, v["series"]["success"].as_array().map(Vec::len)), (200, Some(24)));
    assert_eq!(
        get(
            &format!("{}/api/v1/hosts/x/logins?from={}&to={}", env.server.api, to / 1000, from / 1000),
            Some(tok)
        )?
        .0,
        400
    );
    Ok(())
}

/// Issue 5 end to end: two weeks of a simulated fleet shipped through agents, baselines fitted from
/// the lake, then a brute-force burst in the current hour becomes an anomaly alert at once, with
/// its explanation, its evidence (the events sent) and an incident; the host's forecast and fleet
/// band are served next to its series.
#[test]
fn a_burst_past_forecast_and_fleet_band_is_an_anomaly_alert() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let token = env.token.clone();
    let tok = token.as_str();
    let api = env.server.api.clone();
    let hour = 3_600_000_000i64;
    let (fleet, agents) = ship_history(&env)?;
    let (status, v) = tests::post(&format!("{api}/api/v1/baselines/refit"), Some(tok), &json!({}))?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["refit"]["hosts"], fleet.hosts.len(), "{v}");
    assert!(v["refit"]["forecasts"].as_u64().unwrap() >= 2 * fleet.hosts.len() as u64, "{v}");

    let ws = fleet.hosts.iter().position(|h| h.role == Role::Workstation).unwrap();
    let name = fleet.hosts[ws].name.clone();
    let (status, v) = get(&format!("{api}/api/v1/hosts/{}/logins", tests::urlencode(&name)), Some(tok))?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["forecast"]["logins"]["basis"], "forecast", "{}", v["forecast"]);
    assert_eq!(v["forecast"]["failures"]["hours"].as_array().map(Vec::len), Some(48));
    assert_eq!(v["fleet_band"]["group"], "workstations");
    assert_eq!(
        v["fleet_band"]["measures"]["logins"].as_array().map(Vec::len),
        v["hours"].as_u64().map(|n| n as usize)
    );

    // 60 failures in the current hour, from one address, within a minute.
    let first = ship_burst(&env, &agents[ws], &name)?;
    let anomalies = eventually(Duration::from_secs(60), || {
        let (_, v) = get(&format!("{api}/api/v1/anomalies"), Some(tok))?;
        let list = v["anomalies"].as_array().cloned().unwrap_or_default();
        Ok((!list.is_empty()).then_some(list))
    })?;
    let a = anomalies.iter().find(|a| a["host"] == name.as_str()).expect("an anomaly on the burst's host");
    let (_, doc) = get(&format!("{api}/api/v1/openapi.json"), Some(tok))?;
    let (_, listed) = get(&format!("{api}/api/v1/anomalies"), Some(tok))?;
    api::openapi::check_answer(&doc, "GET", "/api/v1/anomalies", &listed).map_err(anyhow::Error::msg)?;
    assert_eq!(a["measure"], "failures");
    assert_eq!(a["direction"], "above");
    assert_eq!(a["techniques"][0]["id"], "T1110");
    let why = a["explanation"].as_str().unwrap();
    assert!(
        why.starts_with("expected ") && why.contains("fleet p99") && why.contains("failed logins"),
        "{why}"
    );
    // Raised as soon as the count crossed both bounds, then raised again as its level grew: the
    // alert holds the events behind the count, all of them by the last raise.
    let alert_id = a["id"].as_str().unwrap().to_owned();
    let full = eventually(Duration::from_secs(30), || {
        let (_, v) = get(&format!("{api}/api/v1/alerts/{alert_id}"), Some(tok))?;
        Ok((v["alert"]["level"].as_u64() >= Some(4)).then_some(v))
    })?;
    assert!(full["alert"]["evidence"].as_array().unwrap().len() >= 20, "{}", full["alert"]);
    // Other hosts, and the history, raised nothing of this kind.
    assert!(
        anomalies.iter().all(|x| x["host"] == name.as_str() || x["measure"] != "failures"),
        "{anomalies:?}"
    );
    // It takes part in correlation like any alert: it is in an incident.
    let incident = eventually(Duration::from_secs(30), || {
        let (_, v) = get(&format!("{api}/api/v1/incidents"), Some(tok))?;
        let list = v["incidents"].as_array().cloned().unwrap_or_default();
        Ok(list
            .into_iter()
            .find(|i| i["hosts"].as_array().is_some_and(|h| h.iter().any(|x| x == name.as_str()))))
    })?;
    assert!(incident["id"].as_str().unwrap().starts_with("inc-"), "{incident}");

    // A report on demand for the day up to the end of this hour: the burst's host ranks first, with
    // its chart; the fleet summary counts the hosts that logged in; stored and served three ways.
    let to = anomaly::series::hour_floor(schemas::time::now_micros()) + hour;
    let period =
        json!({"from": schemas::time::format_micros(to - 24 * hour), "to": schemas::time::format_micros(to)});
    let (status, v) = tests::post(&format!("{api}/api/v1/reports/run"), Some(tok), &period)?;
    assert_eq!(status, 200, "{v}");
    api::openapi::check_answer(&doc, "POST", "/api/v1/reports/run", &v).map_err(anyhow::Error::msg)?;
    let r = &v["report"];
    assert_eq!(r["anomalies"][0]["host"], name.as_str(), "{}", r["anomalies"]);
    assert!(r["anomalies"][0]["level"].as_u64() >= Some(4));
    assert_eq!(r["hosts"][0]["host"], name.as_str());
    assert!(r["hosts"][0]["svg"].as_str().unwrap().starts_with("<svg"));
    // The hosts that logged in over the report's day: the history's last 23 hours (a host may have
    // none, as workstations on a Sunday) and the burst's host in this hour.
    let day = fleet.hours.saturating_sub(23)..fleet.hours;
    let active = (0..fleet.hosts.len())
        .filter(|&h| h == ws || day.clone().any(|t| !fleet.events_in_hour(h, t, 0).is_empty()))
        .count();
    assert_eq!(r["fleet"]["hosts"], active, "{}", r["fleet"]);
    assert_eq!(r["changes"]["previous"], serde_json::Value::Null);
    let id = r["id"].as_str().unwrap().to_owned();
    let (_, list) = get(&format!("{api}/api/v1/reports"), Some(tok))?;
    assert_eq!(list["reports"][0]["id"], id.as_str(), "{list}");
    let (status, html) = get(&format!("{api}/api/v1/reports/{id}?format=html"), Some(tok))?;
    let html = html.as_str().unwrap_or_default().to_owned();
    assert!(status == 200 && html.contains("<svg") && html.contains(&name), "{status} {html:.300}");
    let (_, csv) = get(&format!("{api}/api/v1/reports/{id}?format=csv"), Some(tok))?;
    let csv = csv.as_str().unwrap_or_default().to_owned();
    assert!(csv.lines().nth(1).is_some_and(|l| l.starts_with("1,") && l.contains(&name)), "{csv}");
    assert_eq!(get(&format!("{api}/api/v1/reports/{id}?format=pdf"), Some(tok))?.0, 400);
    assert_eq!(get(&format!("{api}/api/v1/reports/nope"), Some(tok))?.0, 404);
    let bad = json!({"from": "yesterday"});
    assert_eq!(tests::post(&format!("{api}/api/v1/reports/run"), Some(tok), &bad)?.0, 400);
    // The next report of the same schedule compares itself with this one.
    let (_, v) = tests::post(&format!("{api}/api/v1/reports/run"), Some(tok), &period)?;
    assert_eq!(v["report"]["changes"]["previous"], id.as_str());
    assert_eq!(v["report"]["changes"]["still_anomalous"][0], name.as_str());

    // A restart: the running counts of the hours kept come back from the lake, so the hour in
    // progress is judged on all of its logins.
    let running = |api: &str| -> anyhow::Result<serde_json::Value> {
        let (_, v) = get(&format!("{api}/api/v1/hosts/{}/logins", tests::urlencode(&name)), Some(tok))?;
        Ok(v["running"].clone())
    };
    let before = running(&api)?;
    let burst_hour = schemas::time::format_micros(anomaly::series::hour_floor(first));
    assert!(
        before.as_array().unwrap().iter().any(|h| h["hour"] == burst_hour.as_str() && h["failures"] == 60),
        "{before}"
    );
    let Env { server, nats, data, dir, .. } = env;
    server.kill();
    let server = tests::Server::start(&bin(), &data, &nats.url, &ServerOptions::default())?;
    // Every whole hour of the last two days comes back as it was (the oldest, cut by the window, may
    // be partial); the lake is read in the background after a restart, so this waits for it.
    let since =
        schemas::time::format_micros(anomaly::series::hour_floor(schemas::time::now_micros()) - 46 * hour);
    let recent = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|h| h["hour"].as_str() >= Some(since.as_str()))
            .cloned()
            .collect()
    };
    let mut last = serde_json::Value::Null;
    let waited = eventually(Duration::from_secs(60), || {
        last = running(&server.api)?;
        Ok((recent(&last) == recent(&before)).then_some(()))
    });
    let after = last;
    waited.map_err(|e| e.context(format!("before {before}\nafter {after}")))?;
    assert_eq!(recent(&after), recent(&before), "the running counts after the restart");
    assert!(
        recent(&after).iter().any(|h| h["hour"] == burst_hour.as_str() && h["failures"] == 60),
        "{after}"
    );
    drop(server);
    drop(nats);
    drop(dir);
    Ok(())
}

/// Sixteen days of a simulated 12-host fleet's logins, up to now, shipped through an agent and
/// counted in the lake: enough history for every host's own forecast. Returns the fleet and the
/// agent id of each host.
pub(crate) fn ship_history(env: &Env) -> anyhow::Result<(LoginFleet, Vec<String>)> {
    let tok = env.token.as_str();
    let api = env.server.api.as_str();
    let hour = 3_600_000_000i64;
    let days = 16;
    let now_hour = anomaly::series::hour_floor(schemas::time::now_micros());
    let base = now_hour - days as i64 * 24 * hour;
    // The simulation's weekdays are the real ones (1970-01-01 was a Thursday).
    let first_weekday = ((base / hour / 24 + 3) % 7) as usize;
    let fleet = LoginFleet::generate(&LoginSimConfig {
        hosts: 12,
        days,
        seed: 21,
        first_weekday,
        anomalies_per_kind: 0,
    });
    let agents: Vec<String> = (0..fleet.hosts.len()).map(|h| format!("a{h}")).collect();
    let hosts: Vec<_> =
        (0..fleet.hosts.len()).map(|h| json!({"agent": agents[h], "name": fleet.hosts[h].name})).collect();
    let mut lines = vec![json!({"scenario": "logins", "hosts": hosts}).to_string()];
    for (h, agent_id) in agents.iter().enumerate() {
        for t in 0..fleet.hours {
            for e in fleet.events_in_hour(h, t, base) {
                lines.push(json!({"at_ms": 0, "agent": agent_id, "event": e}).to_string());
            }
        }
    }
    let path = env.dir.path().join("history.ndjson");
    std::fs::write(&path, lines.join("\n") + "\n")?;
    let before = counts(api, tok)?.0;
    let sent = agent(&bin(), &env.nats.url, &env.spool(), &["replay", path.to_str().unwrap()])?;
    let acked = sent["events_acked"].as_u64().unwrap();
    assert_eq!(acked as usize, lines.len() - 1);
    eventually(Duration::from_secs(120), || Ok((counts(api, tok)?.0 == before + acked).then_some(())))?;

    Ok((fleet, agents))
}

/// 60 failed logins on `name` in the current hour, from one address, within a minute; returns the
/// first one's time.
pub(crate) fn ship_burst(env: &Env, agent_id: &str, name: &str) -> anyhow::Result<i64> {
    let now = schemas::time::now_micros();
    let first = (now - 60_000_000).max(anomaly::series::hour_floor(now));
    let step = (now - first) / 60;
    let burst: Vec<String> = (0..60)
        .map(|k| {
            let at = first + k * step;
            json!({"at_ms": 0, "agent": agent_id, "event": {
                "@timestamp": schemas::time::format_micros(at),
                "host": {"name": name},
                "cordon": {"host_group": "workstations"},
                "event": {"category": "authentication", "action": "logon", "outcome": "failure",
                          "reason": "unknown user name or bad password"},
                "user": {"name": format!("admin{k}"), "domain": "CORP"},
                "winlog": {"logon": {"type": "3"}},
                "source": {"ip": "203.0.113.9"},
            }})
            .to_string()
        })
        .collect();
    let header = json!({"scenario": "burst", "hosts": [{"agent": agent_id, "name": name}]}).to_string();
    let path = env.dir.path().join("burst.ndjson");
    std::fs::write(&path, [header].iter().chain(&burst).cloned().collect::<Vec<_>>().join("\n") + "\n")?;
    let sent = agent(&bin(), &env.nats.url, &env.spool(), &["replay", path.to_str().unwrap()])?;
    assert_eq!(sent["events_acked"], 60);
    Ok(first)
}

/// Issue 20, item 3: a server's auth log from 2019, replayed today, is baselined in its own time.
/// Three weeks of a quiet host (a few key logins each working hour, a failed password now and then)
/// with one hour of 40 failed passwords on its 18th day: far below the absolute ceiling, so only a
/// baseline of the host's own history before that day (in 2019, not the wall clock's weeks) finds
/// it. The alert carries the hour, its basis (the host's own forecast) and the hour's events.
#[test]
fn a_log_from_years_ago_is_baselined_in_its_own_time() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let tok = env.token.as_str();
    let api = env.server.api.as_str();
    let host = "db-legacy";
    let mut lines = Vec::new();
    let mut pid = 4000;
    let mut line = |day: u32, h: u32, m: u32, s: u32, msg: String| {
        pid += 1;
        lines.push(format!("Jan {day:>2} {h:02}:{m:02}:{s:02} {host} sshd[{pid}]: {msg}"));
    };
    let mut quiet_failures = 0;
    for day in 1..=21u32 {
        for h in 0..24u32 {
            let t = (day * 24 + h) as usize;
            let logins = if (8..18).contains(&h) { 2 + t * 7 % 3 } else { usize::from(t.is_multiple_of(5)) };
            for k in 0..logins as u32 {
                line(
                    day,
                    h,
                    5 + 10 * k,
                    0,
                    format!("Accepted publickey for deploy from 10.1.0.{} port {} ssh2", 10 + k, 40000 + t),
                );
            }
            if t % 11 == 3 {
                quiet_failures += 1;
                line(
                    day,
                    h,
                    47,
                    0,
                    format!("Failed password for root from 198.51.100.{} port {} ssh2", t % 200, 50000 + t),
                );
            }
            if (day, h) == (18, 10) {
                for k in 0..40u32 {
                    line(
                        day,
                        h,
                        20 + k / 30,
                        k * 2 % 60,
                        format!("Failed password for admin from 203.0.113.77 port {} ssh2", 30000 + k),
                    );
                }
            }
        }
    }
    let path = env.dir.path().join("auth.log.2019");
    std::fs::write(&path, lines.join("\n") + "\n")?;
    let sent =
        agent(&bin(), &env.nats.url, &env.spool(), &["logs", path.to_str().unwrap(), "--year", "2019"])?;
    assert_eq!(sent["events_acked"].as_u64(), Some(lines.len() as u64), "{sent}");
    assert!(quiet_failures > 30, "the history has failures of its own");

    let burst_hour = "2019-01-18T10:00:00.000000Z";
    let found = eventually(Duration::from_secs(90), || {
        let (_, v) = get(&format!("{api}/api/v1/anomalies"), Some(tok))?;
        let list = v["anomalies"].as_array().cloned().unwrap_or_default();
        Ok(list.iter().any(|a| a["host"] == host).then_some(list))
    })?;
    let mine: Vec<&serde_json::Value> = found.iter().filter(|a| a["host"] == host).collect();
    assert_eq!(mine.len(), 1, "one anomaly, the burst's hour: {mine:?}");
    let a = mine[0];
    assert_eq!(
        (a["first_seen"].as_str(), a["measure"].as_str()),
        (Some(burst_hour), Some("failures")),
        "{a}"
    );
    assert_eq!(a["observed"], 40, "{a}");
    assert_eq!(a["expected"]["basis"], "forecast", "judged on its own history: {a}");
    let why = a["explanation"].as_str().unwrap_or_default();
    assert!(why.starts_with("expected ") && why.ends_with("observed 40 failed logins"), "{why}");
    assert_eq!(a["evidence"].as_array().map(Vec::len), Some(40), "the hour's failures: {a}");
    // The day it carries is 2019's, ending at the burst.
    let series = a["series"].as_array().cloned().unwrap_or_default();
    assert_eq!(series.last().map(|h| h["hour"].clone()), Some(json!(burst_hour)), "{a}");
    Ok(())
}
