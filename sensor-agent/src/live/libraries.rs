//! Code mapped from places it should not come from: new processes' executable mappings
//! (`/proc/PID/maps`) are checked every [`POLL`] and every process's every [`FULL_RESCAN`], and a library is reported once per process when
//! an unprivileged user could have put it there (the file, or its directory, is writable by someone
//! other than root: `/tmp`, `/dev/shm`, a home directory), when it came from a `memfd` (code that
//! never touched a disk), or when such a file was deleted after it was mapped. A library preloaded
//! through `/etc/ld.so.preload` is watched as persistence ([`super::persistence`]); this source
//! catches what `LD_PRELOAD`, `dlopen` or an injector brought in, whatever the way.
//!
//! A process that maps and ends between two scans is not seen; the process source reports its
//! executable all the same.

use super::hashes::HashCache;
use super::procfs;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How often new processes' mappings are checked.
pub const POLL: std::time::Duration = std::time::Duration::from_secs(2);
/// How often every process's mappings are checked again (for what `dlopen` or an injector mapped
/// after the process was first seen).
pub const FULL_RESCAN: std::time::Duration = std::time::Duration::from_secs(30);

/// What the source did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LibraryStats {
    /// Scans (of the processes new since the last, or of all of them every [`FULL_RESCAN`]).
    pub scans: u64,
    /// Process mappings read.
    pub processes_read: u64,
    /// Libraries reported.
    pub reported: u64,
    /// Processes whose mappings could not be read (ended, or refused).
    pub unreadable: u64,
}

/// Why a mapping is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// From a `memfd`: never on a disk.
    Memfd,
    /// Its file, in a directory others may write, was deleted after it was mapped.
    Deleted,
    /// Someone other than root may write the file.
    WritableFile,
    /// Someone other than root may write its directory (and so put a file there).
    WritableDir,
}

impl Why {
    fn as_str(self) -> &'static str {
        match self {
            Why::Memfd => "memfd",
            Why::Deleted => "deleted",
            Why::WritableFile => "writable-file",
            Why::WritableDir => "writable-dir",
        }
    }
}

/// The source's state: what was reported for each process (by pid and start time).
pub struct LibrarySource {
    root: PathBuf,
    host: String,
    boot_id: String,
    reported: HashMap<u32, (u64, HashSet<String>)>,
    /// The processes seen at the last scan, and when every process was last read.
    seen: HashSet<u32>,
    last_full: Option<std::time::Instant>,
    dirs: HashMap<PathBuf, bool>,
    hashes: HashCache,
    /// What it did.
    pub stats: LibraryStats,
}

impl LibrarySource {
    /// The source for host `host`, reading `/proc` under `root`.
    pub fn new(root: &Path, host: &str) -> Self {
        Self {
            root: root.to_path_buf(),
            host: host.to_owned(),
            boot_id: procfs::boot_id(root),
            reported: HashMap::new(),
            seen: HashSet::new(),
            last_full: None,
            dirs: HashMap::new(),
            hashes: HashCache::default(),
            stats: LibraryStats::default(),
        }
    }

    /// Checks the processes new since the last scan, and every process once [`FULL_RESCAN`] has
    /// passed; an event for each library not reported for its process before.
    pub fn scan(&mut self) -> Vec<Value> {
        self.stats.scans += 1;
        self.dirs.clear(); // a directory's mode may have changed since
        let full = self.last_full.is_none_or(|t| t.elapsed() >= FULL_RESCAN);
        if full {
            self.last_full = Some(std::time::Instant::now());
        }
        let pids = procfs::pids(&self.root);
        let alive: HashSet<u32> = pids.iter().copied().collect();
        self.reported.retain(|pid, _| alive.contains(pid));
        let seen = std::mem::replace(&mut self.seen, alive);
        let mut out = Vec::new();
        for pid in pids.into_iter().filter(|p| full || !seen.contains(p)) {
            self.stats.processes_read += 1;
            out.extend(self.scan_process(pid));
        }
        self.stats.reported += out.len() as u64;
        out
    }

    /// Drops the caches (the agent is over its memory budget).
    pub fn trim(&mut self) {
        self.hashes.clear();
        self.dirs.clear();
    }

