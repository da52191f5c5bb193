//! Starting each source other than processes on a thread of its own (see [`super::spawn_source`]):
//! files and persistence, logins, inventory, network, loaded libraries and the firewall.

use super::{
    RunOptions, Running, budget, files, firewall, health, inventory, libraries, logins, network, persistence,
    spawn_source,
};
use crate::AgentError;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Starts the file source: the persistence locations and the paths asked for, through inotify. A
/// kernel that refuses inotify leaves the source stopped, saying why (heartbeats carry it).
pub(super) fn start_file_source(
    opts: &RunOptions,
    tx: super::queue::Sender,
    stop: Arc<AtomicBool>,
) -> Result<Running, AgentError> {
    let mut targets =
        if opts.persistence { persistence::locations(std::path::Path::new("/")) } else { Vec::new() };
    targets.extend(opts.watch.iter().map(|p| files::Target { path: p.clone(), kind: None, recursive: true }));
    let gauge = health::Gauge::new("file", "inotify", false);
    let out = health::Outlet::new(tx, Arc::clone(&gauge));
    let host = opts.host.clone();
    spawn_source("file", gauge, move || {
        let mut src = match files::FileSource::open(targets, &host) {
            Ok(s) => s,
            Err(e) => {
                out.fail("inotify refused", &e);
                return serde_json::json!({"error": e.to_string()});
            }
        };
        let mut trims = budget::trims();
        while !stop.load(Ordering::Relaxed) {
            src.budget(budget::degraded(), trims != budget::trims());
            trims = budget::trims();
            out.offer_all(src.read(&|n| out.gauge().lost(n)));
            std::thread::sleep(Duration::from_millis(50));
        }
        serde_json::to_value(&src.stats).unwrap_or_default()
    })
}

