//! The `cordon-agent` command line: parsed fully (clap, each flag with an environment twin), then
//! resolved into validated settings.

use crate::shipper::ShipperConfig;
use crate::{AgentConfig, AgentError, ReplayOptions, RunSummary, SimulateOptions};
use clap::{Args, Parser, Subcommand};
use schemas::TenantId;
use schemas::subject::Subjects;
use std::path::PathBuf;
use std::time::Duration;

/// Ships endpoint events to Cordon over NATS JetStream.
#[derive(Debug, Parser)]
#[command(name = "cordon-agent", version)]
pub struct Cli {
    /// Settings every source shares.
    #[command(flatten)]
    pub common: Common,
    /// What to ship.
    #[command(subcommand)]
    pub command: Command,
}

/// Shared flags.
#[derive(Debug, Args)]
pub struct Common {
    /// NATS server URL.
    #[arg(long, env = "CORDON_NATS_URL", default_value = "nats://127.0.0.1:4222", global = true)]
    pub nats_url: String,
    /// Tenant.
    #[arg(long, env = "CORDON_TENANT", default_value = "default", global = true)]
    pub tenant: String,
    /// Subject prefix.
    #[arg(long, env = "CORDON_SUBJECT_PREFIX", default_value = "cordon", global = true)]
    pub subject_prefix: String,
    /// Spool directory.
    #[arg(long, env = "CORDON_AGENT_SPOOL", default_value = "./cordon-agent-spool", global = true)]
    pub spool_dir: PathBuf,
    /// Spool size limit per identity, MiB.
    #[arg(long, env = "CORDON_AGENT_SPOOL_MIB", default_value_t = 256, global = true)]
    pub spool_mib: u64,
    /// Events per message.
    #[arg(long, env = "CORDON_AGENT_BATCH", default_value_t = 100, global = true)]
    pub batch_size: usize,
    /// Send bodies uncompressed.
    #[arg(long, global = true)]
    pub no_compress: bool,
    /// Do not fsync the spool (faster, loses the spool on power loss).
    #[arg(long, global = true)]
    pub no_fsync: bool,
    /// Seconds to keep retrying at the end before exiting (what is left stays spooled).
    #[arg(long, env = "CORDON_AGENT_DRAIN_SECS", default_value_t = 60, global = true)]
    pub drain_secs: u64,
    /// Seconds between heartbeats (1 to 300); the server calls a live agent silent after its
    /// `--agent-dead-secs`, so keep this well under that.
    #[arg(long, env = "CORDON_AGENT_HEARTBEAT_SECS", default_value_t = 5, global = true,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub heartbeat_secs: u64,
    /// Listen this many seconds for the server's commands (terminating processes the policy blocks)
    /// and carry them out; 0 (the default) does not listen.
    #[arg(long, env = "CORDON_AGENT_ENFORCE_SECS", default_value_t = 0, global = true)]
    pub enforce_secs: u64,
    /// Do not run the rule pack at the edge (events leave untagged; ingest still tags them).
    #[arg(long, env = "CORDON_AGENT_NO_EDGE_RULES", global = true)]
    pub no_edge_rules: bool,
    /// The server's public key (printed by `cordon serve`, `signing_key` in its server.json): only
    /// policies and rule files it signed are applied at the edge. Without it, none are.
    #[arg(long, env = "CORDON_SERVER_KEY", global = true, value_parser = parse_server_key)]
    pub server_key: Option<String>,
    /// Where this agent keeps its enrolled keys: each identity connects with its own (the bus's
    /// authentication). Without it, identities connect without credentials (a bus with auth off).
    #[arg(long, env = "CORDON_AGENT_STATE", global = true)]
    pub state_dir: Option<PathBuf>,
    /// The server's API URL, to enroll with.
    #[arg(long, env = "CORDON_SERVER", global = true)]
    pub server: Option<String>,
    /// An enrollment token (`cordon enroll-token create`), for identities not enrolled yet.
    #[arg(long = "enroll-token", alias = "token", env = "CORDON_ENROLL_TOKEN", global = true)]
    pub enroll_token: Option<String>,
    /// CA certificates (PEM) the NATS server's and the API's certificates must chain to: with it,
    /// the agent speaks TLS only, to both.
    #[arg(long, env = "CORDON_AGENT_CA", global = true)]
    pub ca: Option<PathBuf>,
}

