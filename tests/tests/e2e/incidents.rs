//! The cross-host attack graph end to end: the Log4j/Conti scenario, a second copy of the attack on
//! other hosts and a simulated fleet are shipped at the same time by separate agents; the scenario
//! must come out as one incident whose path is workstation -> web server -> C2 domain, the copy as
//! another, and the fleet in neither. Then the investigation API over it, and a restart.

use super::{Env, bin};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use tests::{ServerOptions, agent_summary, counts, eventually, get, spawn_agent};

pub(crate) fn incidents(api: &str, tok: &str, q: &str) -> anyhow::Result<Vec<Value>> {
    let (status, v) = get(&format!("{api}/api/v1/incidents?{q}"), Some(tok))?;
    anyhow::ensure!(status == 200, "incidents: {v}");
    Ok(v["incidents"].as_array().cloned().unwrap_or_default())
}

pub(crate) fn alert_ids(api: &str, tok: &str, host: &str) -> anyhow::Result<BTreeSet<String>> {
    let (status, v) =
        get(&format!("{api}/api/v1/alerts?limit=1000&host={}", tests::urlencode(host)), Some(tok))?;
    anyhow::ensure!(status == 200, "alerts: {v}");
    Ok(v["alerts"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect())
}

pub(crate) fn ids_in(inc: &Value) -> BTreeSet<String> {
    inc["alerts"].as_array().unwrap().iter().map(|a| a["alert"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn the_attack_is_one_incident_with_its_path_and_the_rest_stays_apart() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (n, tok) = (&env.nats, env.token.clone());
    let other = env.dir.path().join("elsewhere.ndjson");
    std::fs::write(&other, fixtures::scenario::log4j_conti_elsewhere("OTHER"))?;
    let spool = |s: &str| env.dir.path().join(format!("spool-{s}"));
    let agents = vec![
        spawn_agent(
            &bin(),
            &n.url,
            &spool("fleet"),
            &["simulate", "--hosts", "40", "--rate", "400", "--duration", "4"],
        )?,
        spawn_agent(&bin(), &n.url, &spool("a"), &["replay", "builtin:log4j-conti"])?,
        spawn_agent(&bin(), &n.url, &spool("b"), &["replay", other.to_str().unwrap()])?,
    ];
    let mut acked = 0;
    for a in agents {
        let (code, summary) = agent_summary(a)?;
        assert_eq!(code, 0, "{summary}");
        acked += summary["events_acked"].as_u64().unwrap();
    }
    let api = env.server.api.clone();
    eventually(Duration::from_secs(60), || Ok((counts(&api, &tok)?.0 == acked).then_some(())))?;

    // Every alert of the workstation and the exploited server, from the alert queue (the oracle is
    // the alert list, not the incident): all in one incident, and nothing else in it.
    let pc = alert_ids(&api, &tok, "WIN-DAKEQI")?;
    let web = alert_ids(&api, &tok, "Web服务器-北机房")?;
    assert!(!pc.is_empty() && web.len() >= 3, "pc {pc:?} web {web:?}");
    let expected: BTreeSet<String> = pc.iter().chain(&web).cloned().collect();
    let inc = eventually(Duration::from_secs(30), || {
        let list = incidents(&api, &tok, "host=WIN-DAKEQI")?;
        Ok((list.len() == 1 && ids_in(&list[0]).is_superset(&expected)).then(|| list[0].clone()))
    })?;
    let south = alert_ids(&api, &tok, "Web服务器-南机房")?;
    let mut allowed = expected.clone();
    allowed.extend(south); // the second web server was attacked too, if it alerted
    assert!(ids_in(&inc).is_subset(&allowed), "only the attack's alerts: {inc}");
    // An alert finds its incident (the alert page's pivot), and only its own.
    for id in web.iter().take(2) {
        let found = incidents(&api, &tok, &format!("alert={id}&limit=5"))?;
        assert_eq!(found.iter().map(|i| i["id"].clone()).collect::<Vec<_>>(), [inc["id"].clone()], "{id}");
    }
    assert!(incidents(&api, &tok, "alert=00000000-0000-0000-0000-000000000000")?.is_empty());
    assert_eq!(get(&format!("{api}/api/v1/incidents?alert=%25"), Some(&tok))?.0, 400);
    assert_eq!(inc["root"], "WIN-DAKEQI");
    let path: Vec<(String, String)> = inc["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["kind"].as_str().unwrap().to_owned(), s["name"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        path,
        vec![
            ("host".to_owned(), "WIN-DAKEQI".to_owned()),
            ("host".to_owned(), "Web服务器-北机房".to_owned()),
            ("domain".to_owned(), "cdn-update.example".to_owned()),
        ]
    );
    let stages: Vec<usize> = inc["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let cat = schemas::attack::catalog();
            a["tactics"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|t| cat.tactic(t.as_str().unwrap()).map(|x| x.order))
                .min()
                .unwrap_or(usize::MAX)
        })
        .collect();
    assert!(stages.windows(2).all(|w| w[0] <= w[1]), "kill-chain order: {stages:?}");
    assert_eq!(inc["status"], "open");
    assert_eq!(
        inc["severity"].as_u64(),
        inc["alerts"].as_array().unwrap().iter().filter_map(|a| a["level"].as_u64()).max()
    );

    // The copy on other hosts: its own incident, with its own path; the fleet joins neither.
    let copy = incidents(&api, &tok, "host=WIN-OTHER")?;
    assert_eq!(copy.len(), 1, "{copy:?}");
    assert_ne!(copy[0]["id"], inc["id"]);
    assert_eq!(copy[0]["path"].as_array().unwrap().last().unwrap()["name"], "other.example");
    for i in incidents(&api, &tok, "limit=1000")? {
        let hosts: Vec<&str> = i["hosts"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
        let fleet = hosts.iter().any(|h| h.starts_with("ws-") || h.starts_with("srv-"));
        let attack =
            hosts.iter().any(|h| h.contains("DAKEQI") || h.contains("Web服务器") || h.contains("OTHER"));
        assert!(!(fleet && attack), "a fleet host joined an attack: {hosts:?}");
    }

    // One incident in full: the cross-host timeline holds every alert's evidence, in time order,
    // from both hosts, and the events that prove the hop.
    let id = inc["id"].as_str().unwrap().to_owned();
    let (status, one) = get(&format!("{api}/api/v1/incidents/{id}"), Some(&tok))?;
    assert_eq!(status, 200, "{one}");
    let timeline = one["timeline"].as_array().unwrap();
    // The answers fit the OpenAPI document the server serves (its schemas generated from the types).
    let (_, doc) = get(&format!("{api}/api/v1/openapi.json"), Some(&tok))?;
    let fits = |path: &str, url: &str| -> anyhow::Result<()> {
        let (status, answer) = get(&format!("{api}{url}"), Some(&tok))?;
        anyhow::ensure!(status == 200, "{url}: {answer}");
        api::openapi::check_answer(&doc, "GET", path, &answer).map_err(anyhow::Error::msg)
    };
    fits("/api/v1/incidents", "/api/v1/incidents")?;
    fits("/api/v1/incidents/{id}", &format!("/api/v1/incidents/{id}"))?;
    for a in web.iter().take(3) {
        fits("/api/v1/alerts/{id}", &format!("/api/v1/alerts/{a}"))?;
    }
    fits("/api/v1/alerts", "/api/v1/alerts?limit=1000")?;
    fits(
        "/api/v1/hosts/{host}/timeline",
        &format!("/api/v1/hosts/{}/timeline?limit=1000", tests::urlencode("Web服务器-北机房")),
    )?;
    fits("/api/v1/search", "/api/v1/search?q=jndi&literal=true")?;
    // Events in the API's one shape: nested ECS, RFC 3339 times, addresses as arrays.
    let times: Vec<&str> = timeline.iter().map(|e| e["event"]["@timestamp"].as_str().unwrap()).collect();
    assert!(times.iter().all(|t| schemas::time::parse_rfc3339_micros(t).is_some()), "{times:?}");
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "one ordered list");
    assert!(
        timeline.iter().all(|e| e["event"]["host"]["ip"].is_null() || e["event"]["host"]["ip"].is_array()),
        "host.ip is a list of addresses"
    );
    let hosts: BTreeSet<&str> =
        timeline.iter().map(|e| e["event"]["host"]["name"].as_str().unwrap()).collect();
    assert!(hosts.contains("WIN-DAKEQI") && hosts.contains("Web服务器-北机房"), "{hosts:?}");
    let evidence: BTreeSet<String> = one["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| {
            a["alert"]["evidence"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_owned())
        })
        .collect();
    let listed: BTreeSet<String> =
        timeline.iter().map(|e| e["event"]["event"]["id"].as_str().unwrap().to_owned()).collect();
    assert!(listed.is_superset(&evidence), "every evidence event is on the timeline");
    let accept = timeline.iter().find(|e| {
        e["link"] == true
            && e["event"]["host"]["name"] == "Web服务器-北机房"
            && e["event"]["event"]["action"] == "accept"
    });
    assert!(accept.is_some(), "the server's accept proves the hop");

    // Its graph: the attachment's process, java.exe, the C2 domain, the confirmed cross-host edge.
    let (status, g) = get(&format!("{api}/api/v1/incidents/{id}/graph"), Some(&tok))?;
    assert_eq!(status, 200, "{g}");
    let node_ids: BTreeSet<&str> =
        g["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    for want in ["process:win-dakeqi-p-6644-1", "process:web-north-p-2240-1", "domain:cdn-update.example"] {
        assert!(node_ids.contains(want), "{want} in {node_ids:?}");
    }
    assert!(g["edges"].as_array().unwrap().iter().any(|e| e["from"] == "process:win-dakeqi-p-6644-1"
        && e["to"] == "process:web-north-p-2240-1"
        && e["cross_host"] == true));

    // Status, owner, comments.
    let url = format!("{api}/api/v1/incidents/{id}");
    let (status, _) = tests::patch(
        &url,
        Some(&tok),
        &json!({"status": "investigating", "owner": "alice", "comment": "on it"}),
    )?;
    assert_eq!(status, 200);
    let (_, again) = get(&url, Some(&tok))?;
    assert_eq!(
        (again["incident"]["status"].as_str(), again["incident"]["owner"].as_str()),
        (Some("investigating"), Some("alice"))
    );
    assert_eq!(again["comments"][0]["comment"], "on it");
    assert_eq!(incidents(&api, &tok, "status=investigating")?.len(), 1);
    assert_eq!(tests::patch(&url, Some(&tok), &json!({"status": "done", "comment": ""}))?.0, 400);
    assert_eq!(tests::patch(&url, Some(&tok), &json!({"colour": "red", "comment": ""}))?.0, 400);
    assert_eq!(get(&format!("{api}/api/v1/incidents/nope"), Some(&tok))?.0, 404);
    assert_eq!(get(&format!("{api}/api/v1/incidents?severity=9"), Some(&tok))?.0, 400);

    // The process tree around the ransomware's start: java.exe -> update.exe -> vssadmin.exe.
    let start = tests::sql(
        &api,
        &tok,
        "SELECT event_id FROM events WHERE process_name = 'update.exe' AND event_action = 'start' \
         AND host_name = 'Web服务器-北机房'",
    )?;
    let ev = start[0][0].as_str().unwrap();
    let host = tests::urlencode("Web服务器-北机房");
    let (status, tree) =
        get(&format!("{api}/api/v1/hosts/{host}/process-tree?event={ev}&window=10"), Some(&tok))?;
    assert_eq!(status, 200, "{tree}");
    assert_eq!(tree["focus"], "process:web-north-p-7312-1");
    let text = tree["processes"].to_string();
    fn find<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
        list.as_array()?
            .iter()
            .find_map(|p| if p["name"] == name { Some(p) } else { find(&p["children"], name) })
    }
    let java = find(&tree["processes"], "java.exe").expect(&text);
    let upd = java["children"].as_array().unwrap().iter().find(|p| p["name"] == "update.exe").expect(&text);
    assert!(upd["children"].as_array().unwrap().iter().any(|p| p["name"] == "vssadmin.exe"), "{text}");
    assert_eq!(get(&format!("{api}/api/v1/hosts/{host}/process-tree"), Some(&tok))?.0, 400);

    // Paths: from the attachment to any external destination, in time order, with evidence.
    let paths = |api: &str| -> anyhow::Result<Value> {
        let (status, p) = get(
            &format!("{api}/api/v1/graph/paths?from=process:win-dakeqi-p-6644-1&to=external"),
            Some(&tok),
        )?;
        anyhow::ensure!(status == 200, "{p}");
        Ok(p)
    };
    let p = paths(&api)?;
    assert_eq!(p["found"], true, "{p}");
    let hops = p["hops"].as_array().unwrap();
    assert_eq!(hops.last().unwrap()["to"], "domain:cdn-update.example", "{p}");
    assert!(hops.iter().all(|h| !h["events"].as_array().unwrap().is_empty()));
    let at: Vec<i64> = hops
        .iter()
        .map(|h| schemas::time::parse_rfc3339_micros(h["at"].as_str().unwrap()).unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "{at:?}");
    // From a host: the same destination is reached from the workstation as a whole.
    let (status, from_host) =
        get(&format!("{api}/api/v1/graph/paths?from=host:WIN-DAKEQI&to=external"), Some(&tok))?;
    assert_eq!(status, 200, "{from_host}");
    assert_eq!(from_host["found"], true, "{from_host}");
    let (_, none) = get(
        &format!("{api}/api/v1/graph/paths?from=process:web-north-p-7312-1&to=process:win-dakeqi-p-5120-1"),
        Some(&tok),
    )?;
    assert_eq!(none["found"], false, "the ransomware does not lead back to Outlook: {none}");
    assert_eq!(get(&format!("{api}/api/v1/graph/paths?from=process:nope"), Some(&tok))?.0, 404);
    let (status, nb) =
        get(&format!("{api}/api/v1/graph/neighbors?node=process:web-north-p-2240-1&hops=1"), Some(&tok))?;
    assert_eq!(status, 200, "{nb}");
    let near: BTreeSet<&str> =
        nb["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert!(
        near.contains("process:win-dakeqi-p-6644-1") && near.contains("process:web-north-p-7312-1"),
        "{near:?}"
    );

    // A restart: the graph is rebuilt from the lake and the incident is still there, unchanged.
    let Env { server, nats, data, dir, .. } = env;
    server.kill();
    let server = tests::Server::start(&bin(), &data, &nats.url, &ServerOptions::default())?;
    let p2 = eventually(Duration::from_secs(30), || {
        let p = paths(&server.api)?;
        Ok((p["found"] == true).then_some(p))
    })?;
    assert_eq!(p2["hops"], p["hops"]);
    let after = incidents(&server.api, &tok, "host=WIN-DAKEQI&status=investigating")?;
    assert_eq!(after.len(), 1);
    assert_eq!(ids_in(&after[0]), ids_in(&inc));
    drop(server);
    drop(nats);
    drop(dir);
    Ok(())
}
