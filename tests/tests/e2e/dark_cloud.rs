//! Issue 17 item 6: the talk's "Dark Cloud III" clean-up rule, adapted to Linux, run end to end by a
//! real agent on this machine: inside a temporary root, on a loopback disk image and on processes
//! this test started. The rule suspends every process that has the implant's module mapped, deletes
//! its files on all disks to depth 8, repairs the boot record of the disk whose first bytes are the
//! bootkit's, and runs a quick scan that quarantines every copy of the dropper by hash. Two
//! responders approve it; the agent's signed result says what each step touched and verified.

use super::requests::{hand_in, sign};
use super::{Env, bin};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use tests::{ServerOptions, get, post};

/// The first 16 bytes of the bootkit's boot code, as the talk's rule compares them.
const BOOTKIT: [u8; 16] =
    [0x31, 0xC0, 0xFA, 0x31, 0xD8, 0x8E, 0xD3, 0x36, 0x89, 0x26, 0xFE, 0x7B, 0xBC, 0xFE, 0x7B, 0x1E];

/// A process running a copy of `sleep`, with `preload` mapped when given; its state letter.
fn sleeper(exe: &Path, preload: Option<&Path>) -> anyhow::Result<Child> {
    std::fs::copy("/bin/sleep", exe)?;
    let mut cmd = Command::new(exe);
    if let Some(lib) = preload {
        cmd.env("LD_PRELOAD", lib);
    }
    let child = tests::procs::spawn_copied(cmd.arg("300"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while state(child.id()) != Some('S') && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(child)
}

fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].split_whitespace().next()?.chars().next()
}

fn sha256(path: &Path) -> anyhow::Result<String> {
    let out = Command::new("sha256sum").arg(path).output()?;
    Ok(String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_owned())
}

/// A loop device over `img`, detached when dropped.
struct Loop(String);