fn parse_server_key(s: &str) -> Result<String, String> {
    schemas::signed::check_public_key(s).map(|()| s.to_ascii_lowercase()).map_err(|e| e.to_string())
}

/// `install` and `uninstall`: the files written or removed.
fn service_command(cli: &Cli) -> std::io::Result<Vec<PathBuf>> {
    let c = &cli.common;
    match &cli.command {
        Command::Install { root, bin } => {
            let mut settings = vec![
                ("CORDON_NATS_URL".to_owned(), c.nats_url.clone()),
                ("CORDON_TENANT".to_owned(), c.tenant.clone()),
                ("CORDON_SUBJECT_PREFIX".to_owned(), c.subject_prefix.clone()),
            ];
            let optional = [
                ("CORDON_SERVER", c.server.clone()),
                ("CORDON_ENROLL_TOKEN", c.enroll_token.clone()),
                ("CORDON_AGENT_CA", c.ca.as_ref().map(|p| p.display().to_string())),
                ("CORDON_SERVER_KEY", c.server_key.clone()),
            ];
            settings.extend(optional.into_iter().filter_map(|(k, v)| Some((k.to_owned(), v?))));
            let bin = match bin {
                Some(b) => b.clone(),
                None => std::env::current_exe()?,
            };
            crate::live::service::install(&crate::live::service::Install {
                root: root.clone(),
                bin,
                settings,
            })
        }
        Command::Uninstall { root, purge } => crate::live::service::uninstall(root, *purge),
        _ => Ok(Vec::new()),
    }
}

