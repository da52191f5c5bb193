//! `cordon sql-executor`: one executor of the distributed SQL engine (the `distsql` crate).

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

/// Where an executor listens, what lake it reads and the cluster's key.
#[derive(Debug, Clone, Args)]
pub struct ExecutorArgs {
    /// Address to listen on (`host:port`; port 0 picks a free one, printed on stdout).
    #[arg(long, env = "CORDON_EXECUTOR_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: String,
    /// The lake the servers write: a directory every executor sees at the same path, or
    /// `s3://bucket/prefix`.
    #[arg(long, env = "CORDON_LAKE_URL")]
    pub lake_url: String,
    /// Object-store options for an `s3://` lake, `key=value`, repeatable (as `cordon serve`).
    #[arg(long = "lake-option")]
    pub lake_options: Vec<String>,
    /// A file holding the cluster's key (16 to 256 visible ASCII characters), the same file
    /// `cordon serve --sql-executor-key-file` reads: a plan without it is refused.
    #[arg(long, env = "CORDON_SQL_EXECUTOR_KEY_FILE")]
    pub key_file: PathBuf,
    /// Memory for this executor's queries together, MiB (no spilling to disk).
    #[arg(long, env = "CORDON_EXECUTOR_MEMORY_MIB", default_value_t = 1024)]
    pub memory_mib: usize,
    /// This executor's certificate chain (PEM): with `--tls-key` and `--tls-ca` it serves TLS only,
    /// and the servers name it `https://`.
    #[arg(long, env = "CORDON_EXECUTOR_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "CORDON_EXECUTOR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The CA every executor's certificate chains to (PEM), for the connections it opens to the
    /// others.
    #[arg(long, env = "CORDON_EXECUTOR_TLS_CA", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
}

fn read(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The executor's TLS from its flags (clap has checked they come together).
fn tls(a: &ExecutorArgs) -> anyhow::Result<Option<distsql::ExecutorTls>> {
    let (Some(cert), Some(key), Some(ca)) = (&a.tls_cert, &a.tls_key, &a.tls_ca) else { return Ok(None) };
    Ok(Some(distsql::ExecutorTls { cert_pem: read(cert)?, key_pem: read(key)?, ca_pem: read(ca)? }))
}

/// Reads the cluster's key from its file.
pub fn read_key(path: &std::path::Path) -> anyhow::Result<distsql::ExecutorKey> {
    // The key is a secret: refuse a file others can read, as ssh does.
    use std::os::unix::fs::PermissionsExt;
    let mode =
        std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.permissions().mode();
    if mode & 0o077 != 0 {
        anyhow::bail!("{} is readable by others (mode {:o}); chmod 600 it", path.display(), mode & 0o777);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    distsql::ExecutorKey::new(&text).with_context(|| format!("the key in {}", path.display()))
}

/// Serves until ctrl-c or SIGTERM.
pub async fn run(a: ExecutorArgs) -> anyhow::Result<()> {
    let key = read_key(&a.key_file)?;
    let options: Vec<(String, String)> = a
        .lake_options
        .iter()
        .map(|o| o.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect::<Option<_>>()
        .context("--lake-option must be key=value")?;
    let objects = store::objects::Objects::open(&a.lake_url, &options, false)
        .with_context(|| format!("opening the lake at {}", a.lake_url))?;
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("listening on {}", a.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if a.tls_cert.is_some() { "https" } else { "http" };
    println!("sql-executor listening on {addr} ({scheme})");
    tracing::info!(%addr, lake = %a.lake_url, "sql executor started");
    let memory = a.memory_mib.max(16) * 1024 * 1024;
    let tls = tls(&a)?;
    let cfg = distsql::ExecutorConfig { objects, memory_bytes: memory, key, counts: Default::default(), tls };
    distsql::serve_executor(listener, cfg, stopped()).await?;
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn stopped() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; ctrl-c only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
