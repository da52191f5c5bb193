//! Building the graph from committed records: which nodes an event names, which edges it proves,
//! and how the two ends of a cross-host connection find each other.

use super::{Attr, Edge, EdgeKind, Graph, Node, NodeKind, Text};
use petgraph::stable_graph::{EdgeIndex, NodeIndex};
use schemas::Record;
use schemas::record::Cell;
use std::borrow::Cow;

mod flow;
pub(super) use flow::FlowEnd;
use flow::Reporter;

/// How many times larger the node and edge vectors grow when full ([`Graph::room_for_node`]).
const GROWTH: usize = 4;
/// The room they get first.
const GROW_FROM: usize = 1024;

/// Resolved column positions of the fields the graph reads.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cols {
    event_id: usize,
    kind: usize,
    action: usize,
    outcome: usize,
    host_ip: usize,
    user: usize,
    user_domain: usize,
    pid: usize,
    entity: usize,
    pname: usize,
    exe: usize,
    cmd: usize,
    sha256: usize,
    ppid: usize,
    pentity: usize,
    pname_parent: usize,
    pexe: usize,
    pub(super) src_ip: usize,
    src_port: usize,
    dst_ip: usize,
    dst_port: usize,
    dst_domain: usize,
    direction: usize,
    dns_name: usize,
    dns_ips: usize,
    url: usize,
    url_domain: usize,
    file_path: usize,
    file_sha256: usize,
    service: usize,
}

impl Cols {
    pub(super) fn resolve() -> Self {
        let c =
            |n: &str| schemas::fields::column_index(n).unwrap_or_else(|| panic!("schemas has column {n}"));
        Self {
            event_id: c("event_id"),
            kind: c("event_kind"),
            action: c("event_action"),
            outcome: c("event_outcome"),
            host_ip: c("host_ip"),
            user: c("user_name"),
            user_domain: c("user_domain"),
            pid: c("process_pid"),
            entity: c("process_entity_id"),
            pname: c("process_name"),
            exe: c("process_executable"),
            cmd: c("process_command_line"),
            sha256: c("process_hash_sha256"),
            ppid: c("parent_pid"),
            pentity: c("parent_entity_id"),
            pname_parent: c("parent_name"),
            pexe: c("parent_executable"),
            src_ip: c("source_ip"),
            src_port: c("source_port"),
            dst_ip: c("destination_ip"),
            dst_port: c("destination_port"),
            dst_domain: c("destination_domain"),
            direction: c("network_direction"),
            dns_name: c("dns_question_name"),
            dns_ips: c("dns_resolved_ip"),
            url: c("url_full"),
            url_domain: c("url_domain"),
            file_path: c("file_path"),
            file_sha256: c("file_hash_sha256"),
            service: c("service_name"),
        }
    }
}

pub(super) fn text(r: &Record, i: usize) -> &str {
    r.cell(i).as_str().unwrap_or("")
}

fn int(r: &Record, i: usize) -> Option<i64> {
    match r.cell(i) {
        Cell::Int(v) => Some(*v),
        _ => None,
    }
}

fn list(r: &Record, i: usize) -> &[String] {
    match r.cell(i) {
        Cell::List(v) => v,
        _ => &[],
    }
}

impl Graph {
    /// The process key an event's acting process gets: its entity id, else `host|pid`.
    pub fn process_key(rec: &Record) -> Option<String> {
        static COLS: std::sync::OnceLock<Cols> = std::sync::OnceLock::new();
        Self::process_key_with(COLS.get_or_init(Cols::resolve), rec).map(Cow::into_owned)
    }

