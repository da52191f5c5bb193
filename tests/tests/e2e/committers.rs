//! Several processes committing to one catalog and one lake (ADR 0009, its first steps): two stores
//! on one PostgreSQL catalog and one lake directory, each with its own index, commit at once. File
//! ids come from the catalog, so no commit of one is refused for an id the other took; each index
//! follows the catalog by the set of files it holds, so it takes in the other's files and lets go of
//! the files a merge retired; one of them maintains, by a lease; a lake file the catalog does not know yet (another's commit between
//! its write and its catalog transaction) is left alone until it is older than the orphan grace.

use super::backends::on_postgres;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use store::{Store, StoreConfig};

const GRACE: Duration = Duration::from_secs(600);
const LEASE: Duration = Duration::from_secs(2);

/// A store with its own data directory (index) on the shared catalog and lake.
async fn open(dir: &Path, catalog: &str, lake: &Path, grace: Duration) -> anyhow::Result<Arc<Store>> {
    let cfg = StoreConfig {
        metadata_url: catalog.to_owned(),
        lake_url: Some(lake.display().to_string()),
        orphan_grace: grace,
        shared_catalog: true,
        // Delta syncs are hourly here: the Delta log is written by the merging
        // store, at its merge.
        delta_interval: Duration::from_secs(3600),
        maintenance_lease: LEASE,
        ..StoreConfig::new(dir.to_path_buf())
    };
    Ok(Store::open(&cfg).await?)
}

/// Commits `batches` messages of `per` events each, keyed `{who}-{b}`, with unique event ids; each
/// commit that fails is counted and its message committed again (as a redelivery would be).
async fn commit_all(
    store: Arc<Store>,
    who: &'static str,
    batches: usize,
    per: usize,
) -> anyhow::Result<usize> {
    let mut failed = 0;
    for b in 0..batches {
        let docs: Vec<serde_json::Value> = (0..per)
            .map(|i| {
                serde_json::json!({"@timestamp": format!("2026-01-0{}T00:00:{:02}Z", 1 + i % 3, i % 60),
                    "host": {"name": format!("{who}-h{}", i % 7)},
                    "event": {"id": format!("{who}-{b}-{i}"), "category": "process"},
                    "process": {"command_line": format!("run.exe {who}-{b}-{i}")}})
            })
            .collect();
        let batch = || store::fixtures::message(&format!("{who}-{b}"), &docs);
        loop {
            match store.commit(who, vec![batch()]).await {
                Ok(_) => break,
                Err(e) if failed < 100 => {
                    eprintln!("{who}: commit {b} failed: {e}");
                    failed += 1;
                }
                Err(e) => anyhow::bail!("{who}: commit {b} keeps failing: {e}"),
            }
        }
    }
    Ok(failed)
}

/// Events whose text holds `text`, by the store's index.
async fn found(store: &Store, text: &str) -> anyhow::Result<usize> {
    let q = store::index::SearchQuery { q: text.into(), literal: true, limit: 1, ..Default::default() };
    Ok(store.search("default", q).await?.1)
}

#[test]
fn two_stores_commit_to_one_catalog_and_lake_without_refusing_each_other() -> anyhow::Result<()> {
    on_postgres(|url| async move { two_stores(&url).await })
}

