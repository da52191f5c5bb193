//! Configuration: flags (each with a `CORDON_*` environment twin), then an optional TOML file
//! (`deny_unknown_fields`), then defaults — resolved once into a validated [`ServerConfig`].

use anyhow::{Context, bail};
use clap::Args;
use schemas::subject::Subjects;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Flags of `cordon serve` (and the server half of `cordon demo`).
#[derive(Debug, Clone, Args, Default)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "CORDON_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (lake, index, and the SQLite catalog by default).
    #[arg(long, env = "CORDON_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Metadata database: sqlite://PATH or postgres://...
    #[arg(long, env = "CORDON_METADATA_URL")]
    pub metadata_url: Option<String>,
    /// Where the lake lives instead of DATA_DIR/lake: another directory, or an S3-compatible bucket
    /// as s3://BUCKET/PREFIX (credentials and endpoint from the AWS_* environment or --lake-option).
    #[arg(long, env = "CORDON_LAKE_URL")]
    pub lake_url: Option<String>,
    /// Object-store option KEY=VALUE for an s3:// lake (endpoint, region, access_key_id,
    /// secret_access_key, allow_http...); repeatable; over the [store.lake_options] file table.
    #[arg(long = "lake-option", value_name = "KEY=VALUE")]
    pub lake_options: Vec<String>,
    /// Other `cordon serve` processes share this PostgreSQL catalog and this `--lake-url` (ADR 0009,
    /// the README's *Scaling out*): every one consumes, commits and answers queries from its own
    /// index; the one holding the catalog's `analysis` lease analyses what all of them commit, the
    /// one holding `maintenance` merges, compacts and expires. Each keeps its own data directory;
    /// give them the same `--signing-key`.
    #[arg(long, env = "CORDON_SHARED_CATALOG")]
    pub shared_catalog: bool,
    /// On a shared catalog, how long a lease goes unrenewed before another process takes it over
    /// (its holder stopped), seconds (default 30).
    #[arg(long, env = "CORDON_LEASE_SECS")]
    pub lease_secs: Option<u64>,
    /// NATS server URL; a comma-separated list for a cluster (any one reached is enough).
    #[arg(long, env = "CORDON_NATS_URL")]
    pub nats_url: Option<String>,
    /// NATS authentication.
    #[command(flatten)]
    pub nats_auth: crate::nats_auth::NatsAuthArgs,
    /// TLS for the API and the NATS connection.
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
    /// Subject prefix agents publish under.
    #[arg(long, env = "CORDON_SUBJECT_PREFIX")]
    pub subject_prefix: Option<String>,
    /// API listen address (port 0 picks a free port; the address is written to server.json).
    #[arg(long, env = "CORDON_LISTEN")]
    pub listen: Option<String>,
    /// Largest accepted message, bytes.
    #[arg(long, env = "CORDON_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// The events stream's size cap, MiB (default: none beyond nats-server's `max_file_store`). At
    /// the cap JetStream refuses new events and agents keep them spooled until ingest catches up.
    #[arg(long, env = "CORDON_STREAM_MAX_MIB")]
    pub stream_max_mib: Option<u64>,
    /// Copies JetStream keeps of the events and dead-letter streams and the policy and rules buckets,
    /// 1 to 5 (default 1): 3 on a three-member NATS cluster survives losing any one member. Changing
    /// it rescales existing streams and buckets at start.
    #[arg(long, env = "CORDON_STREAM_REPLICAS")]
    pub stream_replicas: Option<usize>,
    /// Query memory budget, MiB.
    #[arg(long, env = "CORDON_QUERY_MEMORY_MIB")]
    pub query_memory_mib: Option<usize>,
    /// Analyst SQL queries at once, each in a worker process with an equal share of the query
    /// memory (default 2); 0 runs them inside the server (no protection from runaway queries).
    #[arg(long, env = "CORDON_SQL_WORKERS")]
    pub sql_workers: Option<usize>,
    /// Analyst SQL's time budget, seconds (default 30): the query's worker is stopped at it.
    #[arg(long, env = "CORDON_SQL_TIMEOUT_SECS")]
    pub sql_timeout_secs: Option<u64>,
    /// Run analyst SQL on these executors of the distributed engine (`cordon sql-executor`), as
    /// comma-separated `http://host:port` addresses: planned here over the catalog's checked files,
    /// executed there. Needs `--sql-executor-key-file`.
    #[arg(long, env = "CORDON_SQL_EXECUTORS", value_delimiter = ',')]
    pub sql_executors: Vec<String>,
    /// The file holding the executors' key (the one `cordon sql-executor --key-file` reads).
    #[arg(long, env = "CORDON_SQL_EXECUTOR_KEY_FILE")]
    pub sql_executor_key_file: Option<PathBuf>,
    /// The CA the executors' certificates chain to (PEM): connections to them are TLS, and their
    /// addresses `https://`.
    #[arg(long, env = "CORDON_SQL_EXECUTOR_CA")]
    pub sql_executor_ca: Option<PathBuf>,
    /// Parquet one executor task reads, KiB (default 8192): a scan is cut into tasks of about this
    /// much, at most one per executor.
    #[arg(long, env = "CORDON_SQL_TASK_KIB")]
    pub sql_task_kib: Option<usize>,
    /// Unknown or revoked API tokens one client address may send per minute before it is held off
    /// with 429 for the rest of the minute (default 20).
    #[arg(long, env = "CORDON_AUTH_FAILURE_LIMIT")]
    pub auth_failure_limit: Option<u32>,
    /// Events per second one agent may send; more is refused whole per message, dead-lettered as
    /// `over_quota` and counted, and raises a flooding alert (default 20000; bursts of 10 s).
    #[arg(long, env = "CORDON_AGENT_EVENTS_PER_SEC")]
    pub agent_events_per_sec: Option<u64>,
    /// Bytes (as published) per second one agent may send (default 33554432; bursts of 10 s).
    #[arg(long, env = "CORDON_AGENT_BYTES_PER_SEC")]
    pub agent_bytes_per_sec: Option<u64>,
    /// A live agent (one that reports sources) without a heartbeat for this many seconds raises a
    /// silent-agent alert (default 60).
    #[arg(long, env = "CORDON_AGENT_DEAD_SECS")]
    pub agent_dead_secs: Option<u64>,
    /// A live agent's steady source (processes) without an event for this many seconds while the
    /// agent heartbeats raises a quiet-source alert (default 600).
    #[arg(long, env = "CORDON_AGENT_QUIET_SECS")]
    pub agent_quiet_secs: Option<u64>,
    /// The server's Ed25519 signing key (PKCS#8), made on first start: it signs the policies and rule
    /// files agents are sent (agents verify with its public key, `cordon-agent --server-key`).
    /// Default: `<data-dir>/signing.pk8`.
    #[arg(long, env = "CORDON_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    /// Let report webhooks reach loopback, private, link-local and other internal addresses (refused
    /// by default, so a webhook URL cannot be turned against internal services).
    #[arg(long, env = "CORDON_ALLOW_PRIVATE_WEBHOOKS")]
    pub allow_private_webhooks: bool,
    /// Serve the console's files from this directory instead of the copy built into the binary
    /// (while developing the console: edits show on reload).
    #[arg(long, env = "CORDON_UI_DIR")]
    pub ui_dir: Option<PathBuf>,
    /// Full-text index commits at most this far apart, milliseconds (how long until an event is
    /// searchable; default 1000).
    #[arg(long, env = "CORDON_INDEX_COMMIT_MS")]
    pub index_commit_ms: Option<u64>,
    /// ... or after this many buffered documents (default 100000).
    #[arg(long, env = "CORDON_INDEX_COMMIT_DOCS")]
    pub index_commit_docs: Option<u64>,
    /// How often the Delta log catches up with the catalog, seconds (default 10).
    #[arg(long, env = "CORDON_DELTA_INTERVAL_SECS")]
    pub delta_interval_secs: Option<u64>,
    /// Delta log versions between checkpoints (default 100).
    #[arg(long, env = "CORDON_DELTA_CHECKPOINT_EVERY")]
    pub delta_checkpoint_every: Option<i64>,
    /// How often compaction and retention run, seconds; 0 turns the schedule off (default 3600).
    #[arg(long, env = "CORDON_MAINTENANCE_INTERVAL_SECS")]
    pub maintenance_interval_secs: Option<u64>,
    /// How often every lake file's checksum is checked (damaged files are quarantined), seconds,
    /// after a first scrub at start; 0 turns scrubbing off (default 86400).
    #[arg(long, env = "CORDON_SCRUB_INTERVAL_SECS")]
    pub scrub_interval_secs: Option<u64>,
    /// Keep this many days of events; older date partitions are deleted by retention (default:
    /// keep everything).
    #[arg(long, env = "CORDON_RETENTION_DAYS")]
    pub retention_days: Option<u32>,
    /// Alerts the entity graph connects within this many hours join one incident (default 24).
    #[arg(long, env = "CORDON_INCIDENT_WINDOW_HOURS")]
    pub incident_window_hours: Option<u32>,
    /// Hours of events the entity graph keeps in memory; older ones are rebuilt from the lake when a
    /// query asks for them (default 48, at least the incident window).
    #[arg(long, env = "CORDON_GRAPH_HOT_HOURS")]
    pub graph_hot_hours: Option<u32>,
    /// At most this many entity-graph edges in memory (about 1 KB each with their nodes); past
    /// it the oldest go first and queries about them replay the lake (default 2,000,000).
    #[arg(long, env = "CORDON_GRAPH_MAX_EDGES")]
    pub graph_max_edges: Option<usize>,
    /// When the login baselines are refitted from the lake, in cron syntax, UTC (default
    /// `0 2 * * *`: nightly at 02:00). They are also fitted at start.
    #[arg(long, env = "CORDON_BASELINE_REFIT")]
    pub baseline_refit: Option<String>,
    /// Threads a refit may use (default: all cores but one).
    #[arg(long, env = "CORDON_BASELINE_THREADS")]
    pub baseline_threads: Option<usize>,
    /// Sigma rule files or directories (SigmaHQ's, the team's own) run at ingest beside Cordon's
    /// pack and sent to agents; repeatable. Rules the engine cannot run are refused with the reason
    /// (`GET /api/v1/rules`).
    #[arg(long = "rules", value_name = "PATH", env = "CORDON_RULES", value_delimiter = ',')]
    pub rules: Vec<PathBuf>,
}