    fn process_key_with<'r>(c: &Cols, rec: &'r Record) -> Option<Cow<'r, str>> {
        let entity = text(rec, c.entity);
        if !entity.is_empty() {
            return Some(Cow::Borrowed(entity));
        }
        int(rec, c.pid).map(|pid| Cow::Owned(format!("{}|pid:{pid}", rec.host())))
    }

    /// The node of `kind` with `key`, its time range stretched to `t`; made when new, with `label`
    /// (the key when empty) on `host`.
    pub(super) fn node_at(
        &mut self,
        kind: NodeKind,
        key: &str,
        label: &str,
        host: Option<&Text>,
        t: i64,
    ) -> NodeIndex {
        if let Some(&i) = self.nodes[kind as usize].get(key) {
            let n = &mut self.g[i];
            n.first = n.first.min(t);
            n.last = n.last.max(t);
            if n.label.is_empty() && !label.is_empty() {
                n.label = self.strings.get(label);
            }
            return i;
        }
        let key = Text::new(key);
        let label = if label.is_empty() || label == &*key { key.clone() } else { self.strings.get(label) };
        self.room_for_node();
        let i = self.g.add_node(Node {
            kind,
            key: key.clone(),
            label,
            host: host.cloned(),
            first: t,
            last: t,
            attrs: Default::default(),
        });
        self.nodes[kind as usize].insert(key, i);
        i
    }

    /// Room for one more node without a reallocation of its own: when the node vector is full and
    /// has no vacant slot, it grows fourfold instead of doubling. A doubling vector copies as much
    /// as it finally holds, every byte to freshly faulted pages (a fifth of B8's build went there);
    /// growing fourfold copies a third of that. What is not used yet is address space, not resident
    /// memory: the pages are touched only as nodes fill them. After a cut the vectors keep their
    /// length, vacant slots are reused first, and they grow again only once those are full.
    pub(super) fn room_for_node(&mut self) {
        // As many nodes as room: no vacant slot and no spare capacity (`node_bound` would walk
        // the vacant slots at the end).
        let held = self.g.node_count();
        if held == self.g.capacity().0 {
            self.g.reserve_exact_nodes((held * (GROWTH - 1)).max(GROW_FROM));
        }
    }

    /// [`Graph::room_for_node`], for an edge.
    pub(super) fn room_for_edge(&mut self) {
        let held = self.g.edge_count();
        if held == self.g.capacity().1 {
            self.g.reserve_exact_edges((held * (GROWTH - 1)).max(GROW_FROM));
        }
    }

    /// The name a host node shares (its key), for the nodes that live on it.
    pub(super) fn host_text(&self, h: NodeIndex) -> Text {
        self.g[h].key.clone()
    }

    pub(super) fn link(
        &mut self,
        a: NodeIndex,
        b: NodeIndex,
        kind: EdgeKind,
        t: i64,
        event: &Text,
    ) -> EdgeIndex {
        let e = match self.edges.get(&(a, b, kind)) {
            Some(&e) => e,
            None => {
                self.room_for_edge();
                let e = self.g.add_edge(a, b, Edge::new(kind, t));
                self.edges.insert((a, b, kind), e);
                if !matches!(kind, EdgeKind::Resolved) {
                    self.version += 1;
                }
                e
            }
        };
        self.g[e].touch(t, event);
        e
    }

    /// Adds one committed event. Events seen before (by id) are ignored.
    pub fn add(&mut self, rec: &Record) {
        let c = self.cols;
        let t = rec.time();
        let host = rec.host();
        let id = text(rec, c.event_id);
        if host.is_empty() || !self.first_sight(id, t) {
            return;
        }
        self.stats.events += 1;
        self.latest = self.latest.max(t);
        // One copy of the id, shared by every edge and pending connection end the event proves.
        let event = Text::new(id);
        let h = self.node_at(NodeKind::Host, host, host, None, t);
        let host_t = self.host_text(h);
        let own_ips = list(rec, c.host_ip);
        for ip in own_ips {
            self.leases.note(ip, &host_t, t);
            self.merge_address(ip, h);
        }
        let kind = text(rec, c.kind);
        let action = text(rec, c.action);
        let actor = self.add_actor(rec, &c, &host_t, t);
        if kind == "process"
            && action == "start"
            && let Some(p) = actor
        {
            self.add_spawn(rec, &c, p, &host_t, t, &event);
        }
        let from = actor.unwrap_or(h);
        match kind {
            "network" if action == "share-access" || action == "pipe-access" => {
                self.add_remote(rec, &c, h, own_ips, EdgeKind::AccessedShare, t, &event);
            }
            "network" | "web" => {
                let by = Reporter { node: from, host: &host_t, t, event: &event };
                self.add_flow(rec, &c, &by, own_ips);
            }
            "authentication" => {
                let ok = text(rec, c.outcome);
                if ok == "success" || (ok.is_empty() && action.contains("logon") && !action.contains("fail"))
                {
                    self.add_logon(rec, &c, h, own_ips, t, &event);
                }
            }
            "file" if action != "delete" => self.add_file(rec, &c, from, &host_t, t, &event),
            _ => {}
        }
        self.add_registration(rec, &c, from, &host_t, t, &event);
    }

    /// Whether event `id` is new (remembered from now on); an empty id always is.
    fn first_sight(&mut self, id: &str, t: i64) -> bool {
        if id.is_empty() {
            return true;
        }
        match self.seen.entry(super::digest(id)) {
            std::collections::hash_map::Entry::Occupied(_) => {
                self.stats.duplicates += 1;
                false
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(t);
                true
            }
        }
    }

    /// The acting process's node with its attributes, when the event names one.
    fn add_actor(&mut self, rec: &Record, c: &Cols, host: &Text, t: i64) -> Option<NodeIndex> {
        let key = Self::process_key_with(c, rec)?;
        let p = self.node_at(NodeKind::Process, &key, text(rec, c.pname), Some(host), t);
        let n = &mut self.g[p];
        let strings = &mut self.strings;
        if n.attrs.is_empty() {
            n.attrs.0.reserve_exact(5); // pid, executable, command line, hash, user
        }
        if let Some(pid) = int(rec, c.pid)
            && n.attrs.get(Attr::Pid).is_none()
        {
            n.attr(strings, Attr::Pid, decimal(pid, &mut [0; 20]));
        }
        n.attr(strings, Attr::Executable, text(rec, c.exe));
        n.attr(strings, Attr::CommandLine, text(rec, c.cmd));
        n.attr(strings, Attr::Sha256, text(rec, c.sha256));
        let user = text(rec, c.user);
        if !user.is_empty() {
            let dom = text(rec, c.user_domain);
            if dom.is_empty() {
                n.attr(strings, Attr::User, user);
            } else {
                // `DOMAIN\name`, written into the graph's scratch text (no allocation per event).
                let account = &mut self.scratch;
                account.clear();
                account.push_str(dom);
                account.push('\\');
                account.push_str(user);
                n.attr(strings, Attr::User, account);
            }
        }
        Some(p)
    }

    /// A process start: its parent spawned it, and a file written earlier on the host that it
    /// runs from executed it (a download, an attachment saved).
    fn add_spawn(&mut self, rec: &Record, c: &Cols, p: NodeIndex, host: &Text, t: i64, event: &Text) {
        let pe = text(rec, c.pentity);
        let parent_key = if !pe.is_empty() {
            Cow::Borrowed(pe)
        } else if let Some(pid) = int(rec, c.ppid) {
            Cow::Owned(format!("{host}|pid:{pid}"))
        } else {
            return;
        };
        let pname = text(rec, c.pname_parent);
        let pp = self.node_at(NodeKind::Process, &parent_key, pname, Some(host), t);
        self.g[pp].attr(&mut self.strings, Attr::Executable, text(rec, c.pexe));
        self.link(pp, p, EdgeKind::Spawned, t, event);
        let exe = text(rec, c.exe);
        if !exe.is_empty()
            && let Some(f) = self.find(NodeKind::File, &file_key(host, exe))
        {
            self.link(f, p, EdgeKind::Executed, t, event);
        }
    }

    /// A file written (or downloaded, from a URL on a domain).
    fn add_file(&mut self, rec: &Record, c: &Cols, from: NodeIndex, host: &Text, t: i64, event: &Text) {
        let path = text(rec, c.file_path);
        if path.is_empty() {
            return;
        }
        let f = self.node_at(NodeKind::File, &file_key(host, path), path, Some(host), t);
        self.g[f].attr(&mut self.strings, Attr::Sha256, text(rec, c.file_sha256));
        self.link(from, f, EdgeKind::Wrote, t, event);
        let url = text(rec, c.url);
        if !url.is_empty() {
            let u = self.node_at(NodeKind::Url, url, url, None, t);
            self.link(u, f, EdgeKind::Downloaded, t, event);
            let d = text(rec, c.url_domain);
            if !d.is_empty() {
                let dn = self.node_at(NodeKind::Domain, &d.to_ascii_lowercase(), d, None, t);
                self.link(from, dn, EdgeKind::ConnectedTo, t, event);
            }
        }
    }

    /// A service installed (Windows 7045/4697) or a scheduled task registered: the file it runs,
    /// who registered it, and the remote session it was registered in.
    fn add_registration(
        &mut self,
        rec: &Record,
        c: &Cols,
        from: NodeIndex,
        host: &Text,
        t: i64,
        event: &Text,
    ) {
        let action = text(rec, c.action);
        let service = text(rec, c.service);
        let path = text(rec, c.file_path);
        if !service.is_empty() && (action.contains("install") || action.contains("service-created")) {
            let key =
                if path.is_empty() { format!("{host}|service:{service}") } else { file_key(host, path) };
            let label = if path.is_empty() { service } else { path };
            let f = self.node_at(NodeKind::File, &key, label, Some(host), t);
            self.g[f].attr(&mut self.strings, Attr::Service, service);
            self.link(from, f, EdgeKind::InstalledService, t, event);
            self.add_session_source(rec, f, EdgeKind::InstalledService, t, event);
        }
        if action == "task-create" && !path.is_empty() {
            let f = self.node_at(NodeKind::File, &file_key(host, path), path, Some(host), t);
            self.link(from, f, EdgeKind::CreatedTask, t, event);
            self.add_session_source(rec, f, EdgeKind::CreatedTask, t, event);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn add_logon(&mut self, rec: &Record, c: &Cols, h: NodeIndex, own: &[String], t: i64, event: &Text) {
        let user = text(rec, c.user);
        if !user.is_empty() {
            let dom = text(rec, c.user_domain);
            let key = if dom.is_empty() { user.to_owned() } else { format!("{dom}\\{user}") };
            let u = self.node_at(NodeKind::User, &key.to_ascii_lowercase(), &key, None, t);
            self.link(u, h, EdgeKind::LoggedOnTo, t, event);
        }
        self.add_remote(rec, c, h, own, EdgeKind::LoggedOnTo, t, event);
    }
}

/// An address one host can hold (not loopback, unspecified or a placeholder).
pub(super) fn is_assignable(ip: &str) -> bool {
    match ip.parse::<std::net::IpAddr>() {
        Ok(a) => !a.is_loopback() && !a.is_unspecified() && !a.is_multicast(),
        Err(_) => false,
    }
}

/// `n` in decimal, written into `buf`.
fn decimal(n: i64, buf: &mut [u8; 20]) -> &str {
    let mut v = n.unsigned_abs();
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    std::str::from_utf8(&buf[at..]).expect("ASCII digits")
}

/// `path@host`, the path lower-cased: one allocation.
fn file_key(host: &str, path: &str) -> String {
    let mut k = String::with_capacity(path.len() + 1 + host.len());
    k.extend(path.chars().map(|c| c.to_ascii_lowercase()));
    k.push('@');
    k.push_str(host);
    k
}
