//! Staging: a file's rows encoded to a temporary name, invisible to readers until
//! [`Lake::publish`]. A [`StageWriter`] takes the rows a batch at a time, so a merge never holds
//! its whole output at once.

use super::{Lake, LakeError, Order, io, pq, writer_properties};
use datafusion::arrow::array::{Array, PrimitiveArray};
use datafusion::arrow::datatypes::{ArrowPrimitiveType, Int64Type, SchemaRef, TimestampMicrosecondType};
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file encoded to a temporary name, not yet part of the lake.
#[derive(Debug)]
pub struct Staged {
    pub(super) data: StagedData,
    pub(super) tenant: String,
    pub(super) date: String,
    pub(super) rows: i64,
    pub(super) bytes: i64,
    pub(super) sha256: String,
    pub(super) min_time: i64,
    pub(super) max_time: i64,
    pub(super) min_seq: i64,
    pub(super) max_seq: i64,
}

/// Where a staged file's bytes wait: a temporary file in the partition, or memory (for a bucket).
#[derive(Debug)]
pub(super) enum StagedData {
    Tmp(PathBuf),
    Bytes(bytes::Bytes),
}

impl Staged {
    /// Deletes the temporary file (the operation that staged it gave up).
    pub fn discard(self) {
        if let StagedData::Tmp(tmp) = &self.data {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// A file writer that hashes what it writes, so the checksum costs no second read.
struct HashingWriter<W> {
    out: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Where the encoded bytes go.
enum Sink {
    /// A temporary file in the partition's directory.
    Tmp(PathBuf, ArrowWriter<HashingWriter<File>>),
    /// Memory, for a bucket (uploaded whole at publish).
    Memory(ArrowWriter<HashingWriter<Vec<u8>>>),
}

/// A file being staged: rows in, a batch at a time, in the order they are to be stored.
/// Dropped before [`StageWriter::finish`] (an error, a merge given up), its temporary file goes.
pub struct StageWriter {
    sink: Option<Sink>,
    tenant: String,
    date: String,
    fsync: bool,
    rows: i64,
    times: (Option<i64>, Option<i64>),
    seqs: (Option<i64>, Option<i64>),
}

impl Lake {
    /// Encodes a batch (already in the wanted row order) to a temporary file in its partition,
    /// fsynced, invisible to readers (no `.parquet` extension) until [`Lake::publish`].
    pub fn stage(
        &self,
        tenant: &str,
        date: &str,
        batch: &RecordBatch,
        order: Order,
    ) -> Result<Staged, LakeError> {
        let mut w = self.stage_writer(tenant, date, batch.schema(), order)?;
        w.write(batch)?;
        w.finish()
    }

    /// A writer for a file of `tenant` and `date` staged a batch at a time: streamed to a
    /// temporary file in the partition (fsynced at the end, outside any lock), or encoded in
    /// memory for a bucket.
    pub fn stage_writer(
        &self,
        tenant: &str,
        date: &str,
        schema: SchemaRef,
        order: Order,
    ) -> Result<StageWriter, LakeError> {
        let props = Some(writer_properties(order));
        let sink = match self.objects.local_root() {
            Some(root) => {
                let dir = root.join(format!("events/tenant={tenant}/date={date}"));
                fs::create_dir_all(&dir).map_err(io(&dir))?;
                let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
                let file = File::create(&tmp).map_err(io(&tmp))?;
                let out = HashingWriter { out: file, hash: Sha256::new(), len: 0 };
                match ArrowWriter::try_new(out, schema, props) {
                    Ok(w) => Sink::Tmp(tmp, w),
                    Err(e) => {
                        let _ = fs::remove_file(&tmp);
                        return Err(pq(&tmp)(e));
                    }
                }
            }
            None => {
                let out = HashingWriter { out: Vec::new(), hash: Sha256::new(), len: 0 };
                Sink::Memory(ArrowWriter::try_new(out, schema, props).map_err(pq(Path::new("(memory)")))?)
            }
        };
        Ok(StageWriter {
            sink: Some(sink),
            tenant: tenant.to_owned(),
            date: date.to_owned(),
            fsync: self.fsync,
            rows: 0,
            times: (None, None),
            seqs: (None, None),
        })
    }
}

impl StageWriter {
    /// Appends rows (row groups are cut by the writer's size, not by these batches).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), LakeError> {
        let written = match self.sink.as_mut().expect("the sink is only taken by finish") {
            Sink::Tmp(tmp, w) => w.write(batch).map_err(pq(tmp)),
            Sink::Memory(w) => w.write(batch).map_err(pq(Path::new("(memory)"))),
        };
        written?;
        self.rows += batch.num_rows() as i64;
        widen(&mut self.times, range::<TimestampMicrosecondType>(batch, schemas::fields::col::TIME));
        widen(&mut self.seqs, range::<Int64Type>(batch, schemas::fields::col::STREAM_SEQ));
        Ok(())
    }

    /// Closes the file (footer written, fsynced when asked): staged, ready to publish.
    pub fn finish(mut self) -> Result<Staged, LakeError> {
        let (data, len, digest) = match self.sink.take().expect("finish runs once") {
            Sink::Tmp(tmp, w) => match close_tmp(&tmp, w, self.fsync) {
                Ok((len, digest)) => (StagedData::Tmp(tmp), len, digest),
                Err(e) => {
                    // A full disk fails the write part way: no partial file outlives it.
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
            },
            Sink::Memory(w) => {
                let out = w.into_inner().map_err(pq(Path::new("(memory)")))?;
                (StagedData::Bytes(bytes::Bytes::from(out.out)), out.len, out.hash.finalize())
            }
        };
        Ok(Staged {
            data,
            tenant: std::mem::take(&mut self.tenant),
            date: std::mem::take(&mut self.date),
            rows: self.rows,
            bytes: len as i64,
            sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
            min_time: self.times.0.unwrap_or(i64::MAX),
            max_time: self.times.1.unwrap_or(i64::MIN),
            min_seq: self.seqs.0.unwrap_or(i64::MAX),
            max_seq: self.seqs.1.unwrap_or(i64::MIN),
        })
    }
}

impl Drop for StageWriter {
    fn drop(&mut self) {
        if let Some(Sink::Tmp(tmp, _)) = &self.sink {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// Writes the footer and fsyncs when asked: (length, SHA-256).
fn close_tmp(
    tmp: &Path,
    w: ArrowWriter<HashingWriter<File>>,
    fsync: bool,
) -> Result<(u64, sha2::digest::Output<Sha256>), LakeError> {
    let out = w.into_inner().map_err(pq(tmp))?;
    if fsync {
        out.out.sync_all().map_err(io(tmp))?;
    }
    Ok((out.len, out.hash.finalize()))
}

/// Widens a running (min, max) by another.
fn widen(acc: &mut (Option<i64>, Option<i64>), (lo, hi): (Option<i64>, Option<i64>)) {
    acc.0 = match (acc.0, lo) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    acc.1 = match (acc.1, hi) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
}

/// (min, max) of an i64-backed column, (None, None) when it is empty, all null or not of type `T`.
fn range<T: ArrowPrimitiveType<Native = i64>>(
    batch: &RecordBatch,
    column: usize,
) -> (Option<i64>, Option<i64>) {
    batch
        .column(column)
        .as_any()
        .downcast_ref::<PrimitiveArray<T>>()
        .map_or((None, None), |a| (datafusion::arrow::compute::min(a), datafusion::arrow::compute::max(a)))
}