/// A scheduled anomaly report.
#[derive(Debug, Clone)]
pub struct ReportSchedule {
    /// Its name (reports of the same name compare themselves with the previous one).
    pub name: String,
    /// When it runs.
    pub schedule: anomaly::cron::Cron,
    /// The period it covers, ending at the run time.
    pub period_hours: u32,
    /// Where it is POSTed as JSON, if anywhere.
    pub webhook: Option<String>,
}

/// Analyst SQL's distributed engine: its executors, their key, their CA.
#[derive(Debug, Clone)]
pub struct SqlCluster {
    /// The coordinator, ready to use.
    pub engine: distsql::DistributedSql,
}

/// Validated server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Metadata URL.
    pub metadata_url: String,
    /// The lake's location when not `<data_dir>/lake`.
    pub lake_url: Option<String>,
    /// Object-store options for `lake_url`.
    pub lake_options: Vec<(String, String)>,
    /// NATS URL.
    pub nats_url: String,
    /// NATS authentication.
    pub nats_auth: crate::nats_auth::NatsAuthArgs,
    /// TLS.
    pub tls: crate::tls::TlsArgs,
    /// Subjects.
    pub subjects: Subjects,
    /// API address.
    pub listen: SocketAddr,
    /// Message size cap.
    pub max_message_bytes: usize,
    /// The events stream's size cap, bytes.
    pub stream_max_bytes: Option<i64>,
    /// `Some(lease)`: other processes share the catalog and the lake, and elect their analyser and
    /// maintainer through leases this long.
    pub shared_catalog: Option<Duration>,
    /// JetStream replicas of the streams.
    pub stream_replicas: usize,
    /// Query memory, bytes.
    pub query_memory_bytes: usize,
    /// Analyst SQL worker processes (0: in the server).
    pub sql_workers: usize,
    /// Analyst SQL's time budget.
    pub sql_timeout: Duration,
    /// The distributed engine's executors and their key, when analyst SQL runs there.
    pub sql_cluster: Option<SqlCluster>,
    /// Bad API tokens per client address per minute before it is held off.
    pub auth_failure_limit: u32,
    /// Whether report webhooks may reach internal addresses.
    pub allow_private_webhooks: bool,
    /// Where the console's files are read from, when not from the binary.
    pub ui_dir: Option<PathBuf>,
    /// Where the signing key is (made there if missing).
    pub signing_key: PathBuf,
    /// What each agent may send.
    pub quota: ingest::QuotaConfig,
    /// When silent agents and quiet sources are alerted.
    pub watch: ingest::watchdog::WatchConfig,
    /// When index commits happen.
    pub index_commit: store::CommitPolicy,
    /// How often the Delta log catches up.
    pub delta_interval: Duration,
    /// Delta versions between checkpoints.
    pub delta_checkpoint_every: i64,
    /// How often compaction and retention run (`None`: never on a schedule).
    pub maintenance_interval: Option<Duration>,
    /// How often the lake is scrubbed after the scrub at start (`None`: never).
    pub scrub_interval: Option<Duration>,
    /// Days of events kept (`None`: all).
    pub retention_days: Option<u32>,
    /// Incident window, hours.
    pub incident_window_hours: u32,
    /// Entity graph hot window, hours.
    pub graph_hot_hours: u32,
    /// Entity graph edge budget.
    pub graph_max_edges: usize,
    /// When the login baselines are refitted.
    pub baseline_refit: anomaly::cron::Cron,
    /// Threads a refit uses.
    pub baseline_threads: usize,
    /// How the forecasts are fitted.
    pub forecast: anomaly::forecast::ForecastConfig,
    /// Scheduled anomaly reports.
    pub reports: Vec<ReportSchedule>,
    /// The operator's Sigma rule files and directories.
    pub rules: Vec<PathBuf>,
}

