//! Carrying out response rules on this host (issue 17 item 2), after [`schemas::response::command::verify`]
//! accepted them. Every action is first planned without touching anything (what it would touch),
//! checked against the agent's deny-list (init, the agent itself, the programs in
//! [`crate::enforce::PROTECTED`]), then done, then verified (the process is gone or stopped), and
//! all of it is in the [`ActionResult`].
//!
//! The executor is per platform: [`linux`] today. An instruction the platform cannot run is
//! answered "unsupported on linux"; one this executor does not carry out yet says so too.
//! A Windows executor goes beside `linux.rs` with the same [`ActionResult`]s.

mod devices;
mod edit;
mod files;
mod host;
pub mod linux;
pub mod net;
mod patches;
mod scripts;
pub mod tasks;

pub use files::Quarantined;
pub use host::{mbr_backup, save_mbr_backup};
use schemas::response::{Action, Rule};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Where the executor looks for files, keeps what it quarantines, and what it must never cut off.
#[derive(Clone, Debug)]
pub struct Config {
    /// The agent's state directory (snapshots taken before a change it may undo).
    pub state: PathBuf,
    /// Quarantined files and their records.
    pub quarantine: PathBuf,
    /// The disks' mount points, the system disk first (`/` on a host).
    pub roots: Vec<PathBuf>,
    /// Where removable media are mounted.
    pub removable: Vec<PathBuf>,
    /// The management channel (the NATS servers' addresses): isolation keeps it open, blocks refuse
    /// to touch it.
    pub management: Vec<SocketAddr>,
    /// The DNS resolvers isolation keeps reachable.
    pub resolvers: Vec<IpAddr>,
    /// The `nft` program.
    pub nft: PathBuf,
    /// Where scheduled tasks live.
    pub tasks: tasks::TaskDirs,
    /// The SHA-256s of the scripts this agent runs; empty: scripts are off.
    pub scripts: Vec<String>,
    /// The CA certificates (PEM) downloads are checked against (default: the web PKI).
    pub ca: Option<PathBuf>,
}

impl Config {
    /// A host's: the whole filesystem, removable media under `/media`, `/run/media` and `/mnt`,
    /// the quarantine in the agent's state directory, the resolvers of `resolv.conf`; the
    /// management channel is the caller's to fill in ([`net::management_endpoints`]).
    pub fn for_host(state_dir: &Path) -> Self {
        Self {
            state: state_dir.to_path_buf(),
            quarantine: state_dir.join("quarantine"),
            roots: vec![PathBuf::from("/")],
            removable: ["/media", "/run/media", "/mnt"].map(PathBuf::from).to_vec(),
            management: Vec::new(),
            resolvers: net::resolvers(),
            nft: PathBuf::from("nft"),
            tasks: tasks::TaskDirs::host(),
            scripts: Vec::new(),
            ca: None,
        }
    }
}

/// What became of one action.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done and verified.
    Done,
    /// A dry run: what would have been done.
    WouldDo,
    /// Nothing matched; nothing was done.
    NothingFound,
    /// Refused by the agent's own limits (deny-list).
    Refused,
    /// This platform does not run it, or this executor does not yet.
    Unsupported,
    /// Tried, and it did not take effect.
    Failed,
}

/// The result of one action.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ActionResult {
    /// Its place in the rule.
    pub index: usize,
    /// The instruction.
    pub action: &'static str,
    /// What became of it.
    pub outcome: Outcome,
    /// What it touched (or would touch): `pid 123 (/usr/bin/x)`, paths.
    pub touched: Vec<String>,
    /// What the check afterwards found, or why it was refused.
    pub detail: String,
    /// What the dry run before it said it would touch ([`carry_out`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub planned: Vec<String>,
}

/// Runs `rule`'s actions in order: a dry run only plans.
pub fn run(rule: &Rule, cfg: &Config, dry_run: bool) -> Vec<ActionResult> {
    rule.actions.iter().enumerate().map(|(i, a)| run_action(i, a, cfg, dry_run)).collect()
}

/// Carries out `rule` as an agent does: each action is first run dry; only one the dry run says
/// would do something is then done, its plan kept beside what it did. An action the dry run finds
/// nothing for, refuses or cannot run is answered with that and never touches the host.
pub fn carry_out(rule: &Rule, cfg: &Config) -> Vec<ActionResult> {
    let each = |(i, a): (usize, &Action)| {
        let dry = run_action(i, a, cfg, true);
        if dry.outcome != Outcome::WouldDo {
            return dry;
        }
        let mut done = run_action(i, a, cfg, false);
        done.planned = dry.touched;
        done
    };
    rule.actions.iter().enumerate().map(each).collect()
}

fn run_action(index: usize, a: &Action, cfg: &Config, dry_run: bool) -> ActionResult {
    let mut r = linux::run(a, cfg, dry_run);
    r.index = index;
    r
}
