//! The lake's Delta Lake transaction log, so Spark, Trino, DuckDB, Polars and delta-rs read the lake
//! as a Delta table at `<lake>/events`.
//!
//! Cordon writes the log itself (protocol reader 1 / writer 2: JSON commits with `protocol`,
//! `metaData`, `add`, `remove`, `txn` and `commitInfo` actions; see ADR 0003). The catalog stays the
//! commit point of `RELIABILITY.md`; the log is derived from it like the index is: each sync diffs the
//! catalog's live files against the log's current snapshot and writes one commit with the difference,
//! carrying the ingest checkpoint (the highest JetStream stream sequence committed) as the `txn` version
//! of application `cordon-ingest`. A crash between the catalog commit and the log commit leaves the log
//! behind, never ahead; the next sync (on start at the latest) catches it up.
//!
//! A commit is written put-if-absent ([`Objects::put_new`]: a temporary file, fsynced and hard-linked
//! to its version's name in a directory; `If-None-Match: *` in a bucket), which fails if the version
//! exists, so two writers can never both commit a version (Delta's put-if-absent rule).
//!
//! Every `checkpoint_every` versions the whole snapshot is written as a Parquet checkpoint
//! ([`checkpoint`]), and commits older than the previous checkpoint are deleted: readers start from
//! the latest checkpoint, and the log stays small however long ingest runs. (Removed data files are
//! deleted at once, so there is no time travel to keep history for.)

mod checkpoint;

use crate::catalog::FileEntry;
use crate::objects::{Objects, ObjectsError};
use schemas::{FIELDS, Kind};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The `txn` application id whose version is the ingest checkpoint.
pub const APP_ID: &str = "cordon-ingest";

/// Delta log failures.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// Storage (directory or bucket).
    #[error("delta log storage error")]
    Objects(#[from] ObjectsError),
    /// A log file does not parse.
    #[error("delta log file {path} line {line} is not a valid action: {reason}")]
    Corrupt {
        /// The path.
        path: String,
        /// 1-based line.
        line: usize,
        /// Why.
        reason: String,
    },
    /// A checkpoint could not be encoded.
    #[error("delta checkpoint error: {0}")]
    Checkpoint(String),
    /// Another writer committed the version this one was about to write.
    #[error("delta log version {0} already exists: another writer is committing to this table")]
    Conflict(i64),
}

/// Why a commit changes the table, recorded as its `commitInfo.operation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// New rows (ingest, or a catch-up after a crash).
    Write,
    /// Files rewritten without changing rows (compaction); `dataChange` is false.
    Optimize,
    /// Rows removed (retention).
    Delete,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Self::Write => "WRITE",
            Self::Optimize => "OPTIMIZE",
            Self::Delete => "DELETE",
        }
    }
}

/// What one sync wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    /// The version written, if any.
    pub version: Option<i64>,
    /// Files added.
    pub added: usize,
    /// Files removed.
    pub removed: usize,
}

/// What the log knows of a live file (its `add` action).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AddMeta {
    size: i64,
    date: String,
    rows: i64,
    mtime: i64,
}

/// The table's identity from its `metaData` action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MetaInfo {
    id: String,
    created_time: i64,
    /// The table is partitioned by tenant and date (tables made before were by date alone; the next
    /// commit moves them over).
    by_tenant: bool,
}

/// The partition columns: the lake's hive layout, `tenant=<t>/date=<d>/`.
pub const PARTITION_COLUMNS: [&str; 2] = ["tenant", "date"];

/// The tenant of a table-relative path (`tenant=<t>/date=<d>/<file>`).
fn tenant_of(path: &str) -> &str {
    path.split('/').next().and_then(|p| p.strip_prefix("tenant=")).unwrap_or_default()
}

fn partition_values(path: &str, date: &str) -> Value {
    json!({"tenant": tenant_of(path), "date": date})
}

