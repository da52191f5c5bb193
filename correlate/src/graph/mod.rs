//! The entity graph: hosts, processes, users, addresses, domains, URLs and files, linked by what
//! committed events say happened between them, each edge with its time range and the events that
//! prove it.
//!
//! It is built incrementally ([`Graph::add`]) from committed records, in any order. Two things make
//! it more than a per-host process tree:
//!
//! - **Cross-host links.** Every event carries its host's addresses, so the graph keeps which host
//!   held which address when ([`Leases`]). An outbound connection from a process on host A to an
//!   address host B held at that time is joined to B's own record of the inbound connection (same
//!   addresses and ports, within [`GraphConfig::join_tolerance`]), and the two processes get a
//!   *confirmed* `connected_to` edge, proved by both events. Until B's side arrives (or if it never
//!   does) the edge goes to B's host node, unconfirmed. A successful logon on B from an address A
//!   held is a `logged_on_to` edge from A to B. No field needs to be shared between the two hosts'
//!   events: this is how the workstation -> web server hop is found. Access only the target reports
//!   (a logon, a share or pipe opened, a service or task registered in a remote logon's session)
//!   comes from the host that held the source address, or from an address node that merges into
//!   the host that later reports the address ([`remote`]).
//! - **External destinations.** Addresses outside the private ranges become IP nodes, or domain
//!   nodes when the event or an earlier DNS answer names them: the web server -> C2 hop.
//!
//! Memory is bounded by [`GraphConfig::hot_window`]: [`Graph::evict`] drops edges whose last
//! occurrence is older than the window (by event time) and the nodes left without edges. Older
//! history is rebuilt on demand by replaying the lake into a fresh graph; after a restart the
//! caller replays the window the same way, so no state is persisted beside the lake.

mod build;
use build::{Cols, FlowEnd};
mod kinds;
pub use kinds::{Attr, EdgeKind, NodeKind};
mod remote;
pub use remote::REMOTE_ACCESS;
mod hash;
mod search;
pub(crate) use hash::{FastMap, FastSet, SeededMap, SeededSet};
mod shared;
mod text;
pub use text::{Interner, Text, to_strings};

pub use petgraph::stable_graph::{EdgeIndex, NodeIndex};
pub use search::{Hop, IdNode, PathQuery, Reach, SearchLimits, SubEdge, Subgraph, TreeNode};
pub use shared::Graphs;

use petgraph::stable_graph::StableDiGraph;
use petgraph::visit::{EdgeRef, IntoEdgeReferences, NodeIndexable};
use serde::Serialize;

/// A logon session: (host, logon id).
type SessionKey = (Box<str>, Box<str>);

/// Event ids kept on one edge (its count goes on).
pub const MAX_EDGE_EVENTS: usize = 8;
/// Distinct ports kept on one edge.
const MAX_EDGE_PORTS: usize = 16;
/// The share of [`GraphConfig::max_edges`] a cut for size keeps, as (numerator, denominator). A
/// cut rebuilds the whole graph (every node and edge moved once), so it should come seldom: at
/// three quarters, a full graph is rebuilt once per quarter of its budget added, each added edge
/// paying about 4 + 4 x nodes/edges moves (at nine tenths it was 10 + 10 x nodes/edges, and the
/// cuts took 40% of a full graph's build, `cordon-bench --only b8 --max-edges`).
pub const KEEP_AFTER_CUT: (usize, usize) = (3, 4);

/// An entity.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Node {
    /// What it is.
    pub kind: NodeKind,
    /// Its identity within the kind (host name, entity id, address, path@host...).
    pub key: Text,
    /// What to show.
    pub label: Text,
    /// The host it lives on (processes and files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<Text>,
    /// First and last time an event mentioned it (microseconds).
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub first: i64,
    /// See `first`.
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub last: i64,
    /// Processes: pid, command line, user, executable; files: hashes.
    #[serde(skip_serializing_if = "Attrs::is_empty")]
    pub attrs: Attrs,
}

