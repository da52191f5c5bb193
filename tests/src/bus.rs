//! The bus in tests: nats-server with Cordon's authentication, the keys of each one started here,
//! and agents' enrollment with the server last started on it.

use crate::{post, run};
use anyhow::Context;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use cordon::nats::NatsServer;

/// A fresh nats-server with authentication on (Cordon's user, its auth callout), as every test
/// runs: servers started on its URL answer the callout, and agents started on it enroll (see
/// [`spawn_agent`]).
pub fn start_nats(dir: &Path) -> anyhow::Result<NatsServer> {
    start_nats_on(dir, None)
}

/// As [`start_nats`], on a given port (a restart where the clients expect it; the keys in `dir`
/// are kept).
pub fn start_nats_on(dir: &Path, port: Option<u16>) -> anyhow::Result<NatsServer> {
    start_nats_with(dir, &cordon::nats::NatsOptions { port, auth: true, ..Default::default() })
}

/// As [`start_nats`], with `opts` (authentication is on whatever they say).
pub fn start_nats_with(dir: &Path, opts: &cordon::nats::NatsOptions) -> anyhow::Result<NatsServer> {
    let n = cordon::nats::start_with(dir, &cordon::nats::NatsOptions { auth: true, ..opts.clone() })?;
    if let Some(k) = &n.keys {
        bus_keys().insert(n.url.clone(), k.clone());
    }
    Ok(n)
}

/// A JetStream cluster of nats-servers on this machine, authentication on, the members sharing
/// Cordon's keys.
#[derive(Debug)]
pub struct NatsCluster {
    /// The members, `None` while one is stopped.
    pub members: Vec<Option<NatsServer>>,
    /// Every member's client URL, comma-separated: what servers and agents are given.
    pub url: String,
    options: Vec<(PathBuf, cordon::nats::NatsOptions)>,
}

impl NatsCluster {
    /// Starts `n` members under `dir` (`dir/n1`, ...), waits until they elected a JetStream
    /// leader, and registers the keys under [`NatsCluster::url`] as [`start_nats`] does.
    pub fn start(dir: &Path, n: usize) -> anyhow::Result<Self> {
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect::<anyhow::Result<_>>()?;
        let clients: Vec<u16> = (0..n).map(|_| free_port()).collect::<anyhow::Result<_>>()?;
        let keys_dir = dir.join("keys");
        let options: Vec<(PathBuf, cordon::nats::NatsOptions)> = (0..n)
            .map(|i| {
                let member = cordon::nats::ClusterMember {
                    cluster: "cordon".to_owned(),
                    name: format!("n{}", i + 1),
                    route_port: routes[i],
                    peers: routes.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, p)| *p).collect(),
                };
                let opts = cordon::nats::NatsOptions {
                    port: Some(clients[i]),
                    auth: true,
                    cluster: Some(member),
                    keys_dir: Some(keys_dir.clone()),
                    ..Default::default()
                };
                (dir.join(format!("n{}", i + 1)), opts)
            })
            .collect();
        let members = options
            .iter()
            .map(|(d, o)| cordon::nats::start_with(d, o).map(Some))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let url = members.iter().flatten().map(|m| m.url.clone()).collect::<Vec<_>>().join(",");
        let keys = members[0].as_ref().and_then(|m| m.keys.clone()).context("no keys")?;
        bus_keys().insert(url.clone(), keys);
        let cluster = Self { members, url, options };
        cluster.wait_for_jetstream(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// Stops member `i` at once (SIGKILL), as a crash would.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut m) = self.members[i].take() {
            m.kill();
        }
    }

    /// Starts member `i` again on its store, ports and routes.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let (dir, opts) = &self.options[i];
        self.members[i] = Some(cordon::nats::start_with(dir, opts)?);
        Ok(())
    }

    /// The index of the member named `name` (`n1`, ...).
    pub fn member(&self, name: &str) -> Option<usize> {
        name.strip_prefix('n')?.parse::<usize>().ok()?.checked_sub(1).filter(|i| *i < self.options.len())
    }

    /// Waits until JetStream answers through the cluster (its members have a meta leader).
    fn wait_for_jetstream(&self, within: Duration) -> anyhow::Result<()> {
        let url = self.url.clone();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async {
            let deadline = tokio::time::Instant::now() + within;
            let client = connect_operator(&url).await?;
            let js = async_nats::jetstream::new(client);
            loop {
                match js.query_account().await {
                    Ok(_) => return Ok(()),
                    Err(e) if tokio::time::Instant::now() > deadline => {
                        anyhow::bail!("the NATS cluster has no JetStream leader after {within:?}: {e}")
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        })
    }
}

/// A loopback port free now.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Connects to the bus as Cordon's own user (what an operator inspecting the streams uses), or
/// without credentials on a bus with authentication off.
pub async fn connect_operator(nats_url: &str) -> anyhow::Result<async_nats::Client> {
    let opts = match bus_auth(nats_url) {
        Some(k) => {
            async_nats::ConnectOptions::with_nkey(std::fs::read_to_string(&k.user_file)?.trim().to_owned())
        }
        None => async_nats::ConnectOptions::new(),
    };
    Ok(opts.connect(schemas::subject::nats_urls(nats_url)).await?)
}

/// Enrolls a fresh agent key of the default tenant with the server on `nats_url` and connects with
/// it, as an agent would; (client, agent id).
pub async fn connect_agent(nats_url: &str) -> anyhow::Result<(async_nats::Client, String)> {
    connect_agent_of(nats_url, "default").await
}

/// As [`connect_agent`], for an agent of `tenant`.
pub async fn connect_agent_of(nats_url: &str, tenant: &str) -> anyhow::Result<(async_nats::Client, String)> {
    let (url, t) = (nats_url.to_owned(), tenant.to_owned());
    let (api, token) = tokio::task::spawn_blocking(move || enrollment(&url, &t))
        .await??
        .context("no server with enrollment on this bus")?;
    let key = schemas::signed::AgentKey::generate()?;
    let body = serde_json::json!({"token": token, "public_key": key.public(), "proof": key.enroll_proof(&token), "host": "test"});
    let (status, answer) =
        tokio::task::spawn_blocking(move || post(&format!("{api}/api/v1/enroll"), None, &body)).await??;
    anyhow::ensure!(status == 200, "enroll: {answer}");
    let agent = answer["agent_id"].as_str().context("no agent id")?.to_owned();
    let seed = sensor_agent::identity::nkey_seed(&key)?;
    let client = async_nats::ConnectOptions::with_nkey(seed)
        .custom_inbox_prefix(format!("_INBOX_{agent}"))
        .name(format!("cordon-agent test-{agent}"))
        .connect(schemas::subject::nats_urls(nats_url))
        .await?;
    Ok((client, agent))
}

/// The keys of each authenticated nats-server started here, by URL.
fn bus_keys() -> std::sync::MutexGuard<'static, std::collections::HashMap<String, cordon::nats_auth::NatsKeys>>
{
    static KEYS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<String, cordon::nats_auth::NatsKeys>>,
    > = std::sync::OnceLock::new();
    KEYS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner())
}

