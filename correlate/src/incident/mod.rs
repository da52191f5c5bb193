//! Incidents: alerts that the entity graph connects become one incident.
//!
//! Each alert is anchored at the entity it is about (the acting process of its evidence, else its
//! host) and the time of its first evidence. Alert B joins alert A when a time-respecting search
//! from A's anchor ([`Graph::reach`]) reaches B's anchor within the incident window (default 24 h)
//! no later than B's evidence: the process chain, the files written then run, the connections both
//! hosts reported, the logons from one host's address onto another. Alerts on hosts that one
//! unmanaged source reached (logons, share access only the targets reported) join through it. Every
//! join keeps its hops and their evidence, so an incident can say why each alert is in it.
//!
//! Components of joined alerts are incidents. A new alert joins the incident it connects to; when a
//! new edge connects two incidents they merge into the older one, and the other is marked merged.
//! Incident ids are derived from their first alert's id, so replaying the same alerts after a
//! restart gives the same incidents.

use crate::graph::{FastMap, FastSet, Graph, Hop, NodeKind, SearchLimits, Text, to_strings};
use petgraph::stable_graph::NodeIndex;
use std::collections::{BTreeMap, BTreeSet, HashMap};

mod model;
pub use model::{Anchor, Contact, Incident, Join, JoinHop, PathStep, anchor_for};

/// Incident settings.
#[derive(Clone, Debug)]
pub struct IncidentConfig {
    /// Alerts further apart than this (microseconds) never join.
    pub window: i64,
    /// Search bounds.
    pub limits: SearchLimits,
    /// Searches per pass from alerts searched before, the least recently searched first (alerts
    /// new to the pass are always searched): with many live alerts, a pass costs a bounded amount
    /// and an older alert's new joins are found within a few passes instead of the next one.
    pub searches: usize,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        Self { window: 24 * 3_600_000_000, limits: SearchLimits::default(), searches: 256 }
    }
}

/// One tenant's incident state: the live anchors (within the window of the newest) and the
/// incidents they belong to.
#[derive(Debug)]
pub struct Incidents {
    cfg: IncidentConfig,
    anchors: Vec<Anchor>,
    /// Beside each anchor: the pass that last searched from it (0: none yet).
    searched: Vec<u64>,
    /// Passes run, and the pass that first saw the graph's current version.
    pass: u64,
    version_pass: u64,
    owner: HashMap<String, String>,
    incidents: HashMap<String, Incident>,
    seen_version: Option<u64>,
    dirty: bool,
    /// Incidents read back from storage and not yet worked out again.
    restored: BTreeSet<String>,
    /// Searches run from anchors, in all.
    searches: u64,
}

impl Incidents {
    /// Empty state.
    pub fn new(cfg: IncidentConfig) -> Self {
        Self {
            cfg,
            anchors: Vec::new(),
            searched: Vec::new(),
            pass: 0,
            version_pass: 0,
            owner: HashMap::new(),
            incidents: HashMap::new(),
            seen_version: None,
            dirty: false,
            restored: BTreeSet::new(),
            searches: 0,
        }
    }

    /// Searches run from anchors so far (a pass skips those that could not join anything new).
    pub fn searches_run(&self) -> u64 {
        self.searches
    }

    /// Restores incidents read back from storage (their anchors become live again).
    pub fn restore(&mut self, incidents: Vec<Incident>) {
        for inc in incidents {
            for a in &inc.alerts {
                self.owner.insert(a.alert.clone(), inc.id.clone());
                self.anchors.push(a.clone());
                self.searched.push(0);
            }
            self.restored.insert(inc.id.clone());
            self.incidents.insert(inc.id.clone(), inc);
        }
        self.dirty = true;
    }

    /// The incident an alert belongs to.
    pub fn incident_of(&self, alert: &str) -> Option<&Incident> {
        self.owner.get(alert).and_then(|i| self.incidents.get(i))
    }

    /// Incidents held.
    pub fn len(&self) -> usize {
        self.incidents.len()
    }

