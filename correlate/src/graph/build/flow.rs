//! Connections: what a network or web event says about one connection, and how the two ends of a
//! connection between fleet hosts find each other (each host reports its own end).

use super::{Cols, int, list, text};
use crate::graph::{EdgeKind, Graph, NodeKind, Text, is_internal_ip};
use petgraph::stable_graph::NodeIndex;
use schemas::Record;

/// One end of a connection, waiting for the other host's report.
#[derive(Clone, Debug)]
pub(in crate::graph) struct FlowEnd {
    node: NodeIndex,
    host: Text,
    pub(in crate::graph) t: i64,
    event: Text,
    src_port: Option<u16>,
}

/// Who reported a connection: the process (or host) that made or took it, on which host, when, by
/// which event.
pub(in crate::graph) struct Reporter<'a> {
    pub(in crate::graph) node: NodeIndex,
    pub(in crate::graph) host: &'a Text,
    pub(in crate::graph) t: i64,
    pub(in crate::graph) event: &'a Text,
}

impl Reporter<'_> {
    /// This report as an end waiting for the other host's.
    fn end(&self, src_port: Option<u16>) -> FlowEnd {
        FlowEnd { node: self.node, host: self.host.clone(), t: self.t, event: self.event.clone(), src_port }
    }
}

/// The connection an event describes, from the reporting host's side.
struct Flow<'r> {
    src: &'r str,
    dst: &'r str,
    dport: Option<u16>,
    sport: Option<u16>,
    /// The reporting host took the connection (it is the destination).
    inbound: bool,
}

impl<'r> Flow<'r> {
    fn read(rec: &'r Record, c: &Cols, own: &[String]) -> Self {
        let (src, dst) = (text(rec, c.src_ip), text(rec, c.dst_ip));
        let port = |i| int(rec, i).and_then(|p| u16::try_from(p).ok());
        let dir = text(rec, c.direction);
        let action = text(rec, c.action);
        let inbound = dir == "inbound"
            || action == "accept"
            || action == "http-access"
            || (!dst.is_empty() && own.iter().any(|i| i == dst) && dir != "outbound");
        Flow { src, dst, dport: port(c.dst_port), sport: port(c.src_port), inbound }
    }

    /// The reporting host's own address on this connection.
    fn own_side(&self) -> &'r str {
        if self.inbound { self.dst } else { self.src }
    }

    fn key(&self) -> u64 {
        flow_key(self.src, self.dst, self.dport)
    }
}

impl Graph {
    /// A network or web event: a DNS answer, or one end of a connection.
    pub(super) fn add_flow(&mut self, rec: &Record, c: &Cols, by: &Reporter, own: &[String]) {
        let dns = text(rec, c.dns_name);
        if !dns.is_empty() {
            return self.add_resolution(rec, c, dns, by);
        }
        let flow = Flow::read(rec, c, own);
        self.learn_own_address(flow.own_side(), by);
        if flow.inbound {
            self.add_inbound(&flow, by);
        } else {
            self.add_outbound(rec, c, &flow, by, own);
        }
    }

    /// A DNS answer: the name resolved to each address (remembered to name later connections).
    fn add_resolution(&mut self, rec: &Record, c: &Cols, dns: &str, by: &Reporter) {
        let name = dns.to_ascii_lowercase();
        let d = self.node_at(NodeKind::Domain, &name, dns, None, by.t);
        for ip in list(rec, c.dns_ips) {
            self.names.insert(ip.clone(), name.clone());
            let i = self.node_at(NodeKind::Ip, ip, ip, None, by.t);
            self.link(d, i, EdgeKind::Resolved, by.t, by.event);
        }
    }

    /// A host's own reports teach its addresses (Windows events carry no host.ip): the destination
    /// of what it accepted, the source of what it opened.
    fn learn_own_address(&mut self, ip: &str, by: &Reporter) {
        if super::is_assignable(ip) {
            self.leases.note(ip, by.host, by.t);
            if let Some(h) = self.find(NodeKind::Host, by.host) {
                self.merge_address(ip, h);
            }
        }
    }

    /// The accepting end: joins the opener's report when it came first, else waits for it; a peer
    /// outside the fleet (an address nobody holds) is an IP node.
    fn add_inbound(&mut self, flow: &Flow, by: &Reporter) {
        if flow.src.is_empty() || flow.dst.is_empty() {
            return;
        }
        let (key, end) = (flow.key(), by.end(flow.sport));
        match take_match(self.outbound.get_mut(&key), &end, self.cfg.join_tolerance) {
            Some(out) if out.host != *by.host => {
                self.confirm(out.node, by.node, by.t.min(out.t), &out.event, by.event, flow.dport)
            }
            _ => push_end(&mut self.inbound, key, end),
        }
        if self.leases.owner(flow.src, by.t, self.cfg.lease_slack).is_none() && !is_internal_ip(flow.src) {
            let i = self.node_at(NodeKind::Ip, flow.src, flow.src, None, by.t);
            let e = self.link(i, by.node, EdgeKind::ConnectedTo, by.t, by.event);
            self.g[e].port(flow.dport);
        }
    }