    fn scan_process(&mut self, pid: u32) -> Vec<Value> {
        let dir = self.root.join(pid.to_string());
        let Ok(maps) = std::fs::read_to_string(dir.join("maps")) else {
            self.stats.unreadable += 1;
            return Vec::new();
        };
        let exe = std::fs::read_link(dir.join("exe")).ok().map(|p| p.to_string_lossy().into_owned());
        let suspects: Vec<(String, Why)> = executable_paths(&maps)
            .into_iter()
            .filter(|p| Some(p.as_str()) != exe.as_deref())
            .filter_map(|p| self.judge(&p).map(|why| (p, why)))
            .collect();
        if suspects.is_empty() {
            return Vec::new();
        }
        let Some(proc) = procfs::read(&self.root, pid) else { return Vec::new() };
        let seen = self.reported.entry(pid).or_default();
        if seen.0 != proc.start_ticks {
            *seen = (proc.start_ticks, HashSet::new()); // the pid was reused
        }
        let fresh: Vec<(String, Why)> =
            suspects.into_iter().filter(|(p, _)| seen.1.insert(p.clone())).collect();
        fresh.into_iter().map(|(path, why)| self.event(&proc, &path, why)).collect()
    }

    /// Why the mapped `path` is suspect, if it is. A deleted file counts only where others could
    /// write its directory: a package upgrade deletes the system's libraries under every process.
    fn judge(&mut self, path: &str) -> Option<Why> {
        if path.starts_with("/memfd:") {
            return Some(Why::Memfd);
        }
        let (file, deleted) = match path.strip_suffix(" (deleted)") {
            Some(f) => (Path::new(f), true),
            None => (Path::new(path), false),
        };
        if !deleted && writable_by_others(file) {
            return Some(Why::WritableFile);
        }
        let parent = file.parent()?.to_path_buf();
        let dir_writable = *self.dirs.entry(parent.clone()).or_insert_with(|| writable_by_others(&parent));
        match (dir_writable, deleted) {
            (true, true) => Some(Why::Deleted),
            (true, false) => Some(Why::WritableDir),
            (false, _) => None,
        }
    }

    fn event(&mut self, p: &procfs::ProcInfo, path: &str, why: Why) -> Value {
        let name = path.rsplit('/').next().unwrap_or(path);
        let mut e = json!({
            "@timestamp": schemas::time::format_micros(schemas::time::now_micros()),
            "event": {"kind": "event", "category": "library", "type": ["start"],
                      "action": "library-loaded", "module": "cordon-agent", "dataset": "cordon.library"},
            "host": {"name": self.host, "os": {"type": "linux", "family": "linux"}},
            "process": {"pid": p.pid, "entity_id": procfs::entity_id(&self.boot_id, p.pid, p.start_ticks),
                        "name": p.exe.as_deref().and_then(|x| x.rsplit('/').next()).unwrap_or(&p.comm),
                        "command_line": p.args.join(" "), "parent": {"pid": p.ppid}},
            "dll": {"path": path, "name": name},
            "cordon": {"library": {"reason": why.as_str()}},
        });
        if let Some(x) = &p.exe {
            e["process"]["executable"] = json!(x);
        }
        if let Some(u) = p.uid {
            e["user"] = json!({"id": u.to_string()});
        }
        if matches!(why, Why::WritableFile | Why::WritableDir)
            && let Some(h) = self.hashes.hash(Path::new(path)).hex()
        {
            e["dll"]["hash"] = json!({"sha256": h});
        }
        e
    }
}

/// The files mapped executable in a `/proc/PID/maps` text (each once, in order): real paths,
/// `memfd`s and deleted files; the kernel's own (`[vdso]`...) and anonymous mappings are not files.
pub fn executable_paths(maps: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in maps.lines() {
        let mut cols = line.splitn(6, ' ');
        let (Some(_range), Some(perms)) = (cols.next(), cols.next()) else { continue };
        let path = cols.nth(3).map(str::trim_start).unwrap_or_default();
        if perms.as_bytes().get(2) == Some(&b'x') && path.starts_with('/') && !out.iter().any(|p| p == path) {
            out.push(path.to_owned());
        }
    }
    out
}

