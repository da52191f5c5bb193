//! Network connections with the process that owns them, through the kernel's socket diagnostics
//! (`NETLINK_SOCK_DIAG`, `inet_diag`): every [`POLL`] the TCP sockets (IPv4 and IPv6) that are
//! listening, connecting or established are dumped, and each socket not seen before is an event:
//! `listen` (a listening socket appeared), `connect` (outbound) or `accept` (inbound: its local port
//! is one this host listens on). The socket's inode leads to its process through `/proc/PID/fd`.
//!
//! Sockets are polled, not followed: a connection opened and closed within one interval is missed
//! (counted nowhere, since nothing saw it), and a socket whose process closed it before the owner
//! lookup is reported without its process (`owner_missed`). Sockets open when the source starts are
//! remembered without events.

use super::procfs;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType, netlink, recv, send, socket};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often sockets are dumped.
pub const POLL: Duration = Duration::from_millis(250);

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
use super::nlmsg::HDR as NLMSG_HDR;
const IPPROTO_TCP: u8 = 6;
const TCP_ESTABLISHED: u8 = 1;
const TCP_SYN_SENT: u8 = 2;
const TCP_LISTEN: u8 = 10;

/// One socket as `inet_diag` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiagSocket {
    /// `TCP_*` state.
    pub state: u8,
    /// Local address and port.
    pub local: (IpAddr, u16),
    /// Remote address and port.
    pub remote: (IpAddr, u16),
    /// The owner's uid.
    pub uid: u32,
    /// The socket's inode (`socket:[inode]` in `/proc/PID/fd`).
    pub inode: u32,
    /// The kernel's cookie: unique per socket while the system runs.
    pub cookie: u64,
}

/// What the network source did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct NetworkStats {
    /// Socket dumps made.
    pub polls: u64,
    /// Sockets reported.
    pub reported: u64,
    /// Sockets reported without their process (it closed them, or ended, before the lookup).
    pub owner_missed: u64,
}

/// The sock_diag source.
pub struct NetworkSource {
    fd: OwnedFd,
    host: String,
    proc_root: PathBuf,
    boot_id: String,
    seen: HashSet<u64>,
    buf: Vec<u8>,
    /// What it did.
    pub stats: NetworkStats,
}

impl NetworkSource {
    /// Opens the diagnostics socket and remembers the sockets open now.
    pub fn open(host: &str, proc_root: &Path) -> std::io::Result<NetworkSource> {
        let fd = socket(AddressFamily::NETLINK, SocketType::DGRAM, Some(netlink::SOCK_DIAG))?;
        rustix::net::sockopt::set_socket_timeout(&fd, rustix::net::sockopt::Timeout::Recv, Some(POLL))?;
        let mut s = NetworkSource {
            fd,
            host: host.to_owned(),
            proc_root: proc_root.to_owned(),
            boot_id: procfs::boot_id(proc_root),
            seen: HashSet::new(),
            buf: vec![0; 64 * 1024],
            stats: NetworkStats::default(),
        };
        let now = s.dump()?;
        s.seen = now.iter().map(|d| d.cookie).collect();
        Ok(s)
    }