    /// No incidents held.
    pub fn is_empty(&self) -> bool {
        self.incidents.is_empty()
    }

    /// Adds alerts' anchors (an anchor seen before is ignored).
    pub fn add(&mut self, anchors: impl IntoIterator<Item = Anchor>) {
        for a in anchors {
            if self.anchors.iter().any(|b| b.alert == a.alert && b.entity == a.entity) {
                continue;
            }
            self.anchors.push(a);
            self.searched.push(0);
            self.dirty = true;
        }
    }

    fn node_of(g: &Graph, a: &Anchor) -> Option<NodeIndex> {
        g.actor_of(&a.host, a.entity.as_deref())
    }

    /// Joins what the graph connects; returns the incidents that changed (new, grown, merged into
    /// another: those carry `merged_into`).
    ///
    /// Every pass searches again from every live anchor (the graph may have gained any edge), but
    /// builds a join's hops only for an alert that has no reason yet, and re-derives and reports
    /// only the incidents that gained something: the pass grows with the live alerts, not with
    /// their square.
    pub fn update(&mut self, tenant: &str, g: &Graph) -> Vec<(Incident, Option<String>)> {
        let current = self.searched.iter().all(|p| *p >= self.version_pass);
        if !self.dirty && self.seen_version == Some(g.version()) && current {
            return Vec::new();
        }
        self.pass += 1;
        self.dirty = false;
        if self.seen_version != Some(g.version()) {
            self.seen_version = Some(g.version());
            self.version_pass = self.pass;
        }
        self.drop_stale(g);
        let mut uf = self.unions_so_far();
        let nodes: Vec<Option<NodeIndex>> = self.anchors.iter().map(|a| Self::node_of(g, a)).collect();
        let search = self.choose_searches();
        let mut searched = 0;
        let joins = self.find_joins(g, &nodes, &search, &mut uf, &mut searched);
        self.searches += searched;
        let mut comps: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in 0..self.anchors.len() {
            comps.entry(uf.find(i)).or_default().push(i);
        }
        let mut changed: Vec<(Incident, Option<String>)> = Vec::new();
        for (_, members) in comps {
            self.settle(tenant, g, &members, &joins, &nodes, &mut changed);
        }
        self.forget_dead();
        changed
    }

    /// Anchors older than the window no longer join anything; their incidents keep them.
    fn drop_stale(&mut self, g: &Graph) {
        let newest = self.anchors.iter().map(|a| a.last).max().unwrap_or(0).max(g.latest());
        let keep: Vec<bool> = self.anchors.iter().map(|a| a.last >= newest - 2 * self.cfg.window).collect();
        let (mut k1, mut k2) = (keep.iter(), keep.iter());
        self.anchors.retain(|_| *k1.next().expect("one flag per anchor"));
        self.searched.retain(|_| *k2.next().expect("one flag per anchor"));
    }

    /// Which anchors this pass searches from: every new one, and [`IncidentConfig::searches`] of
    /// the others, least recently searched first. Marks them searched.
    fn choose_searches(&mut self) -> Vec<bool> {
        let mut older: Vec<usize> = (0..self.anchors.len()).filter(|&i| self.searched[i] != 0).collect();
        older.sort_by_key(|&i| (self.searched[i], i));
        let mut search: Vec<bool> = self.searched.iter().map(|p| *p == 0).collect();
        for &i in older.iter().take(self.cfg.searches) {
            search[i] = true;
        }
        for (i, s) in search.iter().enumerate() {
            if *s {
                self.searched[i] = self.pass;
            }
        }
        search
    }

    /// Union-find over the live anchors, with the alerts already in one incident together.
    fn unions_so_far(&self) -> UnionFind {
        let mut uf = UnionFind::new(self.anchors.len());
        let mut first_of: HashMap<&str, usize> = HashMap::new();
        for (i, a) in self.anchors.iter().enumerate() {
            if let Some(inc) = self.owner.get(&a.alert) {
                match first_of.get(inc.as_str()) {
                    Some(&j) => uf.union(i, j),
                    None => {
                        first_of.insert(inc, i);
                    }
                }
            }
        }
        uf
    }

