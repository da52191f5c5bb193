//! Access that only its target reports: a network or remote interactive logon, a share or named
//! pipe opened, a service installed or a task registered in a session a remote logon opened. The
//! source address becomes a source node, the fleet host that held it then or else an address node
//! (an unmanaged host known by its address), with an edge to the target. When a fleet host later
//! reports the address as its own, the address node merges into that host.

use super::build::{Cols, text};
use super::{Attr, Edge, EdgeKind, Graph, MAX_EDGE_EVENTS, NodeKind, SeededMap, Text, is_internal_ip};
use petgraph::stable_graph::{EdgeIndex, NodeIndex};
use petgraph::visit::EdgeRef;
use schemas::Record;

/// The edges by which a source reaches a target from elsewhere.
pub const REMOTE_ACCESS: [EdgeKind; 2] = [EdgeKind::LoggedOnTo, EdgeKind::AccessedShare];

/// A source that reached more hosts with alerts than this joins none of them.
pub const MAX_SHARED_TARGETS: usize = 16;

/// The logon session an event names (`winlog.logon.id`, kept in the record's catch-all object).
fn logon_id(rec: &Record) -> Option<String> {
    let extra = rec.cell(schemas::fields::col::EXTRA).as_str()?;
    if !extra.contains("\"logon\"") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(extra).ok()?;
    v.pointer("/winlog/logon/id").and_then(|i| i.as_str()).map(str::to_owned)
}

impl Graph {
    /// The node an access from `src` onto `host` comes from: the fleet host holding the address
    /// then, else an address node marked unmanaged; `None` for no address, the host's own, loopback.
    pub(super) fn source_node(&mut self, src: &str, host: &str, own: &[String], t: i64) -> Option<NodeIndex> {
        if !super::build::is_assignable(src) || own.iter().any(|i| i == src) {
            return None;
        }
        match self.leases.holder(src, t, self.cfg.lease_slack).cloned() {
            Some(a) if *a != *host => Some(self.node_at(NodeKind::Host, &a, &a, None, t)),
            Some(_) => None,
            None => {
                let n = self.node_at(NodeKind::Ip, src, src, None, t);
                self.g[n].attr(&mut self.strings, Attr::Unmanaged, "true");
                Some(n)
            }
        }
    }

