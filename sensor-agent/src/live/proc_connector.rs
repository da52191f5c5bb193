//! The kernel's process events through the netlink process connector (`CONFIG_PROC_EVENTS`): every
//! fork, exec and exit on the host, as they happen, to a socket subscribed to `CN_IDX_PROC`. Needs
//! `CAP_NET_ADMIN` in the initial user namespace; where the kernel refuses, [`Connector::open`] says
//! why and the caller falls back to scanning `/proc`.
//!
//! From Linux 6.6 the subscription names the events wanted and the kernel drops the rest before they
//! wake the reader: the agent asks for forks, execs and exits (not uid, gid, session, ptrace, name
//! or core dump changes). Forks stay: a process gone before `/proc` is read learns its parent from
//! its fork, which the kernel sends before its exec (its exit comes after, and a reader behind in a
//! burst would wait for it past [`super::process::REORDER`]). Older kernels get the plain
//! subscription (every event).
//!
//! Wire layout (`linux/connector.h`, `linux/cn_proc.h`): a netlink header (16 bytes), a connector
//! message header (20 bytes), then `struct proc_event`: `what` (u32), `cpu` (u32), `timestamp_ns`
//! (u64) and the event's own fields.

use rustix::net::sockopt::{
    Timeout, set_socket_recv_buffer_size, set_socket_recv_buffer_size_force, set_socket_timeout,
};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType, bind, netlink, recv, send, socket};
use std::os::fd::OwnedFd;
use std::time::Duration;

const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const NLMSG_DONE: u16 = 3;
/// The socket's receive buffer: about 40,000 events (an event takes about 768 bytes of it).
const RECV_BUFFER: usize = 32 << 20;
use super::nlmsg::HDR as NLMSG_HDR;
const CN_MSG_HDR: usize = 20;

const PROC_EVENT_FORK: u32 = 0x0000_0001;
const PROC_EVENT_EXEC: u32 = 0x0000_0002;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;
/// The events the agent reads.
const WANTED: u32 = PROC_EVENT_FORK | PROC_EVENT_EXEC | PROC_EVENT_EXIT;

/// One process event from the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelEvent {
    /// A new process (not a thread): its parent and itself.
    Fork { parent: u32, child: u32 },
    /// A process replaced its image.
    Exec { pid: u32 },
    /// A process ended (its thread group's leader), with its exit code as `wait` reports it and its
    /// parent (0 where the kernel does not say).
    Exit { pid: u32, code: u32, signal: u32, parent: u32 },
}

/// A subscribed process-connector socket.
#[derive(Debug)]
pub struct Connector {
    fd: OwnedFd,
    buf: Vec<u8>,
    /// Whether the kernel filters the events (forks, execs and exits only).
    pub filtered: bool,
}

impl Connector {
    /// Opens the socket and subscribes to process events; reads wait at most `poll` so the caller
    /// can stop.
    pub fn open(poll: Duration) -> std::io::Result<Connector> {
        let fd = socket(AddressFamily::NETLINK, SocketType::DGRAM, Some(netlink::CONNECTOR))?;
        // A burst of thousands of processes must not overflow the socket before it is read (the
        // kernel drops what does not fit, and says so only as ENOBUFS): past `rmem_max` where the
        // agent may (CAP_NET_ADMIN), else as much as it allows.
        if set_socket_recv_buffer_size_force(&fd, RECV_BUFFER).is_err() {
            let _ = set_socket_recv_buffer_size(&fd, RECV_BUFFER);
        }
        bind(&fd, &netlink::SocketAddrNetlink::new(0, CN_IDX_PROC))?;
        set_socket_timeout(&fd, Timeout::Recv, Some(poll))?;
        let filtered = kernel_at_least(&std::fs::read_to_string("/proc/sys/kernel/osrelease")?, (6, 6));
        send(&fd, &listen_message(filtered), SendFlags::empty())?;
        Ok(Connector { fd, buf: vec![0; 64 * 1024], filtered })
    }

