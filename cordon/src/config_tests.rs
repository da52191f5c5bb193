//! Tests of [`crate::config`]: flags over the file over defaults, and what is refused.

use super::*;

#[test]
fn file_then_defaults_and_unknown_keys_refused() {
    let dir = tempfile_dir("defaults");
    let path = dir.join("c.toml");
    std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:9999\"\n[nats]\nurl = \"nats://x:1\"\n").unwrap();
    let args = ServeArgs {
        config: Some(path.clone()),
        nats_url: Some("nats://flag:2".into()),
        ..Default::default()
    };
    let cfg = args.resolve().unwrap();
    assert_eq!(cfg.listen.port(), 9999);
    assert_eq!(cfg.maintenance_interval, Some(Duration::from_secs(3600)));
    assert_eq!(cfg.retention_days, None);
    std::fs::write(&path, "[store]\nretention_days = 30\nmaintenance_interval_secs = 0\n").unwrap();
    let cfg = args.resolve().unwrap();
    assert_eq!((cfg.retention_days, cfg.maintenance_interval), (Some(30), None));
    std::fs::write(&path, "[store]\nretention_days = 0\n").unwrap();
    let err = format!("{:#}", args.resolve().unwrap_err());
    assert!(err.contains("retention-days"), "{err}");
    assert_eq!(cfg.nats_url, "nats://flag:2", "flags win over the file");
    std::fs::write(&path, "[server]\nlisen = \"x\"\n").unwrap();
    let err = format!("{:#}", args.resolve().unwrap_err());
    assert!(err.contains("unknown field"), "{err}");
}

#[test]
fn stream_replicas_from_the_file_or_flags_within_jetstreams_limit() {
    let dir = tempfile_dir("replicas");
    let path = dir.join("r.toml");
    let args = ServeArgs { config: Some(path.clone()), ..Default::default() };
    std::fs::write(&path, "").unwrap();
    assert_eq!(args.resolve().unwrap().stream_replicas, 1);
    std::fs::write(&path, "[ingest]\nstream_replicas = 3\n").unwrap();
    assert_eq!(args.resolve().unwrap().stream_replicas, 3);
    let flag = ServeArgs { stream_replicas: Some(5), ..args.clone() };
    assert_eq!(flag.resolve().unwrap().stream_replicas, 5, "the flag wins");
    for bad in [0, 6] {
        let err =
            format!("{:#}", ServeArgs { stream_replicas: Some(bad), ..args.clone() }.resolve().unwrap_err());
        assert!(err.contains("--stream-replicas must be 1 to 5"), "{bad}: {err}");
    }
}

#[test]
fn incident_and_graph_windows() {
    let dir = tempfile_dir("windows");
    let path = dir.join("w.toml");
    let args = ServeArgs { config: Some(path.clone()), ..Default::default() };
    std::fs::write(&path, "").unwrap();
    let cfg = args.resolve().unwrap();
    assert_eq!((cfg.incident_window_hours, cfg.graph_hot_hours, cfg.graph_max_edges), (24, 48, 2_000_000));
    std::fs::write(&path, "[correlate]\nincident_window_hours = 36\n").unwrap();
    let cfg = args.resolve().unwrap();
    assert_eq!((cfg.incident_window_hours, cfg.graph_hot_hours), (36, 72), "the hot window follows");
    std::fs::write(&path, "[correlate]\ngraph_max_edges = 500000\n").unwrap();
    assert_eq!(args.resolve().unwrap().graph_max_edges, 500_000);
    std::fs::write(&path, "[correlate]\ngraph_max_edges = 10\n").unwrap();
    let err = format!("{:#}", args.resolve().unwrap_err());
    assert!(err.contains("graph-max-edges"), "{err}");
    std::fs::write(&path, "[correlate]\nincident_window_hours = 24\ngraph_hot_hours = 12\n").unwrap();
    let err = format!("{:#}", args.resolve().unwrap_err());
    assert!(err.contains("graph-hot-hours"), "{err}");
    std::fs::write(&path, "[correlate]\nincident_window_hours = 0\n").unwrap();
    let err = format!("{:#}", args.resolve().unwrap_err());
    assert!(err.contains("incident-window-hours"), "{err}");
}