    /// Unites the anchors the graph connects: a time-respecting search from each reaching another
    /// within the window, and alerts on hosts one unmanaged source reached. Returns the joins that
    /// give an alert its first reason (anchor from, anchor to, hops).
    fn find_joins(
        &self,
        g: &Graph,
        nodes: &[Option<NodeIndex>],
        search: &[bool],
        uf: &mut UnionFind,
        searched: &mut u64,
    ) -> Vec<Joined> {
        let mut by_node: FastMap<NodeIndex, Vec<usize>> = FastMap::default();
        for (i, nd) in nodes.iter().enumerate() {
            if let Some(nd) = nd {
                by_node.entry(*nd).or_default().push(i);
            }
        }
        // An alert needs one reason to be in its incident: hops are built only for alerts that have
        // none yet (alerts that join each other again on every pass cost a union, no path).
        let mut reasoned: FastSet<&str> =
            self.incidents.values().flat_map(|inc| inc.joins.iter().map(|x| x.to_alert.as_str())).collect();
        let mut joins: Vec<Joined> = Vec::new();
        let mut open: Vec<bool> = self.anchors.iter().map(|a| !reasoned.contains(a.alert.as_str())).collect();
        let entered: Vec<bool> = nodes.iter().map(|n| n.is_some_and(|n| g.can_be_entered(n))).collect();
        let targets = Targets { nodes, entered: &entered };
        for (i, start) in nodes.iter().enumerate().filter(|(i, _)| search[*i]) {
            let Some(start) = *start else { continue };
            if !self.may_join_more(i, &targets, &open, uf) {
                continue;
            }
            *searched += 1;
            let a = &self.anchors[i];
            let lim = SearchLimits { until: a.time + self.cfg.window, ..self.cfg.limits.clone() };
            let r = g.reach(start, a.time, &lim);
            for (node, at) in &r.arrival {
                for &j in by_node.get(node).map_or(&[][..], Vec::as_slice) {
                    if !self.reaches(g, i, j, *node, *at) {
                        continue;
                    }
                    uf.union(i, j);
                    if reasoned.insert(self.anchors[j].alert.as_str()) {
                        open[j] = false;
                        joins.push((i, j, r.path_to(g, *node)));
                    }
                }
            }
        }
        let targets: Vec<(&str, i64, i64)> =
            self.anchors.iter().map(|a| (a.host.as_str(), a.time, a.last)).collect();
        for (i, j, [a, b]) in g.shared_sources(&targets, self.cfg.window) {
            uf.union(i, j);
            if reasoned.insert(self.anchors[j].alert.as_str()) {
                joins.push((i, j, vec![Hop::first(g, a), Hop::first(g, b)]));
            }
        }
        joins
    }

    /// Whether a search from anchor `i` could still change anything: some anchor that it might
    /// reach in time ([`Incidents::reaches`]: on its node, or on a node a search can enter) is
    /// outside its component, or has no reason yet (`open`). When every such anchor is joined to
    /// `i` with its reason, the search would only unite what is united: an older alert inside a
    /// grown incident, or with nothing it could reach, costs no search.
    fn may_join_more(&self, i: usize, t: &Targets, open: &[bool], uf: &mut UnionFind) -> bool {
        let a = &self.anchors[i];
        let root = uf.find(i);
        (0..self.anchors.len()).any(|j| {
            let b = &self.anchors[j];
            j != i
                && (t.entered[j] || (t.nodes[j].is_some() && t.nodes[j] == t.nodes[i]))
                && b.last >= a.time
                && b.time <= a.time + self.cfg.window
                && (open[j] || uf.find(j) != root)
        })
    }

