//! Issue 19 items 2 to 4 on this live host (root, as CI runs): `cordon-agent run` reports file
//! changes in a watched directory, changes to persistence locations (a cron entry, a systemd unit,
//! root's authorized_keys) with their hashes before and after and a diff, and network connections
//! with their processes; each arrives in the lake through NATS, and SigmaHQ's own Linux rules (read
//! from the third-party corpus, never copied into the project) tag what they cover, as Cordon's pack
//! does for the rest.

use super::{Env, bin};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tests::{ServerOptions, eventually, sql};

/// SigmaHQ's Linux rules, extracted from the corpus into `dir`. The corpus is found at
/// `CORDON_CORPUS`, else `../shared/corpus` beside the checkout, else `/work/shared/corpus`.
fn sigmahq_linux_rules(dir: &Path) -> anyhow::Result<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var_os("CORDON_CORPUS").map(PathBuf::from),
        Some(here.join("../../shared/corpus")),
        Some("/work/shared/corpus".into()),
    ];
    let Some(tarball) = candidates
        .into_iter()
        .flatten()
        .map(|c| c.join("detection/sigma/sigma-rules.tar.gz"))
        .find(|t| t.exists())
    else {
        anyhow::bail!(
            "SigmaHQ's rules are read from the corpus: set CORDON_CORPUS to the directory holding detection/sigma/sigma-rules.tar.gz"
        );
    };
    let ok = Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(dir)
        .args(["--wildcards", "*/rules/linux/*"])
        .status()?
        .success();
    anyhow::ensure!(ok, "tar could not extract {}", tarball.display());
    Ok(dir.join("sigma/rules/linux"))
}

/// Puts a file back as it was when dropped (or removes it, when it was not there).
struct Restore(PathBuf, Option<Vec<u8>>);

impl Restore {
    fn keep(path: &Path) -> Self {
        Self(path.to_owned(), std::fs::read(path).ok())
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = match &self.1 {
            Some(b) => std::fs::write(&self.0, b),
            None => std::fs::remove_file(&self.0),
        };
    }
}

/// Rows of `columns` for the live host's events matching `filter`.
fn rows(api: &str, tok: &str, columns: &str, filter: &str) -> anyhow::Result<Vec<Vec<Value>>> {
    sql(api, tok, &format!("SELECT {columns} FROM events WHERE host_name = 'live-2' AND {filter}"))
}

/// Waits for at least one row.
fn first(api: &str, tok: &str, columns: &str, filter: &str) -> anyhow::Result<Vec<Value>> {
    eventually(Duration::from_secs(30), || Ok(rows(api, tok, columns, filter)?.into_iter().next()))
        .map_err(|e| e.context(format!("no event where {filter}")))
}

fn techniques(row: &[Value], at: usize) -> String {
    row[at].as_str().unwrap_or_default().to_owned()
}

