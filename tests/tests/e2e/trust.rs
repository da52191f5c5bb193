//! The API's trust boundary (RELIABILITY.md T13) and the audit chain:
//! - every route x {anonymous, bad token, revoked token, an agent's credentials, each role, another
//!   tenant's admin} answers as
//!   this file's own copy of the permission table says, and the table covers every route;
//! - another tenant's token sees none of the tenant's objects, by id or by listing;
//! - token guessing is held off exactly at the limit under a parallel burst, and recorded;
//! - writes and exports land in the audit chain, and any edit, deletion or reordering of its rows
//!   makes `cordon audit verify` fail, on SQLite and PostgreSQL.

use super::backends::on_postgres;
use super::{Env, bin};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use store::catalog::{AuditRecord, Catalog};
use tests::{ServerOptions, agent, eventually, get, token_as};

/// The permission each route needs, written out here on purpose: a route added to `api::ROUTES`
/// without a line here fails the test, so every new route's access is decided by a reviewer.
const EXPECTED: &[(&str, &str, &str)] = &[
    ("GET", "/healthz", "public"),
    ("GET", "/readyz", "public"),
    ("GET", "/metrics", "metrics"),
    ("GET", "/api/v1/openapi.json", "read"),
    ("GET", "/api/v1/hosts", "read"),
    ("GET", "/api/v1/agents", "read"),
    ("GET", "/api/v1/hosts/{host}/timeline", "read"),
    ("GET", "/api/v1/search", "read"),
    ("POST", "/api/v1/iocs/sweep", "read"),
    ("POST", "/api/v1/sql", "read"),
    ("GET", "/api/v1/policy", "read"),
    ("PUT", "/api/v1/policy", "author"),
    ("GET", "/api/v1/anomalies", "read"),
    ("GET", "/api/v1/reports", "read"),
    ("GET", "/api/v1/reports/{id}", "read"),
    ("POST", "/api/v1/reports/run", "handle"),
    ("POST", "/api/v1/baselines/refit", "handle"),
    ("GET", "/api/v1/alerts", "read"),
    ("GET", "/api/v1/alerts/stream", "read"),
    ("GET", "/api/v1/alerts/{id}", "read"),
    ("PATCH", "/api/v1/alerts/{id}", "handle"),
    ("GET", "/api/v1/incidents", "read"),
    ("GET", "/api/v1/incidents/{id}", "read"),
    ("GET", "/api/v1/incidents/{id}/graph", "read"),
    ("PATCH", "/api/v1/incidents/{id}", "handle"),
    ("GET", "/api/v1/hosts/{host}/process-tree", "read"),
    ("GET", "/api/v1/hosts/{host}/logins", "read"),
    ("GET", "/api/v1/graph/paths", "read"),
    ("GET", "/api/v1/graph/neighbors", "read"),
    ("GET", "/api/v1/attack/coverage", "read"),
    ("GET", "/api/v1/rules", "read"),
    ("POST", "/api/v1/policy/preview", "author"),
    ("GET", "/api/v1/policy/versions", "read"),
    ("POST", "/api/v1/enroll", "public"),
    ("POST", "/api/v1/session", "public"),
    ("GET", "/api/v1/session", "read"),
    ("DELETE", "/api/v1/session", "read"),
    ("GET", "/api/v1/agents/enrolled", "read"),
    ("GET", "/api/v1/audit", "admin"),
    ("GET", "/api/v1/dead-letters", "author"),
    ("GET", "/api/v1/response/schema", "read"),
    ("POST", "/api/v1/response/validate", "read"),
    ("GET", "/api/v1/response/approvers", "read"),
    ("POST", "/api/v1/response/approvers", "admin"),
    ("DELETE", "/api/v1/response/approvers/{key}", "admin"),
    ("GET", "/api/v1/response/settings", "read"),
    ("PUT", "/api/v1/response/settings", "admin"),
    ("GET", "/api/v1/response/requests", "read"),
    ("POST", "/api/v1/response/requests", "handle"),
    ("GET", "/api/v1/response/requests/{id}", "read"),
    ("POST", "/api/v1/response/requests/{id}/approvals", "respond"),
    ("POST", "/api/v1/response/requests/{id}/cancel", "handle"),
    ("GET", "/api/v1/response/approver-sets", "read"),
    ("POST", "/api/v1/response/approver-sets", "admin"),
    ("POST", "/api/v1/response/approver-sets/{version}/approvals", "respond"),
    ("GET", "/api/v1/response/standing", "read"),
    ("POST", "/api/v1/response/standing", "handle"),
    ("GET", "/api/v1/response/standing/{id}", "read"),
    ("POST", "/api/v1/response/standing/{id}/approvals", "respond"),
    ("POST", "/api/v1/response/standing/{id}/withdraw", "handle"),
];

