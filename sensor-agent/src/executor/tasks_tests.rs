//! Against a cron and systemd tree of the test's own: entries made, changed and removed as cron and
//! systemd read them, timers found with their service and enablement link, packages' units left
//! alone.

use super::super::{ActionResult, Config, Outcome};
use super::*;
use serde_json::json;

fn cfg(dir: &Path) -> Config {
    let t = |p: &str| dir.join(p);
    for d in [
        "etc/cron.d",
        "etc/cron.daily",
        "etc/systemd/system/timers.target.wants",
        "run/systemd/system",
        "usr/lib/systemd/system",
    ] {
        std::fs::create_dir_all(t(d)).unwrap();
    }
    let tasks = TaskDirs {
        cron_d: t("etc/cron.d"),
        etc: t("etc"),
        units: vec![t("etc/systemd/system"), t("run/systemd/system")],
        package_units: vec![t("usr/lib/systemd/system")],
        systemctl: None,
    };
    Config { tasks, ..Config::for_host(dir) }
}

fn act(action: serde_json::Value, c: &Config, dry_run: bool) -> ActionResult {
    let rule = schemas::response::parse(&json!({"name": "t", "kind": "cleanup", "actions": [action]}))
        .expect("a valid rule");
    super::super::run(&rule, c, dry_run).remove(0)
}

#[test]
fn cron_entries_are_created_changed_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let create = json!({"action": "Task_Create", "name": "cordon-sweep", "schedule": "*/5 * * * *", "command": "/usr/bin/true --sweep"});
    assert_eq!(act(create.clone(), &c, true).outcome, Outcome::WouldDo);
    let entry = c.tasks.cron_d.join("cordon-sweep");
    assert!(!entry.exists());
    let r = act(create.clone(), &c, false);
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    let text = std::fs::read_to_string(&entry).unwrap();
    assert!(text.lines().any(|l| l == "*/5 * * * * root /usr/bin/true --sweep"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777, 0o644);
    assert_eq!(act(create, &c, false).outcome, Outcome::Refused, "an existing task is not replaced");
    let dotted = json!({"action": "Task_Create", "name": "x.y", "schedule": "* * * * *", "command": "true"});
    assert!(act(dotted, &c, false).detail.contains("cron reads only"), "cron ignores dotted names");

    let r = act(json!({"action": "Task_Modify", "name": "cordon-sweep", "schedule": "0 3 * * *"}), &c, false);
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    let text = std::fs::read_to_string(&entry).unwrap();
    assert!(text.lines().any(|l| l == "0 3 * * * root /usr/bin/true --sweep"), "{text}");
    assert!(text.contains("SHELL=/bin/sh"), "the rest of the file is kept");
    let r = act(json!({"action": "Task_Modify", "name": "nope", "command": "true"}), &c, false);
    assert_eq!(r.outcome, Outcome::NothingFound, "{r:?}");
}

#[test]
fn a_persistence_task_is_found_in_cron_and_systemd_and_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let units = dir.path().join("etc/systemd/system");
    std::fs::write(c.tasks.cron_d.join("kworker-upd"), "* * * * * root /tmp/.x/upd\n").unwrap();
    std::fs::write(dir.path().join("etc/cron.daily/kworker-upd"), "#!/bin/sh\n/tmp/.x/upd\n").unwrap();
    std::fs::write(
        units.join("kworker-upd.timer"),
        "[Timer]\nOnCalendar=minutely\nUnit=kworker-helper.service\n",
    )
    .unwrap();
    std::fs::write(units.join("kworker-helper.service"), "[Service]\nExecStart=/tmp/.x/upd\n").unwrap();
    std::os::unix::fs::symlink(
        units.join("kworker-upd.timer"),
        units.join("timers.target.wants/kworker-upd.timer"),
    )
    .unwrap();
    std::fs::write(dir.path().join("usr/lib/systemd/system/kworker-upd.timer"), "[Timer]\n").unwrap();
    std::fs::write(c.tasks.cron_d.join("backup"), "0 1 * * * root /usr/local/bin/backup\n").unwrap();

    let r = act(json!({"action": "Task_Delete", "name": "kworker-upd"}), &c, true);
    assert_eq!((r.outcome.clone(), r.touched.len()), (Outcome::WouldDo, 5), "{r:?}");
    let r = act(json!({"action": "Task_Delete", "name": "kworker-upd"}), &c, false);
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert!(r.detail.starts_with("4 file(s) quarantined") && r.detail.contains("1 link(s) removed"), "{r:?}");
    assert!(r.detail.contains("mask it instead"), "the package's unit is named, not touched: {r:?}");
    assert!(dir.path().join("usr/lib/systemd/system/kworker-upd.timer").exists());
    for gone in [
        "etc/cron.d/kworker-upd",
        "etc/cron.daily/kworker-upd",
        "etc/systemd/system/kworker-upd.timer",
        "etc/systemd/system/kworker-helper.service",
        "etc/systemd/system/timers.target.wants/kworker-upd.timer",
    ] {
        assert!(std::fs::symlink_metadata(dir.path().join(gone)).is_err(), "{gone}");
    }
    assert!(c.tasks.cron_d.join("backup").exists(), "other tasks stay");
    // Quarantined, each comes back with File_Restore.
    let record = std::fs::read_dir(&c.quarantine).unwrap().flatten().find(|e| {
        e.path().extension().is_some_and(|x| x == "json")
            && std::fs::read_to_string(e.path()).unwrap().contains("cron.d/kworker-upd")
    });
    let id = record.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned();
    let r = act(json!({"action": "File_Restore", "quarantine_id": id}), &c, false);
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert!(c.tasks.cron_d.join("kworker-upd").exists());

    let r = act(json!({"action": "Task_Delete", "name": "cordon-agent"}), &c, false);
    assert_eq!(r.outcome, Outcome::Refused, "{r:?}");
    let r = act(json!({"action": "Task_Delete", "name": "nothing-here"}), &c, false);
    assert_eq!(r.outcome, Outcome::NothingFound, "{r:?}");
}

#[test]
fn scripts_run_only_when_the_agent_allows_their_hash() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let script = format!("echo hello; touch {}", marker.display());
    let sha: String = {
        use sha2::Digest;
        sha2::Sha256::digest(script.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    };
    let action = json!({"action": "Script_Shell", "script": script});
    let off = act(action.clone(), &Config::for_host(dir.path()), false);
    assert_eq!(off.outcome, Outcome::Refused, "{off:?}");
    assert!(off.detail.contains("scripts are off"), "{off:?}");
    let other = Config { scripts: vec!["ab".repeat(32)], ..Config::for_host(dir.path()) };
    assert_eq!(act(action.clone(), &other, false).outcome, Outcome::Refused);
    assert!(!marker.exists());

    let allowed = Config { scripts: vec![sha.clone()], ..Config::for_host(dir.path()) };
    let wrong = json!({"action": "Script_Shell", "script": script, "sha256": "cd".repeat(32)});
    assert!(act(wrong, &allowed, false).detail.contains("not the one declared"));
    let r = act(action, &allowed, false);
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert_eq!(r.detail, "exit 0; output: hello");
    assert!(marker.exists(), "the script ran");
    let failing = "exit 3";
    let fsha: String = {
        use sha2::Digest;
        sha2::Sha256::digest(failing.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    };
    let c = Config { scripts: vec![fsha], ..Config::for_host(dir.path()) };
    let r = act(json!({"action": "Script_Shell", "script": failing}), &c, false);
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    assert!(r.detail.contains("exit status: 3"), "{r:?}");
}