#[test]
fn rule_paths_from_flags_or_the_file_must_exist() {
    let dir = tempfile_dir("rules");
    let rules = dir.join("team-rules");
    std::fs::create_dir_all(&rules).unwrap();
    let path = dir.join("r.toml");
    std::fs::write(&path, format!("[detection]\nrules = [{:?}]\n", rules.display().to_string())).unwrap();
    let args = ServeArgs { config: Some(path.clone()), ..Default::default() };
    assert_eq!(args.resolve().unwrap().rules, vec![rules.clone()]);
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let flags = ServeArgs { rules: vec![other.clone()], ..args };
    assert_eq!(flags.resolve().unwrap().rules, vec![other], "flags replace the file's list");
    let missing = ServeArgs { rules: vec![dir.join("nope")], config: None, ..Default::default() };
    let err = format!("{:#}", missing.resolve().unwrap_err());
    assert!(err.contains("nope") && err.contains("does not exist"), "{err}");
}

#[test]
fn baseline_schedule_and_forecast_settings() {
    let dir = tempfile_dir("baseline");
    let path = dir.join("a.toml");
    let args = ServeArgs { config: Some(path.clone()), ..Default::default() };
    std::fs::write(&path, "").unwrap();
    let cfg = args.resolve().unwrap();
    assert_eq!((cfg.baseline_refit.as_str(), cfg.forecast.horizon_hours), ("0 2 * * *", 48));
    std::fs::write(&path, "[anomaly]\nrefit = \"30 3 * * 1-5\"\nlevel = 0.95\nhistory_hours = 1344\n")
        .unwrap();
    let cfg = args.resolve().unwrap();
    assert_eq!(cfg.baseline_refit.as_str(), "30 3 * * 1-5");
    assert_eq!((cfg.forecast.level, cfg.forecast.history_hours), (0.95, 1344));
    std::fs::write(&path, "[anomaly]\nrefit = \"0 25 * * *\"\n").unwrap();
    let err = format!("{:#}", args.resolve().unwrap_err());
    assert!(err.contains("hour: \"25\" is outside 0-23"), "{err}");
    std::fs::write(&path, "[anomaly]\nlevel = 1.5\n").unwrap();
    let err = format!("{:#}", args.resolve().unwrap_err());
    assert!(err.contains("level"), "{err}");
    std::fs::write(
        &path,
        "[[reports]]\nname = \"daily\"\nschedule = \"0 7 * * *\"\nwebhook = \"https://soc.example/hook\"\n\
         [[reports]]\nname = \"weekly\"\nschedule = \"0 7 * * 1\"\nperiod_hours = 168\n",
    )
    .unwrap();
    let cfg = args.resolve().unwrap();
    assert_eq!(cfg.reports.len(), 2);
    assert_eq!((cfg.reports[0].period_hours, cfg.reports[1].period_hours), (24, 168));
    assert_eq!(cfg.reports[0].webhook.as_deref(), Some("https://soc.example/hook"));
    for (bad, why) in [
        ("[[reports]]\nname = \"d\"\nschedule = \"daily\"\n", "five are needed"),
        ("[[reports]]\nname = \"a b\"\nschedule = \"@daily\"\n", "letters, digits"),
        ("[[reports]]\nname = \"d\"\nschedule = \"@daily\"\nwebhook = \"ftp://x\"\n", "http://"),
        ("[[reports]]\nname = \"d\"\nschedule = \"@daily\"\ncolour = 1\n", "unknown field"),
    ] {
        std::fs::write(&path, bad).unwrap();
        let err = format!("{:#}", args.resolve().unwrap_err());
        assert!(err.contains(why), "{bad}: {err}");
    }
}

