//! The enforcement hook: terminating process starts the policy blocks, at the edge (the agent's own
//! copy of the rules and policy, [`crate::edge`]). Commands arriving unsigned on the bus are refused:
//! the server acts only within standing orders the approvers signed ([`crate::standing`]).
//!
//! A command is carried out only if it has not expired and its pid still runs the executable the event
//! reported (the file name of `/proc/<pid>/exe` equals the event's, case-insensitively), so a pid
//! reused by another program is never killed. Every command gets an outcome in the run summary.
//!
//! Whatever the server sends (its rules and policy included), the agent never terminates itself or
//! the programs in [`PROTECTED`]: a compromised server must not be able to take the fleet's hosts
//! down or cut off their management (RELIABILITY.md's agent-side deny-list).

use futures::StreamExt;
use schemas::wire::Command;
use std::time::Duration;

/// What happened to one command.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    /// Command id.
    pub command: String,
    /// The process id.
    pub pid: i64,
    /// `terminated`, or `refused: <why>`.
    pub result: String,
}

/// Programs an agent never terminates (by file name, case-insensitively): init and the services a
/// host cannot lose, and the agent itself.
pub const PROTECTED: &[&str] = &[
    "init",
    "systemd",
    "systemd-journald",
    "systemd-logind",
    "systemd-udevd",
    "dbus-daemon",
    "sshd",
    "cordon-agent",
    // Windows' critical processes, for when the hook runs there.
    "system",
    "smss.exe",
    "csrss.exe",
    "wininit.exe",
    "winlogon.exe",
    "services.exe",
    "lsass.exe",
];

fn file_name(p: &str) -> String {
    p.rsplit(['\\', '/']).next().unwrap_or(p).to_ascii_lowercase()
}

/// Carries out one command on this machine.
pub fn execute(cmd: &Command, now_micros: i64) -> Outcome {
    let out = |result: String| Outcome { command: cmd.id.clone(), pid: cmd.pid, result };
    if cmd.kind != "terminate" {
        return out(format!("refused: unknown command kind {:?}", cmd.kind));
    }
    if now_micros > cmd.expires_at {
        return out("refused: expired".to_owned());
    }
    if cmd.pid <= 1 {
        return out("refused: not a killable pid".to_owned());
    }
    if cmd.pid == i64::from(std::process::id()) {
        return out("refused: the agent itself".to_owned());
    }
    let running = match std::fs::read_link(format!("/proc/{}/exe", cmd.pid)) {
        Ok(p) => p.to_string_lossy().into_owned(),
        Err(e) => return out(format!("refused: process {} not found ({e})", cmd.pid)),
    };
    let running = running.trim_end_matches(" (deleted)");
    if PROTECTED.contains(&file_name(running).as_str()) {
        return out(format!("refused: {running} is protected"));
    }
    if file_name(running) != file_name(&cmd.executable) {
        return out(format!(
            "refused: pid {} runs {running}, not {} (the pid was reused)",
            cmd.pid, cmd.executable
        ));
    }
    match std::process::Command::new("kill").args(["-KILL", &cmd.pid.to_string()]).status() {
        Ok(s) if s.success() => out("terminated".to_owned()),
        Ok(s) => out(format!("refused: kill exited {s}")),
        Err(e) => out(format!("refused: cannot run kill ({e})")),
    }
}

/// The command subscriptions of one agent process: each identity it ships for subscribes to its
/// own command subject (`<prefix>.<tenant>.<agent>.cmd`) when its shipper opens, before it ships
/// anything, so no command about its events is missed and no other agent's command is read.
#[derive(Debug)]
pub struct Inbox {
    subs: std::sync::Mutex<Vec<async_nats::Subscriber>>,
}

