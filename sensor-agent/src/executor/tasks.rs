//! Scheduled tasks on Linux: cron entries and systemd timers.
//!
//! - `Task_Create` writes a cron entry, `/etc/cron.d/<name>` (root-owned, mode 0644: what cron
//!   reads), with the schedule, the user (root unless named) and the command; it never replaces a
//!   task that exists.
//! - `Task_Modify` rewrites the schedule or the command of the cron entry `<name>` atomically;
//!   a systemd timer is changed by deleting it and creating a cron entry.
//! - `Task_Delete` finds the task wherever persistence puts it: `cron.d/<name>`, the periodic
//!   directories (`cron.hourly` ... `cron.monthly`), and systemd timers `<name>.timer` with the
//!   service they start, under `/etc/systemd/system` and `/run/systemd/system`. Each file is
//!   quarantined (restorable), enablement links are removed, and with systemd running the timer is
//!   stopped and the manager reloaded. Units shipped by packages (`/usr/lib`, `/lib`) are left
//!   alone and named: mask them instead.

use super::{ActionResult, Config, Outcome};
use schemas::response::Action;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where cron and systemd keep scheduled tasks (the host's, or a test's own tree).
#[derive(Clone, Debug)]
pub struct TaskDirs {
    /// `/etc/cron.d`.
    pub cron_d: PathBuf,
    /// `/etc`, holding `cron.hourly` ... `cron.monthly`.
    pub etc: PathBuf,
    /// Unit directories the agent deletes from: `/etc/systemd/system`, `/run/systemd/system`.
    pub units: Vec<PathBuf>,
    /// Unit directories of packages, left alone: `/usr/lib/systemd/system`, `/lib/systemd/system`.
    pub package_units: Vec<PathBuf>,
    /// `systemctl`, when systemd runs this host.
    pub systemctl: Option<PathBuf>,
}

impl TaskDirs {
    /// The host's.
    pub fn host() -> Self {
        Self {
            cron_d: "/etc/cron.d".into(),
            etc: "/etc".into(),
            units: vec!["/etc/systemd/system".into(), "/run/systemd/system".into()],
            package_units: vec!["/usr/lib/systemd/system".into(), "/lib/systemd/system".into()],
            systemctl: Path::new("/run/systemd/system").is_dir().then(|| "systemctl".into()),
        }
    }
}

/// Carries out a task instruction into `r`; false when `a` is not one this module handles.
pub(super) fn run(a: &Action, cfg: &Config, dry_run: bool, r: &mut ActionResult) -> bool {
    let s = |k: &str| a.args.get(k).and_then(Value::as_str).map(str::to_owned);
    let name = s("name").unwrap_or_default();
    let done = match a.instruction.name {
        "Task_Create" => create(
            &name,
            &s("schedule").unwrap_or_default(),
            &s("command").unwrap_or_default(),
            s("user"),
            cfg,
            dry_run,
            r,
        ),
        "Task_Modify" => modify(&name, s("schedule"), s("command"), cfg, dry_run, r),
        "Task_Delete" => delete(&name, cfg, dry_run, r),
        _ => return false,
    };
    if let Err(e) = done {
        r.outcome = Outcome::Failed;
        r.detail = e;
    }
    true
}

/// cron skips files in `cron.d` whose names hold anything but letters, digits, `-` and `_`.
fn cron_name_ok(name: &str) -> bool {
    name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn one_line(s: &str) -> bool {
    !s.contains(['\n', '\r'])
}

/// Writes `text` to `path` through a temporary file beside it, mode 0644, synced.
fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let tmp =
        path.with_file_name(format!(".{}.cordon", path.file_name().unwrap_or_default().to_string_lossy()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: {e}", path.display())
    })
}

