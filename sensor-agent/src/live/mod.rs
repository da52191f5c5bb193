//! `cordon-agent run`: the agent as a long-running service on a live Linux host. Its sources collect
//! from the running system (today: process starts and exits, [`process`]); each runs on a thread of
//! its own and hands events to the shipper through a bounded queue whose overflow is counted, never
//! blocking the kernel's side. The shipper seals a batch every second, ships it (spooled while the
//! server is away) and sends heartbeats; SIGTERM or SIGINT (or `--max-secs`) ends the run with what is
//! queued shipped.

pub mod args;
pub mod budget;
pub mod caps;
pub mod files;
pub mod firewall;
pub mod hashes;
pub mod health;
pub mod inventory;
pub mod libraries;
pub mod logins;
pub mod network;
pub mod nlmsg;
pub mod persistence;
pub mod proc_connector;
pub mod process;
pub mod process_event;
pub mod procfs;
pub mod queue;
pub mod service;
mod sources;

use crate::{AgentConfig, AgentError, RunSummary};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Where process events come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessFacility {
    /// The kernel's process connector, else scanning `/proc` (saying why).
    #[default]
    Auto,
    /// The process connector only (the run fails where the kernel refuses it).
    Netlink,
    /// Scanning `/proc` every [`SCAN_INTERVAL`].
    Procfs,
}

/// How often `/proc` is scanned when it is the source.
pub const SCAN_INTERVAL: Duration = Duration::from_millis(100);

/// How a run goes.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The host's name in events.
    pub host: String,
    /// The process source.
    pub process: ProcessFacility,
    /// Events queued between the sources and the shipper.
    pub queue: usize,
    /// Stop after this long (default: until SIGTERM or SIGINT).
    pub max_secs: Option<u64>,
    /// Paths whose file changes are reported (recursively), besides the persistence locations.
    pub watch: Vec<std::path::PathBuf>,
    /// Whether the persistence locations are watched.
    pub persistence: bool,
    /// Whether network connections are followed.
    pub network: bool,
    /// Authentication logs followed (empty: the default ones that exist, else the journal).
    pub auth_logs: Vec<std::path::PathBuf>,
    /// Whether logins are followed at all.
    pub logins: bool,
    /// Whether libraries mapped from writable places are reported.
    pub libraries: bool,
    /// Whether firewall changes are reported.
    pub firewall: bool,
    /// Seconds between inventories (`None`: no inventory).
    pub inventory_secs: Option<u64>,
    /// The CPU and memory the agent allows itself.
    pub budget: budget::Budget,
}

/// A source's thread, its gauge, and what the thread returns when stopped (its summary).
pub struct Running {
    /// The source's name in heartbeats and the summary.
    pub name: &'static str,
    /// Its gauge.
    pub gauge: Arc<health::Gauge>,
    /// Its thread.
    pub thread: std::thread::JoinHandle<serde_json::Value>,
}

/// While events keep coming, the shipper drains the queue this often rather than once per event.
const POLL: Duration = Duration::from_millis(50);
/// Events drained within this long of the previous ones count as a steady flow (polled).
const STEADY: Duration = Duration::from_millis(75);
/// How often a batch is sealed and shipped.
const SEAL_EVERY: Duration = Duration::from_secs(1);

