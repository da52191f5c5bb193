//! Host instructions on Linux: repairing a disk's boot record, the immunisation marker, and the
//! quick scan.
//!
//! - **Boot record** (`File_repairMbr`): the device named (a whole block device or a disk image
//!   file), else the disk holding `/`. Its first 512 bytes are compared as the condition says;
//!   only on a match are the given bytes (or the agent's saved copy, `backup`) written at offset 0,
//!   after the sector as found is kept in the quarantine. The write is synced and read back.
//! - **Immunisation marker** (`Other_Create_Mutex`): Linux malware checks for a lock or pid file
//!   where a Windows one opens a mutex; the marker is a read-only, root-owned file at `path`
//!   (under `/tmp`, `/var/tmp`, `/run` or `/dev/shm`, where such markers live), else
//!   `/run/lock/<name>`.
//! - **Quick scan** (`Other_QuickScan`): every file in scope hashed (files up to 256 MiB) and
//!   compared with the rule's SHA-256s, which travel inside the signed rule; with `clean`, matches
//!   are quarantined.

use super::{ActionResult, Config, Outcome};
use schemas::response::{Action, ByteCondition, Condition, Scope};
use serde_json::Value;
use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where an immunisation marker may be put.
const MARKER_DIRS: &[&str] = &["/tmp", "/var/tmp", "/run", "/dev/shm"];
/// Larger files are not hashed by a quick scan.
const SCAN_MAX_BYTES: u64 = 256 << 20;

/// Carries out a host instruction into `r`; false when `a` is not one this module handles.
pub(super) fn run(a: &Action, cfg: &Config, dry_run: bool, r: &mut ActionResult) -> bool {
    let s = |k: &str| a.args.get(k).and_then(Value::as_str).map(str::to_owned);
    let done = match a.instruction.name {
        "File_repairMbr" => match &a.condition {
            Some(Condition::Bytes(cond)) => {
                repair_mbr(s("device"), &s("data").unwrap_or_default(), cond, cfg, dry_run, r)
            }
            _ => Err("a boot record repair compares bytes first".into()),
        },
        "Other_Create_Mutex" => marker(&s("name").unwrap_or_default(), s("path"), dry_run, r),
        "Other_QuickScan" => {
            let scope = match &a.condition {
                Some(Condition::Scope(sc)) => *sc,
                _ => Scope::AllDisk,
            };
            let clean = a.args.get("clean").and_then(Value::as_bool) == Some(true);
            quick_scan(&hashes(a.args.get("sha256s")), scope, clean, cfg, dry_run, r)
        }
        _ => return false,
    };
    if let Err(e) = done {
        r.outcome = Outcome::Failed;
        r.detail = e;
    }
    true
}

fn hashes(v: Option<&Value>) -> HashSet<String> {
    let list = v.and_then(Value::as_array).into_iter().flatten();
    list.filter_map(|h| h.as_str().map(str::to_ascii_lowercase)).collect()
}

/// The whole disk that holds `/`, from the mount table and `/sys/class/block`.
pub(super) fn system_disk() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let dev = mounts.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()).find_map(|f| {
        (f.get(1) == Some(&"/") && f.first().is_some_and(|d| d.starts_with("/dev/"))).then(|| f[0].to_owned())
    })?;
    let name = Path::new(&dev).file_name()?.to_string_lossy().into_owned();
    let sys = std::fs::canonicalize(format!("/sys/class/block/{name}")).ok()?;
    let disk = if sys.join("partition").exists() { sys.parent()?.file_name()? } else { sys.file_name()? };
    Some(Path::new("/dev").join(disk))
}

/// Why `dev` is not a disk the agent writes a boot record to, if it is not.
fn not_a_disk(dev: &Path) -> Option<String> {
    let meta = match std::fs::metadata(dev) {
        Ok(m) => m,
        Err(e) => return Some(format!("{}: {e}", dev.display())),
    };
    if meta.file_type().is_block_device() {
        let name = dev.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let partition = Path::new(&format!("/sys/class/block/{name}/partition")).exists();
        return partition.then(|| format!("{} is a partition, not a whole disk", dev.display()));
    }
    (!meta.is_file()).then(|| format!("{} is neither a block device nor a disk image", dev.display()))
}

