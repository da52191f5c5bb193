//! Against real processes this test starts: identified, signalled, checked, and the deny-list.

use super::super::{Config, Outcome};
use super::tests_support::spawn_copied;
use super::{start_time, state};
use serde_json::json;
use std::process::{Child, Command};

fn run_rule(rule: &schemas::response::Rule, dry_run: bool) -> Vec<super::super::ActionResult> {
    super::super::run(rule, &Config::for_host(std::path::Path::new("/nonexistent")), dry_run)
}

fn rule(actions: serde_json::Value) -> schemas::response::Rule {
    schemas::response::parse(&json!({"name": "t", "kind": "handling", "actions": actions}))
        .expect("a valid rule")
}

/// A `sleep` under a name of this test's own, so no other process matches it.
fn sleeper(dir: &std::path::Path, name: &str) -> (Child, String) {
    let exe = dir.join(name);
    std::fs::copy("/bin/sleep", &exe).unwrap();
    let child = spawn_copied(Command::new(&exe).arg("60"));
    // Asleep, not still starting (a loaded machine can take a while to exec it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while state(child.id() as i32) != Some('S') && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    (child, exe.display().to_string())
}

fn sha256_of(path: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).unwrap()).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn terminate_needs_the_start_time_that_goes_with_the_pid() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _) = sleeper(dir.path(), "cordon-test-victim");
    let pid = child.id() as i32;
    let start = start_time(pid).unwrap();
    let wrong = rule(json!([{"action": "Proc_Terminate", "process": {"pid": pid, "start_time": start + 1}}]));
    assert_eq!(run_rule(&wrong, false)[0].outcome, Outcome::NothingFound, "a reused pid is never hit");
    assert_eq!(state(pid), Some('S'));
    let right = rule(json!([{"action": "Proc_Terminate", "process": {"pid": pid, "start_time": start}}]));
    let r = &run_rule(&right, false)[0];
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert!(r.detail.contains("gone"), "{r:?}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(child.wait().unwrap().signal(), Some(9));
}

#[test]
fn suspend_and_resume_by_executable_and_hash_after_a_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, exe) = sleeper(dir.path(), "cordon-test-suspendee");
    let pid = child.id() as i32;
    let who = json!({"executable": exe, "sha256": sha256_of(&exe)});
    let stop = rule(json!([{"action": "Proc_Modify", "process": who, "op": "suspend"}]));
    let plan = &run_rule(&stop, true)[0];
    assert_eq!((plan.outcome.clone(), plan.touched.len()), (Outcome::WouldDo, 1), "{plan:?}");
    assert_eq!(state(pid), Some('S'), "a dry run touches nothing");
    assert_eq!(run_rule(&stop, false)[0].outcome, Outcome::Done);
    assert_eq!(state(pid), Some('T'));
    let resume = rule(json!([{"action": "Proc_Modify", "process": who, "op": "resume"}]));
    assert_eq!(run_rule(&resume, false)[0].outcome, Outcome::Done);
    assert_ne!(state(pid), Some('T'));
    let wrong_hash =
        rule(json!([{"action": "Proc_Terminate", "process": {"executable": exe, "sha256": "0".repeat(64)}}]));
    assert_eq!(run_rule(&wrong_hash, false)[0].outcome, Outcome::NothingFound);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn module_threads_stop_every_process_with_the_module_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let module = format!("libdarkcloud-{}.so", std::process::id());
    let path = dir.path().join(&module);
    std::fs::write(&path, vec![0u8; 4096]).unwrap();
    let script = "import mmap,sys,time; f=open(sys.argv[1],'rb'); m=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ); print('ok',flush=True); time.sleep(60)";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line)
        .unwrap();
    assert_eq!(line.trim(), "ok");
    let r = &run_rule(&rule(json!([{"action": "Proc_Module_Threads", "modules": [module]}])), false)[0];
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert_eq!(r.touched.len(), 1, "only the process that maps it: {r:?}");
    assert_eq!(state(child.id() as i32), Some('T'));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn the_agent_never_signals_itself_or_init_and_says_what_it_cannot_run() {
    let me = std::process::id() as i32;
    let itself = rule(
        json!([{"action": "Proc_Terminate", "process": {"pid": me, "start_time": start_time(me).unwrap()}}]),
    );
    let r = &run_rule(&itself, false)[0];
    assert_eq!(r.outcome, Outcome::Refused, "{r:?}");
    assert!(r.detail.contains("the agent itself"), "{r:?}");
    let init = json!({"name": "t", "kind": "handling", "actions": [{"action": "Proc_Terminate", "process": {"pid": 1, "start_time": 0}}]});
    assert!(schemas::response::parse(&init).is_err(), "pid 1 is not even a valid target");
    let windows = rule(
        json!([{"action": "Reg_Delete", "key": "HKLM\\Software\\x"}, {"action": "Script_PWL", "script": "Get-Process"}]),
    );
    let rs = run_rule(&windows, false);
    assert_eq!(
        (rs[0].outcome.clone(), rs[0].detail.as_str()),
        (Outcome::Unsupported, "unsupported on linux")
    );
    assert_eq!(
        (rs[1].outcome.clone(), rs[1].detail.as_str()),
        (Outcome::Unsupported, "unsupported on linux")
    );
}

#[test]
fn an_agent_runs_each_action_dry_first_and_keeps_the_plan_beside_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, exe) = sleeper(dir.path(), "cordon-test-planned");
    let pid = child.id() as i32;
    let kill = rule(json!([
        {"action": "Proc_Terminate", "process": {"executable": exe, "sha256": sha256_of(&exe)}},
        {"action": "Proc_Terminate", "process": {"executable": exe, "sha256": "0".repeat(64)}}]));
    let cfg = Config::for_host(std::path::Path::new("/nonexistent"));
    let rs = super::super::carry_out(&kill, &cfg);
    assert_eq!(rs[0].outcome, Outcome::Done, "{:?}", rs[0]);
    assert_eq!(rs[0].planned, vec![format!("pid {pid} ({exe})")], "the dry run's plan is in the result");
    assert_eq!(
        (rs[1].outcome.clone(), rs[1].planned.len()),
        (Outcome::NothingFound, 0),
        "nothing planned, nothing done"
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(child.wait().unwrap().signal(), Some(9));
}
