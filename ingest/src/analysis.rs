//! The analysis task: what follows the commit, off the ack path.
//!
//! The consume loop acks a batch once it is committed and hands it to this task through a bounded
//! queue ([`ANALYSIS_QUEUE`] batches; a full queue holds the loop back, and bounds the memory the
//! committed rows hold), so the next fetch is
//! decoded and committed while this one is analysed. Here the analysers ([`crate::analyse`]) read
//! the committed events in commit order, and the alerts they raise, the tag stage's and the
//! quotas' are recorded, incidents worked out and triggers sent. The same task runs the idle work
//! (a new hour's silences, historical logins), so alerts are recorded by one task only.
//!
//! **Nothing acked goes unanalysed.** The catalog keeps how far the analysers have read the lake
//! (the `analysed` table: the last commit number whose rows were analysed with every alert
//! recorded; commits are numbered in the order they became visible), written when the queue runs empty, and at least once a second while it does not. When ingest starts,
//! the files past that mark (committed and acked, then a crash) are analysed again. Each analyser
//! ignores an event it has counted and alerts are idempotent per evidence event, so what was
//! analysed before the crash counts once. Blocks found again are not sent (the processes they
//! named are long gone).

use crate::analyse::{Analyser, Committed, Findings, Replay};
use crate::tag::Tagged;
use crate::{HELP_DETECTIONS, Ingest, IngestError, stage};
use schemas::Record;
use schemas::alert::Alert;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::Instrument;

/// Committed batches waiting for the analysers, at most.
pub(crate) const ANALYSIS_QUEUE: usize = 2;
/// How often, at most, the analysed mark is written while batches keep coming.
const MARK_EVERY: Duration = Duration::from_secs(1);
const HELP_AGAIN: &str =
    "Events committed before a restart but not analysed, analysed again when ingest started.";

/// A committed batch, as the analysis task gets it.
#[derive(Debug)]
pub(crate) struct Analysis {
    pub(crate) tagged: Tagged,
    /// Alerts raised before the analysers (agents over their quota).
    pub(crate) alerts: Vec<(Alert, Option<String>)>,
    /// The events stored, in lake order.
    pub(crate) records: Vec<Record>,
    /// The commit's number (see [`store::CommitOutcome::commit_seq`]).
    pub(crate) commit_seq: Option<i64>,
}

/// The analysis task's work.
#[derive(Debug)]
pub(crate) enum Work {
    Batch(Box<Analysis>),
    /// A fetch brought nothing.
    Idle,
}

/// The analysed mark: the last commit number analysed, and when it was last written.
pub(crate) struct Mark {
    pub(crate) analysed: Option<i64>,
    written: Option<i64>,
    at: Instant,
}

impl Mark {
    /// A mark at `analysed`, as the catalog holds it.
    pub(crate) fn new(analysed: Option<i64>) -> Self {
        Self { analysed, written: analysed, at: Instant::now() }
    }
}

impl Ingest {
    /// Runs the analysis task until the queue's sender is dropped (then what is queued is finished):
    /// on the batches this process commits, or, where several share the catalog, on every
    /// process's commits while this one holds the analysis lease ([`crate::elected`]).
    pub(crate) async fn analysis(self: Arc<Self>, queue: mpsc::Receiver<Work>) {
        match self.cfg.elected_analysis {
            Some(lease) => self.elected(queue, lease).await,
            None => self.analyse_commits(queue).await,
        }
    }

