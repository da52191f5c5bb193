//! A simulated fleet: the seeded generator's hosts, each its own enrolled identity, offering a
//! steady rate of events. Live, events are generated as they are due; prebuilt, the whole run is
//! generated, serialised, tagged at the edge and compressed into batches before it starts, so that
//! during the run the agents only spool and publish (what a bench needs when the agents share the
//! machine with the server they measure).

use crate::shipper::{Sealed, Shipper};
use crate::{AgentConfig, AgentError, RunSummary, finish, open_identity};
use fixtures::fleet::FleetGenerator;
use std::time::Duration;
use tokio::time::Instant;

/// How often the fleet generates and publishes.
const TICK: Duration = Duration::from_millis(100);
/// Open batches are sealed at least this often.
const SEAL_EVERY: Duration = Duration::from_secs(1);

/// How a fleet is simulated.
#[derive(Clone, Debug, Default)]
pub struct SimulateOptions {
    /// Hosts.
    pub hosts: usize,
    /// Events per second across the fleet.
    pub rate: u64,
    /// How long.
    pub duration: Duration,
    /// Seed.
    pub seed: u64,
    /// Stop early after this many events.
    pub max_events: Option<u64>,
    /// Build every batch before the run starts ([`Prebuilt`]).
    pub prebuilt: bool,
    /// With `prebuilt`: when the run starts (Unix microseconds; events carry their planned send
    /// time). Default: once the batches are built.
    pub start_at: Option<i64>,
}

/// What building a prebuilt run took.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Prebuilt {
    /// Events built.
    pub events: u64,
    /// Batches built.
    pub batches: u64,
    /// CPU this process spent building them, seconds (the run's own CPU is the rest).
    pub build_cpu_seconds: f64,
    /// How late the run started after `start_at`, milliseconds (the build took longer than the
    /// lead it was given; events then go out that much after their time).
    pub late_ms: u64,
    /// How long after its planned time each tick's batches were spooled and published (the wait
    /// for their acks included), milliseconds: the median, the 99th percentile and the largest.
    /// What the agents add to an event's age before the server sees it.
    pub publish_late_ms: [u64; 3],
    /// Ticks that ended with batches still spooled (a drain cut short, or a publish failed).
    pub ticks_behind: u64,
}

/// Simulates a fleet: `rate` events/s spread over `hosts` identities for `duration`.
pub async fn simulate(cfg: &AgentConfig, opts: &SimulateOptions) -> Result<RunSummary, AgentError> {
    let mut fleet = FleetGenerator::new(opts.seed, opts.hosts.max(1));
    let mut shippers = Vec::new();
    for h in fleet.hosts() {
        shippers.push(open_identity(cfg, &h.agent, &h.name).await?);
    }
    if opts.prebuilt {
        return prebuilt(cfg, opts, &mut fleet, shippers).await;
    }
    let start = Instant::now();
    let mut sent = 0u64;
    let mut last_seal = Instant::now();
    let mut last_hb = Instant::now();
    let mut next_tick = start + TICK;
    let limit = opts.max_events.unwrap_or(u64::MAX);
    while start.elapsed() < opts.duration && sent < limit {
        let due = ((start.elapsed() + TICK).as_secs_f64() * opts.rate as f64) as u64;
        let now = schemas::time::now_micros();
        while sent < due.min(limit) {
            let (h, e) = fleet.next_event(now);
            shippers[h].push(&e)?;
            sent += 1;
        }
        if last_seal.elapsed() >= SEAL_EVERY {
            for s in shippers.iter_mut() {
                s.seal()?;
            }
            last_seal = Instant::now();
        }
        publish(cfg, &mut shippers, &mut last_hb).await;
        tokio::time::sleep_until(next_tick).await;
        next_tick = (next_tick + TICK).max(Instant::now());
    }
    finish(cfg, shippers).await
}

/// One tick's publishing: every shipper drains what it has spooled, all at once as independent
/// endpoints would (one after the other, the fleet's tick would wait for 200 ack round trips in a
/// row, each behind the server's fsync), for at most a tick: generation does not wait on a server
/// that is down, and a drain cut short leaves its batches spooled for the next one, which the server
/// deduplicates by message id; heartbeats when due.
async fn publish(cfg: &AgentConfig, shippers: &mut [Shipper], last_hb: &mut Instant) {
    let drains = shippers.iter_mut().map(|s| async move {
        match tokio::time::timeout(TICK, s.drain()).await {
            Ok(Err(e)) => {
                tracing::warn!(agent = %s.identity().agent, error = %e, "publish failed; batches stay spooled")
            }
            Ok(Ok(())) => {}
            Err(_) => tracing::debug!(agent = %s.identity().agent, "drain cut short; batches stay spooled"),
        }
    });
    futures::future::join_all(drains).await;
    if last_hb.elapsed() >= cfg.heartbeat {
        for s in shippers.iter() {
            s.heartbeat().await;
        }
        *last_hb = Instant::now();
    }
}

