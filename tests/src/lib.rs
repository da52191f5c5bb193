//! # tests: Cordon's end-to-end harness
//!
//! Real dependencies only: a throwaway `nats-server -js` on a free port with its own store directory
//! ([`cordon::nats`]), the real server and agent code as separate processes (the `cordon-e2e` binary of
//! this crate), a temporary data directory, and HTTP over loopback. Expected counts come from what the
//! agents report as acked, never from the store under test.

use anyhow::{Context, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod bus;
mod http;
pub use http::{delete, get, patch, post, put, raw, trust_ca};
pub mod lossyfs;
pub mod procs;
use bus::{Enroller, enrollment, enrollments};
pub use bus::{
    NatsCluster, NatsServer, bus_auth, connect_agent, connect_agent_of, connect_operator, enroll_through,
    enroll_token, start_nats, start_nats_on, start_nats_with,
};

/// A `cordon serve` process.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The API base URL.
    pub api: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Options for starting a server.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// `CORDON_FAILPOINTS` for the process.
    pub failpoints: Option<String>,
    /// Metadata URL (default: SQLite in the data directory).
    pub metadata_url: Option<String>,
    /// More `cordon serve` flags.
    pub args: Vec<String>,
    /// The API address (default: a free loopback port).
    pub listen: Option<String>,
    /// Run the server under this `RLIMIT_DATA` (bytes), through `prlimit`: an allocation past it
    /// aborts the process, as the kernel's OOM killer would end it.
    pub data_limit: Option<u64>,
    /// Return once `/healthz` answers, without waiting for `/readyz` (a server whose ingest cannot
    /// reach JetStream yet).
    pub healthy_only: bool,
}