    /// A remote access edge `kind` from the event's source onto host node `h`; the session it
    /// opened is remembered for the records that name it later.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_remote(
        &mut self,
        rec: &Record,
        c: &Cols,
        h: NodeIndex,
        own: &[String],
        kind: EdgeKind,
        t: i64,
        event: &Text,
    ) {
        let (host, src) = (rec.host(), text(rec, c.src_ip));
        let Some(from) = self.source_node(src, host, own, t) else { return };
        let e = self.link(from, h, kind, t, event);
        self.g[e].cross_host = self.g[from].kind == NodeKind::Host;
        if let Some(id) = logon_id(rec) {
            self.sessions.insert((host.into(), id.into()), (src.into(), t));
        }
    }

    /// A service or task registered on `host` (its file node `f`) in a session a remote source
    /// opened: an edge `kind` from that source to the file.
    pub(super) fn add_session_source(
        &mut self,
        rec: &Record,
        f: NodeIndex,
        kind: EdgeKind,
        t: i64,
        event: &Text,
    ) {
        let host = rec.host();
        let Some(id) = logon_id(rec) else { return };
        let Some((src, _)) = self.sessions.get(&(host.into(), id.into())).cloned() else { return };
        if let Some(from) = self.source_node(&src, host, &[], t) {
            let e = self.link(from, f, kind, t, event);
            self.g[e].cross_host = self.g[from].kind == NodeKind::Host;
        }
    }

    /// Host node `h` reports `ip` (an internal address) as its own: the address's node, if any,
    /// merges into it, its edges carried over (joined with the host's own where both exist).
    pub(super) fn merge_address(&mut self, ip: &str, h: NodeIndex) {
        // Called for every address an event reports as its host's own: the lookup comes first.
        let Some(n) = self.find(NodeKind::Ip, ip) else { return };
        if !is_internal_ip(ip) {
            return; // a public address may stand for many hosts behind one translation
        }
        let mut moved: Vec<(NodeIndex, NodeIndex, Edge)> = Vec::new();
        for e in self.g.edges_directed(n, petgraph::Direction::Outgoing) {
            moved.push((h, e.target(), e.weight().clone()));
        }
        for e in self.g.edges_directed(n, petgraph::Direction::Incoming) {
            moved.push((e.source(), h, e.weight().clone()));
        }
        for e in self.g.edges_directed(n, petgraph::Direction::Outgoing) {
            self.edges.remove(&(n, e.target(), e.weight().kind));
        }
        for e in self.g.edges_directed(n, petgraph::Direction::Incoming) {
            self.edges.remove(&(e.source(), n, e.weight().kind));
        }
        self.g.remove_node(n);
        self.nodes[NodeKind::Ip as usize].remove(ip);
        for (a, b, mut w) in moved.into_iter().filter(|(a, b, _)| a != b) {
            w.cross_host |= self.g[a].kind == NodeKind::Host && self.g[b].kind == NodeKind::Host;
            match self.edges.get(&(a, b, w.kind)).copied() {
                Some(e) => absorb(&mut self.g[e], &w),
                None => {
                    self.room_for_edge();
                    let e = self.g.add_edge(a, b, w.clone());
                    self.edges.insert((a, b, w.kind), e);
                }
            }
        }
        self.version += 1;
    }

    /// Sources that reached host `host` from elsewhere (remote logons, share access) with an edge
    /// seen within `[from, to]`, each with that edge (its hop: [`super::Hop::first`]): alerts on hosts one
    /// source reached join one incident through it.
    pub fn remote_sources(&self, host: &str, from: i64, to: i64) -> Vec<(NodeIndex, EdgeIndex)> {
        let Some(h) = self.find(NodeKind::Host, host) else { return Vec::new() };
        self.in_edges(h)
            .filter(|(_, _, e)| REMOTE_ACCESS.contains(&e.kind) && e.first <= to && e.last >= from)
            .filter(|(_, s, _)| self.node(*s).kind == NodeKind::Ip)
            .map(|(e, s, _)| (s, e))
            .collect()
    }

    /// Of `targets` (host, first and last time), the pairs one unmanaged source reached both of
    /// within `window` ([`Graph::remote_sources`]), consecutive by time, each with the two edges; a
    /// source that reached more than [`MAX_SHARED_TARGETS`] of the hosts joins none.
    pub fn shared_sources(
        &self,
        targets: &[(&str, i64, i64)],
        window: i64,
    ) -> Vec<(usize, usize, [EdgeIndex; 2])> {
        let mut by_source: std::collections::BTreeMap<NodeIndex, Vec<(usize, EdgeIndex)>> =
            Default::default();
        // Each host's remote access once, over the span of all its targets' windows: many alerts
        // share a host, and a host's in-edges are many.
        let mut per_host: SeededMap<&str, (i64, i64)> = SeededMap::default();
        for (host, first, last) in targets {
            let span = per_host.entry(host).or_insert((first - window, *last));
            *span = (span.0.min(first - window), span.1.max(*last));
        }
        let access: SeededMap<&str, Vec<(NodeIndex, EdgeIndex)>> =
            per_host.into_iter().map(|(h, (from, to))| (h, self.remote_sources(h, from, to))).collect();
        for (i, (host, first, last)) in targets.iter().enumerate() {
            for &(s, e) in access.get(host).map_or(&[][..], Vec::as_slice) {
                let edge = &self.g[e];
                if edge.first <= *last && edge.last >= first - window {
                    by_source.entry(s).or_default().push((i, e));
                }
            }
        }
        let mut out = Vec::new();
        for mut v in by_source.into_values() {
            let mut hosts: Vec<&str> = v.iter().map(|(i, _)| targets[*i].0).collect();
            hosts.sort_unstable();
            hosts.dedup();
            if hosts.len() > MAX_SHARED_TARGETS {
                continue; // a scanner or an unmanaged server everyone uses: no evidence of one attack
            }
            v.sort_by_key(|(i, _)| (targets[*i].1, *i));
            for w in v.windows(2) {
                let ((i, a), (j, b)) = (w[0], w[1]);
                if targets[j].1 - targets[i].1 <= window {
                    out.push((i, j, [a, b]));
                }
            }
        }
        out
    }
}

/// Adds another edge's occurrences to `e`.
fn absorb(e: &mut Edge, other: &Edge) {
    e.first = e.first.min(other.first);
    e.last = e.last.max(other.last);
    e.count += other.count;
    for ev in &other.events {
        if e.events.len() < MAX_EDGE_EVENTS && !e.events.contains(ev) {
            e.events.push(ev.clone());
        }
    }
    for p in &other.ports {
        e.port(Some(*p));
    }
    e.cross_host |= other.cross_host;
}

#[cfg(test)]
#[path = "remote_tests.rs"]
mod tests;
