//! SHA-256 of files on the live host, cached by file identity (device, inode, mtime, size) and
//! within a byte budget per second, so a burst of executions or writes cannot make the agent read
//! the disk flat out. Only regular files are read (a FIFO or a device would block or never end),
//! and never more than [`MAX_HASH_BYTES`] of one.

use sha2::Digest;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

/// Files larger than this are not hashed.
pub const MAX_HASH_BYTES: u64 = 64 << 20;
/// Bytes hashed per second at most (the rest wait for the cache or go without a hash).
pub const HASH_BYTES_PER_SEC: u64 = 32 << 20;
/// Hashes remembered; the cache starts over beyond it.
const MAX_CACHED: usize = 65_536;

/// What asking for a hash came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hashed {
    /// Read now.
    Read(String),
    /// From the cache (the same file as before).
    Cached(String),
    /// Not hashed: too large, over this second's budget, not a regular file, or unreadable.
    Skipped,
}

impl Hashed {
    /// The hex digest, if there is one.
    pub fn hex(self) -> Option<String> {
        match self {
            Hashed::Read(h) | Hashed::Cached(h) => Some(h),
            Hashed::Skipped => None,
        }
    }
}

/// The cache and this second's budget.
#[derive(Debug)]
pub struct HashCache {
    cache: HashMap<(u64, u64, i64, u64), String>,
    budget: (Instant, u64),
    /// Hash from the cache only (the agent is over its CPU budget: [`super::budget`]).
    pub cached_only: bool,
}

impl Default for HashCache {
    fn default() -> Self {
        Self { cache: HashMap::new(), budget: (Instant::now(), 0), cached_only: false }
    }
}

impl HashCache {
    /// The SHA-256 of the regular file at `path` (symbolic links followed, as `/proc/PID/exe` needs).
    pub fn hash(&mut self, path: &Path) -> Hashed {
        let Ok(m) = std::fs::metadata(path) else { return Hashed::Skipped };
        if !m.is_file() {
            return Hashed::Skipped;
        }
        let key = (m.dev(), m.ino(), m.mtime(), m.size());
        if let Some(h) = self.cache.get(&key) {
            return Hashed::Cached(h.clone());
        }
        if self.cached_only {
            return Hashed::Skipped;
        }
        if self.budget.0.elapsed().as_secs() >= 1 {
            self.budget = (Instant::now(), 0);
        }
        if m.size() > MAX_HASH_BYTES || self.budget.1 + m.size() > HASH_BYTES_PER_SEC {
            return Hashed::Skipped;
        }
        self.budget.1 += m.size();
        let Some(hex) = sha256_of(path) else { return Hashed::Skipped };
        if self.cache.len() >= MAX_CACHED {
            self.cache.clear();
        }
        self.cache.insert(key, hex.clone());
        Hashed::Read(hex)
    }

    /// Forgets every hash (the agent is over its memory budget).
    pub fn clear(&mut self) {
        self.cache = HashMap::new();
    }
}

/// The SHA-256 of bytes, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// The SHA-256 of at most [`MAX_HASH_BYTES`] of a file.
pub fn sha256_of(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut std::io::Read::take(&mut f, MAX_HASH_BYTES), &mut h).ok()?;
    Some(hex(&h.finalize()))
}

/// Lower-case hex (one allocation: a digest is rendered for every process start).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_hashed_once_and_odd_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        std::fs::write(&f, b"abc").unwrap();
        let mut c = HashCache::default();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_owned();
        assert_eq!(c.hash(&f), Hashed::Read(abc.clone()));
        assert_eq!(c.hash(&f), Hashed::Cached(abc));
        assert_eq!(c.hash(dir.path()), Hashed::Skipped, "a directory");
        assert_eq!(c.hash(&dir.path().join("missing")), Hashed::Skipped);
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        assert_eq!(c.hash(&fifo), Hashed::Skipped, "a FIFO would block the source");
        let g = dir.path().join("g");
        std::fs::write(&g, b"g").unwrap();
        c.cached_only = true;
        assert_eq!(c.hash(&g), Hashed::Skipped, "over the CPU budget nothing new is read");
        assert!(matches!(c.hash(&f), Hashed::Cached(_)), "the cache still answers");
        c.cached_only = false;
        let lp = dir.path().join("loop");
        std::os::unix::fs::symlink(&lp, &lp).unwrap();
        assert_eq!(c.hash(&lp), Hashed::Skipped, "a symlink loop");
    }
}