impl Server {
    /// Starts `cordon serve` on a free port and waits until `/readyz` answers 200 (ingest consumes;
    /// `/healthz` with [`ServerOptions::healthy_only`]).
    pub fn start(bin: &Path, data_dir: &Path, nats_url: &str, opts: &ServerOptions) -> anyhow::Result<Self> {
        let _ = std::fs::remove_file(data_dir.join("server.json"));
        let mut cmd = match opts.data_limit {
            Some(bytes) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--data={bytes}:{bytes}")).arg("--").arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let listen = opts.listen.clone().unwrap_or_else(|| "127.0.0.1:0".to_owned());
        cmd.args(["serve", "--listen", &listen, "--nats-url", nats_url, "--data-dir"])
            .arg(data_dir)
            .env("CORDON_LOG", "warn")
            .env_remove("CORDON_FAILPOINTS")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(fp) = &opts.failpoints {
            cmd.env("CORDON_FAILPOINTS", fp);
        }
        if let Some(url) = &opts.metadata_url {
            cmd.args(["--metadata-url", url]);
        }
        let keys = bus_auth(nats_url);
        if let Some(k) = &keys {
            cmd.args(k.serve_args());
        }
        cmd.args(&opts.args);
        let mut child = cmd.spawn().context("starting cordon serve")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(data_dir.join("server.json"))
                && let Ok(v) = serde_json::from_str::<Value>(&text)
                && v["pid"].as_u64() == Some(u64::from(child.id()))
                && let Some(api) = v["api"].as_str()
                && get(&format!("{api}/{}", if opts.healthy_only { "healthz" } else { "readyz" }), None)
                    .map(|r| r.0 == 200)
                    .unwrap_or(false)
            {
                if let Some(key) = v["signing_key"].as_str() {
                    server_keys().insert(nats_url.to_owned(), key.to_owned());
                }
                if keys.is_some() {
                    let e = Enroller {
                        api: api.to_owned(),
                        bin: bin.to_owned(),
                        data_dir: data_dir.to_owned(),
                        metadata_url: opts.metadata_url.clone(),
                        tokens: Default::default(),
                    };
                    enrollments().insert(nats_url.to_owned(), e);
                }
                return Ok(Self { child, data_dir: data_dir.to_owned(), api: api.to_owned() });
            }
            if let Some(status) = child.try_wait()? {
                bail!("cordon serve exited early with {status}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("cordon serve did not become ready within 60 s (GET /readyz)");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the process ended, if it has.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills the process (SIGKILL).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit (after a failpoint), up to `timeout`.
    pub fn wait_exit(mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("server did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs a `cordon-e2e` command to completion; returns (exit code, stdout).
pub fn run(bin: &Path, args: &[&str]) -> anyhow::Result<(i32, String)> {
    let out = Command::new(bin).args(args).env("CORDON_LOG", "warn").stderr(Stdio::inherit()).output()?;
    Ok((out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Creates an admin API token for the default tenant.
pub fn token(bin: &Path, data_dir: &Path, metadata_url: Option<&str>) -> anyhow::Result<String> {
    Ok(create_token(bin, data_dir, metadata_url, "e2e", "default", "admin")?.1)
}

/// Creates an API token of `tenant` with `role` through `cordon token create`; (id, secret).
pub fn token_as(
    bin: &Path,
    data_dir: &Path,
    metadata_url: Option<&str>,
    tenant: &str,
    role: &str,
) -> anyhow::Result<(String, String)> {
    create_token(bin, data_dir, metadata_url, &format!("e2e-{role}"), tenant, role)
}

fn create_token(
    bin: &Path,
    data_dir: &Path,
    metadata_url: Option<&str>,
    name: &str,
    tenant: &str,
    role: &str,
) -> anyhow::Result<(String, String)> {
    let dd = data_dir.display().to_string();
    let mut args =
        vec!["token", "create", "--name", name, "--tenant", tenant, "--role", role, "--data-dir", &dd];
    if let Some(u) = metadata_url {
        args.extend(["--metadata-url", u]);
    }
    let (code, out) = run(bin, &args)?;
    if code != 0 {
        bail!("token create failed ({code})");
    }
    let v: Value = serde_json::from_str(out.trim())?;
    let field = |k: &str| v[k].as_str().map(str::to_owned).with_context(|| format!("no {k} in {v}"));
    Ok((field("id")?, field("token")?))
}

/// The signing key of the server last started on each NATS URL: agents started on that URL are
/// given it (`CORDON_SERVER_KEY`), as an operator gives it to the fleet.
fn server_keys() -> std::sync::MutexGuard<'static, std::collections::HashMap<String, String>> {
    static KEYS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, String>>> =
        std::sync::OnceLock::new();
    KEYS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner())
}

/// The signing key of the server running on `nats_url`, if one was started.
pub fn server_key(nats_url: &str) -> Option<String> {
    server_keys().get(nats_url).cloned()
}

/// Starts an agent process (`cordon-e2e agent ...`) with a spool under `spool`, trusting the
/// server started on the same NATS URL; on an authenticated bus its identities enroll with that
/// server (keys under `<spool>/state`).
pub fn spawn_agent(bin: &Path, nats_url: &str, spool: &Path, args: &[&str]) -> anyhow::Result<Child> {
    let mut cmd = Command::new(bin);
    if let Some(key) = server_key(nats_url) {
        cmd.env("CORDON_SERVER_KEY", key);
    }
    let tenant = args.windows(2).find(|w| w[0] == "--tenant").map_or("default", |w| w[1]);
    if let Some((api, token)) = enrollment(nats_url, tenant)? {
        cmd.env("CORDON_AGENT_STATE", spool.join("state"))
            .env("CORDON_SERVER", api)
            .env("CORDON_ENROLL_TOKEN", token);
    }
    cmd.arg("agent")
        .args(["--nats-url", nats_url, "--spool-dir"])
        .arg(spool)
        .args(args)
        .env("CORDON_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the agent")
}

/// Waits for an agent and parses its summary line.
pub fn agent_summary(child: Child) -> anyhow::Result<(i32, Value)> {
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().context("agent printed no summary")?;
    Ok((
        out.status.code().unwrap_or(-1),
        serde_json::from_str(line).with_context(|| format!("summary {line:?}"))?,
    ))
}

/// Runs an agent to completion; returns its summary (fails unless everything was acked).
pub fn agent(bin: &Path, nats_url: &str, spool: &Path, args: &[&str]) -> anyhow::Result<Value> {
    let (code, summary) = agent_summary(spawn_agent(bin, nats_url, spool, args)?)?;
    if code != 0 {
        bail!("agent exited {code}: {summary}");
    }
    Ok(summary)
}

/// Every file under `dir` (recursively) that `keep` accepts, largest first.
pub fn files_under(dir: &Path, keep: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if keep(&p) {
                out.push(p);
            }
        }
    }
    out.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)));
    out
}

/// SQL through the API; the rows.
pub fn sql(api: &str, token: &str, q: &str) -> anyhow::Result<Vec<Vec<Value>>> {
    let (status, body) = post(&format!("{api}/api/v1/sql"), Some(token), &serde_json::json!({ "sql": q }))?;
    if status != 200 {
        bail!("sql {q:?} -> {status} {body}");
    }
    Ok(serde_json::from_value(body["rows"].clone())?)
}

/// Polls until `f` returns Some, or fails after `timeout` with the last state.
pub fn eventually<T>(
    timeout: Duration,
    mut f: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) | Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Ok(None) => bail!("condition not met within {timeout:?}"),
            Err(e) => return Err(e.context(format!("condition not met within {timeout:?}"))),
        }
    }
}

/// `name`'s value in the Prometheus text, summed over its label sets.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Stored events and distinct event ids, by SQL.
pub fn counts(api: &str, token: &str) -> anyhow::Result<(u64, u64)> {
    let rows = sql(api, token, "SELECT count(*), count(DISTINCT event_id) FROM events")?;
    Ok((rows[0][0].as_u64().unwrap_or(0), rows[0][1].as_u64().unwrap_or(0)))
}

/// What the Delta Lake reference reader (delta-rs through its Python package, `deltalake`) sees in
/// the table at `table`: `version`, `files`, `rows`, `distinct_ids`, `ingest_txn` (the `cordon-ingest`
/// application transaction version) and `operations` (newest first). Fails with the install command
/// when the package is missing.
pub fn delta_read(table: &Path) -> anyhow::Result<Value> {
    delta_read_uri(&table.display().to_string(), &serde_json::json!({}))
}