fn first_sector(dev: &Path) -> Result<Vec<u8>, String> {
    let mut f = std::fs::File::open(dev).map_err(|e| format!("{}: {e}", dev.display()))?;
    let mut buf = vec![0u8; 512];
    let mut n = 0;
    while n < 512 {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(format!("reading {}: {e}", dev.display())),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// Whether the condition holds for `sector`.
fn matches(sector: &[u8], cond: &ByteCondition) -> bool {
    let start = cond.offset as usize;
    let same = sector.get(start..start + cond.bytes.len()) == Some(&cond.bytes[..]);
    same == cond.equal
}

/// Where the agent keeps a known-good copy of a device's boot record.
pub fn mbr_backup(cfg: &Config, dev: &Path) -> PathBuf {
    let key: String =
        dev.to_string_lossy().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    cfg.state.join("mbr-backup").join(format!("{key}.bin"))
}

/// Saves `dev`'s boot record as the agent's known-good copy ([`mbr_backup`]); what was saved, as
/// JSON.
pub fn save_mbr_backup(cfg: &Config, dev: &Path) -> Result<serde_json::Value, String> {
    if let Some(why) = not_a_disk(dev) {
        return Err(why);
    }
    let sector = first_sector(dev)?;
    if sector.len() < 512 {
        return Err(format!("{} is shorter than a boot record", dev.display()));
    }
    let path = mbr_backup(cfg, dev);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&path, &sector).map_err(|e| format!("{}: {e}", path.display()))?;
    let sha: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&sector).iter().map(|b| format!("{b:02x}")).collect()
    };
    Ok(
        serde_json::json!({"device": dev.display().to_string(), "saved": path.display().to_string(), "sha256": sha}),
    )
}

fn repair_mbr(
    device: Option<String>,
    data: &str,
    cond: &ByteCondition,
    cfg: &Config,
    dry_run: bool,
    r: &mut ActionResult,
) -> Result<(), String> {
    let dev = device
        .map(PathBuf::from)
        .or_else(system_disk)
        .ok_or("no device named, and the disk holding / is unknown")?;
    r.touched = vec![format!("{} (boot record)", dev.display())];
    if let Some(why) = not_a_disk(&dev) {
        r.outcome = Outcome::Refused;
        r.detail = why;
        return Ok(());
    }
    let sector = first_sector(&dev)?;
    if !matches(&sector, cond) {
        r.outcome = Outcome::NothingFound;
        r.detail = "the boot record does not match the condition; left alone".into();
        return Ok(());
    }
    let good = if data == "backup" {
        let kept = mbr_backup(cfg, &dev);
        std::fs::read(&kept)
            .map_err(|_| format!("no saved boot record of {} ({})", dev.display(), kept.display()))?
    } else {
        schemas::response::hex_bytes(data)?
    };
    if good.is_empty() || good.len() > 512 {
        return Err(format!("{} bytes: a boot record is 1 to 512", good.len()));
    }
    if dry_run {
        r.outcome = Outcome::WouldDo;
        r.detail = format!("the boot record matches; would write {} bytes at offset 0", good.len());
        return Ok(());
    }
    let aside = keep_sector(&dev, &sector, cfg)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&dev)
        .map_err(|e| format!("opening {} to write: {e}", dev.display()))?;
    f.seek(SeekFrom::Start(0))
        .and_then(|_| f.write_all(&good))
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("writing the boot record of {}: {e}", dev.display()))?;
    let now = first_sector(&dev)?;
    let ok = now.get(..good.len()) == Some(&good[..]);
    r.outcome = if ok { Outcome::Done } else { Outcome::Failed };
    r.detail = if ok {
        format!("{} bytes restored and read back; the sector as found is kept as {aside}", good.len())
    } else {
        "the boot record reads back different from what was written".into()
    };
    Ok(())
}

