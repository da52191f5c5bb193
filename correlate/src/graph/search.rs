//! Searches over the entity graph: time-respecting reachability and paths (an edge may only follow
//! an edge that was already under way), neighbourhoods, and process trees.

use super::{EdgeKind, FastMap, FastSet, Graph, NodeKind};
use petgraph::stable_graph::{EdgeIndex, NodeIndex};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

/// Bounds on a search.
#[derive(Clone, Debug)]
pub struct SearchLimits {
    /// Nothing at or after this time (microseconds) is followed.
    pub until: i64,
    /// At most this many nodes are reached; a search that hits it says so ([`Reach::truncated`]).
    pub max_nodes: usize,
    /// At most this many hops from the start.
    pub max_hops: usize,
    /// After a hop between hosts, the next hop must start within this long (microseconds): a
    /// server process that accepted a connection at ten o'clock did not act on it at four.
    pub cross_host_follow: i64,
}

impl Default for SearchLimits {
    fn default() -> Self {
        Self { until: i64::MAX, max_nodes: 50_000, max_hops: 32, cross_host_follow: 30 * 60_000_000 }
    }
}

/// One step of a path, with its proof.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Hop {
    /// `kind:key` of the node it leaves.
    pub from: String,
    /// Its label.
    pub from_label: String,
    /// `kind:key` of the node it reaches.
    pub to: String,
    /// Its label.
    pub to_label: String,
    /// What happened.
    pub kind: EdgeKind,
    /// When the path takes this hop (microseconds): no earlier than the hop before it.
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub at: i64,
    /// The edge's first and last occurrence.
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub first: i64,
    /// See `first`.
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub last: i64,
    /// The hosts it joins, when it is a cross-host hop.
    pub cross_host: bool,
    /// Both hosts reported it.
    pub confirmed: bool,
    /// Ids of the events that prove it.
    pub events: Vec<String>,
}

impl Hop {
    /// Edge `e` of `g` as a hop taken at `at`.
    pub fn of(g: &Graph, e: EdgeIndex, at: i64) -> Self {
        let (a, b, edge) = g.edge(e);
        let (a, b) = (g.node(a), g.node(b));
        Hop {
            from: a.id(),
            from_label: a.label.to_string(),
            to: b.id(),
            to_label: b.label.to_string(),
            kind: edge.kind,
            at,
            first: edge.first,
            last: edge.last,
            cross_host: edge.cross_host,
            confirmed: edge.confirmed,
            events: super::to_strings(&edge.events),
        }
    }
}

impl Hop {
    /// Edge `e` of `g` as a hop taken when it first occurred.
    pub fn first(g: &Graph, e: EdgeIndex) -> Self {
        Self::of(g, e, g.edge(e).2.first)
    }
}

/// What a forward search reached: each node's earliest arrival and how. (The graph's own hasher:
/// node indices are ours, and a search does a few hash operations per edge it looks at.)
#[derive(Debug, Default)]
pub struct Reach {
    /// Node -> earliest arrival time.
    pub(crate) arrival: FastMap<NodeIndex, i64>,
    pred: FastMap<NodeIndex, (NodeIndex, EdgeIndex)>,
    hops: FastMap<NodeIndex, usize>,
    /// The node budget ran out before the search finished.
    pub truncated: bool,
}

impl Reach {
    /// The hops from the start to `n` (empty for the start itself or an unreached node).
    pub fn path_to(&self, g: &Graph, n: NodeIndex) -> Vec<Hop> {
        let mut out = Vec::new();
        let mut cur = n;
        while let Some(&(p, e)) = self.pred.get(&cur) {
            let at = self.arrival.get(&cur).copied().unwrap_or(g.edge(e).2.first);
            out.push(Hop::of(g, e, at));
            cur = p;
            if out.len() > 10_000 {
                break; // never loops (arrivals only grow), but stay safe
            }
        }
        out.reverse();
        out
    }
}

/// Whether a search may leave `kind` through `edge` ([`may_leave_at_all`]); hosts pass only
/// logons on.
fn may_leave(kind: NodeKind, edge: EdgeKind) -> bool {
    match kind {
        NodeKind::Host => edge == EdgeKind::LoggedOnTo,
        k => may_leave_at_all(k),
    }
}

/// Whether a search may leave `kind` through any edge: users, addresses, domains and URLs are
/// shared by too many unrelated things to carry a path through them.
fn may_leave_at_all(kind: NodeKind) -> bool {
    !matches!(kind, NodeKind::User | NodeKind::Ip | NodeKind::Domain | NodeKind::Url)
}

/// A path query between entities.
#[derive(Clone, Debug)]
pub struct PathQuery {
    /// Start node.
    pub from: NodeIndex,
    /// Target node, or `None` for any external destination.
    pub to: Option<NodeIndex>,
    /// Paths start no earlier than this.
    pub since: i64,
    /// Bounds.
    pub limits: SearchLimits,
}

