//! Incidents at ingest: every batch feeds the tenant's entity graph ([`correlate::graph::Graphs`],
//! shared with the API); recorded alerts are anchored in it; then the tenant's
//! [`correlate::incident::Incidents`] joins what the graph connects and the changed incidents are
//! written to the catalog.
//!
//! On start the graph is rebuilt by replaying the lake's hot window (the lake is the source of
//! truth; nothing about the graph is persisted), and the incidents of the last two incident windows
//! are read back from the catalog, so alerts after a restart join the incidents from before it.

use super::{Ingest, IngestError};
use correlate::incident::{Anchor, Incident, Incidents};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// How often a tenant's incidents are recomputed when only the graph changed (new alerts always
/// trigger a pass).
const RECHECK: Duration = Duration::from_secs(1);

const HELP_INCIDENTS: &str = "Incident changes written (new, grown or merged).";

/// Per-tenant incident state.
#[derive(Debug, Default)]
pub(crate) struct State {
    tenants: HashMap<String, Incidents>,
    pending: BTreeSet<String>,
    last: HashMap<String, Instant>,
    /// Incident writes that failed, written first next time (the state has moved on, so the
    /// pass that produced them will not produce them again).
    unwritten: Vec<store::catalog::IncidentWrite>,
}

impl Ingest {
    fn incidents_for<'a>(&self, st: &'a mut State, tenant: &str) -> &'a mut Incidents {
        st.tenants.entry(tenant.to_owned()).or_insert_with(|| Incidents::new(self.cfg.incident.clone()))
    }

    /// Tenants with incident state.
    pub(crate) async fn incident_tenants(&self) -> BTreeSet<String> {
        self.incidents.lock().await.tenants.keys().cloned().collect()
    }

    /// Anchors recorded alerts (their incidents are worked out by the next [`Ingest::update_incidents`]).
    pub(crate) async fn add_anchors(&self, anchors: impl Iterator<Item = (String, Anchor)>) {
        let mut st = self.incidents.lock().await;
        for (tenant, a) in anchors {
            self.incidents_for(&mut st, &tenant).add([a]);
            st.pending.insert(tenant);
        }
    }

    /// Joins alerts into incidents for these tenants (and any with new anchors) and writes what
    /// changed. A failure to write is logged; the next pass writes the incident again in full.
    pub(crate) async fn update_incidents(&self, touched: &BTreeSet<String>) {
        let mut st = self.incidents.lock().await;
        let mut todo: BTreeSet<String> = std::mem::take(&mut st.pending);
        for t in touched {
            if st.tenants.contains_key(t) && st.last.get(t).is_none_or(|i| i.elapsed() >= RECHECK) {
                todo.insert(t.clone());
            }
        }
        let mut writes = std::mem::take(&mut st.unwritten);
        for tenant in todo {
            st.last.insert(tenant.clone(), Instant::now());
            let inc = self.incidents_for(&mut st, &tenant);
            // Searches over the graph are CPU work: off the runtime's worker while they run.
            let changed = super::cpu(|| {
                self.cfg.graphs.write(&tenant, |g| {
                    g.evict();
                    inc.update(&tenant, g)
                })
            });
            for (i, merged_into) in changed {
                writes.push(write_of(&i, merged_into));
            }
        }
        drop(st);
        if writes.is_empty() {
            return;
        }
        let n = writes.len() as u64;
        match self.store.catalog().upsert_incidents(&writes, schemas::time::now_micros()).await {
            Ok(()) => self.metrics.add("cordon_incident_changes_total", "", HELP_INCIDENTS, n),
            Err(e) => {
                tracing::error!(error = %e, incidents = n, "could not write incidents; retrying with the next pass");
                let mut st = self.incidents.lock().await;
                for w in &writes {
                    st.pending.insert(w.tenant.clone());
                }
                writes.append(&mut st.unwritten);
                st.unwritten = writes;
            }
        }
        let (nodes, edges) = self.cfg.graphs.size();
        self.metrics.set_gauge("cordon_graph_nodes", "", "Entity graph nodes held in memory.", nodes as u64);
        self.metrics.set_gauge("cordon_graph_edges", "", "Entity graph edges held in memory.", edges as u64);
    }

    /// Reads back the incidents of the last two incident windows, for their tenants to be worked
    /// out again on the rebuilt graph.
    pub(crate) async fn restore_incidents(&self) -> Result<(), IngestError> {
        let since = schemas::time::now_micros() - 2 * self.cfg.incident.window;
        let bodies =
            self.store.catalog().recent_incident_bodies(since).await.map_err(store::StoreError::from)?;
        let mut by_tenant: HashMap<String, Vec<Incident>> = HashMap::new();
        for (tenant, body) in bodies {
            match serde_json::from_str::<Incident>(&body) {
                Ok(i) => by_tenant.entry(tenant).or_default().push(i),
                Err(e) => tracing::warn!(error = %e, "a stored incident does not parse; it is left as it is"),
            }
        }
        let restored: usize = by_tenant.values().map(Vec::len).sum();
        let mut st = self.incidents.lock().await;
        for (tenant, list) in by_tenant {
            self.incidents_for(&mut st, &tenant).restore(list);
            st.pending.insert(tenant);
        }
        drop(st);
        tracing::info!(incidents = restored, "incidents read back");
        Ok(())
    }
}

fn write_of(i: &Incident, merged_into: Option<String>) -> store::catalog::IncidentWrite {
    store::catalog::IncidentWrite {
        id: i.id.clone(),
        tenant: i.tenant.clone(),
        severity: i.severity,
        hosts: i.hosts.clone(),
        techniques: i.techniques.clone(),
        first: i.first,
        last: i.last,
        merged_into,
        body: serde_json::to_string(i).unwrap_or_default(),
    }
}
