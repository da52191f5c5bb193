//! Process starts and exits on the live host, as ECS events with full identity: pid, parent, start
//! time, an entity id stable across pid reuse (a digest of the boot, the pid and its start time),
//! executable with its SHA-256 (cached by file identity, within a byte budget per second), command
//! line, working directory, user, and the parent's identity.
//!
//! The kernel's process connector ([`super::proc_connector`]) reports each exec as it happens and
//! `/proc` is read at once for the rest; a process that ended before `/proc` could be read (a
//! millisecond-long one) is still reported with what the fork and exec said (pid, parent) and
//! counted as `enrich_missed`. Where the connector is refused, `/proc` is scanned instead
//! ([`ProcessSource::scan`]), which misses processes shorter than its interval, and says so.

use super::hashes::{HashCache, Hashed};
use super::process_event::{Action, Host, Meta, Parent, Process, ProcessEvent, Sha256, User};
use super::procfs::{self, ProcInfo};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Processes remembered (parents of later processes); the oldest entries go first beyond it.
const MAX_KNOWN: usize = 65_536;

/// What the source did, for the run's summary and heartbeats.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ProcessStats {
    /// `netlink` (the kernel's process connector) or `procfs` (scanning `/proc`).
    pub facility: String,
    /// Why the connector is not in use, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// Whether the kernel drops the events the source does not read (uid, name and other changes;
    /// Linux 6.6+).
    pub kernel_filter: bool,
    /// Process starts reported.
    pub starts: u64,
    /// Process exits reported.
    pub exits: u64,
    /// Starts whose process had ended before `/proc` could be read (reported with pid and parent).
    pub enrich_missed: u64,
    /// Events the kernel dropped before they were read (socket overruns).
    pub kernel_overruns: u64,
    /// Events dropped because the queue to the shipper was full.
    pub queue_dropped: u64,
    /// Executables hashed, hashes taken from the cache, and hashes skipped (too large, over budget).
    pub hashed: u64,
    /// See `hashed`.
    pub hash_cached: u64,
    /// See `hashed`.
    pub hash_skipped: u64,
}

/// One process the source knows.
#[derive(Clone, Debug)]
struct Known {
    entity_id: String,
    exe: Option<String>,
    name: String,
    command_line: String,
    started: bool,
}

/// The process source's state.
#[derive(Debug)]
pub struct ProcessSource {
    root: PathBuf,
    host: Arc<str>,
    boot_id: String,
    boot_micros: i64,
    ticks: u64,
    known: HashMap<u32, Known>,
    /// Parent of each pid seen forking, or exiting before its exec was read (for processes gone
    /// before `/proc` was read).
    forked_from: HashMap<u32, u32>,
    hashes: HashCache,
    trims: u64,
    users: HashMap<u32, String>,
    /// Starts of processes gone before `/proc` was read whose fork has not been seen yet (the
    /// kernel reports each CPU's events in order, not all CPUs'), held up to [`REORDER`].
    waiting: Vec<(u32, Instant, ProcessEvent)>,
    /// What it did.
    pub stats: ProcessStats,
}

/// How long a start waits for its fork event before it ships without its parent.
pub const REORDER: std::time::Duration = std::time::Duration::from_millis(200);

impl ProcessSource {
    /// The source for the host `host`, reading `/proc` under `root`; the processes running now are
    /// remembered (as parents) without being reported.
    pub fn new(root: &Path, host: &str) -> ProcessSource {
        let mut s = ProcessSource {
            root: root.to_path_buf(),
            host: host.into(),
            boot_id: procfs::boot_id(root),
            boot_micros: procfs::boot_micros(root),
            ticks: rustix::param::clock_ticks_per_second().max(1),
            known: HashMap::new(),
            forked_from: HashMap::new(),
            hashes: HashCache::default(),
            trims: 0,
            users: read_users(Path::new("/etc/passwd")),
            waiting: Vec::new(),
            stats: ProcessStats::default(),
        };
        for pid in procfs::pids(root) {
            if let Some(p) = procfs::read(root, pid) {
                let k = s.known_of(&p);
                s.known.insert(pid, Known { started: true, ..k });
            }
        }
        s
    }