/// Keeps the sector as found in the quarantine, so the repair can be undone; its file name.
fn keep_sector(dev: &Path, sector: &[u8], cfg: &Config) -> Result<String, String> {
    std::fs::create_dir_all(&cfg.quarantine).map_err(|e| format!("{}: {e}", cfg.quarantine.display()))?;
    let name = format!("mbr-{}.bin", schemas::time::now_micros());
    let path = cfg.quarantine.join(&name);
    std::fs::write(&path, sector).map_err(|e| format!("{}: {e}", path.display()))?;
    let record = serde_json::json!({"device": dev.display().to_string(), "bytes": sector.len()});
    std::fs::write(path.with_extension("json"), record.to_string()).map_err(|e| e.to_string())?;
    Ok(name)
}

fn marker(name: &str, path: Option<String>, dry_run: bool, r: &mut ActionResult) -> Result<(), String> {
    let path = path.map_or_else(|| Path::new("/run/lock").join(name), PathBuf::from);
    r.touched = vec![path.display().to_string()];
    let allowed =
        MARKER_DIRS.iter().any(|d| path.starts_with(d)) && !path.components().any(|c| c.as_os_str() == "..");
    if !allowed {
        r.outcome = Outcome::Refused;
        r.detail = format!("a marker goes under {}", MARKER_DIRS.join(", "));
        return Ok(());
    }
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
        r.outcome = Outcome::Done;
        r.detail = "the marker is already there".into();
        return Ok(());
    }
    if dry_run {
        r.outcome = Outcome::WouldDo;
        r.detail = "would create the marker, read-only".into();
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    // create_new is O_EXCL: it never follows a symbolic link planted at the path.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(b"cordon immunisation marker\n").and_then(|()| f.sync_all()).map_err(|e| e.to_string())?;
    let ok = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
    r.outcome = if ok { Outcome::Done } else { Outcome::Failed };
    r.detail = "marker created, read-only".into();
    Ok(())
}

fn quick_scan(
    wanted: &HashSet<String>,
    scope: Scope,
    clean: bool,
    cfg: &Config,
    dry_run: bool,
    r: &mut ActionResult,
) -> Result<(), String> {
    if wanted.is_empty() {
        r.outcome = Outcome::NothingFound;
        r.detail = "no sha256s to scan for: a Linux quick scan compares files with the rule's hashes".into();
        return Ok(());
    }
    let (mut scanned, mut skipped, mut found) = (0u64, 0u64, Vec::new());
    super::files::walk(scope, cfg, &mut |p| {
        if std::fs::symlink_metadata(p).map_or(true, |m| m.len() > SCAN_MAX_BYTES) {
            skipped += 1;
            return;
        }
        scanned += 1;
        if super::files::sha256_file(p).is_ok_and(|h| wanted.contains(&h)) {
            found.push(p.to_path_buf());
        }
    });
    found.sort();
    r.touched = found.iter().map(|p| p.display().to_string()).collect();
    let counted = format!(
        "{scanned} file(s) hashed, {skipped} over 256 MiB or unreadable skipped, {} match(es)",
        found.len()
    );
    if found.is_empty() || !clean || dry_run {
        r.outcome = match (found.is_empty(), clean && dry_run) {
            (true, _) => Outcome::NothingFound,
            (false, true) => Outcome::WouldDo,
            (false, false) => Outcome::Done,
        };
        r.detail = counted;
        return Ok(());
    }
    std::fs::create_dir_all(&cfg.quarantine).map_err(|e| format!("{}: {e}", cfg.quarantine.display()))?;
    let (mut ids, mut left_alone) = (Vec::new(), Vec::new());
    for p in &found {
        match super::files::denied(p, Some(&cfg.quarantine)) {
            Some(why) => left_alone.push(why),
            None => ids.push(super::files::quarantine(p, cfg)?),
        }
    }
    r.outcome = Outcome::Done;
    r.detail = format!("{counted}; quarantined as {}", ids.join(", "));
    if !left_alone.is_empty() {
        r.detail.push_str(&format!("; left alone: {}", left_alone.join("; ")));
    }
    Ok(())
}

#[cfg(test)]
#[path = "host_tests.rs"]
mod tests;