fn metadata_action(meta: &MetaInfo) -> Value {
    json!({"metaData": {
        "id": meta.id,
        "name": "events",
        "description": "Cordon endpoint events",
        "format": {"provider": "parquet", "options": {}},
        "schemaString": schema_string(),
        "partitionColumns": PARTITION_COLUMNS,
        "configuration": {},
        "createdTime": meta.created_time,
    }})
}

/// Versions between checkpoints (Delta's own default is 10; Cordon commits more often).
pub const CHECKPOINT_EVERY: i64 = 100;

/// The log and the snapshot it describes.
#[derive(Debug)]
pub struct DeltaLog {
    objects: Objects,
    /// `<table>/_delta_log`, relative to the storage root.
    log_dir: String,
    /// Latest version (-1 before the first commit).
    version: i64,
    /// Live files by table-relative path.
    files: BTreeMap<String, AddMeta>,
    /// The last `txn` version of [`APP_ID`].
    txn_version: i64,
    /// When that `txn` was written, milliseconds.
    txn_updated: i64,
    meta: Option<MetaInfo>,
    checkpoint_every: i64,
    /// The latest checkpoint's version (-1: none).
    checkpoint: i64,
}

impl DeltaLog {
    /// Opens the log of the table at `table` (the lake's `events` directory, relative to the storage
    /// root), replaying it.
    pub fn open(objects: &Objects, table: &str) -> Result<Self, DeltaError> {
        Self::load(objects, table, true)
    }

    /// Reads the log again from storage, after another writer committed a version this one meant to
    /// write ([`DeltaError::Conflict`]). Temporary files are left: one may be that writer's commit
    /// in flight.
    pub fn reload(&mut self) -> Result<(), DeltaError> {
        let table =
            self.log_dir.strip_suffix("_delta_log").unwrap_or_default().trim_end_matches('/').to_owned();
        let every = self.checkpoint_every;
        *self = Self::load(&self.objects, &table, false)?.with_checkpoint_every(every);
        Ok(())
    }

    /// Replays the log; `clean` deletes interrupted commits' temporary files (on open, when this is
    /// the only writer about).
    fn load(objects: &Objects, table: &str, clean: bool) -> Result<Self, DeltaError> {
        let log_dir = match table.trim_matches('/') {
            "" => "_delta_log".to_owned(),
            t => format!("{t}/_delta_log"),
        };
        let mut log = Self {
            objects: objects.clone(),
            log_dir,
            version: -1,
            files: BTreeMap::new(),
            txn_version: -1,
            txn_updated: 0,
            meta: None,
            checkpoint_every: CHECKPOINT_EVERY,
            checkpoint: -1,
        };
        let mut versions: Vec<(i64, String)> = Vec::new();
        let mut checkpoints: Vec<(i64, String)> = Vec::new();
        let mut temps = Vec::new();
        for (p, _) in log.objects.list(&log.log_dir)? {
            let name = p.rsplit('/').next().unwrap_or_default().to_owned();
            if let Some(v) = name.strip_suffix(".json").and_then(|v| v.parse::<i64>().ok()) {
                versions.push((v, p));
            } else if let Some(v) =
                name.strip_suffix(".checkpoint.parquet").and_then(|v| v.parse::<i64>().ok())
            {
                checkpoints.push((v, p));
            } else if name.starts_with(".tmp-") {
                // An interrupted commit or checkpoint: never linked, so never part of the table.
                temps.push(p);
            }
        }
        if clean {
            log.objects.delete(&temps)?;
        }
        versions.sort();
        checkpoints.sort();
        // Start from the latest checkpoint (checkpoints are renamed into place whole), then replay.
        if let Some((v, p)) = checkpoints.last() {
            let snap = checkpoint::read(p, &log.objects.get(p)?)?;
            (log.files, log.txn_version, log.txn_updated, log.meta) =
                (snap.files, snap.txn_version, snap.txn_updated, snap.meta);
            (log.version, log.checkpoint) = (*v, *v);
        }
        let start = log.version;
        for (v, p) in versions.iter().filter(|(v, _)| *v > start) {
            let expect = log.version + 1;
            if *v != expect {
                return Err(DeltaError::Corrupt {
                    path: p.clone(),
                    line: 0,
                    reason: format!("version {v} found where {expect} was expected (a gap in the log)"),
                });
            }
            log.replay(p)?;
            log.version = *v;
        }
        Ok(log)
    }

