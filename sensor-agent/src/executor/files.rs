//! File instructions on Linux: delete as quarantine (moved aside with its hash and metadata, so a
//! `File_Restore` puts it back), restore, rename, and deleting a text inside a file (an atomic
//! rewrite). Files are found where the condition says, under the executor's roots, without
//! following symbolic links and never under `/proc`, `/sys`, `/dev` or the quarantine itself; the
//! deny-list keeps the agent's own binary, the boot files, the accounts and sudo files, init and
//! the protected programs.

use super::{ActionResult, Config, Outcome};
use schemas::response::{Action, Condition, Scope};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What a quarantined file was: kept beside it as `<id>.json`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Quarantined {
    /// Where it was.
    pub path: String,
    /// Its SHA-256.
    pub sha256: String,
    /// Its mode bits, owner and size.
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// When it was quarantined (microseconds).
    pub at: i64,
}

const NEVER_UNDER: &[&str] = &["/proc", "/sys", "/dev", "/boot"];
const NEVER: &[&str] =
    &["/etc/passwd", "/etc/shadow", "/etc/group", "/etc/sudoers", "/sbin/init", "/usr/lib/systemd/systemd"];

/// Carries out a file instruction into `r`; false when `a` is not one this module handles.
pub(super) fn run(a: &Action, cfg: &Config, dry_run: bool, r: &mut ActionResult) -> bool {
    let s = |k: &str| a.args.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let done = match a.instruction.name {
        "File_Delete" => delete(a, cfg, dry_run, r),
        "File_Restore" => restore(&s("quarantine_id"), cfg, dry_run, r),
        "File_Rename" => rename(Path::new(&s("path")), &s("new_name"), dry_run, r),
        "File_DelText" => del_text(Path::new(&s("path")), &s("text"), dry_run, r),
        _ => return false,
    };
    if let Err(e) = done {
        r.outcome = Outcome::Failed;
        r.detail = e;
    }
    true
}

/// Why the agent leaves `path` alone, if it does (`quarantine`: the agent's own, when known).
pub(super) fn denied(path: &Path, quarantine: Option<&Path>) -> Option<String> {
    let p = path.to_string_lossy();
    let me = std::fs::read_link("/proc/self/exe").ok();
    if me.as_deref() == Some(path) || quarantine.is_some_and(|q| path.starts_with(q)) {
        return Some(format!("{p} is the agent's own"));
    }
    if NEVER.contains(&p.as_ref()) || NEVER_UNDER.iter().any(|d| path.starts_with(d)) {
        return Some(format!("{p} is a system file the agent never touches"));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    crate::enforce::PROTECTED.contains(&name.as_str()).then(|| format!("{p} is a protected program"))
}

/// The SHA-256 of a file's content, in hex.
pub(super) fn sha256_file(path: &Path) -> Result<String, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The files under the roots the scope reaches whose name (or path) is one of `wanted`.
fn find(wanted: &[String], scope: Scope, cfg: &Config) -> Vec<PathBuf> {
    let mut out = Vec::new();
    walk(scope, cfg, &mut |path| {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if wanted.iter().any(|w| *w == name || Path::new(w) == path) {
            out.push(path.to_path_buf());
        }
    });
    out.sort();
    out
}

/// Visits every regular file under the roots the scope reaches, without following symbolic links
/// and never under `/proc`, `/sys`, `/dev`, `/boot` or the quarantine.
pub(super) fn walk(scope: Scope, cfg: &Config, visit: &mut dyn FnMut(&Path)) {
    let depth = match scope {
        Scope::DiskRoot => 1,
        Scope::AllDiskDeep(d) => usize::from(d),
        _ => usize::MAX,
    };
    let roots: Vec<PathBuf> = match scope {
        Scope::SystemDisk => cfg.roots.iter().take(1).cloned().collect(),
        Scope::Udisk => cfg.removable.clone(),
        _ => cfg.roots.clone(),
    };
    let mut stack: Vec<(PathBuf, usize)> = roots.into_iter().map(|r| (r, 0)).collect();
    while let Some((dir, d)) = stack.pop() {
        if NEVER_UNDER.iter().any(|n| dir.starts_with(n)) || dir.starts_with(&cfg.quarantine) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() && d + 1 < depth {
                stack.push((e.path(), d + 1));
            } else if t.is_file() {
                visit(&e.path());
            }
        }
    }
}

fn delete(a: &Action, cfg: &Config, dry_run: bool, r: &mut ActionResult) -> Result<(), String> {
    let wanted: Vec<String> = a.args["filenames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let scope = match &a.condition {
        Some(Condition::Scope(s)) => *s,
        _ => Scope::AllDisk,
    };
    let want_hash = a.args.get("sha256").and_then(Value::as_str);
    let mut left_alone = Vec::new();
    let mut targets = Vec::new();
    for p in find(&wanted, scope, cfg) {
        if let Some(why) = denied(&p, Some(&cfg.quarantine)) {
            left_alone.push(why);
        } else if want_hash.is_none_or(|h| sha256_file(&p).ok().as_deref() == Some(h)) {
            targets.push(p);
        }
    }
    r.touched = targets.iter().map(|p| p.display().to_string()).collect();
    r.detail = left_alone.join("; ");
    r.outcome = match (targets.is_empty(), left_alone.is_empty(), dry_run) {
        (true, true, _) => Outcome::NothingFound,
        (true, false, _) => Outcome::Refused,
        (false, _, true) => Outcome::WouldDo,
        (false, _, false) => Outcome::Done,
    };
    if dry_run || targets.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(&cfg.quarantine).map_err(|e| format!("{}: {e}", cfg.quarantine.display()))?;
    let mut ids = Vec::new();
    for p in &targets {
        ids.push(quarantine(p, cfg)?);
    }
    r.detail = format!(
        "quarantined as {}{}",
        ids.join(", "),
        if left_alone.is_empty() {
            String::new()
        } else {
            format!("; left alone: {}", left_alone.join("; "))
        }
    );
    Ok(())
}