/// Runs the sources and ships what they collect until stopped.
pub async fn run(cfg: &AgentConfig, opts: &RunOptions) -> Result<RunSummary, AgentError> {
    let mut shipper = crate::open_identity(cfg, &opts.host, &opts.host).await?;
    let (tx, rx) = queue::bounded(opts.queue);
    let stop = Arc::new(AtomicBool::new(false));
    let sources = start_sources(opts, &cfg.spool_dir, tx, &stop)?;
    // The sources hold what they need; this thread (the shipper's) needs none.
    let shipper_caps = caps::confine(rustix::thread::CapabilitySet::empty());
    let mut health = health::Health::new(sources.iter().map(|s| Arc::clone(&s.gauge)).collect());
    let usage = ship_until_stopped(cfg, opts, &rx, &mut shipper, &mut health).await?;
    stop.store(true, Ordering::Relaxed);
    let mut summaries = serde_json::Map::new();
    for s in sources {
        summaries.insert(s.name.to_owned(), s.thread.join().unwrap_or_default());
    }
    pump(&rx, &mut shipper)?;
    // What is queued goes out, then the last heartbeat says the stop is deliberate (the server's
    // watchdog still alerts on it, at a lower level than a silence).
    if let Err(e) = shipper.flush(tokio::time::Instant::now() + cfg.drain_timeout).await {
        tracing::error!(error = %e, "could not ship everything; the rest stays spooled");
    }
    shipper.heartbeat_with(health.report(), Some(wire_usage(&usage)), true).await;
    shipper.flush_connection().await;
    let mut summary = RunSummary::of(&[shipper]);
    summaries.insert("budget".into(), serde_json::to_value(usage).unwrap_or_default());
    summaries.insert(
        "shipper".into(),
        match shipper_caps {
            Ok(kept) => serde_json::json!({"capabilities": kept}),
            Err(e) => serde_json::json!({"capabilities": format!("not dropped: {e}")}),
        },
    );
    summary.sources = Some(serde_json::Value::Object(summaries));
    Ok(summary)
}

