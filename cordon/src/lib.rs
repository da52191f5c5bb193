//! # cordon: the server binary
//!
//! Thin wiring: configuration in, then `store` (lake, index, catalog), `ingest` (JetStream consumer)
//! and `api` (axum) started side by side. `cordon demo` also starts a throwaway `nats-server` and the
//! agents of `sensor-agent` replaying the Log4j/Conti scenario beside a simulated fleet.

mod admin;
mod approve;
mod cli;
pub mod config;
mod demo;
mod executor;
mod tasks;
mod upkeep;
use upkeep::housekeeping;
pub mod eval;
pub mod eval_anomaly;
pub mod eval_archive;
pub mod eval_evtx;
pub mod eval_evtx_fuzz;
pub mod eval_lateral;
pub mod eval_logs;
pub mod eval_logs_oracle;
pub mod eval_mordor;
pub mod eval_peer;
pub mod nats;
pub mod nats_auth;
pub mod outbound;
pub mod reports;
pub mod tls;

pub use cli::{
    AgentAction, ApproverAction, AuditAction, Cli, Command, EnrollTokenAction, EvalWhat, TokenAction,
};

use anyhow::Context;
use clap::Parser;
use config::store_config;
use config::{ServeArgs, ServerConfig};
use schemas::metrics::Registry;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use store::Store;

/// A running server.
pub struct Running {
    /// Where the API listens.
    pub addr: SocketAddr,
    /// The store.
    pub store: Arc<Store>,
    /// The public key agents verify the server's policies and rules with (`--server-key`).
    pub signing_key: String,
    /// The counters and histograms `GET /metrics` renders (benches read their stage times).
    pub metrics: Arc<Registry>,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: tasks::Tasks,
    callout: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops ingest and the API and waits for them.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        if let Some(c) = self.callout {
            c.abort();
        }
        self.tasks.join_all().await
    }

    /// Serves until `stop` completes (ctrl-c or SIGTERM), then stops. A server task that fails first (ingest
    /// whose restore failed, a panic) stops the server too, with an error that names it: a server
    /// without ingest would otherwise answer health checks while it stores nothing.
    pub async fn serve_until(
        mut self,
        stop: impl std::future::Future<Output = anyhow::Result<()>>,
    ) -> anyhow::Result<()> {
        tokio::select! {
            stopped = stop => {
                stopped?;
                self.stop().await
            }
            Some(failed) = self.tasks.next_failure() => {
                let e = tasks::failed_early(failed);
                // The rest are stopped and waited for; their own errors are logged by join_all.
                let _ = self.stop().await;
                Err(e)
            }
        }
    }
}

/// Completes on ctrl-c (SIGINT) or SIGTERM (what systemd, Kubernetes and `kill` send to stop a
/// service), so that a stop finishes the batch in hand and hands back the one fetched ahead.
async fn ctrl_c() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    tokio::select! {
        c = tokio::signal::ctrl_c() => c.context("waiting for ctrl-c"),
        _ = term.recv() => Ok(()),
    }
}

/// Cordon's pack plus the operator's rule files, with what was refused logged by class.
fn detection_rules(paths: &[std::path::PathBuf]) -> anyhow::Result<correlate::sigma::Tagger> {
    let files = correlate::sigma::read_rule_files(paths).context("reading rule files")?;
    let tagger = correlate::sigma::Tagger::with_rule_files(files, schemas::policy::Policy::cordon_default())
        .context("Cordon's rule pack")?;
    let s = tagger.sources();
    if !s.files.is_empty() {
        let mut by_class: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        for r in &s.refused {
            *by_class.entry(r.class).or_default() += 1;
            tracing::debug!(file = %r.file, rule = %r.rule, reason = %r.reason, "rule refused");
        }
        tracing::info!(
            files = s.files.len(),
            loaded = s.loaded,
            refused = s.refused.len(),
            by_class = ?by_class,
            digest = %s.digest,
            "operator rules loaded (GET /api/v1/rules lists the refusals)"
        );
    }
    Ok(tagger)
}

