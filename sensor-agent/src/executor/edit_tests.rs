//! Against real files: created once, modified with the old content kept, attributes set and read
//! back (the immutable flag through chattr, where the filesystem has inode flags).

use super::super::{ActionResult, Config, Outcome};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

fn act(action: serde_json::Value, c: &Config, dry_run: bool) -> ActionResult {
    let rule = schemas::response::parse(&json!({"name": "t", "kind": "cleanup", "actions": [action]}))
        .expect("a valid rule");
    super::super::run(&rule, c, dry_run).remove(0)
}

#[test]
fn files_are_created_once_and_modified_with_the_old_content_kept() {
    let dir = tempfile::tempdir().unwrap();
    let c = Config::for_host(dir.path());
    let path = dir.path().join("etc").join("hosts.deny");
    let create = json!({"action": "File_Create", "path": path, "content": "ALL: 203.0.113.9\n", "attributes": ["0600"]});
    assert_eq!(act(create.clone(), &c, true).outcome, Outcome::WouldDo);
    assert!(!path.exists());
    let r = act(create.clone(), &c, false);
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "ALL: 203.0.113.9\n");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(act(create, &c, false).outcome, Outcome::Refused, "never over an existing file");

    let r = act(json!({"action": "File_Modify", "path": path, "content": "ALL: ALL\n"}), &c, false);
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "ALL: ALL\n");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "the mode is kept");
    let kept = std::fs::read_dir(&c.quarantine)
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_none() && !e.file_name().to_string_lossy().starts_with('.'));
    assert_eq!(std::fs::read_to_string(kept.unwrap().path()).unwrap(), "ALL: 203.0.113.9\n");
    let r = act(json!({"action": "File_Modify", "path": "/etc/shadow", "content": "x"}), &c, false);
    assert_eq!(r.outcome, Outcome::Refused, "{r:?}");
}

#[test]
fn attributes_are_set_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let c = Config::for_host(dir.path());
    let path = dir.path().join("implant.sh");
    std::fs::write(&path, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let r = act(
        json!({"action": "File_Attribute", "path": path, "attributes": ["0644", "+readonly"]}),
        &c,
        false,
    );
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o444);
    let r = act(json!({"action": "File_Attribute", "path": path, "attributes": ["+immutable"]}), &c, false);
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert!(
        std::fs::OpenOptions::new().append(true).open(&path).is_err(),
        "immutable: not even root writes it"
    );
    let r = act(
        json!({"action": "File_Attribute", "path": path, "attributes": ["-immutable", "-readonly"]}),
        &c,
        false,
    );
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert!(std::fs::OpenOptions::new().append(true).open(&path).is_ok());
    let r = act(json!({"action": "File_Attribute", "path": path, "attributes": ["+hidden"]}), &c, false);
    assert_eq!(r.outcome, Outcome::Unsupported, "{r:?}");
}
