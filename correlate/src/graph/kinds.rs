//! What the graph's nodes stand for and what its edges say happened: the kinds, with the names the
//! API and node ids use.

use serde::Serialize;

/// What a node stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// An endpoint, by host name.
    Host,
    /// A process, by its stable entity id (not its pid).
    Process,
    /// An account, `DOMAIN\name`.
    User,
    /// An address no fleet host holds (or an external one); as the source of a remote access, an
    /// unmanaged host known by its address (attribute `unmanaged`).
    Ip,
    /// A domain name.
    Domain,
    /// A URL.
    Url,
    /// A file on a host, by path (hashes as attributes).
    File,
}

impl NodeKind {
    /// The name used in ids and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Host => "host",
            NodeKind::Process => "process",
            NodeKind::User => "user",
            NodeKind::Ip => "ip",
            NodeKind::Domain => "domain",
            NodeKind::Url => "url",
            NodeKind::File => "file",
        }
    }

    /// Parses [`NodeKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "host" => NodeKind::Host,
            "process" => NodeKind::Process,
            "user" => NodeKind::User,
            "ip" => NodeKind::Ip,
            "domain" => NodeKind::Domain,
            "url" => NodeKind::Url,
            "file" => NodeKind::File,
            _ => return None,
        })
    }
}

/// What an edge says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// Parent process -> child process.
    Spawned,
    /// File -> the process started from it (a file written earlier, then run).
    Executed,
    /// Process -> process (confirmed by both hosts), host, IP or domain.
    ConnectedTo,
    /// Domain -> IP (a DNS answer).
    Resolved,
    /// URL -> file (a file written with its origin URL).
    Downloaded,
    /// Process -> file.
    Wrote,
    /// Host -> host, IP -> host, or user -> host (successful logons).
    LoggedOnTo,
    /// Process -> file (the service's binary), host -> file, or a remote source -> file (installed
    /// in a session its logon opened).
    InstalledService,
    /// Process -> URL (an HTTP request).
    Requested,
    /// Host or IP -> host: a file share or named pipe opened from there (only the target saw it).
    AccessedShare,
    /// Process or remote source -> file: a scheduled task registered (its file under `Tasks\`).
    CreatedTask,
}

impl EdgeKind {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeKind::Spawned => "spawned",
            EdgeKind::Executed => "executed",
            EdgeKind::ConnectedTo => "connected_to",
            EdgeKind::Resolved => "resolved",
            EdgeKind::Downloaded => "downloaded",
            EdgeKind::Wrote => "wrote",
            EdgeKind::LoggedOnTo => "logged_on_to",
            EdgeKind::InstalledService => "installed_service",
            EdgeKind::Requested => "requested",
            EdgeKind::AccessedShare => "accessed_share",
            EdgeKind::CreatedTask => "created_task",
        }
    }
}

/// A node attribute's name (a byte in the node, compared as one; its name in the API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Attr {
    /// A process's command line.
    CommandLine,
    /// A process's executable.
    Executable,
    /// A process's id.
    Pid,
    /// A service a file was installed as.
    Service,
    /// A process's or a file's SHA-256.
    Sha256,
    /// An address node that stands for a host outside the fleet.
    Unmanaged,
    /// The account a process runs as, `DOMAIN\name`.
    User,
}

impl Attr {
    /// Its name in the API (the variants are in the order of their names).
    pub fn as_str(self) -> &'static str {
        match self {
            Attr::CommandLine => "command_line",
            Attr::Executable => "executable",
            Attr::Pid => "pid",
            Attr::Service => "service",
            Attr::Sha256 => "sha256",
            Attr::Unmanaged => "unmanaged",
            Attr::User => "user",
        }
    }
}
