//! Running code on Linux: a shell script (`Script_Shell`), a downloaded program (`Script_File`) and
//! a started process (`Proc_Create`). All three are off unless the agent's own allow-list holds the
//! SHA-256 of what would run (`cordon-agent respond --allow-script <sha256>`: of the script text, of
//! the downloaded file, of the command line): the server and the approvers cannot widen what the
//! host's owner allowed. Scripts and programs run with a minimal environment for at most a minute,
//! their output to a file (a process left behind cannot hold a pipe open); the exit status and the
//! end of the output are the result. A started process is left running, detached, and checked to
//! be alive or to have exited cleanly.

use super::{ActionResult, Config, Outcome};
use schemas::response::Action;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A script or program is stopped after this long.
const TIMEOUT: Duration = Duration::from_secs(60);
/// How much of its output the result keeps (the end).
const KEEP_OUTPUT: usize = 2048;
/// The largest file `Script_File` downloads.
const MAX_DOWNLOAD: u64 = 64 << 20;
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Carries out a code-running instruction into `r`; false when `a` is not one this module handles.
pub(super) fn run(a: &Action, cfg: &Config, dry_run: bool, r: &mut ActionResult) -> bool {
    let s = |k: &str| a.args.get(k).and_then(Value::as_str).map(str::to_owned);
    let done = match a.instruction.name {
        "Script_Shell" => shell(&s("script").unwrap_or_default(), s("sha256").as_deref(), cfg, dry_run, r),
        "Script_File" => program(
            &s("url").unwrap_or_default(),
            &s("sha256").unwrap_or_default(),
            s("args"),
            cfg,
            dry_run,
            r,
        ),
        "Proc_Create" => start(&s("command").unwrap_or_default(), s("user"), cfg, dry_run, r),
        _ => return false,
    };
    if let Err(e) = done {
        r.outcome = Outcome::Failed;
        r.detail = e;
    }
    true
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Why the agent does not run code with this hash, if it does not.
fn not_allowed(sha: &str, cfg: &Config) -> Option<String> {
    if cfg.scripts.is_empty() {
        Some("scripts are off on this agent (no --allow-script)".to_owned())
    } else if !cfg.scripts.iter().any(|h| h.eq_ignore_ascii_case(sha)) {
        Some(format!("{sha} is not in this agent's script allow-list"))
    } else {
        None
    }
}

/// Refuses into `r` when `why` says so; true when refused.
fn refuse(why: Option<String>, r: &mut ActionResult) -> bool {
    let Some(why) = why else { return false };
    r.outcome = Outcome::Refused;
    r.detail = why;
    true
}

fn work_dir(cfg: &Config) -> Result<PathBuf, String> {
    let dir = cfg.state.join("scripts");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

fn shell(
    script: &str,
    declared: Option<&str>,
    cfg: &Config,
    dry_run: bool,
    r: &mut ActionResult,
) -> Result<(), String> {
    let sha = sha256_hex(script.as_bytes());
    r.touched = vec![format!("shell script {sha}")];
    let mismatch = declared
        .filter(|d| !d.eq_ignore_ascii_case(&sha))
        .map(|_| format!("the script's SHA-256 is {sha}, not the one declared"));
    if refuse(mismatch.or_else(|| not_allowed(&sha, cfg)), r) {
        return Ok(());
    }
    if dry_run {
        r.outcome = Outcome::WouldDo;
        r.detail = "allowed; would run with /bin/sh".into();
        return Ok(());
    }
    let file = work_dir(cfg)?.join(format!("{}-{}.sh", &sha[..16], schemas::time::now_micros()));
    std::fs::write(&file, script).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg(&file);
    let done = run_to_end(cmd, cfg, r);
    let _ = std::fs::remove_file(&file);
    done
}

/// Downloads `url` (HTTPS; the agent's `--ca` trusted), checks its SHA-256 against the declared
/// one and the allow-list, and runs it with `args` (split on whitespace).
fn program(
    url: &str,
    sha: &str,
    args: Option<String>,
    cfg: &Config,
    dry_run: bool,
    r: &mut ActionResult,
) -> Result<(), String> {
    r.touched = vec![format!("{url} ({sha})")];
    if refuse(not_allowed(sha, cfg), r) {
        return Ok(());
    }
    if dry_run {
        r.outcome = Outcome::WouldDo;
        r.detail = "allowed; would download, check the hash and run".into();
        return Ok(());
    }
    let agent = crate::enroll::http_agent(cfg.ca.as_deref()).map_err(|e| e.to_string())?;
    let mut resp = agent.get(url).call().map_err(|e| format!("downloading {url}: {e}"))?;
    if resp.status().as_u16() != 200 {
        return Err(format!("downloading {url}: HTTP {}", resp.status()));
    }
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(MAX_DOWNLOAD)
        .read_to_vec()
        .map_err(|e| format!("downloading {url}: {e}"))?;
    let got = sha256_hex(&bytes);
    if !got.eq_ignore_ascii_case(sha) {
        r.outcome = Outcome::Refused;
        r.detail = format!("the download's SHA-256 is {got}, not {sha}; not run");
        return Ok(());
    }
    let file = work_dir(cfg)?.join(format!("{}-{}.bin", &got[..16], schemas::time::now_micros()));
    write_executable(&file, &bytes)?;
    let mut cmd = Command::new(&file);
    cmd.args(args.as_deref().unwrap_or_default().split_whitespace());
    let done = run_to_end(cmd, cfg, r);
    let _ = std::fs::remove_file(&file);
    done
}

fn write_executable(file: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(file)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| format!("{}: {e}", file.display()))
}

/// Runs `cmd` for at most [`TIMEOUT`], output to a file; its status and the end of its output into `r`.
fn run_to_end(mut cmd: Command, cfg: &Config, r: &mut ActionResult) -> Result<(), String> {
    let log = work_dir(cfg)?.join(format!("run-{}.out", schemas::time::now_micros()));
    let sink = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = cmd
        .env_clear()
        .env("PATH", PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(sink)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting it: {e}"))?;
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::fs::read(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let tail = String::from_utf8_lossy(&output[output.len().saturating_sub(KEEP_OUTPUT)..]).into_owned();
    (r.outcome, r.detail) = match status {
        Some(s) if s.success() => (Outcome::Done, format!("exit 0; output: {}", tail.trim_end())),
        Some(s) => (Outcome::Failed, format!("{s}; output: {}", tail.trim_end())),
        None => (Outcome::Failed, format!("stopped after {} s", TIMEOUT.as_secs())),
    };
    Ok(())
}

/// The uid and gid of `user` in `/etc/passwd`.
fn account(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&user) && f.len() > 3).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// Starts `command` (through `/bin/sh -c`, in a session of its own) as `user` (default root) and
/// leaves it running.
fn start(
    command: &str,
    user: Option<String>,
    cfg: &Config,
    dry_run: bool,
    r: &mut ActionResult,
) -> Result<(), String> {
    let sha = sha256_hex(command.as_bytes());
    let user = user.unwrap_or_else(|| "root".into());
    r.touched = vec![format!("{command:?} as {user}")];
    let ids = account(&user);
    let unknown = ids.is_none().then(|| format!("no account {user} on this host"));
    if refuse(unknown.or_else(|| not_allowed(&sha, cfg)), r) {
        return Ok(());
    }
    let (uid, gid) = ids.unwrap_or((0, 0));
    if dry_run {
        r.outcome = Outcome::WouldDo;
        r.detail = format!("allowed; would start it as uid {uid}");
        return Ok(());
    }
    let mut child = Command::new("/bin/sh")
        .args(["-c", command])
        .env_clear()
        .env("PATH", PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .gid(gid)
        .uid(uid)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting {command:?}: {e}"))?;
    let pid = child.id();
    std::thread::sleep(Duration::from_millis(200));
    let state = child.try_wait().map_err(|e| e.to_string())?;
    (r.outcome, r.detail) = match state {
        None => (Outcome::Done, format!("pid {pid} running as uid {uid}")),
        Some(s) if s.success() => (Outcome::Done, format!("pid {pid} ran and exited 0")),
        Some(s) => (Outcome::Failed, format!("pid {pid} {s}")),
    };
    // A running child is left to run; its exit is reaped by a thread so it leaves no zombie.
    if state.is_none() {
        std::thread::spawn(move || child.wait());
    }
    Ok(())
}

#[cfg(test)]
#[path = "scripts_tests.rs"]
mod tests;
