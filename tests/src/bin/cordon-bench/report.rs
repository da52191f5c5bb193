//! The issue-5 report at fleet scale: a 1,000-host, 90-day simulated fleet (`fixtures::logins`, with
//! its labelled anomalies) is written straight into a fresh store (decoded and committed like ingest
//! does, without the transport); then, week by week, the baselines are refitted from the lake
//! (DataFusion counts -> `anomaly::live::fit_tenant`) and the week's events are counted through
//! `anomaly::live::Live` as ingest counts them, their findings recorded as alerts. Last, the 90-day
//! report is made (`api::reports::generate`), timed, and written out as JSON, HTML and CSV.

use anomaly::forecast::ForecastConfig;
use anomaly::live::{Live, fit_tenant};
use fixtures::logins::{LoginFleet, LoginSimConfig};
use schemas::decode::{Channel, Limits, decode_line};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

const HOUR: i64 = 3_600_000_000;

/// Runs it; writes the report into `out` when given.
pub(crate) fn report(hosts: usize, days: usize, out: Option<&Path>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(hosts, days, out))
}

async fn run(hosts: usize, days: usize, out: Option<&Path>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = store::Store::open(&store::StoreConfig::new(dir.path().to_path_buf())).await?;
    // Monday 2026-08-03 00:00 UTC.
    let base = schemas::time::parse_rfc3339_micros("2026-08-03T00:00:00Z").unwrap_or(0);
    let f = LoginFleet::generate(&LoginSimConfig {
        hosts,
        days,
        seed: 1,
        first_weekday: 0,
        anomalies_per_kind: 20,
    });
    let groups: HashMap<String, String> =
        f.hosts.iter().map(|h| (h.name.clone(), h.role.group().to_owned())).collect();
    // 1. The lake, a day at a time.
    let (clock, mut events) = (Instant::now(), 0usize);
    let limits = Limits::default();
    for day in 0..days {
        let mut records = Vec::new();
        let key = format!("day{day}");
        let ch = Channel {
            tenant: "default",
            agent: "sim",
            message_key: &key,
            stream_seq: day as u64 + 1,
            received: base,
        };
        for h in 0..f.hosts.len() {
            for t in day * 24..(day + 1) * 24 {
                for e in f.events_in_hour(h, t, base) {
                    let line = e.to_string();
                    records.push(
                        decode_line(line.as_bytes(), records.len(), &ch, &limits)
                            .map_err(|e| anyhow::anyhow!("{e}"))?,
                    );
                }
            }
        }
        events += records.len();
        store
            .commit(
                "bench",
                vec![store::MessageBatch {
                    key,
                    stream_seq: day as u64 + 1,
                    records,
                    rejected: 0,
                    published: None,
                }],
            )
            .await?;
    }
    println!(
        "  lake: {events} authentication events of {hosts} hosts x {days} days in {:.0} s",
        clock.elapsed().as_secs_f64()
    );
    // 2. Weekly refits from the lake, the week's events counted live, findings recorded as alerts.
    let live = Live::new();
    let cfg = ForecastConfig { horizon_hours: 168, ..ForecastConfig::default() };
    let (mut fit_s, mut alerts_n) = (0.0, 0usize);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for week in 2..days.div_ceil(7) {
        let start = week * 168;
        let to = base + start as i64 * HOUR;
        let counts = store.login_counts("default", None, to - 672 * HOUR, to).await?;
        let series = anomaly::series::LoginSeries::from_counts(&counts, to - 672 * HOUR, to);
        let c = Instant::now();
        let models = fit_tenant(&series, &groups, &cfg, threads, to);
        fit_s += c.elapsed().as_secs_f64();
        live.install("default", models);
        let mut found = Vec::new();
        for t in start..(start + 168).min(f.hours) {
            for h in 0..f.hosts.len() {
                for (k, e) in f.events_in_hour(h, t, base).iter().enumerate() {
                    let time = schemas::time::parse_rfc3339_micros(e["@timestamp"].as_str().unwrap_or(""))
                        .unwrap_or(0);
                    found.extend(live.observe(
                        "default",
                        &f.hosts[h].name,
                        Some(f.hosts[h].role.group()),
                        time,
                        e["event"]["outcome"].as_str().unwrap_or(""),
                        e["winlog"]["logon"]["type"].as_str().unwrap_or(""),
                        &format!("{h}-{t}-{k}"),
                    ));
                }
            }
            let hour_end = base + (t as i64 + 1) * HOUR;
            found.extend(live.closed_hours("default", hour_end));
            found.extend(live.silences("default", hour_end));
        }
        let alerts: Vec<schemas::alert::Alert> = found.iter().map(anomaly::alert::alert).collect();
        alerts_n += alerts.len();
        store.catalog().record_alerts(&alerts, HOUR, to).await?;
    }
    println!(
        "  baselines: weekly refits from the lake, {fit_s:.0} s of fitting; {alerts_n} anomaly raises recorded"
    );
    // 3. The report for the whole period.
    let (from, to) = (base, base + f.hours as i64 * HOUR);
    let c = Instant::now();
    let report = api::reports::generate(&store, "default", "quarterly", from, to, to).await?;
    let took = c.elapsed().as_secs_f64();
    let json = serde_json::to_string_pretty(&serde_json::json!({ "report": report }))?;
    let html = anomaly::report::to_html(&report);
    let csv = anomaly::report::to_csv(&report);
    println!(
        "  report: {} days x {} hosts -> {} anomalies ranked, {} host charts, {} hosts summarised in {:.2} s (JSON {} KiB, HTML {} KiB)",
        days,
        hosts,
        report.anomalies.len(),
        report.hosts.len(),
        report.fleet.hosts,
        took,
        json.len() / 1024,
        html.len() / 1024
    );
    let labelled: std::collections::BTreeSet<&str> =
        f.labels.iter().map(|l| f.hosts[l.host].name.as_str()).collect();
    let hit = report.anomalies.iter().filter(|a| labelled.contains(a.host.as_str())).count();
    println!(
        "  {hit} of the {} ranked anomalies are on hosts with an injected anomaly ({} such hosts)",
        report.anomalies.len(),
        labelled.len()
    );
    if let Some(dir) = out {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("anomaly-report.json"), &json)?;
        std::fs::write(dir.join("anomaly-report.html"), &html)?;
        std::fs::write(dir.join("anomaly-report.csv"), &csv)?;
        println!("  written to {}", dir.display());
    }
    store.flush().await?;
    Ok(())
}
