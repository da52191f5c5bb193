//! `cordon-agent run`: the agent as a long-running service on a live Linux host. Its sources collect
//! from the running system (today: process starts and exits, [`process`]); each runs on a thread of
//! its own and hands events to the shipper through a bounded queue whose overflow is counted, never
//! blocking the kernel's side. The shipper seals a batch every second, ships it (spooled while the
//! server is away) and sends heartbeats; SIGTERM or SIGINT (or `--max-secs`) ends the run with what is
//! queued shipped.

pub mod proc_connector;
pub mod process;
pub mod procfs;
pub mod service;

use crate::{AgentConfig, AgentError, RunSummary};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
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
}

/// Runs the sources and ships what they collect until stopped.
pub async fn run(cfg: &AgentConfig, opts: &RunOptions) -> Result<RunSummary, AgentError> {
    let mut shipper = crate::open_identity(cfg, &opts.host, &opts.host).await?;
    let (tx, rx) = sync_channel(opts.queue.max(1));
    let stop = Arc::new(AtomicBool::new(false));
    let thread = start_process_source(opts, tx, Arc::clone(&stop))?;
    let deadline = opts.max_secs.map(|s| Instant::now() + Duration::from_secs(s));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| AgentError::Io { path: "SIGTERM handler".into(), source: e })?;
    let (mut last_seal, mut last_hb) = (Instant::now(), Instant::now());
    loop {
        pump(&rx, &mut shipper)?;
        if last_seal.elapsed() >= Duration::from_secs(1) {
            shipper.seal()?;
            if let Err(e) =
                tokio::time::timeout(Duration::from_millis(500), shipper.drain()).await.unwrap_or(Ok(()))
            {
                tracing::warn!(error = %e, "publish failed; batches stay spooled");
            }
            last_seal = Instant::now();
        }
        if last_hb.elapsed() >= cfg.heartbeat {
            shipper.heartbeat().await;
            last_hb = Instant::now();
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    stop.store(true, Ordering::Relaxed);
    let stats = thread.join().unwrap_or_default();
    pump(&rx, &mut shipper)?;
    let mut summary = crate::finish(cfg, vec![shipper]).await?;
    summary.sources = Some(serde_json::json!({"process": stats}));
    Ok(summary)
}

/// Moves what the sources queued into the shipper.
fn pump(rx: &Receiver<serde_json::Value>, shipper: &mut crate::shipper::Shipper) -> Result<(), AgentError> {
    while let Ok(e) = rx.try_recv() {
        shipper.push(&e)?;
    }
    Ok(())
}

/// Starts the process source on its own thread: the connector where the kernel allows it (and the
/// options do), else `/proc` scanning, with the reason recorded. The thread returns what it did.
fn start_process_source(
    opts: &RunOptions,
    tx: SyncSender<serde_json::Value>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<process::ProcessStats>, AgentError> {
    let connector = match opts.process {
        ProcessFacility::Procfs => Err("scanning /proc was asked for".to_owned()),
        _ => proc_connector::Connector::open(Duration::from_millis(200)).map_err(|e| e.to_string()),
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
    let host = opts.host.clone();
    std::thread::Builder::new()
        .name("cordon-process".into())
        .spawn(move || {
            let mut src = process::ProcessSource::new(std::path::Path::new("/proc"), &host);
            src.stats.facility = if connector.is_some() { "netlink" } else { "procfs" }.to_owned();
            src.stats.fallback_reason = fallback_reason;
            match connector {
                Some(c) => follow_connector(c, &mut src, &tx, &stop),
                None => follow_scans(&mut src, &tx, &stop),
            }
            src.stats
        })
        .map_err(|e| AgentError::Io { path: "the process source's thread".into(), source: e })
}

/// Queues an event; a full queue drops it and counts the drop.
fn offer(tx: &SyncSender<serde_json::Value>, e: serde_json::Value, src: &mut process::ProcessSource) {
    if let Err(TrySendError::Full(_)) = tx.try_send(e) {
        src.stats.queue_dropped += 1;
    }
}

fn follow_connector(
    mut c: proc_connector::Connector,
    src: &mut process::ProcessSource,
    tx: &SyncSender<serde_json::Value>,
    stop: &AtomicBool,
) {
    use proc_connector::KernelEvent;
    while !stop.load(Ordering::Relaxed) {
        match c.read_events() {
            Ok(events) => {
                for ev in events {
                    match ev {
                        KernelEvent::Fork { parent, child } => {
                            if let Some(e) = src.on_fork(parent, child) {
                                offer(tx, e, src);
                            }
                        }
                        KernelEvent::Exec { pid } => {
                            if let Some(e) = src.on_exec(pid) {
                                offer(tx, e, src);
                            }
                        }
                        KernelEvent::Exit { pid, code, signal, parent } => {
                            for e in src.on_exit_with_parent(pid, code, signal, parent) {
                                offer(tx, e, src);
                            }
                        }
                    }
                }
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOBUFS.raw_os_error()) => {
                src.stats.kernel_overruns += 1;
            }
            Err(e) => {
                tracing::error!(error = %e, "the process connector failed; process events stop");
                break;
            }
        }
        for e in src.expired() {
            offer(tx, e, src);
        }
    }
}

fn follow_scans(src: &mut process::ProcessSource, tx: &SyncSender<serde_json::Value>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        for e in src.scan() {
            offer(tx, e, src);
        }
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
        let (tx, rx) = sync_channel(100_000);
        let stop = Arc::new(AtomicBool::new(false));
        let opts = RunOptions {
            host: "t".into(),
            process: ProcessFacility::Netlink,
            queue: 100_000,
            max_secs: None,
        };
        let thread = start_process_source(&opts, tx, Arc::clone(&stop)).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let mut sh = std::process::Command::new("/bin/sh")
            .args(["-c", "i=0; while [ $i -lt 1000 ]; do /bin/true; i=$((i+1)); done"])
            .spawn()
            .unwrap();
        let pid = sh.id();
        sh.wait().unwrap();
        std::thread::sleep(Duration::from_millis(1000));
        stop.store(true, Ordering::Relaxed);
        let stats = thread.join().unwrap();
        let events: Vec<serde_json::Value> = rx.try_iter().collect();
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
