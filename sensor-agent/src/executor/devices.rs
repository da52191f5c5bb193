//! Devices on Linux (`Other_Device`): blocking makes a block device read-only in the kernel
//! (`BLKROSET` through `blockdev --setro`, checked in `/sys/class/block/<dev>/ro`) or de-authorises a
//! USB device (`/sys/bus/usb/devices/<id>/authorized`); ejecting detaches a loop device or deletes a
//! SCSI/USB disk from the kernel (`device/delete`), checked by its disappearance. The disk holding
//! `/` is never touched, and a disk with anything mounted is not ejected.

use super::{ActionResult, Config, Outcome};
use schemas::response::Action;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Carries out a device instruction into `r`; false when `a` is not one this module handles.
pub(super) fn run(a: &Action, _cfg: &Config, dry_run: bool, r: &mut ActionResult) -> bool {
    if a.instruction.name != "Other_Device" {
        return false;
    }
    let device = a.args.get("device").and_then(Value::as_str).unwrap_or_default();
    let op = a.args.get("op").and_then(Value::as_str).unwrap_or_default();
    r.touched = vec![device.to_owned()];
    let done = match (op, usb(device)) {
        ("block", Some(sys)) => authorize(&sys, false, dry_run, r),
        ("eject", Some(_)) => {
            r.outcome = Outcome::Unsupported;
            r.detail = "a USB device is blocked (de-authorised), not ejected; eject its disk".into();
            Ok(())
        }
        _ => disk(Path::new(device), op == "eject", dry_run, r),
    };
    if let Err(e) = done {
        r.outcome = Outcome::Failed;
        r.detail = e;
    }
    true
}

/// The sysfs directory of a USB device named by its bus id (`1-1.2`).
fn usb(device: &str) -> Option<PathBuf> {
    let ok = !device.is_empty() && device.bytes().all(|b| b.is_ascii_digit() || b == b'-' || b == b'.');
    ok.then(|| Path::new("/sys/bus/usb/devices").join(device)).filter(|p| p.join("authorized").exists())
}

fn authorize(sys: &Path, on: bool, dry_run: bool, r: &mut ActionResult) -> Result<(), String> {
    if dry_run {
        r.outcome = Outcome::WouldDo;
        r.detail = "would de-authorise the USB device".into();
        return Ok(());
    }
    let file = sys.join("authorized");
    std::fs::write(&file, if on { "1" } else { "0" }).map_err(|e| format!("{}: {e}", file.display()))?;
    let now = std::fs::read_to_string(&file).unwrap_or_default();
    r.outcome = if now.trim() == if on { "1" } else { "0" } { Outcome::Done } else { Outcome::Failed };
    r.detail = format!("authorized = {}", now.trim());
    Ok(())
}

fn sys_of(dev: &Path) -> Option<PathBuf> {
    let name = dev.file_name()?.to_string_lossy().into_owned();
    let sys = Path::new("/sys/class/block").join(&name);
    sys.exists().then_some(sys)
}

/// The devices mounted from `name` or its partitions.
fn mounted(name: &str) -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|d| d.strip_prefix("/dev/").is_some_and(|d| d.starts_with(name)))
        .map(str::to_owned)
        .collect()
}

fn disk(dev: &Path, eject: bool, dry_run: bool, r: &mut ActionResult) -> Result<(), String> {
    let Some(sys) = sys_of(dev) else {
        r.outcome = Outcome::NothingFound;
        r.detail = format!("{} is not a block device or USB device id here", dev.display());
        return Ok(());
    };
    let name = dev.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let system = super::host::system_disk().is_some_and(|d| d == dev);
    let busy = mounted(&name);
    let refused = if system {
        Some("the disk holding / is never blocked or ejected".to_owned())
    } else if eject && !busy.is_empty() {
        Some(format!("mounted: {}; unmount first", busy.join(", ")))
    } else {
        None
    };
    if let Some(why) = refused {
        r.outcome = Outcome::Refused;
        r.detail = why;
        return Ok(());
    }
    if dry_run {
        r.outcome = Outcome::WouldDo;
        r.detail = format!("would {} {}", if eject { "eject" } else { "make read-only" }, dev.display());
        return Ok(());
    }
    if !eject {
        let out = Command::new("blockdev")
            .arg("--setro")
            .arg(dev)
            .output()
            .map_err(|e| format!("blockdev: {e}"))?;
        let ro = std::fs::read_to_string(sys.join("ro")).unwrap_or_default();
        r.outcome = if out.status.success() && ro.trim() == "1" { Outcome::Done } else { Outcome::Failed };
        r.detail = format!("read-only in the kernel (ro = {})", ro.trim());
        return Ok(());
    }
    let loop_dev = sys.join("loop").exists();
    let result = if loop_dev {
        // The kernel keeps a loop device's read-only flag across detach: cleared, so the next image
        // attached there is not read-only.
        let _ = Command::new("blockdev").arg("--setrw").arg(dev).output();
        Command::new("losetup").arg("-d").arg(dev).output().map(|o| o.status.success())
    } else {
        std::fs::write(sys.join("device").join("delete"), "1").map(|()| true)
    };
    result.map_err(|e| format!("ejecting {}: {e}", dev.display()))?;
    // Detaching is asynchronous in the kernel: give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let gone = || if loop_dev { !sys.join("loop").exists() } else { !sys.exists() };
    while !gone() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    r.outcome = if gone() { Outcome::Done } else { Outcome::Failed };
    r.detail = if loop_dev { "loop device detached".into() } else { "disk removed from the kernel".into() };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Config, Outcome};
    use serde_json::json;
    use std::process::Command;

    fn act(action: serde_json::Value) -> super::super::ActionResult {
        let rule =
            schemas::response::parse(&json!({"name": "t", "kind": "handling", "actions": [action]})).unwrap();
        super::super::carry_out(&rule, &Config::for_host(std::path::Path::new("/nonexistent"))).remove(0)
    }

    #[test]
    fn a_loop_disk_is_made_read_only_then_ejected_and_the_system_disk_never() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("usb.img");
        std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
        let out = Command::new("losetup").args(["-f", "--show"]).arg(&img).output().expect("losetup");
        assert!(out.status.success(), "losetup (needs root): {}", String::from_utf8_lossy(&out.stderr));
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let r = act(json!({"action": "Other_Device", "device": dev, "op": "block"}));
        assert_eq!(r.outcome, Outcome::Done, "{r:?}");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().write(true).open(&dev)?;
            f.write_all(&[1u8; 512])?;
            f.sync_all()
        };
        let refused = write();
        if refused.is_ok() {
            let _ = Command::new("blockdev").args(["--setrw", &dev]).output();
            let _ = Command::new("losetup").args(["-d", &dev]).output();
        }
        assert!(refused.is_err(), "read-only: the kernel refuses writes");
        let r = act(json!({"action": "Other_Device", "device": dev, "op": "eject"}));
        let _ = Command::new("losetup").args(["-d", &dev]).output();
        assert_eq!(r.outcome, Outcome::Done, "{r:?}");
        if let Some(system) = super::super::host::system_disk() {
            let r = act(json!({"action": "Other_Device", "device": system, "op": "block"}));
            assert_eq!(r.outcome, Outcome::Refused, "{r:?}");
        }
        let r = act(json!({"action": "Other_Device", "device": "/dev/no-such-disk", "op": "eject"}));
        assert_eq!(r.outcome, Outcome::NothingFound, "{r:?}");
    }
}
