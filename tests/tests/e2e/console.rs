//! Issue 18: the console in a real browser. `console/tests/console.test.mjs` drives Debian's Chromium
//! (playwright-core) against this server with the Log4j/Conti scenario ingested; while its alert
//! queue is open, this test plays the scenario again on other hosts, with a command line and an
//! image name that hold markup, and the queue must show the new alerts, as text, without a reload.

use super::{Env, bin};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tests::{ServerOptions, agent, eventually, get};

const MARKUP: &str = "<img src=x onerror=alert(1)>";

fn console_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../console")
}

/// The browser and the suite's driver, or how to get them.
fn browser() -> anyhow::Result<PathBuf> {
    let chromium = PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    anyhow::ensure!(
        chromium.exists(),
        "no Chromium at {}: apt-get install chromium (./dev test installs it), or set CHROMIUM",
        chromium.display()
    );
    anyhow::ensure!(
        console_dir().join("node_modules/playwright-core").exists(),
        "the browser suite's driver is not installed: (cd console && npm ci) (./dev test runs it)"
    );
    Ok(chromium)
}

fn alerts_on(api: &str, token: &str, host: &str) -> anyhow::Result<usize> {
    let (_, v) = get(&format!("{api}/api/v1/alerts?host={host}"), Some(token))?;
    Ok(v["alerts"].as_array().map_or(0, Vec::len))
}

fn wait_for_file(path: &Path, within: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + within;
    while !path.exists() {
        anyhow::ensure!(Instant::now() < end, "no {} within {within:?}", path.display());
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// The approvers' side: once the suite has made a request (its id in `request-created`), each
/// responder signs its command with `cordon approve` and hands the file back (`signed-alice`,
/// `signed-bob`), for the suite to paste into the console as that responder.
fn sign_when_asked(env: &Env, signals: &Path, keys: &Path) -> anyhow::Result<()> {
    wait_for_file(&signals.join("request-created"), Duration::from_secs(240))?;
    let id = std::fs::read_to_string(signals.join("request-created"))?.trim().to_owned();
    let (status, request) =
        get(&format!("{}/api/v1/response/requests/{id}", env.server.api), Some(&env.token))?;
    anyhow::ensure!(status == 200, "request {id}: {request}");
    for name in ["alice", "bob"] {
        let file = super::requests::signed_file(keys, &request, &format!("{name}.key"))?;
        std::fs::rename(file, signals.join(format!("signed-{name}")))?;
    }
    Ok(())
}

#[test]
fn console_in_a_browser() -> anyhow::Result<()> {
    let chromium = browser()?;
    // The operator's rules beside the pack: one loads, one is refused (the Detection screen lists it).
    let rules = tempfile::tempdir()?;
    std::fs::write(
        rules.path().join("team.yml"),
        "title: Cryptominer started\nid: 5b0e8f4e-1111-4c1e-9d2b-000000000002\nstatus: test\n\
         tags: [attack.impact, attack.t1496]\nlogsource: {category: process_creation, product: linux}\n\
         detection:\n  sel:\n    Image|endswith: '/xmrig'\n  condition: sel\nlevel: high\n",
    )?;
    std::fs::write(
        rules.path().join("broken.yml"),
        "title: Broken on purpose\nid: broken-1\nlogsource: {category: process_creation, product: linux}\n\
         detection:\n  sel:\n    Image|sorcery: x\n  condition: sel\n",
    )?;
    let opts = ServerOptions {
        args: vec!["--rules".into(), rules.path().display().to_string()],
        ..Default::default()
    };
    let env = Env::start(&opts)?;
    agent(&bin(), &env.nats.url, &env.spool(), &["replay", "builtin:log4j-conti"])?;
    eventually(Duration::from_secs(60), || {
        Ok((alerts_on(&env.server.api, &env.token, "WIN-DAKEQI")? > 0).then_some(()))
    })?;
    // Login history, baselines and a burst: an anomaly for the Anomalies screen to show.
    let (fleet, agents) = super::logins::ship_history(&env)?;
    let (status, refit) = tests::post(
        &format!("{}/api/v1/baselines/refit", env.server.api),
        Some(&env.token),
        &serde_json::json!({}),
    )?;
    anyhow::ensure!(status == 200, "refit: {refit}");
    let ws = fleet.hosts.iter().position(|h| h.role == fixtures::logins::Role::Workstation).unwrap();
    super::logins::ship_burst(&env, &agents[ws], &fleet.hosts[ws].name)?;
    eventually(Duration::from_secs(60), || {
        let (_, v) = get(&format!("{}/api/v1/anomalies", env.server.api), Some(&env.token))?;
        Ok(v["anomalies"].as_array().is_some_and(|a| !a.is_empty()).then_some(()))
    })?;

    let live = env.dir.path().join("live.ndjson");
    let scenario = fixtures::scenario::log4j_conti_elsewhere("LIVE")
        .replace("PromotionReview.docx.exe", &format!("{MARKUP}.exe"))
        .replace("-Xmx2g", MARKUP);
    std::fs::write(&live, scenario)?;
    // Two responders whose approver keys sign the request the suite makes, on "their own machines".
    let keys = env.dir.path().join("keys");
    std::fs::create_dir_all(&keys)?;
    let people = super::requests::register_approvers(&env, &keys)?;
    let signals = env.dir.path().join("signals");
    let shots = env.dir.path().join("screenshots");
    std::fs::create_dir_all(&signals)?;
    std::fs::create_dir_all(&shots)?;

    let mut suite = Command::new("node")
        .args(["--test", "--test-reporter=spec", "tests/"])
        .current_dir(console_dir())
        .env("CORDON_URL", &env.server.api)
        .env("CORDON_TOKEN", &env.token)
        .env("CORDON_ANOMALY_HOST", &fleet.hosts[ws].name)
        .env("CORDON_RESPONDER_1", &people.r1)
        .env("CORDON_RESPONDER_2", &people.r2)
        .env("CORDON_SIGNALS", &signals)
        .env("CORDON_SHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting node (Node.js 20+ must be on PATH): {e}"))?;
    let (signed, published) = std::thread::scope(|scope| {
        let signer = scope.spawn(|| sign_when_asked(&env, &signals, &keys));
        let published = wait_for_file(&signals.join("queue-open"), Duration::from_secs(240)).and_then(|()| {
            agent(&bin(), &env.nats.url, &env.spool(), &["replay", live.to_str().unwrap()])?;
            Ok(std::fs::write(signals.join("published"), "")?)
        });
        (signer.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the signer panicked"))), published)
    });
    let status = suite.wait()?;
    signed?;
    published?;
    if !status.success() {
        // What the server had, for the report: the newest alerts.
        let (_, newest) = get(&format!("{}/api/v1/alerts?limit=5", env.server.api), Some(&env.token))?;
        eprintln!("newest alerts after the suite: {newest:#}");
    }
    anyhow::ensure!(status.success(), "the browser suite failed ({status}); its report is above");

    // Screenshots of every screen the suite visited, kept for the README when asked for.
    let mut taken: Vec<String> = std::fs::read_dir(&shots)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    taken.sort();
    assert_eq!(
        taken,
        [
            "alert.png",
            "alerts-live.png",
            "alerts.png",
            "anomalies.png",
            "detection.png",
            "fleet.png",
            "host.png",
            "hunt.png",
            "incident.png",
            "report.png",
            "response.png",
            "signin.png"
        ]
    );
    if let Ok(dir) = std::env::var("CORDON_SCREENSHOTS_TO") {
        for name in &taken {
            std::fs::copy(shots.join(name), Path::new(&dir).join(name))?;
        }
    }
    Ok(())
}
