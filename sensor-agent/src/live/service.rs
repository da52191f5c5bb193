//! `cordon-agent install` / `uninstall`: the agent as a systemd service. The configuration is an
//! environment file (`/etc/cordon/agent.env`, mode 0600: it holds the enrollment token) of the
//! `CORDON_*` variables every flag reads, so the unit runs `cordon-agent run` with nothing on its
//! command line; the unit keeps the agent's state and spool under `/var/lib/cordon-agent`, restarts
//! it, and bounds what it may do and use (the capabilities its sources need, memory and CPU caps as
//! a backstop to its own budget).

use std::path::{Path, PathBuf};

/// The unit's name.
pub const UNIT: &str = "cordon-agent.service";

/// What to install.
#[derive(Clone, Debug, Default)]
pub struct Install {
    /// Install under this root instead of `/` (a package's staging tree, a test's directory);
    /// systemd is told only when it is `/`.
    pub root: PathBuf,
    /// The agent's binary.
    pub bin: PathBuf,
    /// `CORDON_*` settings for the environment file, in order.
    pub settings: Vec<(String, String)>,
}

/// The files an installation writes, under its root.
pub fn paths(root: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        root.join("etc/systemd/system").join(UNIT),
        root.join("etc/cordon/agent.env"),
        root.join("var/lib/cordon-agent"),
    )
}

/// The unit file's text.
pub fn unit_text(bin: &Path) -> String {
    format!(
        "[Unit]
Description=Cordon endpoint agent (process events to the Cordon server)
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
EnvironmentFile=/etc/cordon/agent.env
Environment=CORDON_AGENT_STATE=/var/lib/cordon-agent/state CORDON_AGENT_SPOOL=/var/lib/cordon-agent/spool
ExecStart={bin} run
Restart=always
RestartSec=5
KillSignal=SIGTERM
TimeoutStopSec=90
# The process connector needs CAP_NET_ADMIN; reading every process's /proc entries and executables
# CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH; carrying out response orders CAP_KILL.
CapabilityBoundingSet=CAP_NET_ADMIN CAP_SYS_PTRACE CAP_DAC_READ_SEARCH CAP_KILL
AmbientCapabilities=CAP_NET_ADMIN CAP_SYS_PTRACE CAP_DAC_READ_SEARCH CAP_KILL
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
ReadWritePaths=/var/lib/cordon-agent
StateDirectory=cordon-agent
MemoryMax=256M
CPUQuota=50%
Nice=10

[Install]
WantedBy=multi-user.target
",
        bin = bin.display()
    )
}

/// The environment file's text. Values are quoted for systemd (`"` and `\\` escaped).
pub fn env_text(settings: &[(String, String)]) -> String {
    let mut out = String::from("# cordon-agent settings: every flag of cordon-agent has a CORDON_* twin.\n");
    for (k, v) in settings {
        let v = v.replace('\\', "\\\\").replace('"', "\\\"");
        out.push_str(&format!("{k}=\"{v}\"\n"));
    }
    out
}

/// Writes the unit, the environment file (0600) and the state directory (0700); under `/` also
/// enables and starts the service. Returns what it wrote.
pub fn install(i: &Install) -> std::io::Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let (unit, env, state) = paths(&i.root);
    for dir in [unit.parent(), env.parent()].into_iter().flatten() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::create_dir_all(&state)?;
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700))?;
    write_private(&env, &env_text(&i.settings))?;
    std::fs::write(&unit, unit_text(&i.bin))?;
    std::fs::set_permissions(&unit, std::fs::Permissions::from_mode(0o644))?;
    if i.root == Path::new("/") {
        systemctl(&["daemon-reload"])?;
        systemctl(&["enable", "--now", UNIT])?;
    }
    Ok(vec![unit, env, state])
}

/// Stops and disables the service (under `/`), removes the unit and the environment file, and with
/// `purge` the state and spool too. Returns what it removed.
pub fn uninstall(root: &Path, purge: bool) -> std::io::Result<Vec<PathBuf>> {
    let (unit, env, state) = paths(root);
    if root == Path::new("/") && unit.exists() {
        systemctl(&["disable", "--now", UNIT])?;
    }
    let mut removed = Vec::new();
    for f in [unit, env] {
        if f.exists() {
            std::fs::remove_file(&f)?;
            removed.push(f);
        }
    }
    if purge && state.exists() {
        std::fs::remove_dir_all(&state)?;
        removed.push(state);
    }
    if root == Path::new("/") {
        systemctl(&["daemon-reload"])?;
    }
    Ok(removed)
}

/// Writes a file only its owner can read, from its creation on.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

fn systemctl(args: &[&str]) -> std::io::Result<()> {
    let status = std::process::Command::new("systemctl").args(args).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("systemctl {} failed: {status}", args.join(" "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn install_writes_a_private_config_and_a_unit_and_uninstall_takes_them_away() {
        let dir = tempfile::tempdir().unwrap();
        let i = Install {
            root: dir.path().to_path_buf(),
            bin: PathBuf::from("/usr/local/bin/cordon-agent"),
            settings: vec![
                ("CORDON_SERVER".into(), "https://cordon.example:8443".into()),
                ("CORDON_ENROLL_TOKEN".into(), "tok\"en".into()),
            ],
        };
        let wrote = install(&i).unwrap();
        assert_eq!(wrote.len(), 3);
        let (unit, env, state) = paths(dir.path());
        let text = std::fs::read_to_string(&unit).unwrap();
        assert!(text.contains("ExecStart=/usr/local/bin/cordon-agent run\n"), "{text}");
        assert!(text.contains("EnvironmentFile=/etc/cordon/agent.env") && text.contains("CAP_NET_ADMIN"));
        let env_body = std::fs::read_to_string(&env).unwrap();
        assert!(env_body.contains("CORDON_ENROLL_TOKEN=\"tok\\\"en\"\n"), "{env_body}");
        assert_eq!(std::fs::metadata(&env).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::write(state.join("spool-file"), "x").unwrap();
        let removed = uninstall(dir.path(), false).unwrap();
        assert_eq!(removed, [unit.clone(), env.clone()]);
        assert!(state.join("spool-file").exists(), "kept without --purge");
        assert_eq!(uninstall(dir.path(), true).unwrap(), vec![state.clone()]);
        assert!(!state.exists() && !unit.exists());
    }
}
