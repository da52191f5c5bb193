//! Elected analysis (ADR 0009): where several ingest processes share the catalog and the lake, the
//! one that holds the catalog's `analysis` lease analyses what all of them commit.
//!
//! Every process decodes, tags, commits and acks what the durable consumer hands it. None analyses
//! the rows it has in hand: each would see only its share of the fleet (the phishing PC's events in
//! one, the web server's in the other, and the chain between them in neither). The lease holder
//! follows the catalog instead. Every commit takes a number that becomes visible in order
//! ([`store::catalog::Catalog::files_committed_after`]); the holder reads the files numbered past
//! its `analysed` mark back from the lake, tags them again (which correlation rules they feed and
//! which blocks they call for are not stored) and runs them through the analysers as one process
//! runs its own batches, then moves the mark. On taking the lease it rebuilds the analysers' state
//! from the lake as a start does and analyses what its predecessor left, so a holder that dies is
//! replaced within the lease's length and nothing committed goes unanalysed. Maintenance leaves
//! files past the mark alone, so none is merged away before it is read.

use crate::analysis::{Analysis, Mark, Work};
use crate::{Ingest, IngestError, stage};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::Instrument;

/// How often the holder looks for new commits, and others for a lease to take.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);
/// Commits read back per step (a step's rows are held in memory at once).
const FOLLOW_COMMITS: i64 = 32;
/// Steps per look before the queue of this process's own commits is served again.
const STEPS_PER_LOOK: usize = 8;
/// The lease's name in the catalog.
const LEASE: &str = "analysis";
const HELP_LEADS: &str = "1 while this process holds the analysis lease and analyses what every ingest process \
     sharing the catalog commits; 0 while another does.";

/// This process's hold on the analysis lease, as far as it knows.
struct Lease {
    ttl: Duration,
    /// When the catalog last confirmed this process holds it.
    renewed: Option<Instant>,
    /// Whether this process analyses: it took the lease over and has not lost it since.
    leading: bool,
}

impl Lease {
    /// Held while the last renewal is younger than half the lease: a renewal that keeps failing
    /// (the catalog unreachable) stops this process before another can take the lease over.
    fn held(&self) -> bool {
        self.renewed.is_some_and(|at| at.elapsed() < self.ttl / 2)
    }

    /// A renewal is due a third of the way into the lease.
    fn due(&self) -> bool {
        self.renewed.is_none_or(|at| at.elapsed() >= self.ttl / 3)
    }
}

