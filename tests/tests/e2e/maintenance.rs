//! The lake as a Delta table, compaction (OPTIMIZE) and retention (VACUUM): what the Delta reference
//! reader sees matches what the agents sent, before and after maintenance, through crashes in the
//! middle of it, with ingest running.

use super::{Env, bin, scenario_count};
use std::path::Path;
use std::time::Duration;
use tests::{Server, ServerOptions, agent, counts, delta_read, eventually, get, run};

const DAY_MICROS: i64 = 86_400_000_000;

/// Writes a scenario of `n` events on one host stamped `days_ago` days back, each carrying `marker`
/// in its command line (so a search can find exactly them).
fn old_scenario(path: &Path, n: usize, days_ago: i64, marker: &str) -> anyhow::Result<()> {
    let base = schemas::time::now_micros() - days_ago * DAY_MICROS;
    let mut text = String::from(
        r#"{"scenario": "old", "hosts": [{"agent": "archive-01", "name": "ARCHIVE-01", "ip": ["10.9.0.5"]}]}"#,
    );
    text.push('\n');
    for i in 0..n {
        let ev = serde_json::json!({
            "at_ms": i,
            "agent": "archive-01",
            "event": {
                "@timestamp": schemas::time::format_micros(base + i as i64 * 1_000_000),
                "event": {"category": "process", "action": "start"},
                "process": {"pid": 4000 + i, "name": "backup.exe", "command_line": format!("backup.exe /tag {marker} /n {i}")}
            }
        });
        text.push_str(&ev.to_string());
        text.push('\n');
    }
    std::fs::write(path, text)?;
    Ok(())
}

fn table(data: &Path) -> std::path::PathBuf {
    data.join("lake").join("events")
}

fn search_total(server: &Server, tok: &str, q: &str) -> anyhow::Result<u64> {
    let (status, v) = get(&format!("{}/api/v1/search?q={q}&limit=1", server.api), Some(tok))?;
    anyhow::ensure!(status == 200, "search {q}: {v}");
    Ok(v["total"].as_u64().unwrap_or(0))
}

fn indexed(server: &Server) -> anyhow::Result<u64> {
    Ok(get(&format!("{}/healthz", server.api), None)?.1["indexed_events"].as_u64().unwrap_or(0))
}

/// Waits until the API shows exactly `expected` rows, distinct ids and index documents.
pub(crate) fn wait_exact(server: &Server, tok: &str, expected: u64) -> anyhow::Result<()> {
    let got = eventually(Duration::from_secs(60), || {
        let c = counts(&server.api, tok)?;
        let docs = indexed(server)?;
        Ok((c.0 == expected && c.1 == expected && docs == expected).then_some(()))
    });
    if got.is_err() {
        let c = counts(&server.api, tok)?;
        anyhow::bail!("expected {expected} rows/ids/docs, have {c:?} and {} docs", indexed(server)?);
    }
    Ok(())
}

pub(crate) fn cordon(args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let (code, out) = run(&bin(), args)?;
    anyhow::ensure!(code == 0, "cordon {args:?} exited {code}: {out}");
    serde_json::from_str(out.trim()).map_err(|e| anyhow::anyhow!("cordon {args:?} printed {out:?}: {e}"))
}