impl Node {
    /// `kind:key`, the id the API uses.
    pub fn id(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.key)
    }

    /// Sets attribute `k` to `v` (interned in `strings`); empty values are ignored.
    fn attr(&mut self, strings: &mut Interner, k: Attr, v: &str) {
        if v.is_empty() {
            return;
        }
        match self.attrs.0.iter_mut().find(|(a, _)| *a == k) {
            Some((_, old)) if old.as_str() != v => *old = strings.get(v),
            Some(_) => {}
            None => {
                // Most nodes have one or two attributes (processes reserve theirs at once).
                self.attrs.0.reserve_exact(1);
                self.attrs.0.push((k, strings.get(v)));
            }
        }
    }
}

/// A node's attributes (a few per node: a vector, serialised as a map by name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attrs(Vec<(Attr, Text)>);

impl Attrs {
    /// The value of `k`.
    pub fn get(&self, k: Attr) -> Option<&str> {
        self.0.iter().find(|(a, _)| *a == k).map(|(_, v)| v.as_str())
    }

    /// No attributes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl schemars::JsonSchema for Attrs {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Attrs".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "object", "additionalProperties": {"type": "string"}})
    }
}

impl Serialize for Attrs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut sorted: Vec<&(Attr, Text)> = self.0.iter().collect();
        sorted.sort_by_key(|(k, _)| *k);
        let mut m = s.serialize_map(Some(sorted.len()))?;
        for (k, v) in sorted {
            m.serialize_entry(k.as_str(), v)?;
        }
        m.end()
    }
}

/// A 64-bit digest of an event id (SipHash with fixed keys): the graph remembers the events it
/// has added by digest, 16 bytes each instead of the id's text. Two ids collide with probability
/// about n^2 / 2^65 (3e-6 at ten million events), and a collision only drops one event.
fn digest(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// A relation, with its time range and proof.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Edge {
    /// What happened.
    pub kind: EdgeKind,
    /// First occurrence (microseconds).
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub first: i64,
    /// Last occurrence.
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub last: i64,
    /// Occurrences.
    pub count: u64,
    /// Ids of the events that prove it (the first [`MAX_EDGE_EVENTS`]).
    pub events: Vec<Text>,
    /// Destination ports seen (connections).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// Between two hosts of the fleet.
    pub cross_host: bool,
    /// Cross-host connections: both ends reported it (otherwise only by address).
    pub confirmed: bool,
}

impl Edge {
    fn new(kind: EdgeKind, t: i64) -> Self {
        Self {
            kind,
            first: t,
            last: t,
            count: 0,
            events: Vec::new(),
            ports: Vec::new(),
            cross_host: false,
            confirmed: false,
        }
    }

    fn touch(&mut self, t: i64, event: &Text) {
        self.first = self.first.min(t);
        self.last = self.last.max(t);
        if !event.is_empty() && !self.events.iter().any(|e| e == event) {
            self.count += 1;
            if self.events.len() < MAX_EDGE_EVENTS {
                // Most edges are proved by one event: no room for more until a second comes.
                self.events.reserve_exact(1);
                self.events.push(event.clone());
            }
        }
    }

    fn port(&mut self, p: Option<u16>) {
        if let Some(p) = p
            && !self.ports.contains(&p)
            && self.ports.len() < MAX_EDGE_PORTS
        {
            self.ports.push(p);
            self.ports.sort_unstable();
        }
    }
}

/// Graph settings.
#[derive(Clone, Debug)]
pub struct GraphConfig {
    /// How far back (event time, microseconds) the graph is kept in memory.
    pub hot_window: i64,
    /// How far apart the two ends of a cross-host connection may be reported, microseconds.
    pub join_tolerance: i64,
    /// How long an address is taken to stay with the host that last reported it, microseconds.
    pub lease_slack: i64,
    /// At most this many edges are kept: beyond it, [`Graph::evict`] drops the oldest (by last
    /// occurrence) down to [`KEEP_AFTER_CUT`] of it, and the graph then covers less than the hot
    /// window ([`Graph::covers_from`]). Memory is about 1 KB per edge with its nodes.
    pub max_edges: usize,
}

impl Default for GraphConfig {
    fn default() -> Self {
        Self {
            hot_window: 48 * 3_600_000_000,
            join_tolerance: 120_000_000,
            lease_slack: 6 * 3_600_000_000,
            max_edges: 2_000_000,
        }
    }
}