fn create(
    name: &str,
    schedule: &str,
    command: &str,
    user: Option<String>,
    cfg: &Config,
    dry_run: bool,
    r: &mut ActionResult,
) -> Result<(), String> {
    let path = cfg.tasks.cron_d.join(name);
    r.touched = vec![path.display().to_string()];
    let user = user.unwrap_or_else(|| "root".into());
    let refused = if !cron_name_ok(name) {
        Some(format!("{name:?}: cron reads only names of letters, digits, '-' and '_'"))
    } else if !one_line(command) {
        Some("the command must be one line".into())
    } else if path.exists() {
        Some(format!("{} exists; modify or delete it", path.display()))
    } else {
        None
    };
    if let Some(why) = refused {
        r.outcome = Outcome::Refused;
        r.detail = why;
        return Ok(());
    }
    let line = format!("{schedule} {user} {command}");
    if dry_run {
        r.outcome = Outcome::WouldDo;
        r.detail = format!("would write {line:?}");
        return Ok(());
    }
    let text = format!(
        "# Created by Cordon (a response command)\nSHELL=/bin/sh\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\n{line}\n"
    );
    write_atomic(&path, &text)?;
    let ok = std::fs::read_to_string(&path).is_ok_and(|t| t.lines().any(|l| l == line));
    r.outcome = if ok { Outcome::Done } else { Outcome::Failed };
    r.detail = format!("cron entry {line:?}");
    Ok(())
}

/// The job lines of a cron.d file (not comments, blanks or variable settings).
fn job_lines(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim();
            !t.is_empty()
                && !t.starts_with('#')
                && !t.split_whitespace().next().is_some_and(|w| w.contains('='))
        })
        .map(|(i, _)| i)
        .collect()
}

fn modify(
    name: &str,
    schedule: Option<String>,
    command: Option<String>,
    cfg: &Config,
    dry_run: bool,
    r: &mut ActionResult,
) -> Result<(), String> {
    let path = cfg.tasks.cron_d.join(name);
    r.touched = vec![path.display().to_string()];
    let Ok(text) = std::fs::read_to_string(&path) else {
        let timer = cfg.tasks.units.iter().map(|d| d.join(format!("{name}.timer"))).find(|p| p.exists());
        (r.outcome, r.detail) = match timer {
            Some(t) => (
                Outcome::Unsupported,
                format!("{} is a systemd timer: delete it and create a cron entry", t.display()),
            ),
            None => (Outcome::NothingFound, format!("no cron entry {name}")),
        };
        return Ok(());
    };
    let jobs = job_lines(&text);
    let [at] = jobs[..] else {
        r.outcome = Outcome::Refused;
        r.detail = format!("{} holds {} jobs; only a one-job entry is modified", path.display(), jobs.len());
        return Ok(());
    };
    let old: Vec<&str> = text.lines().nth(at).unwrap_or_default().split_whitespace().collect();
    if old.len() < 7 || command.as_deref().is_some_and(|c| !one_line(c)) {
        r.outcome = Outcome::Refused;
        r.detail =
            "the job line is not `m h dom mon dow user command`, or the new command is not one line".into();
        return Ok(());
    }
    let sched = schedule.unwrap_or_else(|| old[..5].join(" "));
    let cmd = command.unwrap_or_else(|| old[6..].join(" "));
    let line = format!("{sched} {} {cmd}", old[5]);
    if dry_run {
        r.outcome = Outcome::WouldDo;
        r.detail = format!("would become {line:?}");
        return Ok(());
    }
    let new: Vec<String> =
        text.lines().enumerate().map(|(i, l)| if i == at { line.clone() } else { l.to_owned() }).collect();
    write_atomic(&path, &(new.join("\n") + "\n"))?;
    let ok = std::fs::read_to_string(&path).is_ok_and(|t| t.lines().any(|l| l == line));
    r.outcome = if ok { Outcome::Done } else { Outcome::Failed };
    r.detail = format!("now {line:?}");
    Ok(())
}

