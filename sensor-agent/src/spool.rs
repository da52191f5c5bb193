//! The agent's disk spool: every batch is written (and by default fsynced) before it is published,
//! and removed only after JetStream acknowledges it. A restart resends what is left.
//!
//! One file per batch, `<local seq>.batch`, written to a temporary name and renamed:
//! `CSPL1\n` | crc32 (u32 LE) of the rest | header length (u32 LE) | header JSON | body.
//! The spool is bounded in bytes; a batch that does not fit is dropped and counted exactly.
//! A file whose checksum fails is moved aside (`.corrupt`) and counted, never published.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8] = b"CSPL1\n";

/// Spool failures.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// File system.
    #[error("spool i/o error at {path}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.display().to_string(), source }
}

/// A batch waiting in the spool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpooledBatch {
    /// Local sequence (file name), orders the spool.
    pub local: u64,
    /// The `Nats-Msg-Id` it is published with, fixed when it was made.
    pub msg_id: String,
    /// Events in it.
    pub events: u64,
    /// The body is zstd-compressed.
    pub compressed: bool,
    /// The body.
    pub body: Vec<u8>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    msg_id: String,
    events: u64,
    compressed: bool,
}

/// A bounded directory of batches.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    fsync: bool,
    bytes: u64,
    next_local: u64,
    /// Files found corrupt on open.
    pub corrupt: u64,
}

impl Spool {
    /// Opens (creating) a spool; returns it and the batches it still holds, oldest first.
    pub fn open(dir: &Path, max_bytes: u64, fsync: bool) -> Result<(Self, Vec<SpooledBatch>), SpoolError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut found = Vec::new();
        let mut bytes = 0;
        let mut corrupt = 0;
        let mut max_local = 0;
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_owned();
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(local) = name.strip_suffix(".batch").and_then(|n| n.parse::<u64>().ok()) else {
                continue;
            };
            max_local = max_local.max(local);
            let data = fs::read(&path).map_err(io(&path))?;
            match decode(local, &data) {
                Some(b) => {
                    bytes += data.len() as u64;
                    found.push(b);
                }
                None => {
                    corrupt += 1;
                    let _ = fs::rename(&path, path.with_extension("corrupt"));
                }
            }
        }
        found.sort_by_key(|b| b.local);
        let spool = Self { dir: dir.to_owned(), max_bytes, fsync, bytes, next_local: max_local + 1, corrupt };
        Ok((spool, found))
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Writes a batch durably. `Ok(None)` means the spool is full and the batch was dropped.
    pub fn write(
        &mut self,
        msg_id: &str,
        events: u64,
        compressed: bool,
        body: Vec<u8>,
    ) -> Result<Option<SpooledBatch>, SpoolError> {
        let header = serde_json::to_vec(&Header { msg_id: msg_id.to_owned(), events, compressed })
            .expect("a spool header serialises");
        let mut rest = Vec::with_capacity(4 + header.len() + body.len());
        rest.extend_from_slice(&(header.len() as u32).to_le_bytes());
        rest.extend_from_slice(&header);
        rest.extend_from_slice(&body);
        let size = (MAGIC.len() + 4 + rest.len()) as u64;
        if self.bytes + size > self.max_bytes {
            return Ok(None);
        }
        let local = self.next_local;
        self.next_local += 1;
        let path = self.dir.join(format!("{local:016}.batch"));
        let tmp = path.with_extension("tmp");
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(MAGIC).map_err(io(&tmp))?;
        f.write_all(&crc32fast::hash(&rest).to_le_bytes()).map_err(io(&tmp))?;
        f.write_all(&rest).map_err(io(&tmp))?;
        if self.fsync {
            f.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        if self.fsync {
            fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir))?;
        }
        self.bytes += size;
        Ok(Some(SpooledBatch { local, msg_id: msg_id.to_owned(), events, compressed, body }))
    }

    /// Removes an acknowledged batch.
    pub fn remove(&mut self, b: &SpooledBatch) -> Result<(), SpoolError> {
        let path = self.dir.join(format!("{:016}.batch", b.local));
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        fs::remove_file(&path).map_err(io(&path))?;
        self.bytes = self.bytes.saturating_sub(size);
        Ok(())
    }
}

fn decode(local: u64, data: &[u8]) -> Option<SpooledBatch> {
    let rest = data.strip_prefix(MAGIC)?;
    let (crc, rest) = rest.split_at_checked(4)?;
    if u32::from_le_bytes(crc.try_into().ok()?) != crc32fast::hash(rest) {
        return None;
    }
    let (hl, rest) = rest.split_at_checked(4)?;
    let hl = u32::from_le_bytes(hl.try_into().ok()?) as usize;
    let (header, body) = rest.split_at_checked(hl)?;
    let h: Header = serde_json::from_slice(header).ok()?;
    Some(SpooledBatch {
        local,
        msg_id: h.msg_id,
        events: h.events,
        compressed: h.compressed,
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_detects_corruption_and_bounds_size() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, found) = Spool::open(dir.path(), 10_000, true).unwrap();
        assert!(found.is_empty());
        let a = s.write("a:1:1", 2, false, b"{}\n{}\n".to_vec()).unwrap().unwrap();
        let b = s.write("a:1:2", 1, false, b"{}\n".to_vec()).unwrap().unwrap();
        let c = s.write("a:1:3", 1, false, b"{}\n".to_vec()).unwrap().unwrap();
        s.remove(&a).unwrap();
        // Flip a byte of c's body.
        let cpath = dir.path().join(format!("{:016}.batch", c.local));
        let mut bytes = fs::read(&cpath).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&cpath, bytes).unwrap();
        let (mut s2, found) = Spool::open(dir.path(), 10_000, true).unwrap();
        assert_eq!(found, vec![b]);
        assert_eq!(s2.corrupt, 1);
        // New batches sort after old ones.
        let d = s2.write("a:2:1", 1, false, vec![b'x'; 10]).unwrap().unwrap();
        assert!(d.local > c.local);
        // Full: dropped, not written.
        assert_eq!(s2.write("a:2:2", 5, false, vec![0; 20_000]).unwrap(), None);
    }
}