/// What each role may do, this test's own copy.
fn grants(role: &str, permission: &str) -> bool {
    let perms: &[&str] = match role {
        "viewer" => &["read"],
        "analyst" => &["read", "handle"],
        "responder" => &["read", "handle", "respond"],
        "rule_author" => &["read", "author"],
        "admin" => &["read", "handle", "respond", "author", "admin", "metrics"],
        "metrics" => &["metrics"],
        other => panic!("unknown role {other}"),
    };
    permission == "public" || perms.contains(&permission)
}

const ROLES: [&str; 6] = ["viewer", "analyst", "responder", "rule_author", "admin", "metrics"];

fn send(method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
    let empty = json!({});
    let b = body.unwrap_or(&empty);
    match method {
        "GET" => get(url, token),
        "POST" => tests::post(url, token, b),
        "PUT" => tests::put(url, token, b),
        "PATCH" => tests::patch(url, token, b),
        "DELETE" => tests::delete(url, token),
        m => anyhow::bail!("no client for {m}"),
    }
}

/// The objects the routes are called on.
struct Objects {
    alert: String,
    incident: String,
    report: String,
    host: String,
    policy: Value,
    policy_version: i64,
}

/// A request for each route: the path with its parameters, and a body that is valid for it.
fn request(method: &str, path: &str, o: &Objects) -> (String, Option<Value>) {
    let p = path
        .replace(
            "{id}",
            if path.contains("alerts") {
                &o.alert
            } else if path.contains("incidents") {
                &o.incident
            } else {
                &o.report
            },
        )
        .replace("{host}", &o.host)
        .replace("{key}", &"0".repeat(64))
        .replace("{version}", "99");
    let query = match path {
        "/api/v1/search" => "?q=jndi",
        "/api/v1/hosts/{host}/process-tree" => "?at=2021-12-10T10:00:00Z",
        "/api/v1/graph/paths" => "?from=host:x&to=external",
        "/api/v1/graph/neighbors" => "?node=host:x",
        "/api/v1/alerts/stream" => "?seconds=1",
        _ => "",
    };
    let body = match (method, path) {
        ("POST", "/api/v1/iocs/sweep") => Some(json!({"iocs": ["185.220.101.45"]})),
        ("POST", "/api/v1/sql") => Some(json!({"sql": "SELECT count(*) FROM events"})),
        ("PUT", "/api/v1/policy") => {
            Some(json!({"policy": o.policy, "reason": "matrix", "base_version": o.policy_version}))
        }
        ("POST", "/api/v1/policy/preview") => Some(json!({"policy": o.policy, "days": 1})),
        ("POST", "/api/v1/response/validate") => Some(json!({"rule": {"name": "matrix", "kind": "handling",
            "actions": [{"action": "Proc_Terminate", "process": {"name": "conti.exe"}}]}})),
        ("POST", "/api/v1/response/approver-sets/{version}/approvals") => {
            Some(json!({"public_key": "0".repeat(64), "sig": "0".repeat(128)}))
        }
        ("POST", "/api/v1/response/standing/{id}/approvals") => {
            Some(json!({"public_key": "0".repeat(64), "sig": "0".repeat(128)}))
        }
        ("POST", "/api/v1/response/requests/{id}/approvals") => {
            Some(json!({"public_key": "0".repeat(64), "sig": "0".repeat(128)}))
        }
        ("PATCH", "/api/v1/alerts/{id}") => Some(json!({"handling": "handled", "comment": "matrix"})),
        ("PATCH", "/api/v1/incidents/{id}") => Some(json!({"status": "investigating", "comment": "matrix"})),
        _ => None,
    };
    (format!("{p}{query}"), body)
}