    /// The events of the next datagram (empty when the wait ran out). An overrun socket
    /// (`ENOBUFS`: the kernel dropped events) is returned as that error, so it can be counted.
    pub fn read_events(&mut self) -> std::io::Result<Vec<KernelEvent>> {
        match recv(&self.fd, &mut self.buf[..], RecvFlags::empty()) {
            Ok((n, _)) => Ok(parse(&self.buf[..n])),
            Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::INTR => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether a kernel release (`6.1.0-18-amd64`) is at least `want` (major, minor).
pub fn kernel_at_least(release: &str, want: (u32, u32)) -> bool {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= want,
        _ => false,
    }
}

/// `PROC_CN_MCAST_LISTEN`, as a netlink message to the connector; `filtered`: as `struct
/// proc_input`, asking for forks, execs and exits only (Linux 6.6+; older kernels ignore that form).
fn listen_message(filtered: bool) -> Vec<u8> {
    let payload: usize = if filtered { 8 } else { 4 };
    let mut m = Vec::with_capacity(NLMSG_HDR + CN_MSG_HDR + payload);
    let total = (NLMSG_HDR + CN_MSG_HDR + payload) as u32;
    m.extend_from_slice(&total.to_ne_bytes());
    m.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&std::process::id().to_ne_bytes());
    for v in [CN_IDX_PROC, CN_VAL_PROC, 0, 0] {
        m.extend_from_slice(&v.to_ne_bytes());
    }
    m.extend_from_slice(&(payload as u16).to_ne_bytes()); // len
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
    if filtered {
        m.extend_from_slice(&WANTED.to_ne_bytes());
    }
    m
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

/// The process events of one datagram (netlink messages one after another); anything short or
/// unknown is skipped.
pub fn parse(datagram: &[u8]) -> Vec<KernelEvent> {
    super::nlmsg::messages(datagram).filter_map(|(_, body)| event(body.get(CN_MSG_HDR..)?)).collect()
}

/// One `struct proc_event`.
fn event(ev: &[u8]) -> Option<KernelEvent> {
    let what = u32_at(ev, 0)?;
    let data = 16; // what, cpu, timestamp_ns
    match what {
        PROC_EVENT_FORK => {
            let (parent_tgid, child_pid, child_tgid) =
                (u32_at(ev, data + 4)?, u32_at(ev, data + 8)?, u32_at(ev, data + 12)?);
            // A new thread shares its thread group: only new processes are forks here.
            (child_pid == child_tgid).then_some(KernelEvent::Fork { parent: parent_tgid, child: child_tgid })
        }
        PROC_EVENT_EXEC => Some(KernelEvent::Exec { pid: u32_at(ev, data + 4)? }),
        PROC_EVENT_EXIT => {
            let (pid, tgid) = (u32_at(ev, data)?, u32_at(ev, data + 4)?);
            (pid == tgid).then_some(KernelEvent::Exit {
                pid: tgid,
                code: u32_at(ev, data + 8)?,
                signal: u32_at(ev, data + 12)?,
                parent: u32_at(ev, data + 20).unwrap_or(0),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(what: u32, fields: &[u32]) -> Vec<u8> {
        let body: Vec<u8> = [what, 0]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .chain(0u64.to_ne_bytes())
            .chain(fields.iter().flat_map(|v| v.to_ne_bytes()))
            .collect();
        let len = (NLMSG_HDR + CN_MSG_HDR + body.len()) as u32;
        let mut m = len.to_ne_bytes().to_vec();
        m.extend(std::iter::repeat_n(0u8, NLMSG_HDR - 4 + CN_MSG_HDR));
        m.extend(body);
        m
    }

    #[test]
    fn forks_execs_and_exits_are_read_and_threads_left_out() {
        let mut d = message(PROC_EVENT_FORK, &[10, 10, 11, 11]);
        d.extend(message(PROC_EVENT_FORK, &[10, 10, 12, 11])); // a thread of 11
        d.extend(message(PROC_EVENT_EXEC, &[11, 11]));
        d.extend(message(PROC_EVENT_EXIT, &[11, 11, 256, 17, 10, 10]));
        d.extend(message(0x20, &[1, 2])); // a uid change: not followed
        d.extend([1, 2, 3]); // a short tail
        assert_eq!(
            parse(&d),
            [
                KernelEvent::Fork { parent: 10, child: 11 },
                KernelEvent::Exec { pid: 11 },
                KernelEvent::Exit { pid: 11, code: 256, signal: 17, parent: 10 }
            ]
        );
        assert_eq!(listen_message(false).len(), 40);
        let filtered = listen_message(true);
        assert_eq!((filtered.len(), u32_at(&filtered, 40)), (44, Some(WANTED)));
    }

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert!(kernel_at_least("6.18.44-fc-v1252", (6, 6)));
        assert!(kernel_at_least("6.6.0", (6, 6)) && kernel_at_least("7.0.1", (6, 6)));
        assert!(!kernel_at_least("6.1.0-18-amd64", (6, 6)) && !kernel_at_least("5.15.0", (6, 6)));
        assert!(!kernel_at_least("garbage", (6, 6)));
    }
}
