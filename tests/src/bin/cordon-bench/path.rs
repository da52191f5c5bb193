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
    /// How long after its planned time a prebuilt run's ticks were published: p50, p99, max (ms).
    pub(crate) publish_late_ms: [u64; 3],
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
    /// Seconds the server's timed stages took during the run, by stage ([`stage_seconds`]).
    pub(crate) stages: Vec<(String, f64)>,
    /// CPU seconds of this process's threads during the run, by thread name ([`thread_cpu`]); the
    /// server's CPU not in them is threads that ended during the run.
    pub(crate) threads: Vec<(String, f64)>,
}

/// The histograms of the server's stages that say where its time goes, summed so far: each ingest
/// stage (`cordon_ingest_stage_seconds`), each analyser inside the analysers stage, incident passes.
/// Read from what `GET /metrics` renders, as a scrape would.
pub(crate) fn stage_seconds(metrics: &schemas::metrics::Registry) -> Vec<(String, f64)> {
    const TIMED: [(&str, &str); 3] = [
        ("cordon_ingest_stage_seconds_sum{stage=\"", ""),
        ("cordon_analyser_seconds_sum{analyser=\"", "analyser "),
        ("cordon_incident_pass_seconds_sum", "incident passes"),
    ];
    let text = metrics.render();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(secs) = value.parse::<f64>() else { continue };
        for (prefix, name) in TIMED {
            if let Some(label) = series.strip_prefix(prefix) {
                out.push((format!("{name}{}", label.trim_end_matches("\"}")), secs));
            }
        }
    }
    out
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
    running: &cordon::Running,
    nats: &cordon::nats::NatsServer,
    spool: &Path,
    fleet: &Fleet,
    flood: Option<u64>,
) -> anyhow::Result<PathRun> {
    let Fleet { agents, rate, secs, seed, prebuilt } = *fleet;
    let store = &running.store;
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
    let (stages0, threads0) = (stage_seconds(&running.metrics), thread_cpu());
    let w0 = Instant::now();
    let w0_micros = schemas::time::now_micros();
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
    let (acked, build_cpu, late_ms, publish_late_ms) = loop {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if rss.last().is_none_or(|(t, _)| w0.elapsed().as_secs_f64() - t >= 1.0) {
            rss.push((w0.elapsed().as_secs_f64(), rss_bytes()));
            anon.push((w0.elapsed().as_secs_f64(), anon_bytes()));
            if let Some(bytes) = crate::heap::in_use() {
                heap.push((w0.elapsed().as_secs_f64(), bytes));
            }
            footers.push((w0.elapsed().as_secs_f64(), store.footer_cache_bytes()));
        }
        // The age of this run's newest searchable event; before the first of them is searchable, how
        // long the run has been sending (the newest event of an earlier run is not this run's age).
        if let Some(t) = newest().await
            && w0.elapsed().as_secs_f64() > 1.0
            && w0.elapsed().as_secs() < secs
        {
            staleness.push((schemas::time::now_micros() - t.max(w0_micros)) as f64 / 1e6);
        }
        if let Some(status) = child.try_wait()? {
            anyhow::ensure!(status.success(), "agent exited with {status}");
            let text = summary.await??;
            let v: serde_json::Value = serde_json::from_str(text.trim())?;
            let late = |i: usize| v["prebuilt"]["publish_late_ms"][i].as_u64().unwrap_or(0);
            break (
                v["events_acked"].as_u64().unwrap_or(0),
                v["prebuilt"]["build_cpu_seconds"].as_f64().unwrap_or(0.0),
                v["prebuilt"]["late_ms"].as_u64().unwrap_or(0),
                [late(0), late(1), late(2)],
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
    let stages = stage_seconds(&running.metrics)
        .into_iter()
        .map(|(k, v)| {
            let before = stages0.iter().find(|(k0, _)| *k0 == k).map_or(0.0, |(_, v0)| *v0);
            (k, v - before)
        })
        .collect();
    let threads = thread_cpu()
        .into_iter()
        .map(|(name, cpu)| (name.clone(), cpu - threads0.get(&name).copied().unwrap_or(0.0)))
        .filter(|(_, cpu)| *cpu >= 0.05)
        .collect();
    Ok(PathRun {
        stages,
        threads,
        acked,
        wall: w0.elapsed().as_secs_f64(),
        server_cpu: cpu_seconds() - s0,
        nats_cpu: proc_cpu(&nats_pid).0 - n0,
        agent_cpu: proc_cpu("self").1 - c0 - build_cpu,
        build_cpu,
        late_ms,
        publish_late_ms,
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
        // Each run's fleet is new, with its own spool (an endpoint's disk is its own: a directory
        // where the earlier runs' agents created and deleted thousands of batch files slows ext4's
        // inode allocation for the next run's agents, which then publish late).
        let spool = tmp.path().join(format!("spool-{r}"));
        let run = rt.block_on(path_run(&running, &nats, &spool, &fleet, None))?;
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
        let stages: Vec<String> = run.stages.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
        println!("         server stage seconds (wall): {}", stages.join(", "));
        let mut threads = run.threads.clone();
        threads.sort_by(|a, b| b.1.total_cmp(&a.1));
        let ended = run.server_cpu - threads.iter().map(|(_, c)| c).sum::<f64>();
        let threads: Vec<String> = threads.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
        println!("         server CPU-s by thread: {}, threads that ended {ended:.2}", threads.join(", "));
        if prebuilt {
            let [p50, p99, max] = run.publish_late_ms;
            println!(
                "         agents built the run first in {:.2} CPU-s; started {} ms late; each tick published {p50} ms (p50), {p99} ms (p99), {max} ms (max) after its time",
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

/// CPU seconds of this process's live threads, summed by thread name (a trailing number dropped:
/// `cordon-cpu`, `tokio-runtime-w`, tantivy's indexing and merge threads...).
pub(crate) fn thread_cpu() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let Some((head, after)) = stat.rsplit_once(')') else { continue };
        let name = head.split_once('(').map_or("", |(_, n)| n);
        let name = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '_');
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        *out.entry(name.to_owned()).or_insert(0.0) += (ticks(11) + ticks(12)) / 100.0;
    }
    out
}
