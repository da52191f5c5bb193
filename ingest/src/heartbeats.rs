//! Agent heartbeats (core NATS, `<prefix>.<tenant>.<agent>.hb`): recorded in the catalog as each
//! agent's last state, their claims of acked batches handed to the [`crate::watchdog`]; a malformed
//! one is counted as a rejected line.

use super::{HELP_REJECTED, Ingest};
use futures::StreamExt;
use schemas::subject::SubjectKind;
use schemas::wire::Heartbeat;
use std::sync::Arc;

impl Ingest {
    pub(crate) async fn heartbeats(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut sub = match self.client.subscribe(self.cfg.subjects.filter(SubjectKind::Heartbeat)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot subscribe to heartbeats");
                return;
            }
        };
        loop {
            let msg = tokio::select! {
                m = sub.next() => match m { Some(m) => m, None => return },
                _ = shutdown.changed() => return,
            };
            let Ok((tenant, agent, SubjectKind::Heartbeat)) = self.cfg.subjects.parse(msg.subject.as_str())
            else {
                continue;
            };
            match serde_json::from_slice::<Heartbeat>(&msg.payload) {
                Ok(hb) => {
                    self.claims.lock().unwrap_or_else(|p| p.into_inner()).heard(
                        tenant.as_str(),
                        agent.as_str(),
                        &hb,
                    );
                    let now = schemas::time::now_micros();
                    if let Err(e) =
                        self.store.catalog().heartbeat(tenant.as_str(), agent.as_str(), &hb, now).await
                    {
                        tracing::warn!(error = %e, "cannot record heartbeat");
                    }
                    self.metrics.add("cordon_heartbeats_total", "", "Agent heartbeats received.", 1);
                }
                Err(e) => {
                    tracing::warn!(%agent, error = %e, "malformed heartbeat");
                    self.metrics.add(
                        "cordon_ingest_rejected_total",
                        "reason=\"bad_heartbeat\"",
                        HELP_REJECTED,
                        1,
                    );
                }
            }
        }
    }
}
