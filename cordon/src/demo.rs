//! `cordon demo`: one command from nothing to a searchable attack.

use crate::config::ServeArgs;
use anyhow::Context;
use clap::Args;
use sensor_agent::shipper::ShipperConfig;
use sensor_agent::{AgentConfig, ReplayOptions, SimulateOptions};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Flags of `cordon demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Data directory (deleted and recreated).
    #[arg(long, default_value = "./cordon-demo")]
    pub data_dir: PathBuf,
    /// Use this NATS server instead of starting one.
    #[arg(long, env = "CORDON_NATS_URL")]
    pub nats_url: Option<String>,
    /// API listen address.
    #[arg(long, default_value = "127.0.0.1:8088")]
    pub listen: String,
    /// Simulated fleet size.
    #[arg(long, default_value_t = 50)]
    pub fleet_hosts: usize,
    /// Fleet events per second.
    #[arg(long, default_value_t = 500)]
    pub fleet_rate: u64,
    /// Seconds of fleet noise.
    #[arg(long, default_value_t = 10)]
    pub fleet_seconds: u64,
    /// Replay the scenario in real time (about 3.5 minutes) instead of as fast as possible.
    #[arg(long)]
    pub realtime: bool,
    /// Stop once the scenario and the fleet are ingested and searchable.
    #[arg(long)]
    pub exit_after_replay: bool,
}

pub(crate) async fn run(a: DemoArgs) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(&a.data_dir);
    std::fs::create_dir_all(&a.data_dir).with_context(|| format!("creating {}", a.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&a.data_dir)?;
    let (nats_url, _nats) = match &a.nats_url {
        Some(u) => (u.clone(), None),
        None => {
            let n = crate::nats::start_secure(&data_dir.join("nats"))?;
            println!(
                "started nats-server {} at {} with authentication on (JetStream in {})",
                n.version,
                n.url,
                data_dir.join("nats").display()
            );
            (n.url.clone(), Some(n))
        }
    };
    let keys = _nats.as_ref().and_then(|n| n.keys.clone());
    let mut serve = ServeArgs {
        data_dir: Some(data_dir.clone()),
        nats_url: Some(nats_url.clone()),
        listen: Some(a.listen.clone()),
        ..ServeArgs::default()
    };
    if let Some(k) = &keys {
        serve.nats_auth.nats_nkey_file = Some(k.user_file.clone());
        serve.nats_auth.nats_auth_issuer_file = Some(k.issuer_file.clone());
    }
    let cfg = serve.resolve()?;
    let running = match crate::start(&cfg).await {
        Ok(r) => r,
        Err(e) if format!("{e:#}").contains("binding") => {
            println!("{} is taken; picking a free port", a.listen);
            let mut cfg = cfg.clone();
            cfg.listen = "127.0.0.1:0".parse()?;
            crate::start(&cfg).await?
        }
        Err(e) => return Err(e),
    };
    let (_, token) = running
        .store
        .catalog()
        .create_token("demo", "default", schemas::access::Role::Admin, schemas::time::now_micros())
        .await?;
    let api = format!("http://{}", running.addr);
    println!("Console: {api}/   sign in with the token {token}");
    // The agents enroll (one key per host they speak for) with a token made for this run.
    let now = schemas::time::now_micros();
    let (_, enroll_token) = running
        .store
        .catalog()
        .create_enroll_token("default", None, (a.fleet_hosts + 16) as i64, now + 3_600_000_000, now)
        .await?;
    let credentials = match &keys {
        Some(_) => sensor_agent::identity::Credentials::Enrolled {
            state_dir: data_dir.join("agent-state"),
            enroll: Some((api.clone(), enroll_token)),
            patience: Duration::from_secs(60),
        },
        None => sensor_agent::identity::Credentials::Open,
    };
    let agent_cfg = AgentConfig {
        nats_url: nats_url.clone(),
        tenant: schemas::TenantId::default_tenant(),
        subjects: cfg.subjects.clone(),
        spool_dir: data_dir.join("agent-spool"),
        shipper: ShipperConfig::default(),
        heartbeat: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(60),
        credentials,
        ca: None,
    };
    let scenario = fixtures::scenario::log4j_conti();
    println!(
        "replaying {} ({} events on {} hosts) beside a fleet of {} hosts at {} events/s for {} s",
        scenario.name,
        scenario.events.len(),
        scenario.hosts.len(),
        a.fleet_hosts,
        a.fleet_rate,
        a.fleet_seconds
    );
    let replay_opts = ReplayOptions { speed: a.realtime.then_some(1.0), base_time: None };
    let sim_opts = SimulateOptions {
        hosts: a.fleet_hosts,
        rate: a.fleet_rate,
        duration: Duration::from_secs(a.fleet_seconds),
        seed: 7,
        max_events: None,
        ..SimulateOptions::default()
    };
    let (replayed, simulated) = tokio::join!(
        sensor_agent::replay(&agent_cfg, &scenario, &replay_opts),
        sensor_agent::simulate(&agent_cfg, &sim_opts)
    );
    let (replayed, simulated) = (replayed?, simulated?);
    let acked = replayed.events_acked + simulated.events_acked;
    let started = Instant::now();
    loop {
        let (rows, _) = running.store.catalog().totals(Some("default")).await?;
        if rows as u64 >= acked && running.store.indexed_docs() >= acked {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            anyhow::bail!("only {rows} of {acked} acked events were stored after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    std::fs::write(
        data_dir.join("demo.json"),
        serde_json::json!({"api": api, "token": token, "nats_url": nats_url, "data_dir": data_dir,
            "events": acked, "scenario_events": replayed.events_acked})
        .to_string(),
    )?;
    println!(
        "\n{acked} events ingested and searchable ({} from the scenario). API: {api}",
        replayed.events_acked
    );
    println!("Console: {api}/   token: {token}   (also in {})\n", data_dir.join("demo.json").display());
    println!("Try:");
    println!(
        "  curl -s -H 'Authorization: Bearer {token}' '{api}/api/v1/hosts/WIN-DAKEQI/timeline?order=asc&limit=20'"
    );
    println!(
        "  curl -s -G -H 'Authorization: Bearer {token}' '{api}/api/v1/search' --data-urlencode 'q=\"${{jndi:ldap\"'"
    );
    println!(
        "  curl -s -H 'Authorization: Bearer {token}' -d '{{\"sql\": \"SELECT host_name, count(*) AS n FROM events GROUP BY host_name ORDER BY n DESC LIMIT 5\"}}' {api}/api/v1/sql"
    );
    println!(
        "Lake (a Delta table of Parquet files; see the README for Spark, Trino, DuckDB, delta-rs): {}",
        data_dir.join("lake/events").display()
    );
    if a.exit_after_replay {
        return running.stop().await;
    }
    println!("\nctrl-c to stop");
    running.serve_until(crate::ctrl_c()).await
}
