//! The distributed engine against the embedded one on the same store: two executors on this
//! machine, each its own gRPC server.

use super::*;
use datafusion_distributed::ChannelResolver;
use std::sync::Arc;
use store::{Store, StoreConfig};
use tokio::sync::oneshot;

const KEY: &str = "test-executor-key-0123456789";

/// Queries of every shape the planner cuts differently: a global aggregate, grouping by a column
/// and by the partition column, distinct counts, a join of two aggregates, a sort with a limit.
const QUERIES: [&str; 6] = [
    "SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM events",
    "SELECT host_name, count(*) AS n FROM events GROUP BY host_name ORDER BY host_name",
    "SELECT date, event_action, count(*) AS n FROM events GROUP BY date, event_action ORDER BY date, event_action",
    "SELECT host_name, count(DISTINCT user_name) AS users FROM events WHERE event_kind = 'authentication' \
     GROUP BY host_name ORDER BY host_name",
    "SELECT e.host_name, count(*) AS n FROM events e JOIN (SELECT host_name FROM events \
     WHERE event_action = 'logon-failed' GROUP BY host_name) f ON e.host_name = f.host_name \
     GROUP BY e.host_name ORDER BY e.host_name",
    "SELECT event_id, host_name FROM events ORDER BY time DESC, event_id LIMIT 7",
];

/// What was sent: `days` days of `hosts` hosts, each host-day one message of `per` events cycling
/// through three actions and four users.
fn events(days: usize, hosts: usize, per: usize) -> Vec<(String, Vec<serde_json::Value>)> {
    let actions = ["logon", "logon-failed", "process-start"];
    let mut out = Vec::new();
    for d in 0..days {
        for h in 0..hosts {
            let docs = (0..per)
                .map(|i| {
                    let action = actions[(i + h) % 3];
                    let kind = if action == "process-start" { "process" } else { "authentication" };
                    serde_json::json!({
                        "@timestamp": format!("2026-03-{:02}T{:02}:{:02}:00Z", d + 1, i % 24, i % 60),
                        "host": {"name": format!("host-{h}")},
                        "event": {"id": format!("e-{d}-{h}-{i}"), "category": kind, "action": action},
                        "user": {"name": format!("user-{}", (i * (h + 1)) % 4)},
                    })
                })
                .collect();
            out.push((format!("m-{d}-{h}"), docs));
        }
    }
    out
}

struct Executor {
    url: String,
    counts: Arc<ExecutorCounts>,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<Result<(), DistError>>,
}

async fn executor(lake: &std::path::Path) -> Executor {
    executor_with(lake, None).await
}

async fn executor_with(lake: &std::path::Path, tls: Option<ExecutorTls>) -> Executor {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}", listener.local_addr().unwrap());
    let counts = Arc::new(ExecutorCounts::default());
    let cfg = ExecutorConfig {
        objects: Objects::local(lake, false).unwrap(),
        memory_bytes: 256 << 20,
        key: ExecutorKey::new(KEY).unwrap(),
        counts: Arc::clone(&counts),
        tls,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(serve_executor(listener, cfg, async {
        let _ = stopped.await;
    }));
    Executor { url, counts, stop: Some(stop), served }
}

async fn store_with(dir: &std::path::Path, engine: Option<DistributedSql>) -> Arc<Store> {
    let mut cfg = StoreConfig::new(dir.to_owned());
    cfg.fsync = false;
    cfg.sql_engine = engine.map(|e| Arc::new(e) as Arc<dyn SqlEngine>);
    Store::open(&cfg).await.unwrap()
}

fn coordinator(executors: &[&Executor], key: &str) -> DistributedSql {
    coordinator_with(executors, key, None).unwrap()
}

fn coordinator_with(
    executors: &[&Executor],
    key: &str,
    ca: Option<&[u8]>,
) -> Result<DistributedSql, DistError> {
    let urls: Vec<String> = executors.iter().map(|e| e.url.clone()).collect();
    let sql = DistributedSql::new(Executors::parse(&urls)?, ExecutorKey::new(key)?, Channels::new(ca))?;
    // Tasks of a few KiB, so a small lake is spread over every executor.
    Ok(sql.with_bytes_per_task(4096))
}

/// A CA and a certificate for 127.0.0.1 it signed: (CA PEM, executor TLS).
fn cluster_tls() -> (Vec<u8>, ExecutorTls) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert =
        CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
    let ca_pem = ca.pem().into_bytes();
    let tls = ExecutorTls {
        cert_pem: cert.pem().into_bytes(),
        key_pem: key.serialize_pem().into_bytes(),
        ca_pem: ca_pem.clone(),
    };
    (ca_pem, tls)
}