/// Turns transparent huge pages off for this process. The allocator asks the kernel for them on its
/// arenas, and the kernel then keeps a whole 2 MiB page resident for a few live objects and, in the
/// background (khugepaged), fills sparse ranges back into whole pages: a long-running server's
/// resident size grows well past what it holds (issue 21's soak, README). Inherited by children.
fn no_huge_pages() {
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::warn!(error = %e, "transparent huge pages stay on for this process");
    }
}

/// Opens the store and starts ingest and the API.
pub async fn start(cfg: &ServerConfig) -> anyhow::Result<Running> {
    no_huge_pages();
    let store = Store::open(&store_config(cfg)).await.context("opening the store")?;
    let metrics = Arc::new(Registry::default());
    let client = nats_auth::connect(&cfg.nats_url, &cfg.nats_auth, cfg.tls.nats_ca.as_deref()).await?;
    // Agents can connect once the callout answers (before ingest: spooled agents reconnect at once).
    let callout = nats_auth::serve_callout(
        &client,
        &cfg.nats_auth,
        &cfg.subjects,
        cfg.max_message_bytes,
        Arc::clone(&store),
        Arc::clone(&metrics),
    )
    .await?;
    let hour = 3_600_000_000i64;
    let tagger = detection_rules(&cfg.rules)?;
    let signing = Arc::new(admin::signing_key(&cfg.signing_key)?);
    let icfg = ingest::IngestConfig {
        tagger: Some(Arc::new(tagger)),
        subjects: cfg.subjects.clone(),
        max_message_bytes: cfg.max_message_bytes,
        stream_max_bytes: cfg.stream_max_bytes,
        stream_replicas: cfg.stream_replicas,
        graphs: Arc::new(correlate::graph::Graphs::new(correlate::graph::GraphConfig {
            hot_window: i64::from(cfg.graph_hot_hours) * hour,
            max_edges: cfg.graph_max_edges,
            ..Default::default()
        })),
        incident: correlate::incident::IncidentConfig {
            window: i64::from(cfg.incident_window_hours) * hour,
            ..Default::default()
        },
        signing: Arc::clone(&signing),
        quota: cfg.quota,
        watch: cfg.watch,
        forecast: cfg.forecast.clone(),
        // Every analyser: the entity graph (incidents), correlation windows, login counts.
        analysers: ingest::analyse::AnalyserKind::ALL.to_vec(),
        elected_analysis: cfg.shared_catalog,
        ..ingest::IngestConfig::default()
    };
    let graphs = Arc::clone(&icfg.graphs);
    let baselines = Arc::clone(&icfg.baselines);
    let ingest = Arc::new(ingest::Ingest::new(client, icfg, Arc::clone(&store), Arc::clone(&metrics)).await?);
    let detection = ingest.rules();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let listener =
        tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let state = api::AppState::with_baselines(
        Arc::clone(&store),
        Arc::clone(&metrics),
        detection,
        graphs,
        Arc::clone(&baselines),
        cfg.forecast.clone(),
    );
    state.limiter.set_limit(cfg.auth_failure_limit);
    state.enroll_limiter.set_limit(cfg.auth_failure_limit);
    let _ = state.server_key.set(signing.public());
    let _ = state.ingest_ready.set(ingest.readiness());
    let _ = state.sql_timeout.set(cfg.sql_timeout);
    let app = api::router(state).merge(api::console::router(cfg.ui_dir.clone()));
    let mut rx_api = rx.clone();
    let rx_store = rx.clone();
    let rx_base = rx.clone();
    let rx_reports = rx.clone();
    let tls = match (&cfg.tls.tls_cert, &cfg.tls.tls_key) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut tasks = tasks::Tasks::default();
    tasks.spawn(
        "api",
        serve_api(listener, tls, app, async move {
            let _ = rx_api.wait_for(|v| *v).await;
        }),
    );
    tasks.spawn(
        "rule reload",
        reload_rules_on_hangup(Arc::clone(&store), Arc::clone(&ingest), cfg.rules.clone(), rx.clone()),
    );
    tasks.spawn("ingest", async move { ingest.run(rx).await.context("ingest failed") });
    tasks.spawn("reports", reports::run_schedules(Arc::clone(&store), cfg.clone(), rx_reports));
    tasks.spawn("baselines", refit_baselines(Arc::clone(&store), baselines, cfg.clone(), rx_base));
    tasks
        .spawn("housekeeping", housekeeping(Arc::clone(&store), Arc::clone(&metrics), cfg.clone(), rx_store));
    std::fs::write(
        cfg.data_dir.join("server.json"),
        serde_json::json!({"api": format!("{scheme}://{addr}"), "pid": std::process::id(),
            "signing_key": signing.public()})
        .to_string(),
    )
    .context("writing server.json")?;
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(), signing_key = %signing.public(), "cordon is serving");
    Ok(Running { addr, signing_key: signing.public(), store, metrics, shutdown: tx, callout, tasks })
}

