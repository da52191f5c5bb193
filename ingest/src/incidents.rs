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
/// trigger a pass, paced by [`due_tenants`]).
const RECHECK: Duration = Duration::from_secs(1);
/// A pass for new alerts waits this many times the tenant's last pass; one for graph changes
/// alone, ten times. However many alerts are live, the passes then take at most about a quarter
/// of a core and the analysers keep up with ingest; new alerts join their incidents a little later.
const PACE_ALERTS: u32 = 3;
const PACE_GRAPH: u32 = 10;

const HELP_INCIDENTS: &str = "Incident changes written (new, grown or merged).";
const HELP_COVERS: &str =
    "Event time the entity graph holds, the least over tenants: the hot window, or less at its edge budget.";
const HELP_FENCED: &str = "Incident writes refused because another ingest process had taken the analysis lease \
     over while this one paused (its view was older than the holder's).";
const HELP_PASS: &str = "Time one tenant's incident pass took (searches from its live alerts, joins).";
const HELP_SEARCHES: &str = "Searches over the entity graph from live alerts in incident passes (alerts whose \
     incident already holds everything they could reach are not searched from).";

/// Per-tenant incident state.
#[derive(Debug, Default)]
pub(crate) struct State {
    tenants: HashMap<String, Incidents>,
    pending: BTreeSet<String>,
    /// Each tenant's last pass: when it ended and what it took.
    last: HashMap<String, (Instant, Duration)>,
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

    /// Drops every tenant's incident state (another process worked incidents out meanwhile; the
    /// restore reads them back from the catalog). Writes that failed are kept.
    pub(crate) async fn forget_incidents(&self) {
        let mut st = self.incidents.lock().await;
        let unwritten = std::mem::take(&mut st.unwritten);
        *st = State { unwritten, ..State::default() };
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
        let todo = due_tenants(&mut st, touched);
        let mut writes = std::mem::take(&mut st.unwritten);
        for tenant in todo {
            let started = Instant::now();
            let inc = self.incidents_for(&mut st, &tenant);
            let searches = inc.searches_run();
            // Searches over the graph are CPU work: off the runtime's worker while they run.
            // The graph feed evicts; the pass only reads, beside the API's queries.
            let changed =
                super::cpu(|| self.cfg.graphs.read(&tenant, |g| inc.update(&tenant, g)).unwrap_or_default());
            let took = started.elapsed();
            let searched = inc.searches_run() - searches;
            self.metrics.add("cordon_incident_searches_total", "", HELP_SEARCHES, searched);
            self.metrics.observe("cordon_incident_pass_seconds", "", HELP_PASS, took.as_secs_f64());
            st.last.insert(tenant.clone(), (Instant::now(), took));
            for (i, merged_into) in changed {
                writes.push(write_of(&i, merged_into));
            }
        }
        drop(st);
        self.graph_gauges();
        if writes.is_empty() {
            return;
        }
        let n = writes.len() as u64;
        match self.store.catalog().upsert_incidents(&writes, schemas::time::now_micros(), self.fence()).await
        {
            Ok(true) => self.metrics.add("cordon_incident_changes_total", "", HELP_INCIDENTS, n),
            Ok(false) => {
                // This process paused past its lease and another took the analysis over: its view
                // of the incidents is older than the holder's, which works them out from here.
                tracing::warn!(
                    incidents = n,
                    "incident writes refused: another process holds the analysis lease"
                );
                self.metrics.add("cordon_incident_writes_fenced_total", "", HELP_FENCED, n);
            }
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
    }

    fn graph_gauges(&self) {
        let (nodes, edges) = self.cfg.graphs.size();
        self.metrics.set_gauge("cordon_graph_nodes", "", "Entity graph nodes held in memory.", nodes as u64);
        self.metrics.set_gauge("cordon_graph_edges", "", "Entity graph edges held in memory.", edges as u64);
        if let Some(c) = self.cfg.graphs.covered() {
            self.metrics.set_gauge(
                "cordon_graph_covers_seconds",
                "",
                HELP_COVERS,
                (c / 1_000_000).max(0) as u64,
            );
        }
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

/// The tenants whose pass is due: those with new alerts and those whose graph changed, each once
/// its last pass is far enough behind ([`PACE_ALERTS`], [`PACE_GRAPH`]); tenants with new alerts
/// that must wait stay pending (the next batch, or the next idle fetch, takes them).
fn due_tenants(st: &mut State, touched: &BTreeSet<String>) -> BTreeSet<String> {
    let since = |st: &State, t: &str, pace: u32, floor: Duration| {
        st.last.get(t).is_none_or(|(at, took)| at.elapsed() >= (*took * pace).max(floor))
    };
    let pending = std::mem::take(&mut st.pending);
    let (mut todo, wait): (BTreeSet<String>, BTreeSet<String>) =
        pending.into_iter().partition(|t| since(st, t, PACE_ALERTS, Duration::ZERO));
    st.pending = wait;
    for t in touched {
        if st.tenants.contains_key(t) && since(st, t, PACE_GRAPH, RECHECK) {
            todo.insert(t.clone());
        }
    }
    todo
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state(last: &[(&str, Duration, Duration)]) -> State {
        let mut st = State::default();
        for (t, ago, took) in last {
            st.tenants.insert((*t).to_owned(), Incidents::new(Default::default()));
            let at = Instant::now().checked_sub(*ago).expect("a recent instant");
            st.last.insert((*t).to_owned(), (at, *took));
        }
        st
    }

    #[test]
    fn a_costly_pass_spaces_the_next_and_new_alerts_wait_pending() {
        let ms = Duration::from_millis;
        // "slow" took 400 ms and ended 1 s ago: new alerts wait for 1.2 s, graph changes for 4 s.
        // "quick" took 1 ms and ended 1.5 s ago: due for both.
        let mut st = state(&[("slow", ms(1_000), ms(400)), ("quick", ms(1_500), ms(1))]);
        st.pending = ["slow".to_owned(), "quick".to_owned(), "new".to_owned()].into();
        let touched: BTreeSet<String> = ["slow".to_owned(), "quick".to_owned()].into();
        let todo = due_tenants(&mut st, &touched);
        assert_eq!(todo, ["new".to_owned(), "quick".to_owned()].into());
        assert_eq!(st.pending, ["slow".to_owned()].into(), "slow's new alerts wait for its pace");
        // Its graph changes alone are not due either, but its alerts are once 1.2 s have passed.
        st.last.insert("slow".into(), (Instant::now().checked_sub(ms(1_300)).unwrap(), ms(400)));
        assert_eq!(due_tenants(&mut st, &BTreeSet::new()), ["slow".to_owned()].into());
        assert!(st.pending.is_empty());
        let touched: BTreeSet<String> = ["slow".to_owned()].into();
        assert!(due_tenants(&mut st, &touched).is_empty(), "graph changes wait ten passes' time");
    }
}