/// Sources.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enroll this agent with the server: make its key (kept in --state-dir), prove it holds it, and
    /// write the answer (agent id, tenant, the server's key) to <state-dir>/enrollment.json.
    /// (--server and --enroll-token are required; --state-dir defaults to ./cordon-agent-state.)
    Enroll {
        /// The host name to enroll as (default: this machine's name).
        #[arg(long)]
        host: Option<String>,
    },
    /// Answer response commands for --for-secs: ask the server for this enrolled identity's approved
    /// commands, verify each against the approvers pinned at enrollment, carry out what verifies,
    /// and hand in results signed with the agent's key. (--state-dir is required.)
    Respond {
        /// Seconds to answer.
        #[arg(long, default_value_t = 60)]
        for_secs: u64,
        /// Milliseconds between asks.
        #[arg(long, default_value_t = 1000)]
        poll_ms: u64,
        /// Disk roots file instructions search (default: `/`).
        #[arg(long)]
        root: Vec<PathBuf>,
        /// Destructive commands carried out per hour at most; past it they are refused.
        #[arg(long, default_value_t = crate::respond::DEFAULT_DESTRUCTIVE_PER_HOUR)]
        max_destructive_per_hour: usize,
        /// The SHA-256 of a script this agent may run (repeat for more). Without any, scripts are
        /// off: no command, however approved, runs one.
        #[arg(long = "allow-script")]
        allow_script: Vec<String>,
    },
    /// Keep a known-good copy of a disk's boot record in --state-dir, for `File_repairMbr` with
    /// `"data": "backup"` (run while the disk is clean: after installation, or now).
    MbrBackup {
        /// The whole disk (`/dev/sda`) or disk image.
        #[arg(long)]
        device: PathBuf,
    },
    /// Print the enrolled key in --state-dir as a NATS credential for another shipper (Vector's `nats`
    /// sink with `auth.strategy = "nkey"`): its nkey and seed, and the subject it may publish events
    /// on. Keep the output as secret as `agent.key`.
    Credential,
    /// Replay a scenario file (NDJSON of events with relative times).
    Replay {
        /// Scenario file; `builtin:log4j-conti` for the shipped one.
        scenario: String,
        /// Replay speed: 1 is real time; 0 is as fast as possible.
        #[arg(long, default_value_t = 0.0)]
        speed: f64,
    },
    /// Ship Windows event log files (EVTX: Security, Sysmon...), normalised to ECS, one agent identity
    /// per Computer.
    Evtx {
        /// EVTX files.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Ship authentication logs (syslog auth.log/secure with sshd and PAM, PostgreSQL, MySQL) as
    /// authentication events with the raw line, one agent identity per host.
    Logs {
        /// Log files.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// The year of syslog timestamps (they carry none); default: this year.
        #[arg(long)]
        year: Option<i32>,
        /// The host for lines that name none (database logs); default: this machine's name.
        #[arg(long)]
        host: Option<String>,
    },
    /// Ship network security logs as ECS events of one sensor: Zeek's (TSV or JSON lines: conn, dns,
    /// http, ssl, files, notice, kerberos, smb_files, smb_mapping and any other log, kept whole), or
    /// any tool's JSON lines through --mapping.
    Netlogs {
        /// Log files.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// A mapping file (JSON: `time`, `fields`, `set`) for JSON lines that are not Zeek's.
        #[arg(long)]
        mapping: Option<std::path::PathBuf>,
        /// The sensor's host name; default: this machine's name.
        #[arg(long)]
        host: Option<String>,
    },
    /// Run as a service on this Linux host: follow its processes (the kernel's process connector,
    /// else scanning /proc), files, connections, logins, libraries and firewall, and ship them until
    /// SIGTERM or SIGINT.
    Run(crate::live::args::RunArgs),
    /// Install `run` as a systemd service: /etc/cordon/agent.env (0600) from the connection flags
    /// given (--nats-url, --tenant, --server, --enroll-token, --ca, --server-key), the unit, the
    /// state directory; under / it is enabled and started.
    Install {
        /// Install under this root instead of / (a package's staging tree).
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// The binary the unit runs; default: this one.
        #[arg(long)]
        bin: Option<PathBuf>,
    },
    /// Stop and remove the service, its unit and its settings (--purge: its state and spool too).
    Uninstall {
        /// Remove from this root instead of /.
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Remove the state (enrolled keys) and the spool as well.
        #[arg(long)]
        purge: bool,
    },
    /// Simulate a fleet (deterministic by seed).
    Simulate {
        /// Hosts.
        #[arg(long, default_value_t = 100)]
        hosts: usize,
        /// Events per second across the fleet.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Seconds to run.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Stop after this many events.
        #[arg(long)]
        max_events: Option<u64>,
        /// Build every batch (events, edge tags, compression) before the run starts, then only
        /// spool and publish them on time: the agents' CPU during the run is what an endpoint's
        /// shipper spends, not the simulation's.
        #[arg(long)]
        prebuilt: bool,
        /// With --prebuilt: start the run at this time (Unix microseconds; events carry their
        /// planned send times). Default: once built.
        #[arg(long, requires = "prebuilt")]
        start_at: Option<i64>,
    },
}

/// Resolution failures.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag's value is invalid.
    #[error("invalid --{flag}: {reason}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// Why.
        reason: String,
    },
    /// Running failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The scenario could not be read.
    #[error(transparent)]
    Scenario(#[from] fixtures::scenario::ScenarioError),
}