/// Moves `p` into the quarantine with its record, and checks it arrived whole and left.
pub(super) fn quarantine(p: &Path, cfg: &Config) -> Result<String, String> {
    quarantine_as(p, p, cfg)
}

/// As [`quarantine`], recorded as the file at `was` (a copy kept of a file about to change).
pub(super) fn quarantine_as(p: &Path, was: &Path, cfg: &Config) -> Result<String, String> {
    let meta = std::fs::symlink_metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let sha256 = sha256_file(p)?;
    let at = schemas::time::now_micros();
    let id = format!("{}-{at}", &sha256[..16]);
    let dest = cfg.quarantine.join(&id);
    if std::fs::rename(p, &dest).is_err() {
        std::fs::copy(p, &dest).map_err(|e| format!("copying {} aside: {e}", p.display()))?;
        std::fs::remove_file(p).map_err(|e| format!("removing {}: {e}", p.display()))?;
    }
    let rec = Quarantined {
        path: was.display().to_string(),
        sha256: sha256.clone(),
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        size: meta.len(),
        at,
    };
    let json = serde_json::to_vec_pretty(&rec).map_err(|e| e.to_string())?;
    std::fs::write(cfg.quarantine.join(format!("{id}.json")), json).map_err(|e| e.to_string())?;
    if p.exists() || sha256_file(&dest)? != sha256 {
        return Err(format!("{} did not move into the quarantine whole", p.display()));
    }
    Ok(id)
}

fn restore(id: &str, cfg: &Config, dry_run: bool, r: &mut ActionResult) -> Result<(), String> {
    let rec_path = cfg.quarantine.join(format!("{id}.json"));
    let text = std::fs::read_to_string(&rec_path).map_err(|_| format!("no quarantined file {id}"))?;
    let rec: Quarantined = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let to = PathBuf::from(&rec.path);
    r.touched = vec![rec.path.clone()];
    if to.exists() {
        r.outcome = Outcome::Refused;
        r.detail = format!("{} exists again; not overwritten", rec.path);
        return Ok(());
    }
    if dry_run {
        r.outcome = Outcome::WouldDo;
        return Ok(());
    }
    let from = cfg.quarantine.join(id);
    if std::fs::rename(&from, &to).is_err() {
        std::fs::copy(&from, &to).map_err(|e| format!("restoring {}: {e}", rec.path))?;
        std::fs::remove_file(&from).map_err(|e| e.to_string())?;
    }
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(rec.mode & 0o7777))
        .map_err(|e| e.to_string())?;
    let _ = std::os::unix::fs::chown(&to, Some(rec.uid), Some(rec.gid));
    let _ = std::fs::remove_file(&rec_path);
    let ok = sha256_file(&to)? == rec.sha256;
    r.outcome = if ok { Outcome::Done } else { Outcome::Failed };
    r.detail = if ok {
        format!("restored with SHA-256 {}", rec.sha256)
    } else {
        "restored, but its hash differs".into()
    };
    Ok(())
}

fn rename(path: &Path, new_name: &str, dry_run: bool, r: &mut ActionResult) -> Result<(), String> {
    let to = path.with_file_name(new_name);
    r.touched = vec![path.display().to_string()];
    let refused = denied(path, None).or_else(|| to.exists().then(|| format!("{} exists", to.display())));
    if let Some(why) = refused {
        r.outcome = Outcome::Refused;
        r.detail = why;
        return Ok(());
    }
    if !path.is_file() {
        r.outcome = Outcome::NothingFound;
        return Ok(());
    }
    if dry_run {
        r.outcome = Outcome::WouldDo;
        return Ok(());
    }
    std::fs::rename(path, &to).map_err(|e| format!("{}: {e}", path.display()))?;
    r.outcome = if to.is_file() && !path.exists() { Outcome::Done } else { Outcome::Failed };
    r.detail = format!("now {}", to.display());
    Ok(())
}

/// Deletes every occurrence of `text` by writing the rest to a temporary file beside it (same mode),
/// fsyncing it and renaming it over the original.
fn del_text(path: &Path, text: &str, dry_run: bool, r: &mut ActionResult) -> Result<(), String> {
    r.touched = vec![path.display().to_string()];
    if let Some(why) = denied(path, None) {
        r.outcome = Outcome::Refused;
        r.detail = why;
        return Ok(());
    }
    let Ok(bytes) = std::fs::read(path) else {
        r.outcome = Outcome::NothingFound;
        return Ok(());
    };
    let content = String::from_utf8_lossy(&bytes);
    let n = content.matches(text).count();
    if n == 0 {
        r.outcome = Outcome::NothingFound;
        r.detail = "the text is not in the file".into();
        return Ok(());
    }
    if dry_run {
        r.outcome = Outcome::WouldDo;
        r.detail = format!("{n} occurrence(s)");
        return Ok(());
    }
    let mode = std::fs::metadata(path).map_err(|e| e.to_string())?.permissions();
    let tmp = path.with_file_name(format!(
        ".{}.cordon-rewrite",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(content.replace(text, "").as_bytes())?;
        f.set_permissions(mode)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("rewriting {}: {e}", path.display()));
    }
    let left = std::fs::read_to_string(path).map(|c| c.matches(text).count()).unwrap_or(usize::MAX);
    r.outcome = if left == 0 { Outcome::Done } else { Outcome::Failed };
    r.detail = format!("{n} occurrence(s) removed");
    Ok(())
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