fn permission_of(spec: &api::RouteSpec) -> &'static str {
    match spec.access {
        api::Access::Public => "public",
        api::Access::Needs(p) => p.as_str(),
    }
}

#[test]
fn the_permission_table_covers_every_route() {
    let mut expected: HashMap<(&str, &str), &str> = EXPECTED.iter().map(|(m, p, x)| ((*m, *p), *x)).collect();
    for spec in api::ROUTES.iter() {
        let key = (spec.method.as_str(), spec.path);
        let Some(want) = expected.remove(&key) else {
            panic!("{} {} has no line in this test's permission table: decide who may call it", key.0, key.1)
        };
        assert_eq!(permission_of(spec), want, "{} {}", key.0, key.1);
        assert!(
            spec.method == "GET" || spec.audit.is_some(),
            "{} {} writes but is not audited",
            key.0,
            key.1
        );
    }
    assert!(expected.is_empty(), "lines for routes that do not exist: {expected:?}");
}

#[test]
fn every_route_answers_every_caller_as_the_table_says() -> anyhow::Result<()> {
    let opts =
        ServerOptions { args: vec!["--auth-failure-limit".into(), "100000".into()], ..Default::default() };
    let env = Env::start(&opts)?;
    let (api, admin) = (env.server.api.clone(), env.token.clone());
    let sent =
        agent(&bin(), &env.nats.url, &env.spool(), &["replay", "builtin:log4j-conti"])?["events_acked"]
            .as_u64()
            .unwrap();
    eventually(Duration::from_secs(60), || Ok((tests::counts(&api, &admin)?.0 == sent).then_some(())))?;
    let (alerts, incidents) = eventually(Duration::from_secs(60), || {
        let (_, a) = get(&format!("{api}/api/v1/alerts"), Some(&admin))?;
        let (_, i) = get(&format!("{api}/api/v1/incidents"), Some(&admin))?;
        let ok = a["alerts"].as_array().is_some_and(|v| !v.is_empty())
            && i["incidents"].as_array().is_some_and(|v| !v.is_empty());
        Ok(ok.then_some((a, i)))
    })?;
    let (status, report) = tests::post(&format!("{api}/api/v1/reports/run"), Some(&admin), &json!({}))?;
    assert_eq!(status, 200, "{report}");
    let (_, policy) = get(&format!("{api}/api/v1/policy"), Some(&admin))?;
    let objects = Objects {
        alert: alerts["alerts"][0]["id"].as_str().unwrap().to_owned(),
        incident: incidents["incidents"][0]["id"].as_str().unwrap().to_owned(),
        report: report["report"]["id"].as_str().unwrap().to_owned(),
        host: alerts["alerts"][0]["endpoint"]["name"].as_str().unwrap().to_owned(),
        policy: policy["policy"].clone(),
        policy_version: policy["version"].as_i64().unwrap_or(0),
    };

    let mut tokens: Vec<(String, String, String)> = Vec::new(); // (role, id, secret)
    for role in ROLES {
        let (id, secret) = token_as(&bin(), &env.data, None, "default", role)?;
        tokens.push((role.to_owned(), id, secret));
    }
    let (_, other) = token_as(&bin(), &env.data, None, "other", "admin")?;
    let (revoked_id, revoked) = token_as(&bin(), &env.data, None, "default", "admin")?;
    let dd = env.data.display().to_string();
    let (code, _) = tests::run(&bin(), &["token", "revoke", &revoked_id, "--data-dir", &dd])?;
    assert_eq!(code, 0);
    let bad = format!("cdn_{}", "0".repeat(64));
    // An enrolled agent's credentials: its key (as the nkey seed it connects to NATS with) and the
    // enrollment token it used. Neither opens the API.
    let (_, enroll_token) = tests::enroll_token(&bin(), &env.data, "default", 1)?;
    let agent_key = schemas::signed::AgentKey::generate()?;
    let enrolled = tests::post(
        &format!("{api}/api/v1/enroll"),
        None,
        &json!({"token": enroll_token, "public_key": agent_key.public(),
                "proof": agent_key.enroll_proof(&enroll_token), "host": "agent-1"}),
    )?;
    assert_eq!(enrolled.0, 200, "{enrolled:?}");
    let agent_seed = sensor_agent::identity::nkey_seed(&agent_key)?;

    let mut unexpected = Vec::new();
    let mut calls = 0;
    let mut check = |what: &str, method: &str, path: &str, status: u16, ok: bool| {
        calls += 1;
        if !ok {
            unexpected.push(format!("{what}: {method} {path} -> {status}"));
        }
    };
    for &(method, path, permission) in EXPECTED {
        let (target, body) = request(method, path, &objects);
        let url = format!("{api}{target}");
        let public = permission == "public";
        for (who, tok) in [
            ("anonymous", None),
            ("bad token", Some(bad.as_str())),
            ("revoked token", Some(revoked.as_str())),
            ("agent credential (its key)", Some(agent_seed.as_str())),
            ("agent credential (its enrollment token)", Some(enroll_token.as_str())),
        ] {
            let (s, _) = send(method, &url, tok, body.as_ref())?;
            // Public routes answer without a token (enrollment refuses the empty body with 400).
            check(who, method, path, s, if public { matches!(s, 200 | 400) } else { s == 401 });
        }
        for (role, _, secret) in &tokens {
            let (s, b) = send(method, &url, Some(secret), body.as_ref())?;
            let ok =
                if grants(role, permission) { !matches!(s, 401 | 403 | 429) && s < 500 } else { s == 403 };
            check(&format!("{role} ({b})"), method, path, s, ok);
        }
        // Another tenant's admin: objects by id are not found; listings answer, empty (checked below).
        let (s, b) = send(method, &url, Some(&other), body.as_ref())?;
        let ok = if path.contains("{id}") { s == 404 } else { !matches!(s, 401 | 403) && s < 500 };
        check(&format!("other tenant ({b})"), method, path, s, ok);
    }
    assert!(
        unexpected.is_empty(),
        "{} of {calls} calls answered unexpectedly:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    eprintln!("T13: {calls} calls over {} routes, 0 unexpected", EXPECTED.len());

    // The other tenant's listings hold nothing of this tenant's.
    for route in ["/api/v1/alerts", "/api/v1/incidents", "/api/v1/hosts", "/api/v1/agents", "/api/v1/reports"]
    {
        let (s, b) = get(&format!("{api}{route}"), Some(&other))?;
        assert_eq!(s, 200, "{route}: {b}");
        let text = b.to_string();
        assert!(!text.contains(&objects.host) && !text.contains(&objects.alert), "{route} leaks: {text}");
    }
    // Its audit log holds its own calls only (those on this tenant's ids included), none of this tenant's.
    let (_, theirs) = get(&format!("{api}/api/v1/audit?limit=1000"), Some(&other))?;
    let theirs = theirs["entries"].as_array().unwrap();
    assert!(!theirs.is_empty());
    for (_, id, _) in &tokens {
        assert!(theirs.iter().all(|e| e["actor"] != format!("token:{id}")), "{theirs:?}");
    }
    let rows = tests::sql(&api, &other, "SELECT count(*) FROM events")?;
    assert_eq!(rows[0][0], 0);
    let (_, found) = get(&format!("{api}/api/v1/search?q=jndi"), Some(&other))?;
    assert_eq!(found["total"], 0);

    // The audit chain holds the writes and exports with their callers and outcomes.
    let (_, audit) = get(&format!("{api}/api/v1/audit?limit=1000"), Some(&admin))?;
    let entries = audit["entries"].as_array().unwrap();
    let find = |action: &str, outcome: &str| {
        entries.iter().filter(|e| e["action"] == action && e["detail"]["outcome"] == outcome).count()
    };
    let analyst_id = &tokens.iter().find(|t| t.0 == "analyst").unwrap().1;
    assert!(
        entries.iter().any(|e| e["action"] == "alert.handle"
            && e["actor"] == format!("token:{analyst_id}")
            && e["detail"]["body"]["comment"] == "matrix"
            && e["detail"]["status"] == 200),
        "the analyst's handling is in the chain"
    );
    assert_eq!(find("alert.handle", "denied"), 3, "viewer, rule author and metrics tried");
    assert_eq!(find("policy.change", "denied"), 4, "viewer, analyst, responder and metrics tried");
    let matrix_sql = entries
        .iter()
        .filter(|e| e["action"] == "sql.query" && e["detail"]["body"]["sql"] == "SELECT count(*) FROM events")
        .map(|e| e["detail"]["outcome"].as_str().unwrap_or(""))
        .collect::<Vec<_>>();
    assert_eq!(matrix_sql, ["done"; 5], "five roles may query");
    assert_eq!(find("sql.query", "denied"), 1, "the metrics scraper may not");
    assert!(find("report.run", "done") >= 1 && find("report.export", "done") >= 5);
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "token.create" && e["actor"].as_str().unwrap().starts_with("cli:"))
    );
    assert!(
        entries.iter().any(|e| e["action"] == "token.revoke" && e["target"] == format!("token:{revoked_id}"))
    );
    let (code, out) = tests::run(&bin(), &["audit", "verify", "--data-dir", &dd])?;
    assert_eq!(code, 0, "{out}");
    Ok(())
}

