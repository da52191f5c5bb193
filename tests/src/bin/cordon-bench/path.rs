//! The whole path (agents -> NATS JetStream -> lake + index) on a throwaway, authenticated
//! nats-server and an in-process server: the runs `whole_path` and T8 are made of.

use crate::{cpu_seconds, median, percentile, proc_cpu};
use std::path::Path;
use std::time::Instant;

/// One whole-path run: what the agents acked, and the server's view while it ingested.
pub(crate) struct PathRun {
    pub(crate) acked: u64,
    pub(crate) wall: f64,
    pub(crate) server_cpu: f64,
    pub(crate) nats_cpu: f64,
    /// The agents' CPU during the run (a prebuilt fleet's build left out: `build_cpu`).
    pub(crate) agent_cpu: f64,
    /// CPU the agents spent building a prebuilt run before it started.
    pub(crate) build_cpu: f64,
    /// How late a prebuilt run started after its planned start, milliseconds.
    pub(crate) late_ms: u64,
    pub(crate) staleness: Vec<f64>,
    /// This process's resident size (the server runs in it), sampled each second: (seconds in, bytes).
    pub(crate) rss: Vec<(f64, u64)>,
    /// The anonymous part of it (heap; not the mapped index and lake files), sampled with it.
    pub(crate) anon: Vec<(f64, u64)>,
    /// Bytes the program holds (allocated, not freed), sampled with it when the build counts them
    /// (`--features count-heap`).
    pub(crate) heap: Vec<(f64, u64)>,
    /// The lake's parsed-footer cache, bytes, sampled with it.
    pub(crate) footers: Vec<(f64, u64)>,
    /// Events this run made searchable (the acked ones when nothing was lost).
    pub(crate) searchable: u64,
}

/// What the fleet of one run is: agents (simulated hosts, each enrolled with its own key) and the
/// events/s they offer together.
#[derive(Clone, Copy)]
pub(crate) struct Fleet {
    pub(crate) agents: usize,
    pub(crate) rate: u64,
    pub(crate) secs: u64,
    pub(crate) seed: u64,
    /// The agents build every batch before the run and only spool and publish during it
    /// (`simulate --prebuilt`): their CPU during the run is an endpoint shipper's.
    pub(crate) prebuilt: bool,
}

/// How long a prebuilt fleet gets to build its batches before the run starts: about 25 µs of one
/// core per event (generation, edge tags, compression), and 5 s more.
fn build_lead(fleet: &Fleet) -> std::time::Duration {
    std::time::Duration::from_secs(5) + std::time::Duration::from_micros(25 * fleet.rate * fleet.secs)
}

/// This process's resident size, bytes.
pub(crate) fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages = statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0);
    pages * 4096
}

/// This process's anonymous resident memory (`RssAnon`: heap, not mapped files), bytes.
pub(crate) fn anon_bytes() -> u64 {
    crate::status_kib("self", "RssAnon").unwrap_or(0) * 1024
}