impl Common {
    /// Validated settings.
    pub fn resolve(&self) -> Result<AgentConfig, CliError> {
        let tenant = TenantId::new(self.tenant.clone())
            .map_err(|e| CliError::Invalid { flag: "tenant", reason: e.to_string() })?;
        let subjects = Subjects::new(&self.subject_prefix)
            .map_err(|e| CliError::Invalid { flag: "subject-prefix", reason: e.to_string() })?;
        if self.batch_size == 0 || self.batch_size > 10_000 {
            return Err(CliError::Invalid { flag: "batch-size", reason: "must be 1 to 10000".to_owned() });
        }
        Ok(AgentConfig {
            nats_url: self.nats_url.clone(),
            tenant,
            subjects,
            spool_dir: self.spool_dir.clone(),
            shipper: ShipperConfig {
                batch_size: self.batch_size,
                compress: !self.no_compress,
                spool_max_bytes: self.spool_mib * 1024 * 1024,
                spool_fsync: !self.no_fsync,
                edge: None,
                commands: None,
            },
            heartbeat: Duration::from_secs(self.heartbeat_secs),
            drain_timeout: Duration::from_secs(self.drain_secs),
            credentials: match &self.state_dir {
                Some(dir) => crate::identity::Credentials::Enrolled {
                    state_dir: dir.clone(),
                    enroll: self.server.clone().zip(self.enroll_token.clone()),
                    patience: Duration::from_secs(self.drain_secs),
                },
                None => crate::identity::Credentials::Open,
            },
            ca: self.ca.clone(),
        })
    }
}

/// This machine's name.
pub fn this_host() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Runs a parsed command line; returns the run summary.
pub async fn run(cli: Cli) -> Result<RunSummary, CliError> {
    let mut cfg = cli.common.resolve()?;
    // Detection at the edge, under the tenant's policy from the server (read now, then watched).
    let edge = if cli.common.no_edge_rules {
        None
    } else {
        let held = (cli.common.enforce_secs > 0).then(|| {
            crate::standing::HeldOrders::new(match &cfg.credentials {
                crate::identity::Credentials::Enrolled { state_dir, .. } => Some(state_dir.clone()),
                crate::identity::Credentials::Open => None,
            })
        });
        let edge = crate::edge::Edge::new(held);
        // The process's own identity asks for the policy and rules.
        let (me, client) = cfg
            .credentials
            .connect(&cfg.nats_url, cfg.ca.as_deref(), &cfg.tenant, None, &this_host())
            .await?;
        edge.follow(client, &cfg.subjects, &me, Duration::from_secs(2), cli.common.server_key.clone()).await;
        cfg.shipper.edge = Some(std::sync::Arc::clone(&edge));
        Some(edge)
    };
    // Each identity subscribes to its own command subject when its shipper opens (before it ships),
    // so no command about these events can be missed and no other agent's is read.
    let inbox = if cli.common.enforce_secs > 0 {
        let inbox = crate::enforce::Inbox::new();
        cfg.shipper.commands = Some(std::sync::Arc::clone(&inbox));
        Some(inbox)
    } else {
        None
    };
    let secs = cli.common.enforce_secs;
    let mut summary = run_source(&cfg, cli.command).await?;
    if let Some(inbox) = inbox {
        summary.enforcement = crate::enforce::listen(&inbox, secs).await;
    }
    if let Some(edge) = edge {
        let mut outcomes = edge.outcomes();
        outcomes.append(&mut summary.enforcement);
        summary.enforcement = outcomes;
        summary.edge = Some(edge.summary());
    }
    Ok(summary)
}

async fn run_source(cfg: &AgentConfig, command: Command) -> Result<RunSummary, CliError> {
    let cfg = cfg.clone();
    match command {
        Command::Enroll { .. }
        | Command::Install { .. }
        | Command::Uninstall { .. }
        | Command::Credential
        | Command::Respond { .. }
        | Command::MbrBackup { .. } => Ok(RunSummary::default()),
        Command::Replay { scenario, speed } => {
            let s = if scenario == "builtin:log4j-conti" {
                fixtures::scenario::log4j_conti()
            } else {
                fixtures::scenario::Scenario::load(std::path::Path::new(&scenario))?
            };
            let opts = ReplayOptions { speed: (speed > 0.0).then_some(speed), base_time: None };
            Ok(crate::replay(&cfg, &s, &opts).await?)
        }
        Command::Evtx { files } => Ok(crate::evtx_files(&cfg, &files).await?),
        Command::Logs { files, year, host } => Ok(crate::log_files(&cfg, &files, year, host).await?),
        Command::Run(args) => Ok(crate::live::run(&cfg, &args.options(this_host)).await?),
        Command::Netlogs { files, mapping, host } => {
            Ok(crate::net_files(&cfg, &files, mapping.as_deref(), host).await?)
        }
        Command::Simulate { hosts, rate, duration, seed, max_events, prebuilt, start_at } => {
            let opts = SimulateOptions {
                hosts,
                rate,
                duration: Duration::from_secs(duration),
                seed,
                max_events,
                prebuilt,
                start_at,
            };
            Ok(crate::simulate(&cfg, &opts).await?)
        }
    }
}