/// Starts every source the options turn on, each with its own end of the queue.
fn start_sources(
    opts: &RunOptions,
    spool_dir: &std::path::Path,
    tx: queue::Sender,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<Running>, AgentError> {
    let mut sources = vec![start_process_source(opts, tx.clone(), Arc::clone(stop))?];
    if opts.persistence || !opts.watch.is_empty() {
        sources.push(sources::start_file_source(opts, tx.clone(), Arc::clone(stop))?);
    }
    if opts.network {
        sources.push(sources::start_network_source(opts, tx.clone(), Arc::clone(stop))?);
    }
    if opts.logins {
        sources.push(sources::start_login_source(opts, spool_dir, tx.clone(), Arc::clone(stop))?);
    }
    if opts.libraries {
        sources.push(sources::start_library_source(opts, tx.clone(), Arc::clone(stop))?);
    }
    if opts.firewall {
        sources.push(sources::start_firewall_source(opts, tx.clone(), Arc::clone(stop))?);
    }
    if let Some(every) = opts.inventory_secs {
        let every = Duration::from_secs(every.max(60));
        sources.push(sources::start_inventory(opts, every, tx, Arc::clone(stop))?);
    }
    Ok(sources)
}

/// Moves what the sources queue into the shipper, seals and ships a batch every second and sends
/// heartbeats, until SIGTERM, SIGINT or the run's deadline. Returns the last reading of the budget.
async fn ship_until_stopped(
    cfg: &AgentConfig,
    opts: &RunOptions,
    rx: &queue::Drain,
    shipper: &mut crate::shipper::Shipper,
    health: &mut health::Health,
) -> Result<budget::Usage, AgentError> {
    let deadline = opts.max_secs.map(|s| Instant::now() + Duration::from_secs(s));
    let mut term = stop_signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = stop_signal(tokio::signal::unix::SignalKind::interrupt())?;
    let (mut last_seal, mut last_hb) = (Instant::now(), Instant::now());
    let mut governor = budget::Governor::new(opts.budget);
    let mut usage = budget::Usage::default();
    let mut cadence = Cadence { last_events: Instant::now(), polling: false };
    loop {
        cadence.drained(pump(rx, shipper)?);
        if last_seal.elapsed() >= SEAL_EVERY {
            usage = governor.tick();
            shipper.seal()?;
            if let Err(e) =
                tokio::time::timeout(Duration::from_millis(500), shipper.drain()).await.unwrap_or(Ok(()))
            {
                tracing::warn!(error = %e, "publish failed; batches stay spooled");
            }
            last_seal = Instant::now();
        }
        if last_hb.elapsed() >= cfg.heartbeat {
            shipper.heartbeat_with(health.report(), Some(wire_usage(&usage)), false).await;
            last_hb = Instant::now();
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let tick = [last_seal + SEAL_EVERY, last_hb + cfg.heartbeat].into_iter().chain(deadline).min();
        let tick = tokio::time::Instant::from_std(tick.unwrap_or_else(Instant::now));
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = rx.ready(), if !cadence.polling => {}
            _ = tokio::time::sleep(POLL), if cadence.polling => {}
            _ = tokio::time::sleep_until(tick) => {}
        }
    }
    Ok(usage)
}

/// A handler for a signal that stops the run.
fn stop_signal(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal, AgentError> {
    tokio::signal::unix::signal(kind)
        .map_err(|e| AgentError::Io { path: "a stop signal's handler".into(), source: e })
}

/// When the shipper's loop next drains the queue: on the first event after a quiet spell, so a
/// blocked start is acted on at once, then every [`POLL`] while events keep coming, so a busy host
/// costs twenty wakeups a second rather than one per event. Sealing wakes it once a second besides.
struct Cadence {
    /// When the last drain that found events ran.
    last_events: Instant,
    /// Whether the loop polls (events are flowing) or waits for the queue to wake it.
    polling: bool,
}

impl Cadence {
    /// A drain moved `events` into the shipper.
    fn drained(&mut self, events: usize) {
        if events == 0 {
            self.polling = false;
            return;
        }
        let now = Instant::now();
        self.polling = now.duration_since(self.last_events) < STEADY;
        self.last_events = now;
    }
}

/// The agent's usage as heartbeats carry it.
fn wire_usage(u: &budget::Usage) -> schemas::wire::AgentUsage {
    schemas::wire::AgentUsage { cpu_share: u.cpu_share, rss_bytes: u.rss_bytes, degraded: u.degraded }
}

/// Moves what the sources queued into the shipper; returns how many events it moved.
fn pump(rx: &queue::Drain, shipper: &mut crate::shipper::Shipper) -> Result<usize, AgentError> {
    let mut moved = 0;
    for line in rx.take() {
        shipper.push_line(line.as_bytes())?;
        moved += 1;
    }
    Ok(moved)
}

/// Starts a source's thread under `name`, confined to the capabilities the source needs
/// ([`caps::needs`]) before its body runs.
fn spawn_source(
    name: &'static str,
    gauge: Arc<health::Gauge>,
    body: impl FnOnce() -> serde_json::Value + Send + 'static,
) -> Result<Running, AgentError> {
    let g = Arc::clone(&gauge);
    let thread = std::thread::Builder::new()
        .name(format!("cordon-{name}"))
        .spawn(move || {
            caps::confine_source(name, &g);
            body()
        })
        .map_err(|e| AgentError::Io { path: format!("the {name} source's thread"), source: e })?;
    Ok(Running { name, gauge, thread })
}

/// Starts the process source on its own thread: the connector where the kernel allows it (and the
/// options do), else `/proc` scanning, with the reason recorded. The thread returns what it did.
fn start_process_source(
    opts: &RunOptions,
    tx: queue::Sender,
    stop: Arc<AtomicBool>,
) -> Result<Running, AgentError> {
    let connector = match opts.process {
        ProcessFacility::Procfs => Err("scanning /proc was asked for".to_owned()),
        _ => proc_connector::Connectors::open(Duration::from_millis(200)).map_err(|e| e.to_string()),
    };
    let (connector, fallback_reason) = match connector {
        Ok(c) => (Some(c), None),
        Err(why) if opts.process == ProcessFacility::Netlink => {
            return Err(AgentError::Io {
                path: "the process connector".into(),
                source: std::io::Error::other(why),
            });
        }
        Err(why) => {
            tracing::warn!(reason = %why, "process events: scanning /proc (short-lived processes will be missed)");
            (None, Some(why))
        }
    };
    let facility = if connector.is_some() { "netlink" } else { "procfs" };
    let gauge = health::Gauge::new("process", facility, true);
    gauge.set_facility(facility, fallback_reason.clone());
    let out = health::Outlet::new(tx, Arc::clone(&gauge));
    let host = opts.host.clone();
    spawn_source("process", gauge, move || {
        let mut src = process::ProcessSource::new(std::path::Path::new("/proc"), &host);
        src.stats.facility = facility.to_owned();
        src.stats.fallback_reason = fallback_reason;
        src.stats.kernel_filter = connector.as_ref().is_some_and(|c| c.filtered());
        match connector {
            Some(c) => follow_connector(c, &mut src, &out, &stop),
            None => follow_scans(&mut src, &out, &stop),
        }
        src.stats.queue_dropped = out.gauge().queue_dropped();
        serde_json::to_value(&src.stats).unwrap_or_default()
    })
}

/// Follows the kernel's process events until stopped: waits on the starts' socket, then delivers what
/// queued behind the event that woke it, starts first and exits after (an exit read before its exec
/// would find the process unknown, and its end would go unreported).
fn follow_connector(
    mut c: proc_connector::Connectors,
    src: &mut process::ProcessSource,
    out: &health::Outlet,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        src.budget(budget::degraded(), budget::trims());
        let waited = c.starts.read_events();
        if !deliver(waited, src, out) || !drain(&mut c.starts, src, out) {
            return;
        }
        if let Some(exits) = c.exits.as_mut()
            && !drain(exits, src, out)
        {
            return;
        }
        out.offer_all(src.expired());
    }
}

/// Delivers every datagram already queued on `c`; false when the connector failed.
fn drain(c: &mut proc_connector::Connector, src: &mut process::ProcessSource, out: &health::Outlet) -> bool {
    loop {
        match c.try_read_events() {
            Ok(None) => return true,
            read => {
                if !deliver(read, src, out) {
                    return false;
                }
            }
        }
    }
}

/// Hands one read's events to the source, an overrun counted; false when the connector failed (the
/// source stops, and says why).
fn deliver(
    read: std::io::Result<Option<Vec<proc_connector::KernelEvent>>>,
    src: &mut process::ProcessSource,
    out: &health::Outlet,
) -> bool {
    use proc_connector::KernelEvent;
    match read {
        Ok(events) => {
            for ev in events.into_iter().flatten() {
                match ev {
                    KernelEvent::Fork { parent, child } => out.offer_all(src.on_fork(parent, child)),
                    KernelEvent::Exec { pid } => out.offer_all(src.on_exec(pid)),
                    KernelEvent::Exit { pid, code, signal, parent } => {
                        out.offer_all(src.on_exit_with_parent(pid, code, signal, parent))
                    }
                }
            }
            true
        }
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOBUFS.raw_os_error()) => {
            src.stats.kernel_overruns += 1;
            out.gauge().lost(1);
            true
        }
        Err(e) => {
            out.fail("the process connector failed", &e);
            false
        }
    }
}