    /// Whether the search from anchor `i` that reached `node` (anchor `j`'s) at `at` joins `j`.
    fn reaches(&self, g: &Graph, i: usize, j: usize, node: NodeIndex, at: i64) -> bool {
        let (a, b) = (&self.anchors[i], &self.anchors[j]);
        if j == i || b.alert == a.alert || at > b.last || b.time > a.time + self.cfg.window {
            return false;
        }
        // An alert on a host (not a process) joins only shortly after the path reaches it.
        g.node(node).kind != NodeKind::Host || b.time - at <= self.cfg.limits.cross_host_follow
    }

    /// One component of joined anchors becomes one incident: the oldest incident among its
    /// members' absorbs the others; new members, reasons and contacts are added. Pushes what
    /// changed.
    fn settle(
        &mut self,
        tenant: &str,
        g: &Graph,
        members: &[usize],
        joins: &[Joined],
        nodes: &[Option<NodeIndex>],
        changed: &mut Vec<(Incident, Option<String>)>,
    ) {
        let mut ids: Vec<String> =
            members.iter().filter_map(|&i| self.owner.get(&self.anchors[i].alert).cloned()).collect();
        ids.sort();
        ids.dedup();
        ids.sort_by_key(|id| self.incidents.get(id).map_or(i64::MAX, |x| x.first));
        let earliest = members
            .iter()
            .map(|&i| &self.anchors[i])
            .min_by(|a, b| (a.time, &a.alert).cmp(&(b.time, &b.alert)))
            .expect("components are never empty");
        let keep = ids.first().cloned().unwrap_or_else(|| format!("inc-{}", earliest.alert));
        let mut inc = self.incidents.remove(&keep).unwrap_or_else(|| Incident {
            id: keep.clone(),
            tenant: tenant.to_owned(),
            ..Default::default()
        });
        // Read back from storage: written again only if working it out now changes it.
        let before = self.restored.remove(&keep).then(|| inc.clone());
        let mut grew = false;
        for other in ids.iter().skip(1) {
            if let Some(o) = self.incidents.remove(other) {
                inc.alerts.extend(o.alerts.iter().cloned());
                inc.joins.extend(o.joins.iter().cloned());
                inc.contacts.extend(o.contacts.iter().cloned());
                inc.merged_from.push(o.id.clone());
                inc.merged_from.extend(o.merged_from.iter().cloned());
                self.restored.remove(other);
                changed.push((o, Some(keep.clone())));
                grew = true;
            }
        }
        grew |= self.add_members(&mut inc, &keep, members);
        grew |= self.add_reasons(&mut inc, g, members, joins);
        let anchors: Vec<_> = members.iter().map(|&i| (&self.anchors[i], nodes[i])).collect();
        for c in contacts(g, &anchors, self.cfg.window) {
            if !inc.contacts.iter().any(|x| x.process == c.process && x.destination == c.destination) {
                inc.contacts.push(c);
                grew = true;
            }
        }
        if grew || before.is_some() {
            inc.derive();
            if grew || before.as_ref() != Some(&inc) {
                changed.push((inc.clone(), None));
            }
        }
        self.incidents.insert(keep, inc);
    }

    /// Adds the members `inc` does not hold yet; true when it gained one.
    fn add_members(&mut self, inc: &mut Incident, keep: &str, members: &[usize]) -> bool {
        let missing: Vec<usize> = {
            let have: FastSet<(&str, Option<&str>)> =
                inc.alerts.iter().map(|x| (x.alert.as_str(), x.entity.as_deref())).collect();
            members
                .iter()
                .copied()
                .filter(|&i| {
                    let a = &self.anchors[i];
                    !have.contains(&(a.alert.as_str(), a.entity.as_deref()))
                })
                .collect()
        };
        for &i in &missing {
            inc.alerts.push(self.anchors[i].clone());
        }
        for &i in members {
            let alert = &self.anchors[i].alert;
            if self.owner.get(alert).is_none_or(|o| o != keep) {
                self.owner.insert(alert.clone(), keep.to_owned());
            }
        }
        !missing.is_empty()
    }