/// Whether someone other than root may write `path`: owned by another user, writable by everyone,
/// or writable by a group other than root's.
pub fn writable_by_others(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(m) => m.uid() != 0 || m.mode() & 0o002 != 0 || (m.mode() & 0o020 != 0 && m.gid() != 0),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executable_mappings_are_the_files_mapped_with_x() {
        let maps = "\
55d0c0a00000-55d0c0a20000 r--p 00000000 fe:01 1234                       /usr/bin/bash
55d0c0a20000-55d0c0af0000 r-xp 00020000 fe:01 1234                       /usr/bin/bash
7f1e00000000-7f1e00020000 r-xp 00000000 fe:01 99                         /tmp/evil dir/libx.so
7f1e00100000-7f1e00120000 rw-p 00000000 00:00 0
7f1e00200000-7f1e00201000 r-xp 00000000 00:01 5                          /memfd:payload (deleted)
7f1e00300000-7f1e00301000 r-xp 00000000 fe:01 77                         /usr/lib/libc.so.6
7f1e00301000-7f1e00302000 r-xp 00001000 fe:01 77                         /usr/lib/libc.so.6
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
";
        assert_eq!(
            executable_paths(maps),
            vec!["/usr/bin/bash", "/tmp/evil dir/libx.so", "/memfd:payload (deleted)", "/usr/lib/libc.so.6"]
        );
    }

    /// A process of this host mapping a library from a world-writable directory, and one mapping
    /// code from a memfd, are each reported once, with the process's identity; the system's own
    /// libraries are not.
    #[test]
    fn a_library_from_a_writable_directory_and_a_memfd_are_reported_once() {
        let dir = tempfile::Builder::new().prefix("cordon-lib").tempdir_in("/dev/shm").unwrap();
        let lib = dir.path().join("libinjected.so");
        std::fs::copy(find_libc(), &lib).unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
        // python maps the copy with dlopen (ctypes), and code from a memfd through mmap.
        let script = format!(
            "import ctypes, mmap, os, sys, time\n\
             ctypes.CDLL({lib:?})\n\
             fd = os.memfd_create('payload')\n\
             os.write(fd, b'\\xc3' * 4096)\n\
             m = mmap.mmap(fd, 4096, prot=mmap.PROT_READ | mmap.PROT_EXEC)\n\
             print('ready', flush=True)\n\
             time.sleep(30)\n",
            lib = lib.display().to_string()
        );
        let mut child = std::process::Command::new("python3")
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 is on this machine");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        let mut src = LibrarySource::new(Path::new("/proc"), "t");
        let events = src.scan();
        let first_read = src.stats.processes_read;
        let again = src.scan();
        assert!(first_read >= 10, "the first scan reads every process, not {first_read}");
        assert!(src.stats.processes_read - first_read < first_read, "the next reads only the new ones");
        let read_once = src.stats.processes_read;
        src.last_full = Some(std::time::Instant::now() - FULL_RESCAN);
        src.scan();
        let reread = src.stats.processes_read - read_once;
        assert!(reread >= 10, "every process again after the full interval, not {reread}");
        let pid = child.id();
        child.kill().unwrap();
        child.wait().unwrap();
        let mine: Vec<&Value> = events.iter().filter(|e| e["process"]["pid"] == pid).collect();
        let by_path =
            |p: &str| mine.iter().find(|e| e["dll"]["path"].as_str().is_some_and(|x| x.starts_with(p)));
        let injected = by_path(&lib.display().to_string()).expect("the library from /dev/shm");
        assert_eq!(injected["cordon"]["library"]["reason"], "writable-dir");
        assert_eq!(
            injected["dll"]["hash"]["sha256"].as_str(),
            super::super::hashes::sha256_of(&lib).as_deref()
        );
        assert_eq!(injected["event"]["category"], "library");
        assert!(injected["process"]["entity_id"].as_str().is_some_and(|s| !s.is_empty()));
        let memfd = by_path("/memfd:payload").expect("the memfd mapping");
        assert_eq!(memfd["cordon"]["library"]["reason"], "memfd");
        assert_eq!(mine.len(), 2, "only those two: {mine:?}");
        assert!(again.iter().all(|e| e["process"]["pid"] != pid), "reported once");
    }

    fn find_libc() -> PathBuf {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let libc = executable_paths(&maps).into_iter().find(|p| p.contains("libc.so")).unwrap();
        PathBuf::from(libc)
    }
}
