//! # sensor-agent: `cordon-agent`, the endpoint side
//!
//! Sources produce ECS events (`replay` of a scenario file, `simulate` of a seeded fleet; live Linux
//! collection and EVTX come later); each identity's [`shipper::Shipper`] batches them (~100 per
//! message), writes each batch to a bounded, checksummed disk [`spool`] *before* publishing it to
//! JetStream, and removes it only after the ack. Heartbeats carry the counters, so the server can tell
//! a silent agent from a dead one, and a drop is always counted.
//!
//! Events are tagged at the edge ([`edge`]) with Cordon's rule pack under the tenant's policy, which
//! the server publishes in a JetStream key-value bucket.
//!
//! Depends on `schemas`, `fixtures` and `correlate` (the rule engine); never on the server's
//! storage, ingest or API crates.

pub mod attempts;
pub mod cli;
pub mod edge;
pub mod enforce;
pub mod enroll;
pub mod evtx;
pub mod evtx_remote;
pub mod evtx_sql;
pub mod executor;
pub mod fleet_sim;
pub mod identity;
pub mod live;
pub mod login_messages;
pub mod logs;
pub mod ndjson;
pub mod respond;
pub mod shipper;
pub mod spool;
pub mod standing;
pub mod syslog;
pub mod winjson;
pub mod zeek;

use fixtures::scenario::Scenario;
pub use fleet_sim::{SimulateOptions, simulate};
use schemas::TenantId;
use schemas::subject::Subjects;
use shipper::{Counters, ShipError, Shipper, ShipperConfig};
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

/// Settings every source shares.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// NATS server URL.
    pub nats_url: String,
    /// Tenant the agent belongs to.
    pub tenant: TenantId,
    /// Subject namespace.
    pub subjects: Subjects,
    /// Spool directory (one subdirectory per identity).
    pub spool_dir: PathBuf,
    /// Batching and spool settings.
    pub shipper: ShipperConfig,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// How long to keep retrying at the end before giving up (what is left stays spooled).
    pub drain_timeout: Duration,
    /// How each identity authenticates on the bus.
    pub credentials: identity::Credentials,
    /// The CA certificates (PEM) NATS's and the API's certificates chain to (TLS only, with it).
    pub ca: Option<PathBuf>,
}

