//! The Parquet lake on a local directory.
//!
//! Layout: `<root>/events/tenant=<tenant>/date=<YYYY-MM-DD>/<file id>-<uuid>.parquet`, hive-style, so
//! DuckDB, Spark, Trino or Polars read it as a partitioned table. Rows are sorted by (host, time) in
//! every file (a host's timeline touches few row groups), compressed with zstd level 1, with bloom
//! filters on the lookup columns (hashes, IPs, domains, users). A file is written to a `.tmp` name,
//! fsynced, renamed and its directory fsynced before the catalog learns of it.

use crate::catalog::{FileEntry, sha256_hex};
use crate::convert::{batch_to_records, records_to_batch};
use datafusion::arrow::error::ArrowError;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection};
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use schemas::Record;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Rows per row group: small enough that host/time statistics prune well.
const ROW_GROUP_ROWS: usize = 64 * 1024;

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
    /// Arrow conversion.
    #[error("arrow conversion error")]
    Arrow(#[source] ArrowError),
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

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LakeError + '_ {
    move |source| LakeError::Io { path: path.display().to_string(), source }
}

fn pq(path: &Path) -> impl FnOnce(ParquetError) -> LakeError + '_ {
    move |source| LakeError::Parquet { path: path.display().to_string(), source }
}

/// The lake's root directory.
#[derive(Clone, Debug)]
pub struct Lake {
    root: PathBuf,
    fsync: bool,
}

impl Lake {
    /// A lake under `root` (created if missing). `fsync` false is for benchmarks only.
    pub fn open(root: &Path, fsync: bool) -> Result<Self, LakeError> {
        fs::create_dir_all(root.join("events")).map_err(io(root))?;
        Ok(Self { root: root.to_owned(), fsync })
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of a tenant's events table.
    pub fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.root.join("events").join(format!("tenant={tenant}"))
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
        records.sort_by(|a, b| a.host().cmp(b.host()).then(a.time().cmp(&b.time())));
        let batch = records_to_batch(records).map_err(LakeError::Arrow)?;
        let rel =
            format!("events/tenant={tenant}/date={date}/{id:012}-{}.parquet", uuid::Uuid::new_v4().simple());
        let path = self.root.join(&rel);
        let dir = path.parent().expect("a lake file path has a parent");
        fs::create_dir_all(dir).map_err(io(dir))?;
        let tmp = path.with_extension("parquet.tmp");
        let file = HashingWriter { file: File::create(&tmp).map_err(io(&tmp))?, hash: Sha256::new(), len: 0 };
        let mut writer =
            ArrowWriter::try_new(file, batch.schema(), Some(writer_properties())).map_err(pq(&tmp))?;
        writer.write(&batch).map_err(pq(&tmp))?;
        let out = writer.into_inner().map_err(pq(&tmp))?;
        if self.fsync {
            out.file.sync_all().map_err(io(&tmp))?;
        }
        let (len, digest) = (out.len, out.hash.finalize());
        drop(out.file);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        if self.fsync {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
        }
        let seqs = records.iter().filter_map(|r| match r.cells[schemas::fields::col::STREAM_SEQ] {
            schemas::Cell::Int(s) => Some(s),
            _ => None,
        });
        let (min_seq, max_seq) = seqs.fold((i64::MAX, i64::MIN), |(lo, hi), s| (lo.min(s), hi.max(s)));
        let (min_time, max_time) =
            records.iter().fold((i64::MAX, i64::MIN), |(lo, hi), r| (lo.min(r.time()), hi.max(r.time())));
        Ok(FileEntry {
            id,
            tenant: tenant.to_owned(),
            date: date.to_owned(),
            path: rel,
            rows: records.len() as i64,
            bytes: len as i64,
            sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
            min_time,
            max_time,
            min_seq,
            max_seq,
        })
    }

    /// Reads chosen rows (by index within the file) of a committed file, in the order asked.
    pub fn read_rows(&self, entry: &FileEntry, rows: &[usize]) -> Result<Vec<Record>, LakeError> {
        let path = self.root.join(&entry.path);
        let file = File::open(&path).map_err(io(&path))?;
        let mut sorted: Vec<usize> = rows.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let total = usize::try_from(entry.rows).unwrap_or(0);
        sorted.retain(|r| *r < total);
        let selection = RowSelection::from_consecutive_ranges(sorted.iter().map(|r| *r..*r + 1), total);
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(pq(&path))?
            .with_row_selection(selection)
            .build()
            .map_err(pq(&path))?;
        let mut got = Vec::with_capacity(sorted.len());
        for batch in reader {
            let batch = batch.map_err(LakeError::Arrow)?;
            got.extend(batch_to_records(&batch));
        }
        Ok(rows
            .iter()
            .filter_map(|r| sorted.binary_search(r).ok().and_then(|i| got.get(i).cloned()))
            .collect())
    }

    /// Reads every row of a committed file, after checking its checksum.
    pub fn read_all(&self, entry: &FileEntry) -> Result<Vec<Record>, LakeError> {
        let path = self.root.join(&entry.path);
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(self.checked_bytes(entry)?))
            .map_err(pq(&path))?
            .build()
            .map_err(pq(&path))?;
        let mut out = Vec::new();
        for batch in reader {
            out.extend(batch_to_records(&batch.map_err(LakeError::Arrow)?));
        }
        Ok(out)
    }

    /// Checks one file's checksum.
    pub fn verify(&self, entry: &FileEntry) -> Result<(), LakeError> {
        self.checked_bytes(entry).map(drop)
    }

    /// A committed file's bytes, refused if they do not match the catalog's checksum.
    fn checked_bytes(&self, entry: &FileEntry) -> Result<Vec<u8>, LakeError> {
        let path = self.root.join(&entry.path);
        let bytes = fs::read(&path).map_err(io(&path))?;
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

    /// Every `.parquet` and `.tmp` file under the events table, relative to the root.
    pub fn list_files(&self) -> Result<Vec<String>, LakeError> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.join("events")];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).map_err(io(&dir))? {
                let p = entry.map_err(io(&dir))?.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(rel) = p.strip_prefix(&self.root) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes a file (relative path).
    pub fn remove(&self, rel: &str) -> Result<(), LakeError> {
        let p = self.root.join(rel);
        fs::remove_file(&p).map_err(io(&p))
    }

    /// Writes raw bytes durably (used by tests that corrupt files, and by tools).
    pub fn overwrite(&self, rel: &str, bytes: &[u8]) -> Result<(), LakeError> {
        let p = self.root.join(rel);
        let mut f = File::create(&p).map_err(io(&p))?;
        f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io(&p))
    }
}

/// A file writer that hashes what it writes, so the checksum costs no second read.
struct HashingWriter {
    file: File,
    hash: Sha256,
    len: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

fn writer_properties() -> WriterProperties {
    let schema = schemas::lake_schema();
    let host = schema.index_of("host_name").expect("host_name is a lake column") as i32;
    let time = schema.index_of("time").expect("time is a lake column") as i32;
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("zstd level 1 is valid")))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_sorting_columns(Some(vec![
            SortingColumn { column_idx: host, descending: false, nulls_first: true },
            SortingColumn { column_idx: time, descending: false, nulls_first: true },
        ]));
    for c in BLOOM_COLUMNS {
        b = b
            .set_column_bloom_filter_enabled(ColumnPath::from(*c), true)
            .set_column_bloom_filter_fpp(ColumnPath::from(*c), 0.01);
    }
    b.build()
}