    /// Checkpoints every `n` versions instead of [`CHECKPOINT_EVERY`] (tests).
    pub fn with_checkpoint_every(mut self, n: i64) -> Self {
        self.checkpoint_every = n.max(1);
        self
    }

    fn replay(&mut self, path: &str) -> Result<(), DeltaError> {
        let bytes = self.objects.get(path)?;
        let text = std::str::from_utf8(&bytes).map_err(|e| DeltaError::Corrupt {
            path: path.to_owned(),
            line: 0,
            reason: format!("not UTF-8: {e}"),
        })?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let corrupt = |reason: String| DeltaError::Corrupt { path: path.to_owned(), line: i + 1, reason };
            let v: Value = serde_json::from_str(line).map_err(|e| corrupt(e.to_string()))?;
            if let Some(add) = v.get("add") {
                let p = add["path"].as_str().ok_or_else(|| corrupt("add without a path".into()))?;
                let date = add["partitionValues"]["date"].as_str().unwrap_or_default().to_owned();
                let rows = add["stats"]
                    .as_str()
                    .and_then(|s| serde_json::from_str::<Value>(s).ok())
                    .and_then(|s| s["numRecords"].as_i64())
                    .unwrap_or(0);
                let meta = AddMeta {
                    size: add["size"].as_i64().unwrap_or(0),
                    date,
                    rows,
                    mtime: add["modificationTime"].as_i64().unwrap_or(0),
                };
                self.files.insert(unescape(p), meta);
            } else if let Some(rm) = v.get("remove") {
                let p = rm["path"].as_str().ok_or_else(|| corrupt("remove without a path".into()))?;
                self.files.remove(&unescape(p));
            } else if let Some(txn) = v.get("txn")
                && txn["appId"].as_str() == Some(APP_ID)
            {
                self.txn_version = txn["version"].as_i64().unwrap_or(self.txn_version);
                self.txn_updated = txn["lastUpdated"].as_i64().unwrap_or(self.txn_updated);
            } else if let Some(md) = v.get("metaData") {
                let id = md["id"].as_str().ok_or_else(|| corrupt("metaData without an id".into()))?;
                let by_tenant =
                    md["partitionColumns"].as_array().is_some_and(|c| c.iter().any(|c| c == "tenant"));
                self.meta = Some(MetaInfo {
                    id: id.to_owned(),
                    created_time: md["createdTime"].as_i64().unwrap_or(0),
                    by_tenant,
                });
            }
        }
        Ok(())
    }

    /// The latest version (-1 when the table has no commit yet).
    pub fn version(&self) -> i64 {
        self.version
    }

    /// Files in the latest snapshot.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// The latest snapshot's files, table-relative.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// The ingest checkpoint the latest snapshot covers.
    pub fn txn_version(&self) -> i64 {
        self.txn_version
    }

    /// Makes the log's snapshot equal the catalog's live `files` (lake-relative paths under
    /// `events/`) in one commit, recording `checkpoint` as the `txn` version. No commit when nothing
    /// changed.
    pub fn sync(
        &mut self,
        live: &[FileEntry],
        checkpoint: i64,
        op: Operation,
        now_ms: i64,
    ) -> Result<SyncOutcome, DeltaError> {
        let (adds, removes) = self.changes(live);
        let checkpoint = checkpoint.max(self.txn_version);
        let repartition = self.meta.as_ref().is_some_and(|m| !m.by_tenant);
        if adds.is_empty()
            && removes.is_empty()
            && checkpoint == self.txn_version
            && self.version >= 0
            && !repartition
        {
            return Ok(SyncOutcome::default());
        }
        let mut lines = vec![json!({"commitInfo": {
            "timestamp": now_ms,
            "operation": op.name(),
            "operationParameters": {"mode": "Append"},
            "engineInfo": concat!("cordon/", env!("CARGO_PKG_VERSION")),
            "isBlindAppend": removes.is_empty(),
        }})];
        let new_meta = self.metadata_lines(&removes, now_ms, &mut lines);
        lines.push(json!({"txn": {"appId": APP_ID, "version": checkpoint, "lastUpdated": now_ms}}));
        let data_change = op != Operation::Optimize;
        lines.extend(adds.iter().map(|f| {
            json!({"add": {
                "path": escape(table_path(&f.path)),
                "partitionValues": partition_values(table_path(&f.path), &f.date),
                "size": f.bytes,
                "modificationTime": now_ms,
                "dataChange": data_change,
                "stats": json!({"numRecords": f.rows}).to_string(),
            }})
        }));
        lines.extend(removes.iter().map(|(p, size, date)| {
            json!({"remove": {
                "path": escape(p),
                "deletionTimestamp": now_ms,
                "dataChange": data_change,
                "extendedFileMetadata": true,
                "partitionValues": partition_values(p, date),
                "size": size,
            }})
        }));
        let version = self.version + 1;
        self.write_version(version, &lines)?;
        self.apply(version, &adds, &removes, now_ms);
        self.txn_version = checkpoint;
        if new_meta.is_some() {
            self.meta = new_meta;
        }
        self.checkpoint_when_due(version);
        Ok(SyncOutcome { version: Some(version), added: adds.len(), removed: removes.len() })
    }

    /// The live files the snapshot lacks, and the snapshot's files (path, size, date) no longer live.
    fn changes<'f>(&self, live: &'f [FileEntry]) -> (Vec<&'f FileEntry>, Vec<(String, i64, String)>) {
        let want: BTreeMap<String, &FileEntry> =
            live.iter().map(|f| (table_path(&f.path).to_owned(), f)).collect();
        let adds = want.iter().filter(|(p, _)| !self.files.contains_key(*p)).map(|(_, f)| *f).collect();
        let removes = self
            .files
            .iter()
            .filter(|(p, _)| !want.contains_key(*p))
            .map(|(p, m)| (p.clone(), m.size, m.date.clone()))
            .collect();
        (adds, removes)
    }

    /// The protocol and metadata a new table starts with; for a table partitioned by date alone, its
    /// metadata by tenant and date with its staying files added again with their tenant (no data
    /// changes; the latest add of a path wins). The new metadata, when there is one.
    fn metadata_lines(
        &self,
        removes: &[(String, i64, String)],
        now_ms: i64,
        lines: &mut Vec<Value>,
    ) -> Option<MetaInfo> {
        if self.version < 0 {
            let meta =
                MetaInfo { id: uuid::Uuid::new_v4().to_string(), created_time: now_ms, by_tenant: true };
            lines.push(json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}));
            lines.push(metadata_action(&meta));
            return Some(meta);
        }
        let old = self.meta.as_ref().filter(|m| !m.by_tenant)?;
        let meta = MetaInfo { by_tenant: true, ..old.clone() };
        lines.push(metadata_action(&meta));
        let gone: std::collections::BTreeSet<&str> = removes.iter().map(|r| r.0.as_str()).collect();
        for (p, m) in self.files.iter().filter(|(p, _)| !gone.contains(p.as_str())) {
            lines.push(json!({"add": {
                "path": escape(p),
                "partitionValues": partition_values(p, &m.date),
                "size": m.size,
                "modificationTime": m.mtime,
                "dataChange": false,
                "stats": json!({"numRecords": m.rows}).to_string(),
            }}));
        }
        Some(meta)
    }

    /// The snapshot after commit `version` of `adds` and `removes`.
    fn apply(&mut self, version: i64, adds: &[&FileEntry], removes: &[(String, i64, String)], now_ms: i64) {
        for f in adds {
            let meta = AddMeta { size: f.bytes, date: f.date.clone(), rows: f.rows, mtime: now_ms };
            self.files.insert(table_path(&f.path).to_owned(), meta);
        }
        for (p, _, _) in removes {
            self.files.remove(p);
        }
        self.version = version;
        self.txn_updated = now_ms;
    }

    /// A checkpoint every `checkpoint_every` versions. The commit stands whether or not its
    /// checkpoint does: readers replay the JSON instead.
    fn checkpoint_when_due(&mut self, version: i64) {
        if version > 0
            && version % self.checkpoint_every == 0
            && let Err(e) = self.checkpoint_now()
        {
            tracing::warn!(error = %e, version, "delta checkpoint failed; readers replay the log instead");
        }
    }

    /// Writes a checkpoint of the current version, then deletes commits and checkpoints older than
    /// the previous checkpoint (kept one interval back for readers in the middle of a listing).
    fn checkpoint_now(&mut self) -> Result<(), DeltaError> {
        let snap = checkpoint::Snapshot {
            files: self.files.clone(),
            txn_version: self.txn_version,
            txn_updated: self.txn_updated,
            meta: self.meta.clone(),
        };
        checkpoint::write(&self.objects, &self.log_dir, self.version, &snap)?;
        let keep_from = self.checkpoint;
        self.checkpoint = self.version;
        if keep_from < 0 {
            return Ok(());
        }
        let old: Vec<String> = self
            .objects
            .list(&self.log_dir)?
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| {
                let name = p.rsplit('/').next().unwrap_or_default();
                name.strip_suffix(".json")
                    .or_else(|| name.strip_suffix(".checkpoint.parquet"))
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v < keep_from)
            })
            .collect();
        self.objects.delete(&old)?;
        Ok(())
    }

    /// The latest checkpoint's version (-1: none yet).
    pub fn checkpoint_version(&self) -> i64 {
        self.checkpoint
    }

    fn write_version(&self, version: i64, lines: &[Value]) -> Result<(), DeltaError> {
        let mut body = String::new();
        for l in lines {
            body.push_str(&l.to_string());
            body.push('\n');
        }
        match self.objects.put_new(&format!("{}/{version:020}.json", self.log_dir), body.into()) {
            Ok(()) => Ok(()),
            Err(ObjectsError::AlreadyExists { .. }) => Err(DeltaError::Conflict(version)),
            Err(e) => Err(e.into()),
        }
    }
}

