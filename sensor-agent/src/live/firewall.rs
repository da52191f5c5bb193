//! Host firewall changes. nftables (and iptables, whose current form writes nftables) tells
//! subscribers of the netlink group `NFNLGRP_NFTABLES` of every committed transaction, ending with
//! a new generation that names the process that committed it (`NFT_MSG_NEWGEN` with
//! `NFTA_GEN_PROC_PID` and `NFTA_GEN_PROC_NAME`). On each, the ruleset is read (`nft list
//! ruleset`) and compared with the one before: the event carries both hashes, the rules added and
//! removed as a diff, and the process. Where the group cannot be joined, the ruleset is read every
//! [`POLL`] instead (without the process), and the source says why.

use super::hashes::sha256_hex;
use super::persistence::diff;
use rustix::net::sockopt::{Timeout, set_socket_timeout};
use rustix::net::{AddressFamily, RecvFlags, SocketType, bind, netlink, recv, socket};
use serde_json::{Value, json};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// How often the ruleset is read where no notification comes.
pub const POLL: Duration = Duration::from_secs(30);
/// How long a notification is given for the rest of its transaction to arrive.
const SETTLE: Duration = Duration::from_millis(100);

const NFNLGRP_NFTABLES: u32 = 7;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWGEN: u16 = 15;
const NFTA_GEN_ID: u16 = 1;
const NFTA_GEN_PROC_PID: u16 = 2;
const NFTA_GEN_PROC_NAME: u16 = 3;
const NFGENMSG: usize = 4;

/// A committed transaction: its generation, and the process that committed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Generation {
    /// The ruleset's generation number after it.
    pub id: u32,
    /// The committing process's pid (0: not said).
    pub pid: u32,
    /// Its name (`comm`).
    pub name: String,
}

/// What the source did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FirewallStats {
    /// `nfnetlink` or `poll`.
    pub facility: String,
    /// Transactions the kernel reported.
    pub transactions: u64,
    /// Changes reported.
    pub changes: u64,
    /// Reads of the ruleset that failed.
    pub read_failures: u64,
}

/// The source: the subscribed socket (if the kernel allowed it) and the ruleset last read.
pub struct Firewall {
    sock: Option<OwnedFd>,
    buf: Vec<u8>,
    host: String,
    ruleset: Option<String>,
    last_read: Instant,
    /// What it did.
    pub stats: FirewallStats,
}

impl Firewall {
    /// Subscribes to nftables' notifications (else polls, with the reason) and reads the ruleset as
    /// it is now (the baseline, not reported). Fails only when no ruleset can be read at all.
    pub fn open(host: &str) -> Result<(Self, Option<String>), String> {
        let ruleset = read_ruleset()?;
        let (sock, why) = match subscribe() {
            Ok(s) => (Some(s), None),
            Err(e) => (
                None,
                Some(format!("nfnetlink refused ({e}); the ruleset is read every {}s", POLL.as_secs())),
            ),
        };
        let facility = if sock.is_some() { "nfnetlink" } else { "poll" };
        let stats = FirewallStats { facility: facility.into(), ..Default::default() };
        let fw = Self {
            sock,
            buf: vec![0; 64 * 1024],
            host: host.to_owned(),
            ruleset: Some(ruleset),
            last_read: Instant::now(),
            stats,
        };
        Ok((fw, why))
    }

    /// Waits up to `wait` for a transaction (or, polling, for the next read) and reports the
    /// ruleset's change, if it changed.
    pub fn poll(&mut self, wait: Duration) -> Option<Value> {
        let committed = match &self.sock {
            Some(sock) => {
                let mut gens = receive(sock, &mut self.buf, wait)?;
                // A transaction arrives as many messages: let the rest of it come.
                std::thread::sleep(SETTLE);
                while let Some(more) = receive(sock, &mut self.buf, Duration::from_millis(1)) {
                    gens.extend(more);
                }
                self.stats.transactions += gens.len().max(1) as u64;
                gens.pop()
            }
            None if self.last_read.elapsed() < super::budget::interval(POLL) => {
                std::thread::sleep(wait);
                return None;
            }
            None => None, // time to read it again
        };
        self.last_read = Instant::now();
        let after = match read_ruleset() {
            Ok(r) => r,
            Err(e) => {
                self.stats.read_failures += 1;
                tracing::warn!(error = %e, "could not read the firewall ruleset");
                return None;
            }
        };
        let before = self.ruleset.replace(after.clone()).unwrap_or_default();
        if before == after {
            return None;
        }
        self.stats.changes += 1;
        Some(self.event(&before, &after, committed))
    }

