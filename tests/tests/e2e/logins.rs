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
