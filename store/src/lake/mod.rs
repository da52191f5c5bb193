//! The Parquet lake, in a local directory or an S3-compatible bucket ([`crate::objects`]).
//!
//! Layout: `<root>/events/tenant=<tenant>/date=<YYYY-MM-DD>/<file id>-<uuid>.parquet`, hive-style, so
//! DuckDB, Spark, Trino or Polars read it as a partitioned table. Rows are sorted by (host, time) in
//! every file (a host's timeline touches few row groups), compressed with zstd level 1, with bloom
//! filters on the lookup columns (hashes, IPs, domains, users). In a directory, a file is written to a
//! `.tmp-` name, fsynced, renamed and its directory fsynced before the catalog learns of it; in a
//! bucket, it is encoded in memory and uploaded whole under its final name (a `PUT` is atomic).
//! Reads of a few rows fetch only the byte ranges they need, from either.

use crate::catalog::{FileEntry, sha256_hex};
use crate::convert::{batch_to_records, records_to_batch, str_at};
use crate::objects::{Objects, ObjectsError};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, SortingColumn};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use schemas::Record;
use std::fs::{self, File};
use std::path::Path;

mod footers;
mod sorted;
mod stage;
mod vertical;
mod zorder;
use footers::Footers;
pub use sorted::SortedMerge;
use stage::StagedData;
pub use stage::{StageWriter, Staged};
pub use vertical::{Group, HostTimeMerge, VerticalMerge};
pub use zorder::zorder_across;

/// Rows per row group: small enough that host/time statistics prune well.
pub(crate) const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Columns that get a bloom filter.
const BLOOM_COLUMNS: &[&str] = &[
    "process_hash_md5",
    "process_hash_sha1",
    "process_hash_sha256",
    "file_hash_md5",
    "file_hash_sha1",
    "file_hash_sha256",
    "source_ip",
    "destination_ip",
    "destination_domain",
    "dns_question_name",
    "url_domain",
    "user_name",
];

/// Puts records in the lake's row order, (host, time): positions are sorted by keys taken once (a
/// record's fields are looked up, not indexed), then the records are moved into that order.
pub fn sort_host_time(records: &mut [Record]) {
    let mut order: Vec<usize> = (0..records.len()).collect();
    {
        let keys: Vec<(&str, i64)> = records.iter().map(|r| (r.host(), r.time())).collect();
        order.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
    }
    let mut taken: Vec<Record> = records.iter_mut().map(std::mem::take).collect();
    for (slot, &i) in records.iter_mut().zip(&order) {
        *slot = std::mem::take(&mut taken[i]);
    }
}

/// How a column is encoded where a dictionary would not pay (Parquet tries a dictionary first for
/// every other column, and falls back to plain values when it grows too large).
///
/// - Times: sorted by (host, time) within a file, so consecutive values differ by little: delta
///   encoding halves them (B1: 6.9 to 3.3 MB per million events).
/// - Identifiers unique per event or process, which share long prefixes (a message key, a host):
///   delta-prefix encoding stores each prefix once.
/// - Numbers with thousands of distinct values (pids, ports, sizes): a dictionary costs more than
///   it saves, and plain values compress well.
const ENCODINGS: &[(&str, Encoding)] = &[
    ("time", Encoding::DELTA_BINARY_PACKED),
    ("ingested", Encoding::DELTA_BINARY_PACKED),
    ("event_id", Encoding::DELTA_BYTE_ARRAY),
    ("process_entity_id", Encoding::DELTA_BYTE_ARRAY),
    ("parent_entity_id", Encoding::DELTA_BYTE_ARRAY),
    ("process_pid", Encoding::PLAIN),
    ("source_port", Encoding::PLAIN),
    ("file_size", Encoding::PLAIN),
];