    fn event(&self, before: &str, after: &str, by: Option<Generation>) -> Value {
        let mut e = json!({
            "@timestamp": schemas::time::format_micros(schemas::time::now_micros()),
            "event": {"kind": "event", "category": "configuration", "type": ["change"],
                      "action": "firewall-changed", "module": "cordon-agent", "dataset": "cordon.firewall"},
            "host": {"name": self.host, "os": {"type": "linux", "family": "linux"}},
            "cordon": {"firewall": {
                "backend": "nftables",
                "before_sha256": sha256_hex(before.as_bytes()),
                "after_sha256": sha256_hex(after.as_bytes()),
                "rules_before": rule_count(before),
                "rules_after": rule_count(after),
                "diff": diff(before, after),
            }},
        });
        if let Some(g) = by {
            e["cordon"]["firewall"]["generation"] = json!(g.id);
            if g.pid != 0 {
                e["process"] = json!({"pid": g.pid, "name": g.name});
            }
        }
        e
    }
}

/// Rules in an `nft list ruleset` text: the lines of a chain that are not its header or policy.
fn rule_count(ruleset: &str) -> usize {
    let mut in_chain = false;
    let mut n = 0;
    for line in ruleset.lines().map(str::trim) {
        if line.starts_with("chain ") {
            in_chain = true;
        } else if line == "}" {
            in_chain = false;
        } else if in_chain && !line.is_empty() && !line.starts_with("type ") && !line.starts_with("policy ") {
            n += 1;
        }
    }
    n
}

