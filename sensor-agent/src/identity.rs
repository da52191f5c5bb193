//! Who each identity of this process is on the bus, and its connection.
//!
//! With authentication on (the normal case), every identity holds its own enrolled key and opens its
//! own connection with it as an nkey: the server's auth callout (ADR 0007) gives that connection
//! exactly its own subjects, and the agent id is the one derived from the key at enrollment. A tool
//! that speaks for many hosts (replay, EVTX per Computer, logs per host, the simulator) keeps one key
//! per host under `<state-dir>/ids/`, enrolling a missing one with the enrollment token it was given.
//! Without authentication (a development nats-server with auth off), identities are named after
//! their hosts and share nothing but the URL.

use crate::AgentError;
use crate::shipper::Identity;
use schemas::{AgentId, TenantId};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How this process's identities authenticate.
#[derive(Clone, Debug, Default)]
pub enum Credentials {
    /// The bus has no authentication: agent ids are host names.
    #[default]
    Open,
    /// Enrolled keys under `state_dir`; a missing one is enrolled with `enroll` (API URL, token).
    Enrolled {
        /// Where the keys and enrollments are kept.
        state_dir: PathBuf,
        /// The server and enrollment token for identities not enrolled yet.
        enroll: Option<(String, String)>,
        /// How long to keep trying to reach a server that is down (restarting) to enroll.
        patience: Duration,
    },
}

/// The enrolled key as a NATS user nkey: the same Ed25519 key, in nkey form.
pub fn nkey(key: &schemas::signed::AgentKey) -> Result<nkeys::KeyPair, AgentError> {
    nkeys::KeyPair::new_from_raw(nkeys::KeyPairType::User, key.seed())
        .map_err(|e| AgentError::Enroll(e.to_string()))
}

/// The enrolled key's nkey seed (`SU...`), what a NATS client connects with.
pub fn nkey_seed(key: &schemas::signed::AgentKey) -> Result<String, AgentError> {
    nkey(key)?.seed().map_err(|e| AgentError::Enroll(e.to_string()))
}

/// A process-wide boot id: in every connection's name, so the server can tell two processes using
/// one key (a cloned credential) from one process reconnecting.
pub fn boot_id() -> &'static str {
    static BOOT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| uuid::Uuid::new_v4().simple().to_string())
}

/// Where the key of the identity `name` lives (`None`: the process's own, `<state-dir>` itself).
fn key_dir(state_dir: &Path, name: Option<&str>) -> PathBuf {
    match name {
        None => state_dir.to_owned(),
        Some(n) => state_dir.join("ids").join(schemas::sanitize_token(&n.to_lowercase())),
    }
}

impl Credentials {
    /// The identity `name` (a host; `None`: this process itself) of `tenant`, connected to `url`
    /// (over TLS to a server whose certificate chains to `ca`, when given).
    pub async fn connect(
        &self,
        url: &str,
        ca: Option<&Path>,
        tenant: &TenantId,
        name: Option<&str>,
        host: &str,
    ) -> Result<(Identity, async_nats::Client), AgentError> {
        match self {
            Credentials::Open => {
                let agent = AgentId::new(schemas::sanitize_token(&name.unwrap_or(host).to_lowercase()))?;
                let id = Identity { tenant: tenant.clone(), agent, host: host.to_owned() };
                Ok((id, open(url, ca, None).await?))
            }
            Credentials::Enrolled { state_dir, enroll, patience } => {
                let dir = key_dir(state_dir, name);
                let record = enrolled_patiently(&dir, enroll, host, ca, *patience).await?;
                let text = |k: &str| record[k].as_str().map(str::to_owned);
                let (Some(agent), Some(enrolled_tenant)) = (text("agent_id"), text("tenant")) else {
                    return Err(AgentError::Enroll(format!("{} has no agent id or tenant", dir.display())));
                };
                let id = Identity {
                    tenant: TenantId::new(enrolled_tenant)?,
                    agent: AgentId::new(agent)?,
                    host: host.to_owned(),
                };
                let key = crate::enroll::agent_key(&dir)?;
                Ok((id.clone(), open(url, ca, Some((nkey_seed(&key)?, id.agent.as_str()))).await?))
            }
        }
    }
}

/// The enrolled identity in `dir` as a NATS credential for another shipper: agent id, tenant, the
/// subject its events go to, its nkey (public) and seed, and the inbox prefix it must use for
/// replies.
pub fn credential(dir: &Path, prefix: &str) -> Result<serde_json::Value, AgentError> {
    let record = enrolled(dir, None, "", None)?;
    let key = crate::enroll::agent_key(dir)?;
    let pair = nkey(&key)?;
    let (agent, tenant) =
        (record["agent_id"].as_str().unwrap_or(""), record["tenant"].as_str().unwrap_or(""));
    Ok(serde_json::json!({
        "agent_id": agent,
        "tenant": tenant,
        "subject": format!("{prefix}.{tenant}.{agent}.events"),
        "nkey": pair.public_key(),
        "seed": pair.seed().map_err(|e| AgentError::Enroll(e.to_string()))?,
        "inbox_prefix": format!("_INBOX_{agent}"),
    }))
}

/// As [`enrolled`], retrying for up to `patience` while the server cannot be reached.
async fn enrolled_patiently(
    dir: &Path,
    enroll: &Option<(String, String)>,
    host: &str,
    ca: Option<&Path>,
    patience: Duration,
) -> Result<serde_json::Value, AgentError> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut backoff = Duration::from_millis(200);
    loop {
        let (d, e, h, c) = (dir.to_owned(), enroll.clone(), host.to_owned(), ca.map(Path::to_owned));
        match tokio::task::spawn_blocking(move || enrolled(&d, e.as_ref(), &h, c.as_deref())).await {
            Ok(Err(AgentError::ServerUnreachable(why)))
                if tokio::time::Instant::now() + backoff < deadline =>
            {
                tracing::warn!(%why, "cannot reach the server to enroll; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Ok(answer) => return answer,
            Err(e) => return Err(AgentError::Enroll(e.to_string())),
        }
    }
}

/// The enrollment in `dir`, enrolling first when there is none and a token was given.
fn enrolled(
    dir: &Path,
    enroll: Option<&(String, String)>,
    host: &str,
    ca: Option<&Path>,
) -> Result<serde_json::Value, AgentError> {
    let path = dir.join("enrollment.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return serde_json::from_str(&text)
            .map_err(|e| AgentError::Enroll(format!("{}: {e}", path.display())));
    }
    let Some((server, token)) = enroll else {
        return Err(AgentError::Enroll(format!(
            "{} is not enrolled: run `cordon-agent enroll`, or give --server and --enroll-token",
            dir.display()
        )));
    };
    crate::enroll::enroll(server, token, dir, host, ca)
}

/// A connection: with `auth`, as the nkey (seed) of that agent, its inbox under its own prefix; with
/// `ca`, over TLS only.
async fn open(
    url: &str,
    ca: Option<&Path>,
    auth: Option<(String, &str)>,
) -> Result<async_nats::Client, AgentError> {
    let mut opts = match auth {
        Some((seed, agent)) => {
            async_nats::ConnectOptions::with_nkey(seed).custom_inbox_prefix(format!("_INBOX_{agent}"))
        }
        None => async_nats::ConnectOptions::new(),
    };
    if let Some(ca) = ca {
        opts = opts.add_root_certificates(ca.to_owned()).require_tls(true);
    }
    opts.name(format!("cordon-agent {}", boot_id()))
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .connect(schemas::subject::nats_urls(url))
        .await
        .map_err(|e| AgentError::Connect { url: url.to_owned(), message: e.to_string() })
}