/// Lake I/O failures.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// File system.
    #[error("lake file system error at {path}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Parquet encoding or decoding.
    #[error("parquet error in {path}")]
    Parquet {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: ParquetError,
    },
    /// Lake storage (directory or bucket).
    #[error(transparent)]
    Objects(#[from] ObjectsError),
    /// Arrow conversion.
    #[error("arrow conversion error")]
    Arrow(#[source] ArrowError),
    /// A file read in (host, time) order, as its footer declares, is not in that order.
    #[error("lake file {path} is not sorted on (host, time) as its footer says: {next} after {last}")]
    Unsorted {
        /// The path.
        path: String,
        /// The (host, time) read before.
        last: String,
        /// The (host, time) that sorts before it.
        next: String,
    },
    /// A file's bytes do not match its catalog checksum.
    #[error("lake file {path} is corrupt: checksum {found} does not match the catalog's {expected}")]
    Corrupt {
        /// The path.
        path: String,
        /// From the catalog.
        expected: String,
        /// Computed now.
        found: String,
    },
}

impl LakeError {
    /// Whether the file itself is damaged (its bytes fail their checksum, or are gone), as opposed
    /// to the store failing to reach it.
    pub fn is_damage(&self) -> bool {
        matches!(self, Self::Corrupt { .. } | Self::Objects(ObjectsError::NotFound { .. }))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LakeError + '_ {
    move |source| LakeError::Io { path: path.display().to_string(), source }
}

fn pq(path: &Path) -> impl FnOnce(ParquetError) -> LakeError + '_ {
    move |source| LakeError::Parquet { path: path.display().to_string(), source }
}

/// The lake: its storage and whether local writes are fsynced.
#[derive(Clone, Debug)]
pub struct Lake {
    objects: Objects,
    fsync: bool,
    footers: std::sync::Arc<Footers>,
}

impl Lake {
    /// A lake in the directory `root` (created if missing). `fsync` false is for benchmarks only.
    pub fn open(root: &Path, fsync: bool) -> Result<Self, LakeError> {
        Ok(Self::new(Objects::local(root, fsync)?, fsync))
    }

    /// A lake on `objects`.
    pub fn new(objects: Objects, fsync: bool) -> Self {
        Self { objects, fsync, footers: std::sync::Arc::default() }
    }

    /// Its storage.
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// Writes one partition's records as file `id`: sorted by (host, time), durable on return.
    /// `records` must all share one tenant and date; they are left in file order.
    pub fn write_file(
        &self,
        id: i64,
        tenant: &str,
        date: &str,
        records: &mut [Record],
    ) -> Result<FileEntry, LakeError> {
        sort_host_time(records);
        let batch = records_to_batch(records).map_err(LakeError::Arrow)?;
        let staged = self.stage(tenant, date, &batch, Order::HostTime)?;
        self.publish(staged, id)
    }

    /// Gives a staged file its id and final name: in a directory, rename and fsync the directory; in
    /// a bucket, upload.
    pub fn publish(&self, staged: Staged, id: i64) -> Result<FileEntry, LakeError> {
        let rel = format!(
            "events/tenant={}/date={}/{id:012}-{}.parquet",
            staged.tenant,
            staged.date,
            uuid::Uuid::new_v4().simple()
        );
        match &staged.data {
            // Staged in its partition directory: a rename gives it its final name.
            StagedData::Tmp(tmp) => {
                let path = tmp.with_file_name(rel.rsplit('/').next().expect("a lake path has a file name"));
                if let Err(e) = fs::rename(tmp, &path) {
                    let _ = fs::remove_file(tmp);
                    return Err(io(&path)(e));
                }
                if self.fsync {
                    let dir = path.parent().expect("a lake file path has a parent");
                    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
                        // Not known durable, so not handed to the catalog: no orphan is left behind.
                        let _ = fs::remove_file(&path);
                        return Err(io(dir)(e));
                    }
                }
            }
            StagedData::Bytes(b) => self.objects.put(&rel, b.clone())?,
        }
        Ok(FileEntry {
            id,
            tenant: staged.tenant,
            date: staged.date,
            path: rel,
            rows: staged.rows,
            bytes: staged.bytes,
            sha256: staged.sha256,
            min_time: staged.min_time,
            max_time: staged.max_time,
            min_seq: staged.min_seq,
            max_seq: staged.max_seq,
        })
    }

    /// Bytes of parsed footers kept for point reads (bounded; see `footers.rs`).
    pub fn footer_cache_bytes(&self) -> usize {
        self.footers.bytes()
    }

    /// Every row of a committed file as Arrow batches, after checking its checksum.
    pub fn read_batches(&self, entry: &FileEntry) -> Result<Vec<RecordBatch>, LakeError> {
        let reader = self.checked_reader(entry)?.build().map_err(pq(Path::new(&entry.path)))?;
        reader.collect::<Result<Vec<_>, _>>().map_err(LakeError::Arrow)
    }

    /// A reader over a committed file's bytes, once they match the catalog's checksum.
    fn checked_reader(
        &self,
        entry: &FileEntry,
    ) -> Result<ParquetRecordBatchReaderBuilder<bytes::Bytes>, LakeError> {
        ParquetRecordBatchReaderBuilder::try_new(self.checked_bytes(entry)?)
            .map_err(pq(Path::new(&entry.path)))
    }

    /// Events per host name in a committed file (only the host column is read).
    pub fn host_counts(
        &self,
        entry: &FileEntry,
    ) -> Result<std::collections::BTreeMap<String, i64>, LakeError> {
        let mut counts = std::collections::BTreeMap::new();
        for batch in self.read(entry, Some(&[schemas::fields::col::HOST_NAME]), None)? {
            let col = batch.column(0);
            for row in 0..batch.num_rows() {
                *counts.entry(str_at(col.as_ref(), row).unwrap_or_default().to_owned()).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    /// Reads chosen rows (by index within the file) of a committed file, in the order asked: `None`
    /// for a row the file does not have.
    pub fn read_rows(&self, entry: &FileEntry, rows: &[usize]) -> Result<Vec<Option<Record>>, LakeError> {
        let mut sorted: Vec<usize> = rows.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let total = usize::try_from(entry.rows).unwrap_or(0);
        sorted.retain(|r| *r < total);
        let selection = RowSelection::from_consecutive_ranges(sorted.iter().map(|r| *r..*r + 1), total);
        let mut got = Vec::with_capacity(sorted.len());
        for batch in self.read(entry, None, Some(selection))? {
            got.extend(batch_to_records(&batch));
        }
        Ok(rows.iter().map(|r| sorted.binary_search(r).ok().and_then(|i| got.get(i).cloned())).collect())
    }

    /// Reads some columns (all when `None`) of some rows (all when `None`) of a committed file,
    /// fetching only the pages needed (through its page index, with its footer parsed once): from
    /// the file, or by ranged `GET`s from the bucket.
    fn read(
        &self,
        entry: &FileEntry,
        columns: Option<&[usize]>,
        rows: Option<RowSelection>,
    ) -> Result<Vec<RecordBatch>, LakeError> {
        let path = Path::new(&entry.path);
        let columns = columns.map(<[usize]>::to_vec);
        let options = || ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
        if let Some(root) = self.objects.local_root() {
            let full = root.join(&entry.path);
            let file = File::open(&full).map_err(io(&full))?;
            let meta = self
                .footers
                .get_or_load(&entry.path, || ArrowReaderMetadata::load(&file, options()))
                .map_err(pq(path))?;
            let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta);
            if let Some(cols) = columns {
                let mask = ProjectionMask::roots(builder.parquet_schema(), cols);
                builder = builder.with_projection(mask);
            }
            if let Some(sel) = rows {
                builder = builder.with_row_selection(sel);
            }
            let reader = builder.build().map_err(pq(path))?;
            return reader.collect::<Result<Vec<_>, _>>().map_err(LakeError::Arrow);
        }
        let size = u64::try_from(entry.bytes).unwrap_or(0);
        let (footers, rel) = (std::sync::Arc::clone(&self.footers), entry.path.clone());
        let fetched = self.objects.remote_read(&entry.path, move |store, location| async move {
            let mut reader = crate::objects::ObjectFile { store, location, size };
            let meta = match footers.get(&rel) {
                Some(m) => m,
                None => {
                    let m = ArrowReaderMetadata::load_async(&mut reader, options()).await?;
                    footers.insert(&rel, m.clone());
                    m
                }
            };
            let mut builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta);
            if let Some(cols) = columns {
                let mask = ProjectionMask::roots(builder.parquet_schema(), cols);
                builder = builder.with_projection(mask);
            }
            if let Some(sel) = rows {
                builder = builder.with_row_selection(sel);
            }
            builder.build()?.try_collect::<Vec<_>>().await
        });
        fetched.expect("a lake that is not a directory is remote")?.map_err(pq(path))
    }

    /// Reads every row of a committed file, after checking its checksum.
    pub fn read_all(&self, entry: &FileEntry) -> Result<Vec<Record>, LakeError> {
        Ok(self.read_batches(entry)?.iter().flat_map(batch_to_records).collect())
    }

    /// Checks one file's checksum.
    pub fn verify(&self, entry: &FileEntry) -> Result<(), LakeError> {
        self.checked_bytes(entry).map(drop)
    }

    /// A committed file's bytes, refused if they do not match the catalog's checksum.
    fn checked_bytes(&self, entry: &FileEntry) -> Result<bytes::Bytes, LakeError> {
        let bytes = self.objects.get(&entry.path)?;
        let found = sha256_hex(&bytes);
        if found != entry.sha256 {
            return Err(LakeError::Corrupt {
                path: entry.path.clone(),
                expected: entry.sha256.clone(),
                found,
            });
        }
        Ok(bytes)
    }

    /// Every data file (`.parquet` and `.tmp-`) under the events table, relative to the root; the
    /// table's `_delta_log` and other `_`-prefixed directories are not data.
    pub fn list_files(&self) -> Result<Vec<String>, LakeError> {
        self.files_written_before(None)
    }

    /// [`Lake::list_files`], only those last written before `cutoff` when one is given.
    pub fn files_written_before(
        &self,
        cutoff: Option<std::time::SystemTime>,
    ) -> Result<Vec<String>, LakeError> {
        Ok(self
            .objects
            .list_modified("events")?
            .into_iter()
            .filter(|(_, _, modified)| cutoff.is_none_or(|c| *modified < c))
            .map(|(p, _, _)| p)
            .filter(|p| !p.split('/').rev().skip(1).any(|dir| dir.starts_with('_')))
            .collect())
    }

    /// Removes a file (relative path).
    pub fn remove(&self, rel: &str) -> Result<(), LakeError> {
        self.footers.forget(rel);
        Ok(self.objects.delete(&[rel.to_owned()])?)
    }

    /// Removes files that left the table; files already gone are fine.
    pub fn remove_all(&self, rels: &[String]) -> Result<(), LakeError> {
        rels.iter().for_each(|r| self.footers.forget(r));
        Ok(self.objects.delete(rels)?)
    }

    /// Moves a damaged file's bytes out of the table to `events/_damaged/<partition>/<name>.<unix
    /// time>` (outside every listing, kept for inspection). Returns where, or `None` when the file
    /// had no bytes left to keep.
    pub fn set_aside(&self, rel: &str) -> Result<Option<String>, LakeError> {
        let bytes = match self.objects.get(rel) {
            Ok(b) => b,
            Err(ObjectsError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let rest = rel.strip_prefix("events/").unwrap_or(rel);
        let to = format!("events/_damaged/{rest}.{}", schemas::time::now_micros() / 1_000_000);
        self.objects.put(&to, bytes)?;
        self.remove(rel)?;
        Ok(Some(to))
    }

    /// Writes raw bytes durably (used by tests that corrupt files, and by tools).
    pub fn overwrite(&self, rel: &str, bytes: &[u8]) -> Result<(), LakeError> {
        self.footers.forget(rel);
        Ok(self.objects.put(rel, bytes::Bytes::copy_from_slice(bytes))?)
    }
}

/// The row order of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Sorted by (host, time): what ingest and size-tiered merging write; declared in the footer as
    /// sorting columns.
    HostTime,
    /// Z-order over (host, time): what scheduled compaction writes, so both host and time ranges
    /// prune in a file that spans a day.
    ZOrder,
}

fn writer_properties(order: Order) -> WriterProperties {
    let schema = schemas::lake_schema();
    let host = schema.index_of("host_name").expect("host_name is a lake column") as i32;
    let time = schema.index_of("time").expect("time is a lake column") as i32;
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("zstd level 1 is valid")))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    if order == Order::HostTime {
        b = b.set_sorting_columns(Some(vec![
            SortingColumn { column_idx: host, descending: false, nulls_first: true },
            SortingColumn { column_idx: time, descending: false, nulls_first: true },
        ]));
    }
    for (c, encoding) in ENCODINGS {
        b = b
            .set_column_dictionary_enabled(ColumnPath::from(*c), false)
            .set_column_encoding(ColumnPath::from(*c), *encoding);
    }
    for c in BLOOM_COLUMNS {
        b = b
            .set_column_bloom_filter_enabled(ColumnPath::from(*c), true)
            .set_column_bloom_filter_fpp(ColumnPath::from(*c), 0.01);
    }
    b.build()
}

#[cfg(test)]
mod tests;