#[test]
fn delta_reader_sees_every_acked_event_before_and_after_compaction() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let spool = env.spool();
    let Env { server, nats: n, data, token: tok, dir: _dir } = env;
    // Small messages make many small files: what compaction is for.
    let a = agent(&bin(), &n.url, &spool, &["replay", "builtin:log4j-conti", "--batch-size", "5"])?;
    let b = agent(
        &bin(),
        &n.url,
        &spool,
        &[
            "simulate",
            "--hosts",
            "8",
            "--rate",
            "3000",
            "--duration",
            "2",
            "--seed",
            "21",
            "--batch-size",
            "20",
        ],
    )?;
    let acked = a["events_acked"].as_u64().unwrap() + b["events_acked"].as_u64().unwrap();
    wait_exact(&server, &tok, acked)?;
    server.kill();

    // The next open brings the Delta log up to the catalog (the kill may have come before a sync).
    let dd = data.display().to_string();
    let before_verify = cordon(&["verify", "--data-dir", &dd])?;
    let before = delta_read(&table(&data))?;
    assert_eq!(
        (before["rows"].as_u64(), before["distinct_ids"].as_u64()),
        (Some(acked), Some(acked)),
        "{before}"
    );
    assert_eq!(before["files"], before_verify["files"], "the Delta snapshot holds the catalog's files");
    assert!(before["files"].as_u64().unwrap() > 4, "small batches made many files: {before}");
    assert!(before["ingest_txn"].as_i64().unwrap() > 0, "the JetStream checkpoint is the txn version");
    assert_eq!(
        before["partition_columns"],
        serde_json::json!(["tenant", "date"]),
        "the hive layout is the schema's"
    );
    assert_eq!(
        tests::polars_read(&table(&data))?,
        serde_json::json!({"default": acked}),
        "Polars reads the lake"
    );

    let report = cordon(&["compact", "--data-dir", &dd])?;
    let removed = report["files_removed"].as_u64().unwrap();
    assert!(removed >= 2 && report["files_added"].as_u64().unwrap() >= 1, "{report}");
    let after = delta_read(&table(&data))?;
    assert_eq!(
        (after["rows"].as_u64(), after["distinct_ids"].as_u64()),
        (Some(acked), Some(acked)),
        "{after}"
    );
    let expected_files =
        before["files"].as_u64().unwrap() - removed + report["files_added"].as_u64().unwrap();
    assert_eq!(after["files"].as_u64(), Some(expected_files), "{report} {after}");
    assert!(after["files"].as_u64() < before["files"].as_u64());
    assert_eq!(after["operations"][0], "OPTIMIZE", "{after}");
    assert_eq!(tests::polars_read(&table(&data))?, serde_json::json!({"default": acked}));
    assert_eq!(after["ingest_txn"], before["ingest_txn"], "compaction is no ingest transaction");

    // Compacting again finds nothing to merge; vacuum without retention deletes nothing.
    assert_eq!(cordon(&["compact", "--data-dir", &dd])?["files_removed"], 0);
    let vac = cordon(&["vacuum", "--data-dir", &dd])?;
    assert_eq!((vac["files_expired"].as_u64(), vac["orphans_removed"].as_u64()), (Some(0), Some(0)), "{vac}");
    let verify = cordon(&["verify", "--data-dir", &dd])?;
    assert_eq!(verify["files"].as_u64(), Some(expected_files), "{verify}");
    assert_eq!(verify["orphans"].as_array().map(Vec::len), Some(0), "{verify}");

    // The index followed: same documents, and searches still resolve to rows of the new files.
    let server = Server::start(&bin(), &data, &n.url, &ServerOptions::default())?;
    wait_exact(&server, &tok, acked)?;
    let jndi = scenario_count(|e, _| e.to_string().contains("${jndi:ldap"));
    let (status, found) =
        get(&format!("{}/api/v1/search?q=%22%24%7Bjndi%3Aldap%22&limit=100", server.api), Some(&tok))?;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["total"].as_u64(), Some(jndi as u64), "{found}");
    assert_eq!(found["events"].as_array().map(Vec::len), Some(jndi), "every hit resolves to its row");
    for hit in found["events"].as_array().unwrap() {
        assert!(hit["event"].to_string().contains("${jndi:ldap"), "{hit}");
    }
    // Timelines read Z-ordered files as well as (host, time)-sorted ones: every event, in order,
    // across cursor pages, newest first and oldest first.
    let expected = scenario_count(|_, agent| agent == "web-north");
    for order in ["asc", "desc"] {
        let (mut seen, mut cursor) = (Vec::new(), None::<String>);
        loop {
            let mut url = format!(
                "{}/api/v1/hosts/Web%E6%9C%8D%E5%8A%A1%E5%99%A8-%E5%8C%97%E6%9C%BA%E6%88%BF/timeline?order={order}&limit=7",
                server.api
            );
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let (status, page) = get(&url, Some(&tok))?;
            assert_eq!(status, 200, "{page}");
            seen.extend(
                page["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["@timestamp"].as_str().unwrap().to_owned()),
            );
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen.len(), expected, "{order}");
        let sorted = seen.windows(2).all(|w| if order == "asc" { w[0] <= w[1] } else { w[0] >= w[1] });
        assert!(sorted, "{order}: {seen:?}");
    }
    Ok(())
}