/// Serves the API on `listener`, over TLS with `tls`, until `shutdown` completes.
async fn serve_api(
    listener: tokio::net::TcpListener,
    tls: Option<rustls::ServerConfig>,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use axum::serve::ListenerExt;
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        Some(cfg) => {
            let listener = tls::TlsListener::new(listener, cfg)?.tap_io(|_| {});
            axum::serve(listener, service).with_graceful_shutdown(shutdown).await
        }
        None => axum::serve(listener, service).with_graceful_shutdown(shutdown).await,
    }
    .context("api server failed")
}

/// On SIGHUP the operator's rule files are read again and, if they load, replace the rules in use
/// at ingest, in the API and (through the object store) at the agents. A pack that does not compile
/// or an unreadable file keeps the rules in use (and says why).
async fn reload_rules_on_hangup(
    store: Arc<Store>,
    ingest: Arc<ingest::Ingest>,
    paths: Vec<PathBuf>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    loop {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return Ok(());
                }
            }
            got = hangup.recv() => {
                if got.is_none() {
                    return Ok(());
                }
                let outcome = match detection_rules(&paths) {
                    Ok(t) => {
                        let s = t.sources();
                        let mut d = serde_json::json!({"digest": s.digest, "files": s.files.len(),
                            "loaded": s.loaded, "refused": s.refused.len()});
                        if let Err(e) = ingest.reload_rules(t).await {
                            tracing::error!(error = %e, "rules reloaded at ingest, but not published to agents");
                            d["published"] = serde_json::json!(false);
                        }
                        d
                    }
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "rules not reloaded; the rules in use stay");
                        serde_json::json!({"error": format!("{e:#}")})
                    }
                };
                let rec = store::catalog::AuditRecord {
                    tenant: String::new(),
                    actor: "server:sighup".into(),
                    action: "rules.reload".into(),
                    target: "rules".into(),
                    detail: outcome,
                };
                if let Err(e) = store.catalog().audit(&rec, schemas::time::now_micros()).await {
                    tracing::error!(error = %e, "could not write the rule reload to the audit chain");
                }
            }
        }
    }
}