impl Loop {
    fn attach(img: &Path) -> anyhow::Result<Self> {
        let out = Command::new("losetup").args(["-f", "--show"]).arg(img).output()?;
        anyhow::ensure!(
            out.status.success(),
            "losetup (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Self(String::from_utf8_lossy(&out.stdout).trim().to_owned()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// The temporary root the agent treats as its disk: the implant's files at their depths, a copy
/// past the rule's depth, the dropper under another name, and files that must be left alone.
fn plant(root: &Path) -> anyhow::Result<(Vec<PathBuf>, PathBuf, PathBuf, Vec<PathBuf>)> {
    let deep = |parts: &[&str]| parts.iter().fold(root.to_path_buf(), |p, x| p.join(x));
    let implant = vec![
        deep(&["home", "ops", ".cache", "upcfg.db"]),
        deep(&["opt", "vendor", "lib", "DtCrashCatch.so"]),
        deep(&["var", "tmp", "DrvSvc.zip"]),
    ];
    let too_deep = deep(&["a", "b", "c", "d", "e", "f", "g", "h", "i", "upcfg.db"]);
    let dropper = deep(&["srv", "www", "uploads", "invoice-7781.pdf.bin"]);
    let innocent = vec![deep(&["home", "ops", "notes.txt"]), deep(&["opt", "vendor", "lib", "libgood.so"])];
    for (i, p) in implant.iter().chain([&too_deep]).chain(&innocent).enumerate() {
        std::fs::create_dir_all(p.parent().unwrap())?;
        std::fs::write(p, format!("file {i}"))?;
    }
    std::fs::create_dir_all(dropper.parent().unwrap())?;
    std::fs::write(&dropper, b"\x7fELF dark cloud dropper")?;
    std::fs::write(root.join("var").join("tmp").join("dropper.bak"), b"\x7fELF dark cloud dropper")?;
    Ok((implant, too_deep, dropper, innocent))
}

#[test]
fn the_dark_cloud_iii_clean_up_runs_end_to_end_on_a_real_agent() -> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (api, admin) = (env.server.api.clone(), env.token.clone());
    let dir = tempfile::tempdir()?;
    let super::requests::Approvers { analyst, r1, r2 } =
        super::requests::register_approvers(&env, dir.path())?;
    let (_, enroll_token) = tests::enroll_token(&bin(), &env.data, "default", 1)?;
    let state_dir = dir.path().join("agent");
    let st = state_dir.display().to_string();
    let args =
        ["agent", "enroll", "--server", &api, "--token", &enroll_token, "--state-dir", &st, "--host", "pc-1"];
    let (code, out) = tests::run(&bin(), &args)?;
    assert_eq!(code, 0, "{out}");
    let agent =
        serde_json::from_str::<Value>(out.trim())?["agent_id"].as_str().unwrap_or_default().to_owned();

    // The host: processes with and without the implant's module, its files, a disk with the bootkit.
    let module = dir.path().join("libupcfg.so");
    std::fs::copy("/lib/x86_64-linux-gnu/libz.so.1", &module)?;
    let mut infected = sleeper(&dir.path().join("svchost-helper"), Some(&module))?;
    let mut healthy = sleeper(&dir.path().join("healthy-daemon"), None)?;
    let root = dir.path().join("root");
    let (implant, too_deep, dropper, innocent) = plant(&root)?;
    let img = dir.path().join("disk.img");
    let mut disk = vec![0u8; 1 << 20];
    disk[..16].copy_from_slice(&BOOTKIT);
    disk[510..512].copy_from_slice(&[0x55, 0xAA]);
    std::fs::write(&img, &disk)?;
    let dev = Loop::attach(&img)?;
    let clean: Vec<u8> = (0..446u32).map(|i| (i * 13 % 256) as u8).collect();
    let clean_hex: Vec<String> = clean.iter().map(|b| format!("{b:02X}")).collect();

    let rule = json!({"name": "Dark Cloud III clean-up (Linux)", "kind": "cleanup", "actions": [
        {"action": "Proc_Module_Threads", "modules": ["libupcfg.so", "DtCrashCatch.so"]},
        {"action": "File_Delete", "filenames": ["upcfg.db", "DtCrashCatch.so", "DrvSvc.zip"], "condition": "alldisk_deep:8"},
        {"action": "File_repairMbr", "device": dev.0, "data": clean_hex.join(" "),
         "condition": "[equal],[offset:0],[31 C0 FA 31 D8 8E D3 36 89 26 FE 7B BC FE 7B 1E]"},
        {"action": "Other_QuickScan", "sha256s": [sha256(&dropper)?], "clean": true, "condition": "alldisk"}]});
    let body = json!({"rule": rule, "targets": [agent], "reason": "Dark Cloud III on pc-1"});
    let (status, req) = post(&format!("{api}/api/v1/response/requests"), Some(&analyst), &body)?;
    assert_eq!(status, 201, "{req}");
    let id = req["id"].as_str().unwrap_or_default().to_owned();
    let (_, once) = hand_in(&api, &r1, &id, &sign(dir.path(), &req, "alice.key")?)?;
    let (status, approved) = hand_in(&api, &r2, &id, &sign(dir.path(), &once, "bob.key")?)?;
    assert_eq!((status, approved["state"].as_str()), (200, Some("approved")), "{approved}");

    let root_arg = root.display().to_string();
    let args = [
        "agent",
        "--nats-url",
        &env.nats.url,
        "--state-dir",
        &st,
        "respond",
        "--for-secs",
        "5",
        "--poll-ms",
        "300",
        "--root",
        &root_arg,
    ];
    let (code, out) = tests::run(&bin(), &args)?;
    assert_eq!(code, 0, "{out}");
    let summary: Value = serde_json::from_str(out.trim().lines().last().unwrap_or_default())?;
    assert_eq!(summary["handled"][0]["outcome"], "executed", "{summary}");

    // What happened on the host.
    assert_eq!(state(infected.id()), Some('T'), "the process with the module mapped is suspended");
    assert_eq!(state(healthy.id()), Some('S'), "the healthy process runs on");
    for p in &implant {
        assert!(!p.exists(), "{} was deleted", p.display());
    }
    assert!(too_deep.exists(), "past depth 8 the rule does not reach");
    assert!(innocent.iter().all(|p| p.exists()), "nothing else was touched");
    assert!(!dropper.exists() && !root.join("var/tmp/dropper.bak").exists(), "every copy of the dropper");
    drop(dev);
    let after = std::fs::read(&img)?;
    assert_eq!(after[..446], clean[..], "the boot record is repaired");
    assert_eq!(after[510..512], [0x55, 0xAA]);
    let quarantined = std::fs::read_dir(state_dir.join("quarantine"))?.count();
    assert_eq!(quarantined, 2 * (implant.len() + 2) + 2, "each file and the old sector kept with its record");

    // What the agent reported, verified step by step, as the analyst sees it.
    let (_, shown) = get(&format!("{api}/api/v1/response/requests/{id}"), Some(&analyst))?;
    let actions = shown["targets"][0]["result"]["actions"].as_array().cloned().unwrap_or_default();
    let outcomes: Vec<&str> = actions.iter().filter_map(|a| a["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["done"; 4], "{shown}");
    assert_eq!(actions[0]["detail"], "1 process(es) stopped", "{shown}");
    assert_eq!(actions[1]["touched"].as_array().map(Vec::len), Some(3), "{shown}");
    assert!(actions[2]["detail"].as_str().unwrap_or_default().contains("read back"), "{shown}");
    assert_eq!(actions[3]["touched"].as_array().map(Vec::len), Some(2), "{shown}");
    let (_, audit) = get(&format!("{api}/api/v1/audit?limit=1000"), Some(&admin))?;
    let audited = audit["entries"].as_array().into_iter().flatten().any(|e| {
        e["action"] == "response.result"
            && e["target"] == format!("request:{id}")
            && e["detail"]["outcome"] == "executed"
    });
    assert!(audited, "the result is in the audit chain");
    let _ = (infected.kill(), healthy.kill(), infected.wait(), healthy.wait());
    eprintln!(
        "dark cloud III: 1 process suspended, 3 files and 2 dropper copies quarantined, boot record repaired on {}",
        img.display()
    );
    Ok(())
}
