//! The Linux executor. Processes: found through `/proc` by the identity the command gives (pid and
//! kernel start time, executable and its SHA-256, or name; never a bare pid), or by the shared
//! objects they have mapped (`/proc/<pid>/maps`); signalled (SIGKILL, SIGSTOP, SIGCONT); checked
//! afterwards in `/proc/<pid>/stat` (gone or a zombie; stopped; running). Files: [`super::files`];
//! the network: [`super::net`]. An instruction not carried out yet says so.

use super::{ActionResult, Config, Outcome};
use rustix::process::{Pid, Signal, kill_process};
use schemas::response::{Action, Platform};
use serde_json::Value;
use std::time::{Duration, Instant};

/// A process found on this host.
#[derive(Clone, Debug)]
struct Proc {
    pid: i32,
    exe: String,
}

/// Carries out (or, for a dry run, plans) one action.
pub fn run(a: &Action, cfg: &Config, dry_run: bool) -> ActionResult {
    let name = a.instruction.name;
    let mut r = ActionResult {
        index: 0,
        action: name,
        outcome: Outcome::Unsupported,
        touched: Vec::new(),
        detail: String::new(),
        planned: Vec::new(),
    };
    if !a.instruction.platforms.contains(&Platform::Linux) {
        r.detail = "unsupported on linux".into();
        return r;
    }
    let handled = super::files::run(a, cfg, dry_run, &mut r)
        || super::edit::run(a, cfg, dry_run, &mut r)
        || super::net::run(a, cfg, dry_run, &mut r)
        || super::host::run(a, cfg, dry_run, &mut r)
        || super::tasks::run(a, cfg, dry_run, &mut r)
        || super::devices::run(a, cfg, dry_run, &mut r)
        || super::patches::run(a, cfg, dry_run, &mut r)
        || super::scripts::run(a, cfg, dry_run, &mut r);
    if handled {
        return r;
    }
    let (found, signal) = match name {
        "Proc_Terminate" => (by_identity(&a.args["process"]), Signal::KILL),
        "Proc_Modify" if a.args.get("op").and_then(Value::as_str) == Some("resume") => {
            (by_identity(&a.args["process"]), Signal::CONT)
        }
        "Proc_Modify" => (by_identity(&a.args["process"]), Signal::STOP),
        "Proc_Module_Threads" => (by_modules(&strings(&a.args["modules"])), Signal::STOP),
        _ => {
            r.detail = format!("{name} is not carried out by this agent yet");
            return r;
        }
    };
    signal_all(found, signal, dry_run, r)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|x| x.as_str().map(str::to_owned)).collect()
}

/// Every process on the host, with its executable (kernel threads have none and are skipped).
fn all() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            Some(Proc { pid, exe: exe.to_string_lossy().trim_end_matches(" (deleted)").to_owned() })
        })
        .collect()
}

/// The processes a command's identity names.
fn by_identity(who: &Value) -> Vec<Proc> {
    let procs = all();
    if let (Some(pid), Some(start)) = (who["pid"].as_i64(), who["start_time"].as_i64()) {
        return procs
            .into_iter()
            .filter(|p| i64::from(p.pid) == pid && start_time(p.pid) == Some(start))
            .collect();
    }
    if let (Some(exe), Some(sha)) = (who["executable"].as_str(), who["sha256"].as_str()) {
        return procs
            .into_iter()
            .filter(|p| p.exe == exe && image_sha256(p.pid).as_deref() == Some(sha))
            .collect();
    }
    let name = who["name"].as_str().unwrap_or_default();
    procs.into_iter().filter(|p| base(&p.exe) == name || comm(p.pid).as_deref() == Some(name)).collect()
}

/// The processes that have one of `modules` (file names) mapped.
fn by_modules(modules: &[String]) -> Vec<Proc> {
    all()
        .into_iter()
        .filter(|p| {
            let maps = std::fs::read_to_string(format!("/proc/{}/maps", p.pid)).unwrap_or_default();
            maps.lines()
                .filter_map(|l| l.split_whitespace().nth(5))
                .any(|path| modules.iter().any(|m| base(path) == m))
        })
        .collect()
}

fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn comm(pid: i32) -> Option<String> {
    Some(std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?.trim_end().to_owned())
}

/// `/proc/<pid>/stat`'s fields after the command name: state first.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The kernel's start time of the process (clock ticks after boot): with the pid, an identity no
/// reused pid shares.
pub fn start_time(pid: i32) -> Option<i64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

fn state(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// The SHA-256 of the image the process runs (read through `/proc`, so a deleted file still hashes).
fn image_sha256(pid: i32) -> Option<String> {
    super::files::sha256_file(std::path::Path::new(&format!("/proc/{pid}/exe"))).ok()
}

/// Why the agent leaves `p` alone, if it does: init, itself, and the protected programs.
fn denied(p: &Proc) -> Option<String> {
    if p.pid <= 1 {
        return Some("init".into());
    }
    if p.pid == std::process::id() as i32 {
        return Some("the agent itself".into());
    }
    let name = base(&p.exe).to_ascii_lowercase();
    crate::enforce::PROTECTED.contains(&name.as_str()).then(|| format!("{} is protected", p.exe))
}

fn signal_all(found: Vec<Proc>, signal: Signal, dry_run: bool, mut r: ActionResult) -> ActionResult {
    let (refused, targets): (Vec<Proc>, Vec<Proc>) = found.into_iter().partition(|p| denied(p).is_some());
    let left_alone: Vec<String> =
        refused.iter().map(|p| format!("pid {}: {}", p.pid, denied(p).unwrap_or_default())).collect();
    r.touched = targets.iter().map(|p| format!("pid {} ({})", p.pid, p.exe)).collect();
    if targets.is_empty() {
        r.outcome = if left_alone.is_empty() { Outcome::NothingFound } else { Outcome::Refused };
        r.detail = if left_alone.is_empty() { "no such process".into() } else { left_alone.join("; ") };
        return r;
    }
    if dry_run {
        r.outcome = Outcome::WouldDo;
        r.detail = left_alone.join("; ");
        return r;
    }
    for p in &targets {
        if let Some(pid) = Pid::from_raw(p.pid) {
            let _ = kill_process(pid, signal);
        }
    }
    let failed: Vec<String> =
        targets.iter().filter(|p| !took_effect(p.pid, signal)).map(|p| format!("pid {}", p.pid)).collect();
    r.outcome = if failed.is_empty() { Outcome::Done } else { Outcome::Failed };
    let verified = match signal {
        s if s == Signal::KILL => "gone",
        s if s == Signal::STOP => "stopped",
        _ => "running",
    };
    r.detail = if failed.is_empty() {
        format!("{} process(es) {verified}", targets.len())
    } else {
        format!("not {verified}: {}", failed.join(", "))
    };
    if !left_alone.is_empty() {
        r.detail.push_str(&format!("; left alone: {}", left_alone.join("; ")));
    }
    r
}

/// Whether the signal took effect within a second: killed (gone, or a zombie its parent has not
/// reaped), stopped, or running again.
fn took_effect(pid: i32, signal: Signal) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let s = state(pid);
        let ok = match signal {
            s_ if s_ == Signal::KILL => matches!(s, None | Some('Z' | 'X')),
            s_ if s_ == Signal::STOP => matches!(s, Some('T' | 't')),
            _ => !matches!(s, Some('T' | 't') | None),
        };
        if ok || Instant::now() > deadline {
            return ok;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What the tests that start copied programs share.
#[cfg(test)]
pub(crate) mod tests_support {
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    /// Spawns `cmd`, retrying while the executable is busy: a file just copied may still be open
    /// for writing in a child another test's thread forked before its exec (ETXTBSY).
    pub(crate) fn spawn_copied(cmd: &mut Command) -> Child {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match cmd.spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other.expect("the test's program starts"),
            }
        }
    }
}

#[cfg(test)]
#[path = "linux_tests.rs"]
mod tests;