async fn two_stores(catalog: &str) -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let lake = root.path().join("lake");
    let a = open(&root.path().join("a"), catalog, &lake, GRACE).await?;
    let b = open(&root.path().join("b"), catalog, &lake, GRACE).await?;
    let (batches, per) = (30, 40);
    let (fa, fb) = tokio::try_join!(
        tokio::spawn(commit_all(Arc::clone(&a), "a", batches, per)),
        tokio::spawn(commit_all(Arc::clone(&b), "b", batches, per)),
    )?;
    let failed = (fa?, fb?);
    assert_eq!(failed, (0, 0), "commits refused (a, b): each took file ids the other had");

    let sent = 2 * batches * per;
    let (rows, files) = a.catalog().totals(Some("default")).await?;
    assert_eq!(rows as usize, sent, "the catalog's rows");
    assert_eq!(files as usize, 2 * batches * 3, "one file per commit and day");
    // Commits of both took numbers in the order they became visible: one per commit, no gaps, each
    // commit's files under its one number; and the files read back by number hold every event once.
    let numbered = a.catalog().files_committed_after(0, i64::MAX).await?;
    let mut per_seq: std::collections::BTreeMap<i64, usize> = Default::default();
    numbered.iter().for_each(|(seq, _)| *per_seq.entry(*seq).or_default() += 1);
    let commits = 2 * batches as i64;
    assert_eq!(per_seq.keys().copied().collect::<Vec<_>>(), (1..=commits).collect::<Vec<_>>());
    assert!(per_seq.values().all(|n| *n == 3), "{per_seq:?}");
    assert_eq!(a.catalog().last_commit_seq().await?, commits);
    let (rows, last) = b.rows_committed_after(0, commits / 2).await?;
    assert_eq!((rows.len(), last), (sent / 2, Some(commits / 2)), "the first half of the commits");
    let (rows, last) = b.rows_committed_after(commits / 2, i64::MAX).await?;
    assert_eq!((rows.len(), last), (sent / 2, Some(commits)), "the rest");
    assert_eq!(b.rows_committed_after(commits, i64::MAX).await?.1, None, "nothing past the last");
    let sql = "SELECT count(*), count(DISTINCT event_id) FROM events";
    for store in [&a, &b] {
        let out = store.sql("default", sql, Default::default()).await?;
        assert_eq!(out.rows[0], vec![serde_json::json!(sent), serde_json::json!(sent)], "rows, distinct ids");
    }

    // Each index holds its own files until a tick takes in the other's; then every event once.
    for store in [&a, &b] {
        store.flush().await?;
        assert_eq!(found(store, "run.exe").await?, sent / 2, "an index before it follows the catalog");
    }
    for store in [&a, &b] {
        store.tick().await?;
        assert_eq!(found(store, "run.exe").await?, sent, "every event once in each index");
        assert_eq!(found(store, "b-7-3").await?, 1, "one of the other store's events");
    }
    // One store maintains: while it holds the lease, the other merges nothing.
    assert!(a.maintains().await?, "the first to ask takes the maintenance lease");
    assert_eq!(b.merge_small().await?.files_removed, 0, "a store without the lease merged");
    // It merges files of both: the other's index lets go of the inputs and takes the output.
    let before: Vec<String> = a.catalog().files_after(0).await?.into_iter().map(|f| f.path).collect();
    let merged = a.merge_small().await?;
    assert!(merged.files_removed >= 32, "a merge took {} files", merged.files_removed);
    let live: std::collections::HashSet<String> =
        a.catalog().files_after(0).await?.into_iter().map(|f| f.path).collect();
    let retired: Vec<String> = before.into_iter().filter(|p| !live.contains(p)).collect();
    assert_eq!(retired.len(), merged.files_removed);
    // The other's index still points into the merge's inputs until it follows: they stay, for the
    // grace, and its searches and queries keep reading them.
    assert!(retired.iter().all(|p| lake.join(p).exists()), "a merge removed inputs another may read");
    assert_eq!(found(&b, "run.exe").await?, sent, "the other store's search before it follows");
    b.follow_catalog().await?;
    for store in [&a, &b] {
        assert_eq!(found(store, "run.exe").await?, sent, "every event once after the merge");
        assert_eq!(found(store, "a-11-5").await?, 1, "an event of a merged file");
    }
    // A maintainer that stops renewing is replaced once its lease lapses.
    assert!(!b.maintains().await?);
    tokio::time::sleep(LEASE + Duration::from_millis(200)).await;
    assert!(b.maintains().await?, "the lapsed lease was not taken over");
    assert!(!a.maintains().await?, "two maintainers");
    // Both write the Delta log: the one behind reads it again and finds nothing to add.
    for store in [&b, &a] {
        store.flush().await?;
        let report = store.verify().await?;
        assert!(report.problems().is_empty(), "{:?}", report.problems());
        assert_eq!(report.indexed_docs, sent as u64, "documents in the index");
    }

    // A file in the lake the catalog does not know, just written (another process's commit in
    // flight): a store opening with the grace keeps it; once older than the grace, it is removed.
    let committed = a.catalog().files_after(0).await?;
    let in_flight = lake.join(&committed[0].path).with_file_name("999999999999-in-flight.parquet");
    std::fs::copy(lake.join(&committed[0].path), &in_flight)?;
    let c = open(&root.path().join("c"), catalog, &lake, GRACE).await?;
    assert!(in_flight.exists(), "a file younger than the grace was removed as an orphan");
    assert_eq!(c.verify().await?.orphans, Vec::<String>::new(), "verify called a commit in flight an orphan");
    drop(c);
    let old = std::time::SystemTime::now() - 2 * GRACE;
    std::fs::File::options().write(true).open(&in_flight)?.set_modified(old)?;
    drop(open(&root.path().join("c"), catalog, &lake, GRACE).await?);
    assert!(!in_flight.exists(), "an orphan older than the grace was kept");
    let out = a.sql("default", sql, Default::default()).await?;
    assert_eq!(out.rows[0][0], serde_json::json!(sent), "the orphan's removal took committed rows");
    // Once retired longer than the grace, the merge's inputs are swept like orphans.
    let short = Duration::from_secs(1);
    tokio::time::sleep(short + Duration::from_millis(100)).await;
    drop(open(&root.path().join("d"), catalog, &lake, short).await?);
    assert!(retired.iter().all(|p| !lake.join(p).exists()), "retired inputs kept past the grace");
    let out = a.sql("default", sql, Default::default()).await?;
    assert_eq!(out.rows[0][0], serde_json::json!(sent), "the sweep took committed rows");

    Ok(())
}