fn limits() -> SqlLimits {
    SqlLimits { max_rows: 10_000, timeout: std::time::Duration::from_secs(60) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_executors_answer_what_the_embedded_engine_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (executor(&dir.path().join("lake")).await, executor(&dir.path().join("lake")).await);
    let store = store_with(dir.path(), Some(coordinator(&[&a, &b], KEY))).await;
    let sent = events(3, 5, 40);
    for (key, docs) in &sent {
        store::fixtures::commit_events(&store, key, docs).await;
    }
    let total: usize = sent.iter().map(|(_, d)| d.len()).sum();
    let fragments = |e: &Executor| e.counts.fragments.load(std::sync::atomic::Ordering::Relaxed);
    for sql in QUERIES {
        let embedded = store.sql("default", sql, limits()).await.unwrap();
        let before = (fragments(&a), fragments(&b));
        let distributed = store.analyst_sql("default", sql, limits()).await.unwrap();
        assert!(fragments(&a) > before.0 && fragments(&b) > before.1, "{sql} ran on both executors");
        assert_eq!(distributed.columns, embedded.columns, "{sql}");
        assert_eq!(distributed.rows, embedded.rows, "{sql}");
        assert!(!embedded.rows.is_empty(), "{sql} has rows to compare");
    }
    // The figures the comparison rests on come from what was sent, not from either engine.
    let count = store.analyst_sql("default", QUERIES[0], limits()).await.unwrap();
    assert_eq!(count.rows, vec![vec![serde_json::json!(total), serde_json::json!(total)]]);
    let by_day = store.analyst_sql("default", QUERIES[2], limits()).await.unwrap();
    assert_eq!(by_day.rows.len(), 3 * 3, "three days, three actions");
    let per_day_action: u64 = by_day.rows.iter().map(|r| r[2].as_u64().unwrap()).sum();
    assert_eq!(per_day_action as usize, total);
    for mut e in [a, b] {
        e.stop.take().unwrap().send(()).unwrap();
        e.served.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_refuses_a_coordinator_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    // Two executors: with one, the planner keeps the whole plan in the coordinator.
    let (a, b) = (executor(&dir.path().join("lake")).await, executor(&dir.path().join("lake")).await);
    let store = store_with(dir.path(), Some(coordinator(&[&a, &b], "another-key-not-the-cluster-one"))).await;
    for (key, docs) in events(1, 2, 10) {
        store::fixtures::commit_events(&store, &key, &docs).await;
    }
    let sql = "SELECT host_name, count(*) FROM events GROUP BY host_name";
    let err = store.analyst_sql("default", sql, limits()).await.unwrap_err().to_string();
    assert!(err.contains("an executor refused this server's key"), "{err}");
    let count = |e: &Executor| {
        let c = &e.counts;
        (
            c.refused.load(std::sync::atomic::Ordering::Relaxed),
            c.fragments.load(std::sync::atomic::Ordering::Relaxed),
        )
    };
    let (ca, cb) = (count(&a), count(&b));
    assert!(ca.0 + cb.0 > 0, "an executor refused it: {ca:?} {cb:?}");
    assert_eq!(ca.1 + cb.1, 0, "and none ran anything");
    // The embedded engine still answers: the refusal is the executor's, not the lake's.
    assert_eq!(store.sql("default", sql, limits()).await.unwrap().rows.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_only_a_coordinator_trusting_the_cluster_ca_gets_answers() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let (ca, tls) = cluster_tls();
    let (a, b) = (executor_with(&lake, Some(tls.clone())).await, executor_with(&lake, Some(tls)).await);
    assert!(a.url.starts_with("https://"));
    let store = store_with(dir.path(), Some(coordinator_with(&[&a, &b], KEY, Some(&ca)).unwrap())).await;
    for (key, docs) in events(2, 3, 20) {
        store::fixtures::commit_events(&store, &key, &docs).await;
    }
    let fragments = |e: &Executor| e.counts.fragments.load(std::sync::atomic::Ordering::Relaxed);
    // A shuffle: executors call each other too, over TLS.
    let sql = QUERIES[2];
    let got = store.analyst_sql("default", sql, limits()).await.unwrap();
    assert_eq!(got.rows, store.sql("default", sql, limits()).await.unwrap().rows);
    assert!(fragments(&a) > 0 && fragments(&b) > 0);

    // A coordinator that trusts another CA is refused at the handshake, as is one speaking plain
    // HTTP/2 to the TLS port; one without a CA cannot name https executors at all.
    let (stranger_ca, _) = cluster_tls();
    let url: url::Url = a.url.parse().unwrap();
    let stranger = Channels::new(Some(&stranger_ca)).get_worker_client_for_url(&url).await.err().unwrap();
    assert!(stranger.to_string().contains("Error connecting to Distributed DataFusion worker"), "{stranger}");
    let trusted = Channels::new(Some(&ca)).get_worker_client_for_url(&url).await;
    assert!(trusted.is_ok(), "the cluster's CA connects");
    assert!(matches!(coordinator_with(&[&a, &b], KEY, None), Err(DistError::SchemeMismatch)));
}

#[test]
fn keys_and_addresses_are_checked() {
    assert!(matches!(ExecutorKey::new("short"), Err(DistError::BadKey)));
    assert!(matches!(ExecutorKey::new("has a space in the middle"), Err(DistError::BadKey)));
    let key = ExecutorKey::new(KEY).unwrap();
    assert!(key.accepts(KEY.as_bytes()));
    assert!(!key.accepts(b"test-executor-key-012345678"), "a prefix is not the key");
    assert!(!key.accepts(format!("{KEY}x").as_bytes()), "nor is a longer key");
    assert!(!key.accepts(b""));
    assert!(format!("{key:?}").contains(".."), "the key never reaches a log");
    assert!(matches!(Executors::parse(&[]), Err(DistError::NoExecutors)));
    assert!(matches!(Executors::parse(&["127.0.0.1:9".into()]), Err(DistError::BadExecutor(_))));
    assert!(matches!(Executors::parse(&["ftp://h:9".into()]), Err(DistError::BadExecutor(_))));
    let mixed = ["https://h:9".to_owned(), "http://g:9".to_owned()];
    assert!(matches!(Executors::parse(&mixed), Err(DistError::SchemeMismatch)));
    let plain = Executors::parse(&["http://h:9".into()]).unwrap();
    let key = || ExecutorKey::new(KEY).unwrap();
    assert!(matches!(
        DistributedSql::new(plain, key(), Channels::new(Some(b"ca"))),
        Err(DistError::SchemeMismatch)
    ));
    assert!(Executors::parse(&["http://10.0.0.2:50051".into()]).is_ok());
}