/// A directory of this test's own: tests run in parallel in one process, so a directory
/// named only by the process would let two of them write the same file.
fn tempfile_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cordon-cfg-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_shared_catalog_needs_postgres_and_a_shared_lake_and_sets_the_store_up_for_others() {
    let dir = tempfile_dir("shared");
    let path = dir.join("s.toml");
    std::fs::write(&path, "").unwrap();
    let args = ServeArgs { config: Some(path.clone()), ..Default::default() };
    let one = args.resolve().unwrap();
    assert_eq!(one.shared_catalog, None);
    let scfg = store_config(&one);
    assert!(!scfg.shared_catalog && scfg.orphan_grace.is_zero(), "one process: its own orphans at once");

    let shared = ServeArgs { shared_catalog: true, ..args.clone() };
    let err = format!("{:#}", shared.resolve().unwrap_err());
    assert!(err.contains("needs a PostgreSQL catalog"), "{err}");
    let pg = ServeArgs { metadata_url: Some("postgres://db/cordon".into()), ..shared.clone() };
    let err = format!("{:#}", pg.resolve().unwrap_err());
    assert!(err.contains("--lake-url"), "{err}");
    let full = ServeArgs { lake_url: Some("/shared/lake".into()), ..pg.clone() };
    let cfg = full.resolve().unwrap();
    assert_eq!(cfg.shared_catalog, Some(Duration::from_secs(30)));
    let scfg = store_config(&cfg);
    assert!(scfg.shared_catalog, "the index follows the others' commits");
    assert_eq!(scfg.maintenance_lease, Duration::from_secs(30));
    assert_eq!(scfg.orphan_grace, Duration::from_secs(600), "another's commit in flight is no orphan");
    for bad in [0, 1, 3601] {
        let err = format!("{:#}", ServeArgs { lease_secs: Some(bad), ..full.clone() }.resolve().unwrap_err());
        assert!(err.contains("--lease-secs must be from 2 to 3600"), "{bad}: {err}");
    }
    // From the file as well.
    std::fs::write(&path, "[store]\nshared_catalog = true\nlease_secs = 5\nlake_url = \"/l\"\n").unwrap();
    let file = ServeArgs { metadata_url: Some("postgres://db/cordon".into()), ..args };
    assert_eq!(file.resolve().unwrap().shared_catalog, Some(Duration::from_secs(5)));
}

#[test]
fn sql_executors_need_their_key_and_a_lake_they_reach() {
    let dir = tempfile_dir("executors");
    let (path, key) = (dir.join("e.toml"), dir.join("key"));
    std::fs::write(&path, "").unwrap();
    std::fs::write(&key, "a-cluster-key-of-some-length\n").unwrap();
    let private = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    let args = ServeArgs { config: Some(path.clone()), ..Default::default() };
    let cfg = args.resolve().unwrap();
    assert!(cfg.sql_cluster.is_none() && store_config(&cfg).sql_engine.is_none(), "embedded by default");

    let two = vec!["http://10.0.0.2:50051".to_owned(), "http://10.0.0.3:50051".to_owned()];
    let flags = ServeArgs { sql_executors: two.clone(), ..args.clone() };
    let err = format!("{:#}", flags.resolve().unwrap_err());
    assert!(err.contains("--sql-executor-key-file"), "{err}");
    let keyed = ServeArgs { sql_executor_key_file: Some(key.clone()), ..flags.clone() };
    let err = format!("{:#}", keyed.resolve().unwrap_err());
    assert!(err.contains("--lake-url"), "the executors cannot read the server's data directory: {err}");
    let full = ServeArgs { lake_url: Some("/shared/lake".into()), ..keyed.clone() };
    let err = format!("{:#}", full.resolve().unwrap_err());
    assert!(err.contains("readable by others"), "a key others can read is refused: {err}");
    private(&key);
    let cfg = full.resolve().unwrap();
    assert!(cfg.sql_cluster.is_some() && store_config(&cfg).sql_engine.is_some());

    let bad = ServeArgs { sql_executors: vec!["10.0.0.2:50051".into()], ..full.clone() };
    let err = format!("{:#}", bad.resolve().unwrap_err());
    assert!(err.contains("is not an http:// or https:// URL"), "{err}");
    // TLS: https addresses need the executors' CA, and the CA needs https addresses.
    let https = ServeArgs { sql_executors: vec!["https://x1:50051".into()], ..full.clone() };
    let err = format!("{:#}", https.resolve().unwrap_err());
    assert!(err.contains("must all be https:// with a CA"), "{err}");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
    assert!(
        ServeArgs { sql_executor_ca: Some(ca.clone()), ..https }.resolve().unwrap().sql_cluster.is_some()
    );
    let err = format!("{:#}", ServeArgs { sql_executor_ca: Some(ca), ..full.clone() }.resolve().unwrap_err());
    assert!(err.contains("must all be https:// with a CA"), "{err}");
    std::fs::write(&key, "short").unwrap();
    private(&key);
    let err = format!("{:#}", full.resolve().unwrap_err());
    assert!(err.contains("16 to 256"), "{err}");
    // From the file as well.
    std::fs::write(&key, "a-cluster-key-of-some-length").unwrap();
    private(&key);
    let text = format!(
        "[server]\nsql_executors = [\"http://e1:1\"]\nsql_executor_key_file = {:?}\n[store]\nlake_url = \"/l\"\n",
        key.display().to_string()
    );
    std::fs::write(&path, text).unwrap();
    assert!(args.resolve().unwrap().sql_cluster.is_some());
}
