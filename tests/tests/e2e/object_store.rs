//! The lake in an S3-compatible bucket (a throwaway `moto_server`): ingest, search, timelines and
//! SQL work as on a directory; the bucket, listed through the S3 API, holds exactly the catalog's
//! files; delta-rs reads the table from the bucket; compaction and a crash in the middle of it lose
//! and duplicate nothing.

use super::maintenance::{cordon, wait_exact};
use super::{Env, bin, scenario_count};
use std::time::Duration;
use tests::{S3Server, Server, ServerOptions, agent, delta_read_uri, get};

const PREFIX: &str = "prod/lake";

fn parquet_keys(s3: &S3Server) -> anyhow::Result<Vec<String>> {
    Ok(s3
        .keys(&format!("{PREFIX}/events/"))?
        .into_iter()
        .filter(|k| k.ends_with(".parquet") && !k.contains("/_delta_log/"))
        .collect())
}

fn admin(cmd: &str, data: &std::path::Path, s3: &S3Server) -> anyhow::Result<serde_json::Value> {
    let dd = data.display().to_string();
    let mut args = vec![cmd.to_owned(), "--data-dir".to_owned(), dd];
    args.extend(s3.lake_args(PREFIX));
    cordon(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn a_lake_in_a_bucket_keeps_every_acked_event_once_and_reads_like_a_directory() -> anyhow::Result<()> {
    let s3 = S3Server::start("cordon-lake").unwrap_or_else(|e| panic!("{e:#}"));
    let opts = ServerOptions { args: s3.lake_args(PREFIX), ..Default::default() };
    let env = Env::start(&opts)?;
    let spool = env.spool();
    let Env { server, nats: n, data, token: tok, dir: _dir } = env;
    let a = agent(&bin(), &n.url, &spool, &["replay", "builtin:log4j-conti", "--batch-size", "5"])?;
    let b = agent(
        &bin(),
        &n.url,
        &spool,
        &[
            "simulate",
            "--hosts",
            "4",
            "--rate",
            "2000",
            "--duration",
            "2",
            "--seed",
            "9",
            "--batch-size",
            "25",
        ],
    )?;
    let acked = a["events_acked"].as_u64().unwrap() + b["events_acked"].as_u64().unwrap();
    // SQL counts run DataFusion over the bucket; index documents were read from the commit path.
    wait_exact(&server, &tok, acked)?;

    let jndi = scenario_count(|e, _| e.to_string().contains("${jndi:ldap"));
    let (status, found) =
        get(&format!("{}/api/v1/search?q=%22%24%7Bjndi%3Aldap%22&limit=100", server.api), Some(&tok))?;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["total"].as_u64(), Some(jndi as u64), "{found}");
    assert_eq!(
        found["events"].as_array().map(Vec::len),
        Some(jndi),
        "every hit's row is fetched from the bucket"
    );
    let expected = scenario_count(|_, agent| agent == "win-dakeqi");
    let (status, page) =
        get(&format!("{}/api/v1/hosts/WIN-DAKEQI/timeline?order=asc&limit=1000", server.api), Some(&tok))?;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["events"].as_array().map(Vec::len), Some(expected), "{page}");
    assert!(!data.join("lake").exists(), "no lake files on local disk when the lake is a bucket");
    server.kill();

    // What the bucket holds, listed through the S3 API: exactly the catalog's files.
    let verify = admin("verify", &data, &s3)?;
    assert_eq!(verify["orphans"].as_array().map(Vec::len), Some(0), "{verify}");
    assert_eq!(verify["bad_files"].as_array().map(Vec::len), Some(0), "{verify}");
    assert_eq!(verify["rows"].as_u64(), Some(acked), "{verify}");
    let files = verify["files"].as_u64().unwrap();
    assert!(files > 4, "small batches made many files: {verify}");
    assert_eq!(parquet_keys(&s3)?.len() as u64, files);
    let table = format!("s3://{}/{PREFIX}/events", s3.bucket);
    let d = delta_read_uri(&table, &s3.delta_options())?;
    assert_eq!((d["rows"].as_u64(), d["distinct_ids"].as_u64()), (Some(acked), Some(acked)), "{d}");
    assert_eq!(d["files"].as_u64(), Some(files), "{d}");
    assert!(d["ingest_txn"].as_i64().unwrap() > 0, "{d}");

    // Compaction on the bucket: fewer objects, the same rows, the old objects deleted.
    let report = admin("compact", &data, &s3)?;
    let (removed, added) =
        (report["files_removed"].as_u64().unwrap(), report["files_added"].as_u64().unwrap());
    assert!(removed >= 2 && added >= 1, "{report}");
    let d = delta_read_uri(&table, &s3.delta_options())?;
    assert_eq!((d["rows"].as_u64(), d["distinct_ids"].as_u64()), (Some(acked), Some(acked)), "{d}");
    assert_eq!(d["files"].as_u64(), Some(files - removed + added), "{d}");
    assert_eq!(d["operations"][0], "OPTIMIZE", "{d}");
    assert_eq!(parquet_keys(&s3)?.len() as u64, files - removed + added);

    // A restarted server reads the compacted bucket: same counts, and search still resolves rows.
    let server = Server::start(&bin(), &data, &n.url, &opts)?;
    wait_exact(&server, &tok, acked)?;
    let (_, found) =
        get(&format!("{}/api/v1/search?q=%22%24%7Bjndi%3Aldap%22&limit=100", server.api), Some(&tok))?;
    assert_eq!(found["events"].as_array().map(Vec::len), Some(jndi), "{found}");
    Ok(())
}

