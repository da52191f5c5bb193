//! Staging: a file's rows encoded to a temporary name, invisible to readers until
//! [`Lake::publish`]. A [`StageWriter`] takes the rows a batch at a time, so a merge never holds
//! its whole output at once.

use super::{Lake, LakeError, Order, io, pq, writer_properties};
use datafusion::arrow::array::{ArrayRef, PrimitiveArray};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, Int64Type, Schema, SchemaRef, TimestampMicrosecondType,
};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowRowGroupWriterFactory, compute_leaves};
use parquet::errors::ParquetError;
use parquet::file::writer::SerializedFileWriter;
use schemas::fields::col;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    Tmp(PathBuf, Encoder<File>),
    /// Memory, for a bucket (uploaded whole at publish).
    Memory(Encoder<Vec<u8>>),
}

/// The Parquet encoder: rows a batch at a time, until a row group is first written a column at a
/// time ([`StageWriter::write_by_column`]); from then on, row groups a column at a time.
enum Encoder<W: Write + Send> {
    Rows(ArrowWriter<HashingWriter<W>>),
    Columns(SerializedFileWriter<HashingWriter<W>>, ArrowRowGroupWriterFactory),
}

impl<W: Write + Send> Encoder<W> {
    fn rows(out: HashingWriter<W>, schema: SchemaRef, order: Order) -> parquet::errors::Result<Self> {
        Ok(Self::Rows(ArrowWriter::try_new(out, schema, Some(writer_properties(order)))?))
    }

    fn write(&mut self, batch: &RecordBatch) -> parquet::errors::Result<()> {
        match self {
            Self::Rows(w) => w.write(batch),
            Self::Columns(..) => {
                Err(ParquetError::General("rows written after a column-wise row group".into()))
            }
        }
    }

    /// One row group of `schema`'s columns, each asked of `column` in turn, encoded and compressed
    /// as it comes and dropped before the next is asked for.
    fn write_by_column(
        &mut self,
        schema: &Schema,
        column: &mut dyn FnMut(usize) -> Result<ArrayRef, LakeError>,
        path: &Path,
    ) -> Result<(), LakeError> {
        let Self::Columns(file, factory) = self else {
            return Err(pq(path)(ParquetError::General("the encoder was not made column-wise".into())));
        };
        let writers = factory.create_column_writers(file.flushed_row_groups().len()).map_err(pq(path))?;
        let mut writers = writers.into_iter();
        let mut chunks = Vec::new();
        for (c, field) in schema.fields().iter().enumerate() {
            let array = column(c)?;
            for leaf in compute_leaves(field, &array).map_err(pq(path))? {
                let Some(mut w) = writers.next() else {
                    return Err(pq(path)(ParquetError::General("more leaves than column writers".into())));
                };
                w.write(&leaf).map_err(pq(path))?;
                chunks.push(w.close().map_err(pq(path))?);
            }
        }
        let mut group = file.next_row_group().map_err(pq(path))?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut group).map_err(pq(path))?;
        }
        group.close().map_err(pq(path))?;
        Ok(())
    }

    /// From rows to row groups a column at a time (what rows were written are flushed first).
    fn into_columns(self) -> parquet::errors::Result<Self> {
        match self {
            Self::Rows(w) => {
                let (file, factory) = w.into_serialized_writer()?;
                Ok(Self::Columns(file, factory))
            }
            columns => Ok(columns),
        }
    }

    /// Writes the footer; the output with its length and hash.
    fn into_inner(self) -> parquet::errors::Result<HashingWriter<W>> {
        match self {
            Self::Rows(w) => w.into_inner(),
            Self::Columns(file, _) => file.into_inner(),
        }
    }
}

/// A file being staged: rows in, a batch at a time, in the order they are to be stored.
/// Dropped before [`StageWriter::finish`] (an error, a merge given up), its temporary file goes.
pub struct StageWriter {
    schema: SchemaRef,
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
        let sink = match self.objects.local_root() {
            Some(root) => {
                let dir = root.join(format!("events/tenant={tenant}/date={date}"));
                fs::create_dir_all(&dir).map_err(io(&dir))?;
                let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
                let file = File::create(&tmp).map_err(io(&tmp))?;
                let out = HashingWriter { out: file, hash: Sha256::new(), len: 0 };
                match Encoder::rows(out, Arc::clone(&schema), order) {
                    Ok(w) => Sink::Tmp(tmp, w),
                    Err(e) => {
                        let _ = fs::remove_file(&tmp);
                        return Err(pq(&tmp)(e));
                    }
                }
            }
            None => {
                let out = HashingWriter { out: Vec::new(), hash: Sha256::new(), len: 0 };
                let encoder = Encoder::rows(out, Arc::clone(&schema), order);
                Sink::Memory(encoder.map_err(pq(Path::new("(memory)")))?)
            }
        };
        Ok(StageWriter {
            schema,
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
        widen(&mut self.times, range::<TimestampMicrosecondType>(batch.column(col::TIME)));
        widen(&mut self.seqs, range::<Int64Type>(batch.column(col::STREAM_SEQ)));
        Ok(())
    }

    /// Appends one row group of `rows` rows a column at a time: `column(c)` gives column `c` of the
    /// writer's schema, which is encoded and compressed before the next is asked for, so only one
    /// column of the group is held decoded (a vertical merge). Rows may not be written after.
    pub fn write_by_column(
        &mut self,
        rows: usize,
        mut column: impl FnMut(usize) -> Result<ArrayRef, LakeError>,
    ) -> Result<(), LakeError> {
        let (mut times, mut seqs) = (self.times, self.seqs);
        let mut checked = |c: usize| -> Result<ArrayRef, LakeError> {
            let array = column(c)?;
            if array.len() != rows {
                return Err(LakeError::Arrow(ArrowError::InvalidArgumentError(format!(
                    "column {c} has {} rows, the row group {rows}",
                    array.len()
                ))));
            }
            match c {
                col::TIME => widen(&mut times, range::<TimestampMicrosecondType>(&array)),
                col::STREAM_SEQ => widen(&mut seqs, range::<Int64Type>(&array)),
                _ => {}
            }
            Ok(array)
        };
        let schema = Arc::clone(&self.schema);
        let written = match self.sink.take().expect("the sink is only taken by finish") {
            Sink::Tmp(tmp, w) => match w.into_columns() {
                Ok(mut w) => {
                    let written = w.write_by_column(&schema, &mut checked, &tmp);
                    self.sink = Some(Sink::Tmp(tmp, w));
                    written
                }
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    Err(pq(&tmp)(e))
                }
            },
            Sink::Memory(w) => {
                let path = Path::new("(memory)");
                let mut w = w.into_columns().map_err(pq(path))?;
                let written = w.write_by_column(&schema, &mut checked, path);
                self.sink = Some(Sink::Memory(w));
                written
            }
        };
        written?;
        (self.times, self.seqs) = (times, seqs);
        self.rows += rows as i64;
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
    w: Encoder<File>,
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
fn range<T: ArrowPrimitiveType<Native = i64>>(column: &ArrayRef) -> (Option<i64>, Option<i64>) {
    column
        .as_any()
        .downcast_ref::<PrimitiveArray<T>>()
        .map_or((None, None), |a| (datafusion::arrow::compute::min(a), datafusion::arrow::compute::max(a)))
}