/// One run of the whole path; with `flood`, a second agent process sends that many events/s as one
/// agent of the tenant `flood` beside the fleet (T8).
pub(crate) async fn path_run(
    store: &store::Store,
    nats: &cordon::nats::NatsServer,
    spool: &Path,
    fleet: &Fleet,
    flood: Option<u64>,
) -> anyhow::Result<PathRun> {
    let Fleet { agents, rate, secs, seed, prebuilt } = *fleet;
    // The index's document count when only this tenant sends (a match-all count over millions of
    // documents every few milliseconds would load the server being measured); a search otherwise.
    let searchable = || async {
        if flood.is_none() {
            return store.indexed_docs() as usize;
        }
        let q = store::index::SearchQuery { q: "*".into(), limit: 1, ..Default::default() };
        store.search("default", q).await.map(|(_, total)| total).unwrap_or(0)
    };
    let before = searchable().await;
    let nats_pid = nats.pid().to_string();
    let mut agent = tokio::process::Command::new(std::env::current_exe()?);
    agent
        .args(["agent", "--nats-url", &nats.url, "--spool-dir"])
        .arg(spool)
        .args(["simulate", "--hosts", &agents.to_string(), "--rate", &rate.to_string()])
        .args(["--duration", &secs.to_string()])
        .args(["--seed", &seed.to_string()])
        .envs(agent_env("default", spool))
        .env("CORDON_LOG", "warn")
        .stdout(std::process::Stdio::piped());
    // A prebuilt fleet starts its run at a time given, after building; the run is measured from it.
    let lead = if prebuilt { build_lead(fleet) } else { std::time::Duration::ZERO };
    let start = Instant::now() + lead;
    if prebuilt {
        let at = schemas::time::now_micros() + lead.as_micros() as i64;
        agent.args(["--prebuilt", "--start-at", &at.to_string()]);
    }
    let mut child = agent.spawn()?;
    tokio::time::sleep_until(start.into()).await;
    let (s0, n0, c0) = (cpu_seconds(), proc_cpu(&nats_pid).0, proc_cpu("self").1);
    let w0 = Instant::now();
    let mut flooder = match flood {
        Some(r) => Some(
            tokio::process::Command::new(std::env::current_exe()?)
                .args([
                    "agent",
                    "--nats-url",
                    &nats.url,
                    "--tenant",
                    "flood",
                    "--no-edge-rules",
                    "--spool-dir",
                ])
                .arg(spool.join("flood"))
                .args(["simulate", "--hosts", "1", "--rate", &r.to_string(), "--duration", &secs.to_string()])
                .envs(agent_env("flood", &spool.join("flood")))
                .env("CORDON_LOG", "error")
                .stdout(std::process::Stdio::null())
                .spawn()?,
        ),
        None => None,
    };
    let mut stdout = child.stdout.take().expect("piped");
    let summary = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut text = String::new();
        stdout.read_to_string(&mut text).await.map(|_| text)
    });
    // Staleness: how old the newest searchable event is, sampled every 100 ms while events flow.
    let (mut staleness, mut rss, mut anon, mut heap, mut footers) = (vec![], vec![], vec![], vec![], vec![]);
    // The newest searchable event's time: from the index's time columns when only this tenant
    // sends (a newest-first search visits and counts every match: at 10 samples a second over
    // millions of documents the probe grew into a tenth of the server's CPU); a search otherwise.
    let newest = || async {
        if flood.is_none() {
            return store.latest_indexed_time();
        }
        let q = store::index::SearchQuery { q: "*".into(), limit: 1, ..Default::default() };
        store.search("default", q).await.ok().and_then(|(h, _)| h.first().map(|h| h.record.time()))
    };
    let (acked, build_cpu, late_ms) = loop {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if rss.last().is_none_or(|(t, _)| w0.elapsed().as_secs_f64() - t >= 1.0) {
            rss.push((w0.elapsed().as_secs_f64(), rss_bytes()));
            anon.push((w0.elapsed().as_secs_f64(), anon_bytes()));
            if let Some(bytes) = crate::heap::in_use() {
                heap.push((w0.elapsed().as_secs_f64(), bytes));
            }
            footers.push((w0.elapsed().as_secs_f64(), store.footer_cache_bytes()));
        }
        if let Some(t) = newest().await
            && w0.elapsed().as_secs_f64() > 1.0
            && w0.elapsed().as_secs() < secs
        {
            staleness.push((schemas::time::now_micros() - t) as f64 / 1e6);
        }
        if let Some(status) = child.try_wait()? {
            anyhow::ensure!(status.success(), "agent exited with {status}");
            let text = summary.await??;
            let v: serde_json::Value = serde_json::from_str(text.trim())?;
            break (
                v["events_acked"].as_u64().unwrap_or(0),
                v["prebuilt"]["build_cpu_seconds"].as_f64().unwrap_or(0.0),
                v["prebuilt"]["late_ms"].as_u64().unwrap_or(0),
            );
        }
    };
    if let Some(f) = flooder.as_mut() {
        f.wait().await?;
    }
    // Until every acked event is searchable; a run that loses events ends after two quiet minutes.
    let mut last = (searchable().await, Instant::now());
    while last.0 < before + acked as usize && last.1.elapsed().as_secs() < 120 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let now = searchable().await;
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    Ok(PathRun {
        acked,
        wall: w0.elapsed().as_secs_f64(),
        server_cpu: cpu_seconds() - s0,
        nats_cpu: proc_cpu(&nats_pid).0 - n0,
        agent_cpu: proc_cpu("self").1 - c0 - build_cpu,
        build_cpu,
        late_ms,
        staleness,
        rss,
        anon,
        heap,
        footers,
        searchable: (last.0 - before) as u64,
    })
}