    /// A process forked: remember its parent; the start of the child, when it was waiting for it.
    pub fn on_fork(&mut self, parent: u32, child: u32) -> Option<ProcessEvent> {
        self.remember_parent(child, parent);
        let at = self.waiting.iter().position(|(pid, _, _)| *pid == child)?;
        let (_, _, mut e) = self.waiting.swap_remove(at);
        self.add_parent(&mut e, parent);
        Some(e)
    }

    /// A process exec'd: its start event, or `None` while it waits for its fork ([`REORDER`]).
    pub fn on_exec(&mut self, pid: u32) -> Option<ProcessEvent> {
        self.stats.starts += 1;
        if let Some(mut p) = procfs::read(&self.root, pid) {
            // A process reaped while its `stat` is read shows parent 0 (the kernel no longer links
            // it): its fork said who it was.
            if p.ppid == 0 {
                p.ppid = self.forked_from.get(&pid).copied().unwrap_or(0);
            }
            let e = self.start_event(&p);
            if p.ppid == 0 {
                // Its exit (on its way) names the parent.
                self.waiting.push((pid, Instant::now(), e));
                return None;
            }
            return Some(e);
        }
        // Gone already: what the kernel told us is still worth shipping.
        self.stats.enrich_missed += 1;
        let process = Process { pid, entity_id: self.entity_id(pid, 0), ..Process::default() };
        let mut e = self.event(Action::Start, process);
        e.event.reason = Some("ended before /proc could be read");
        match self.forked_from.get(&pid).copied() {
            Some(ppid) => {
                self.add_parent(&mut e, ppid);
                Some(e)
            }
            None => {
                self.waiting.push((pid, Instant::now(), e));
                None
            }
        }
    }

