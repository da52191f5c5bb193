//! File create, modify, delete and rename under watched paths, through inotify, as ECS file events
//! with the file's SHA-256; the persistence locations ([`super::persistence`]) are watched the same
//! way and their changes also carry the hash before and after and a line diff.
//!
//! inotify watches directories: a target directory is watched itself (and its subdirectories when
//! recursive), a target file through its parent, and a target whose parent does not exist yet
//! through its nearest existing ancestor, re-armed when directories appear. A file is reported
//! when it is closed after writing (so its hash is of what was written), a rename as one event
//! with the old path, and a move out of the watched paths as a deletion. Persistence locations are
//! also rescanned every [`RESCAN`] (and at once after the kernel's queue overflowed), so a change
//! inotify could not see is still reported. inotify does not say which process made a change.

use super::hashes::HashCache;
use super::persistence::Snapshots;
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Persistence locations are compared with what was remembered this often.
pub const RESCAN: Duration = Duration::from_secs(60);
/// Subdirectories followed below a recursive target, at most.
const MAX_DEPTH: usize = 8;
/// Directories watched at most (each costs the kernel about 1 KiB).
const MAX_WATCHES: usize = 16_384;
/// A rename's two halves arrive together; a half alone this long is a move in or out.
const PAIRING: Duration = Duration::from_millis(200);
/// A file created and never written and closed (a link, a FIFO) is reported after this.
const CREATE_SETTLE: Duration = Duration::from_secs(1);

/// A watched path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// A directory or a file.
    pub path: PathBuf,
    /// The persistence kind (`cron`, `systemd`, `ssh_authorized_keys`...), or none for a path an
    /// operator asked for.
    pub kind: Option<&'static str>,
    /// Whether files in subdirectories of a directory count too.
    pub recursive: bool,
}

/// What the file source did, for the run's summary.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FileStats {
    /// Directories watched.
    pub watches: usize,
    /// Directories that could not be watched (the kernel's `max_user_watches`, say).
    pub watch_failures: u64,
    /// Times the kernel's event queue overflowed (events lost, then rescanned).
    pub overflows: u64,
    /// Changes found by a rescan that inotify had not reported.
    pub found_by_rescan: u64,
}

/// The inotify source.
pub struct FileSource {
    fd: OwnedFd,
    host: String,
    targets: Vec<Target>,
    dirs: HashMap<i32, PathBuf>,
    watched: HashMap<PathBuf, i32>,
    created: HashMap<PathBuf, Instant>,
    moved: HashMap<u32, (PathBuf, Instant)>,
    snapshots: Snapshots,
    hashes: HashCache,
    last_rescan: Instant,
    buf: Vec<MaybeUninit<u8>>,
    /// What it did.
    pub stats: FileStats,
}

impl FileSource {
    /// Watches `targets` and remembers the persistence files as they are now.
    pub fn open(targets: Vec<Target>, host: &str) -> std::io::Result<FileSource> {
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
        let mut s = FileSource {
            fd,
            host: host.to_owned(),
            targets,
            dirs: HashMap::new(),
            watched: HashMap::new(),
            created: HashMap::new(),
            moved: HashMap::new(),
            snapshots: Snapshots::default(),
            hashes: HashCache::default(),
            last_rescan: Instant::now(),
            buf: vec![MaybeUninit::uninit(); 64 * 1024],
            stats: FileStats::default(),
        };
        s.arm();
        let persistent: Vec<PathBuf> =
            s.targets.iter().filter(|t| t.kind.is_some()).flat_map(files_of).collect();
        for f in persistent {
            s.snapshots.learn(&f);
        }
        Ok(s)
    }

    /// Applies the agent's budget: hashes from the cache only while degraded; the cache dropped when
    /// the memory budget was exceeded.
    pub fn budget(&mut self, degraded: bool, trimmed: bool) {
        self.hashes.cached_only = degraded;
        if trimmed {
            self.hashes.clear();
        }
    }

    /// Watches every target's directory (or its nearest existing ancestor).
    fn arm(&mut self) {
        let dirs: Vec<PathBuf> = self.targets.iter().flat_map(dirs_of).collect();
        for d in dirs {
            self.watch(&d);
        }
        self.stats.watches = self.watched.len();
    }

    fn watch(&mut self, dir: &Path) {
        if self.watched.contains_key(dir) || self.watched.len() >= MAX_WATCHES {
            return;
        }
        // MODIFY is read only to keep two writes apart: the kernel merges an event identical to the
        // one before it, so two writes' CLOSE_WRITEs in a row would be one.
        let flags = WatchFlags::CREATE
            | WatchFlags::MODIFY
            | WatchFlags::DELETE
            | WatchFlags::CLOSE_WRITE
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::DONT_FOLLOW
            | WatchFlags::ONLYDIR
            | WatchFlags::EXCL_UNLINK;
        match inotify::add_watch(&self.fd, dir, flags) {
            Ok(wd) => {
                self.dirs.insert(wd, dir.to_owned());
                self.watched.insert(dir.to_owned(), wd);
            }
            Err(e) => {
                self.stats.watch_failures += 1;
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch a directory");
            }
        }
    }

