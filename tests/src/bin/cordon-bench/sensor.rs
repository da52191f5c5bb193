//! Issue 19's sensor benchmark: process starts per second the live agent follows without loss, and
//! its CPU and RSS at each rate, side by side in one run with what a user would run instead:
//! auditd (an `execve` audit rule, records written to its log) and a `/proc` polling baseline (the
//! agent's own `--process procfs`, 100 ms scans).
//!
//! Each rate runs a generator process that starts `/bin/true` at that rate for `secs` seconds; a
//! start counts as followed when the lake (agent) or the audit log (auditd) holds it with the
//! generator as its parent. CPU is the follower's own (user + system) over the window, as a share
//! of one core; RSS its peak (`VmHWM`). The kernel's share of auditing (`kauditd`) is reported apart.

use crate::path::path_server;
use crate::proc_cpu;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One follower at one rate.
struct Measured {
    launched: u64,
    followed: u64,
    cpu_share: f64,
    rss_mib: f64,
    extra: String,
}

/// `cordon-bench --generate RATE SECS`: starts `/bin/true` RATE times a second for SECS seconds,
/// reaping each, and prints how many it started.
pub(crate) fn generate(rate: u64, secs: u64) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mut n = 0u64;
    let mut children: Vec<Child> = Vec::new();
    while t0.elapsed() < Duration::from_secs(secs) {
        let due = (t0.elapsed().as_secs_f64() * rate as f64) as u64;
        while n < due {
            children.push(Command::new("/bin/true").spawn()?);
            n += 1;
        }
        children.retain_mut(|c| c.try_wait().ok().flatten().is_none());
        std::thread::sleep(Duration::from_micros(500));
    }
    for mut c in children {
        c.wait()?;
    }
    println!("{n}");
    Ok(())
}

/// Runs the generator and returns (its pid, how many it started).
fn run_generator(rate: u64, secs: u64) -> anyhow::Result<(u32, u64)> {
    let child = Command::new(std::env::current_exe()?)
        .args(["--generate", &rate.to_string(), &secs.to_string()])
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let out = child.wait_with_output()?;
    Ok((pid, String::from_utf8_lossy(&out.stdout).trim().parse()?))
}

/// Peak resident memory of a process, MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    crate::status_kib(&pid.to_string(), "VmHWM").map_or(f64::NAN, |kib| kib as f64 / 1024.0)
}

/// CPU seconds a process's threads ran, from the scheduler's nanosecond counts
/// (`/proc/PID/task/*/schedstat`; the tick-based `stat` counters are too coarse for a few percent
/// over seconds), else from `stat`. Every thread of the followers lives as long as they do.
fn cpu_of(pid: u32) -> f64 {
    let threads = cpu_by_thread(pid);
    if threads.is_empty() { proc_cpu(&pid.to_string()).0 } else { threads.values().map(|t| t.0).sum() }
}

/// CPU seconds and times scheduled by thread name (`comm`; threads of one name summed), from the
/// scheduler's counts (`schedstat`: run time, wait time, timeslices); threads without them are left
/// out.
fn cpu_by_thread(pid: u32) -> std::collections::BTreeMap<String, (f64, u64)> {
    let mut out = std::collections::BTreeMap::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        let fields: Vec<&str> = stat.split_whitespace().collect();
        let (Some(ns), Some(runs)) = (
            fields.first().and_then(|f| f.parse::<f64>().ok()),
            fields.get(2).and_then(|f| f.parse::<u64>().ok()),
        ) else {
            continue;
        };
        let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default().trim().to_owned();
        let e = out.entry(name).or_insert((0.0, 0));
        e.0 += ns / 1e9;
        e.1 += runs;
    }
    out
}

