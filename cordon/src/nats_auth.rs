//! Authentication on the bus (ADR 0007): the keys of a deployment, the nats-server configuration
//! that turns the auth callout on, and Cordon's own connection.
//!
//! Two keys, both nkey seeds in files of mode 0600:
//! - Cordon's user key: the server, ingest, the API and the callout connect with it; nats-server
//!   lists it in the account's users and in `auth_callout.auth_users`, so it is the one connection
//!   that never goes through the callout;
//! - the callout issuer (an account key): signs the answers and the agents' user JWTs; nats-server
//!   trusts only answers it signed (`auth_callout.issuer`).
//!
//! Every other connect is sent to Cordon, which admits enrolled agents only, with their own
//! subjects. There is no `no_auth_user`.

use anyhow::Context;
use clap::Args;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The account Cordon's streams and its agents live in.
pub const ACCOUNT: &str = "CORDON";
/// Cordon's user key in a NATS directory made by [`NatsKeys::in_dir`].
pub const USER_FILE: &str = "cordon-user.nk";
/// The callout issuer's key in such a directory.
pub const ISSUER_FILE: &str = "auth-issuer.nk";

/// How `cordon serve` authenticates to NATS and answers the auth callout.
#[derive(Debug, Clone, Args)]
pub struct NatsAuthArgs {
    /// Cordon's own NATS user key (an nkey seed file, `SU...`); without it Cordon connects without
    /// credentials (a nats-server with authentication off, for development only).
    #[arg(long, env = "CORDON_NATS_NKEY_FILE")]
    pub nats_nkey_file: Option<PathBuf>,
    /// The auth callout issuer's key (an account nkey seed file, `SA...`): Cordon answers
    /// nats-server's auth callout, admitting enrolled agents with their own subjects only.
    #[arg(long, env = "CORDON_NATS_AUTH_ISSUER_FILE")]
    pub nats_auth_issuer_file: Option<PathBuf>,
    /// The NATS account agents are placed in (the one Cordon's user and streams are in).
    #[arg(long, env = "CORDON_NATS_ACCOUNT", default_value = ACCOUNT)]
    pub nats_account: String,
    /// Seconds an agent's NATS credential lasts before it reconnects and is checked again: a
    /// revoked agent is disconnected, and a cloned key seen, within this (at most 60).
    #[arg(long, env = "CORDON_AGENT_SESSION_SECS", default_value_t = 45)]
    pub agent_session_secs: u64,
}

impl Default for NatsAuthArgs {
    fn default() -> Self {
        Self {
            nats_nkey_file: None,
            nats_auth_issuer_file: None,
            nats_account: ACCOUNT.to_owned(),
            agent_session_secs: 45,
        }
    }
}

/// A deployment's two keys.
#[derive(Debug, Clone)]
pub struct NatsKeys {
    /// Cordon's user key file.
    pub user_file: PathBuf,
    /// The callout issuer's key file.
    pub issuer_file: PathBuf,
    /// Cordon's user public key (`U...`).
    pub user: String,
    /// The issuer's public key (`A...`).
    pub issuer: String,
}

/// Reads an nkey seed file.
pub fn read_seed(path: &Path) -> anyhow::Result<nkeys::KeyPair> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    nkeys::KeyPair::from_seed(text.trim())
        .map_err(|e| anyhow::anyhow!("{} is not an nkey seed: {e}", path.display()))
}

fn seed_file(path: &Path, make: fn() -> nkeys::KeyPair) -> anyhow::Result<nkeys::KeyPair> {
    if path.exists() {
        return read_seed(path);
    }
    let key = make();
    let seed = key.seed().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut f, seed.as_bytes())?;
    f.sync_all()?;
    Ok(key)
}

impl NatsKeys {
    /// The keys in `dir`, made there when missing.
    pub fn in_dir(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (user_file, issuer_file) = (dir.join(USER_FILE), dir.join(ISSUER_FILE));
        let user = seed_file(&user_file, nkeys::KeyPair::new_user)?.public_key();
        let issuer = seed_file(&issuer_file, nkeys::KeyPair::new_account)?.public_key();
        Ok(Self { user_file, issuer_file, user, issuer })
    }

    /// The nats-server configuration that puts Cordon's user and JetStream in [`ACCOUNT`] and sends
    /// every other connect to Cordon's callout.
    pub fn server_config(&self) -> String {
        format!(
            "accounts {{\n  {ACCOUNT} {{\n    jetstream: enabled\n    users: [ {{ nkey: {user} }} ]\n  }}\n}}\n\
             authorization {{\n  timeout: 5\n  auth_callout {{\n    issuer: {issuer}\n    account: {ACCOUNT}\n    auth_users: [ {user} ]\n  }}\n}}\n",
            user = self.user,
            issuer = self.issuer
        )
    }

    /// The `cordon serve` flags that use these keys.
    pub fn serve_args(&self) -> Vec<String> {
        vec![
            "--nats-nkey-file".to_owned(),
            self.user_file.display().to_string(),
            "--nats-auth-issuer-file".to_owned(),
            self.issuer_file.display().to_string(),
        ]
    }
}

/// Cordon's connection to NATS, as its user when it has a key, over TLS when it has a CA.
pub async fn connect(
    url: &str,
    auth: &NatsAuthArgs,
    ca: Option<&Path>,
) -> anyhow::Result<async_nats::Client> {
    let mut opts = match &auth.nats_nkey_file {
        Some(path) => {
            let seed = read_seed(path)?.seed().map_err(|e| anyhow::anyhow!("{e}"))?;
            async_nats::ConnectOptions::with_nkey(seed)
        }
        None => async_nats::ConnectOptions::new(),
    };
    if let Some(ca) = ca {
        opts = opts.add_root_certificates(ca.to_owned()).require_tls(true);
    }
    opts.name("cordon-server")
        .retry_on_initial_connect()
        .connect(schemas::subject::nats_urls(url))
        .await
        .with_context(|| format!("connecting to NATS at {url}"))
}

/// Starts answering the auth callout when an issuer key is configured.
pub async fn serve_callout(
    client: &async_nats::Client,
    auth: &NatsAuthArgs,
    subjects: &schemas::subject::Subjects,
    max_payload: usize,
    store: Arc<store::Store>,
    metrics: Arc<schemas::metrics::Registry>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(path) = &auth.nats_auth_issuer_file else { return Ok(None) };
    anyhow::ensure!(
        (1..=60).contains(&auth.agent_session_secs),
        "--agent-session-secs must be 1 to 60 (revocation and clone detection act within it)"
    );
    let cfg = ingest::callout::CalloutConfig {
        issuer: Arc::new(read_seed(path)?),
        account: auth.nats_account.clone(),
        session: Duration::from_secs(auth.agent_session_secs),
        subjects: subjects.clone(),
        max_payload,
    };
    tracing::info!(issuer = %cfg.issuer.public_key(), account = %cfg.account, "answering the NATS auth callout");
    let callout = ingest::callout::Callout::new(cfg, store, metrics);
    Ok(Some(callout.serve(client.clone()).await.map_err(|e| anyhow::anyhow!(e))?))
}