    /// The target that covers `path`, if any.
    fn target_of(&self, path: &Path) -> Option<&Target> {
        self.targets.iter().find(|t| {
            path == t.path || path.parent() == Some(&t.path) || (t.recursive && path.starts_with(&t.path))
        })
    }

    /// The changes the kernel reported since the last call (and the rescan's, when due); `lost` is
    /// told of each queue overflow.
    pub fn read(&mut self, lost: &dyn Fn(u64)) -> Vec<Value> {
        let mut out = Vec::new();
        let mut rearm = false;
        let mut overflow = false;
        let mut raw = Vec::new();
        {
            let mut reader = inotify::Reader::new(&self.fd, &mut self.buf);
            while let Ok(e) = reader.next() {
                let name = e.file_name().map(|n| std::ffi::OsString::from_vec(n.to_bytes().to_vec()));
                raw.push((e.wd(), e.events(), e.cookie(), name));
            }
        }
        for (wd, ev, cookie, name) in raw {
            if ev.contains(ReadFlags::QUEUE_OVERFLOW) {
                overflow = true;
                continue;
            }
            if ev.contains(ReadFlags::IGNORED) {
                if let Some(d) = self.dirs.remove(&wd) {
                    self.watched.remove(&d);
                }
                rearm = true;
                continue;
            }
            let (Some(dir), Some(name)) = (self.dirs.get(&wd), name) else { continue };
            let path = dir.join(name);
            if ev.contains(ReadFlags::ISDIR) {
                rearm |= ev.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO);
                continue;
            }
            if self.target_of(&path).is_none() {
                continue;
            }
            if ev.contains(ReadFlags::CREATE) {
                self.created.insert(path, Instant::now());
            } else if ev.contains(ReadFlags::CLOSE_WRITE) {
                let action = if self.created.remove(&path).is_some() { "create" } else { "modify" };
                out.extend(self.event(&path, action, None));
            } else if ev.contains(ReadFlags::MOVED_FROM) {
                self.moved.insert(cookie, (path, Instant::now()));
            } else if ev.contains(ReadFlags::MOVED_TO) {
                match self.moved.remove(&cookie) {
                    Some((from, _)) => out.extend(self.event(&path, "rename", Some(&from))),
                    None => out.extend(self.event(&path, "create", None)),
                }
            } else if ev.contains(ReadFlags::DELETE) {
                self.created.remove(&path);
                out.extend(self.event(&path, "delete", None));
            }
        }
        out.extend(self.settle());
        if rearm {
            self.arm();
        }
        if overflow {
            self.stats.overflows += 1;
            lost(1);
        }
        if overflow || self.last_rescan.elapsed() >= RESCAN {
            out.extend(self.rescan());
        }
        out
    }

    /// Halves of renames that found no partner (moved out: deleted here), and creations never
    /// closed after writing.
    fn settle(&mut self) -> Vec<Value> {
        let now = Instant::now();
        let gone: Vec<u32> =
            self.moved.iter().filter(|(_, (_, t))| now - *t >= PAIRING).map(|(c, _)| *c).collect();
        let mut out = Vec::new();
        for c in gone {
            if let Some((p, _)) = self.moved.remove(&c) {
                out.extend(self.event(&p, "delete", None));
            }
        }
        let made: Vec<PathBuf> =
            self.created.iter().filter(|(_, t)| now - **t >= CREATE_SETTLE).map(|(p, _)| p.clone()).collect();
        for p in made {
            self.created.remove(&p);
            out.extend(self.event(&p, "create", None));
        }
        out
    }

    /// Persistence files that changed, appeared or went without inotify saying so.
    fn rescan(&mut self) -> Vec<Value> {
        self.last_rescan = Instant::now();
        let mut out = Vec::new();
        for t in self.targets.clone().iter().filter(|t| t.kind.is_some()) {
            let now: Vec<PathBuf> = files_of(t);
            let mut changed: Vec<(PathBuf, &str)> = now
                .iter()
                .filter(|p| !self.snapshots.unchanged(p))
                .map(|p| (p.clone(), if self.snapshots.knows(p) { "modify" } else { "create" }))
                .collect();
            let known =
                if t.path.is_dir() || !t.path.exists() { self.snapshots.under(&t.path) } else { vec![] };
            changed.extend(known.into_iter().filter(|p| !now.contains(p)).map(|p| (p, "delete")));
            for (p, action) in changed {
                if self.target_of(&p).is_some_and(|x| x.path == t.path) {
                    self.stats.found_by_rescan += 1;
                    out.extend(self.event(&p, action, None));
                }
            }
        }
        out
    }

    /// The ECS event for a change at `path`.
    fn event(&mut self, path: &Path, action: &str, from: Option<&Path>) -> Option<Value> {
        let kind = self.target_of(path).or_else(|| from.and_then(|f| self.target_of(f)))?.kind;
        let deleted = action == "delete";
        let meta = if deleted { None } else { std::fs::symlink_metadata(path).ok() };
        let mut file = json!({
            "path": path.to_string_lossy(),
            "name": path.file_name().map(|n| n.to_string_lossy()),
            "directory": path.parent().map(|d| d.to_string_lossy()),
        });
        if let Some(ext) = path.extension() {
            file["extension"] = json!(ext.to_string_lossy());
        }
        if let Some(m) = &meta {
            use std::os::unix::fs::MetadataExt;
            file["size"] = json!(m.len());
            file["type"] = json!(if m.is_symlink() {
                "symlink"
            } else if m.is_file() {
                "file"
            } else {
                "other"
            });
            file["mode"] = json!(format!("{:o}", m.mode() & 0o7777));
            file["uid"] = json!(m.uid());
            if m.is_file()
                && let Some(h) = self.hashes.hash(path).hex()
            {
                file["hash"] = json!({"sha256": h});
            }
        }
        if let Some(f) = from {
            file["original"] = json!({"path": f.to_string_lossy()});
        }
        let kind_of = |a: &str| match a {
            "create" => "creation",
            "delete" => "deletion",
            _ => "change",
        };
        let mut e = json!({
            "@timestamp": schemas::time::format_micros(schemas::time::now_micros()),
            "event": {"category": "file", "action": action, "type": [kind_of(action)], "module": "cordon-agent"},
            "host": {"name": self.host, "os": {"type": "linux", "family": "linux"}},
            "file": file,
        });
        if let Some(kind) = kind {
            e["cordon"] = json!({"persistence": self.snapshots.change(kind, path, from, deleted)});
        }
        Some(e)
    }
}

