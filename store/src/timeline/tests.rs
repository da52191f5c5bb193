use super::*;
use crate::StoreConfig;
use crate::index::CommitPolicy;
use std::time::Duration;

const DAY: i64 = 86_400_000_000;
const T0: i64 = 1_790_000_000_000_000;

/// An event as sent: (time, id, host, kind).
type Sent = (i64, String, &'static str, &'static str);

/// A store whose index commits only when flushed, so a test chooses what it covers.
async fn store(dir: &std::path::Path) -> Arc<Store> {
    let mut cfg = StoreConfig::new(dir.to_path_buf());
    cfg.index_commit = CommitPolicy { max_docs: u64::MAX, max_delay: Duration::from_secs(3600) };
    Store::open(&cfg).await.unwrap()
}

async fn commit(store: &Store, key: &str, events: &[Sent]) {
    let docs: Vec<serde_json::Value> = events
        .iter()
        .map(|(t, id, host, kind)| {
            serde_json::json!({"@timestamp": schemas::time::format_micros(*t),
                "event": {"id": id, "category": kind}, "host": {"name": host}})
        })
        .collect();
    crate::fixtures::commit_events(store, key, &docs).await;
}

fn ids(rows: &[Record]) -> Vec<String> {
    rows.iter().map(|r| event_id(r).to_owned()).collect()
}

fn query(
    host: &str,
    ascending: bool,
    kinds: &[&str],
    range: Option<(i64, i64)>,
    limit: usize,
) -> TimelineQuery {
    TimelineQuery {
        host: host.into(),
        from: range.map(|r| r.0),
        to: range.map(|r| r.1),
        kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
        ascending,
        after: None,
        limit,
    }
}

/// Every page of `q` from the first, by cursor, as the API pages.
async fn all_pages(store: &Store, mut q: TimelineQuery) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    loop {
        let rows = store.timeline("default", q.clone()).await.unwrap();
        assert!(rows.len() <= q.limit);
        let Some(last) = rows.last() else { break };
        q.after = Some((last.time(), event_id(last).to_owned()));
        pages.push(ids(&rows));
    }
    pages
}

/// What a query must return over everything sent, as (time, id) order demands.
fn expected(sent: &[Sent], q: &TimelineQuery) -> Vec<String> {
    let mut want: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.2 == q.host && (q.kinds.is_empty() || q.kinds.iter().any(|k| k == s.3)))
        .filter(|s| q.from.is_none_or(|f| s.0 >= f) && q.to.is_none_or(|t| s.0 < t))
        .collect();
    want.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    if !q.ascending {
        want.reverse();
    }
    want.into_iter().map(|s| s.1.clone()).collect()
}

/// A host's timeline over days, read newest days first and only as far back as a page needs,
/// equals every event of the host in time order (both orders, paged by cursor, and within a
/// range), as they were sent: from the scan alone, and from the index once it holds the files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeline_over_many_days_is_every_event_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    // Nine days; host "h" has 0-6 events a day (none on some), "other" one a day.
    let mut sent: Vec<Sent> = Vec::new();
    for day in 0..9i64 {
        for i in 0..(day * 5 % 7) {
            sent.push((T0 + day * DAY + i * 3_600_000_000, format!("h-{day}-{i}"), "h", "process"));
        }
        sent.push((T0 + day * DAY, format!("o-{day}"), "other", "process"));
    }
    commit(&store, "k", &sent).await;
    for indexed in [false, true] {
        if indexed {
            store.flush().await.unwrap();
        }
        let newest = expected(&sent, &query("h", false, &[], None, 3))[..3].to_vec();
        assert_eq!(ids(&store.timeline("default", query("h", false, &[], None, 3)).await.unwrap()), newest);
        for ascending in [false, true] {
            let q = query("h", ascending, &[], None, 4);
            assert_eq!(
                all_pages(&store, q.clone()).await.concat(),
                expected(&sent, &q),
                "{ascending} {indexed}"
            );
        }
        let q = query("h", false, &[], Some((T0 + 2 * DAY + 1, T0 + 6 * DAY)), 100);
        let got = store.timeline("default", q.clone()).await.unwrap();
        assert_eq!(ids(&got), expected(&sent, &q), "range, indexed {indexed}");
    }
}

/// Events of two hosts at few distinct times (many share a microsecond), in three files: two the
/// index holds and one it does not yet. Every page, in both orders, with and without kinds and a
/// range, at page sizes that split runs of equal times, is what was sent in (time, id) order;
/// and the index's part alone is the indexed files' events in that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_from_the_index_and_the_newest_files_merge_in_order_through_equal_times() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let kinds = ["process", "network", "file"];
    let event = |n: i64| -> Sent {
        // Ids out of time order, times in seven values, two hosts, three kinds.
        let id = format!("e{:03}", (n * 37) % 101);
        (T0 + (n % 7) * 1_000_000, id, if n % 5 == 0 { "other" } else { "h" }, kinds[(n % 3) as usize])
    };
    let sent: Vec<Sent> = (0..90).map(event).collect();
    commit(&store, "a", &sent[..30]).await;
    commit(&store, "b", &sent[30..60]).await;
    store.flush().await.unwrap();
    commit(&store, "c", &sent[60..]).await;

    let range = Some((T0 + 1_000_000, T0 + 5_000_000));
    for ascending in [false, true] {
        for kinds in [&[][..], &["process", "file"][..]] {
            for range in [None, range] {
                for limit in [1, 4, 100] {
                    let q = query("h", ascending, kinds, range, limit);
                    let pages = all_pages(&store, q.clone()).await;
                    let label = format!("asc {ascending} kinds {kinds:?} range {range:?} limit {limit}");
                    assert_eq!(pages.concat(), expected(&sent, &q), "{label}");
                    assert!(
                        pages.iter().rev().skip(1).all(|p| p.len() == limit),
                        "full pages but the last: {label}"
                    );
                }
            }
        }
    }

    // The index's part alone: the first two files' events.
    let files = store.catalog.files_of_tenant("default").await.unwrap();
    let held = store.index.held_files();
    let indexed: Vec<FileEntry> = files.iter().filter(|f| held.contains(f.id)).cloned().collect();
    assert_eq!(indexed.len(), 2, "the flush covered the first two commits' files");
    for ascending in [false, true] {
        let q = query("h", ascending, &[], None, 100);
        let got = store.timeline_by_refs("default", &q, indexed.clone()).await.unwrap().unwrap();
        assert_eq!(ids(&got), expected(&sent[..60], &q), "indexed part, asc {ascending}");
    }
}
