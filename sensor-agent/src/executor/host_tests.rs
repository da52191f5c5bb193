//! Against real files and a real loop device: the boot record repaired only on a match and read
//! back, the sector as found kept; markers only where markers live; the quick scan's matches
//! quarantined.

use super::super::{ActionResult, Config, Outcome};
use super::*;
use serde_json::json;
use std::process::Command;

/// The first bytes of Dark Cloud III's boot code, as the talk's rule compares them.
const INFECTED: [u8; 16] =
    [0x31, 0xC0, 0xFA, 0x31, 0xD8, 0x8E, 0xD3, 0x36, 0x89, 0x26, 0xFE, 0x7B, 0xBC, 0xFE, 0x7B, 0x1E];
const CONDITION: &str = "[equal],[offset:0],[31 C0 FA 31 D8 8E D3 36 89 26 FE 7B BC FE 7B 1E]";

fn cfg(dir: &Path) -> Config {
    Config { roots: vec![dir.join("root")], removable: Vec::new(), ..Config::for_host(dir) }
}

fn act(action: serde_json::Value, c: &Config, dry_run: bool) -> ActionResult {
    let rule = schemas::response::parse(&json!({"name": "t", "kind": "cleanup", "actions": [action]}))
        .expect("a valid rule");
    super::super::run(&rule, c, dry_run).remove(0)
}

/// A 1 MiB disk image whose boot record starts with `head` and ends with the 55 AA signature.
fn image(path: &Path, head: &[u8]) {
    let mut bytes = vec![0u8; 1 << 20];
    bytes[..head.len()].copy_from_slice(head);
    bytes[510..512].copy_from_slice(&[0x55, 0xAA]);
    bytes[4096..4100].copy_from_slice(b"DATA");
    std::fs::write(path, bytes).unwrap();
}

fn clean_code() -> Vec<u8> {
    (0..446u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect::<Vec<_>>().join(" ")
}

#[test]
fn the_boot_record_of_an_image_is_repaired_only_when_it_matches() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let img = dir.path().join("disk.img");
    image(&img, &INFECTED);
    let good = clean_code();
    let action =
        json!({"action": "File_repairMbr", "device": img, "data": hex(&good), "condition": CONDITION});

    let dry = act(action.clone(), &c, true);
    assert_eq!(dry.outcome, Outcome::WouldDo, "{dry:?}");
    assert_eq!(std::fs::read(&img).unwrap()[..16], INFECTED, "a dry run writes nothing");

    let r = act(action.clone(), &c, false);
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    let after = std::fs::read(&img).unwrap();
    assert_eq!(after[..446], good[..]);
    assert_eq!(after[510..512], [0x55, 0xAA], "the partition table and signature are kept");
    assert_eq!(&after[4096..4100], b"DATA", "nothing past the boot record changes");
    // The sector as found is kept in the quarantine.
    let kept: Vec<_> = std::fs::read_dir(&c.quarantine)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "bin"))
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(std::fs::read(kept[0].path()).unwrap()[..16], INFECTED);

    // Repaired, it no longer matches: a second run leaves it alone.
    assert_eq!(act(action, &c, false).outcome, Outcome::NothingFound);
}

#[test]
fn backup_restores_the_agents_saved_copy_and_its_absence_is_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let img = dir.path().join("disk.img");
    image(&img, &INFECTED);
    let action = json!({"action": "File_repairMbr", "device": img, "data": "backup", "condition": CONDITION});
    let r = act(action.clone(), &c, false);
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    assert!(r.detail.contains("no saved boot record"), "{r:?}");
    // The backup is taken while the disk is clean (`cordon-agent mbr-backup`), then the bootkit lands.
    let good = clean_code();
    image(&img, &good);
    let saved = save_mbr_backup(&c, &img).unwrap();
    assert_eq!(saved["sha256"].as_str().map(str::len), Some(64), "{saved}");
    let mut bytes = std::fs::read(&img).unwrap();
    let clean_sector = bytes[..512].to_vec();
    bytes[..16].copy_from_slice(&INFECTED);
    std::fs::write(&img, &bytes).unwrap();
    let r = act(action, &c, false);
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert_eq!(std::fs::read(&img).unwrap()[..512], clean_sector[..]);
}

