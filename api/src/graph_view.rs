//! The graph answers, typed: an incident's drawn graph, path queries, neighbourhoods and process
//! trees. The structs are what the routes serialize and what the OpenAPI document is generated from.

use correlate::graph::{EdgeKind, Graph, Hop, IdNode, NodeKind, SubEdge, Subgraph, TreeNode};
use correlate::incident::Incident;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Where a graph answer came from: the live graph ingest keeps (the hot window), or a graph
/// rebuilt from the lake for the query's time range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Source {
    /// The live graph.
    Live,
    /// Rebuilt from the lake.
    Lake,
}

/// `alert`, the kind of an alert's node.
#[derive(Clone, Copy, Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AlertKind {
    /// An alert.
    Alert,
}

/// When something was first and last seen.
#[derive(Clone, Copy, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Seen {
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    first: i64,
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    last: i64,
}

/// An alert drawn on the node it was raised on.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct AlertNode {
    /// `alert:<alert id>`.
    id: String,
    kind: AlertKind,
    /// The alert's id.
    key: String,
    /// Its title.
    label: String,
    /// The host it was raised on.
    host: String,
    /// Its level (1 to 5).
    level: u8,
    /// Its ATT&CK techniques.
    techniques: Vec<String>,
    #[serde(flatten)]
    seen: Seen,
}

/// An entity the incident names that the graph no longer holds (aged out of the hot window).
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct KnownNode {
    /// `kind:key`.
    id: String,
    kind: NodeKind,
    key: String,
    label: String,
}

/// A node of an incident's drawn graph.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(crate) enum DrawnNode {
    /// An entity of the graph, with its attributes.
    Entity(IdNode),
    /// An alert.
    Alert(AlertNode),
    /// An entity known only from the incident.
    Known(KnownNode),
}

/// What links two nodes of an incident: `raised_on` (alert to its anchor), an edge kind of the
/// graph, or `connected_to` an external destination.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Link {
    from: String,
    to: String,
    /// `raised_on` or an edge kind.
    kind: String,
    #[serde(flatten)]
    seen: Seen,
    /// Between two hosts of the fleet.
    #[serde(skip_serializing_if = "Option::is_none")]
    cross_host: Option<bool>,
    /// To a destination outside the fleet.
    #[serde(skip_serializing_if = "Option::is_none")]
    external: Option<bool>,
    /// The events that prove it (none for `raised_on`: the alert holds its evidence).
    events: Vec<String>,
    /// The two alerts whose join this hop belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    join: Option<[String; 2]>,
}

/// An edge of an incident's drawn graph.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(crate) enum DrawnEdge {
    /// An edge of the graph (the process chains above the alerts).
    Graph(SubEdge),
    /// A link the incident itself holds.
    Link(Link),
}

impl DrawnEdge {
    fn ends(&self) -> (String, String, String) {
        match self {
            DrawnEdge::Graph(e) => (e.from.clone(), e.to.clone(), e.edge.kind.as_str().to_owned()),
            DrawnEdge::Link(l) => (l.from.clone(), l.to.clone(), l.kind.clone()),
        }
    }
}

/// `GET /api/v1/incidents/{id}/graph`.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct IncidentGraph {
    /// The incident's id.
    pub incident: String,
    pub source: Source,
    pub nodes: Vec<DrawnNode>,
    pub edges: Vec<DrawnEdge>,
}