/// Each thread's share of a core between two [`cpu_by_thread`] readings over `secs`, and how often
/// it was scheduled per process started (`starts`): a wakeup costs a context switch each way.
fn thread_shares(
    before: &std::collections::BTreeMap<String, (f64, u64)>,
    after: &std::collections::BTreeMap<String, (f64, u64)>,
    secs: u64,
    starts: u64,
) -> String {
    after
        .iter()
        .map(|(name, (s, runs))| {
            let (s0, runs0) = before.get(name).copied().unwrap_or((0.0, 0));
            let share = (s - s0) / secs as f64;
            let per_start = (runs - runs0) as f64 / starts.max(1) as f64;
            format!("{name} {:.2}% {per_start:.2}/start", 100.0 * share)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the agent runs against: the in-process server's store, NATS, the agent binary, spools.
struct Rig<'a> {
    rt: &'a tokio::runtime::Runtime,
    store: &'a store::Store,
    nats_url: &'a str,
    agent_bin: &'a Path,
    spool: &'a Path,
}

/// The agent (`agent_bin run`, one process source facility) followed at `rate`.
fn agent_at(rig: &Rig, facility: &str, rate: u64, secs: u64) -> anyhow::Result<Measured> {
    let Rig { rt, store, nats_url, agent_bin, spool } = *rig;
    let host = format!("bench-{facility}-{rate}");
    let mut cmd = Command::new(agent_bin);
    if agent_bin == std::env::current_exe()?.as_path() {
        cmd.arg("agent");
    }
    let agent = cmd
        .args(["--nats-url", nats_url, "--spool-dir"])
        .arg(spool.join(&host))
        .args([
            "run",
            "--host",
            &host,
            "--process",
            facility,
            "--no-network",
            "--no-persistence",
            "--no-logins",
            "--no-libraries",
            "--no-firewall",
        ])
        .args(["--inventory-secs", "0"])
        .args(std::env::var("CORDON_BENCH_AGENT_ARGS").unwrap_or_default().split_whitespace())
        .envs(crate::path::agent_env("default", &spool.join(&host)))
        .env("CORDON_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_secs(3)); // enrolled, connected, following
    let (c0, t0) = (cpu_of(agent.id()), cpu_by_thread(agent.id()));
    let (gen_pid, launched) = run_generator(rate, secs)?;
    let cpu = cpu_of(agent.id()) - c0;
    let threads = thread_shares(&t0, &cpu_by_thread(agent.id()), secs, launched);
    let rss = peak_rss_mib(agent.id());
    Command::new("kill").args(["-TERM", &agent.id().to_string()]).status()?;
    let out = agent.wait_with_output()?;
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap_or_default();
    let sql = format!(
        "SELECT count(DISTINCT process_pid) FROM events WHERE host_name = '{host}' AND event_action = 'start' AND parent_pid = {gen_pid}"
    );
    let mut followed = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        let out = rt.block_on(store.sql("default", &sql, store::query::SqlLimits::default()))?;
        followed = out.rows.first().and_then(|r| r[0].as_u64()).unwrap_or(0);
        if followed >= launched {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let p = &summary["sources"]["process"];
    Ok(Measured {
        launched,
        followed,
        cpu_share: cpu / secs as f64,
        rss_mib: rss,
        extra: format!(
            "enrich_missed {} kernel_overruns {} queue_dropped {} (threads: {threads})",
            p["enrich_missed"], p["kernel_overruns"], p["queue_dropped"]
        ),
    })
}

/// auditd with an `execve` rule at `rate`: its records in the log with the generator as parent.
fn auditd_at(dir: &Path, rate: u64, secs: u64) -> anyhow::Result<Measured> {
    let log = dir.join(format!("audit-{rate}.log"));
    let conf = dir.join(format!("auditd-{rate}.conf"));
    std::fs::write(
        &conf,
        format!(
            "log_file = {}\nlog_format = ENRICHED\nflush = INCREMENTAL_ASYNC\nfreq = 50\nmax_log_file = 8192\n\
             max_log_file_action = ROTATE\nnum_logs = 2\nspace_left = 75\nspace_left_action = IGNORE\n\
             admin_space_left = 50\nadmin_space_left_action = IGNORE\ndisk_full_action = IGNORE\n\
             disk_error_action = IGNORE\n",
            log.display()
        ),
    )?;
    // `-c` names the directory holding auditd.conf.
    let conf_dir = dir.join(format!("auditd-{rate}"));
    std::fs::create_dir_all(&conf_dir)?;
    std::fs::rename(&conf, conf_dir.join("auditd.conf"))?;
    let mut auditd = Command::new("auditd").args(["-n", "-c"]).arg(&conf_dir).spawn()?;
    std::thread::sleep(Duration::from_secs(2));
    let rule = Command::new("auditctl")
        .args(["-a", "always,exit", "-F", "arch=b64", "-S", "execve", "-k", "cordon-bench"])
        .status()?;
    anyhow::ensure!(rule.success(), "auditctl refused the execve rule");
    let kauditd = kauditd_pid();
    let (c0, k0) = (cpu_of(auditd.id()), kauditd.map_or(0.0, cpu_of));
    let (gen_pid, launched) = run_generator(rate, secs)?;
    std::thread::sleep(Duration::from_secs(2));
    let (cpu, kcpu) = (cpu_of(auditd.id()) - c0, kauditd.map_or(0.0, cpu_of) - k0);
    let rss = peak_rss_mib(auditd.id());
    let _ = Command::new("auditctl").arg("-D").stdout(Stdio::null()).status();
    Command::new("kill").args(["-TERM", &auditd.id().to_string()]).status()?;
    auditd.wait()?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let needle = format!(" ppid={gen_pid} ");
    let followed =
        text.lines().filter(|l| l.starts_with("type=SYSCALL") && l.contains(&needle)).count() as u64;
    Ok(Measured {
        launched,
        followed,
        cpu_share: cpu / secs as f64,
        rss_mib: rss,
        extra: format!("kauditd (kernel) {:.2}% of a core", 100.0 * kcpu / secs as f64),
    })
}

fn kauditd_pid() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        (std::fs::read_to_string(e.path().join("comm")).ok()?.trim() == "kauditd").then_some(pid)
    })
}

fn line(name: &str, rate: u64, m: &Measured) {
    println!(
        "  {name:<22} {rate:>5}/s  followed {:>6}/{:<6} ({:>6.2}%)  CPU {:>6.2}% of a core  peak RSS {:>6.1} MiB  {}",
        m.followed,
        m.launched,
        100.0 * m.followed as f64 / m.launched.max(1) as f64,
        100.0 * m.cpu_share,
        m.rss_mib,
        m.extra
    );
}

/// The whole comparison.
pub(crate) fn sensor(rates: &[u64], secs: u64, agent_bin: Option<PathBuf>) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (nats, rt, running) = path_server(tmp.path(), None)?;
    let agent_bin = match agent_bin {
        Some(p) => p,
        None => std::env::current_exe()?,
    };
    println!(
        "sensor: {} starting /bin/true at each rate for {secs} s; agent {}; auditd {}",
        std::env::consts::ARCH,
        agent_bin.display(),
        Command::new("auditd")
            .arg("-v")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    );
    let spool = tmp.path().join("spool");
    let rig =
        Rig { rt: &rt, store: &running.store, nats_url: &nats.url, agent_bin: &agent_bin, spool: &spool };
    for &rate in rates {
        let m = agent_at(&rig, "netlink", rate, secs)?;
        line("cordon-agent netlink", rate, &m);
        let m = agent_at(&rig, "procfs", rate, secs)?;
        line("cordon-agent procfs", rate, &m);
        match auditd_at(tmp.path(), rate, secs) {
            Ok(m) => line("auditd execve rule", rate, &m),
            Err(e) => println!("  auditd execve rule     {rate:>5}/s  not measured: {e:#}"),
        }
    }
    rt.block_on(running.stop())?;
    Ok(())
}