#[test]
fn scheduled_maintenance_expires_old_partitions_and_compacts_while_ingesting() -> anyhow::Result<()> {
    let opts = ServerOptions {
        args: [
            "--maintenance-interval-secs",
            "1",
            "--retention-days",
            "30",
            "--delta-interval-secs",
            "1",
            "--delta-checkpoint-every",
            "2",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    };
    let env = Env::start(&opts)?;
    let spool = env.spool();
    let old_file = env.dir.path().join("old.ndjson");
    let old_n = 300;
    old_scenario(&old_file, old_n, 45, "retentionmarker")?;
    let old = agent(
        &bin(),
        &env.nats.url,
        &spool,
        &["replay", &old_file.display().to_string(), "--batch-size", "7"],
    )?;
    assert_eq!(old["events_acked"].as_u64(), Some(old_n as u64), "{old}");
    let recent = agent(
        &bin(),
        &env.nats.url,
        &spool,
        &[
            "simulate",
            "--hosts",
            "6",
            "--rate",
            "2000",
            "--duration",
            "3",
            "--seed",
            "4",
            "--batch-size",
            "25",
        ],
    )?;
    let kept = recent["events_acked"].as_u64().unwrap();

    // Retention removes exactly the old partition's rows, from the lake, the index and the Delta
    // table; compaction leaves one file per partition; nothing recent is lost.
    let (server, tok) = (&env.server, env.token.as_str());
    wait_exact(server, tok, kept)?;
    assert_eq!(search_total(server, tok, "retentionmarker")?, 0);
    let delta = eventually(Duration::from_secs(30), || {
        let d = delta_read(&table(&env.data))?;
        Ok((d["rows"].as_u64() == Some(kept) && d["files"].as_u64() <= Some(2)).then_some(d))
    })
    .map_err(|e| e.context(format!("{:?}", delta_read(&table(&env.data)))))?;
    assert_eq!(delta["distinct_ids"].as_u64(), Some(kept), "{delta}");
    // (The history before the previous checkpoint is cleaned up, so the DELETE itself may be gone
    // from it; the rows above and the search below are what show retention ran.)
    // Host counts follow: the archive host keeps its first/last seen but no stored events.
    let (_, hosts) = get(&format!("{}/api/v1/hosts?limit=1000", server.api), Some(tok))?;
    let hosts = hosts["hosts"].as_array().unwrap();
    assert_eq!(hosts.iter().map(|h| h["events"].as_u64().unwrap()).sum::<u64>(), kept, "{hosts:?}");
    let archive = hosts.iter().find(|h| h["host"] == "ARCHIVE-01").expect("the archive host is still listed");
    assert_eq!(archive["events"], 0, "{archive}");
    // Checkpoints were written and the commits before the previous one deleted: the reader above
    // started from a checkpoint.
    let log = table(&env.data).join("_delta_log");
    let last: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(log.join("_last_checkpoint"))?)?;
    assert!(last["version"].as_i64() >= Some(4), "{last}");
    assert!(!log.join(format!("{:020}.json", 0)).exists(), "version 0 was cleaned up after checkpoints");
    let old_date = schemas::time::date_of_micros(schemas::time::now_micros() - 45 * DAY_MICROS);
    let partition = table(&env.data).join("tenant=default").join(format!("date={old_date}"));
    assert!(!partition.exists(), "the expired partition's directory is gone: {}", partition.display());
    Ok(())
}

#[test]
fn kill_during_compaction_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    for fp in ["compact_after_index", "compact_after_publish", "compact_after_swap"] {
        let opts = ServerOptions {
            failpoints: Some(format!("{fp}=1")),
            args: vec!["--maintenance-interval-secs".into(), "1".into()],
            ..Default::default()
        };
        let env = Env::start(&opts)?;
        let spool = env.spool();
        let Env { server, nats: n, data, token: tok, dir: _dir } = env;
        let a = agent(&bin(), &n.url, &spool, &["replay", "builtin:log4j-conti", "--batch-size", "5"])?;
        let acked = a["events_acked"].as_u64().unwrap();
        let status = server.wait_exit(Duration::from_secs(60)).map_err(|e| e.context(fp))?;
        assert!(!status.success(), "{fp}: the server must have died in compaction");

        let server = Server::start(&bin(), &data, &n.url, &ServerOptions::default())?;
        wait_exact(&server, &tok, acked).map_err(|e| e.context(fp))?;
        server.kill();
        let dd = data.display().to_string();
        let verify = cordon(&["verify", "--data-dir", &dd])?;
        assert_eq!(verify["orphans"].as_array().map(Vec::len), Some(0), "{fp}: {verify}");
        assert_eq!(verify["bad_files"].as_array().map(Vec::len), Some(0), "{fp}: {verify}");
        let d = delta_read(&table(&data))?;
        assert_eq!((d["rows"].as_u64(), d["distinct_ids"].as_u64()), (Some(acked), Some(acked)), "{fp}: {d}");
        assert_eq!(d["files"], verify["files"], "{fp}");
    }
    Ok(())
}