impl Graph {
    /// Every node reachable from `start` by edges taken in time order, starting at `since`: an edge
    /// can be taken at `max(arrival, first)` if it last occurred at or after the arrival.
    pub fn reach(&self, start: NodeIndex, since: i64, lim: &SearchLimits) -> Reach {
        self.reach_from(&[start], since, lim)
    }

    /// Whether a search from elsewhere could arrive at `n`: some edge into it leaves a node that
    /// searches go on through ([`may_leave`]).
    pub fn can_be_entered(&self, n: NodeIndex) -> bool {
        self.g.contains_node(n) && self.in_edges(n).any(|(_, s, e)| may_leave(self.g[s].kind, e.kind))
    }

    /// As [`Graph::reach`], from several starts at once (each arrived at `since`).
    pub fn reach_from(&self, starts: &[NodeIndex], since: i64, lim: &SearchLimits) -> Reach {
        let mut r = Reach::default();
        let mut heap = BinaryHeap::new();
        for &start in starts.iter().filter(|s| self.g.contains_node(**s)) {
            r.arrival.insert(start, since);
            r.hops.insert(start, 0);
            heap.push(Reverse((since, start)));
        }
        let mut done: FastSet<NodeIndex> = FastSet::default();
        while let Some(Reverse((at, u))) = heap.pop() {
            if !done.insert(u) {
                continue;
            }
            let hops = r.hops.get(&u).copied().unwrap_or(0);
            if hops >= lim.max_hops {
                continue;
            }
            let kind_u = self.g[u].kind;
            if !may_leave_at_all(kind_u) {
                continue; // reached, but no path goes on through it: its edges are not looked at
            }
            // Arrived over a cross-host hop: the next one must follow soon.
            let deadline = match r.pred.get(&u) {
                Some(&(_, e)) if self.g[e].cross_host => at.saturating_add(lim.cross_host_follow),
                _ => i64::MAX,
            };
            for (e, v, edge) in self.out_edges(u) {
                if !may_leave(kind_u, edge.kind) || edge.last < at || edge.first > deadline {
                    continue;
                }
                let take = at.max(edge.first);
                if take >= lim.until {
                    continue;
                }
                if r.arrival.get(&v).is_some_and(|&old| old <= take) {
                    continue;
                }
                if !r.arrival.contains_key(&v) && r.arrival.len() >= lim.max_nodes {
                    r.truncated = true;
                    continue;
                }
                r.arrival.insert(v, take);
                r.pred.insert(v, (u, e));
                r.hops.insert(v, hops + 1);
                heap.push(Reverse((take, v)));
            }
        }
        r
    }

    /// The earliest-arriving time-respecting path for `q` (to its target, or to the first external
    /// destination reached), or `None`.
    pub fn path(&self, q: &PathQuery) -> (Option<Vec<Hop>>, bool) {
        let r = self.reach_from(&self.starts(q.from), q.since, &q.limits);
        let target = match q.to {
            Some(t) => r.arrival.contains_key(&t).then_some(t),
            None => r
                .arrival
                .iter()
                .filter(|(n, _)| self.is_external(**n))
                .min_by_key(|(n, at)| (**at, self.g[**n].id()))
                .map(|(n, _)| *n),
        };
        (target.map(|t| r.path_to(self, t)), r.truncated)
    }

    /// Where a search from `n` begins: a host is where its processes run, so a search from a host
    /// begins at the host and at every process on it; any other node begins at itself.
    fn starts(&self, n: NodeIndex) -> Vec<NodeIndex> {
        let mut out = vec![n];
        if self.g.contains_node(n) && self.g[n].kind == NodeKind::Host {
            out.extend(self.processes_on(&self.g[n].key));
        }
        out
    }

    /// The processes seen on `host`.
    fn processes_on<'a>(&'a self, host: &'a str) -> impl Iterator<Item = NodeIndex> + 'a {
        self.g.node_indices().filter(move |&n| {
            let x = &self.g[n];
            x.kind == NodeKind::Process && x.host.as_deref() == Some(host)
        })
    }

    /// How many distinct nodes `start` reaches within `hops` directed hops, ignoring time (the
    /// plain k-hop neighbourhood PERF.md's B8 compares with other engines).
    pub fn hops_out(&self, start: NodeIndex, hops: usize) -> usize {
        if !self.g.contains_node(start) {
            return 0;
        }
        let mut seen: FastSet<NodeIndex> = FastSet::from_iter([start]);
        let mut frontier = vec![start];
        for _ in 0..hops {
            let mut next = Vec::new();
            for u in frontier {
                for v in self.g.neighbors(u) {
                    if seen.insert(v) {
                        next.push(v);
                    }
                }
            }
            frontier = next;
        }
        seen.len() - 1
    }

