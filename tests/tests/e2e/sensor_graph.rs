//! Issue 19's last items on this live host (root, as CI runs): each source's thread holds only the
//! capabilities it needs; a library preloaded from a world-writable directory and a firewall rule
//! added with `nft` arrive in the lake through NATS, tagged by Cordon's pack; and the entity graph
//! links what a dropper did from live events as it does from the scenario: the file written, the
//! process started from it, the connection it opened.

use super::{Env, bin};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tests::{ServerOptions, eventually, get, sql};

const HOST: &str = "live-3";
const PTRACE: u64 = 1 << 19;
const DAC_READ_SEARCH: u64 = 1 << 2;
const NET_ADMIN: u64 = 1 << 12;

/// Each thread of process `pid`: its name and its effective capabilities.
fn threads(pid: u32) -> anyhow::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let t = t?.path();
        // A thread that ended since the listing is skipped.
        let (Ok(comm), Ok(status)) =
            (std::fs::read_to_string(t.join("comm")), std::fs::read_to_string(t.join("status")))
        else {
            continue;
        };
        let comm = comm.trim().to_owned();
        let eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .ok_or_else(|| anyhow::anyhow!("no CapEff in {}", t.display()))?;
        out.push((comm, eff));
    }
    Ok(out)
}

/// What each source's thread may hold (`comm` is cut at 15 bytes); every other thread holds none.
fn allowed(comm: &str) -> u64 {
    match comm {
        "cordon-process" | "cordon-library" => PTRACE | DAC_READ_SEARCH,
        "cordon-network" => PTRACE,
        "cordon-file" | "cordon-login" | "cordon-inventor" => DAC_READ_SEARCH,
        "cordon-firewall" => NET_ADMIN,
        _ => 0,
    }
}

/// Removes the nftables table when dropped.
struct Table(String);

impl Drop for Table {
    fn drop(&mut self) {
        let _ = Command::new("nft").args(["delete", "table", "inet", &self.0]).status();
    }
}

fn nft(args: &str) -> anyhow::Result<()> {
    let ok = Command::new("nft").args(args.split(' ')).status()?.success();
    anyhow::ensure!(ok, "nft {args} failed (apt-get install nftables; the test runs as root)");
    Ok(())
}

/// A small system library to preload (a copy of one this test maps itself).
fn a_system_library() -> anyhow::Result<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libm.so") || p.contains("/libgcc_s.so"))
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("no libm or libgcc_s mapped by this test"))
}

fn rows(api: &str, tok: &str, columns: &str, filter: &str) -> anyhow::Result<Vec<Vec<Value>>> {
    sql(api, tok, &format!("SELECT {columns} FROM events WHERE host_name = '{HOST}' AND {filter}"))
}

fn first(api: &str, tok: &str, columns: &str, filter: &str) -> anyhow::Result<Vec<Value>> {
    eventually(Duration::from_secs(30), || Ok(rows(api, tok, columns, filter)?.into_iter().next()))
        .map_err(|e| e.context(format!("no event where {filter}")))
}