#[test]
fn live_files_persistence_and_connections_arrive_tagged_by_sigmahq_linux_rules() -> anyhow::Result<()> {
    let rules_dir = tempfile::tempdir()?;
    let rules = sigmahq_linux_rules(rules_dir.path())?;
    let env = Env::start(&ServerOptions {
        args: vec!["--rules".into(), rules.display().to_string()],
        ..Default::default()
    })?;
    let (api, tok) = (env.server.api.as_str(), env.token.as_str());
    let watched = env.dir.path().join("watched");
    std::fs::create_dir(&watched)?;
    let auth_log = env.dir.path().join("auth.log");
    let failed = |n: u32| {
        format!(
            "Dec  4 10:00:{n:02} live-2 sshd[{}]: Failed password for root from 203.0.113.7 port {} ssh2\n",
            900 + n,
            40000 + n
        )
    };
    let append = |p: &Path, text: &str| -> std::io::Result<()> {
        use std::io::Write;
        std::fs::OpenOptions::new().create(true).append(true).open(p)?.write_all(text.as_bytes())
    };
    append(&auth_log, &failed(0))?; // written before the agent: history, not followed
    let agent = tests::spawn_agent(
        &bin(),
        &env.nats.url,
        &env.spool(),
        &[
            "run",
            // A debug build's budget lifted (it costs about ten times a release build's CPU), so
            // the hashes asserted below are taken.
            "--cpu-budget-pct",
            "100",
            "--host",
            "live-2",
            "--max-secs",
            "300",
            "--watch",
            &watched.display().to_string(),
            "--auth-log",
            &auth_log.display().to_string(),
        ],
    )?;
    super::wait_until_following(api, tok, "live-2")?;
    let tag = std::process::id();

    // Logins: three failures, then logrotate renames the log, the daemon writes two more to the
    // renamed file (its handle) and the rest to a new one.
    (1..=3).try_for_each(|n| append(&auth_log, &failed(n)))?;
    std::thread::sleep(Duration::from_millis(500));
    std::fs::rename(&auth_log, env.dir.path().join("auth.log.1"))?;
    (4..=5).try_for_each(|n| append(&env.dir.path().join("auth.log.1"), &failed(n)))?;
    (6..=7).try_for_each(|n| append(&auth_log, &failed(n)))?;

    // Files in the watched directory: written, renamed, deleted.
    // (A pause between steps: a file gone before the agent reads it is reported without its hash.)
    let pause = || std::thread::sleep(Duration::from_millis(300));
    std::fs::write(watched.join("report.txt"), b"quarterly numbers")?;
    pause();
    std::fs::rename(watched.join("report.txt"), watched.join("report.txt.locked"))?;
    pause();
    std::fs::remove_file(watched.join("report.txt.locked"))?;
    // Persistence: a cron entry, a systemd unit, a key added to root's authorized_keys.
    let cron = PathBuf::from(format!("/etc/cron.d/cordon-e2e-{tag}"));
    let _cron = Restore::keep(&cron);
    std::fs::write(&cron, "* * * * * root /tmp/.x/payload\n")?;
    let unit = PathBuf::from(format!("/etc/systemd/system/cordon-e2e-{tag}.service"));
    let _unit = Restore::keep(&unit);
    std::fs::write(&unit, "[Service]\nExecStart=/tmp/.x/payload\n")?;
    std::fs::create_dir_all("/root/.ssh")?;
    let keys = PathBuf::from("/root/.ssh/authorized_keys");
    let _keys = Restore::keep(&keys);
    let mut text = std::fs::read_to_string(&keys).unwrap_or_default();
    let added = format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2e2e{tag} mallory@c2");
    text.push_str(&added);
    text.push('\n');
    std::fs::write(&keys, &text)?;
    // A shell connecting out (a reverse shell's shape) to a listener here, which accepts.
    let listener = std::net::TcpListener::bind("127.0.0.2:0")?;
    let port = listener.local_addr()?.port();
    let mut shell = Command::new("/bin/bash")
        .args(["-c", &format!("exec 3<>/dev/tcp/127.0.0.2/{port}; read -t 2 -u 3 line; exit 0")])
        .spawn()?;
    let shell_pid = shell.id();
    let (_conn, _) = listener.accept()?;
    shell.wait()?;

    let cols = "event_action, file_name, file_hash_sha256, file_original_path, extra, array_to_string(threat_technique_id, ',')";
    let created = first(
        api,
        tok,
        cols,
        "event_kind = 'file' AND file_name = 'report.txt' AND event_action = 'create'",
    )?;
    assert_eq!(created[2].as_str().map(str::len), Some(64), "hashed: {created:?}");
    let renamed = first(
        api,
        tok,
        cols,
        "event_kind = 'file' AND file_name = 'report.txt.locked' AND event_action = 'rename'",
    )?;
    assert!(renamed[3].as_str().is_some_and(|p| p.ends_with("/watched/report.txt")), "{renamed:?}");
    first(
        api,
        tok,
        cols,
        "event_kind = 'file' AND file_name = 'report.txt.locked' AND event_action = 'delete'",
    )?;

    let cron_row =
        first(api, tok, cols, &format!("event_kind = 'file' AND file_path = '{}'", cron.display()))?;
    assert!(techniques(&cron_row, 5).contains("T1053.003"), "SigmaHQ's cron rule tags it: {cron_row:?}");
    let extra: Value = serde_json::from_str(cron_row[4].as_str().unwrap_or("{}"))?;
    let p = &extra["cordon"]["persistence"];
    assert_eq!(
        (p["kind"].as_str(), p["diff"].as_str()),
        (Some("cron"), Some("+* * * * * root /tmp/.x/payload\n")),
        "{extra}"
    );
    let unit_row =
        first(api, tok, cols, &format!("event_kind = 'file' AND file_path = '{}'", unit.display()))?;
    assert!(techniques(&unit_row, 5).contains("T1543.002"), "the pack's systemd rule tags it: {unit_row:?}");
    let keys_row = first(
        api,
        tok,
        cols,
        "event_kind = 'file' AND file_path = '/root/.ssh/authorized_keys' AND event_action = 'modify'",
    )
    .or_else(|_| first(api, tok, cols, "event_kind = 'file' AND file_path = '/root/.ssh/authorized_keys'"))?;
    assert!(techniques(&keys_row, 5).contains("T1098.004"), "{keys_row:?}");
    let extra: Value = serde_json::from_str(keys_row[4].as_str().unwrap_or("{}"))?;
    let p = &extra["cordon"]["persistence"];
    assert_eq!(p["kind"], "ssh_authorized_keys");
    assert!(p["diff"].as_str().is_some_and(|d| d.contains(&format!("+{added}"))), "the key added: {extra}");
    assert!(p["after_sha256"].is_string() && p["before_sha256"] != p["after_sha256"], "{extra}");

    let sshd = eventually(Duration::from_secs(30), || {
        let r = rows(api, tok, "process_pid", "event_kind = 'authentication' AND event_outcome = 'failure'")?;
        Ok((r.len() >= 7).then_some(r))
    })?;
    let mut pids: Vec<u64> = sshd.iter().filter_map(|r| r[0].as_u64()).collect();
    pids.sort_unstable();
    assert_eq!(
        pids,
        (901..=907).collect::<Vec<u64>>(),
        "each line after the start once, across the rotation"
    );

    let net = "event_action, process_pid, process_executable, destination_ip, destination_port, network_direction, array_to_string(threat_technique_id, ',')";
    let connect = first(
        api,
        tok,
        net,
        &format!("event_kind = 'network' AND event_action = 'connect' AND destination_port = {port}"),
    )?;
    assert_eq!(connect[1].as_u64(), Some(u64::from(shell_pid)), "the shell owns the connection: {connect:?}");
    assert!(connect[2].as_str().is_some_and(|x| x.ends_with("/bash")), "{connect:?}");
    assert_eq!((connect[3].as_str(), connect[5].as_str()), (Some("127.0.0.2"), Some("egress")));
    assert!(
        techniques(&connect, 6).contains("T1059.004"),
        "SigmaHQ's reverse shell rule tags it: {connect:?}"
    );
    let accept = first(
        api,
        tok,
        net,
        &format!("event_kind = 'network' AND event_action = 'accept' AND destination_port = {port}"),
    )?;
    assert_eq!(
        (accept[1].as_u64(), accept[5].as_str()),
        (Some(u64::from(tag)), Some("ingress")),
        "{accept:?}"
    );
    first(api, tok, "event_action", "event_kind = 'network' AND event_action = 'listen'")?;

    // The inventory: this host's kernel, and the packages dpkg lists (bash among them).
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")?.trim().to_owned();
    let host = first(api, tok, "extra", "event_kind = 'host' AND event_action = 'inventory'")?;
    let extra: Value = serde_json::from_str(host[0].as_str().unwrap_or("{}"))?;
    assert_eq!(extra["host"]["os"]["kernel"], kernel.as_str(), "{extra}");
    if Path::new("/var/lib/dpkg/status").exists() {
        let bash = first(api, tok, "extra", "event_kind = 'package' AND extra LIKE '%\"name\":\"bash\"%'")?;
        assert!(bash[0].as_str().is_some_and(|x| x.contains("\"type\":\"deb\"")), "{bash:?}");
    }

    Command::new("kill").args(["-TERM", &agent.id().to_string()]).status()?;
    let (code, summary) = tests::agent_summary(agent)?;
    assert_eq!(code, 0, "{summary}");
    let s = &summary["sources"];
    assert!(
        s["file"]["watches"].as_u64() > Some(10),
        "the persistence locations and the watched directory: {summary}"
    );
    assert_eq!(s["file"]["watch_failures"], 0, "{summary}");
    assert!(s["network"]["polls"].as_u64() > Some(0), "{summary}");
    assert_eq!(s["login"]["files"][0]["stats"]["rotations"], 1, "{summary}");
    Ok(())
}
