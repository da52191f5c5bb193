//! Analyst SQL is read-only: every statement that could write, read files or change settings is a 400.

use super::{Env, bin};
use serde_json::json;
use std::time::Duration;
use tests::{ServerOptions, agent, eventually, post, sql};

#[test]
fn sql_refuses_everything_but_queries() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (n, server, tok, dir) = (&env.nats, &env.server, env.token.as_str(), &env.dir);
    let sent = agent(&bin(), &n.url, &env.spool(), &["replay", "builtin:log4j-conti"])?["events_acked"]
        .as_u64()
        .unwrap();
    eventually(Duration::from_secs(30), || Ok((tests::counts(&server.api, tok)?.0 == sent).then_some(())))?;

    let secret = dir.path().join("secret.csv");
    std::fs::write(&secret, "a,b\n1,2\n")?;
    let refused = [
        format!("COPY (SELECT * FROM events) TO '{}/out.parquet'", dir.path().display()),
        format!("CREATE EXTERNAL TABLE s STORED AS CSV LOCATION '{}'", secret.display()),
        "INSERT INTO events (event_id) VALUES ('x')".to_owned(),
        "SET datafusion.execution.batch_size = 1".to_owned(),
        format!("SELECT * FROM '{}'", secret.display()),
        "DROP TABLE events".to_owned(),
        "CREATE TABLE t AS SELECT 1".to_owned(),
        "SELECT * FROM events; DELETE FROM events".to_owned(),
        "SELEC 1".to_owned(),
    ];
    for q in &refused {
        let (status, body) = post(&format!("{}/api/v1/sql", server.api), Some(tok), &json!({ "sql": q }))?;
        assert_eq!(status, 400, "{q} -> {status} {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    }
    assert!(!dir.path().join("out.parquet").exists());
    let (_, body) =
        post(&format!("{}/api/v1/sql", server.api), Some(tok), &json!({ "sql": "SELECT nope FROM events" }))?;
    assert_eq!(body["error"]["code"], "bad_sql");
    let (_, body) = post(&format!("{}/api/v1/sql", server.api), Some(tok), &json!({ "sql": "SELEC 1" }))?;
    assert!(
        body["error"]["message"].as_str().unwrap().contains("Line: 1, Column"),
        "parser position in {body}"
    );

    let rows = sql(
        &server.api,
        tok,
        "SELECT host_name, count(*) AS n FROM events GROUP BY host_name ORDER BY n DESC",
    )?;
    assert_eq!(rows.iter().map(|r| r[1].as_u64().unwrap()).sum::<u64>(), sent);
    let (status, capped) = post(
        &format!("{}/api/v1/sql", server.api),
        Some(tok),
        &json!({"sql": "SELECT * FROM events", "max_rows": 5}),
    )?;
    assert_eq!(status, 200);
    assert_eq!(capped["rows"].as_array().unwrap().len(), 5);
    assert_eq!(capped["truncated"], true);
    Ok(())
}

/// Issue 16 item 1, in part: query text that used to take the server down or answer 500 is a 400
/// naming the limit, and the server answers the next request.
#[test]
fn deep_searches_and_bad_regexes_are_refused_and_the_server_goes_on() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (api, tok) = (env.server.api.clone(), env.token.as_str());
    let search = |q: &str| tests::get(&format!("{api}/api/v1/search?q={}", tests::urlencode(q)), Some(tok));
    // Parentheses need no escaping in a query string, so 2,000 of them (the depth that used to
    // overflow the parser's stack and abort the server) fit in a URL.
    let nested = |depth: usize| {
        tests::get(
            &format!("{api}/api/v1/search?q={}host{}", "(".repeat(depth), ")".repeat(depth)),
            Some(tok),
        )
    };
    for depth in [33, 2_000, 4_000] {
        let (status, body) = nested(depth)?;
        assert_eq!(status, 400, "{depth} deep: {body}");
        assert!(body["error"]["message"].as_str().unwrap_or("").contains("the limit is 32"), "{body}");
    }
    let (status, body) = nested(32)?;
    assert_eq!(status, 200, "32 deep is within the limit: {body}");
    let (status, body) = search(&"a ".repeat(10_000))?;
    assert_eq!(status, 400, "{body}");
    // Parentheses inside a quoted phrase are text, not nesting.
    let (status, _) = search(&format!("\"{}\"", "(".repeat(100)))?;
    assert_eq!(status, 200);
    let sql_url = format!("{api}/api/v1/sql");
    for q in [
        "SELECT regexp_like('a', '(a{1000}){1000}')",
        "SELECT regexp_like('a', '(')",
        "SELECT 1 / 0",
        "SELECT CAST('x' AS INT)",
    ] {
        let (status, body) = post(&sql_url, Some(tok), &json!({ "sql": q }))?;
        assert_eq!(status, 400, "{q} -> {status} {body}");
        assert_eq!(body["error"]["code"], "bad_sql", "{q}: {body}");
    }
    assert_eq!(tests::get(&format!("{api}/healthz"), None)?.0, 200, "the server goes on");
    Ok(())
}
