//! What an incident is made of, as stored and served: anchors, joins and their hops, contacts, the
//! derived path, and the incident itself.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Where an alert sits in the graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Anchor {
    /// The alert's id.
    pub alert: String,
    /// Its host.
    pub host: String,
    /// The acting process's key (its entity id), when the evidence names one.
    pub entity: Option<String>,
    /// First evidence time (microseconds).
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub time: i64,
    /// Last evidence time.
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub last: i64,
    /// Alert level (1-5).
    pub level: u8,
    /// Rule title.
    pub title: String,
    /// ATT&CK technique ids.
    pub techniques: Vec<String>,
    /// ATT&CK tactic names.
    pub tactics: Vec<String>,
}

impl Anchor {
    /// Its position in the kill chain: the earliest tactic it carries (unknown: after all).
    pub fn stage(&self) -> usize {
        let cat = schemas::attack::catalog();
        self.tactics.iter().filter_map(|t| cat.tactic(t).map(|x| x.order)).min().unwrap_or(usize::MAX)
    }
}

/// Why one alert is in the incident: the hops from another alert's anchor to its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Join {
    /// The alert the path starts from.
    pub from_alert: String,
    /// The alert it reaches.
    pub to_alert: String,
    /// The hops, in time order, each with the events that prove it.
    pub hops: Vec<JoinHop>,
}

/// A stored hop (see [`crate::graph::Hop`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JoinHop {
    /// `kind:key` it leaves.
    pub from: String,
    /// Its label.
    pub from_label: String,
    /// `kind:key` it reaches.
    pub to: String,
    /// Its label.
    pub to_label: String,
    /// Edge kind.
    pub kind: String,
    /// When the path takes it.
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub at: i64,
    /// Between two hosts.
    pub cross_host: bool,
    /// Proof.
    pub events: Vec<String>,
    /// Host it leaves (for cross-host hops: processes carry their host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_host: Option<String>,
    /// Host it reaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_host: Option<String>,
}

/// An external destination a process of the incident contacted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Contact {
    /// The host of the process.
    pub host: String,
    /// The process (`process:<key>`).
    pub process: String,
    /// The destination (`domain:...` or `ip:...`).
    pub destination: String,
    /// Its label.
    pub label: String,
    /// First contact.
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub at: i64,
    /// Proof.
    pub events: Vec<String>,
}

/// One step of an incident's attack path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PathStep {
    /// `host`, `domain` or `ip`.
    pub kind: String,
    /// Host name, domain or address.
    pub name: String,
    /// When the path reached it (microseconds).
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub at: i64,
    /// The events that prove the hop into it (empty for the root).
    pub events: Vec<String>,
}

/// An incident as stored: its alerts (by anchor), joins, contacts, and what is derived from them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Incident {
    /// `inc-<first alert id>`.
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// A title for the queue.
    pub title: String,
    /// Alerts in kill-chain order (stage, then time).
    pub alerts: Vec<Anchor>,
    /// Why each alert after the first is here.
    pub joins: Vec<Join>,
    /// External destinations its processes contacted.
    pub contacts: Vec<Contact>,
    /// Hosts, root first.
    pub hosts: Vec<String>,
    /// Patient zero: the host of the earliest alert.
    pub root: String,
    /// Root -> ... -> external destination.
    pub path: Vec<PathStep>,
    /// The highest alert level (1-5).
    pub severity: u8,
    /// Technique ids of its alerts.
    pub techniques: Vec<String>,
    /// First evidence.
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub first: i64,
    /// Last evidence.
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub last: i64,
    /// Incidents merged into this one.
    pub merged_from: Vec<String>,
}

impl Incident {
    /// Recomputes the order, hosts, root, path, severity and times from alerts, joins and contacts.
    pub fn derive(&mut self) {
        self.summarise_alerts();
        let mut path = self.host_chain(&self.hops());
        if let Some(out) = path.last().and_then(|last| self.exit_from(last)) {
            path.push(out);
        }
        self.path = path;
        let mut hosts: Vec<String> =
            self.path.iter().filter(|s| s.kind == "host").map(|s| s.name.clone()).collect();
        let mut seen: HashSet<&str> = hosts.iter().map(String::as_str).collect();
        let mut more: Vec<String> = Vec::new();
        for a in &self.alerts {
            if seen.insert(a.host.as_str()) {
                more.push(a.host.clone());
            }
        }
        hosts.append(&mut more);
        self.hosts = hosts;
        self.title = match (self.alerts.iter().max_by_key(|a| (a.level, a.stage())), self.hosts.len()) {
            (Some(a), 1) => format!("{} on {}", a.title, self.root),
            (Some(a), n) => format!("{} across {n} hosts from {}", a.title, self.root),
            (None, _) => String::new(),
        };
    }