    /// Starts that waited [`REORDER`] for their fork in vain, shipped without their parent.
    pub fn expired(&mut self) -> Vec<ProcessEvent> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        let (old, young): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.waiting).into_iter().partition(|(_, t, _)| t.elapsed() >= REORDER);
        self.waiting = young;
        old.into_iter().map(|(_, _, e)| e).collect()
    }

    /// A process exited: its start, when it was waiting for its parent (the exit names it), and its
    /// end, when its start was reported.
    pub fn on_exit_with_parent(
        &mut self,
        pid: u32,
        code: u32,
        signal: u32,
        parent: u32,
    ) -> Vec<ProcessEvent> {
        let mut out = Vec::new();
        if let Some(at) = self.waiting.iter().position(|(p, _, _)| *p == pid) {
            let (_, _, mut e) = self.waiting.swap_remove(at);
            self.add_parent(&mut e, parent);
            out.push(e);
        }
        out.extend(self.on_exit(pid, code, signal));
        if out.is_empty() && parent != 0 {
            // Its exec may still be on its way (each CPU's events come in their own order): the
            // exit said who its parent was, as a fork would have.
            self.remember_parent(pid, parent);
        }
        out
    }

    fn remember_parent(&mut self, pid: u32, parent: u32) {
        if self.forked_from.len() >= MAX_KNOWN {
            self.forked_from.clear();
        }
        self.forked_from.insert(pid, parent);
    }

    /// A process exited: its end event, when its start was reported.
    pub fn on_exit(&mut self, pid: u32, code: u32, signal: u32) -> Option<ProcessEvent> {
        self.forked_from.remove(&pid);
        let k = self.known.remove(&pid)?;
        if !k.started {
            return None;
        }
        self.stats.exits += 1;
        // `wait` status: the exit code in the second byte, or the signal that ended it.
        let exit_code =
            if code & 0x7f == 0 { i64::from((code >> 8) & 0xff) } else { 128 + i64::from(code & 0x7f) };
        let process = Process {
            pid,
            entity_id: k.entity_id,
            name: Some(k.name),
            command_line: Some(k.command_line),
            executable: k.exe,
            exit_code: Some(exit_code),
            exit_signal: (signal != 0 && signal != 17).then_some(signal),
            ..Process::default()
        };
        Some(self.event(Action::End, process))
    }

    /// One scan of `/proc` (the fallback): starts of processes not seen before, ends of those gone.
    pub fn scan(&mut self) -> Vec<ProcessEvent> {
        let now: std::collections::HashSet<u32> = procfs::pids(&self.root).into_iter().collect();
        let mut out = Vec::new();
        let gone: Vec<u32> = self.known.keys().filter(|p| !now.contains(p)).copied().collect();
        for pid in gone {
            out.extend(self.on_exit(pid, 0, 0));
        }
        for pid in now {
            if self.known.contains_key(&pid) {
                continue;
            }
            if let Some(p) = procfs::read(&self.root, pid) {
                self.stats.starts += 1;
                out.push(self.start_event(&p));
            }
        }
        out
    }

    fn entity_id(&self, pid: u32, start_ticks: u64) -> String {
        procfs::entity_id(&self.boot_id, pid, start_ticks)
    }

    fn known_of(&self, p: &ProcInfo) -> Known {
        Known {
            entity_id: self.entity_id(p.pid, p.start_ticks),
            exe: p.exe.clone(),
            name: p
                .exe
                .as_deref()
                .and_then(|x| x.rsplit('/').next())
                .unwrap_or(&p.comm)
                .trim_end_matches(" (deleted)")
                .to_owned(),
            command_line: p.args.join(" "),
            started: false,
        }
    }

    /// An event of this host, now.
    fn event(&self, action: Action, process: Process) -> ProcessEvent {
        ProcessEvent {
            at: schemas::time::now_micros(),
            event: Meta { action, reason: None },
            host: Host { name: Arc::clone(&self.host) },
            process,
            user: None,
        }
    }

    fn start_event(&mut self, p: &ProcInfo) -> ProcessEvent {
        let k = self.known_of(p);
        let start = self.boot_micros + (p.start_ticks as i64).saturating_mul(1_000_000) / self.ticks as i64;
        let hash = if p.exe.is_some() { self.hash(p.pid).map(|sha256| Sha256 { sha256 }) } else { None };
        let user = p.uid.map(|uid| User { id: uid.to_string(), name: self.users.get(&uid).cloned() });
        let process = Process {
            pid: p.pid,
            entity_id: k.entity_id.clone(),
            name: Some(k.name.clone()),
            args: Some(p.args.clone()),
            command_line: Some(k.command_line.clone()),
            start: Some(schemas::time::format_micros(start)),
            executable: p.exe.clone(),
            hash,
            working_directory: p.cwd.clone(),
            user: user.clone(),
            ..Process::default()
        };
        let mut e = self.event(Action::Start, process);
        e.user = user;
        self.add_parent(&mut e, p.ppid);
        if self.known.len() >= MAX_KNOWN {
            self.known.retain(|_, k| k.started);
        }
        self.known.insert(p.pid, Known { started: true, ..k });
        e
    }

    fn add_parent(&mut self, e: &mut ProcessEvent, ppid: u32) {
        if ppid == 0 {
            return;
        }
        let parent = match self.known.get(&ppid) {
            Some(k) => Some(k.clone()),
            None => procfs::read(&self.root, ppid).map(|p| self.known_of(&p)),
        };
        e.process.parent = Some(match parent {
            Some(k) => Parent {
                pid: ppid,
                entity_id: Some(k.entity_id),
                name: Some(k.name),
                command_line: Some(k.command_line),
                executable: k.exe,
            },
            None => Parent { pid: ppid, ..Parent::default() },
        });
    }

    /// Applies the agent's budget: hashes from the cache only while degraded; caches dropped when
    /// the memory budget was exceeded since the last call.
    pub fn budget(&mut self, degraded: bool, trims: u64) {
        self.hashes.cached_only = degraded;
        if trims != self.trims {
            self.trims = trims;
            self.hashes.clear();
            self.known.retain(|_, k| k.started);
            self.known.shrink_to_fit();
        }
    }

    /// The executable's SHA-256 through `/proc/PID/exe` (see [`super::hashes`]).
    fn hash(&mut self, pid: u32) -> Option<String> {
        match self.hashes.hash(&procfs::exe_path(&self.root, pid)) {
            Hashed::Read(h) => {
                self.stats.hashed += 1;
                Some(h)
            }
            Hashed::Cached(h) => {
                self.stats.hash_cached += 1;
                Some(h)
            }
            Hashed::Skipped => {
                self.stats.hash_skipped += 1;
                None
            }
        }
    }
}

