//! ATT&CK tagging at ingest: the Log4j/Conti scenario goes through Cordon's rule pack and the default
//! policy; the lake, the index and the metrics carry the techniques and tiers the source describes.
//! Expected counts come from the scenario's text, not from the engine.

use super::{Env, bin, scenario_count};
use std::time::Duration;
use tests::{ServerOptions, agent, counts, eventually, get, sql};

fn search_total(api: &str, tok: &str, q: &str) -> anyhow::Result<u64> {
    let (status, v) = get(&format!("{api}/api/v1/search?q={q}&limit=1"), Some(tok))?;
    anyhow::ensure!(status == 200, "search {q}: {v}");
    Ok(v["total"].as_u64().unwrap_or(0))
}

#[test]
fn scenario_events_carry_the_techniques_and_tiers_of_the_attack() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (n, server, tok) = (&env.nats, &env.server, env.token.as_str());
    let a = agent(&bin(), &n.url, &env.spool(), &["replay", "builtin:log4j-conti"])?;
    let acked = a["events_acked"].as_u64().unwrap();
    eventually(Duration::from_secs(60), || {
        let docs = get(&format!("{}/healthz", server.api), None)?.1["indexed_events"].as_u64().unwrap_or(0);
        Ok((counts(&server.api, tok)?.0 == acked && docs == acked).then_some(()))
    })?;

    let text = |e: &serde_json::Value| e.to_string();
    let renames = scenario_count(|e, _| e["event"]["action"] == "rename" && text(e).contains(".CONTI"));
    let shadow = scenario_count(|e, _| text(e).contains("delete shadows"));
    let scans = scenario_count(|e, a| {
        a == "win-dakeqi" && e["event"]["action"] == "http-request" && text(e).contains("${jndi:")
    });
    let exploit_access =
        scenario_count(|e, _| e["event"]["action"] == "http-access" && text(e).contains("${jndi:"));
    let java_children = scenario_count(|e, _| {
        e["event"]["action"] == "start"
            && e["process"]["parent"]["executable"]
                .as_str()
                .is_some_and(|p| p.to_lowercase().ends_with("\\java.exe"))
    });
    assert!(renames >= 10 && shadow == 1 && scans >= 2 && exploit_access >= 2 && java_children >= 1);

    // Fleet-wide search by technique (the index's exact `technique:` field).
    assert_eq!(search_total(&server.api, tok, "technique:T1486")?, renames as u64);
    assert_eq!(search_total(&server.api, tok, "technique:T1490")?, shadow as u64);
    assert_eq!(search_total(&server.api, tok, "technique:T1595.002")?, scans as u64);
    assert_eq!(search_total(&server.api, tok, "technique:T1190")?, (exploit_access + java_children) as u64);
    assert_eq!(search_total(&server.api, tok, "technique:T1105")?, 1);

    // The lake holds the tier and the rule; ransomware and shadow-copy deletion are blocked.
    let rows = sql(
        &server.api,
        tok,
        "SELECT policy_tier, count(*) FROM events WHERE policy_tier IS NOT NULL GROUP BY 1 ORDER BY 1",
    )?;
    let tier = |t: &str| rows.iter().find(|r| r[0] == t).and_then(|r| r[1].as_u64()).unwrap_or(0);
    assert_eq!(tier("block"), (renames + shadow) as u64, "{rows:?}");
    let tagged = scans + exploit_access + java_children + 1 /* T1105 */ + renames + shadow + 2 /* attachment */;
    assert_eq!(tier("block") + tier("alert") + tier("record"), tagged as u64, "{rows:?}");
    let rules = sql(
        &server.api,
        tok,
        "SELECT rule_name FROM events WHERE array_has(threat_technique_id, 'T1486') LIMIT 1",
    )?;
    assert_eq!(rules[0][0], "File renamed to a ransomware extension");

    // And the metrics count what was committed.
    let (_, m) = get(&format!("{}/metrics", server.api), Some(tok))?;
    let m = m.as_str().map(str::to_owned).unwrap_or_else(|| m.to_string());
    assert!(m.contains(&format!("cordon_detections_total{{tier=\"block\"}} {}", renames + shadow)), "{m}");
    Ok(())
}