/// The login baselines: fitted for every tenant at start, for a tenant first seen since within a
/// minute, and for all on the configured schedule (nightly by default). A failed fit is logged and
/// the tenant keeps its previous models.
async fn refit_baselines(
    store: Arc<Store>,
    live: Arc<anomaly::live::Live>,
    cfg: ServerConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut next = cfg.baseline_refit.next_after(schemas::time::now_micros());
    let mut first = true;
    loop {
        let now = schemas::time::now_micros();
        let due = next.is_some_and(|t| now >= t);
        let tenants = store.tenants().await.unwrap_or_default();
        for t in &tenants {
            if first || due || live.models(t).is_none() {
                match api::baselines::refit(&store, &live, t, &cfg.forecast, cfg.baseline_threads, now).await
                {
                    Ok(r) => tracing::info!(?r, "login baselines fitted"),
                    Err(e) => tracing::error!(tenant = %t, error = %e, "login baseline refit failed"),
                }
            }
        }
        first = false;
        if due {
            next = cfg.baseline_refit.next_after(now);
        }
        tokio::select! {
            _ = stop.wait_for(|v| *v) => return Ok(()),
            _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let cfg = args.resolve()?;
    let running = start(&cfg).await?;
    println!(
        "cordon listening on http://{} (data in {}; agents: --server-key {})",
        running.addr,
        cfg.data_dir.display(),
        running.signing_key
    );
    running.serve_until(ctrl_c()).await
}

async fn open_store(args: &ServeArgs) -> anyhow::Result<(Arc<Store>, ServerConfig)> {
    open_store_with(args, true).await
}

/// Opens the store; `repair` off leaves a damaged index or Delta log as an error (for `verify`).
async fn open_store_with(args: &ServeArgs, repair: bool) -> anyhow::Result<(Arc<Store>, ServerConfig)> {
    let cfg = args.resolve()?;
    let store = Store::open(&store::StoreConfig { repair, ..store_config(&cfg) })
        .await
        .context("opening the store (is a server running on this data directory?)")?;
    Ok((store, cfg))
}

/// Parses and runs a command line; the process exit code.
pub fn main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> std::process::ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                std::process::ExitCode::from(2)
            } else {
                std::process::ExitCode::SUCCESS
            };
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CORDON_LOG")
                .unwrap_or_else(|_| "info,async_nats=warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    if let Command::SqlWorker = cli.command {
        return match store::sql_worker::serve(std::io::stdin().lock(), std::io::stdout().lock()) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::from(2)
            }
        };
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Serve(a) => serve(a).await,
            Command::Demo(a) => Box::pin(demo::run(a)).await,
            Command::Token { action } => admin::token(action).await,
            Command::Audit { action } => admin::audit(action).await,
            Command::Approver { action: ApproverAction::Keygen { out } } => {
                println!("{}", approve::keygen(&out)?);
                Ok(())
            }
            Command::Approve { request, key } => {
                println!("{}", approve::approve(&request, &key)?);
                Ok(())
            }
            Command::EnrollToken { action } => admin::enroll_token(action).await,
            Command::Enrollment { state, serve } => admin::enrollment(&state, serve).await,
            Command::Agent { action } => admin::agent(action).await,
            Command::Verify(a) => {
                let report = open_store_with(&a, false).await?.0.verify().await?;
                println!("{}", serde_json::to_string_pretty(&report)?);
                for warning in &report.warnings {
                    eprintln!("warning: {warning}");
                }
                let problems = report.problems();
                anyhow::ensure!(
                    problems.is_empty(),
                    "the store disagrees with itself: {}",
                    problems.join("; ")
                );
                Ok(())
            }
            Command::Reindex(a) => {
                let store = open_store(&a).await?.0;
                store.reindex().await?;
                println!("reindexed: {} documents", store.indexed_docs());
                Ok(())
            }
            Command::Compact(a) => {
                let store = open_store(&a).await?.0;
                let report = store.compact(&store::CompactOptions::default()).await?;
                store.flush().await?;
                println!("{}", serde_json::to_string(&report)?);
                Ok(())
            }
            Command::Eval {
                what: EvalWhat::Sigma { rules, json, min_loaded_percent, regression, min_regression_percent },
            } => {
                let report = eval::load_rules(&rules)?;
                eval::print_load(&report, json)?;
                if let Some(dir) = regression {
                    let r = eval::regression(&rules, &dir)?;
                    eval::print_regression(&r);
                    let pct = 100.0 * r.passed as f64 / r.tests.max(1) as f64;
                    anyhow::ensure!(
                        pct >= min_regression_percent,
                        "only {pct:.1}% of the regression tests pass; the floor is {min_regression_percent}%"
                    );
                }
                let pct = report.load_percent();
                anyhow::ensure!(
                    pct >= min_loaded_percent,
                    "only {pct:.1}% of the rules loaded; the floor is {min_loaded_percent}%"
                );
                Ok(())
            }
            Command::Eval { what: EvalWhat::Logs { corpus, logs, year, strict } } => {
                let year = year.unwrap_or_else(this_year);
                let r = eval_logs::logs(&corpus, &logs, year)?;
                eval_logs::print_logs(&r);
                let (_, _, extra, missed, oracle_attempts, attempts) = r.totals();
                anyhow::ensure!(
                    !strict || (missed == 0 && extra == 0 && attempts == oracle_attempts),
                    "{missed} failure lines missed, {extra} extra; {attempts} attempts against the oracle's {oracle_attempts}"
                );
                Ok(())
            }
            Command::Eval {
                what:
                    EvalWhat::Anomaly {
                        hosts,
                        days,
                        per_kind,
                        seed,
                        refit_hours,
                        threads,
                        level,
                        fleet_quantile,
                        json,
                        min_f1,
                        real,
                        real_year,
                    },
            } => {
                if let Some(path) = &real {
                    let r = eval_anomaly::real(path, real_year)?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&r)?);
                    }
                    eval_anomaly::print_real(&r);
                }
                let threads =
                    threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
                let r = eval_anomaly::anomaly(&eval_anomaly::AnomalyEvalConfig {
                    hosts,
                    days,
                    seed,
                    per_kind,
                    refit_hours,
                    threads,
                    level,
                    fleet_quantile,
                });
                if json {
                    println!("{}", serde_json::to_string_pretty(&r)?);
                }
                eval_anomaly::print_anomaly(&r);
                let f1 = r.rules[0].f1;
                anyhow::ensure!(f1 >= min_f1, "two-condition F1 {f1:.3} is below the floor {min_f1}");
                Ok(())
            }
            Command::Eval { what: EvalWhat::Mordor { corpus, rules, json, min_detected } } => {
                let r = eval_mordor::techniques(&corpus, &rules)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&r.datasets)?);
                }
                eval_mordor::print(&r);
                let detected: usize = r.per_technique().values().map(|(_, _, agent)| agent).sum();
                anyhow::ensure!(
                    detected >= min_detected,
                    "only {detected} (dataset, technique) pairs detected (at least {min_detected} expected)"
                );
                Ok(())
            }
            Command::Eval { what: EvalWhat::Lateral { corpus, json, min_found } } => {
                let r = eval_lateral::lateral(&corpus)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&r)?);
                }
                eval_lateral::print_lateral(&r);
                let found = r.iter().filter(|d| d.found == Some(true)).count();
                anyhow::ensure!(
                    found >= min_found,
                    "only {found} datasets produce the source -> target edge (at least {min_found} expected)"
                );
                Ok(())
            }
            Command::Eval {
                what: EvalWhat::Evtx { corpus, rules, peer_timeline, peer_name, min_tagged, strict, mutants },
            } => {
                let peer = peer_timeline.map(|p| (peer_name, p));
                eval_evtx_fuzz::command(&corpus, &rules, peer.as_ref(), strict, mutants, min_tagged)
            }
            Command::NatsConfig { dir } => {
                let keys = nats_auth::NatsKeys::in_dir(&dir)?;
                println!("# nats-server configuration (beside your listen, TLS and jetstream blocks):");
                print!("{}", keys.server_config());
                println!("# cordon serve {}", keys.serve_args().join(" "));
                Ok(())
            }
            Command::Vacuum(a) => {
                let (store, cfg) = open_store(&a).await?;
                let opts = store::VacuumOptions {
                    retain_days: cfg.retention_days,
                    now: schemas::time::now_micros(),
                };
                let report = store.vacuum(&opts).await?;
                store.flush().await?;
                println!("{}", serde_json::to_string(&report)?);
                Ok(())
            }
            Command::SqlExecutor(a) => executor::run(a).await,
            Command::SqlWorker => unreachable!("handled before the runtime starts"),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The data directory a demo uses by default.
pub fn default_demo_dir() -> PathBuf {
    PathBuf::from("./cordon-demo")
}

/// This year (UTC), for dates written without one.
fn this_year() -> i32 {
    schemas::time::format_micros(schemas::time::now_micros())[..4].parse().unwrap_or(2026)
}