impl Ingest {
    /// What the analysis writes to the catalog (incidents, the `analysed` mark) is fenced by the
    /// lease where processes share the catalog: a holder that paused past its lease and resumes
    /// mid-step must not overwrite what its successor wrote since. `None` for the only process.
    pub(crate) fn fence(&self) -> Option<store::catalog::Fence<'_>> {
        let holder = self.store.holder();
        self.cfg.elected_analysis.map(|_| store::catalog::Fence { lease: LEASE, holder })
    }

    /// The analysis task of a process sharing the catalog: this process's own commits bring only
    /// their quota alerts to record; while it holds the analysis lease, it follows every process's
    /// commits through the lake. Runs until the queue's sender is dropped.
    pub(crate) async fn elected(self: Arc<Self>, mut queue: mpsc::Receiver<Work>, ttl: Duration) {
        let mut lease = Lease { ttl, renewed: None, leading: false };
        let mut mark = Mark::new(None);
        let mut look = tokio::time::interval(FOLLOW_EVERY);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                work = queue.recv() => match work {
                    Some(Work::Batch(a)) => self.record_own(*a).await,
                    Some(Work::Idle) => {}
                    None => break,
                },
                _ = look.tick() => {
                    if let Some(m) = self.lead(&mut lease).await {
                        mark = m;
                    }
                    if lease.leading {
                        self.follow_steps(&mut lease, &mut mark).await;
                    }
                }
            }
        }
        if lease.leading {
            let _ = self.store.catalog().release_lease(LEASE, self.store.holder()).await;
        }
    }

    /// What this process's commit leaves to record here: its agents' quota alerts (the analysers'
    /// work goes to the lease holder, through the lake).
    async fn record_own(&self, a: Analysis) {
        if let Err(e) = self.record_alerts(&a.alerts).await {
            tracing::warn!(error = %e, "cannot record alerts; retried with the next batch");
        }
    }

    /// Takes or renews the lease when due; on taking it, rebuilds the analysers' state and analyses
    /// what the previous holder left, and returns the mark to follow the catalog from.
    async fn lead(&self, lease: &mut Lease) -> Option<Mark> {
        if lease.due() {
            self.renew(lease).await;
        }
        let mut took = None;
        match (lease.leading, lease.held()) {
            (false, true) => match self.take_over_renewing(lease).await {
                Some(Ok(m)) => {
                    tracing::info!(mark = ?m, "this process analyses what every ingest process commits");
                    (lease.leading, took) = (true, Some(Mark::new(m)));
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %schemas::error_chain(&e), "cannot take over the analysis; retried")
                }
                None => tracing::info!("the analysis lease was lost while this process took over"),
            },
            (true, false) => {
                tracing::info!("another ingest process holds the analysis lease now");
                lease.leading = false;
            }
            _ => {}
        }
        self.metrics.set_gauge("cordon_ingest_analysis_lease", "", HELP_LEADS, u64::from(lease.leading));
        took
    }

    /// Takes or renews the lease in the catalog; whether this process holds it now.
    async fn renew(&self, lease: &mut Lease) -> bool {
        let (now, ttl) = (schemas::time::now_micros(), lease.ttl.as_micros() as i64);
        match self.store.catalog().hold_lease(LEASE, self.store.holder(), now, ttl).await {
            Ok(true) => lease.renewed = Some(Instant::now()),
            Ok(false) => lease.renewed = None,
            Err(e) => tracing::warn!(error = %e, "cannot renew the analysis lease; retried"),
        }
        lease.held()
    }

    /// [`Ingest::take_over`], renewing the lease while it runs (rebuilding from the lake can take
    /// longer than the lease); `None` when the lease was lost meanwhile.
    async fn take_over_renewing(&self, lease: &mut Lease) -> Option<Result<Option<i64>, IngestError>> {
        let every = lease.ttl / 3;
        let renewing = async {
            loop {
                tokio::time::sleep(every).await;
                if !self.renew(lease).await {
                    return;
                }
            }
        };
        tokio::select! {
            r = self.take_over() => Some(r),
            () = renewing => None,
        }
    }

    /// The analysers' state rebuilt from the lake and what was committed past the `analysed` mark
    /// analysed, as a start does; the mark after it.
    async fn take_over(&self) -> Result<Option<i64>, IngestError> {
        for a in &self.analysers {
            a.taking_over();
        }
        self.forget_incidents().await;
        self.restore().await?;
        let catalog = self.store.catalog();
        Ok(catalog.analysed_through(&self.cfg.consumer).await.map_err(store::StoreError::from)?)
    }

    /// Follows the catalog for a few steps while commits wait; the idle work when none did.
    async fn follow_steps(&self, lease: &mut Lease, mark: &mut Mark) {
        for step in 0..STEPS_PER_LOOK {
            if lease.due() && !self.renew(lease).await {
                return; // the next look lets it go
            }
            match self.follow(mark).await {
                Ok(Some(true)) => continue,
                Ok(Some(false)) => return,
                Ok(None) if step == 0 => {
                    if self.idle().await {
                        self.write_mark(mark).await;
                    }
                    return;
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %schemas::error_chain(&e), "cannot read committed files back; retried");
                    return;
                }
            }
        }
    }

    /// One step: the rows of up to [`FOLLOW_COMMITS`] commits past the mark, read back, tagged again
    /// and analysed, and the mark moved past them. `None` when nothing was committed since; else
    /// whether more commits may be waiting.
    async fn follow(&self, mark: &mut Mark) -> Result<Option<bool>, IngestError> {
        let after = mark.analysed.unwrap_or(0);
        let (mut rows, last) = self.store.rows_committed_after(after, FOLLOW_COMMITS).await?;
        let Some(last) = last else { return Ok(None) };
        let started = Instant::now();
        let tagged = self.tag_records(rows.iter_mut(), schemas::time::now_micros());
        let span = tracing::debug_span!("analysers", events = rows.len(), after, last);
        let batch = Analysis { tagged, alerts: Vec::new(), records: rows, commit_seq: Some(last) };
        let clean = self.analyse_batch(&self.analysers, batch).instrument(span).await;
        stage(&self.metrics, "analysers", started);
        mark.analysed = Some(last);
        if clean {
            self.write_mark(mark).await;
        }
        Ok(Some(last - after == FOLLOW_COMMITS))
    }
}
