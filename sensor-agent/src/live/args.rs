//! `cordon-agent run`'s flags (each with its `CORDON_AGENT_*` environment twin, which the installed
//! service's `agent.env` sets), and the run's options they make.

use super::{ProcessFacility, RunOptions, budget::Budget};
use std::path::PathBuf;

/// The flags of `cordon-agent run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The host's name in events; default: this machine's name.
    #[arg(long, env = "CORDON_AGENT_HOST")]
    pub host: Option<String>,
    /// Where process events come from.
    #[arg(long, env = "CORDON_AGENT_PROCESS", value_enum, default_value_t = ProcessFacility::Auto)]
    pub process: ProcessFacility,
    /// Events queued between the sources and the shipper (beyond it they are dropped and counted).
    #[arg(long, env = "CORDON_AGENT_QUEUE", default_value_t = 65_536)]
    pub queue: usize,
    /// Stop after this many seconds.
    #[arg(long)]
    pub max_secs: Option<u64>,
    /// Report file changes under this path too (recursively; repeatable; `:`-separated in the
    /// environment).
    #[arg(long, env = "CORDON_AGENT_WATCH", value_delimiter = ':')]
    pub watch: Vec<PathBuf>,
    /// Do not watch the persistence locations (cron, systemd, authorized_keys, ...).
    #[arg(long, env = "CORDON_AGENT_NO_PERSISTENCE")]
    pub no_persistence: bool,
    /// Do not follow network connections.
    #[arg(long, env = "CORDON_AGENT_NO_NETWORK")]
    pub no_network: bool,
    /// An authentication log to follow (repeatable; `:`-separated in the environment); default:
    /// /var/log/auth.log and /var/log/secure where they exist, else the journal.
    #[arg(long, env = "CORDON_AGENT_AUTH_LOG", value_delimiter = ':')]
    pub auth_log: Vec<PathBuf>,
    /// Do not follow logins.
    #[arg(long, env = "CORDON_AGENT_NO_LOGINS")]
    pub no_logins: bool,
    /// Do not look for libraries mapped from writable places, memfds or deleted files.
    #[arg(long, env = "CORDON_AGENT_NO_LIBRARIES")]
    pub no_libraries: bool,
    /// Do not follow host firewall (nftables) changes.
    #[arg(long, env = "CORDON_AGENT_NO_FIREWALL")]
    pub no_firewall: bool,
    /// Seconds between asset inventories (OS, packages, users and groups; removable devices are
    /// looked at every 5 s); 0 turns the inventory off.
    #[arg(long, env = "CORDON_AGENT_INVENTORY_SECS", default_value_t = 21_600)]
    pub inventory_secs: u64,
    /// The CPU the agent allows itself, percent of one core: over it, it hashes from its caches
    /// only and polls less (events are never dropped for it).
    #[arg(long, env = "CORDON_AGENT_CPU_BUDGET_PCT", default_value_t = 10.0)]
    pub cpu_budget_pct: f64,
    /// The resident memory the agent allows itself, MiB: over it, it drops its caches.
    #[arg(long, env = "CORDON_AGENT_MEMORY_BUDGET_MIB", default_value_t = 64)]
    pub memory_budget_mib: u64,
}

impl RunArgs {
    /// The run's options; the host's name is `this_host()` unless given.
    pub fn options(self, this_host: fn() -> String) -> RunOptions {
        RunOptions {
            host: self.host.unwrap_or_else(this_host),
            process: self.process,
            queue: self.queue,
            max_secs: self.max_secs,
            watch: self.watch,
            persistence: !self.no_persistence,
            network: !self.no_network,
            auth_logs: self.auth_log,
            logins: !self.no_logins,
            libraries: !self.no_libraries,
            firewall: !self.no_firewall,
            inventory_secs: (self.inventory_secs > 0).then_some(self.inventory_secs),
            budget: Budget {
                cpu_share: self.cpu_budget_pct / 100.0,
                rss_bytes: self.memory_budget_mib << 20,
            },
        }
    }
}
