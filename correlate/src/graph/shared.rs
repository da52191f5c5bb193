//! Every tenant's graph, shared by the writer (ingest, after each batch) and readers (the API).

use super::{Graph, GraphConfig};
use std::collections::HashMap;
use std::sync::RwLock;

/// Tenants' graphs behind one lock: writers hold it for one batch, readers for one query.
#[derive(Debug)]
pub struct Graphs {
    cfg: GraphConfig,
    by_tenant: RwLock<HashMap<String, Graph>>,
}

impl Graphs {
    /// No graphs yet.
    pub fn new(cfg: GraphConfig) -> Self {
        Self { cfg, by_tenant: RwLock::new(HashMap::new()) }
    }

    /// Their settings.
    pub fn config(&self) -> &GraphConfig {
        &self.cfg
    }

    /// Runs `f` on the tenant's graph (created if missing).
    pub fn write<T>(&self, tenant: &str, f: impl FnOnce(&mut Graph) -> T) -> T {
        let mut map = self.by_tenant.write().unwrap_or_else(|e| e.into_inner());
        let g = map.entry(tenant.to_owned()).or_insert_with(|| Graph::new(self.cfg.clone()));
        f(g)
    }

    /// Runs `f` on the tenant's graph (`None` when it has none).
    pub fn read<T>(&self, tenant: &str, f: impl FnOnce(&Graph) -> T) -> Option<T> {
        let map = self.by_tenant.read().unwrap_or_else(|e| e.into_inner());
        map.get(tenant).map(f)
    }

    /// The event time (microseconds) the least-covering tenant's graph holds ([`Graph::covers_from`]
    /// to its newest event); `None` without graphs.
    pub fn covered(&self) -> Option<i64> {
        let map = self.by_tenant.read().unwrap_or_else(|e| e.into_inner());
        map.values().filter(|g| g.latest() != i64::MIN).map(|g| g.latest() - g.covers_from()).min()
    }

    /// Nodes and edges over all tenants.
    pub fn size(&self) -> (usize, usize) {
        let map = self.by_tenant.read().unwrap_or_else(|e| e.into_inner());
        map.values().map(Graph::size).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }
}

impl Default for Graphs {
    fn default() -> Self {
        Self::new(GraphConfig::default())
    }
}