    /// The TCP sockets listening, connecting or established now.
    pub fn dump(&mut self) -> std::io::Result<Vec<DiagSocket>> {
        let mut out = Vec::new();
        let states = (1u32 << TCP_ESTABLISHED) | (1 << TCP_SYN_SENT) | (1 << TCP_LISTEN);
        for family in [AddressFamily::INET, AddressFamily::INET6] {
            send(&self.fd, &request(family.as_raw() as u8, IPPROTO_TCP, states), SendFlags::empty())?;
            'reply: loop {
                let n = match recv(&self.fd, &mut self.buf[..], RecvFlags::empty()) {
                    Ok((n, _)) => n,
                    Err(e) if e == rustix::io::Errno::INTR => continue,
                    Err(e) => return Err(e.into()),
                };
                for m in messages(&self.buf[..n]) {
                    match m {
                        Message::Socket(d) => out.push(d),
                        Message::Done => break 'reply,
                        Message::Error(code) => return Err(std::io::Error::from_raw_os_error(-code)),
                    }
                }
            }
        }
        self.stats.polls += 1;
        Ok(out)
    }

    /// The events for sockets that appeared since the last poll.
    pub fn poll(&mut self) -> std::io::Result<Vec<Value>> {
        let now = self.dump()?;
        let listening: HashSet<u16> =
            now.iter().filter(|d| d.state == TCP_LISTEN).map(|d| d.local.1).collect();
        let fresh: Vec<&DiagSocket> = now.iter().filter(|d| !self.seen.contains(&d.cookie)).collect();
        let owners = if fresh.is_empty() {
            HashMap::new()
        } else {
            owners(&self.proc_root, fresh.iter().map(|d| d.inode).collect())
        };
        let events = fresh.iter().map(|d| self.event(d, &listening, owners.get(&d.inode).copied())).collect();
        // Sockets gone are forgotten, so the set does not grow without bound.
        self.seen = now.iter().map(|d| d.cookie).collect();
        Ok(events)
    }

    fn event(&mut self, d: &DiagSocket, listening: &HashSet<u16>, owner: Option<u32>) -> Value {
        self.stats.reported += 1;
        let (action, direction) = match d.state {
            TCP_LISTEN => ("listen", "ingress"),
            _ if listening.contains(&d.local.1) => ("accept", "ingress"),
            _ => ("connect", "egress"),
        };
        let (src, dst) = if direction == "ingress" && action == "accept" {
            (d.remote, d.local)
        } else {
            (d.local, d.remote)
        };
        let mut e = json!({
            "@timestamp": schemas::time::format_micros(schemas::time::now_micros()),
            "event": {"category": "network", "action": action, "type": ["connection", "start"],
                      "module": "cordon-agent"},
            "host": {"name": self.host, "os": {"type": "linux", "family": "linux"}},
            "network": {"transport": "tcp", "direction": direction,
                        "type": if d.local.0.is_ipv4() { "ipv4" } else { "ipv6" }},
            "source": {"ip": src.0.to_string(), "port": src.1},
            "user": {"id": d.uid.to_string()},
        });
        if action != "listen" {
            e["destination"] = json!({"ip": dst.0.to_string(), "port": dst.1});
        }
        if d.state == TCP_SYN_SENT {
            e["event"]["outcome"] = json!("unknown");
        }
        match owner.and_then(|pid| procfs::read(&self.proc_root, pid)) {
            Some(p) => {
                let mut proc = json!({"pid": p.pid, "entity_id": procfs::entity_id(&self.boot_id, p.pid, p.start_ticks),
                                      "name": p.exe.as_deref().and_then(|x| x.rsplit('/').next()).unwrap_or(&p.comm),
                                      "command_line": p.args.join(" "), "parent": {"pid": p.ppid}});
                if let Some(x) = p.exe {
                    proc["executable"] = json!(x);
                }
                e["process"] = proc;
            }
            None => self.stats.owner_missed += 1,
        }
        e
    }
}