    /// The alerts in kill-chain order, each once; the severity, times, techniques and root host
    /// (of the earliest alert) they give.
    fn summarise_alerts(&mut self) {
        self.alerts.sort_by(|a, b| (a.stage(), a.time, &a.alert).cmp(&(b.stage(), b.time, &b.alert)));
        self.alerts.dedup_by(|a, b| a.alert == b.alert && a.entity == b.entity);
        self.severity = self.alerts.iter().map(|a| a.level).max().unwrap_or(0);
        self.first = self.alerts.iter().map(|a| a.time).min().unwrap_or(0);
        self.last = self.alerts.iter().map(|a| a.last).max().unwrap_or(0);
        let mut tech: BTreeSet<String> = BTreeSet::new();
        for a in &self.alerts {
            tech.extend(a.techniques.iter().cloned());
        }
        self.techniques = tech.into_iter().collect();
        let earliest = self.alerts.iter().min_by(|a, b| (a.time, &a.alert).cmp(&(b.time, &b.alert)));
        self.root = earliest.map(|a| a.host.clone()).unwrap_or_default();
    }

    /// Host-level hops from the joins: (from host, to host) -> (earliest time, events).
    fn hops(&self) -> BTreeMap<(String, String), (i64, Vec<String>)> {
        let mut hops: BTreeMap<(String, String), (i64, Vec<String>)> = BTreeMap::new();
        for h in self.joins.iter().flat_map(|j| &j.hops) {
            if let (true, Some(a), Some(b)) = (h.cross_host, &h.from_host, &h.to_host)
                && a != b
            {
                let e = hops.entry((a.clone(), b.clone())).or_insert((h.at, h.events.clone()));
                if h.at < e.0 {
                    *e = (h.at, h.events.clone());
                }
            }
        }
        hops
    }

    /// The best simple chain of hosts from the root, in time order: the one reaching the latest
    /// kill-chain stage, then the most alerts, then the longest (at most 10,000 chains explored).
    /// Each host's stage and alerts are counted once, and each chain carries its score.
    fn host_chain(&self, hops: &BTreeMap<(String, String), (i64, Vec<String>)>) -> Vec<PathStep> {
        let mut on: HashMap<&str, (Option<usize>, usize)> = HashMap::new();
        for a in &self.alerts {
            let e = on.entry(a.host.as_str()).or_insert((None, 0));
            let stage = a.stage();
            if stage != usize::MAX {
                e.0 = e.0.max(Some(stage));
            }
            e.1 += 1;
        }
        let score_of = |host: &str| on.get(host).copied().unwrap_or((None, 0));
        // Hops by the host they leave, in the map's order (the order chains are explored in).
        let mut from: HashMap<&str, Vec<Step>> = HashMap::new();
        for ((a, b), (at, ev)) in hops {
            from.entry(a.as_str()).or_default().push((b.as_str(), *at, ev.as_slice()));
        }
        let root = (self.root.as_str(), self.first, &[][..]);
        let (stage, alerts) = score_of(&self.root);
        let mut stack: Vec<(Vec<Step>, Score)> = vec![(vec![root], (stage, alerts, 1))];
        let mut best: Option<(Vec<Step>, Score)> = None;
        let mut explored = 0;
        while let Some((chain, score)) = stack.pop() {
            explored += 1;
            if explored > 10_000 {
                break;
            }
            let (last, last_at, _) = *chain.last().expect("chains are never empty");
            for &(b, at, ev) in from.get(last).map_or(&[][..], Vec::as_slice) {
                if at >= last_at && !chain.iter().any(|s| s.0 == b) {
                    let (stage, alerts) = score_of(b);
                    let mut next = chain.clone();
                    next.push((b, at, ev));
                    stack.push((next, (score.0.max(stage), score.1 + alerts, score.2 + 1)));
                }
            }
            if best.as_ref().is_none_or(|(_, s)| score > *s) {
                best = Some((chain, score));
            }
        }
        let step = |(name, at, ev): Step| PathStep {
            kind: "host".into(),
            name: name.to_owned(),
            at,
            events: ev.to_vec(),
        };
        best.map(|(chain, _)| chain.into_iter().map(step).collect()).unwrap_or_default()
    }

    /// Out of the network: the first external destination a process of the path's last host
    /// contacted after the path got there.
    fn exit_from(&self, last: &PathStep) -> Option<PathStep> {
        let c = self
            .contacts
            .iter()
            .filter(|c| c.host == last.name && c.at >= last.at)
            .min_by_key(|c| (c.at, c.destination.clone()))?;
        let (kind, name) = c.destination.split_once(':').unwrap_or(("ip", &c.destination));
        Some(PathStep { kind: kind.to_owned(), name: name.to_owned(), at: c.at, events: c.events.clone() })
    }
}

/// A host on a chain: its name, when the chain got there, and the hop's events.
type Step<'a> = (&'a str, i64, &'a [String]);
/// A chain's score: the latest kill-chain stage on it, its alerts, its length.
type Score = (Option<usize>, usize, usize);

/// The anchor of alert `id`, raised on an event (for a correlation, the event that completed it);
/// `entity` is the process key of that event ([`crate::graph::Graph::process_key`]).
pub fn anchor_for(id: &str, a: &schemas::alert::Alert, entity: Option<String>) -> Anchor {
    let t = |s: &str| schemas::time::parse_rfc3339_micros(s).unwrap_or(0);
    Anchor {
        alert: id.to_owned(),
        host: a.endpoint.name.clone(),
        entity,
        time: t(&a.first_seen),
        last: t(&a.last_seen),
        level: a.level,
        title: a.rule.title.clone(),
        techniques: a.techniques.iter().map(|x| x.id.clone()).collect(),
        tactics: a.tactics.clone(),
    }
}