/// As [`delta_read`], for a table at a URI (`s3://...`) with delta-rs storage options.
pub fn delta_read_uri(uri: &str, storage_options: &Value) -> anyhow::Result<Value> {
    const SCRIPT: &str = r#"
import json, sys
try:
    from deltalake import DeltaTable, QueryBuilder
except ImportError:
    sys.exit("the deltalake Python package is missing: python3 -m pip install deltalake")
dt = DeltaTable(sys.argv[1], storage_options=json.loads(sys.argv[2]) or None)
res = QueryBuilder().register("t", dt).execute(
    "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM t").read_all()
rows = [{"n": res.column("n").to_pylist()[0], "d": res.column("d").to_pylist()[0]}]
print(json.dumps({
    "version": dt.version(),
    "files": len(dt.file_uris()),
    "rows": rows[0]["n"],
    "distinct_ids": rows[0]["d"],
    "ingest_txn": dt.transaction_version("cordon-ingest"),
    "operations": [h.get("operation") for h in dt.history()],
    "partition_columns": dt.metadata().partition_columns,
}))
"#;
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(uri)
        .arg(storage_options.to_string())
        .output()
        .context("running python3 (needed for the Delta reference reader)")?;
    if !out.status.success() {
        bail!("delta reader failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    serde_json::from_slice(&out.stdout).context("delta reader output")
}

/// Rows per tenant as Polars' `scan_delta` reads the local table at `table` (it refuses a table whose
/// hive folders are not its partition columns). Fails with the install command when Polars is missing.
pub fn polars_read(table: &Path) -> anyhow::Result<Value> {
    const SCRIPT: &str = r#"
import json, sys
try:
    import polars as pl
except ImportError:
    sys.exit("the polars Python package is missing: python3 -m pip install polars")
df = pl.scan_delta(sys.argv[1]).group_by("tenant").agg(pl.len().alias("n")).collect()
print(json.dumps({r["tenant"]: r["n"] for r in df.to_dicts()}))
"#;
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(table)
        .output()
        .context("running python3 (needed for the Polars reader)")?;
    if !out.status.success() {
        bail!("polars reader failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    serde_json::from_slice(&out.stdout).context("polars reader output")
}

/// A throwaway S3-compatible server (moto's `moto_server`) on a free loopback port, with one bucket;
/// killed on drop. Fails with the install command when `moto_server` is missing.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    /// Its endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket it was started with.
    pub bucket: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Server {
    /// Starts the server and creates `bucket`.
    pub fn start(bucket: &str) -> anyhow::Result<Self> {
        for _ in 0..5 {
            // moto takes a port, not 0: pick a free one and retry if someone else takes it first.
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let child = match Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                    "moto_server (an S3-compatible test server) was not found on PATH. Install it with:\n    \
                     python3 -m pip install 'moto[server]'"
                ),
                Err(e) => return Err(e).context("starting moto_server"),
            };
            let mut server =
                Self { child, endpoint: format!("http://127.0.0.1:{port}"), bucket: bucket.to_owned() };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if server.child.try_wait()?.is_some() {
                    break;
                }
                if ureq::put(&format!("{}/{bucket}", server.endpoint)).send_empty().is_ok() {
                    return Ok(server);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = server.child.kill();
        }
        bail!("moto_server did not start")
    }

    /// `cordon serve` flags that put the lake in this bucket under `prefix`.
    pub fn lake_args(&self, prefix: &str) -> Vec<String> {
        let mut args = vec!["--lake-url".to_owned(), format!("s3://{}/{prefix}", self.bucket)];
        for opt in [
            format!("endpoint={}", self.endpoint),
            "allow_http=true".to_owned(),
            "region=us-east-1".to_owned(),
            "access_key_id=test".to_owned(),
            "secret_access_key=test".to_owned(),
        ] {
            args.push("--lake-option".to_owned());
            args.push(opt);
        }
        args
    }

    /// delta-rs storage options for this server.
    pub fn delta_options(&self) -> Value {
        serde_json::json!({
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
        })
    }

    /// Keys under `prefix` in the bucket, read through the S3 API itself (ListObjectsV2).
    pub fn keys(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!("{}/{}?list-type=2&prefix={prefix}", self.endpoint, self.bucket);
            if let Some(t) = &token {
                url.push_str(&format!(
                    "&continuation-token={}",
                    t.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
                ));
            }
            let body = ureq::get(&url).call()?.body_mut().read_to_string()?;
            for part in body.split("<Key>").skip(1) {
                if let Some(k) = part.split("</Key>").next() {
                    keys.push(k.to_owned());
                }
            }
            token = body
                .split("<NextContinuationToken>")
                .nth(1)
                .and_then(|p| p.split("</NextContinuationToken>").next())
                .map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        Ok(keys)
    }
}

/// Percent-encodes a path segment or query value (everything but unreserved characters).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
