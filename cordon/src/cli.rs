//! The command line: `cordon serve`, `demo`, `token`, the maintenance commands and `eval`.

use crate::config::ServeArgs;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Cordon: SOC analytics backend and correlation engine.
#[derive(Debug, Parser)]
#[command(name = "cordon", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run ingest and the API.
    Serve(ServeArgs),
    /// Start nats-server, the server and agents replaying the Log4j/Conti scenario plus a fleet.
    Demo(crate::demo::DemoArgs),
    /// API tokens.
    Token {
        /// Token action.
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Enrollment tokens for agents.
    EnrollToken {
        /// Enrollment token action.
        #[command(subcommand)]
        action: EnrollTokenAction,
    },
    /// Open or close enrollment for every tenant.
    Enrollment {
        /// `open` or `close`.
        #[arg(value_parser = ["open", "close"])]
        state: String,
        /// Server settings.
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Enrolled agents.
    Agent {
        /// Agent action.
        #[command(subcommand)]
        action: AgentAction,
    },
    /// The audit chain.
    Audit {
        /// Audit action.
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Approver keys for response commands.
    Approver {
        /// Approver action.
        #[command(subcommand)]
        action: ApproverAction,
    },
    /// Approve a response command (its JSON file) with an approver's key, on the approver's own
    /// machine: prints what it does, then adds the signature to the file.
    Approve {
        /// The command file.
        request: std::path::PathBuf,
        /// The approver's key (from `cordon approver keygen`).
        #[arg(long)]
        key: std::path::PathBuf,
    },
    /// Check every lake file's checksum, look for orphans, compare counts (server stopped).
    Verify(ServeArgs),
    /// Rebuild the full-text index from the lake (server stopped).
    Reindex(ServeArgs),
    /// Merge small lake files into Z-ordered ones (Delta OPTIMIZE; server stopped).
    Compact(ServeArgs),
    /// Delete partitions past the retention period and unreferenced files (Delta VACUUM; server
    /// stopped). `--retention-days` (or the configuration) sets the period.
    Vacuum(ServeArgs),
    /// Make (or reuse) the NATS keys in DIR and print the nats-server configuration that turns
    /// authentication on with Cordon's auth callout, and the `cordon serve` flags that go with it.
    NatsConfig {
        /// Where the keys are kept (mode 0600).
        #[arg(long, default_value = "./cordon-nats")]
        dir: std::path::PathBuf,
    },
    /// Serve analyst SQL over stdin and stdout for a server (started by `cordon serve`).
    #[command(hide = true)]
    SqlWorker,
    /// Run an executor of the distributed SQL engine: plan fragments from `cordon serve
    /// --sql-executors` over the lake, on this machine's cores.
    SqlExecutor(crate::executor::ExecutorArgs),
    /// Measurements on third-party data (SigmaHQ rules...).
    Eval {
        /// What to evaluate.
        #[command(subcommand)]
        what: EvalWhat,
    },
}

/// Evaluations.
#[derive(Debug, Subcommand)]
pub enum EvalWhat {
    /// The entity graph on Mordor's lateral-movement datasets: per dataset, whether the source ->
    /// target edge onto the host the dataset's metadata names is found; ends with one summary line.
    Lateral {
        /// The corpus directory (holding `mordor/`).
        #[arg(long)]
        corpus: PathBuf,
        /// Also print the per-dataset results as JSON.
        #[arg(long)]
        json: bool,
        /// Exit with an error when fewer datasets than this produce the edge.
        #[arg(long, default_value_t = 0)]
        min_found: usize,
    },
    /// Technique tagging on Mordor's Windows datasets: per label technique of their metadata, how
    /// many datasets a Sigma rule set tags with it; ends with one summary line.
    Mordor {
        /// The corpus directory (holding `mordor/`).
        #[arg(long)]
        corpus: PathBuf,
        /// Directories of Sigma rules (SigmaHQ's `rules/`, Hayabusa's set), searched recursively;
        /// repeat the flag for several.
        #[arg(long, required = true)]
        rules: Vec<PathBuf>,
        /// Also print the per-dataset results as JSON.
        #[arg(long)]
        json: bool,
        /// Exit with an error when fewer (dataset, label technique) pairs than this are detected
        /// through the agent's path.
        #[arg(long, default_value_t = 0)]
        min_detected: usize,
    },
    /// The login baselines on the fleet simulator's labelled data: precision, recall and F1 of the
    /// two-condition rule next to a static threshold, a z-score, the fleet band alone and the
    /// forecast alone; ends with one summary line.
    Anomaly {
        /// Simulated hosts.
        #[arg(long, default_value_t = 1000)]
        hosts: usize,
        /// Simulated days.
        #[arg(long, default_value_t = 90)]
        days: usize,
        /// Anomalies injected per kind.
        #[arg(long, default_value_t = 20)]
        per_kind: usize,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Hours between refits (24: nightly, as the server does).
        #[arg(long, default_value_t = 24)]
        refit_hours: usize,
        /// Threads for the fits (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// The forecast interval's level (the server's `[anomaly] level`).
        #[arg(long, default_value_t = anomaly::forecast::ForecastConfig::default().level)]
        level: f64,
        /// The fleet band's upper quantile (the server's `[anomaly] fleet_quantile`).
        #[arg(long, default_value_t = anomaly::forecast::ForecastConfig::default().fleet_quantile)]
        fleet_quantile: f64,
        /// Also print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Exit with an error when the two-condition rule's F1 is below this.
        #[arg(long, default_value_t = 0.0)]
        min_f1: f64,
        /// Also run a real authentication log (e.g. the corpus's loghub `Linux_2k.log`) through the
        /// agent's parser and the baselines, and list what is flagged.
        #[arg(long)]
        real: Option<PathBuf>,
        /// The year of the real log's syslog timestamps (they carry none).
        #[arg(long, default_value_t = 2005)]
        real_year: i32,
    },
    /// Load a Sigma rule set (e.g. SigmaHQ's `rules/`) and report what loads and what is refused, by
    /// reason.
    Sigma {
        /// Directory of Sigma rules (searched recursively for .yml files).
        #[arg(long)]
        rules: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Exit with an error when fewer rules than this share load (percent).
        #[arg(long, default_value_t = 0.0)]
        min_loaded_percent: f64,
        /// Also run SigmaHQ's regression suite in this directory (info.yml + .evtx per test).
        #[arg(long)]
        regression: Option<PathBuf>,
        /// Exit with an error when fewer regression tests than this share pass (percent).
        #[arg(long, default_value_t = 0.0)]
        min_regression_percent: f64,
    },
    /// Read every EVTX file of the corpus (record counts against its EVTX_INDEX.json) and measure
    /// technique tagging on the technique-labelled folder.
    Evtx {
        /// The corpus directory (holding EVTX_INDEX.json).
        #[arg(long)]
        corpus: PathBuf,
        /// Directories of Sigma rules to tag with (SigmaHQ's set, Hayabusa's); repeat the flag for
        /// several. Without any, only reading is measured.
        #[arg(long)]
        rules: Vec<PathBuf>,
        /// Fail unless every file parses and every count matches the index.
        #[arg(long)]
        strict: bool,
        /// A peer's detections over the same files, scored beside Cordon's: JSON lines with
        /// `EvtxFile` and `MitreTags` (Hayabusa's `dfir-timeline -t jsonl -p verbose`).
        #[arg(long)]
        peer_timeline: Option<PathBuf>,
        /// The peer's name, for the report.
        #[arg(long, default_value = "peer")]
        peer_name: String,
        /// Exit with an error when fewer labelled files than this get their label through the
        /// agent's path.
        #[arg(long, default_value_t = 0)]
        min_tagged: usize,
        /// Also read this many damaged copies of each of the 40 smallest files (flipped bytes,
        /// cuts): each must read or fail cleanly, never panic.
        #[arg(long, default_value_t = 0)]
        mutants: usize,
    },
    /// Read the corpus's real syslog (loghub Linux) with the agent's log reader, check the failures it
    /// finds against loghub's own parse, and run Cordon's log and brute-force rules over them.
    Logs {
        /// The corpus directory: every authentication log under it is evaluated.
        #[arg(long)]
        corpus: PathBuf,
        /// Evaluate these logs instead of searching the corpus.
        #[arg(long = "log")]
        logs: Vec<PathBuf>,
        /// The year of BSD syslog dates (they carry none); default: this year.
        #[arg(long)]
        year: Option<i32>,
        /// Fail unless every failure line the oracle names is parsed, no other line is, and the
        /// attempts counted are the oracle's.
        #[arg(long)]
        strict: bool,
    },
}

/// Token actions.
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a token and print it (it is shown once).
    Create {
        /// Server settings (for the metadata database).
        #[command(flatten)]
        serve: ServeArgs,
        /// A name for the token.
        #[arg(long)]
        name: String,
        /// The tenant it reads.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// What it may do there: viewer, analyst, responder, rule_author, admin, or metrics (a
        /// Prometheus scraper: `/metrics` only).
        #[arg(long, default_value = "viewer", value_parser = parse_role)]
        role: schemas::access::Role,
    },
    /// Revoke a token by id.
    Revoke {
        /// Server settings.
        #[command(flatten)]
        serve: ServeArgs,
        /// Token id.
        id: String,
    },
}

fn parse_role(s: &str) -> Result<schemas::access::Role, String> {
    schemas::access::Role::parse(s).map_err(|e| e.to_string())
}

/// Audit actions.
#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Walk the whole chain: exit 1 and name every break if a row was edited, deleted or reordered.
    Verify(ServeArgs),
}