/// The process holding each of `inodes` (first found), from `/proc/PID/fd`.
fn owners(proc_root: &Path, mut inodes: HashSet<u32>) -> HashMap<u32, u32> {
    let mut out = HashMap::new();
    for pid in procfs::pids(proc_root) {
        if inodes.is_empty() {
            break;
        }
        let Ok(fds) = std::fs::read_dir(proc_root.join(pid.to_string()).join("fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else { continue };
            let inode =
                link.to_str().and_then(|l| l.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok());
            if let Some(i) = inode.filter(|i| inodes.remove(i)) {
                out.insert(i, pid);
            }
        }
    }
    out
}

/// An `inet_diag_req_v2` dump request.
fn request(family: u8, protocol: u8, states: u32) -> Vec<u8> {
    let len = (NLMSG_HDR + 56) as u32;
    let mut m = Vec::with_capacity(len as usize);
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    m.extend_from_slice(&[family, protocol, 0, 0]);
    m.extend_from_slice(&states.to_ne_bytes());
    m.extend_from_slice(&[0u8; 48]); // inet_diag_sockid: any
    m
}

/// One netlink message of a dump's reply.
#[derive(Debug, PartialEq, Eq)]
enum Message {
    Socket(DiagSocket),
    Done,
    Error(i32),
}

/// The messages of one datagram.
fn messages(datagram: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    for (kind, body) in super::nlmsg::messages(datagram) {
        match kind {
            NLMSG_DONE => out.push(Message::Done),
            NLMSG_ERROR => {
                let code = body.get(..4).map_or(-1, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                out.push(if code == 0 { Message::Done } else { Message::Error(code) });
            }
            SOCK_DIAG_BY_FAMILY => out.extend(diag_msg(body).map(Message::Socket)),
            _ => {}
        }
    }
    out
}

/// An `inet_diag_msg`: family, state, timer, retrans, the socket id (ports big-endian, addresses,
/// interface, cookie), expires, queues, uid, inode.
fn diag_msg(b: &[u8]) -> Option<DiagSocket> {
    let b = b.get(..72)?;
    let (family, state) = (b[0], b[1]);
    let port = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    let addr = |at: usize| -> IpAddr {
        if family == AddressFamily::INET6.as_raw() as u8 {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[at..at + 16]);
            let v6 = Ipv6Addr::from(a);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        } else {
            IpAddr::V4(Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]))
        }
    };
    let u32_at = |at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let cookie = u64::from(u32_at(44)) | (u64::from(u32_at(48)) << 32);
    Some(DiagSocket {
        state,
        local: (addr(8), port(4)),
        remote: (addr(24), port(6)),
        uid: u32_at(64),
        inode: u32_at(68),
        cookie,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_listener_a_connection_and_its_accept_are_reported_with_their_processes() {
        let mut src = NetworkSource::open("h", Path::new("/proc")).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.3:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut out = std::net::TcpStream::connect(("127.0.0.3", port)).unwrap();
        let (mut inbound, _) = listener.accept().unwrap();
        out.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        inbound.read_exact(&mut one).unwrap();
        let events = src.poll().unwrap();
        let mine: Vec<&Value> = events
            .iter()
            .filter(|e| e["source"]["port"] == port || e["destination"]["port"] == port)
            .collect();
        let actions: HashSet<&str> = mine.iter().map(|e| e["event"]["action"].as_str().unwrap()).collect();
        assert_eq!(actions, HashSet::from(["listen", "connect", "accept"]), "{mine:?}");
        let me = std::process::id();
        assert!(mine.iter().all(|e| e["process"]["pid"] == me), "each socket is this process's: {mine:?}");
        let connect = mine.iter().find(|e| e["event"]["action"] == "connect").unwrap();
        assert_eq!(
            (connect["destination"]["ip"].as_str(), connect["network"]["direction"].as_str()),
            (Some("127.0.0.3"), Some("egress"))
        );
        let accept = mine.iter().find(|e| e["event"]["action"] == "accept").unwrap();
        assert_eq!(accept["destination"]["port"], port, "inbound: the destination is this host's port");
        assert!(
            src.poll()
                .unwrap()
                .iter()
                .all(|e| e["source"]["port"] != port && e["destination"]["port"] != port),
            "reported once"
        );
    }

    #[test]
    fn replies_are_parsed_and_errors_surface() {
        let mut msg = vec![0u8; 72];
        msg[0] = 2; // AF_INET
        msg[1] = TCP_ESTABLISHED;
        msg[4..6].copy_from_slice(&443u16.to_be_bytes());
        msg[6..8].copy_from_slice(&51000u16.to_be_bytes());
        msg[8..12].copy_from_slice(&[10, 0, 0, 5]);
        msg[24..28].copy_from_slice(&[203, 0, 113, 9]);
        msg[68..72].copy_from_slice(&777u32.to_ne_bytes());
        let mut d = ((NLMSG_HDR + 72) as u32).to_ne_bytes().to_vec();
        d.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        d.extend([0u8; 10]);
        d.extend(&msg);
        let mut err = 20u32.to_ne_bytes().to_vec();
        err.extend(NLMSG_ERROR.to_ne_bytes());
        err.extend([0u8; 10]);
        err.extend((-13i32).to_ne_bytes());
        d.extend(err);
        let got = messages(&d);
        assert_eq!(got.len(), 2);
        let Message::Socket(s) = &got[0] else { panic!("{got:?}") };
        assert_eq!(
            (s.local, s.remote, s.inode),
            (("10.0.0.5".parse().unwrap(), 443), ("203.0.113.9".parse().unwrap(), 51000), 777)
        );
        assert_eq!(got[1], Message::Error(-13));
        assert!(messages(&d[..30]).is_empty(), "a short datagram is nothing");
    }
}
