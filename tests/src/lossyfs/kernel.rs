//! The operations the kernel sends, each answered under the one lock on [`State`].

use super::{EEXIST, EINVAL, EIO, ENOENT, O_EXCL, O_TRUNC, RENAME_NOREPLACE, ROOT, State, TTL, lock};
use fuser::{
    FileType, Filesystem, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};
use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(match e.kind() {
        std::io::ErrorKind::NotFound => ENOENT,
        std::io::ErrorKind::AlreadyExists => EEXIST,
        _ => EIO,
    })
}

/// The filesystem the kernel talks to: every operation under the one lock.
pub(super) struct LossyFs(pub(super) Arc<Mutex<State>>);

impl LossyFs {
    fn state(&self) -> MutexGuard<'_, State> {
        let mut s = lock(&self.0);
        s.writeback_due();
        s
    }

    /// Removes a name (a file or an empty directory) from the backing directory, then forgets it.
    fn remove(&self, parent: u64, name: &OsStr, how: fn(PathBuf) -> std::io::Result<()>, reply: ReplyEmpty) {
        let mut s = self.state();
        let Some(rel) = s.child(parent, name) else { return reply.error(ENOENT) };
        match how(s.real(&rel)) {
            Ok(()) => {
                s.unname(&rel);
                reply.ok();
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn entry(s: &mut State, rel: &Path, reply: ReplyEntry) {
        let ino = s.ino_for(rel);
        match s.attr(ino) {
            Ok(a) => reply.entry(&TTL, &a, 0),
            Err(e) => {
                s.unname(rel);
                reply.error(errno(&e));
            }
        }
    }
}

impl Filesystem for LossyFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let mut s = self.state();
        let Some(rel) = s.child(parent, name) else { return reply.error(ENOENT) };
        if std::fs::symlink_metadata(s.real(&rel)).is_err() {
            s.unname(&rel);
            return reply.error(ENOENT);
        }
        Self::entry(&mut s, &rel, reply);
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.state().attr(ino) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let mut s = self.state();
        let done = (|| {
            if let (Some(m), Some(p)) = (mode, s.path(ino)) {
                std::fs::set_permissions(s.real(p), std::fs::Permissions::from_mode(m & 0o7777))?;
            }
            if let Some(n) = size {
                s.truncate(ino, n as usize)?;
            }
            s.attr(ino)
        })();
        match done {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        let s = self.state();
        let Some(p) = s.path(ino) else { return reply.error(ENOENT) };
        match std::fs::read_link(s.real(p)) {
            Ok(t) => reply.data(t.as_os_str().as_encoded_bytes()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut s = self.state();
        let Some(rel) = s.child(parent, name) else { return reply.error(ENOENT) };
        let real = s.real(&rel);
        let made = std::fs::create_dir(&real).and_then(|()| {
            std::fs::set_permissions(&real, std::fs::Permissions::from_mode(mode & !umask & 0o7777))
        });
        match made {
            Ok(()) => Self::entry(&mut s, &rel, reply),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, std::fs::remove_file, reply);
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, std::fs::remove_dir, reply);
    }

    fn symlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, target: &Path, reply: ReplyEntry) {
        let mut s = self.state();
        let Some(rel) = s.child(parent, name) else { return reply.error(ENOENT) };
        match std::os::unix::fs::symlink(target, s.real(&rel)) {
            Ok(()) => Self::entry(&mut s, &rel, reply),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        let mut s = self.state();
        let (Some(from), Some(to)) = (s.child(parent, name), s.child(newparent, newname)) else {
            return reply.error(ENOENT);
        };
        if flags & !RENAME_NOREPLACE != 0 {
            return reply.error(EINVAL);
        }
        if flags & RENAME_NOREPLACE != 0 && std::fs::symlink_metadata(s.real(&to)).is_ok() {
            return reply.error(EEXIST);
        }
        match std::fs::rename(s.real(&from), s.real(&to)) {
            Ok(()) => {
                s.unname(&to);
                s.rename_names(&from, &to);
                reply.ok();
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn link(&mut self, _req: &Request<'_>, ino: u64, newparent: u64, newname: &OsStr, reply: ReplyEntry) {
        let mut s = self.state();
        let (Some(src), Some(rel)) = (s.path(ino).cloned(), s.child(newparent, newname)) else {
            return reply.error(ENOENT);
        };
        if let Err(e) = std::fs::hard_link(s.real(&src), s.real(&rel)) {
            return reply.error(errno(&e));
        }
        s.by_path.insert(rel.clone(), ino);
        if let Some(n) = s.nodes.get_mut(&ino) {
            n.paths.push(rel);
        }
        match s.attr(ino) {
            Ok(a) => reply.entry(&TTL, &a, 0),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        match self.state().open(ino, flags) {
            Ok(fh) => reply.opened(fh, 0),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        match self.state().read(ino, fh, offset.max(0) as u64, size as usize) {
            Ok(b) => reply.data(&b),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        match self.state().write(ino, offset.max(0) as usize, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lock_owner: u64, reply: ReplyEmpty) {
        reply.ok(); // closing a file makes nothing durable
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.state().release(fh);
        reply.ok();
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _datasync: bool, reply: ReplyEmpty) {
        let mut s = self.state();
        s.count(|st| st.fsyncs += 1);
        if !s.honour_fsync {
            return reply.ok();
        }
        match s.write_back(ino) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, offset: i64, mut reply: ReplyDirectory) {
        let mut s = self.state();
        let Some(dir) = s.path(ino).cloned() else { return reply.error(ENOENT) };
        let listing = match std::fs::read_dir(s.real(&dir)) {
            Ok(rd) => rd.flatten().collect::<Vec<_>>(),
            Err(e) => return reply.error(errno(&e)),
        };
        let mut entries =
            vec![(ino, FileType::Directory, ".".into()), (ROOT, FileType::Directory, "..".into())];
        for e in listing {
            let kind = match e.file_type() {
                Ok(t) if t.is_dir() => FileType::Directory,
                Ok(t) if t.is_symlink() => FileType::Symlink,
                _ => FileType::RegularFile,
            };
            entries.push((s.ino_for(&dir.join(e.file_name())), kind, e.file_name()));
        }
        for (i, (child, kind, name)) in entries.into_iter().enumerate().skip(offset.max(0) as usize) {
            if reply.add(child, i as i64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _datasync: bool, reply: ReplyEmpty) {
        reply.ok(); // names are durable when made
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        reply.statfs(1 << 24, 1 << 23, 1 << 23, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn access(&mut self, _req: &Request<'_>, _ino: u64, _mask: i32, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut s = self.state();
        let Some(rel) = s.child(parent, name) else { return reply.error(ENOENT) };
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).mode(mode & !umask & 0o7777);
        if flags & O_EXCL != 0 {
            opts.create_new(true);
        } else {
            opts.create(true);
        }
        let created = opts.open(s.real(&rel)).and_then(|file| {
            let ino = s.ino_for(&rel);
            let fh = s.add_handle(ino, file, true);
            if flags & O_TRUNC != 0 {
                s.truncate(ino, 0)?;
            }
            Ok((s.attr(ino)?, fh))
        });
        match created {
            Ok((a, fh)) => reply.created(&TTL, &a, 0, fh, 0),
            Err(e) => reply.error(errno(&e)),
        }
    }
}