/// Starts the login source: the authentication logs asked for (else the default ones there are)
/// followed across rotation, else the journal; with neither, it stops saying why.
pub(super) fn start_login_source(
    opts: &RunOptions,
    state_dir: &std::path::Path,
    tx: super::queue::Sender,
    stop: Arc<AtomicBool>,
) -> Result<Running, AgentError> {
    let paths: Vec<std::path::PathBuf> = if opts.auth_logs.is_empty() {
        logins::DEFAULT_LOGS.iter().map(std::path::PathBuf::from).filter(|p| p.exists()).collect()
    } else {
        opts.auth_logs.clone()
    };
    let state = state_dir.join("auth-logs.json");
    let journal = if paths.is_empty() { logins::Journal::open() } else { None };
    let facility = if journal.is_some() { "journald" } else { "file" };
    let gauge = health::Gauge::new("login", facility, false);
    if paths.is_empty() && journal.is_none() {
        gauge.stopped("no authentication log (/var/log/auth.log, /var/log/secure) and no journal".into());
    }
    let out = health::Outlet::new(tx, Arc::clone(&gauge));
    let host = opts.host.clone();
    spawn_source("login", gauge, move || {
        let saved = logins::load_positions(&state);
        let mut tails = Vec::new();
        for p in &paths {
            let (t, early) = logins::Tail::open(p, saved.get(p).copied(), &host);
            out.offer_all(early);
            tails.push(t);
        }
        let mut journal = journal;
        let mut last_save = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            for t in &mut tails {
                out.offer_all(t.poll());
            }
            if let Some(j) = journal.as_mut() {
                out.offer_all(j.poll());
            }
            if last_save.elapsed() >= Duration::from_secs(2) {
                logins::save_positions(&state, &tails);
                last_save = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        logins::save_positions(&state, &tails);
        let stats: Vec<serde_json::Value> = tails
            .iter()
            .map(|t| serde_json::json!({"path": t.path().display().to_string(), "stats": t.stats}))
            .collect();
        serde_json::json!({"facility": facility, "files": stats})
    })
}

/// Starts the inventory: at once, then every `every`; removable devices every
/// [`inventory::DEVICE_POLL`].
pub(super) fn start_inventory(
    opts: &RunOptions,
    every: Duration,
    tx: super::queue::Sender,
    stop: Arc<AtomicBool>,
) -> Result<Running, AgentError> {
    let gauge = health::Gauge::new("inventory", "procfs", false);
    let out = health::Outlet::new(tx, Arc::clone(&gauge));
    let host = opts.host.clone();
    spawn_source("inventory", gauge, move || {
        let mut inv = inventory::Inventory::new(std::path::Path::new("/"), &host);
        let (mut rounds, mut last_round, mut last_devices) = (0u64, None::<Instant>, None::<Instant>);
        while !stop.load(Ordering::Relaxed) {
            if last_round.is_none_or(|t| t.elapsed() >= every) {
                out.offer_all(inv.take());
                rounds += 1;
                last_round = Some(Instant::now());
            }
            if last_devices.is_none_or(|t| t.elapsed() >= inventory::DEVICE_POLL) {
                out.offer_all(inv.devices());
                last_devices = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        serde_json::json!({"rounds": rounds})
    })
}

/// Starts the network source: sockets through sock_diag every [`network::POLL`].
pub(super) fn start_network_source(
    opts: &RunOptions,
    tx: super::queue::Sender,
    stop: Arc<AtomicBool>,
) -> Result<Running, AgentError> {
    let gauge = health::Gauge::new("network", "sock_diag", false);
    let out = health::Outlet::new(tx, Arc::clone(&gauge));
    let host = opts.host.clone();
    spawn_source("network", gauge, move || {
        let mut src = match network::NetworkSource::open(&host, std::path::Path::new("/proc")) {
            Ok(s) => s,
            Err(e) => {
                out.fail("sock_diag refused", &e);
                return serde_json::json!({"error": e.to_string()});
            }
        };
        while !stop.load(Ordering::Relaxed) {
            match src.poll() {
                Ok(events) => out.offer_all(events),
                Err(e) => {
                    out.fail("sock_diag failed", &e);
                    break;
                }
            }
            std::thread::sleep(budget::interval(network::POLL));
        }
        serde_json::to_value(&src.stats).unwrap_or_default()
    })
}

/// Starts the library source: every process's executable mappings every [`libraries::POLL`].
pub(super) fn start_library_source(
    opts: &RunOptions,
    tx: super::queue::Sender,
    stop: Arc<AtomicBool>,
) -> Result<Running, AgentError> {
    let gauge = health::Gauge::new("library", "procfs", false);
    let out = health::Outlet::new(tx, Arc::clone(&gauge));
    let host = opts.host.clone();
    spawn_source("library", gauge, move || {
        let mut src = libraries::LibrarySource::new(std::path::Path::new("/proc"), &host);
        let (mut trims, mut last) = (budget::trims(), None::<Instant>);
        while !stop.load(Ordering::Relaxed) {
            if trims != budget::trims() {
                src.trim();
                trims = budget::trims();
            }
            if last.is_none_or(|t| t.elapsed() >= budget::interval(libraries::POLL)) {
                out.offer_all(src.scan());
                last = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        serde_json::to_value(&src.stats).unwrap_or_default()
    })
}

/// Starts the firewall source: nftables' notifications, else reading the ruleset every
/// [`firewall::POLL`]; where no ruleset can be read (no `nft`), it stops saying why.
pub(super) fn start_firewall_source(
    opts: &RunOptions,
    tx: super::queue::Sender,
    stop: Arc<AtomicBool>,
) -> Result<Running, AgentError> {
    let gauge = health::Gauge::new("firewall", "nfnetlink", false);
    let out = health::Outlet::new(tx, Arc::clone(&gauge));
    let host = opts.host.clone();
    spawn_source("firewall", gauge, move || {
        let mut fw = match firewall::Firewall::open(&host) {
            Ok((fw, why)) => {
                out.gauge().set_facility(&fw.stats.facility, why);
                fw
            }
            Err(e) => {
                // No nftables on this host: nothing to follow, which is not a failure to alert on.
                out.gauge().set_facility("none", Some(format!("firewall changes are not followed: {e}")));
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                }
                return serde_json::json!({"error": e});
            }
        };
        while !stop.load(Ordering::Relaxed) {
            if let Some(e) = fw.poll(Duration::from_millis(200)) {
                out.offer(e);
            }
        }
        serde_json::to_value(&fw.stats).unwrap_or_default()
    })
}