#[test]
fn token_guessing_is_held_off_exactly_at_the_limit() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let api = env.server.api.clone();
    let (status, _) = get(&format!("{api}/api/v1/hosts"), Some(&env.token))?;
    assert_eq!(status, 200, "a token in use before the burst");
    let (_, fresh) = token_as(&bin(), &env.data, None, "default", "viewer")?;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let api = api.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        get(&format!("{api}/api/v1/hosts"), Some(&format!("cdn_guess_{t}_{i}"))).map(|r| r.0)
                    })
                    .collect::<anyhow::Result<Vec<u16>>>()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in threads {
        statuses.extend(t.join().expect("thread")?);
    }
    let count = |s: u16| statuses.iter().filter(|x| **x == s).count();
    assert_eq!((count(401), count(429), statuses.len()), (20, 180, 200), "{statuses:?}");
    // The token in use keeps working; a token first seen from the held-off address waits.
    assert_eq!(get(&format!("{api}/api/v1/hosts"), Some(&env.token))?.0, 200);
    assert_eq!(get(&format!("{api}/api/v1/hosts"), Some(&fresh))?.0, 429);
    let (_, m) = get(&format!("{api}/metrics"), Some(&env.token))?;
    let m = m.as_str().unwrap_or("");
    assert!(m.contains("cordon_api_auth_failures_total 20\n"), "{m}");
    assert!(m.contains("cordon_api_throttled_total 181\n"), "{m}");
    assert!(m.contains("cordon_security_events_total{kind=\"token_guessing\"} 1\n"), "{m}");
    let rt = tokio::runtime::Runtime::new()?;
    let events = rt.block_on(async {
        let cat = Catalog::connect(&format!("sqlite://{}", env.data.join("meta.db").display())).await?;
        anyhow::Ok(cat.security_events("").await?)
    })?;
    assert_eq!(events.iter().filter(|e| e.2 == "token_guessing").count(), 1, "{events:?}");
    Ok(())
}

