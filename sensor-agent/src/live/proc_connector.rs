//! The kernel's process events through the netlink process connector (`CONFIG_PROC_EVENTS`): every
//! fork, exec and exit on the host, as they happen, to a socket subscribed to `CN_IDX_PROC`. Needs
//! `CAP_NET_ADMIN` in the initial user namespace; where the kernel refuses, [`Connector::open`] says
//! why and the caller falls back to scanning `/proc`.
//!
//! From Linux 6.6 each socket's subscription names the events wanted and the kernel drops the rest
//! before they wake the reader (not uid, gid, session, ptrace, name or core dump changes). The agent
//! then opens two sockets ([`Connectors`]): forks and execs on the one it waits on, exits on a
//! second that it drains whenever a start wakes it (or its wait runs out), so an exit costs no
//! wakeup of its own. Forks stay on the first: a process gone before `/proc` is read learns its
//! parent from its fork, and the fork's wakeup has the reader running when the exec follows (left
//! out, a third more short-lived processes ended before they were read). Older kernels get one
//! socket with the plain subscription (every event).
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

/// The events one socket is subscribed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscription {
    /// Forks and execs: each wakes the reader.
    Starts,
    /// Exits only: read when a start wakes the reader, never waking it.
    Exits,
    /// Every event (kernels before 6.6 cannot filter).
    All,
}

impl Subscription {
    /// The `proc_input` event mask; `None`: the plain (unfiltered) form.
    fn mask(self) -> Option<u32> {
        match self {
            Subscription::Starts => Some(PROC_EVENT_FORK | PROC_EVENT_EXEC),
            Subscription::Exits => Some(PROC_EVENT_EXIT),
            Subscription::All => None,
        }
    }
}

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

/// The sockets the process source reads: `starts` (waited on) and, where the kernel filters,
/// `exits` (drained when `starts` wakes the reader or its wait runs out).
#[derive(Debug)]
pub struct Connectors {
    /// Forks and execs, or every event where the kernel cannot filter.
    pub starts: Connector,
    /// Exits, where the kernel filters (Linux 6.6+).
    pub exits: Option<Connector>,
}

impl Connectors {
    /// Opens and subscribes the sockets; reads of `starts` wait at most `poll` so the caller can stop
    /// (and exits are read at least that often).
    pub fn open(poll: Duration) -> std::io::Result<Connectors> {
        let filtered = kernel_at_least(&std::fs::read_to_string("/proc/sys/kernel/osrelease")?, (6, 6));
        if !filtered {
            return Ok(Connectors { starts: Connector::open(Subscription::All, poll)?, exits: None });
        }
        Ok(Connectors {
            starts: Connector::open(Subscription::Starts, poll)?,
            exits: Some(Connector::open(Subscription::Exits, poll)?),
        })
    }

    /// Whether the kernel filters the events (no uid, name or other changes reach the agent).
    pub fn filtered(&self) -> bool {
        self.exits.is_some()
    }
}

/// A subscribed process-connector socket.
#[derive(Debug)]
pub struct Connector {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl Connector {
    /// Opens a socket subscribed to `events`; blocking reads wait at most `poll`.
    pub fn open(events: Subscription, poll: Duration) -> std::io::Result<Connector> {
        let fd = socket(AddressFamily::NETLINK, SocketType::DGRAM, Some(netlink::CONNECTOR))?;
        // A burst of thousands of processes must not overflow the socket before it is read (the
        // kernel drops what does not fit, and says so only as ENOBUFS): past `rmem_max` where the
        // agent may (CAP_NET_ADMIN), else as much as it allows.
        if set_socket_recv_buffer_size_force(&fd, RECV_BUFFER).is_err() {
            let _ = set_socket_recv_buffer_size(&fd, RECV_BUFFER);
        }
        bind(&fd, &netlink::SocketAddrNetlink::new(0, CN_IDX_PROC))?;
        set_socket_timeout(&fd, Timeout::Recv, Some(poll))?;
        send(&fd, &listen_message(events.mask()), SendFlags::empty())?;
        Ok(Connector { fd, buf: vec![0; 64 * 1024] })
    }

    /// The events of the next datagram, waiting for it at most the socket's `poll` (`None` when the
    /// wait ran out; a datagram may hold no event the agent reads, a thread's fork say). An overrun
    /// socket (`ENOBUFS`: the kernel dropped events) is returned as that error, so it can be counted.
    pub fn read_events(&mut self) -> std::io::Result<Option<Vec<KernelEvent>>> {
        self.receive(RecvFlags::empty())
    }

    /// The events of the next datagram already queued (`None` when none is).
    pub fn try_read_events(&mut self) -> std::io::Result<Option<Vec<KernelEvent>>> {
        self.receive(RecvFlags::DONTWAIT)
    }

    fn receive(&mut self, flags: RecvFlags) -> std::io::Result<Option<Vec<KernelEvent>>> {
        match recv(&self.fd, &mut self.buf[..], flags) {
            Ok((n, _)) => Ok(Some(parse(&self.buf[..n]))),
            Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::INTR => Ok(None),
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

/// `PROC_CN_MCAST_LISTEN`, as a netlink message to the connector; with a `mask`, as `struct
/// proc_input` asking for those events only (Linux 6.6+; older kernels ignore that form).
fn listen_message(mask: Option<u32>) -> Vec<u8> {
    let payload: usize = if mask.is_some() { 8 } else { 4 };
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
    if let Some(mask) = mask {
        m.extend_from_slice(&mask.to_ne_bytes());
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
        assert_eq!(listen_message(Subscription::All.mask()).len(), 40);
        let starts = listen_message(Subscription::Starts.mask());
        assert_eq!((starts.len(), u32_at(&starts, 40)), (44, Some(PROC_EVENT_FORK | PROC_EVENT_EXEC)));
        let exits = listen_message(Subscription::Exits.mask());
        assert_eq!(u32_at(&exits, 40), Some(PROC_EVENT_EXIT));
    }

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert!(kernel_at_least("6.18.44-fc-v1252", (6, 6)));
        assert!(kernel_at_least("6.6.0", (6, 6)) && kernel_at_least("7.0.1", (6, 6)));
        assert!(!kernel_at_least("6.1.0-18-amd64", (6, 6)) && !kernel_at_least("5.15.0", (6, 6)));
        assert!(!kernel_at_least("garbage", (6, 6)));
    }
}
