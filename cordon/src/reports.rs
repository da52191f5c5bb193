//! Scheduled anomaly reports: each `[[reports]]` schedule runs at its cron times for every tenant,
//! covering the `period_hours` before the run, is stored (`GET /api/v1/reports`) and, when the
//! schedule has a webhook, POSTed there as JSON (`{"report": ...}`), with three tries.

use crate::config::{ReportSchedule, ServerConfig};
use std::sync::Arc;
use std::time::Duration;
use store::Store;

use anomaly::series::HOUR;

/// Whether this process runs a schedule's turn: always, unless processes share the catalog; then
/// the one that takes the `reports` lease first (each wakes at the same cron time; the lease
/// outlasts the gap between them).
async fn runs_here(store: &Store, cfg: &ServerConfig, now: i64) -> bool {
    let Some(lease) = cfg.shared_catalog else { return true };
    let ttl = lease.as_micros() as i64;
    match store.catalog().hold_lease("reports", store.holder(), now, ttl).await {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(error = %e, "cannot take the reports lease; this turn is left to another process");
            false
        }
    }
}

/// Runs the schedules until `stop`.
pub async fn run_schedules(
    store: Arc<Store>,
    cfg: ServerConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    if cfg.reports.is_empty() {
        return Ok(());
    }
    let start = schemas::time::now_micros();
    let mut next: Vec<Option<i64>> = cfg.reports.iter().map(|r| r.schedule.next_after(start)).collect();
    loop {
        let now = schemas::time::now_micros();
        for (i, sched) in cfg.reports.iter().enumerate() {
            let Some(at) = next[i] else { continue };
            if now < at {
                continue;
            }
            next[i] = sched.schedule.next_after(now);
            if !runs_here(&store, &cfg, now).await {
                continue;
            }
            for tenant in store.tenants().await.unwrap_or_default() {
                run_one(&store, sched, &tenant, at, now, cfg.allow_private_webhooks).await;
            }
        }
        let wait =
            next.iter().flatten().map(|t| t - now).min().unwrap_or(60_000_000).clamp(1_000_000, 60_000_000);
        tokio::select! {
            _ = stop.wait_for(|v| *v) => return Ok(()),
            _ = tokio::time::sleep(Duration::from_micros(wait as u64)) => {}
        }
    }
}

/// One schedule's report for one tenant, for the period ending at `at`; written to the audit chain
/// with where it was delivered.
pub async fn run_one(
    store: &Store,
    sched: &ReportSchedule,
    tenant: &str,
    at: i64,
    now: i64,
    allow_internal: bool,
) {
    let from = at - i64::from(sched.period_hours) * HOUR;
    let report = match api::reports::generate(store, tenant, &sched.name, from, at, now).await {
        Ok(r) => r,
        Err(e) => return tracing::error!(tenant, name = %sched.name, error = %e, "report failed"),
    };
    tracing::info!(tenant, name = %sched.name, id = %report.id, anomalies = report.anomalies.len(), "report made");
    let mut delivery = serde_json::Value::Null;
    if let Some(url) = sched.webhook.clone() {
        let body = serde_json::json!({ "report": report }).to_string();
        let (id, url2) = (report.id.clone(), url.clone());
        let sent = tokio::task::spawn_blocking(move || deliver(&url2, &body, 3, allow_internal)).await;
        delivery = match sent {
            Ok(Ok(status)) => {
                tracing::info!(%id, %url, status, "report delivered");
                serde_json::json!({"webhook": url, "status": status})
            }
            Ok(Err(e)) => {
                tracing::error!(%id, %url, error = %e, "report delivery failed; it stays stored");
                serde_json::json!({"webhook": url, "error": e.to_string()})
            }
            Err(e) => {
                tracing::error!(%id, error = %e, "report delivery task failed");
                serde_json::json!({"webhook": url, "error": e.to_string()})
            }
        };
    }
    let rec = store::catalog::AuditRecord {
        tenant: tenant.to_owned(),
        actor: "scheduler".into(),
        action: "report.run".into(),
        target: format!("report:{}", report.id),
        detail: serde_json::json!({"schedule": sched.name, "from": from, "to": at,
            "anomalies": report.anomalies.len(), "delivery": delivery}),
    };
    if let Err(e) = store.catalog().audit(&rec, schemas::time::now_micros()).await {
        tracing::error!(error = %e, "could not write the report run to the audit chain");
    }
}

/// POSTs `body` (JSON) to `url`, up to `tries` times (1 s, 2 s apart) until a 2xx; the status.
/// Internal addresses are refused unless `allow_internal` ([`crate::outbound`]); redirects are not
/// followed.
pub fn deliver(url: &str, body: &str, tries: u32, allow_internal: bool) -> anyhow::Result<u16> {
    let mut last = anyhow::anyhow!("no attempt");
    let agent = crate::outbound::agent(allow_internal);
    for k in 0..tries.max(1) {
        if k > 0 {
            std::thread::sleep(Duration::from_secs(1 << (k - 1)));
        }
        let resp = agent.post(url).header("Content-Type", "application/json").send(body);
        match resp {
            Ok(r) if r.status().is_success() => return Ok(r.status().as_u16()),
            Ok(r) => last = anyhow::anyhow!("the webhook answered {}", r.status()),
            Err(e) => last = anyhow::anyhow!("{e}"),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A webhook that fails the first request and takes the second.
    #[test]
    fn a_report_is_posted_to_the_webhook_and_retried() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let mut bodies = Vec::new();
            for status in ["500 Internal Server Error", "204 No Content"] {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = s.read(&mut chunk).unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned)
                            })
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if rest.len() >= len {
                            bodies.push(rest.to_owned());
                            break;
                        }
                    }
                    if n == 0 {
                        break;
                    }
                }
                write!(s, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
            }
            bodies
        });
        let status = deliver(&url, r#"{"report":{"id":"rep-1"}}"#, 3, true).unwrap();
        assert_eq!(status, 204);
        let bodies = server.join().unwrap();
        assert_eq!(bodies.len(), 2);
        assert!(bodies.iter().all(|b| b == r#"{"report":{"id":"rep-1"}}"#), "{bodies:?}");
        // Nobody listening: an error after the tries, not a hang.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", dead.local_addr().unwrap());
        drop(dead);
        assert!(deliver(&url, "{}", 1, true).is_err());
    }
}