/// The ruleset as `nft list ruleset` prints it.
pub fn read_ruleset() -> Result<String, String> {
    let out = std::process::Command::new("nft")
        .args(["list", "ruleset"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if !out.status.success() {
        return Err(format!("nft list ruleset: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A socket subscribed to nftables' notifications.
fn subscribe() -> std::io::Result<OwnedFd> {
    let fd = socket(AddressFamily::NETLINK, SocketType::RAW, Some(netlink::NETFILTER))?;
    bind(&fd, &netlink::SocketAddrNetlink::new(0, 1 << (NFNLGRP_NFTABLES - 1)))?;
    Ok(fd)
}

/// The generations in what arrives within `wait` (`None`: nothing arrived; an empty list: messages
/// without a generation, or an overrun, which still means the ruleset may have changed).
fn receive(sock: &OwnedFd, buf: &mut [u8], wait: Duration) -> Option<Vec<Generation>> {
    set_socket_timeout(sock, Timeout::Recv, Some(wait)).ok()?;
    match recv(sock, &mut *buf, RecvFlags::empty()) {
        Ok((n, _)) => Some(generations(&buf[..n.min(buf.len())])),
        Err(e) if e == rustix::io::Errno::NOBUFS => Some(Vec::new()),
        Err(_) => None,
    }
}

/// The `NFT_MSG_NEWGEN` messages of a datagram.
pub fn generations(datagram: &[u8]) -> Vec<Generation> {
    super::nlmsg::messages(datagram)
        .filter(|(kind, _)| *kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN)
        .map(|(_, body)| generation(body.get(NFGENMSG..).unwrap_or_default()))
        .collect()
}

/// A generation's attributes (netlink attributes; numbers big-endian).
fn generation(mut attrs: &[u8]) -> Generation {
    let mut g = Generation::default();
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            break;
        }
        let value = &attrs[4..len];
        let be32 = || value.get(..4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        match kind {
            NFTA_GEN_ID => g.id = be32(),
            NFTA_GEN_PROC_PID => g.pid = be32(),
            NFTA_GEN_PROC_NAME => {
                g.name =
                    String::from_utf8_lossy(value.split(|b| *b == 0).next().unwrap_or_default()).into_owned()
            }
            _ => {}
        }
        attrs = attrs.get((len + 3) & !3..).unwrap_or_default();
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        a.resize((a.len() + 3) & !3, 0);
        a
    }

    #[test]
    fn a_new_generation_names_its_process() {
        let mut body = vec![0u8, 0, 0, 0]; // nfgenmsg
        body.extend(attr(NFTA_GEN_ID, &42u32.to_be_bytes()));
        body.extend(attr(NFTA_GEN_PROC_PID, &4242u32.to_be_bytes()));
        body.extend(attr(NFTA_GEN_PROC_NAME, b"nft\0"));
        let mut msg = Vec::new();
        msg.extend_from_slice(&((super::super::nlmsg::HDR + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN).to_ne_bytes());
        msg.extend_from_slice(&[0u8; 10]);
        msg.extend(body);
        let mut other = msg.clone();
        other[4] = 3; // another message type first: skipped
        other.extend(msg);
        assert_eq!(generations(&other), vec![Generation { id: 42, pid: 4242, name: "nft".into() }]);
        assert!(generations(&[1, 2, 3]).is_empty(), "short input");
    }

    #[test]
    fn rules_are_counted_inside_chains() {
        let r = "table inet t {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 22 accept\n\t\tdrop\n\t}\n}\n";
        assert_eq!(rule_count(r), 2);
    }

    /// A rule added with `nft` on this host (root here, as in CI) is reported with the process that
    /// committed it, both hashes and the added rule in the diff; removing the table is reported too.
    #[test]
    fn a_rule_added_with_nft_is_reported_with_its_process() {
        let table = format!("cordon_fw_test_{}", std::process::id());
        let nft = |args: &str| {
            let ok = std::process::Command::new("nft").args(args.split(' ')).status().unwrap().success();
            assert!(ok, "nft {args} (apt-get install nftables; this test runs as root)");
        };
        let (mut fw, why) = Firewall::open("t").expect("nft lists the ruleset (apt-get install nftables)");
        assert_eq!(why, None, "nfnetlink is allowed here");
        nft(&format!("add table inet {table}"));
        nft(&format!(
            "add chain inet {table} input {{ type filter hook input priority 0 ; policy accept ; }}"
        ));
        nft(&format!("add rule inet {table} input tcp dport 9 drop"));
        let adds_rule = |e: &Value| {
            let d = e["cordon"]["firewall"]["diff"].as_str().unwrap_or_default();
            d.lines().any(|l| l.starts_with('+') && l.contains("tcp dport 9 drop"))
        };
        let mut events = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !events.iter().any(adds_rule) {
            events.extend(fw.poll(Duration::from_millis(200)));
        }
        nft(&format!("delete table inet {table}"));
        let removed = (0..25).find_map(|_| fw.poll(Duration::from_millis(200)));
        let added =
            events.iter().find(|e| adds_rule(e)).unwrap_or_else(|| panic!("the rule's change: {events:?}"));
        assert_eq!(added["process"]["name"], "nft", "{added}");
        assert!(added["process"]["pid"].as_u64().is_some_and(|p| p > 0));
        assert_ne!(added["cordon"]["firewall"]["before_sha256"], added["cordon"]["firewall"]["after_sha256"]);
        let removed = removed.expect("the table's removal");
        let d = removed["cordon"]["firewall"]["diff"].as_str().unwrap();
        assert!(d.lines().any(|l| l.starts_with('-') && l.contains("tcp dport 9 drop")), "{d}");
        assert_eq!(
            removed["cordon"]["firewall"]["rules_after"].as_u64(),
            Some(rule_count(&read_ruleset().unwrap()) as u64)
        );
    }
}
