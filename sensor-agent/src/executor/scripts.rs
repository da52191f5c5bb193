//! Scripts on Linux (`Script_Shell`). Off unless the agent's own allow-list holds the script's
//! SHA-256 (`cordon-agent respond --allow-script <sha256>`; an empty list means no scripts run):
//! the server and the approvers cannot widen what the host's owner allowed. A script that passes
//! runs as `/bin/sh <file>` from a private temporary file, with a minimal environment, for at most
//! a minute; its exit status and the end of its output are the result.

use super::{ActionResult, Config, Outcome};
use schemas::response::Action;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A script is stopped after this long.
const TIMEOUT: Duration = Duration::from_secs(60);
/// How much of its output the result keeps (the end).
const KEEP_OUTPUT: usize = 2048;

/// Carries out a script instruction into `r`; false when `a` is not one this module handles.
pub(super) fn run(a: &Action, cfg: &Config, dry_run: bool, r: &mut ActionResult) -> bool {
    if a.instruction.name != "Script_Shell" {
        return false;
    }
    let script = a.args.get("script").and_then(Value::as_str).unwrap_or_default();
    let declared = a.args.get("sha256").and_then(Value::as_str);
    if let Err(e) = shell(script, declared, cfg, dry_run, r) {
        r.outcome = Outcome::Failed;
        r.detail = e;
    }
    true
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
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
    let refused = if declared.is_some_and(|d| !d.eq_ignore_ascii_case(&sha)) {
        Some(format!("the script's SHA-256 is {sha}, not the one declared"))
    } else if cfg.scripts.is_empty() {
        Some("scripts are off on this agent (no --allow-script)".to_owned())
    } else if !cfg.scripts.iter().any(|h| h.eq_ignore_ascii_case(&sha)) {
        Some(format!("{sha} is not in this agent's script allow-list"))
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
        r.detail = "allowed; would run with /bin/sh".into();
        return Ok(());
    }
    // Output goes to a file, not a pipe: a process the script leaves behind cannot hold it open.
    let dir = cfg.state.join("scripts");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let stem = dir.join(format!("{}-{}", &sha[..16], schemas::time::now_micros()));
    let (file, log) = (stem.with_extension("sh"), stem.with_extension("out"));
    std::fs::write(&file, script).map_err(|e| format!("{}: {e}", file.display()))?;
    let sink = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = Command::new("/bin/sh")
        .arg(&file)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(sink)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("/bin/sh: {e}"))?;
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
    let _ = (std::fs::remove_file(&file), std::fs::remove_file(&log));
    let tail = String::from_utf8_lossy(&output[output.len().saturating_sub(KEEP_OUTPUT)..]).into_owned();
    (r.outcome, r.detail) = match status {
        Some(s) if s.success() => (Outcome::Done, format!("exit 0; output: {}", tail.trim_end())),
        Some(s) => (Outcome::Failed, format!("{s}; output: {}", tail.trim_end())),
        None => (Outcome::Failed, format!("stopped after {} s", TIMEOUT.as_secs())),
    };
    Ok(())
}