#[test]
fn live_sources_hold_least_privilege_and_the_graph_links_a_droppers_file_process_and_connection()
-> anyhow::Result<()> {
    let env = Env::start(&ServerOptions::default())?;
    let (api, tok) = (env.server.api.as_str(), env.token.as_str());
    let drop_dir = env.dir.path().join("downloads");
    std::fs::create_dir(&drop_dir)?;
    let agent = tests::spawn_agent(
        &bin(),
        &env.nats.url,
        &env.spool(),
        &[
            "--heartbeat-secs",
            "1",
            "run",
            "--cpu-budget-pct",
            "100",
            "--host",
            HOST,
            "--max-secs",
            "300",
            "--watch",
            &drop_dir.display().to_string(),
            "--no-persistence",
            "--no-logins",
            "--inventory-secs",
            "0",
        ],
    )?;
    super::wait_until_following(api, tok, HOST)?;
    let tag = std::process::id();

    // Least privilege: every thread of the agent, as the kernel reports it.
    let held = threads(agent.id())?;
    for (comm, eff) in &held {
        assert_eq!(*eff, allowed(comm), "thread {comm} holds {eff:#x}: {held:?}");
    }
    for source in ["cordon-process", "cordon-file", "cordon-network", "cordon-library", "cordon-firewall"] {
        assert!(held.iter().any(|(c, _)| c == source), "no {source} thread: {held:?}");
    }

    // A dropper: a program written to the downloads, run, connecting out to a listener here.
    let dropper = drop_dir.join("invoice-viewer");
    std::fs::copy("/bin/bash", &dropper)?;
    std::thread::sleep(Duration::from_millis(1500)); // a created file is reported once it settles
    let listener = std::net::TcpListener::bind("127.0.0.3:0")?;
    let port = listener.local_addr()?.port();
    let mut run = Command::new(&dropper)
        .args(["-c", &format!("exec 3<>/dev/tcp/127.0.0.3/{port}; read -t 3 -u 3 line; exit 0")])
        .spawn()?;
    let dropper_pid = run.id();
    let (_conn, _) = listener.accept()?;

    // A library preloaded from /dev/shm (world-writable), into a process that lives a while.
    let lib = PathBuf::from(format!("/dev/shm/cordon-e2e-{tag}-libhook.so"));
    std::fs::copy(a_system_library()?, &lib)?;
    let mut preloaded = Command::new("/bin/sleep").arg("6").env("LD_PRELOAD", &lib).spawn()?;

    // A firewall rule added.
    let table = Table(format!("cordon_e2e_{tag}"));
    nft(&format!("add table inet {}", table.0))?;
    nft(&format!(
        "add chain inet {} input {{ type filter hook input priority 0 ; policy accept ; }}",
        table.0
    ))?;
    nft(&format!("add rule inet {} input tcp dport 9 drop", table.0))?;
    run.wait()?;

    let library = first(
        api,
        tok,
        "process_pid, dll_path, array_to_string(threat_technique_id, ','), extra",
        &format!("event_kind = 'library' AND dll_path = '{}'", lib.display()),
    )?;
    assert_eq!(library[0].as_u64(), Some(u64::from(preloaded.id())), "{library:?}");
    assert!(library[2].as_str().is_some_and(|t| t.contains("T1574.006")), "the pack tags it: {library:?}");
    assert!(library[3].as_str().is_some_and(|x| x.contains("\"reason\":\"writable-dir\"")), "{library:?}");
    preloaded.kill()?;
    preloaded.wait()?;
    let _ = std::fs::remove_file(&lib);

    let fw = eventually(Duration::from_secs(30), || {
        let r = rows(
            api,
            tok,
            "process_name, array_to_string(threat_technique_id, ','), extra",
            "event_action = 'firewall-changed'",
        )?;
        Ok(r.into_iter().find(|r| r[2].as_str().is_some_and(|x| x.contains("tcp dport 9 drop"))))
    })?;
    assert_eq!(fw[0].as_str(), Some("nft"), "the committing process: {fw:?}");
    assert!(fw[1].as_str().is_some_and(|t| t.contains("T1562.004")), "{fw:?}");

    // The graph: the file written, the process started from it, the connection it opened.
    let start = first(
        api,
        tok,
        "process_entity_id",
        &format!("event_kind = 'process' AND event_action = 'start' AND process_pid = {dropper_pid}"),
    )?;
    let entity = start[0].as_str().unwrap_or_default().to_owned();
    let file_node = format!("file:{}@{HOST}", dropper.display().to_string().to_ascii_lowercase());
    let node = format!("process:{entity}");
    let edges = eventually(Duration::from_secs(30), || {
        let url = format!("{api}/api/v1/graph/neighbors?node={}&hops=1", tests::urlencode(&node));
        let (status, nb) = get(&url, Some(tok))?;
        let edges: Vec<(String, String, String)> = nb["edges"]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|e| {
                        let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
                        (s("from"), s("kind"), s("to"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let linked = edges.iter().any(|(_, k, to)| k == "connected_to" && to == "ip:127.0.0.3");
        Ok((status == 200 && linked).then_some(edges))
    })?;
    assert!(
        edges.contains(&(file_node.clone(), "executed".into(), node.clone())),
        "started from the file written: {edges:?}"
    );
    assert!(edges.iter().any(|(_, k, to)| k == "spawned" && *to == node), "its parent: {edges:?}");

    // Heartbeats say what each source kept.
    let (_, agents) = get(&format!("{api}/api/v1/agents"), Some(tok))?;
    let me = agents["agents"].as_array().and_then(|l| l.iter().find(|a| a["host"] == HOST)).cloned();
    let sources = me.as_ref().map(|a| a["sources"].clone()).unwrap_or_default();
    let kept = |name: &str| -> Vec<String> {
        sources
            .as_array()
            .and_then(|l| l.iter().find(|s| s["name"] == name))
            .and_then(|s| serde_json::from_value(s["capabilities"].clone()).ok())
            .unwrap_or_default()
    };
    assert_eq!(kept("firewall"), vec!["CAP_NET_ADMIN"], "{sources}");
    assert_eq!(kept("process"), vec!["CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"], "{sources}");

    Command::new("kill").args(["-TERM", &agent.id().to_string()]).status()?;
    let (code, summary) = tests::agent_summary(agent)?;
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["sources"]["shipper"]["capabilities"], serde_json::json!([]), "{summary}");
    assert!(summary["sources"]["firewall"]["changes"].as_u64() >= Some(1), "{summary}");
    drop(table);
    assert!(!Path::new(&lib).exists());
    Ok(())
}
