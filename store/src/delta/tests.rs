//! The Delta log writer's tests: syncs, replays, checkpoints, conflicts, the move to tenant partitions.

use super::*;
use std::fs;

fn entry(id: i64, date: &str) -> FileEntry {
    FileEntry {
        id,
        tenant: "acme".into(),
        date: date.into(),
        path: format!("events/tenant=acme/date={date}/{id:012}-x y.parquet"),
        rows: 10 * id,
        bytes: 100 * id,
        sha256: String::new(),
        min_time: 0,
        max_time: 0,
        min_seq: 0,
        max_seq: 0,
    }
}

#[test]
fn sync_writes_the_difference_and_replays_to_the_same_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = DeltaLog::open(&Objects::local(dir.path(), false).unwrap(), "").unwrap();
    assert_eq!(log.version(), -1);
    let (a, b, c) = (entry(1, "2026-01-01"), entry(2, "2026-01-01"), entry(3, "2026-01-02"));
    let out = log.sync(&[a.clone(), b.clone()], 7, Operation::Write, 1).unwrap();
    assert_eq!(out, SyncOutcome { version: Some(0), added: 2, removed: 0 });
    // Nothing changed: no new version.
    assert_eq!(log.sync(&[a.clone(), b.clone()], 7, Operation::Write, 2).unwrap().version, None);
    let out = log.sync(std::slice::from_ref(&c), 9, Operation::Optimize, 3).unwrap();
    assert_eq!(out, SyncOutcome { version: Some(1), added: 1, removed: 2 });

    let v1 = fs::read_to_string(dir.path().join("_delta_log/00000000000000000001.json")).unwrap();
    assert!(v1.contains("\"dataChange\":false"), "compaction is not a data change: {v1}");
    assert!(v1.contains("x%20y.parquet"), "paths are URI-escaped: {v1}");
    let v0 = fs::read_to_string(dir.path().join("_delta_log/00000000000000000000.json")).unwrap();
    assert!(v0.contains("\"protocol\"") && v0.contains("\"partitionColumns\":[\"tenant\",\"date\"]"));

    let again = DeltaLog::open(&Objects::local(dir.path(), false).unwrap(), "").unwrap();
    assert_eq!(again.version(), 1);
    assert_eq!(again.file_count(), 1);
    assert_eq!(again.txn_version(), 9);
    assert_eq!(again.files.keys().next().map(String::as_str), Some(table_path(&c.path)));
}

/// A table written before the tenant became a partition column: its next commit moves it over,
/// and a checkpoint carries the new layout.
#[test]
fn a_table_partitioned_by_date_alone_is_moved_to_tenant_and_date() {
    let dir = tempfile::tempdir().unwrap();
    let objects = Objects::local(dir.path(), false).unwrap();
    let mut log = DeltaLog::open(&objects, "").unwrap();
    let (a, b) = (entry(1, "2026-01-01"), entry(2, "2026-01-02"));
    log.sync(&[a.clone(), b.clone()], 7, Operation::Write, 1).unwrap();
    // Rewrite version 0 as the old writer made it.
    let v0 = dir.path().join("_delta_log/00000000000000000000.json");
    let old = fs::read_to_string(&v0)
        .unwrap()
        .replace("\"partitionColumns\":[\"tenant\",\"date\"]", "\"partitionColumns\":[\"date\"]")
        .replace("\"tenant\":\"acme\",", "");
    fs::write(&v0, old).unwrap();
    let mut log = DeltaLog::open(&objects, "").unwrap();
    assert!(!log.meta.as_ref().unwrap().by_tenant);
    // Nothing else changed, and still a commit: the move itself, b removed meanwhile.
    let out = log.sync(std::slice::from_ref(&a), 7, Operation::Write, 2).unwrap();
    assert_eq!(out, SyncOutcome { version: Some(1), added: 0, removed: 1 });
    let v1 = fs::read_to_string(dir.path().join("_delta_log/00000000000000000001.json")).unwrap();
    assert!(v1.contains("\"partitionColumns\":[\"tenant\",\"date\"]"), "{v1}");
    let adds: Vec<Value> =
        v1.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()?.get("add").cloned()).collect();
    assert_eq!(adds.len(), 1, "only the staying file is added again: {v1}");
    assert_eq!(adds[0]["partitionValues"], json!({"tenant": "acme", "date": "2026-01-01"}), "{v1}");
    assert_eq!(log.sync(std::slice::from_ref(&a), 7, Operation::Write, 3).unwrap().version, None, "once");
    let again = DeltaLog::open(&objects, "").unwrap();
    assert!(again.meta.as_ref().unwrap().by_tenant);
    assert_eq!(again.file_count(), 1);
    // A checkpoint keeps the layout.
    let mut log = again;
    log.checkpoint_now().unwrap();
    let snap = checkpoint::read(
        "cp",
        &objects.get(&format!("_delta_log/{:020}.checkpoint.parquet", log.version)).unwrap(),
    )
    .unwrap();
    assert!(snap.meta.unwrap().by_tenant);
}