/// A lake-relative path (`events/tenant=t/...`) as a table-relative one (`tenant=t/...`).
pub(crate) fn table_path(lake_rel: &str) -> &str {
    lake_rel.strip_prefix("events/").unwrap_or(lake_rel)
}

/// Delta paths are URIs: percent-encode everything but unreserved characters, `/` and `=`.
fn escape(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(p: &str) -> String {
    let bytes = p.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            let b = (h * 16 + l) as u8;
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The table schema in Delta's JSON form, from `schemas::FIELDS`, plus the `date` partition column.
pub fn schema_string() -> String {
    let schema = schemas::lake_schema();
    let mut fields: Vec<Value> = FIELDS
        .iter()
        .zip(schema.fields())
        .map(|(d, f)| {
            let ty = match d.kind {
                Kind::Str => json!("string"),
                Kind::Int => json!("long"),
                Kind::Time => json!("timestamp"),
                Kind::Bool => json!("boolean"),
                Kind::List => json!({"type": "array", "elementType": "string", "containsNull": true}),
            };
            json!({"name": d.column, "type": ty, "nullable": f.is_nullable(), "metadata": {}})
        })
        .collect();
    fields.push(json!({"name": "date", "type": "string", "nullable": true, "metadata": {}}));
    json!({"type": "struct", "fields": fields}).to_string()
}

#[cfg(test)]
mod tests;