#[test]
fn the_boot_record_of_a_loop_device_is_repaired_through_the_block_device() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let img = dir.path().join("loop.img");
    image(&img, &INFECTED);
    let out =
        Command::new("losetup").args(["-f", "--show"]).arg(&img).output().expect("losetup (util-linux)");
    assert!(out.status.success(), "losetup: {} (the test needs root)", String::from_utf8_lossy(&out.stderr));
    let dev = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = Command::new("losetup").args(["-d", &self.0]).status();
        }
    }
    let _detach = Detach(dev.clone());
    let good = clean_code();
    let r = act(
        json!({"action": "File_repairMbr", "device": dev, "data": hex(&good), "condition": CONDITION}),
        &c,
        false,
    );
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    drop(_detach);
    assert_eq!(std::fs::read(&img).unwrap()[..446], good[..], "the image behind the loop device is repaired");
}

#[test]
fn what_is_not_a_whole_disk_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let r = act(
        json!({"action": "File_repairMbr", "device": "/dev/null", "data": "00", "condition": CONDITION}),
        &c,
        false,
    );
    assert_eq!(r.outcome, Outcome::Refused, "{r:?}");
}

#[test]
fn markers_are_made_read_only_where_markers_live() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let c = cfg(dir.path());
    let path = dir.path().join("locks").join(".x11-lock-7");
    let action = json!({"action": "Other_Create_Mutex", "name": "dark-cloud", "path": path});
    assert_eq!(act(action.clone(), &c, true).outcome, Outcome::WouldDo);
    assert!(!path.exists());
    let r = act(action.clone(), &c, false);
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o444);
    assert_eq!(act(action, &c, false).detail, "the marker is already there");
    let r = act(json!({"action": "Other_Create_Mutex", "name": "m", "path": "/etc/nologin"}), &c, false);
    assert_eq!(r.outcome, Outcome::Refused, "{r:?}");
    let climb = json!({"name": "t", "kind": "cleanup", "actions": [
        {"action": "Other_Create_Mutex", "name": "m", "path": "/tmp/../etc/nologin"}]});
    assert!(schemas::response::parse(&climb).is_err(), "a path that climbs out is malformed");
    assert!(!Path::new("/etc/nologin").exists());
}

#[test]
fn the_quick_scan_finds_files_by_hash_and_cleans_them_when_told() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let deep = dir.path().join("root/a/b");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("payload.bin"), b"ransomware body").unwrap();
    std::fs::write(dir.path().join("root/a/copy-under-another-name"), b"ransomware body").unwrap();
    std::fs::write(dir.path().join("root/a/innocent.txt"), b"hello").unwrap();
    let bad = super::super::files::sha256_file(&deep.join("payload.bin")).unwrap();
    let unrelated = "ab".repeat(32);

    let look = json!({"action": "Other_QuickScan", "sha256s": [bad, unrelated], "condition": "alldisk"});
    let r = act(look, &c, false);
    assert_eq!((r.outcome.clone(), r.touched.len()), (Outcome::Done, 2), "{r:?}");
    assert!(r.detail.starts_with("3 file(s) hashed"), "{r:?}");
    assert!(deep.join("payload.bin").exists(), "without clean nothing moves");

    let shallow =
        json!({"action": "Other_QuickScan", "sha256s": [bad], "clean": true, "condition": "alldisk_deep:2"});
    let r = act(shallow, &c, false);
    assert_eq!(
        r.touched,
        vec![dir.path().join("root/a/copy-under-another-name").display().to_string()],
        "{r:?}"
    );
    assert!(deep.join("payload.bin").exists(), "deeper than the scope");
    let all = json!({"action": "Other_QuickScan", "sha256s": [bad], "clean": true, "condition": "alldisk"});
    let r = act(all, &c, false);
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert!(!deep.join("payload.bin").exists() && dir.path().join("root/a/innocent.txt").exists());
    assert!(r.detail.contains("quarantined as"), "{r:?}");
    let none = act(json!({"action": "Other_QuickScan", "condition": "alldisk"}), &c, false);
    assert_eq!(none.outcome, Outcome::NothingFound, "{none:?}");
}