#[test]
fn an_existing_version_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = DeltaLog::open(&Objects::local(dir.path(), false).unwrap(), "").unwrap();
    let mut second = DeltaLog::open(&Objects::local(dir.path(), false).unwrap(), "").unwrap();
    first.sync(&[entry(1, "2026-01-01")], 1, Operation::Write, 1).unwrap();
    let err = second.sync(&[entry(2, "2026-01-01")], 2, Operation::Write, 2).unwrap_err();
    assert!(matches!(err, DeltaError::Conflict(0)), "{err}");
}

#[test]
fn a_gap_in_the_log_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = DeltaLog::open(&Objects::local(dir.path(), false).unwrap(), "").unwrap();
    log.sync(&[entry(1, "2026-01-01")], 1, Operation::Write, 1).unwrap();
    log.sync(&[entry(2, "2026-01-01")], 2, Operation::Write, 2).unwrap();
    fs::remove_file(dir.path().join("_delta_log/00000000000000000000.json")).unwrap();
    let err = DeltaLog::open(&Objects::local(dir.path(), false).unwrap(), "").unwrap_err();
    assert!(err.to_string().contains("a gap in the log"), "{err}");
}

#[test]
fn checkpoints_replace_the_old_log_and_replay_to_the_same_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut log =
        DeltaLog::open(&Objects::local(dir.path(), false).unwrap(), "").unwrap().with_checkpoint_every(3);
    let mut live = Vec::new();
    for i in 1..=8 {
        live.push(entry(i, if i % 2 == 0 { "2026-01-01" } else { "2026-01-02" }));
        if i == 5 {
            live.remove(0); // a removal before the second checkpoint
        }
        log.sync(&live, 100 + i, Operation::Write, i).unwrap();
    }
    assert_eq!((log.version(), log.checkpoint_version()), (7, 6));
    let names: std::collections::BTreeSet<String> = fs::read_dir(dir.path().join("_delta_log"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // Versions before the previous checkpoint (3) are gone; 3.. and both checkpoints stay.
    assert!(!names.contains("00000000000000000002.json"), "{names:?}");
    assert!(names.contains("00000000000000000003.json") && names.contains("00000000000000000007.json"));
    assert!(names.contains("00000000000000000006.checkpoint.parquet"), "{names:?}");
    let last = fs::read_to_string(dir.path().join("_delta_log/_last_checkpoint")).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&last).unwrap()["version"], 6);

    let again = DeltaLog::open(&Objects::local(dir.path(), false).unwrap(), "").unwrap();
    assert_eq!(again.version(), 7);
    assert_eq!(again.txn_version(), 108);
    assert_eq!(again.files, log.files, "checkpoint + replay gives the same snapshot");
    assert_eq!(again.meta, log.meta);
    assert_eq!(again.txn_updated, 8, "the last txn's time, from the commit after the checkpoint");
    assert_eq!(again.file_count(), 7);
    // Only the checkpoint: the snapshot at its version.
    fs::remove_file(dir.path().join("_delta_log/00000000000000000007.json")).unwrap();
    let at6 = DeltaLog::open(&Objects::local(dir.path(), false).unwrap(), "").unwrap();
    assert_eq!((at6.version(), at6.file_count(), at6.txn_version()), (6, 6, 107));
    assert_eq!(at6.txn_updated, 7, "the txn time read back from the checkpoint");
}

#[test]
fn escape_round_trips() {
    for p in ["tenant=a/date=2026-01-01/000000000001-abc.parquet", "tenant=a b/ü%.parquet"] {
        assert_eq!(unescape(&escape(p)), p);
    }
}