    /// What `start` touched within `hops` hops (either direction) by edges active in `[from, to]`.
    pub fn neighbors(&self, start: NodeIndex, hops: usize, from: i64, to: i64, max_nodes: usize) -> Subgraph {
        let mut seen: HashMap<NodeIndex, usize> = HashMap::new();
        let mut edges: Vec<EdgeIndex> = Vec::new();
        let mut truncated = false;
        if !self.g.contains_node(start) {
            return Subgraph::default();
        }
        seen.insert(start, 0);
        let mut q = VecDeque::from([start]);
        while let Some(u) = q.pop_front() {
            let d = seen[&u];
            if d >= hops {
                continue;
            }
            let all = self.out_edges(u).chain(self.in_edges(u));
            for (e, v, edge) in all {
                if edge.last < from || edge.first > to {
                    continue;
                }
                if !seen.contains_key(&v) {
                    if seen.len() >= max_nodes {
                        truncated = true;
                        continue;
                    }
                    seen.insert(v, d + 1);
                    q.push_back(v);
                }
                edges.push(e);
            }
        }
        edges.sort();
        edges.dedup();
        let mut nodes: Vec<NodeIndex> = seen.into_keys().collect();
        nodes.sort();
        self.subgraph(&nodes, &edges, truncated)
    }

    /// These nodes and edges, as JSON-ready lists (edges whose ends are both listed).
    pub fn subgraph(&self, nodes: &[NodeIndex], edges: &[EdgeIndex], truncated: bool) -> Subgraph {
        let set: HashSet<NodeIndex> = nodes.iter().copied().collect();
        Subgraph {
            nodes: nodes
                .iter()
                .filter(|n| self.g.contains_node(**n))
                .map(|&n| IdNode::of(&self.g[n]))
                .collect(),
            edges: edges
                .iter()
                .filter_map(|&e| {
                    let (a, b) = self.g.edge_endpoints(e)?;
                    (set.contains(&a) && set.contains(&b)).then(|| SubEdge {
                        from: self.g[a].id(),
                        to: self.g[b].id(),
                        edge: self.g[e].clone(),
                    })
                })
                .collect(),
            truncated,
        }
    }

    /// The process tree of `host` around `[from, to]`: its processes active then, nested by
    /// `spawned` edges; roots are processes whose parent is unknown or outside the range.
    pub fn process_tree(&self, host: &str, from: i64, to: i64) -> Vec<TreeNode> {
        let procs: Vec<NodeIndex> =
            self.processes_on(host).filter(|&n| self.g[n].last >= from && self.g[n].first <= to).collect();
        let inside: HashSet<NodeIndex> = procs.iter().copied().collect();
        let parent_of = |n: NodeIndex| {
            self.in_edges(n)
                .find(|(_, p, e)| e.kind == EdgeKind::Spawned && inside.contains(p))
                .map(|(_, p, _)| p)
        };
        let mut children: HashMap<NodeIndex, Vec<NodeIndex>> = HashMap::new();
        let mut roots = Vec::new();
        for &n in &procs {
            match parent_of(n) {
                Some(p) if p != n => children.entry(p).or_default().push(n),
                _ => roots.push(n),
            }
        }
        fn build(
            g: &Graph,
            n: NodeIndex,
            kids: &HashMap<NodeIndex, Vec<NodeIndex>>,
            depth: usize,
        ) -> TreeNode {
            let x = g.node(n);
            let mut c: Vec<NodeIndex> = kids.get(&n).cloned().unwrap_or_default();
            c.sort_by_key(|k| (g.node(*k).first, g.node(*k).key.clone()));
            TreeNode {
                id: x.id(),
                name: x.label.to_string(),
                first: x.first,
                last: x.last,
                attrs: x.attrs.clone(),
                children: if depth > 64 {
                    Vec::new()
                } else {
                    c.into_iter().map(|k| build(g, k, kids, depth + 1)).collect()
                },
            }
        }
        roots.sort_by_key(|k| (self.g[*k].first, self.g[*k].key.clone()));
        roots.into_iter().map(|r| build(self, r, &children, 0)).collect()
    }
}

/// Nodes and edges, ready to draw.
#[derive(Clone, Debug, Default, Serialize, schemars::JsonSchema)]
pub struct Subgraph {
    /// The nodes.
    pub nodes: Vec<IdNode>,
    /// The edges between them.
    pub edges: Vec<SubEdge>,
    /// A bound was hit; there is more.
    pub truncated: bool,
}

/// A node with its id (`kind:key`), as the API shows it.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct IdNode {
    /// `kind:key`.
    pub id: String,
    /// The node.
    #[serde(flatten)]
    pub node: super::Node,
}

impl IdNode {
    /// The node with its id.
    pub fn of(n: &super::Node) -> Self {
        Self { id: n.id(), node: n.clone() }
    }
}

/// An edge with its ends' ids.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct SubEdge {
    /// `kind:key` of its source.
    pub from: String,
    /// `kind:key` of its target.
    pub to: String,
    /// The edge.
    #[serde(flatten)]
    pub edge: super::Edge,
}

/// A process and what it started.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct TreeNode {
    /// `process:<entity id>`.
    pub id: String,
    /// Process name.
    pub name: String,
    /// First and last time an event mentioned it.
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub first: i64,
    /// See `first`.
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub last: i64,
    /// pid, command line, user, executable, hash.
    pub attrs: super::Attrs,
    /// Its children, oldest first.
    pub children: Vec<TreeNode>,
}
