//! The tag stage: each decoded record is run through its tenant's [`Tagger`] (Sigma rules plus the
//! tenant's policy), which writes techniques, tactics, rules and the strictest tier into the record
//! before it is committed. What the detections call for after the commit is gathered here: the
//! alerts the policy asks for, the blocks a standing order may carry out, and the events correlation
//! rules wait for.

use crate::Ingest;
use crate::correlation::Pending;
use crate::triggers::Block;
use correlate::graph::Graph;
use correlate::sigma::{Tagger, tagger};
use schemas::Record;
use schemas::alert::Alert;
use schemas::fields::col;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use store::MessageBatch;

/// What tagging found, for the stages after the commit.
#[derive(Debug, Default)]
pub(crate) struct Tagged {
    /// Detections per policy tier.
    pub(crate) detections: BTreeMap<&'static str, u64>,
    /// Alerts the policy asks for, each with its event's process key (its incident anchor).
    pub(crate) alerts: Vec<(Alert, Option<String>)>,
    /// Process starts the policy blocks.
    pub(crate) blocks: Vec<Block>,
    /// Events some correlation's detection rules matched, in batch order.
    pub(crate) matched: Vec<Pending>,
}

impl Ingest {
    /// Tags every record of the batches; `received` dates the block commands.
    pub(crate) fn tag(&self, batches: &mut [MessageBatch], received: i64) -> Tagged {
        self.tag_records(batches.iter_mut().flat_map(|b| b.records.iter_mut()), received)
    }

    /// Tags these records, each with its tenant's tagger.
    pub(crate) fn tag_records<'r>(
        &self,
        records: impl Iterator<Item = &'r mut Record>,
        received: i64,
    ) -> Tagged {
        let mut out = Tagged::default();
        let mut taggers: HashMap<String, Option<Arc<Tagger>>> = HashMap::new();
        for r in records {
            let tagger = taggers.entry(r.tenant().to_owned()).or_insert_with(|| self.tagger_for(r.tenant()));
            if let Some(t) = tagger {
                out.record(t, r, received);
            }
        }
        out
    }
}

impl Tagged {
    /// Tags one record and notes what its detections call for.
    fn record(&mut self, t: &Tagger, r: &mut Record, received: i64) {
        let (found, hits) = t.tag_and_hits(r);
        for d in found {
            *self.detections.entry(d.tier.as_str()).or_insert(0) += 1;
            if let Some(a) = tagger::alert_for(r, &d) {
                self.alerts.push((a, Graph::process_key(r)));
            }
            if let Some(command) = tagger::terminate_command(r, &d, received) {
                self.blocks.push(Block {
                    tenant: r.tenant().to_owned(),
                    agent: r.cell(col::AGENT_ID).as_str().unwrap_or_default().to_owned(),
                    command,
                    techniques: d.techniques.clone(),
                });
            }
        }
        if !hits.is_empty() {
            self.matched.push(Pending { record: r.clone(), hits, rules: t.sources().digest.clone() });
        }
    }
}