/// A throwaway nats-server and `cordon serve` (in this process) under `tmp`, with `quota` events/s per
/// agent when given.
pub(crate) fn path_server(
    tmp: &Path,
    quota: Option<u64>,
) -> anyhow::Result<(cordon::nats::NatsServer, tokio::runtime::Runtime, cordon::Running)> {
    let nats = cordon::nats::start_secure(&tmp.join("nats"))?;
    let rt = tokio::runtime::Runtime::new()?;
    let mut args = cordon::config::ServeArgs {
        data_dir: Some(tmp.join("data")),
        nats_url: Some(nats.url.clone()),
        listen: Some("127.0.0.1:0".into()),
        agent_events_per_sec: quota,
        // The entity graph's budget from the environment, as `cordon serve` takes it.
        graph_max_edges: std::env::var("CORDON_GRAPH_MAX_EDGES").ok().and_then(|v| v.parse().ok()),
        ..Default::default()
    };
    let keys = nats.keys.clone().expect("authentication is on");
    args.nats_auth.nats_nkey_file = Some(keys.user_file);
    args.nats_auth.nats_auth_issuer_file = Some(keys.issuer_file);
    let running = rt.block_on(cordon::start(&args.resolve()?))?;
    // Agents enroll (one key per simulated host) with a token of their tenant, as a fleet would.
    let mut env = std::collections::HashMap::new();
    for tenant in ["default", "flood"] {
        let now = schemas::time::now_micros();
        let (_, token) = rt.block_on(running.store.catalog().create_enroll_token(
            tenant,
            None,
            100_000,
            now + 86_400_000_000,
            now,
        ))?;
        env.insert(tenant, token);
    }
    let _ = AGENT_ENV.set((format!("http://{}", running.addr), env));
    Ok((nats, rt, running))
}

/// The API and each tenant's enrollment token for the bench's agents.
static AGENT_ENV: std::sync::OnceLock<(String, std::collections::HashMap<&'static str, String>)> =
    std::sync::OnceLock::new();

/// The environment an agent of `tenant` enrolls with (state kept under `spool`).
pub(crate) fn agent_env(tenant: &str, spool: &Path) -> Vec<(String, String)> {
    let Some((api, tokens)) = AGENT_ENV.get() else { return Vec::new() };
    vec![
        ("CORDON_AGENT_STATE".into(), spool.join("state").display().to_string()),
        ("CORDON_SERVER".into(), api.clone()),
        ("CORDON_ENROLL_TOKEN".into(), tokens.get(tenant).cloned().unwrap_or_default()),
    ]
}

pub(crate) fn whole_path(rate: u64, secs: u64, reps: usize, prebuilt: bool) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (nats, rt, running) = path_server(tmp.path(), None)?;
    println!(
        "nats-server {}; 200 simulated hosts offering {rate} events/s for {secs} s; agent spool fsync on; {}",
        nats.version,
        if prebuilt {
            "batches prebuilt (the agents only spool and publish during the run)"
        } else {
            "events generated live"
        }
    );
    let mut runs = Vec::new();
    for r in 0..reps {
        let fleet = Fleet { agents: 200, rate, secs, seed: r as u64, prebuilt };
        let run = rt.block_on(path_run(&running.store, &nats, &tmp.path().join("spool"), &fleet, None))?;
        let cpu = run.server_cpu + run.nats_cpu + run.agent_cpu;
        let mut st = run.staleness.clone();
        st.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| percentile(&st, p);
        println!(
            "  run {r}: {} events acked, searchable after {:.2}s => {:>8.0} events/s; CPU s server {:.2} nats {:.2} agent {:.2} => {:>8.0} events/CPU-s (all), {:>8.0} (server), {:>8.0} (server + NATS); newest-searchable age p50 {:.2}s p99 {:.2}s max {:.2}s",
            run.acked,
            run.wall,
            run.acked as f64 / run.wall,
            run.server_cpu,
            run.nats_cpu,
            run.agent_cpu,
            run.acked as f64 / cpu,
            run.acked as f64 / run.server_cpu,
            run.acked as f64 / (run.server_cpu + run.nats_cpu),
            pct(0.5),
            pct(0.99),
            st.last().copied().unwrap_or(f64::NAN)
        );
        if prebuilt {
            println!(
                "         agents built the run first in {:.2} CPU-s; started {} ms late",
                run.build_cpu, run.late_ms
            );
        }
        runs.push(run);
    }
    let mut eps: Vec<f64> = runs.iter().map(|r| r.acked as f64 / r.wall).collect();
    let mut server: Vec<f64> = runs.iter().map(|r| r.acked as f64 / r.server_cpu).collect();
    let mut with_nats: Vec<f64> = runs.iter().map(|r| r.acked as f64 / (r.server_cpu + r.nats_cpu)).collect();
    println!(
        "  median {:.0} events/s sustained, {:.0} events per server CPU-s, {:.0} per server + NATS CPU-s \
         (issue 21's bar: >= 50k per server + NATS CPU-s, that is >= 100k events/s on 2 cores)",
        median(&mut eps),
        median(&mut server),
        median(&mut with_nats)
    );
    rt.block_on(running.stop())?;
    Ok(())
}