    /// Adds the first reason found for each member that has none; true when one was added.
    fn add_reasons(&self, inc: &mut Incident, g: &Graph, members: &[usize], joins: &[Joined]) -> bool {
        let mut grew = false;
        let inside: FastSet<usize> = members.iter().copied().collect();
        for (i, j, hops) in joins.iter().filter(|(i, _, _)| inside.contains(i)) {
            let (from, to) = (&self.anchors[*i].alert, &self.anchors[*j].alert);
            // One reason per alert is enough: the first path found that reaches it.
            if from == to || inc.joins.iter().any(|x| &x.to_alert == to) {
                continue;
            }
            inc.joins.push(Join {
                from_alert: from.clone(),
                to_alert: to.clone(),
                hops: hops.iter().map(|h| stored_hop(g, h)).collect(),
            });
            grew = true;
        }
        grew
    }

    /// Forgets incidents none of whose alerts is live any more (the caller has stored them).
    fn forget_dead(&mut self) {
        let live: BTreeSet<&String> = self.anchors.iter().filter_map(|a| self.owner.get(&a.alert)).collect();
        self.incidents.retain(|id, _| live.contains(id));
        let incidents = &self.incidents;
        self.owner.retain(|_, inc| incidents.contains_key(inc));
        self.restored.retain(|id| incidents.contains_key(id));
    }
}

/// Where a pass's searches could arrive: each anchor's node, and whether a search from elsewhere
/// can enter it ([`Graph::can_be_entered`]).
struct Targets<'a> {
    nodes: &'a [Option<NodeIndex>],
    entered: &'a [bool],
}

/// A join found by a pass: (anchor from, anchor to, the hops between them).
type Joined = (usize, usize, Vec<Hop>);

/// Union-find over anchor positions (path halving).
struct UnionFind(Vec<usize>);

impl UnionFind {
    fn new(n: usize) -> Self {
        Self((0..n).collect())
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.0[ra] = rb;
        }
    }
}

fn stored_hop(g: &Graph, h: &Hop) -> JoinHop {
    let host_of = |id: &str| g.find_id(id).and_then(|n| g.host_of(n)).map(Text::to_string);
    JoinHop {
        from: h.from.clone(),
        from_label: h.from_label.clone(),
        to: h.to.clone(),
        to_label: h.to_label.clone(),
        kind: h.kind.as_str().to_owned(),
        at: h.at,
        cross_host: h.cross_host,
        events: h.events.clone(),
        from_host: host_of(&h.from),
        to_host: host_of(&h.to),
    }
}

/// External destinations contacted by the anchors' processes and their ancestors, within the
/// window around each anchor.
fn contacts(g: &Graph, anchors: &[(&Anchor, Option<NodeIndex>)], window: i64) -> Vec<Contact> {
    let mut out: Vec<Contact> = Vec::new();
    for (a, node) in anchors {
        let Some(mut cur) = *node else { continue };
        for _ in 0..16 {
            let n = g.node(cur);
            if n.kind != NodeKind::Process {
                break;
            }
            for (_, dst, e) in g.out_edges(cur) {
                let d = g.node(dst);
                if e.kind != crate::graph::EdgeKind::ConnectedTo
                    || !g.is_external(dst)
                    || e.last < a.time - window
                    || e.first > a.last + window
                {
                    continue;
                }
                let c = Contact {
                    host: n.host.as_ref().map(Text::to_string).unwrap_or_default(),
                    process: n.id(),
                    destination: d.id(),
                    label: d.label.to_string(),
                    at: e.first,
                    events: to_strings(&e.events),
                };
                if !out.iter().any(|x| x.process == c.process && x.destination == c.destination) {
                    out.push(c);
                }
            }
            match g.in_edges(cur).find(|(_, _, e)| e.kind == crate::graph::EdgeKind::Spawned) {
                Some((_, p, _)) if p != cur => cur = p,
                _ => break,
            }
        }
    }
    out
}