/// The directories to watch for a target: itself (and its subdirectories when recursive), or,
/// for a file or a path not there yet, its nearest existing ancestor.
fn dirs_of(t: &Target) -> Vec<PathBuf> {
    match std::fs::symlink_metadata(&t.path) {
        Ok(m) if m.is_dir() => {
            let mut out = vec![t.path.clone()];
            if t.recursive {
                out.extend(subdirs(&t.path));
            }
            out
        }
        _ => t.path.ancestors().skip(1).find(|a| a.is_dir()).map(Path::to_path_buf).into_iter().collect(),
    }
}

/// The files a target covers now: itself, or the files in it (and below, when recursive).
fn files_of(t: &Target) -> Vec<PathBuf> {
    match std::fs::symlink_metadata(&t.path) {
        Ok(m) if m.is_dir() => dirs_of(t)
            .iter()
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
            .filter(|e| e.file_type().is_ok_and(|ft| ft.is_file()))
            .map(|e| e.path())
            .collect(),
        Ok(m) if m.is_file() => vec![t.path.clone()],
        _ => Vec::new(),
    }
}

/// The directories below `dir` (not following links), to [`MAX_DEPTH`].
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_owned(), 0)];
    while let Some((d, depth)) = stack.pop() {
        if depth >= MAX_DEPTH || out.len() >= MAX_WATCHES {
            continue;
        }
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(e.path());
                stack.push((e.path(), depth + 1));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads until `n` events came or two seconds passed.
    fn collect(src: &mut FileSource, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        let t0 = Instant::now();
        while out.len() < n && t0.elapsed() < Duration::from_secs(2) {
            out.extend(src.read(&|_| {}));
            std::thread::sleep(Duration::from_millis(20));
        }
        out
    }

    fn brief(e: &Value) -> (String, String) {
        (e["event"]["action"].as_str().unwrap().to_owned(), e["file"]["name"].as_str().unwrap().to_owned())
    }

    #[test]
    fn creates_writes_renames_and_deletes_are_reported_with_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("watched");
        std::fs::create_dir(&w).unwrap();
        let target = Target { path: w.clone(), kind: None, recursive: true };
        let mut src = FileSource::open(vec![target], "h").unwrap();
        std::fs::write(w.join("a.sh"), b"abc").unwrap();
        let mut got = collect(&mut src, 1);
        std::fs::write(w.join("a.sh"), b"abcd").unwrap();
        std::fs::write(w.join("a.sh"), b"abcde").unwrap();
        std::fs::rename(w.join("a.sh"), w.join("b.sh")).unwrap();
        std::fs::remove_file(w.join("b.sh")).unwrap();
        std::fs::write(dir.path().join("outside"), b"x").unwrap();
        got.extend(collect(&mut src, 4));
        let names: Vec<(String, String)> = got.iter().map(brief).collect();
        let want = [
            ("create", "a.sh"),
            ("modify", "a.sh"),
            ("modify", "a.sh"),
            ("rename", "b.sh"),
            ("delete", "b.sh"),
        ];
        assert_eq!(names, want.map(|(a, n)| (a.to_owned(), n.to_owned())), "{got:?}");
        assert_eq!(
            got[0]["file"]["hash"]["sha256"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(got[3]["file"]["original"]["path"], w.join("a.sh").to_string_lossy().as_ref());
        assert_eq!(
            (got[0]["event"]["category"].as_str(), got[0]["host"]["os"]["type"].as_str()),
            (Some("file"), Some("linux"))
        );
        // A directory made below a recursive target is watched at once.
        std::fs::create_dir(w.join("sub")).unwrap();
        let _ = collect(&mut src, 1);
        std::fs::write(w.join("sub/deep"), b"x").unwrap();
        assert_eq!(
            collect(&mut src, 1).iter().map(brief).collect::<Vec<_>>(),
            [("create".to_owned(), "deep".to_owned())]
        );
    }

    #[test]
    fn a_persistence_file_whose_directory_comes_later_is_diffed_and_rescans_catch_what_was_missed() {
        let home = tempfile::tempdir().unwrap();
        let keys = home.path().join(".ssh/authorized_keys");
        let target = Target { path: keys.clone(), kind: Some("ssh_authorized_keys"), recursive: false };
        let mut src = FileSource::open(vec![target], "h").unwrap();
        // ~/.ssh does not exist yet: its ancestor is watched, then it is.
        std::fs::create_dir(home.path().join(".ssh")).unwrap();
        let _ = collect(&mut src, 1);
        std::fs::write(&keys, "ssh-ed25519 AAAA alice@laptop\n").unwrap();
        let got = collect(&mut src, 1);
        assert_eq!(got.len(), 1, "{got:?}");
        let p = &got[0]["cordon"]["persistence"];
        assert_eq!(
            (p["kind"].as_str(), p["diff"].as_str()),
            (Some("ssh_authorized_keys"), Some("+ssh-ed25519 AAAA alice@laptop\n"))
        );
        assert!(p["before_sha256"].is_null() && p["after_sha256"].is_string());
        std::fs::write(&keys, "ssh-ed25519 AAAA alice@laptop\nssh-rsa BBBB mallory@evil\n").unwrap();
        let got = collect(&mut src, 1);
        assert_eq!(got[0]["cordon"]["persistence"]["diff"], "+ssh-rsa BBBB mallory@evil\n");
        assert_eq!(got[0]["cordon"]["persistence"]["before_sha256"], p["after_sha256"]);
        // A change inotify did not deliver (here: the watch removed behind the source's back) is
        // found by the rescan.
        let wd = src.watched[&home.path().join(".ssh")];
        inotify::remove_watch(&src.fd, wd).unwrap();
        std::fs::write(&keys, "").unwrap();
        src.last_rescan = Instant::now() - RESCAN;
        let got = collect(&mut src, 1);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0]["event"]["action"].as_str(), src.stats.found_by_rescan), (Some("modify"), 1));
        assert_eq!(
            got[0]["cordon"]["persistence"]["diff"],
            "-ssh-ed25519 AAAA alice@laptop\n-ssh-rsa BBBB mallory@evil\n"
        );
    }

    #[test]
    fn odd_entries_do_not_stop_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("w");
        std::fs::create_dir(&w).unwrap();
        let mut src =
            FileSource::open(vec![Target { path: w.clone(), kind: Some("cron"), recursive: true }], "h")
                .unwrap();
        std::os::unix::fs::symlink(w.join("loop"), w.join("loop")).unwrap();
        assert!(std::process::Command::new("mkfifo").arg(w.join("fifo")).status().unwrap().success());
        std::fs::create_dir(w.join("d")).unwrap();
        std::os::unix::fs::symlink(&w, w.join("d/up")).unwrap();
        std::thread::sleep(CREATE_SETTLE);
        let got = collect(&mut src, 2);
        let mut names: Vec<(String, String)> = got.iter().map(brief).collect();
        names.sort();
        assert_eq!(
            names,
            [("create".to_owned(), "fifo".to_owned()), ("create".to_owned(), "loop".to_owned())]
        );
        assert!(got.iter().all(|e| e["file"]["hash"].is_null()), "neither is read: {got:?}");
    }
}
