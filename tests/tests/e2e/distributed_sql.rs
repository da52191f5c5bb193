//! Analyst SQL on the distributed engine (issue 21 item 7): two `cordon sql-executor` processes
//! run the plan fragments of `cordon serve --sql-executors`, and `/api/v1/sql` answers exactly what
//! the embedded engine answers over the same lake.

use super::bin;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tests::{ServerOptions, agent, eventually, post, sql};

/// Shapes the planner cuts differently: a global count, grouping by a column and by the partition
/// column, distinct counts, a join of an aggregate back onto the table, a sort with a limit, and
/// the alerts table.
const QUERIES: [&str; 7] = [
    "SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM events",
    "SELECT host_name, count(*) AS n FROM events GROUP BY host_name ORDER BY host_name",
    "SELECT date, event_kind, count(*) AS n FROM events GROUP BY date, event_kind ORDER BY date, event_kind",
    "SELECT host_name, count(DISTINCT user_name) AS users FROM events GROUP BY host_name ORDER BY host_name",
    "SELECT e.host_name, count(*) AS n FROM events e JOIN (SELECT host_name FROM events \
     WHERE event_kind = 'process' GROUP BY host_name HAVING count(*) > 10) p ON e.host_name = p.host_name \
     GROUP BY e.host_name ORDER BY e.host_name",
    "SELECT event_id, host_name FROM events ORDER BY time DESC, event_id LIMIT 9",
    "SELECT count(*) AS alerts FROM alerts",
];

/// A `cordon sql-executor` on a free port, its log in a file.
struct Executor {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Executor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Executor {
    fn start(lake: &Path, key: &Path, log: PathBuf) -> anyhow::Result<Self> {
        Self::start_with(lake, key, log, None)
    }

    /// With `tls`, (certificate, key, CA) files: it serves TLS only.
    fn start_with(lake: &Path, key: &Path, log: PathBuf, tls: Option<[&Path; 3]>) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin());
        cmd.args(["sql-executor", "--listen", "127.0.0.1:0", "--memory-mib", "256", "--lake-url"])
            .arg(lake)
            .arg("--key-file")
            .arg(key);
        if let Some([cert, cert_key, ca]) = tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(cert_key).arg("--tls-ca").arg(ca);
        }
        let stdout = Stdio::piped();
        let mut child =
            cmd.env("CORDON_LOG", "info").stdout(stdout).stderr(std::fs::File::create(&log)?).spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let listening = line.trim().strip_prefix("sql-executor listening on ");
        let Some((addr, scheme)) = listening.and_then(|l| l.split_once(' ')) else {
            anyhow::bail!("sql-executor printed {line:?}")
        };
        let scheme = scheme.trim_matches(|c| c == '(' || c == ')');
        Ok(Self { child, url: format!("{scheme}://{addr}"), log })
    }

    /// Plan fragments this executor ran, by its log.
    fn fragments(&self) -> usize {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter(|l| l.contains("running a plan fragment")).count()
    }

    fn refusals(&self) -> usize {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter(|l| l.contains("refused a plan without the executor key")).count()
    }
}

/// Mode 0600, as a key file must be.
fn private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

fn answers(api: &str, tok: &str) -> anyhow::Result<Vec<Vec<Vec<serde_json::Value>>>> {
    QUERIES.iter().map(|q| sql(api, tok, q)).collect()
}

#[test]
fn two_executors_answer_what_the_embedded_engine_answers() -> anyhow::Result<()> {
    let shared = tempfile::tempdir()?;
    let (lake, key) = (shared.path().join("lake"), shared.path().join("executor.key"));
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
    std::fs::write(&key, format!("e2e-key-{}-{nanos}\n", std::process::id()))?;
    private(&key)?;
    let executors = [
        Executor::start(&lake, &key, shared.path().join("a.log"))?,
        Executor::start(&lake, &key, shared.path().join("b.log"))?,
    ];
    let urls = format!("{},{}", executors[0].url, executors[1].url);
    let lake_arg = lake.display().to_string();
    let embedded = ServerOptions { args: vec!["--lake-url".into(), lake_arg], ..Default::default() };
    let mut distributed = embedded.clone();
    let key_arg = key.display().to_string();
    // Small tasks, so a lake of a few MiB is spread over both executors.
    distributed.args.extend(
        ["--sql-executors", &urls, "--sql-executor-key-file", &key_arg, "--sql-task-kib", "64"]
            .map(String::from),
    );
    let dir = tempfile::tempdir()?;
    let nats = tests::start_nats_with(&dir.path().join("nats"), &Default::default())?;
    let data = dir.path().join("data");
    let server = tests::Server::start(&bin(), &data, &nats.url, &distributed)?;
    let tok = tests::token(&bin(), &data, None)?;
    let spool = dir.path().join("spool");

    let fleet = ["simulate", "--hosts", "25", "--rate", "4000", "--duration", "5", "--seed", "17"];
    let sent = agent(&bin(), &nats.url, &spool, &fleet)?["events_acked"].as_u64().unwrap()
        + agent(&bin(), &nats.url, &spool, &["replay", "builtin:log4j-conti"])?["events_acked"]
            .as_u64()
            .unwrap();
    assert!(sent > 15_000, "{sent} sent");
    eventually(Duration::from_secs(60), || {
        Ok((tests::counts(&server.api, &tok)? == (sent, sent)).then_some(()))
    })?;
    let before = [executors[0].fragments(), executors[1].fragments()];
    let on_executors = answers(&server.api, &tok)?;
    let ran = [executors[0].fragments() - before[0], executors[1].fragments() - before[1]];
    println!("distributed-sql: {sent} events; plan fragments per executor: {ran:?}");
    assert!(ran.iter().all(|n| *n > 0), "both executors ran fragments: {ran:?}");
    // The figures the comparison rests on come from what was sent.
    assert_eq!(on_executors[0], vec![vec![serde_json::json!(sent), serde_json::json!(sent)]]);
    let by_host: u64 = on_executors[1].iter().map(|r| r[1].as_u64().unwrap()).sum();
    let by_day_kind: u64 = on_executors[2].iter().map(|r| r[2].as_u64().unwrap()).sum();
    assert_eq!((by_host, by_day_kind), (sent, sent));

    // The embedded engine over the same lake: the same server without executors.
    server.kill();
    let server = tests::Server::start(&bin(), &data, &nats.url, &embedded)?;
    let in_process = answers(&server.api, &tok)?;
    for ((q, d), e) in QUERIES.iter().zip(&on_executors).zip(&in_process) {
        assert_eq!(d, e, "{q}");
    }
    assert!(in_process.iter().all(|rows| !rows.is_empty()));
    Ok(())
}