#[test]
fn kill_during_compaction_on_a_bucket_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let s3 = S3Server::start("cordon-crash").unwrap_or_else(|e| panic!("{e:#}"));
    for fp in ["compact_after_publish", "compact_after_swap"] {
        let prefix_args = s3.lake_args(&format!("{PREFIX}-{fp}"));
        let mut args = prefix_args.clone();
        args.extend(["--maintenance-interval-secs".to_owned(), "1".to_owned()]);
        let opts = ServerOptions { failpoints: Some(format!("{fp}=1")), args, ..Default::default() };
        let env = Env::start(&opts)?;
        let spool = env.spool();
        let Env { server, nats: n, data, token: tok, dir: _dir } = env;
        let a = agent(&bin(), &n.url, &spool, &["replay", "builtin:log4j-conti", "--batch-size", "5"])?;
        let acked = a["events_acked"].as_u64().unwrap();
        let status = server.wait_exit(Duration::from_secs(60)).map_err(|e| e.context(fp))?;
        assert!(!status.success(), "{fp}: the server must have died in compaction");
        // The crash left an object the catalog does not hold (the new file, or the retired ones):
        // `verify` says what recovery removed, and the bucket then holds only the catalog's files.
        let mut vargs = vec!["verify".to_owned(), "--data-dir".to_owned(), data.display().to_string()];
        vargs.extend(prefix_args.clone());
        let first = cordon(&vargs.iter().map(String::as_str).collect::<Vec<_>>())?;
        let removed = first["orphans_removed_at_open"].as_array().cloned().unwrap_or_default();
        assert!(!removed.is_empty(), "{fp}: {first}");
        assert!(removed.iter().all(|p| p.as_str().is_some_and(|p| p.ends_with(".parquet"))), "{fp}: {first}");

        let restart = ServerOptions { args: prefix_args.clone(), ..Default::default() };
        let server = Server::start(&bin(), &data, &n.url, &restart)?;
        wait_exact(&server, &tok, acked).map_err(|e| e.context(fp))?;
        server.kill();
        let dd = data.display().to_string();
        let mut vargs = vec!["verify".to_owned(), "--data-dir".to_owned(), dd];
        vargs.extend(prefix_args);
        let verify = cordon(&vargs.iter().map(String::as_str).collect::<Vec<_>>())?;
        assert_eq!(verify["orphans"].as_array().map(Vec::len), Some(0), "{fp}: {verify}");
        assert_eq!(verify["rows"].as_u64(), Some(acked), "{fp}: {verify}");
        let keys = s3.keys(&format!("{PREFIX}-{fp}/events/"))?;
        let parquet = keys.iter().filter(|k| k.ends_with(".parquet") && !k.contains("/_delta_log/")).count();
        assert_eq!(parquet as u64, verify["files"].as_u64().unwrap(), "{fp}: {keys:?}");
    }
    Ok(())
}