    /// The opening end: to another fleet host (by the address it held then), inside the network,
    /// or outside.
    fn add_outbound(&mut self, rec: &Record, c: &Cols, flow: &Flow, by: &Reporter, own: &[String]) {
        if flow.dst.is_empty() {
            return;
        }
        let owner = self.leases.holder(flow.dst, by.t, self.cfg.lease_slack).cloned();
        let url = text(rec, c.url);
        if !url.is_empty() {
            let u = self.node_at(NodeKind::Url, url, url, None, by.t);
            self.link(by.node, u, EdgeKind::Requested, by.t, by.event);
        }
        if owner.as_ref() == Some(by.host) {
            return; // its own address
        }
        if is_internal_ip(flow.dst) {
            self.add_internal_outbound(flow, by, own, owner);
        } else {
            self.add_external_outbound(rec, c, flow, by);
        }
    }

    /// Inside the network: joins the accepting end's report when it came first, else links to the
    /// address's holder (or the address) and waits for it, whoever turns out to hold the address
    /// (its events may not have arrived yet).
    fn add_internal_outbound(&mut self, flow: &Flow, by: &Reporter, own: &[String], owner: Option<Text>) {
        let src = if flow.src.is_empty() { own.first().map_or("", String::as_str) } else { flow.src };
        let (key, end) = (flow_key(src, flow.dst, flow.dport), by.end(flow.sport));
        if let Some(inb) = take_match(self.inbound.get_mut(&key), &end, self.cfg.join_tolerance)
            && inb.host != *by.host
        {
            return self.confirm(by.node, inb.node, by.t.min(inb.t), by.event, &inb.event, flow.dport);
        }
        let target = match &owner {
            Some(b) => self.node_at(NodeKind::Host, b, b, None, by.t),
            None => self.node_at(NodeKind::Ip, flow.dst, flow.dst, None, by.t),
        };
        let e = self.link(by.node, target, EdgeKind::ConnectedTo, by.t, by.event);
        let edge = &mut self.g[e];
        edge.cross_host = owner.is_some();
        edge.port(flow.dport);
        push_end(&mut self.outbound, key, end);
    }

    /// Outside the network: to the destination's domain (named by the event or an earlier DNS
    /// answer), else its address.
    fn add_external_outbound(&mut self, rec: &Record, c: &Cols, flow: &Flow, by: &Reporter) {
        let domain = text(rec, c.dst_domain);
        let named = if domain.is_empty() {
            self.names.get(flow.dst).cloned()
        } else {
            Some(domain.to_ascii_lowercase())
        };
        let target = match named {
            Some(d) => {
                let dn = self.node_at(NodeKind::Domain, &d, &d, None, by.t);
                let i = self.node_at(NodeKind::Ip, flow.dst, flow.dst, None, by.t);
                self.link(dn, i, EdgeKind::Resolved, by.t, by.event);
                dn
            }
            None => self.node_at(NodeKind::Ip, flow.dst, flow.dst, None, by.t),
        };
        let e = self.link(by.node, target, EdgeKind::ConnectedTo, by.t, by.event);
        self.g[e].port(flow.dport);
    }

    /// Both ends of a cross-host connection reported: process -> process, proved by both events.
    fn confirm(&mut self, a: NodeIndex, b: NodeIndex, t: i64, ev_a: &Text, ev_b: &Text, port: Option<u16>) {
        let e = self.link(a, b, EdgeKind::ConnectedTo, t, ev_a);
        let edge = &mut self.g[e];
        edge.touch(t, ev_b);
        edge.count = edge.count.saturating_sub(1).max(1); // two reports of one connection
        edge.cross_host = true;
        edge.confirmed = true;
        edge.port(port);
        self.stats.confirmed_links += 1;
        self.version += 1;
    }
}

/// A connection's (source, destination, destination port) as a 64-bit digest (SipHash): the ends
/// waiting for each other are found by it, and the ends' hosts must differ before they join.
fn flow_key(src: &str, dst: &str, dport: Option<u16>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (src, dst, dport.unwrap_or(0)).hash(&mut h);
    h.finish()
}

fn push_end(m: &mut crate::graph::FastMap<u64, Vec<FlowEnd>>, key: u64, end: FlowEnd) {
    let v = m.entry(key).or_default();
    if v.len() >= 64 {
        v.remove(0);
    }
    v.push(end);
}

/// The waiting end that matches `end` (source ports equal when both are known) nearest in time,
/// within the tolerance; removed from the list.
fn take_match(v: Option<&mut Vec<FlowEnd>>, end: &FlowEnd, tol: i64) -> Option<FlowEnd> {
    let v = v?;
    let at = v
        .iter()
        .enumerate()
        .filter(|(_, o)| (o.t - end.t).abs() <= tol)
        .filter(|(_, o)| match (o.src_port, end.src_port) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        })
        .min_by_key(|(_, o)| (o.t - end.t).abs())
        .map(|(i, _)| i)?;
    Some(v.remove(at))
}