/// Over TLS (the executors' flags and the server's CA): the right key and CA get answers; a
/// wrong key, a server that trusts another CA and a dead executor each get a 503 naming the cause,
/// within the time budget, and run nothing.
#[test]
fn over_tls_a_wrong_key_a_stranger_or_a_dead_executor_is_a_503_not_a_hang() -> anyhow::Result<()> {
    let shared = tempfile::tempdir()?;
    let (lake, key, wrong) =
        (shared.path().join("lake"), shared.path().join("executor.key"), shared.path().join("wrong.key"));
    std::fs::write(&key, "the-cluster-key-0123456789")?;
    std::fs::write(&wrong, "not-the-cluster-key-0123456789")?;
    private(&key)?;
    private(&wrong)?;
    let (ca, cert, cert_key) = super::tls::certificates(shared.path(), "executors")?;
    let (stranger_ca, _, _) = super::tls::certificates(shared.path(), "stranger")?;
    let tls = Some([cert.as_path(), cert_key.as_path(), ca.as_path()]);
    // Two executors: with one, the planner keeps the whole plan in the server.
    let executors = [
        Executor::start_with(&lake, &key, shared.path().join("a.log"), tls)?,
        Executor::start_with(&lake, &key, shared.path().join("b.log"), tls)?,
    ];
    let urls = format!("{},{}", executors[0].url, executors[1].url);
    assert!(urls.starts_with("https://"), "{urls}");
    let path = |p: &Path| p.display().to_string();
    let opts = |key: &Path, ca: &Path| ServerOptions {
        args: [
            "--lake-url",
            &path(&lake),
            "--sql-executors",
            &urls,
            "--sql-task-kib",
            "16",
            "--sql-executor-key-file",
            &path(key),
            "--sql-executor-ca",
            &path(ca),
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    };
    let dir = tempfile::tempdir()?;
    let nats = tests::start_nats_with(&dir.path().join("nats"), &Default::default())?;
    let data = dir.path().join("data");
    let mut server = tests::Server::start(&bin(), &data, &nats.url, &opts(&key, &ca))?;
    let tok = tests::token(&bin(), &data, None)?;
    let fleet = ["simulate", "--hosts", "10", "--rate", "3000", "--duration", "2", "--seed", "3"];
    let sent = agent(&bin(), &nats.url, &dir.path().join("spool"), &fleet)?["events_acked"].as_u64().unwrap();
    let sql = "SELECT host_name, count(*) FROM events GROUP BY host_name";
    let total = |api: &str| -> anyhow::Result<u64> {
        Ok(tests::sql(api, &tok, sql)?.iter().map(|r| r[1].as_u64().unwrap_or(0)).sum())
    };
    eventually(Duration::from_secs(60), || Ok((total(&server.api)? == sent).then_some(())))?;
    assert!(executors.iter().all(|e| e.fragments() > 0), "both executors ran fragments over TLS");

    let refused = |api: &str, cause: &str| -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let (status, body) =
            post(&format!("{api}/api/v1/sql"), Some(&tok), &serde_json::json!({ "sql": sql }))?;
        assert_eq!(status, 503, "{cause}: {body}");
        assert_eq!(body["error"]["code"], "sql_executors_unavailable", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(cause), "{cause}: {body}");
        assert!(started.elapsed() < Duration::from_secs(30), "{cause}: took {:?}", started.elapsed());
        Ok(())
    };
    // The same server with the wrong key, then trusting another CA: refused, and nothing ran.
    for (key, ca, cause) in
        [(&wrong, &ca, "refused this server's key"), (&key, &stranger_ca, "is unreachable")]
    {
        server.kill();
        server = tests::Server::start(&bin(), &data, &nats.url, &opts(key, ca))?;
        let ran = executors.iter().map(Executor::fragments).sum::<usize>();
        refused(&server.api, cause)?;
        assert_eq!(executors.iter().map(Executor::fragments).sum::<usize>(), ran, "{cause}: nothing ran");
    }
    assert!(executors.iter().map(Executor::refusals).sum::<usize>() > 0, "the executors logged the refusal");
    // The right key and CA again, then one executor dies: a 503 naming it, within the budget.
    server.kill();
    server = tests::Server::start(&bin(), &data, &nats.url, &opts(&key, &ca))?;
    assert_eq!(total(&server.api)?, sent);
    let [a, _b] = executors;
    drop(a);
    refused(&server.api, "is unreachable")?;
    // The server is still up: its index answers.
    let (status, hits) = tests::get(&format!("{}/api/v1/search?q=*&limit=1", server.api), Some(&tok))?;
    assert_eq!(status, 200, "{hits}");
    Ok(())
}