/// Appends, then tampers with the rows as a database owner would (going around the triggers), and
/// checks that every kind of tampering is found and that undoing it makes the chain whole again.
async fn audit_chain(url: &str, drop_triggers: &[&str]) -> anyhow::Result<()> {
    let cat = Catalog::connect(url).await?;
    // Concurrent appends from two pools stay one chain.
    let cat2 = Catalog::connect(url).await?;
    let mut writers = Vec::new();
    for w in 0..4 {
        let c = if w % 2 == 0 { cat.clone() } else { cat2.clone() };
        writers.push(tokio::spawn(async move {
            for i in 0..10 {
                let rec = AuditRecord {
                    tenant: "t".into(),
                    actor: format!("token:w{w}"),
                    action: "alert.handle".into(),
                    target: format!("/api/v1/alerts/a{i}"),
                    detail: json!({"comment": format!("writer {w} row {i}")}),
                };
                c.audit(&rec, 1_000 + i).await?;
            }
            anyhow::Ok(())
        }));
    }
    for w in writers {
        w.await??;
    }
    let v = cat.verify_audit().await?;
    assert!(v.ok() && v.rows == 40, "{v:?}");

    let pool = sqlx::AnyPool::connect(url).await?;
    let refused = sqlx::query("UPDATE audit_log SET actor = 'eve' WHERE seq = 3").execute(&pool).await;
    assert!(refused.unwrap_err().to_string().contains("append-only"), "the trigger refuses edits");
    for stmt in drop_triggers {
        sqlx::query(stmt).execute(&pool).await?;
    }
    let exec = |q: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query(q).execute(&pool).await.map(|_| ()) }
    };
    let broken = |why: &'static str| {
        let cat = cat.clone();
        async move {
            let v = cat.verify_audit().await?;
            anyhow::ensure!(!v.ok(), "{why}: not detected");
            eprintln!("{why}: {:?}", v.problems);
            anyhow::Ok(v.problems)
        }
    };
    let whole = || {
        let cat = cat.clone();
        async move {
            anyhow::ensure!(cat.verify_audit().await?.ok(), "not whole again");
            anyhow::Ok(())
        }
    };

    let restore = || async {
        exec("DELETE FROM audit_log").await?;
        exec("INSERT INTO audit_log SELECT * FROM audit_saved").await?;
        whole().await
    };
    exec("CREATE TABLE audit_saved AS SELECT * FROM audit_log").await?;

    // An edited row.
    exec("UPDATE audit_log SET detail = '{\"comment\":\"nothing to see\"}' WHERE seq = 7").await?;
    let p = broken("an edited detail").await?;
    assert!(p.iter().any(|m| m.contains("seq 7 was edited")), "{p:?}");
    restore().await?;
    // A deleted row, then the same with the numbers closed up over the gap.
    exec("DELETE FROM audit_log WHERE seq = 12").await?;
    let p = broken("a deleted row").await?;
    assert!(p.iter().any(|m| m.contains("seq 13 follows seq 11")), "{p:?}");
    // (Through negative numbers: PostgreSQL checks the key row by row.)
    exec("UPDATE audit_log SET seq = -seq WHERE seq > 12").await?;
    exec("UPDATE audit_log SET seq = -seq - 1 WHERE seq < 0").await?;
    broken("a deleted row with the numbers closed up").await?;
    restore().await?;
    // Two rows swapped.
    exec("UPDATE audit_log SET seq = -4 WHERE seq = 4").await?;
    exec("UPDATE audit_log SET seq = 4 WHERE seq = 5").await?;
    exec("UPDATE audit_log SET seq = 5 WHERE seq = -4").await?;
    let p = broken("two rows swapped").await?;
    assert!(p.iter().any(|m| m.contains("seq 4")), "{p:?}");
    restore().await?;
    // The newest row removed.
    exec("DELETE FROM audit_log WHERE seq = 40").await?;
    let p = broken("the newest row removed").await?;
    assert!(p.iter().any(|m| m.contains("head says seq 40")), "{p:?}");
    restore().await?;
    exec("DROP TABLE audit_saved").await?;
    pool.close().await;
    Ok(())
}

#[test]
fn audit_chain_detects_tampering_on_sqlite() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("meta.db").display());
    tokio::runtime::Runtime::new()?.block_on(audit_chain(
        &url,
        &["DROP TRIGGER audit_log_no_update", "DROP TRIGGER audit_log_no_delete"],
    ))
}

#[test]
fn audit_chain_detects_tampering_on_postgres() -> anyhow::Result<()> {
    on_postgres(
        |url| async move { audit_chain(&url, &["DROP TRIGGER audit_log_append_only ON audit_log"]).await },
    )
}
