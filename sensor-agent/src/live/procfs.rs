//! What `/proc` says about a process: its parent, start time, executable, command line, working
//! directory and user. Every read may fail (the process ended, a kernel thread has no executable, an
//! entry is odd): each field is optional, and nothing here panics on what `/proc` holds.

use std::path::{Path, PathBuf};

/// A process as `/proc` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcInfo {
    /// Process id.
    pub pid: u32,
    /// Parent's process id.
    pub ppid: u32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22): with the pid and the boot,
    /// the process's identity across pid reuse.
    pub start_ticks: u64,
    /// `comm`: the kernel's short name.
    pub comm: String,
    /// The executable (`/proc/PID/exe`), ` (deleted)` kept when the file is gone.
    pub exe: Option<String>,
    /// The arguments (`/proc/PID/cmdline`).
    pub args: Vec<String>,
    /// The working directory.
    pub cwd: Option<String>,
    /// Effective user id (the owner of `/proc/PID`: one `stat`, where `status` would render the
    /// whole task state).
    pub uid: Option<u32>,
}

/// Reads a process under `root` (`/proc`, or a test's copy). The process's directory is opened
/// once and each file read relative to it: a path walk through `/proc` per file costs more than
/// reading the file.
pub fn read(root: &Path, pid: u32) -> Option<ProcInfo> {
    use rustix::fs::{Mode, OFlags};
    let dir = rustix::fs::open(
        root.join(pid.to_string()),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut buf = Vec::with_capacity(1024);
    read_at(&dir, "stat", &mut buf)?;
    let (comm, ppid, start_ticks) = parse_stat(&String::from_utf8_lossy(&buf))?;
    let link = |name: &str| {
        rustix::fs::readlinkat(&dir, name, Vec::with_capacity(256))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    };
    buf.clear();
    let args = match read_at(&dir, "cmdline", &mut buf) {
        Some(()) => buf
            .split(|c| *c == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
        None => Vec::new(),
    };
    let uid = rustix::fs::fstat(&dir).ok().map(|st| st.st_uid);
    Some(ProcInfo { pid, ppid, start_ticks, comm, exe: link("exe"), args, cwd: link("cwd"), uid })
}

/// Reads the file `name` of an open `/proc/PID` directory into `buf`. The kernel fills a read of
/// these files as far as their text goes (`stat` is rendered whole, `cmdline` copied page by page
/// until the count is met), so a read shorter than asked is the end and no second read is spent
/// to hear it.
fn read_at(dir: &std::os::fd::OwnedFd, name: &str, buf: &mut Vec<u8>) -> Option<()> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let mut chunk = [0u8; 4096];
    loop {
        match rustix::io::read(&fd, &mut chunk[..]) {
            Ok(0) => return Some(()),
            Ok(n) if n < chunk.len() => {
                buf.extend_from_slice(&chunk[..n]);
                return Some(());
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return None,
        }
    }
}

/// (comm, ppid, start time in ticks) from `/proc/PID/stat`. `comm` may hold spaces and
/// parentheses: it ends at the last `)`.
pub fn parse_stat(stat: &str) -> Option<(String, u32, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After `comm`: state (field 3), ppid (4), ... starttime (22).
    Some((comm, fields.get(1)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

/// The process ids under `root`.
pub fn pids(root: &Path) -> Vec<u32> {
    std::fs::read_dir(root)
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// When the system booted (microseconds since the epoch), from `/proc/stat`'s `btime`.
pub fn boot_micros(root: &Path) -> i64 {
    std::fs::read_to_string(root.join("stat"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<i64>().ok()))
        .map_or(0, |s| s * 1_000_000)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
pub fn boot_id(root: &Path) -> String {
    std::fs::read_to_string(root.join("sys/kernel/random/boot_id"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// A process's entity id: a digest of the boot, the pid and its start time, so a reused pid is
/// another entity (the process source, the network source and the graph agree on it).
pub fn entity_id(boot_id: &str, pid: u32, start_ticks: u64) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{boot_id}:{pid}:{start_ticks}"));
    super::hashes::hex(&d[..16])
}

/// The path `/proc/PID/exe`, which opens the executable even when its file was deleted or replaced.
pub fn exe_path(root: &Path, pid: u32) -> PathBuf {
    root.join(pid.to_string()).join("exe")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_are_read() {
        let stat = "4242 (a (b) c) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 100";
        assert_eq!(parse_stat(stat), Some(("a (b) c".to_owned(), 17, 98765)));
        assert_eq!(parse_stat("1 (init"), None);
        assert_eq!(parse_stat("1 (x) S"), None);
    }

    #[test]
    fn this_process_reads_as_itself() {
        let root = Path::new("/proc");
        let me = read(root, std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
        assert!(me.start_ticks > 0 && me.ppid > 0, "{me:?}");
        assert!(me.exe.as_deref().is_some_and(|e| e.contains("sensor_agent")), "{me:?}");
        assert!(!me.args.is_empty() && me.cwd.is_some() && me.uid.is_some(), "{me:?}");
        assert!(pids(root).contains(&std::process::id()));
        assert!(boot_micros(root) > 1_000_000_000_000_000 && !boot_id(root).is_empty());
        assert_eq!(read(root, u32::MAX), None);
    }

    /// A command line longer than one read (4 KiB) is read whole: a full read is never taken for
    /// the end.
    #[test]
    fn a_command_line_longer_than_one_read_is_read_whole() {
        let long = "x".repeat(10_000);
        let mut sh =
            std::process::Command::new("/bin/sh").args(["-c", "sleep 5; true", &long]).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let p = read(Path::new("/proc"), sh.id());
        sh.kill().unwrap();
        sh.wait().unwrap();
        let args = p.unwrap().args;
        assert_eq!(args.len(), 4, "{args:?}");
        assert_eq!(args[3], long);
    }
}