/// The async runtime. For `run` it is the main thread alone (the shipper's, holding no
/// capabilities): the sources are threads of their own that keep what they need
/// ([`crate::live::caps`]), and a worker pool would only add wakeups handing the NATS connection's
/// work between threads.
fn runtime(confined: bool) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = if confined {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    b.enable_all();
    if confined {
        b.on_thread_start(|| {
            if let Err(e) = crate::live::caps::confine(rustix::thread::CapabilitySet::empty()) {
                tracing::warn!(error = %e, "the runtime's capabilities were not dropped");
            }
        });
    }
    b.build()
}

/// The whole program: parse, run, print the summary as one JSON line. Exit code 0 when everything
/// was acked, 3 when some events stay spooled, 2 on error.
pub fn main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> std::process::ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return std::process::ExitCode::from(2);
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CORDON_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let rt = match runtime(matches!(cli.command, Command::Run(_))) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Command::MbrBackup { device } = &cli.command {
        let dir = cli.common.state_dir.clone().unwrap_or_else(|| PathBuf::from("./cordon-agent-state"));
        return match crate::executor::save_mbr_backup(&crate::executor::Config::for_host(&dir), device) {
            Ok(saved) => {
                println!("{saved}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::from(2)
            }
        };
    }
    if let Command::Install { .. } | Command::Uninstall { .. } = &cli.command {
        return match service_command(&cli) {
            Ok(files) => {
                println!("{}", serde_json::json!({ "files": files }));
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::from(2)
            }
        };
    }
    if let Command::Credential = &cli.command {
        let dir = cli.common.state_dir.clone().unwrap_or_else(|| PathBuf::from("./cordon-agent-state"));
        return match crate::identity::credential(&dir, &cli.common.subject_prefix) {
            Ok(c) => {
                println!("{c}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::from(2)
            }
        };
    }
    if let Command::Enroll { host } = &cli.command {
        let c = &cli.common;
        let (Some(server), Some(token)) = (&c.server, &c.enroll_token) else {
            eprintln!("error: enroll needs --server and --enroll-token");
            return std::process::ExitCode::from(2);
        };
        let dir = c.state_dir.clone().unwrap_or_else(|| PathBuf::from("./cordon-agent-state"));
        let host = host.clone().unwrap_or_else(this_host);
        return match crate::enroll::enroll(server, token, &dir, &host, c.ca.as_deref()) {
            Ok(answer) => {
                println!("{answer}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::from(2)
            }
        };
    }
    if let Command::Respond { for_secs, poll_ms, root, max_destructive_per_hour, allow_script } = &cli.command
    {
        let opts = crate::respond::RespondOptions {
            for_secs: *for_secs,
            poll: Duration::from_millis(*poll_ms),
            roots: root.clone(),
            cap_per_hour: *max_destructive_per_hour,
            scripts: allow_script.iter().map(|h| h.to_ascii_lowercase()).collect(),
        };
        return match rt.block_on(crate::respond::main(&cli.common, opts)) {
            Ok(summary) => {
                println!("{summary}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::from(2)
            }
        };
    }
    match rt.block_on(run(cli)) {
        Ok(summary) => {
            println!("{}", serde_json::to_string(&summary).expect("a summary serialises"));
            if summary.unacked > 0 {
                std::process::ExitCode::from(3)
            } else {
                std::process::ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