/// Which host held which address, when.
#[derive(Debug, Default)]
pub struct Leases {
    by_ip: SeededMap<Box<str>, Vec<Lease>>,
}

#[derive(Clone, Debug)]
struct Lease {
    host: Text,
    first: i64,
    last: i64,
}

impl Leases {
    fn note(&mut self, ip: &str, host: &Text, t: i64) {
        // Every event notes its host's addresses: one lookup when the address is known.
        let Some(v) = self.by_ip.get_mut(ip) else {
            self.by_ip.insert(ip.into(), vec![Lease { host: host.clone(), first: t, last: t }]);
            return;
        };
        match v.iter_mut().find(|l| l.host == *host) {
            Some(l) => {
                l.first = l.first.min(t);
                l.last = l.last.max(t);
            }
            None => v.push(Lease { host: host.clone(), first: t, last: t }),
        }
    }

    /// The host that held `ip` at `t`: among hosts that reported it within `slack` of `t`, the one
    /// whose reports come nearest.
    pub fn owner(&self, ip: &str, t: i64, slack: i64) -> Option<&str> {
        self.holder(ip, t, slack).map(Text::as_str)
    }

    /// [`Leases::owner`], as the host name the graph shares.
    fn holder(&self, ip: &str, t: i64, slack: i64) -> Option<&Text> {
        let v = self.by_ip.get(ip)?;
        v.iter()
            .filter(|l| t >= l.first - slack && t <= l.last + slack)
            .min_by_key(|l| if t < l.first { l.first - t } else { (t - l.last).max(0) })
            .map(|l| &l.host)
    }

    fn evict(&mut self, before: i64) {
        self.by_ip.retain(|_, v| {
            v.retain(|l| l.last >= before);
            !v.is_empty()
        });
    }
}

/// Counters for what the graph could not use.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct GraphStats {
    /// Events added.
    pub events: u64,
    /// Events seen before (by id), not counted twice.
    pub duplicates: u64,
    /// Cross-host connections confirmed by both ends.
    pub confirmed_links: u64,
    /// Edges dropped by eviction.
    pub evicted_edges: u64,
    /// Evictions that dropped edges younger than the hot window to stay within
    /// [`GraphConfig::max_edges`].
    pub size_evictions: u64,
}

/// Private, loopback, link-local, CGNAT and unique-local addresses: never "external".
pub fn is_internal_ip(ip: &str) -> bool {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v)) => {
            let o = v.octets();
            v.is_private()
                || v.is_loopback()
                || v.is_link_local()
                || v.is_unspecified()
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        Ok(std::net::IpAddr::V6(v)) => {
            v.is_loopback()
                || v.is_unspecified()
                || (v.segments()[0] & 0xfe00) == 0xfc00
                || (v.segments()[0] & 0xffc0) == 0xfe80
        }
        Err(_) => false,
    }
}

/// One tenant's entity graph.
#[derive(Debug)]
pub struct Graph {
    cfg: GraphConfig,
    cols: Cols,
    g: StableDiGraph<Node, Edge>,
    /// Per kind (by `NodeKind as usize`): key -> node (the key shared with the node).
    nodes: [SeededMap<Text, NodeIndex>; 7],
    /// Repeated values (hosts, labels, attributes), stored once.
    strings: Interner,
    edges: FastMap<(NodeIndex, NodeIndex, EdgeKind), EdgeIndex>,
    leases: Leases,
    /// Outbound ends by (source ip, destination ip, destination port) digest, awaiting the inbound end.
    outbound: FastMap<u64, Vec<FlowEnd>>,
    /// Inbound ends, awaiting the outbound end.
    inbound: FastMap<u64, Vec<FlowEnd>>,
    /// Names DNS answers gave an address.
    names: SeededMap<String, String>,
    /// Logon sessions opened from elsewhere: (host, logon id) -> (source address, time).
    sessions: SeededMap<SessionKey, (Box<str>, i64)>,
    /// Event ids already added (with their time, for eviction).
    seen: FastMap<u64, i64>,
    latest: i64,
    /// The cutoff of the last eviction (eviction scans every edge, so it runs only once the window
    /// has moved on by a thousandth of itself, at least a minute of event time, or the graph has
    /// outgrown [`GraphConfig::max_edges`]).
    evicted_to: i64,
    /// The cutoff of the last eviction for size (nothing older is held).
    size_cut: i64,
    stats: GraphStats,
    /// Bumped whenever an edge that can link alerts appears (for callers that cache searches).
    version: u64,
    /// Text built from an event's fields before it is looked up (an account's `DOMAIN\name`).
    scratch: String,
}

