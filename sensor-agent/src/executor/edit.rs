//! Writing files on Linux: create (never over an existing file), modify (the old content
//! quarantined first, the new written atomically), and attributes: an octal mode, `readonly`
//! (the write bits), and the inode flags `immutable` and `append_only` through `chattr`. `hidden`
//! and `system` are Windows attributes and answered as such. Each is checked afterwards.

use super::{ActionResult, Config, Outcome};
use schemas::response::Action;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Carries out a file-writing instruction into `r`; false when `a` is not one this module handles.
pub(super) fn run(a: &Action, cfg: &Config, dry_run: bool, r: &mut ActionResult) -> bool {
    if !matches!(a.instruction.name, "File_Create" | "File_Modify" | "File_Attribute") {
        return false;
    }
    let s = |k: &str| a.args.get(k).and_then(Value::as_str).map(str::to_owned);
    let path = s("path").unwrap_or_default();
    let attrs: Vec<String> = a
        .args
        .get("attributes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    r.touched = vec![path.clone()];
    let path = Path::new(&path);
    if let Some(why) = super::files::denied(path, Some(&cfg.quarantine)) {
        r.outcome = Outcome::Refused;
        r.detail = why;
        return true;
    }
    let done = match a.instruction.name {
        "File_Create" => create(path, &s("content").unwrap_or_default(), &attrs, dry_run, r),
        "File_Modify" => modify(path, &s("content").unwrap_or_default(), cfg, dry_run, r),
        _ => attributes(path, &attrs, dry_run, r),
    };
    if let Err(e) = done {
        r.outcome = Outcome::Failed;
        r.detail = e;
    }
    true
}

/// Writes `content` beside `path` and renames it over, keeping `mode`, synced.
fn write_atomic(path: &Path, content: &str, mode: u32) -> Result<(), String> {
    use std::io::Write;
    let tmp = path
        .with_file_name(format!(".{}.cordon-write", path.file_name().unwrap_or_default().to_string_lossy()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("writing {}: {e}", path.display())
    })
}

fn create(
    path: &Path,
    content: &str,
    attrs: &[String],
    dry_run: bool,
    r: &mut ActionResult,
) -> Result<(), String> {
    if std::fs::symlink_metadata(path).is_ok() {
        r.outcome = Outcome::Refused;
        r.detail = format!("{} exists; File_Modify replaces content", path.display());
        return Ok(());
    }
    if dry_run {
        r.outcome = Outcome::WouldDo;
        r.detail = format!("would create it with {} bytes", content.len());
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    write_atomic(path, content, 0o644)?;
    let same = std::fs::read_to_string(path).is_ok_and(|c| c == content);
    r.outcome = if same { Outcome::Done } else { Outcome::Failed };
    r.detail = format!("created with {} bytes", content.len());
    if same && !attrs.is_empty() {
        let mut sub = r.clone();
        attributes(path, attrs, false, &mut sub)?;
        r.outcome = sub.outcome;
        r.detail = format!("{}; {}", r.detail, sub.detail);
    }
    Ok(())
}

fn modify(
    path: &Path,
    content: &str,
    cfg: &Config,
    dry_run: bool,
    r: &mut ActionResult,
) -> Result<(), String> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        r.outcome = Outcome::NothingFound;
        return Ok(());
    };
    if !meta.is_file() {
        r.outcome = Outcome::Refused;
        r.detail = format!("{} is not a regular file", path.display());
        return Ok(());
    }
    if dry_run {
        r.outcome = Outcome::WouldDo;
        r.detail = format!("would replace {} bytes with {}; the old content kept", meta.len(), content.len());
        return Ok(());
    }
    // The old content is kept: copied aside through the quarantine's record.
    std::fs::create_dir_all(&cfg.quarantine).map_err(|e| format!("{}: {e}", cfg.quarantine.display()))?;
    let copy = cfg.quarantine.join(format!(".copy-{}", schemas::time::now_micros()));
    std::fs::copy(path, &copy).map_err(|e| format!("keeping {}: {e}", path.display()))?;
    let id = super::files::quarantine_as(&copy, path, cfg)?;
    write_atomic(path, content, meta.permissions().mode() & 0o7777)?;
    let same = std::fs::read_to_string(path).is_ok_and(|c| c == content);
    r.outcome = if same { Outcome::Done } else { Outcome::Failed };
    r.detail = format!("{} bytes written; the old content kept as {id}", content.len());
    Ok(())
}

fn run_chattr(path: &Path, flags: &[String]) -> Result<(), String> {
    if flags.is_empty() {
        return Ok(());
    }
    let out = Command::new("chattr").args(flags).arg(path).output().map_err(|e| format!("chattr: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("chattr {}: {}", flags.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The inode flags `lsattr` shows for `path` (`i`, `a`, ...).
fn flags(path: &Path) -> Option<String> {
    let out = Command::new("lsattr").arg("-d").arg(path).output().ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_owned()
    })
}

fn attributes(path: &Path, attrs: &[String], dry_run: bool, r: &mut ActionResult) -> Result<(), String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() || m.is_dir() => m,
        _ => {
            r.outcome = Outcome::NothingFound;
            return Ok(());
        }
    };
    let windows: Vec<&String> = attrs
        .iter()
        .filter(|a| {
            a.trim_start_matches(['+', '-']) == "hidden" || a.trim_start_matches(['+', '-']) == "system"
        })
        .collect();
    if !windows.is_empty() {
        r.outcome = Outcome::Unsupported;
        r.detail = format!("{windows:?}: Windows attributes, unsupported on linux");
        return Ok(());
    }
    if dry_run {
        r.outcome = Outcome::WouldDo;
        r.detail = format!("would set {}", attrs.join(" "));
        return Ok(());
    }
    let mut mode = meta.permissions().mode() & 0o7777;
    let mut chattr = Vec::new();
    for a in attrs {
        let on = !a.starts_with('-');
        match a.trim_start_matches(['+', '-']) {
            "readonly" if on => mode &= !0o222,
            "readonly" => mode |= 0o200,
            "immutable" => chattr.push(format!("{}i", if on { '+' } else { '-' })),
            "append_only" => chattr.push(format!("{}a", if on { '+' } else { '-' })),
            octal => {
                mode = u32::from_str_radix(octal, 8).map_err(|_| format!("{a:?} is not an attribute"))?
            }
        }
    }
    // An immutable file's mode cannot change: flags come off first, go on last.
    let (off, on): (Vec<String>, Vec<String>) = chattr.iter().cloned().partition(|c| c.starts_with('-'));
    if let Err(e) = run_chattr(path, &off) {
        r.outcome = Outcome::Failed;
        r.detail = e;
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod: {e}"))?;
    if let Err(e) = run_chattr(path, &on) {
        r.outcome = Outcome::Failed;
        r.detail = e;
        return Ok(());
    }
    let now_mode =
        std::fs::symlink_metadata(path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(u32::MAX);
    let now_flags = flags(path).unwrap_or_default();
    let flags_ok = chattr.iter().all(|c| now_flags.contains(&c[1..]) == c.starts_with('+'));
    r.outcome = if now_mode == mode && flags_ok { Outcome::Done } else { Outcome::Failed };
    r.detail = format!("mode {now_mode:04o}, flags {now_flags}");
    Ok(())
}

#[cfg(test)]
#[path = "edit_tests.rs"]
mod tests;