impl ServeArgs {
    /// Merges flags, file and defaults, and validates.
    pub fn resolve(&self) -> anyhow::Result<ServerConfig> {
        let file: FileConfig = match &self.config {
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("invalid configuration file {}", p.display()))?
            }
            None => FileConfig::default(),
        };
        let sql_cluster =
            self.sql_cluster(&file.server, self.lake_url.as_deref().or(file.store.lake_url.as_deref()))?;
        let data_dir =
            self.data_dir.clone().or(file.server.data_dir).unwrap_or_else(|| PathBuf::from("./cordon-data"));
        let metadata_url = self
            .metadata_url
            .clone()
            .or(file.server.metadata_url)
            .unwrap_or_else(|| default_metadata_url(&data_dir));
        let listen_text =
            self.listen.clone().or(file.server.listen).unwrap_or_else(|| "127.0.0.1:8088".to_owned());
        let listen: SocketAddr =
            listen_text.parse().with_context(|| format!("--listen {listen_text:?} is not host:port"))?;
        let prefix =
            self.subject_prefix.clone().or(file.nats.subject_prefix).unwrap_or_else(|| "cordon".to_owned());
        let subjects = Subjects::new(&prefix).with_context(|| format!("--subject-prefix {prefix:?}"))?;
        let max_message_bytes =
            self.max_message_bytes.or(file.ingest.max_message_bytes).unwrap_or(8 * 1024 * 1024);
        if !(1024..=64 * 1024 * 1024).contains(&max_message_bytes) {
            bail!("--max-message-bytes must be from 1 KiB to 64 MiB");
        }
        let mib = self.query_memory_mib.or(file.server.query_memory_mib).unwrap_or(1024);
        let stream_max_bytes = match self.stream_max_mib.or(file.ingest.stream_max_mib) {
            Some(0) => bail!("--stream-max-mib must be at least 1"),
            Some(mib) => Some(i64::try_from(mib.saturating_mul(1 << 20)).unwrap_or(i64::MAX)),
            None => None,
        };
        let stream_replicas = self.stream_replicas.or(file.ingest.stream_replicas).unwrap_or(1);
        if !(1..=5).contains(&stream_replicas) {
            bail!("--stream-replicas must be 1 to 5 (JetStream's limit)");
        }
        let sql_workers = self.sql_workers.or(file.server.sql_workers).unwrap_or(2);
        if sql_workers > 64 {
            bail!("--sql-workers must be at most 64");
        }
        let sql_timeout_secs = self.sql_timeout_secs.or(file.server.sql_timeout_secs).unwrap_or(30);
        if !(1..=3600).contains(&sql_timeout_secs) {
            bail!("--sql-timeout-secs must be from 1 to 3600");
        }
        let auth_failure_limit = self.auth_failure_limit.or(file.server.auth_failure_limit).unwrap_or(20);
        if auth_failure_limit == 0 {
            bail!("--auth-failure-limit must be at least 1");
        }
        let allow_private_webhooks =
            self.allow_private_webhooks || file.server.allow_private_webhooks.unwrap_or(false);
        let st = file.store;
        let lake_url = self.lake_url.clone().or(st.lake_url.clone());
        let shared_catalog = self.shared(&st, &metadata_url, lake_url.as_deref())?;
        let mut lake_options = st.lake_options;
        for opt in &self.lake_options {
            let Some((k, v)) = opt.split_once('=') else {
                bail!("--lake-option {opt:?} is not KEY=VALUE");
            };
            lake_options.insert(k.trim().to_owned(), v.to_owned());
        }
        if !lake_options.is_empty() && !lake_url.as_deref().is_some_and(|u| u.contains("://")) {
            bail!("lake options are for an object-store lake; set --lake-url s3://BUCKET/PREFIX too");
        }
        let commit_ms = self.index_commit_ms.or(st.index_commit_ms).unwrap_or(1000);
        if !(10..=600_000).contains(&commit_ms) {
            bail!("--index-commit-ms must be from 10 to 600000");
        }
        let commit_docs = self.index_commit_docs.or(st.index_commit_docs).unwrap_or(100_000);
        if commit_docs == 0 {
            bail!("--index-commit-docs must be at least 1");
        }
        let delta_secs = self.delta_interval_secs.or(st.delta_interval_secs).unwrap_or(10);
        if delta_secs == 0 {
            bail!("--delta-interval-secs must be at least 1");
        }
        let checkpoint_every = self.delta_checkpoint_every.or(st.delta_checkpoint_every).unwrap_or(100);
        if checkpoint_every < 1 {
            bail!("--delta-checkpoint-every must be at least 1");
        }
        let maintenance = self.maintenance_interval_secs.or(st.maintenance_interval_secs).unwrap_or(3600);
        let scrub = self.scrub_interval_secs.or(st.scrub_interval_secs).unwrap_or(86_400);
        let retention_days = self.retention_days.or(st.retention_days);
        if retention_days == Some(0) {
            bail!("--retention-days must be at least 1 (leave it unset to keep everything)");
        }
        let incident_window_hours =
            self.incident_window_hours.or(file.correlate.incident_window_hours).unwrap_or(24);
        if !(1..=24 * 30).contains(&incident_window_hours) {
            bail!("--incident-window-hours must be from 1 to 720");
        }
        let graph_hot_hours = self
            .graph_hot_hours
            .or(file.correlate.graph_hot_hours)
            .unwrap_or((2 * incident_window_hours).max(48));
        if graph_hot_hours < incident_window_hours || graph_hot_hours > 24 * 60 {
            bail!(
                "--graph-hot-hours must be at least the incident window ({incident_window_hours}) and at most 1440"
            );
        }
        let graph_max_edges = self.graph_max_edges.or(file.correlate.graph_max_edges).unwrap_or(2_000_000);
        if graph_max_edges < 10_000 {
            bail!("--graph-max-edges must be at least 10000");
        }
        let fa = file.anomaly;
        let refit_text = self.baseline_refit.clone().or(fa.refit).unwrap_or_else(|| "0 2 * * *".to_owned());
        let baseline_refit =
            anomaly::cron::Cron::parse(&refit_text).map_err(|e| anyhow::anyhow!("--baseline-refit: {e}"))?;
        let baseline_threads =
            self.baseline_threads.or(fa.threads).unwrap_or_else(anomaly::pool::default_threads);
        if !(1..=256).contains(&baseline_threads) {
            bail!("--baseline-threads must be from 1 to 256");
        }
        let d = anomaly::forecast::ForecastConfig::default();
        let forecast = anomaly::forecast::ForecastConfig {
            history_hours: fa.history_hours.unwrap_or(d.history_hours),
            min_history_hours: fa.min_history_hours.unwrap_or(d.min_history_hours),
            horizon_hours: fa.horizon_hours.unwrap_or(d.horizon_hours),
            level: fa.level.unwrap_or(d.level),
            fleet_quantile: fa.fleet_quantile.unwrap_or(d.fleet_quantile),
        };
        if !(336..=24 * 400).contains(&forecast.history_hours) {
            bail!("[anomaly] history_hours must be from 336 (two weeks) to 9600");
        }
        if forecast.min_history_hours < 336 || forecast.min_history_hours > forecast.history_hours {
            bail!("[anomaly] min_history_hours must be from 336 to history_hours");
        }
        if !(24..=24 * 14).contains(&forecast.horizon_hours) {
            bail!("[anomaly] horizon_hours must be from 24 to 336");
        }
        if !(0.5..1.0).contains(&forecast.level) {
            bail!("[anomaly] level must be at least 0.5 and below 1 (e.g. 0.999)");
        }
        if !(0.5..1.0).contains(&forecast.fleet_quantile) {
            bail!("[anomaly] fleet_quantile must be at least 0.5 and below 1 (e.g. 0.999)");
        }
        let mut reports: Vec<ReportSchedule> = Vec::new();
        for r in file.reports {
            let ok_name = !r.name.is_empty()
                && r.name.len() <= 64
                && r.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok_name || r.name == "on-demand" {
                bail!(
                    "[[reports]] name {:?} must be 1-64 letters, digits, - or _ (and not on-demand)",
                    r.name
                );
            }
            if reports.iter().any(|x| x.name == r.name) {
                bail!("[[reports]] name {:?} is used twice", r.name);
            }
            let schedule = anomaly::cron::Cron::parse(&r.schedule)
                .map_err(|e| anyhow::anyhow!("[[reports]] {}: {e}", r.name))?;
            let period_hours = r.period_hours.unwrap_or(24);
            if !(1..=24 * 400).contains(&period_hours) {
                bail!("[[reports]] {}: period_hours must be from 1 to 9600", r.name);
            }
            if let Some(w) = &r.webhook
                && !(w.starts_with("http://") || w.starts_with("https://"))
            {
                bail!("[[reports]] {}: webhook {w:?} must be an http:// or https:// URL", r.name);
            }
            reports.push(ReportSchedule { name: r.name, schedule, period_hours, webhook: r.webhook });
        }
        // Rule paths from the flags replace the file's; each must exist.
        let rules = if self.rules.is_empty() { file.detection.rules } else { self.rules.clone() };
        if let Some(missing) = rules.iter().find(|p| !p.exists()) {
            bail!("rules: {} does not exist", missing.display());
        }
        let events_per_sec = self.agent_events_per_sec.or(file.ingest.agent_events_per_sec).unwrap_or(20_000);
        let bytes_per_sec =
            self.agent_bytes_per_sec.or(file.ingest.agent_bytes_per_sec).unwrap_or(32 * 1024 * 1024);
        if events_per_sec == 0 || bytes_per_sec == 0 {
            bail!("--agent-events-per-sec and --agent-bytes-per-sec must be positive");
        }
        let quota = ingest::QuotaConfig {
            events_per_sec: events_per_sec as f64,
            bytes_per_sec: bytes_per_sec as f64,
            ..Default::default()
        };
        let dead = self.agent_dead_secs.or(file.ingest.agent_dead_secs).unwrap_or(60);
        let quiet = self.agent_quiet_secs.or(file.ingest.agent_quiet_secs).unwrap_or(600);
        if dead == 0 || quiet == 0 {
            bail!("--agent-dead-secs and --agent-quiet-secs must be positive");
        }
        let watch = ingest::watchdog::WatchConfig {
            dead_after: Duration::from_secs(dead),
            quiet_after: Duration::from_secs(quiet),
            every: Duration::from_secs(dead.clamp(1, 5)),
        };
        let signing_key = self
            .signing_key
            .clone()
            .or(file.server.signing_key.clone())
            .unwrap_or_else(|| data_dir.join("signing.pk8"));
        Ok(ServerConfig {
            rules,
            reports,
            baseline_refit,
            baseline_threads,
            forecast,
            incident_window_hours,
            graph_hot_hours,
            graph_max_edges,
            data_dir,
            metadata_url,
            lake_url,
            lake_options: lake_options.into_iter().collect(),
            nats_url: self
                .nats_url
                .clone()
                .or(file.nats.url)
                .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned()),
            nats_auth: self.nats_auth.clone(),
            tls: self.tls.clone(),
            subjects,
            listen,
            max_message_bytes,
            stream_max_bytes,
            shared_catalog,
            stream_replicas,
            query_memory_bytes: mib * 1024 * 1024,
            sql_workers,
            sql_timeout: Duration::from_secs(sql_timeout_secs),
            sql_cluster,
            auth_failure_limit,
            allow_private_webhooks,
            ui_dir: self.ui_dir.clone(),
            signing_key,
            quota,
            watch,
            index_commit: store::CommitPolicy {
                max_docs: commit_docs,
                max_delay: Duration::from_millis(commit_ms),
            },
            delta_interval: Duration::from_secs(delta_secs),
            delta_checkpoint_every: checkpoint_every,
            maintenance_interval: (maintenance > 0).then(|| Duration::from_secs(maintenance)),
            scrub_interval: (scrub > 0).then(|| Duration::from_secs(scrub)),
            retention_days,
        })
    }
}

/// SQLite inside the data directory.
pub fn default_metadata_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("meta.db").display())
}

#[path = "config_file.rs"]
mod file;
use file::FileConfig;

#[path = "config_store.rs"]
mod store_wiring;
pub use store_wiring::store_config;

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