fn parse_ttl(s: &str) -> Result<std::time::Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: a number then s, m, h or d (24h)"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("{s:?}: the unit is s, m, h or d")),
    };
    if secs == 0 {
        return Err("the ttl must be positive".into());
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// Enrollment token actions.
#[derive(Debug, Subcommand)]
pub enum EnrollTokenAction {
    /// Create an enrollment token and print it (shown once; stored as a hash).
    Create {
        /// Server settings.
        #[command(flatten)]
        serve: ServeArgs,
        /// The tenant the agents join.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// How many agents may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it is valid (30m, 24h, 7d).
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: std::time::Duration,
        /// The host group the agents join.
        #[arg(long)]
        group: Option<String>,
    },
    /// Revoke an enrollment token by id.
    Revoke {
        /// Server settings.
        #[command(flatten)]
        serve: ServeArgs,
        /// Token id.
        id: String,
    },
}

/// Agent actions.
#[derive(Debug, Subcommand)]
pub enum AgentAction {
    /// Revoke an enrolled agent (its key can never enroll again).
    Revoke {
        /// Server settings.
        #[command(flatten)]
        serve: ServeArgs,
        /// Agent id.
        id: String,
    },
}

/// Approver key actions.
#[derive(Debug, Subcommand)]
pub enum ApproverAction {
    /// Make a new Ed25519 approver key (PKCS#8, mode 0600) and print its public key for an admin
    /// to register.
    Keygen {
        /// Where to write it (never overwritten).
        #[arg(long)]
        out: std::path::PathBuf,
    },
}
