//! A filesystem in user space that loses what a power cut loses (T4, issue 16 item 3).
//!
//! [`LossyMount`] mounts a FUSE filesystem over a backing directory. Names are passed through at
//! once (create, rename, unlink, link and mkdir reach the backing directory when they happen, as a
//! journaling filesystem's metadata would), but file *contents* written through it stay in this
//! process's memory, like dirty pages in a page cache, until one of two things writes them back:
//!
//! - an `fsync`/`fdatasync` of the file, when the mount honours it (the negative control ignores
//!   it, as `eatmydata` or a lying disk cache would);
//! - writeback of data that has been dirty for longer than [`WRITEBACK_AFTER`], as the kernel's
//!   flusher would, so that the control loses only what a real machine without fsync would.
//!
//! [`LossyMount::power_cut`] is the power going out: everything not yet written back is dropped, the
//! filesystem is unmounted (so the kernel's page cache for it goes too) and mounted again over what
//! the backing directory holds. The process using the mount must be dead first, as it would be.
//! What it does not model: a rename reordered before the data it names, or torn sector writes.

mod kernel;

use fuser::{FileAttr, FileType, MountOption};
use kernel::LossyFs;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// How long written data may stay only in memory before writeback puts it in the backing directory.
pub const WRITEBACK_AFTER: Duration = Duration::from_secs(2);

const TTL: Duration = Duration::from_secs(1);
const ROOT: u64 = 1;
const EIO: i32 = 5;
const ENOENT: i32 = 2;
const EINVAL: i32 = 22;
const EEXIST: i32 = 17;

/// What the filesystem has done since it was first mounted.
#[derive(Clone, Copy, Debug, Default)]
pub struct LossStats {
    /// `fsync` calls received (honoured or not).
    pub fsyncs: u64,
    /// Bytes written back to the backing directory.
    pub written_back: u64,
    /// Bytes dropped by power cuts: written, never written back.
    pub lost: u64,
    /// Power cuts.
    pub cuts: u64,
}

/// A mounted lossy filesystem; unmounted when dropped.
pub struct LossyMount {
    backing: PathBuf,
    at: PathBuf,
    honour_fsync: bool,
    state: Arc<Mutex<State>>,
    stats: Arc<Mutex<LossStats>>,
    session: Option<fuser::BackgroundSession>,
}

impl LossyMount {
    /// Mounts the filesystem at `at` over `backing` (both created if missing). Needs root and
    /// `/dev/fuse`.
    pub fn mount(backing: &Path, at: &Path, honour_fsync: bool) -> anyhow::Result<Self> {
        std::fs::create_dir_all(backing)?;
        std::fs::create_dir_all(at)?;
        let stats = Arc::new(Mutex::new(LossStats::default()));
        let state = State::new(backing, honour_fsync, Arc::clone(&stats));
        let mut m = Self {
            backing: backing.to_owned(),
            at: at.to_owned(),
            honour_fsync,
            state,
            stats,
            session: None,
        };
        m.start()?;
        Ok(m)
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let fs = LossyFs(Arc::clone(&self.state));
        let opts = [MountOption::FSName("cordon-lossy".into()), MountOption::RW, MountOption::NoAtime];
        let session = fuser::spawn_mount2(fs, &self.at, &opts).map_err(|e| {
            anyhow::anyhow!(
                "T4 mounts a FUSE filesystem and needs root and /dev/fuse (modprobe fuse): mounting at {}: {e}",
                self.at.display()
            )
        })?;
        self.session = Some(session);
        Ok(())
    }

    /// Writes back everything (the `sync` command).
    pub fn sync(&self) -> anyhow::Result<()> {
        lock(&self.state).write_back_all()?;
        Ok(())
    }