/// The keys of the authenticated nats-server on `nats_url`, if it is one.
pub fn bus_auth(nats_url: &str) -> Option<cordon::nats_auth::NatsKeys> {
    bus_keys().get(nats_url).cloned()
}

/// Where agents on an authenticated bus enroll: the server last started on it.
#[derive(Clone, Debug)]
pub(crate) struct Enroller {
    pub(crate) api: String,
    pub(crate) bin: PathBuf,
    pub(crate) data_dir: PathBuf,
    pub(crate) metadata_url: Option<String>,
    /// A many-use enrollment token per tenant, made when first asked for.
    pub(crate) tokens: std::collections::HashMap<String, String>,
}

/// The enrollers, by NATS URL.
pub(crate) fn enrollments() -> std::sync::MutexGuard<'static, std::collections::HashMap<String, Enroller>> {
    static E: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, Enroller>>> =
        std::sync::OnceLock::new();
    E.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner())
}

/// Agents on `nats_url` enroll through the API at `api` from now on (servers sharing the bus and the
/// catalog, one of them stopped for a while). No-op when no server on the bus has enrollment.
pub fn enroll_through(nats_url: &str, api: &str) {
    if let Some(e) = enrollments().get_mut(nats_url) {
        e.api = api.to_owned();
    }
}

/// Where an agent of `tenant` on `nats_url` enrolls: (API URL, enrollment token), if a server on
/// that bus has enrollment.
pub(crate) fn enrollment(nats_url: &str, tenant: &str) -> anyhow::Result<Option<(String, String)>> {
    let mut all = enrollments();
    let Some(e) = all.get_mut(nats_url) else { return Ok(None) };
    if !e.tokens.contains_key(tenant) {
        let (_, token) = enroll_token_in(&e.bin, &e.data_dir, e.metadata_url.as_deref(), tenant, 100_000)?;
        e.tokens.insert(tenant.to_owned(), token);
    }
    Ok(Some((e.api.clone(), e.tokens[tenant].clone())))
}

/// Creates an enrollment token of `tenant` through `cordon enroll-token create`; (id, secret).
pub fn enroll_token(
    bin: &Path,
    data_dir: &Path,
    tenant: &str,
    uses: u32,
) -> anyhow::Result<(String, String)> {
    enroll_token_in(bin, data_dir, None, tenant, uses)
}

fn enroll_token_in(
    bin: &Path,
    data_dir: &Path,
    metadata_url: Option<&str>,
    tenant: &str,
    uses: u32,
) -> anyhow::Result<(String, String)> {
    let dd = data_dir.display().to_string();
    let uses = uses.to_string();
    let mut args = vec![
        "enroll-token",
        "create",
        "--tenant",
        tenant,
        "--uses",
        &uses,
        "--ttl",
        "24h",
        "--data-dir",
        &dd,
    ];
    if let Some(u) = metadata_url {
        args.extend(["--metadata-url", u]);
    }
    let (code, out) = run(bin, &args)?;
    anyhow::ensure!(code == 0, "enroll-token create failed ({code})");
    let v: Value = serde_json::from_str(out.trim())?;
    let field = |k: &str| v[k].as_str().map(str::to_owned).with_context(|| format!("no {k} in {v}"));
    Ok((field("id")?, field("token")?))
}
