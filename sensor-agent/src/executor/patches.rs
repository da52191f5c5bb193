//! Patches on Linux (`Other_Fix_patch`): upgrading an installed package with the host's package
//! manager (apt on Debian and Ubuntu). The dry run is the manager's own simulation (`apt-get -s`):
//! it names the version the package would go from and to, or finds nothing to do (already the
//! newest, or not installed: a patch never installs a new package). The upgrade runs without
//! prompts for at most ten minutes and is checked by the installed version afterwards.

use super::{ActionResult, Config, Outcome};
use schemas::response::Action;
use serde_json::Value;
use std::process::Command;

/// Carries out a patch instruction into `r`; false when `a` is not one this module handles.
pub(super) fn run(a: &Action, _cfg: &Config, dry_run: bool, r: &mut ActionResult) -> bool {
    if a.instruction.name != "Other_Fix_patch" {
        return false;
    }
    let pkg = a.args.get("patch").and_then(Value::as_str).unwrap_or_default();
    r.touched = vec![format!("package {pkg}")];
    if let Err(e) = patch(pkg, dry_run, r) {
        r.outcome = Outcome::Failed;
        r.detail = e;
    }
    true
}

/// A Debian package name: lower-case letters, digits, `+`, `-`, `.`, starting alphanumeric.
fn package_name(p: &str) -> bool {
    p.len() >= 2
        && p.len() <= 128
        && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

fn installed_version(pkg: &str) -> Option<String> {
    let out = Command::new("dpkg-query").args(["-W", "-f", "${Status} ${Version}", pkg]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.strip_prefix("install ok installed ").map(|v| v.trim().to_owned())
}

/// The simulation's `Inst <pkg> [old] (new ...)` line: (old, new).
fn simulated(pkg: &str) -> Result<Option<(String, String)>, String> {
    let out = Command::new("apt-get")
        .args(["install", "--only-upgrade", "-s", "-y", pkg])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|e| format!("apt-get: {e}"))?;
    if !out.status.success() {
        return Err(format!("apt-get -s: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok(text.lines().find_map(|l| {
        let rest = l.strip_prefix(&format!("Inst {pkg} "))?;
        let old = rest.strip_prefix('[')?.split(']').next()?.to_owned();
        let new = rest.split('(').nth(1)?.split_whitespace().next()?.to_owned();
        Some((old, new))
    }))
}

fn patch(pkg: &str, dry_run: bool, r: &mut ActionResult) -> Result<(), String> {
    if !package_name(pkg) {
        r.outcome = Outcome::Refused;
        r.detail = format!("{pkg:?} is not a package name");
        return Ok(());
    }
    if !std::path::Path::new("/usr/bin/apt-get").exists() {
        r.outcome = Outcome::Unsupported;
        r.detail = "no apt-get on this host (the patch instruction supports apt today)".into();
        return Ok(());
    }
    let Some(before) = installed_version(pkg) else {
        r.outcome = Outcome::NothingFound;
        r.detail = format!("{pkg} is not installed; a patch never installs a new package");
        return Ok(());
    };
    let Some((old, new)) = simulated(pkg)? else {
        r.outcome = Outcome::NothingFound;
        r.detail = format!("{pkg} {before} is already the newest version the host's sources offer");
        return Ok(());
    };
    if dry_run {
        r.outcome = Outcome::WouldDo;
        r.detail = format!("would upgrade {pkg} from {old} to {new}");
        return Ok(());
    }
    let out = Command::new("timeout")
        .args(["600", "apt-get", "install", "--only-upgrade", "-y", "-q", pkg])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|e| format!("apt-get: {e}"))?;
    let after = installed_version(pkg).unwrap_or_default();
    r.outcome = if out.status.success() && after == new { Outcome::Done } else { Outcome::Failed };
    r.detail = if r.outcome == Outcome::Done {
        format!("{pkg} upgraded from {before} to {after}")
    } else {
        format!("{pkg} is {after}, not {new}: {}", String::from_utf8_lossy(&out.stderr).trim())
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Config, Outcome};
    use serde_json::json;

    fn act(patch: &str) -> super::super::ActionResult {
        let rule = schemas::response::parse(&json!({"name": "t", "kind": "handling", "actions": [
            {"action": "Other_Fix_patch", "patch": patch}]}))
        .unwrap();
        super::super::carry_out(&rule, &Config::for_host(std::path::Path::new("/nonexistent"))).remove(0)
    }

    #[test]
    fn a_patch_upgrades_only_an_installed_package_and_never_takes_a_shell_word() {
        assert!(std::path::Path::new("/usr/bin/apt-get").exists(), "this test needs a Debian host (apt-get)");
        let r = act("cordon-no-such-package");
        assert_eq!(r.outcome, Outcome::NothingFound, "{r:?}");
        assert!(r.detail.contains("not installed"), "{r:?}");
        // An installed package, dry: apt's simulation says what would be done (nothing is upgraded
        // on the test machine).
        let mut r = act("cordon-no-such-package");
        super::patch("coreutils", true, &mut r).unwrap();
        assert!(matches!(r.outcome, Outcome::NothingFound | Outcome::WouldDo), "{r:?}");
        assert!(r.detail.contains("coreutils"), "{r:?}");
        for bad in ["coreutils; rm -rf /", "-oDebug::pkgProblemResolver=1", "Coreutils"] {
            assert_eq!(act(bad).outcome, Outcome::Refused, "{bad}");
        }
    }
}