/// The files that make up task `name`, and package units found under that name (left alone).
fn task_files(name: &str, cfg: &Config) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let t = &cfg.tasks;
    let mut found: Vec<PathBuf> = std::iter::once(t.cron_d.join(name))
        .chain(
            ["hourly", "daily", "weekly", "monthly"]
                .iter()
                .map(|p| t.etc.join(format!("cron.{p}")).join(name)),
        )
        .filter(|p| p.is_file())
        .collect();
    for dir in &t.units {
        let timer = dir.join(format!("{name}.timer"));
        if timer.is_file() {
            let text = std::fs::read_to_string(&timer).unwrap_or_default();
            let unit = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("Unit=").map(|u| u.trim().to_owned()))
                .unwrap_or_else(|| format!("{name}.service"));
            found.push(timer);
            found.extend(Some(dir.join(unit)).filter(|p| p.is_file()));
        }
    }
    let packaged =
        t.package_units.iter().map(|d| d.join(format!("{name}.timer"))).filter(|p| p.is_file()).collect();
    (found, packaged)
}

/// The enablement links (`*.wants/<name>.timer`) under the unit directories.
fn wants_links(name: &str, cfg: &Config) -> Vec<PathBuf> {
    let file = format!("{name}.timer");
    cfg.tasks
        .units
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wants"))
        .map(|e| e.path().join(&file))
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect()
}

fn systemctl(cfg: &Config, args: &[&str]) -> Option<bool> {
    let bin = cfg.tasks.systemctl.as_ref()?;
    Some(Command::new(bin).args(args).output().is_ok_and(|o| o.status.success()))
}

fn delete(name: &str, cfg: &Config, dry_run: bool, r: &mut ActionResult) -> Result<(), String> {
    let (files, packaged) = task_files(name, cfg);
    let links = wants_links(name, cfg);
    r.touched = files.iter().chain(&links).map(|p| p.display().to_string()).collect();
    let left: Vec<String> =
        packaged.iter().map(|p| format!("{} is a package's unit: mask it instead", p.display())).collect();
    if name.starts_with("cordon") {
        r.outcome = Outcome::Refused;
        r.detail = "the agent's own tasks are not deleted by a command".into();
        return Ok(());
    }
    if files.is_empty() {
        r.outcome = if left.is_empty() { Outcome::NothingFound } else { Outcome::Refused };
        r.detail = if left.is_empty() { format!("no task {name}") } else { left.join("; ") };
        return Ok(());
    }
    if dry_run {
        r.outcome = Outcome::WouldDo;
        r.detail = left.join("; ");
        return Ok(());
    }
    let timer = format!("{name}.timer");
    let stopped =
        if files.iter().any(|f| f.ends_with(&timer)) { systemctl(cfg, &["stop", &timer]) } else { None };
    std::fs::create_dir_all(&cfg.quarantine).map_err(|e| format!("{}: {e}", cfg.quarantine.display()))?;
    let ids = files.iter().map(|f| super::files::quarantine(f, cfg)).collect::<Result<Vec<_>, _>>()?;
    for l in &links {
        std::fs::remove_file(l).map_err(|e| format!("{}: {e}", l.display()))?;
    }
    let reloaded = systemctl(cfg, &["daemon-reload"]);
    let remaining: Vec<String> = files
        .iter()
        .chain(&links)
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .map(|p| p.display().to_string())
        .collect();
    let still_active = stopped.is_some() && systemctl(cfg, &["is-active", "--quiet", &timer]) == Some(true);
    r.outcome = if remaining.is_empty() && !still_active { Outcome::Done } else { Outcome::Failed };
    let manager = match (stopped, reloaded) {
        (None, None) => "systemd is not running here".to_owned(),
        (s, _) if still_active => format!("the timer is still active (stop: {s:?})"),
        _ => "timer stopped, systemd reloaded".to_owned(),
    };
    r.detail = if remaining.is_empty() {
        format!(
            "{} file(s) quarantined as {}; {} link(s) removed; {manager}",
            files.len(),
            ids.join(", "),
            links.len()
        )
    } else {
        format!("still there: {}", remaining.join(", "))
    };
    if !left.is_empty() {
        r.detail.push_str(&format!("; {}", left.join("; ")));
    }
    Ok(())
}

#[cfg(test)]
#[path = "tasks_tests.rs"]
mod tests;