    /// The power goes out: unwritten data is dropped and the filesystem comes back with what the
    /// backing directory holds. Whatever used the mount must have died already. Returns the bytes
    /// dropped.
    pub fn power_cut(&mut self) -> anyhow::Result<u64> {
        let lost = lock(&self.state).drop_unwritten();
        if let Some(s) = self.session.take() {
            unmount(s);
        }
        self.state = State::new(&self.backing, self.honour_fsync, Arc::clone(&self.stats));
        {
            let mut st = self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            st.lost += lost;
            st.cuts += 1;
        }
        self.start()?;
        Ok(lost)
    }

    /// What has happened so far.
    pub fn stats(&self) -> LossStats {
        *self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for LossyMount {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            unmount(s);
        }
    }
}

/// Unmounts and waits for the session's thread. Its end is not checked: the kernel may end the
/// connection with ENODEV or ECONNABORTED, and `BackgroundSession::join` panics on the latter.
fn unmount(s: fuser::BackgroundSession) {
    // The rest of the session (its mount) drops at the end of this block, unmounting, so the
    // thread can end before it is joined.
    let guard = {
        let session = s;
        let fuser::BackgroundSession { guard, .. } = session;
        guard
    };
    let _ = guard.join();
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A file's contents held in memory since its first unwritten write: `lo..hi` differs from the
/// backing file, and the backing file's length becomes `data.len()` at writeback.
struct Dirty {
    data: Vec<u8>,
    lo: usize,
    hi: usize,
    since: Instant,
}

#[derive(Default)]
struct Node {
    /// Names relative to the backing directory (more than one after `link`, none once unlinked).
    paths: Vec<PathBuf>,
    dirty: Option<Dirty>,
    open: u32,
}

struct Handle {
    ino: u64,
    file: File,
    writable: bool,
}

struct State {
    root: PathBuf,
    honour_fsync: bool,
    nodes: HashMap<u64, Node>,
    by_path: HashMap<PathBuf, u64>,
    handles: HashMap<u64, Handle>,
    next_ino: u64,
    next_fh: u64,
    last_writeback: Instant,
    stats: Arc<Mutex<LossStats>>,
}

impl State {
    fn new(root: &Path, honour_fsync: bool, stats: Arc<Mutex<LossStats>>) -> Arc<Mutex<Self>> {
        let mut s = Self {
            root: root.to_owned(),
            honour_fsync,
            nodes: HashMap::new(),
            by_path: HashMap::new(),
            handles: HashMap::new(),
            next_ino: ROOT + 1,
            next_fh: 1,
            last_writeback: Instant::now(),
            stats,
        };
        s.nodes.insert(ROOT, Node { paths: vec![PathBuf::new()], ..Default::default() });
        s.by_path.insert(PathBuf::new(), ROOT);
        Arc::new(Mutex::new(s))
    }

    fn count(&self, f: impl FnOnce(&mut LossStats)) {
        f(&mut self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    fn path(&self, ino: u64) -> Option<&PathBuf> {
        self.nodes.get(&ino)?.paths.first()
    }

    fn child(&self, parent: u64, name: &OsStr) -> Option<PathBuf> {
        Some(self.path(parent)?.join(name))
    }

    fn real(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    fn ino_for(&mut self, rel: &Path) -> u64 {
        if let Some(i) = self.by_path.get(rel) {
            return *i;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, Node { paths: vec![rel.to_owned()], ..Default::default() });
        self.by_path.insert(rel.to_owned(), ino);
        ino
    }

    fn handle_of(&self, ino: u64, writable: bool) -> Option<&Handle> {
        self.handles.values().find(|h| h.ino == ino && (h.writable || !writable))
    }

    fn attr(&self, ino: u64) -> std::io::Result<FileAttr> {
        let meta = match self.path(ino) {
            Some(p) => std::fs::symlink_metadata(self.real(p))?,
            None => self.handle_of(ino, false).ok_or(std::io::ErrorKind::NotFound)?.file.metadata()?,
        };
        let size = match self.nodes.get(&ino).and_then(|n| n.dirty.as_ref()) {
            Some(d) => d.data.len() as u64,
            None => meta.len(),
        };
        let kind = if meta.is_dir() {
            FileType::Directory
        } else if meta.file_type().is_symlink() {
            FileType::Symlink
        } else {
            FileType::RegularFile
        };
        let time = |s: i64, ns: i64| {
            SystemTime::UNIX_EPOCH + Duration::new(s.max(0).unsigned_abs(), ns.clamp(0, 999_999_999) as u32)
        };
        Ok(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: time(meta.atime(), meta.atime_nsec()),
            mtime: time(meta.mtime(), meta.mtime_nsec()),
            ctime: time(meta.ctime(), meta.ctime_nsec()),
            crtime: time(meta.ctime(), meta.ctime_nsec()),
            kind,
            perm: (meta.mode() & 0o7777) as u16,
            nlink: meta.nlink() as u32,
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    /// The file's contents in memory, read from the backing file on its first write since writeback.
    fn dirty(&mut self, ino: u64) -> std::io::Result<&mut Dirty> {
        let loaded = self.nodes.get(&ino).is_some_and(|n| n.dirty.is_some());
        if !loaded {
            let data = match self.handle_of(ino, false) {
                Some(h) => read_all(&h.file)?,
                None => std::fs::read(self.real(self.path(ino).ok_or(std::io::ErrorKind::NotFound)?))?,
            };
            let node = self.nodes.get_mut(&ino).ok_or(std::io::ErrorKind::NotFound)?;
            node.dirty = Some(Dirty { data, lo: usize::MAX, hi: 0, since: Instant::now() });
        }
        let node = self.nodes.get_mut(&ino).ok_or(std::io::ErrorKind::NotFound)?;
        node.dirty.as_mut().ok_or_else(|| std::io::ErrorKind::NotFound.into())
    }

    fn write(&mut self, ino: u64, offset: usize, bytes: &[u8]) -> std::io::Result<()> {
        let d = self.dirty(ino)?;
        let end = offset + bytes.len();
        if d.data.len() < end {
            d.data.resize(end, 0);
        }
        d.data[offset..end].copy_from_slice(bytes);
        (d.lo, d.hi) = (d.lo.min(offset), d.hi.max(end));
        Ok(())
    }

    fn truncate(&mut self, ino: u64, size: usize) -> std::io::Result<()> {
        let d = self.dirty(ino)?;
        d.data.resize(size, 0);
        d.lo = d.lo.min(size);
        d.hi = d.hi.min(size).max(d.lo.min(size));
        Ok(())
    }

    /// Puts the file's unwritten contents in the backing file.
    fn write_back(&mut self, ino: u64) -> std::io::Result<()> {
        let Some(d) = self.nodes.get_mut(&ino).and_then(|n| n.dirty.take()) else { return Ok(()) };
        let opened;
        let file = match (self.handle_of(ino, true), self.path(ino)) {
            (Some(h), _) => &h.file,
            (None, Some(p)) => {
                opened = OpenOptions::new().write(true).open(self.real(p))?;
                &opened
            }
            (None, None) => return Ok(()), // unlinked and closed: nobody can read it again
        };
        if d.lo < d.hi {
            file.write_all_at(&d.data[d.lo..d.hi], d.lo as u64)?;
        }
        file.set_len(d.data.len() as u64)?;
        let n = d.hi.saturating_sub(d.lo) as u64;
        self.count(|s| s.written_back += n);
        Ok(())
    }

    /// Writes back what has waited longer than [`WRITEBACK_AFTER`] (checked at most every 200 ms).
    fn writeback_due(&mut self) {
        if self.last_writeback.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last_writeback = Instant::now();
        let due: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.dirty.as_ref().is_some_and(|d| d.since.elapsed() >= WRITEBACK_AFTER))
            .map(|(i, _)| *i)
            .collect();
        for ino in due {
            let _ = self.write_back(ino);
        }
    }

    fn write_back_all(&mut self) -> std::io::Result<()> {
        let all: Vec<u64> = self.nodes.keys().copied().collect();
        all.into_iter().try_for_each(|i| self.write_back(i))
    }

    fn drop_unwritten(&mut self) -> u64 {
        let dirty = self.nodes.values_mut().filter_map(|n| n.dirty.take());
        dirty.map(|d| d.hi.saturating_sub(d.lo) as u64).sum()
    }

    fn read(&self, ino: u64, fh: u64, offset: u64, size: usize) -> std::io::Result<Vec<u8>> {
        if let Some(d) = self.nodes.get(&ino).and_then(|n| n.dirty.as_ref()) {
            let start = (offset as usize).min(d.data.len());
            let end = start.saturating_add(size).min(d.data.len());
            return Ok(d.data[start..end].to_vec());
        }
        let h = self.handles.get(&fh).ok_or(std::io::ErrorKind::NotFound)?;
        let mut buf = vec![0; size];
        let mut got = 0;
        while got < size {
            match h.file.read_at(&mut buf[got..], offset + got as u64)? {
                0 => break,
                n => got += n,
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    fn open(&mut self, ino: u64, flags: i32) -> std::io::Result<u64> {
        let rel = self.path(ino).ok_or(std::io::ErrorKind::NotFound)?.clone();
        let writable = flags & O_ACCMODE != 0;
        let file = OpenOptions::new().read(true).write(writable).open(self.real(&rel))?;
        let fh = self.add_handle(ino, file, writable);
        if writable && flags & O_TRUNC != 0 {
            self.truncate(ino, 0)?;
        }
        Ok(fh)
    }

    fn add_handle(&mut self, ino: u64, file: File, writable: bool) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, Handle { ino, file, writable });
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.open += 1;
        }
        fh
    }

    fn release(&mut self, fh: u64) {
        let Some(h) = self.handles.remove(&fh) else { return };
        if let Some(n) = self.nodes.get_mut(&h.ino) {
            n.open = n.open.saturating_sub(1);
            if n.paths.is_empty() && n.open == 0 {
                self.nodes.remove(&h.ino);
            }
        }
    }

    /// Forgets the name `rel` (unlinked, or replaced by a rename).
    fn unname(&mut self, rel: &Path) {
        let Some(ino) = self.by_path.remove(rel) else { return };
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.paths.retain(|p| p != rel);
            if n.paths.is_empty() && n.open == 0 {
                self.nodes.remove(&ino);
            }
        }
    }

    /// Moves every name at or under `from` to the same place under `to`.
    fn rename_names(&mut self, from: &Path, to: &Path) {
        let moved: Vec<PathBuf> = self.by_path.keys().filter(|p| p.starts_with(from)).cloned().collect();
        for old in moved {
            let rest = old.strip_prefix(from).unwrap_or(Path::new(""));
            // `join("")` would add a trailing slash, and a file named with one is "not a directory".
            let new = if rest.as_os_str().is_empty() { to.to_owned() } else { to.join(rest) };
            if let Some(ino) = self.by_path.remove(&old) {
                self.by_path.insert(new.clone(), ino);
                if let Some(n) = self.nodes.get_mut(&ino) {
                    for p in n.paths.iter_mut().filter(|p| **p == old) {
                        p.clone_from(&new);
                    }
                }
            }
        }
    }
}

const O_ACCMODE: i32 = 0o3;
const O_TRUNC: i32 = 0o1000;
const O_EXCL: i32 = 0o200;
const RENAME_NOREPLACE: u32 = 1;

fn read_all(f: &File) -> std::io::Result<Vec<u8>> {
    let mut data = vec![0; f.metadata()?.len() as usize];
    f.read_exact_at(&mut data, 0)?;
    Ok(data)
}