/// The run built first ([`build_plan`]), then each tick's batches spooled and published on time.
async fn prebuilt(
    cfg: &AgentConfig,
    opts: &SimulateOptions,
    fleet: &mut FleetGenerator,
    mut shippers: Vec<Shipper>,
) -> Result<RunSummary, AgentError> {
    let cpu0 = crate::live::budget::self_usage().0;
    // Without a start time, events are stamped as if the run started now and sent once built.
    let start_at = opts.start_at.unwrap_or_else(schemas::time::now_micros);
    let plan = build_plan(opts, fleet, &mut shippers, start_at)?;
    let mut built = Prebuilt {
        events: plan.iter().flatten().map(|(_, b)| b.events()).sum(),
        batches: plan.iter().map(|t| t.len() as u64).sum(),
        build_cpu_seconds: crate::live::budget::self_usage().0 - cpu0,
        ..Default::default()
    };
    let wait = start_at - schemas::time::now_micros();
    if opts.start_at.is_some() && wait < 0 {
        built.late_ms = (-wait / 1000) as u64;
        tracing::warn!(late_ms = built.late_ms, "the batches took longer to build than the lead given");
    }
    let start = Instant::now() + Duration::from_micros(wait.max(0) as u64);
    tokio::time::sleep_until(start).await;
    let mut last_hb = Instant::now();
    let mut late = Vec::with_capacity(plan.len());
    for (k, batches) in plan.into_iter().enumerate() {
        for (h, b) in batches {
            shippers[h].spool_sealed(b)?;
        }
        publish(cfg, &mut shippers, &mut last_hb).await;
        late.push(Instant::now().saturating_duration_since(start + TICK * k as u32).as_millis() as u64);
        built.ticks_behind += u64::from(shippers.iter().any(|s| s.backlog() > 0));
        tokio::time::sleep_until(start + TICK * (k as u32 + 1)).await;
    }
    built.publish_late_ms = spread(late);
    let mut summary = finish(cfg, shippers).await?;
    summary.prebuilt = Some(built);
    Ok(summary)
}

/// The median, the 99th percentile and the largest of `ms`.
fn spread(mut ms: Vec<u64>) -> [u64; 3] {
    ms.sort_unstable();
    let at = |p: f64| ms.get(((ms.len() as f64 * p) as usize).min(ms.len().saturating_sub(1))).copied();
    [at(0.5).unwrap_or(0), at(0.99).unwrap_or(0), ms.last().copied().unwrap_or(0)]
}

/// Every tick's sealed batches, by shipper index: the events the live loop would generate in that
/// tick, stamped with the tick's planned time from `start_at`, pushed through the shippers (edge
/// tags, batch size, compression) while they hold what they seal.
fn build_plan(
    opts: &SimulateOptions,
    fleet: &mut FleetGenerator,
    shippers: &mut [Shipper],
    start_at: i64,
) -> Result<Vec<Vec<(usize, Sealed)>>, AgentError> {
    let ticks = opts.duration.as_micros().div_ceil(TICK.as_micros()) as u32;
    let seal_every = (SEAL_EVERY.as_micros() / TICK.as_micros()) as u32;
    let limit = opts.max_events.unwrap_or(u64::MAX);
    for s in shippers.iter_mut() {
        s.hold();
    }
    let mut plan = Vec::with_capacity(ticks as usize);
    let mut sent = 0u64;
    for k in 0..ticks {
        let due = ((TICK * (k + 1)).as_secs_f64() * opts.rate as f64) as u64;
        let t = start_at + (TICK * k).as_micros() as i64;
        while sent < due.min(limit) {
            let (h, e) = fleet.next_event(t);
            shippers[h].push(&e)?;
            sent += 1;
        }
        let last = k + 1 == ticks;
        let mut batches = Vec::new();
        for (h, s) in shippers.iter_mut().enumerate() {
            if (k + 1) % seal_every == 0 || last {
                s.seal()?;
            }
            let held = if last { s.release() } else { s.take_held() };
            batches.extend(held.into_iter().map(|b| (h, b)));
        }
        plan.push(batches);
    }
    Ok(plan)
}