impl Graph {
    /// An empty graph.
    pub fn new(cfg: GraphConfig) -> Self {
        Self {
            cfg,
            cols: Cols::resolve(),
            g: StableDiGraph::new(),
            nodes: Default::default(),
            strings: Interner::default(),
            edges: FastMap::default(),
            leases: Leases::default(),
            outbound: FastMap::default(),
            inbound: FastMap::default(),
            names: SeededMap::default(),
            sessions: SeededMap::default(),
            seen: FastMap::default(),
            latest: i64::MIN,
            evicted_to: i64::MIN,
            size_cut: i64::MIN,
            stats: GraphStats::default(),
            version: 0,
            scratch: String::new(),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &GraphConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> GraphStats {
        self.stats
    }

    /// Nodes and edges held.
    pub fn size(&self) -> (usize, usize) {
        (self.g.node_count(), self.g.edge_count())
    }

    /// The newest event time added.
    pub fn latest(&self) -> i64 {
        self.latest
    }

    /// The oldest event time the graph answers for in full: the hot window before the newest
    /// event, or later when edges were dropped to stay within [`GraphConfig::max_edges`]. Older
    /// questions are answered by replaying the lake.
    pub fn covers_from(&self) -> i64 {
        self.latest.saturating_sub(self.cfg.hot_window).max(self.size_cut)
    }

    /// Changes whenever a linking edge is added.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The address table.
    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    /// Every node.
    pub fn node_indices(&self) -> impl Iterator<Item = NodeIndex> + '_ {
        self.g.node_indices()
    }

    /// Outside the fleet: a domain, or an address outside the private ranges. Where a path may end
    /// as "any external destination".
    pub fn is_external(&self, n: NodeIndex) -> bool {
        let x = &self.g[n];
        match x.kind {
            NodeKind::Domain => true,
            NodeKind::Ip => !is_internal_ip(&x.key),
            _ => false,
        }
    }

    /// The node with this kind and key.
    pub fn find(&self, kind: NodeKind, key: &str) -> Option<NodeIndex> {
        self.nodes[kind as usize].get(key).copied()
    }

    /// Looks a node up by its API id (`kind:key`), or a bare host name.
    pub fn find_id(&self, id: &str) -> Option<NodeIndex> {
        match id.split_once(':') {
            Some((k, key)) if NodeKind::parse(k).is_some() => self.find(NodeKind::parse(k)?, key),
            _ => self.find(NodeKind::Host, id),
        }
    }

    /// A node.
    pub fn node(&self, i: NodeIndex) -> &Node {
        &self.g[i]
    }

    /// The host node `n` is or lives on (processes and files), by name.
    pub fn host_of(&self, n: NodeIndex) -> Option<&Text> {
        let node = &self.g[n];
        match node.kind {
            NodeKind::Host => Some(&node.key),
            _ => node.host.as_ref(),
        }
    }

    /// An edge with its ends.
    pub fn edge(&self, e: EdgeIndex) -> (NodeIndex, NodeIndex, &Edge) {
        let (a, b) = self.g.edge_endpoints(e).expect("edge index from this graph");
        (a, b, &self.g[e])
    }

    /// Edges leaving `n`.
    pub fn out_edges(&self, n: NodeIndex) -> impl Iterator<Item = (EdgeIndex, NodeIndex, &Edge)> {
        self.g.edges(n).map(|e| (e.id(), e.target(), e.weight()))
    }

    /// Edges entering `n`.
    pub fn in_edges(&self, n: NodeIndex) -> impl Iterator<Item = (EdgeIndex, NodeIndex, &Edge)> {
        self.g.edges_directed(n, petgraph::Direction::Incoming).map(|e| (e.id(), e.source(), e.weight()))
    }

    /// The process node of an entity id, or the host node when the event named no process.
    pub fn actor_of(&self, host: &str, entity: Option<&str>) -> Option<NodeIndex> {
        entity.and_then(|e| self.find(NodeKind::Process, e)).or_else(|| self.find(NodeKind::Host, host))
    }

    /// Drops what is older than the hot window (by event time; at most once per thousandth of the
    /// window, since it scans every edge), or the oldest edges when there are more than
    /// [`GraphConfig::max_edges`]: edges last seen before the cutoff, then nodes left without
    /// edges, pending connection ends, DNS names and seen ids.
    pub fn evict(&mut self) {
        if self.latest == i64::MIN {
            return;
        }
        let by_time = self.latest - self.cfg.hot_window;
        let step = (self.cfg.hot_window / 1000).max(60_000_000);
        let over = self.g.edge_count() > self.cfg.max_edges;
        if !over && self.evicted_to != i64::MIN && by_time - self.evicted_to < step {
            return;
        }
        let mut cutoff = by_time;
        if over {
            cutoff = cutoff.max(self.size_cutoff());
            self.size_cut = self.size_cut.max(cutoff);
            self.stats.size_evictions += 1;
        }
        self.evicted_to = cutoff;
        self.drop_before(cutoff);
    }

    /// The cutoff that leaves [`KEEP_AFTER_CUT`] of [`GraphConfig::max_edges`]: one past the last
    /// occurrence of the newest edge to go.
    fn size_cutoff(&self) -> i64 {
        let (num, den) = KEEP_AFTER_CUT;
        let keep = self.cfg.max_edges / den * num;
        let mut lasts: Vec<i64> = self.g.edge_weights().map(|e| e.last).collect();
        let Some(drop) = lasts.len().checked_sub(keep).filter(|d| *d > 0) else { return i64::MIN };
        let (_, newest_dropped, _) = lasts.select_nth_unstable(drop - 1);
        newest_dropped.saturating_add(1)
    }

    /// Drops the edges last seen before `cutoff`, then the nodes left without edges that no event
    /// mentioned since. The graph is rebuilt without them in one pass (node and edge indices kept):
    /// removing an edge from petgraph's adjacency lists walks its endpoints' lists, so dropping a
    /// hub's oldest edges one by one (a popular domain, a file server: tens of thousands of edges,
    /// the oldest at the lists' ends) cost the square of its degree.
    fn drop_before(&mut self, cutoff: i64) {
        let mut linked = vec![false; self.g.node_bound()];
        let mut dropped = Vec::new();
        for e in self.g.edge_references() {
            if e.weight().last < cutoff {
                dropped.push((e.source(), e.target(), e.weight().kind));
            } else {
                linked[e.source().index()] = true;
                linked[e.target().index()] = true;
            }
        }
        let lonely = |i: NodeIndex, n: &Node| n.last < cutoff && !linked[i.index()];
        if dropped.is_empty() && !self.g.node_indices().any(|i| lonely(i, &self.g[i])) {
            return self.drop_state_before(cutoff);
        }
        for k in &dropped {
            self.edges.remove(k);
        }
        self.stats.evicted_edges += dropped.len() as u64;
        let mut gone: Vec<(NodeKind, Text)> = Vec::new();
        self.g = std::mem::take(&mut self.g).filter_map_owned(
            |i, n| match lonely(i, &n) {
                true => {
                    gone.push((n.kind, n.key));
                    None
                }
                false => Some(n),
            },
            |_, e| (e.last >= cutoff).then_some(e),
        );
        for (kind, key) in gone {
            self.nodes[kind as usize].remove(key.as_str());
        }
        self.drop_state_before(cutoff);
    }

    /// Forgets pending connection ends, sessions, leases and seen ids older than `cutoff`, and the
    /// shared text nothing holds any more.
    fn drop_state_before(&mut self, cutoff: i64) {
        let tol = self.cfg.join_tolerance;
        for m in [&mut self.outbound, &mut self.inbound] {
            m.retain(|_, v| {
                v.retain(|e| e.t >= cutoff - tol);
                !v.is_empty()
            });
        }
        self.seen.retain(|_, t| *t >= cutoff);
        self.sessions.retain(|_, (_, t)| *t >= cutoff);
        self.leases.evict(cutoff - self.cfg.lease_slack);
        self.strings.sweep();
    }
}

#[cfg(test)]
mod tests;