/// Agent failures.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Could not connect.
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect {
        /// The URL.
        url: String,
        /// The client's error text.
        message: String,
    },
    /// A host name gave no valid agent id.
    #[error("invalid agent id")]
    Id(#[from] schemas::ids::IdError),
    /// Shipping failed.
    #[error(transparent)]
    Ship(#[from] ShipError),
    /// An event log file could not be read.
    #[error(transparent)]
    Evtx(#[from] evtx::EvtxError),
    /// A log file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Enrollment failed.
    #[error("enrollment: {0}")]
    Enroll(String),
    /// The server could not be reached to enroll (it may be restarting).
    #[error("enrollment: the server is unreachable: {0}")]
    ServerUnreachable(String),
    /// A mapping file for JSON lines is not valid ([`ndjson::Mapping::parse`]).
    #[error("{path}: {reason}")]
    Mapping {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// What one identity did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AgentSummary {
    /// Agent id.
    pub agent: String,
    /// Host name.
    pub host: String,
    /// Counters.
    #[serde(flatten)]
    pub counters: Counters,
    /// Events still spooled (not acked) at exit.
    pub unacked: u64,
}

/// What a run did, printed as one JSON line at exit.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RunSummary {
    /// Per identity.
    pub agents: Vec<AgentSummary>,
    /// Sum of `events_acked`.
    pub events_acked: u64,
    /// Sum of `events_dropped`.
    pub events_dropped: u64,
    /// Sum of `unacked`.
    pub unacked: u64,
    /// Commands from the server and what became of them (with `--enforce-secs`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub enforcement: Vec<enforce::Outcome>,
    /// Detection at the edge (absent with `--no-edge-rules`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge: Option<edge::EdgeSummary>,
    /// Log lines read but not shipped (not about authentication, for `logs`; not a record, or
    /// refused by the mapping, for `netlogs`).
    #[serde(skip_serializing_if = "is_zero")]
    pub lines_skipped: u64,
    /// What the live sources did (`run`): per source, its facility, counts and drops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<serde_json::Value>,
    /// What building the run took (`simulate --prebuilt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prebuilt: Option<fleet_sim::Prebuilt>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl RunSummary {
    fn of(shippers: &[Shipper]) -> Self {
        let agents: Vec<AgentSummary> = shippers
            .iter()
            .map(|s| AgentSummary {
                agent: s.identity().agent.to_string(),
                host: s.identity().host.clone(),
                counters: s.counters.clone(),
                unacked: s.backlog(),
            })
            .collect();
        Self {
            events_acked: agents.iter().map(|a| a.counters.events_acked).sum(),
            events_dropped: agents.iter().map(|a| a.counters.events_dropped).sum(),
            unacked: agents.iter().map(|a| a.unacked).sum(),
            agents,
            enforcement: Vec::new(),
            edge: None,
            lines_skipped: 0,
            sources: None,
            prebuilt: None,
        }
    }
}

/// Opens the shipper of the identity `name` (a host) with its own connection.
pub(crate) async fn open_identity(cfg: &AgentConfig, name: &str, host: &str) -> Result<Shipper, AgentError> {
    let (id, client) =
        cfg.credentials.connect(&cfg.nats_url, cfg.ca.as_deref(), &cfg.tenant, Some(name), host).await?;
    Ok(Shipper::open(client, &cfg.subjects, id, cfg.shipper.clone(), &cfg.spool_dir).await?)
}

/// How a scenario is replayed.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// `None`: as fast as possible; `Some(x)`: real time divided by x.
    pub speed: Option<f64>,
    /// Scenario start time, microseconds (default: now).
    pub base_time: Option<i64>,
}

/// Replays a scenario, each host as its own agent identity.
pub async fn replay(
    cfg: &AgentConfig,
    scenario: &Scenario,
    opts: &ReplayOptions,
) -> Result<RunSummary, AgentError> {
    let mut shippers = Vec::new();
    for h in &scenario.hosts {
        shippers.push(open_identity(cfg, &h.agent, &h.name).await?);
    }
    let base = opts.base_time.unwrap_or_else(schemas::time::now_micros);
    let started = Instant::now();
    let mut last_hb = Instant::now();
    for (i, ev) in scenario.events.iter().enumerate() {
        if let Some(speed) = opts.speed {
            let due = started + Duration::from_secs_f64(ev.at_ms as f64 / 1000.0 / speed.max(1e-6));
            if due > Instant::now() {
                for s in shippers.iter_mut() {
                    s.seal()?;
                    if let Err(e) = s.drain().await {
                        tracing::warn!(error = %e, "publish failed; will retry");
                    }
                }
                tokio::time::sleep_until(due).await;
            }
        }
        shippers[ev.host].push(&scenario.materialise(i, base))?;
        if last_hb.elapsed() >= cfg.heartbeat {
            for s in &shippers {
                s.heartbeat().await;
            }
            last_hb = Instant::now();
        }
    }
    finish(cfg, shippers).await
}

pub(crate) async fn finish(cfg: &AgentConfig, mut shippers: Vec<Shipper>) -> Result<RunSummary, AgentError> {
    let deadline = Instant::now() + cfg.drain_timeout;
    for s in shippers.iter_mut() {
        if let Err(e) = s.flush(deadline).await {
            tracing::error!(agent = %s.identity().agent, error = %e, "could not ship everything; the rest stays spooled");
        }
        s.heartbeat().await;
        s.flush_connection().await;
    }
    Ok(RunSummary::of(&shippers))
}

/// Ships the records of Windows event log files, normalised to ECS, one agent identity per
/// `Computer` (its sanitised, lower-cased name), as fast as possible, with the records' own times.
pub async fn evtx_files(cfg: &AgentConfig, paths: &[std::path::PathBuf]) -> Result<RunSummary, AgentError> {
    let mut by_host: std::collections::BTreeMap<String, Vec<serde_json::Value>> = Default::default();
    for p in paths {
        for (_, flat) in evtx::read(p)? {
            let e = evtx::to_ecs(&flat);
            let host = e["host"]["name"].as_str().unwrap_or("unknown").to_owned();
            by_host.entry(host).or_default().push(e);
        }
    }
    ship_by_host(cfg, by_host).await
}

/// Ships authentication log files ([`logs`]); lines that name no host go out as `host` (default:
/// this machine).
pub async fn log_files(
    cfg: &AgentConfig,
    paths: &[std::path::PathBuf],
    year: Option<i32>,
    host: Option<String>,
) -> Result<RunSummary, AgentError> {
    let year = year.unwrap_or_else(|| {
        schemas::time::format_micros(schemas::time::now_micros())[..4].parse().unwrap_or(2026)
    });
    let default_host = host.unwrap_or_else(cli::this_host);
    let mut by_host: std::collections::BTreeMap<String, Vec<serde_json::Value>> = Default::default();
    let mut skipped = 0;
    for p in paths {
        let text =
            std::fs::read(p).map_err(|e| AgentError::Io { path: p.display().to_string(), source: e })?;
        let parsed = logs::parse(&String::from_utf8_lossy(&text), year);
        skipped += parsed.skipped;
        for mut e in parsed.events {
            let host = e["host"]["name"].as_str().map_or_else(|| default_host.clone(), str::to_owned);
            e["host"]["name"] = serde_json::json!(host);
            e["log"]["file"] = serde_json::json!({"path": p.display().to_string()});
            by_host.entry(host).or_default().push(e);
        }
    }
    tracing::info!(skipped, "log lines that are not about authentication were skipped");
    let mut summary = ship_by_host(cfg, by_host).await?;
    summary.lines_skipped = skipped;
    Ok(summary)
}

/// Ships network security logs ([`zeek`], or any JSON lines through a [`ndjson`] mapping) as
/// events of the sensor `host` (default: this machine).
pub async fn net_files(
    cfg: &AgentConfig,
    paths: &[std::path::PathBuf],
    mapping: Option<&std::path::Path>,
    host: Option<String>,
) -> Result<RunSummary, AgentError> {
    fn io(p: &std::path::Path) -> impl FnOnce(std::io::Error) -> AgentError + '_ {
        move |source| AgentError::Io { path: p.display().to_string(), source }
    }
    let mapping = match mapping {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(io(p))?;
            let m = ndjson::Mapping::parse(&text)
                .map_err(|reason| AgentError::Mapping { path: p.display().to_string(), reason })?;
            Some(m)
        }
        None => None,
    };
    let host = host.unwrap_or_else(cli::this_host);
    let (mut events, mut skipped) = (Vec::new(), 0);
    for p in paths {
        let text = String::from_utf8_lossy(&std::fs::read(p).map_err(io(p))?).into_owned();
        let read = match &mapping {
            Some(m) => {
                let r = ndjson::parse(&text, m);
                for why in &r.refused {
                    tracing::warn!(file = %p.display(), "refused by the mapping: {why}");
                }
                (r.events, r.refused_count)
            }
            None => {
                let r = zeek::parse(&text, &p.display().to_string());
                (r.events, r.skipped)
            }
        };
        skipped += read.1;
        for mut e in read.0 {
            e["host"]["name"] = serde_json::json!(host);
            e["log"]["file"] = serde_json::json!({"path": p.display().to_string()});
            events.push(e);
        }
    }
    tracing::info!(skipped, "lines that are not records were skipped");
    let mut summary = ship_by_host(cfg, [(host, events)].into_iter().collect()).await?;
    summary.lines_skipped = skipped;
    Ok(summary)
}

/// One shipper per host, each sending that host's events.
async fn ship_by_host(
    cfg: &AgentConfig,
    by_host: std::collections::BTreeMap<String, Vec<serde_json::Value>>,
) -> Result<RunSummary, AgentError> {
    let mut shippers = Vec::new();
    for (host, events) in &by_host {
        let mut s = open_identity(cfg, host, host).await?;
        for e in events {
            s.push(e)?;
        }
        shippers.push(s);
    }
    finish(cfg, shippers).await
}