/// The incident's nodes and edges: its anchors with the alerts raised on them and the process
/// chains above them, its joins' hops and its external contacts; one edge per (from, to, kind).
pub(crate) fn incident_graph(g: &Graph, inc: &Incident) -> (Vec<DrawnNode>, Vec<DrawnEdge>) {
    let mut nodes: BTreeMap<String, DrawnNode> = BTreeMap::new();
    let mut edges: Vec<DrawnEdge> = Vec::new();
    let node = |nodes: &mut BTreeMap<String, DrawnNode>, id: &str, label: &str| {
        nodes.entry(id.to_owned()).or_insert_with(|| match g.find_id(id) {
            Some(n) => DrawnNode::Entity(IdNode::of(g.node(n))),
            None => {
                let (kind, key) = id.split_once(':').unwrap_or(("host", id));
                DrawnNode::Known(KnownNode {
                    id: id.to_owned(),
                    kind: NodeKind::parse(kind).unwrap_or(NodeKind::Host),
                    key: key.to_owned(),
                    label: label.to_owned(),
                })
            }
        });
    };
    for a in &inc.alerts {
        let anchor = match &a.entity {
            Some(e) if g.find(NodeKind::Process, e).is_some() => format!("process:{e}"),
            _ => format!("host:{}", a.host),
        };
        node(&mut nodes, &anchor, &a.host);
        let alert_id = format!("alert:{}", a.alert);
        nodes.entry(alert_id.clone()).or_insert_with(|| {
            DrawnNode::Alert(AlertNode {
                id: alert_id.clone(),
                kind: AlertKind::Alert,
                key: a.alert.clone(),
                label: a.title.clone(),
                host: a.host.clone(),
                level: a.level,
                techniques: a.techniques.clone(),
                seen: Seen { first: a.time, last: a.last },
            })
        });
        edges.push(DrawnEdge::Link(Link {
            from: alert_id,
            to: anchor,
            kind: "raised_on".into(),
            seen: Seen { first: a.time, last: a.last },
            cross_host: None,
            external: None,
            events: Vec::new(),
            join: None,
        }));
        // The process chain above the anchor.
        let mut cur = g.actor_of(&a.host, a.entity.as_deref());
        for _ in 0..8 {
            let Some(n) = cur else { break };
            let Some((_, p, edge)) = g.in_edges(n).find(|(_, _, e)| e.kind == EdgeKind::Spawned) else {
                break;
            };
            let (pid, cid) = (g.node(p).id(), g.node(n).id());
            node(&mut nodes, &pid, "");
            node(&mut nodes, &cid, "");
            edges.push(DrawnEdge::Graph(SubEdge { from: pid, to: cid, edge: edge.clone() }));
            cur = Some(p);
        }
    }
    for j in &inc.joins {
        for h in &j.hops {
            node(&mut nodes, &h.from, &h.from_label);
            node(&mut nodes, &h.to, &h.to_label);
            edges.push(DrawnEdge::Link(Link {
                from: h.from.clone(),
                to: h.to.clone(),
                kind: h.kind.clone(),
                seen: Seen { first: h.at, last: h.at },
                cross_host: Some(h.cross_host),
                external: None,
                events: h.events.clone(),
                join: Some([j.from_alert.clone(), j.to_alert.clone()]),
            }));
        }
    }
    for cn in &inc.contacts {
        node(&mut nodes, &cn.process, "");
        node(&mut nodes, &cn.destination, &cn.label);
        edges.push(DrawnEdge::Link(Link {
            from: cn.process.clone(),
            to: cn.destination.clone(),
            kind: EdgeKind::ConnectedTo.as_str().into(),
            seen: Seen { first: cn.at, last: cn.at },
            cross_host: None,
            external: Some(true),
            events: cn.events.clone(),
            join: None,
        }));
    }
    let mut seen = BTreeSet::new();
    edges.retain(|e| seen.insert(e.ends()));
    (nodes.into_values().collect(), edges)
}

/// `GET /api/v1/graph/paths`.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct PathAnswer {
    /// A path was found.
    pub found: bool,
    /// Its hops, in time order.
    pub hops: Vec<Hop>,
    /// The search hit a bound; a longer search may find more.
    pub truncated: bool,
    pub source: Source,
}

/// `GET /api/v1/graph/neighbors`.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct NeighborsAnswer {
    #[serde(flatten)]
    pub sub: Subgraph,
    pub source: Source,
}

/// `GET /api/v1/hosts/{host}/process-tree`.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct ProcessTreeAnswer {
    pub host: String,
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub from: i64,
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    pub to: i64,
    /// The event's process (`process:<entity id>`), when the tree was asked around an event.
    pub focus: Option<String>,
    pub source: Source,
    /// The processes that started without a parent in the window, oldest first, with their
    /// descendants.
    pub processes: Vec<TreeNode>,
}