impl Inbox {
    /// An empty inbox.
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self { subs: std::sync::Mutex::new(Vec::new()) })
    }

    /// Subscribes to one identity's command subject through that identity's own connection, and
    /// waits until the server has the interest.
    pub async fn subscribe(&self, client: &async_nats::Client, subject: String) -> Result<(), String> {
        let sub = client.subscribe(subject).await.map_err(|e| e.to_string())?;
        client.flush().await.map_err(|e| e.to_string())?;
        self.subs.lock().unwrap_or_else(|e| e.into_inner()).push(sub);
        Ok(())
    }

    /// The subjects subscribed so far, in order.
    pub fn len(&self) -> usize {
        self.subs.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when no identity has subscribed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take(&self) -> Vec<async_nats::Subscriber> {
        std::mem::take(&mut *self.subs.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Listens on the inbox's subscriptions for `for_secs`, carrying out what arrives.
pub async fn listen(inbox: &Inbox, for_secs: u64) -> Vec<Outcome> {
    let mut sub = futures::stream::select_all(inbox.take());
    let mut outcomes = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(for_secs);
    loop {
        let msg = tokio::select! {
            m = sub.next() => m,
            _ = tokio::time::sleep_until(deadline) => None,
        };
        let Some(msg) = msg else { break };
        match serde_json::from_slice::<Command>(&msg.payload) {
            // Unsigned commands from the bus are never carried out: the server acts only through
            // standing orders the approvers signed (`cordon-agent respond`).
            Ok(cmd) => {
                let o = Outcome {
                    command: cmd.id.clone(),
                    pid: cmd.pid,
                    result: "refused: unsigned; the server acts only within a signed standing order".into(),
                };
                tracing::warn!(pid = o.pid, result = %o.result, "enforcement");
                outcomes.push(o);
            }
            // Standing orders' triggers share the subject; `cordon-agent respond` carries them out.
            Err(_)
                if serde_json::from_slice::<schemas::response::standing::Trigger>(&msg.payload).is_ok() => {}
            Err(e) => outcomes.push(Outcome {
                command: String::new(),
                pid: 0,
                result: format!("refused: malformed command ({e})"),
            }),
        }
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(pid: i64, exe: &str, expires_at: i64) -> Command {
        Command {
            id: "c1".into(),
            kind: "terminate".into(),
            pid,
            executable: exe.into(),
            entity_id: None,
            event_id: "e".into(),
            reason: "r".into(),
            issued_at: 0,
            expires_at,
        }
    }

    #[test]
    fn terminates_only_the_process_the_event_named() {
        let mut child = std::process::Command::new("sleep").arg("300").spawn().unwrap();
        let pid = i64::from(child.id());
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap().to_string_lossy().into_owned();
        // Another program's name: refused, the process lives.
        let o = execute(&cmd(pid, "C:\\Windows\\System32\\vssadmin.exe", i64::MAX), 0);
        assert!(o.result.starts_with("refused: pid"), "{o:?}");
        assert!(child.try_wait().unwrap().is_none());
        // Expired: refused.
        assert_eq!(execute(&cmd(pid, &exe, 5), 10).result, "refused: expired");
        // The right one: killed.
        assert_eq!(execute(&cmd(pid, &exe, i64::MAX), 0).result, "terminated");
        let status = child.wait().unwrap();
        assert!(!status.success());
        assert!(execute(&cmd(pid, &exe, i64::MAX), 0).result.starts_with("refused: process"));
    }

    #[test]
    fn never_terminates_itself_or_a_protected_program() {
        let me = i64::from(std::process::id());
        let exe = std::fs::read_link("/proc/self/exe").unwrap().to_string_lossy().into_owned();
        assert_eq!(execute(&cmd(me, &exe, i64::MAX), 0).result, "refused: the agent itself");
        // A process whose program is named like a protected one: refused, and it lives.
        let dir = tempfile::tempdir().unwrap();
        let sshd = dir.path().join("sshd");
        let sleep =
            ["/usr/bin/sleep", "/bin/sleep"].into_iter().find(|p| std::path::Path::new(p).exists()).unwrap();
        std::fs::copy(sleep, &sshd).unwrap();
        // Another test forking while the copy's write handle was open makes exec fail with
        // "text file busy" until that child execs too: try again briefly.
        let mut child = (0..100)
            .find_map(|_| match std::process::Command::new(&sshd).arg("300").spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    None
                }
                other => Some(other.unwrap()),
            })
            .expect("the copied program starts");
        let pid = i64::from(child.id());
        let o = execute(&cmd(pid, "/usr/sbin/sshd", i64::MAX), 0);
        assert!(o.result.starts_with("refused:") && o.result.ends_with("is protected"), "{o:?}");
        assert!(child.try_wait().unwrap().is_none(), "the protected process still runs");
        let _ = child.kill();
        let _ = child.wait();
    }
}