/// User names by uid, from a passwd file.
fn read_users(path: &Path) -> HashMap<u32, String> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    Some((f.get(2)?.parse().ok()?, (*f.first()?).to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(e: ProcessEvent) -> serde_json::Value {
        serde_json::to_value(e).unwrap()
    }

    #[test]
    fn a_child_of_this_process_is_reported_with_its_identity_and_parent() {
        let mut src = ProcessSource::new(Path::new("/proc"), "test-host");
        let mut child = std::process::Command::new("/bin/sleep").arg("5").spawn().unwrap();
        // `spawn` returns once exec has replaced the image, before the kernel has filled in the new
        // arguments (the connector's exec event comes after): wait for them as the event would.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let e = json(src.on_exec(child.id()).unwrap());
        let p = &e["process"];
        assert!(p["executable"].as_str().is_some_and(|x| x.ends_with("/sleep")), "{e}");
        assert_eq!((p["name"].as_str(), p["command_line"].as_str()), (Some("sleep"), Some("/bin/sleep 5")));
        assert_eq!(p["parent"]["pid"], std::process::id());
        assert!(p["parent"]["executable"].as_str().is_some_and(|x| x.contains("sensor_agent")), "{e}");
        assert_eq!(p["hash"]["sha256"].as_str().map(str::len), Some(64));
        assert_eq!((e["user"]["id"].as_str(), e["user"]["name"].as_str()), (Some("0"), Some("root")));
        assert_eq!(e["host"]["os"]["type"], "linux");
        let id = p["entity_id"].as_str().unwrap().to_owned();
        // The same executable again comes from the cache; the exit ends the same entity.
        let mut again = std::process::Command::new("/bin/sleep").arg("5").spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let e2 = json(src.on_exec(again.id()).unwrap());
        assert_eq!(e2["process"]["hash"], p["hash"]);
        assert_eq!(src.stats.hash_cached, 1);
        child.kill().unwrap();
        child.wait().unwrap();
        let end = json(src.on_exit(child.id(), 9, 0).unwrap());
        assert_eq!(
            (end["process"]["entity_id"].as_str(), end["process"]["exit_code"].as_i64()),
            (Some(id.as_str()), Some(137))
        );
        again.kill().unwrap();
        again.wait().unwrap();
        // A process that is gone before it is read keeps its pid and parent, whether its fork was
        // reported before its exec or after it.
        assert!(src.on_fork(std::process::id(), 4_000_000).is_none());
        let gone = json(src.on_exec(4_000_000).unwrap());
        let me = Some(u64::from(std::process::id()));
        assert_eq!(
            (gone["process"]["pid"].as_u64(), gone["process"]["parent"]["pid"].as_u64()),
            (Some(4_000_000), me)
        );
        assert!(src.on_exec(4_000_001).is_none(), "waits for its fork");
        let late = json(src.on_fork(std::process::id(), 4_000_001).unwrap());
        assert_eq!(late["process"]["parent"]["pid"].as_u64(), me);
        assert!(src.on_exec(4_000_003).is_none());
        let by_exit: Vec<serde_json::Value> =
            src.on_exit_with_parent(4_000_003, 0, 17, std::process::id()).into_iter().map(json).collect();
        assert_eq!((by_exit.len(), by_exit[0]["process"]["parent"]["pid"].as_u64()), (1, me));
        assert!(src.on_exec(4_000_002).is_none());
        std::thread::sleep(REORDER);
        let alone: Vec<serde_json::Value> = src.expired().into_iter().map(json).collect();
        assert_eq!((alone.len(), alone[0]["process"]["pid"].as_u64()), (1, Some(4_000_002)));
        assert_eq!(src.stats.enrich_missed, 4);
    }
}