    /// The analysis task of the only ingest process: the batches it commits, in commit order.
    async fn analyse_commits(self: Arc<Self>, mut queue: mpsc::Receiver<Work>) {
        let mut mark = Mark::new(None);
        while let Some(work) = queue.recv().await {
            let idle = matches!(work, Work::Idle);
            let clean = match work {
                Work::Batch(a) => {
                    store::failpoint::hit("before_analysis");
                    let started = Instant::now();
                    let span = tracing::debug_span!("analysers", events = a.records.len());
                    let last = a.commit_seq;
                    let clean = self.analyse_batch(&self.analysers, *a).instrument(span).await;
                    stage(&self.metrics, "analysers", started);
                    mark.analysed = mark.analysed.max(last);
                    clean
                }
                Work::Idle => self.idle().await,
            };
            // Only once every alert is recorded: the mark says nothing below it needs reading again.
            if clean && (idle || queue.is_empty() || mark.at.elapsed() >= MARK_EVERY) {
                self.write_mark(&mut mark).await;
            }
        }
        if self.unrecorded.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
            self.write_mark(&mut mark).await;
        }
    }

    pub(crate) async fn write_mark(&self, mark: &mut Mark) {
        let Some(id) = mark.analysed.filter(|id| Some(*id) != mark.written) else { return };
        let now = schemas::time::now_micros();
        match self.store.catalog().set_analysed_through(&self.cfg.consumer, id, now, self.fence()).await {
            Ok(true) => (mark.written, mark.at) = (Some(id), Instant::now()),
            Ok(false) => {
                tracing::info!("another ingest process holds the analysis lease; the mark is its to move")
            }
            Err(e) => tracing::warn!(error = %e, "cannot record how far the analysers have read; retried"),
        }
    }

    /// The analysers read a committed batch; their alerts, the tag stage's and the quotas' are
    /// recorded; incidents join them; blocks within a standing order send their triggers. False
    /// when some alerts could not be recorded (they wait for the next batch).
    pub(crate) async fn analyse_batch(&self, analysers: &[Arc<dyn Analyser>], a: Analysis) -> bool {
        let now = schemas::time::now_micros();
        let Analysis { tagged, alerts, records, .. } = a;
        let mut found = Findings { alerts, detections: tagged.detections, ..Findings::default() };
        found.alerts.extend(tagged.alerts);
        {
            let taggers = |t: &str| self.tagger_for(t);
            let batch = Committed::new(&records, &tagged.matched, &taggers, now);
            crate::analyse::run_all(analysers, &batch, &mut found, &self.metrics);
        }
        let recorded = self.record_findings(&mut found).await;
        self.update_incidents(&found.touched).await;
        self.send_triggers(&tagged.blocks).await;
        for (tier, n) in &found.detections {
            self.metrics.add("cordon_detections_total", &format!("tier=\"{tier}\""), HELP_DETECTIONS, *n);
        }
        recorded
    }

    /// Adds the historical logins' findings and records every alert; false when some wait for the
    /// catalog (they are retried with the next batch).
    async fn record_findings(&self, found: &mut Findings) -> bool {
        found.alerts.extend(self.history_findings().await);
        let recorded = self.record_alerts(&found.alerts).await;
        if let Err(e) = &recorded {
            tracing::warn!(error = %e, "cannot record alerts; retried with the next batch");
        }
        recorded.is_ok()
    }

    /// A fetch that brought nothing: silences at each new hour, the historical logins that waited
    /// for their host to settle, and incidents due a recheck. False when alerts wait for the catalog.
    pub(crate) async fn idle(&self) -> bool {
        let mut found = Findings::default();
        let now = schemas::time::now_micros();
        for a in &self.analysers {
            a.idle(now, &mut found);
        }
        let recorded = self.record_findings(&mut found).await;
        self.update_incidents(&self.incident_tenants().await).await;
        recorded
    }

    /// The rows committed past the analysed mark (a crash came between their ack and their
    /// analysis, or the lease holder that was to analyse them stopped), and the last commit number
    /// among them. The first start with the mark takes what the lake holds as analysed (before it,
    /// ingest analysed every batch before its ack), unless processes share the catalog: there
    /// others may have committed before any analysed, so everything is read.
    pub(crate) async fn unanalysed(&self) -> Result<(Vec<Record>, Option<i64>), IngestError> {
        let catalog = self.store.catalog();
        let err = store::StoreError::from;
        let mark = catalog.analysed_through(&self.cfg.consumer).await.map_err(err)?;
        match mark.or(self.cfg.elected_analysis.map(|_| 0)) {
            Some(mark) => Ok(self.store.rows_committed_after(mark, i64::MAX).await?),
            None => {
                let last = catalog.last_commit_seq().await.map_err(err)?;
                let now = schemas::time::now_micros();
                catalog
                    .set_analysed_through(&self.cfg.consumer, last, now, self.fence())
                    .await
                    .map_err(err)?;
                Ok((Vec::new(), None))
            }
        }
    }

    /// Rebuilds every analyser's state from the lake, read once from the earliest point any of
    /// them needs ([`Analyser::restore_from`]), tenant by tenant, and records what fires on the way.
    /// `unanalysed`: events committed but not analysed before the restart (see
    /// [`Ingest::analyse_again`]).
    pub(crate) async fn restore_analysers(
        &self,
        unanalysed: &std::collections::HashSet<String>,
    ) -> Result<(), IngestError> {
        let started = Instant::now();
        let now = schemas::time::now_micros();
        let Some(from) = self.analysers.iter().filter_map(|a| a.restore_from(now)).min() else {
            return Ok(());
        };
        let (mut replayed, mut found) = (0usize, Findings::default());
        let taggers = |t: &str| self.tagger_for(t);
        for tenant in self.store.tenants().await? {
            let mut records = self
                .store
                .scan(&tenant, from, i64::MAX, Vec::new(), |acc: &mut Vec<schemas::Record>, rec| {
                    acc.push(rec)
                })
                .await?;
            records.sort_by_key(schemas::Record::time);
            replayed += records.len();
            let replay = Replay { tenant: &tenant, records: &records, unanalysed, taggers: &taggers, now };
            for a in &self.analysers {
                let _span = tracing::debug_span!("restore", analyser = a.name(), %tenant).entered();
                super::cpu(|| a.restore(&replay, &mut found));
            }
        }
        for (tier, n) in &found.detections {
            self.metrics.add("cordon_detections_total", &format!("tier=\"{tier}\""), HELP_DETECTIONS, *n);
        }
        self.record_alerts(&found.alerts).await?;
        tracing::info!(
            events = replayed,
            fired = found.alerts.len(),
            ms = started.elapsed().as_millis() as u64,
            "analysers rebuilt from the lake"
        );
        Ok(())
    }

    /// Analyses again the rows [`Ingest::unanalysed`] found, after the analysers' state was rebuilt
    /// from the lake: tagged again, their detection alerts and the findings of the analysers that
    /// take them again ([`Analyser::analyses_again`]: not the correlations, whose replay of the lake
    /// has counted them already) recorded.
    pub(crate) async fn analyse_again(
        &self,
        mut rows: Vec<Record>,
        last: Option<i64>,
    ) -> Result<(), IngestError> {
        if rows.is_empty() {
            return Ok(());
        }
        tracing::warn!(events = rows.len(), "analysing events committed before a restart but not analysed");
        self.metrics.add("cordon_ingest_reanalysed_events_total", "", HELP_AGAIN, rows.len() as u64);
        let mut tagged = self.tag_records(rows.iter_mut(), schemas::time::now_micros());
        tagged.blocks.clear();
        tagged.matched.clear();
        let a = Analysis { tagged, alerts: Vec::new(), records: rows, commit_seq: last };
        let again: Vec<Arc<dyn Analyser>> =
            self.analysers.iter().filter(|a| a.analyses_again()).cloned().collect();
        if self.analyse_batch(&again, a).await
            && let Some(id) = last
        {
            let now = schemas::time::now_micros();
            let catalog = self.store.catalog();
            catalog
                .set_analysed_through(&self.cfg.consumer, id, now, self.fence())
                .await
                .map_err(store::StoreError::from)?;
        }
        Ok(())
    }
}

/// The event ids of rows, for the analysers' restore to leave to [`Ingest::analyse_again`].
pub(crate) fn event_ids(rows: &[Record]) -> HashSet<String> {
    let id = |r: &Record| r.cell(schemas::fields::col::EVENT_ID).as_str().map(str::to_owned);
    rows.iter().filter_map(id).collect()
}