fn follow_scans(src: &mut process::ProcessSource, out: &health::Outlet, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        src.budget(budget::degraded(), budget::trims());
        out.offer_all(src.scan());
        std::thread::sleep(SCAN_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connector and the source together on this host (root here, as in CI): a burst of 1,000
    /// processes from one shell, every start reported with the shell as its parent.
    #[test]
    fn a_burst_of_a_thousand_processes_is_followed_with_its_parents() {
        let (tx, rx) = queue::bounded(100_000);
        let stop = Arc::new(AtomicBool::new(false));
        let opts = RunOptions {
            host: "t".into(),
            process: ProcessFacility::Netlink,
            queue: 100_000,
            max_secs: None,
            watch: Vec::new(),
            persistence: false,
            network: false,
            auth_logs: Vec::new(),
            logins: false,
            libraries: false,
            firewall: false,
            inventory_secs: None,
            budget: budget::Budget { cpu_share: 1.0, rss_bytes: u64::MAX },
        };
        let source = start_process_source(&opts, tx, Arc::clone(&stop)).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let mut sh = std::process::Command::new("/bin/sh")
            .args(["-c", "i=0; while [ $i -lt 1000 ]; do /bin/true; i=$((i+1)); done"])
            .spawn()
            .unwrap();
        let pid = sh.id();
        sh.wait().unwrap();
        std::thread::sleep(Duration::from_millis(1000));
        stop.store(true, Ordering::Relaxed);
        let stats = source.thread.join().unwrap();
        let events: Vec<serde_json::Value> = rx.take().map(|l| serde_json::from_str(&l).unwrap()).collect();
        let burst = events
            .iter()
            .filter(|e| e["event"]["action"] == "start" && e["process"]["parent"]["pid"] == pid)
            .count();
        let orphans: Vec<&serde_json::Value> = events
            .iter()
            .filter(|e| e["event"]["action"] == "start" && e["process"]["parent"].is_null())
            .collect();
        assert_eq!(burst, 1000, "orphans {orphans:?} stats {stats:?}");
    }
}
