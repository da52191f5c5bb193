//! `cordon-agent enroll`: the agent makes its own key, proves it holds it, and is enrolled by the
//! server with a one-time (or limited-use) enrollment token. The key's seed stays on the endpoint
//! (`<state-dir>/agent.key`, mode 0600, never overwritten: enrolling again reuses it); the answer goes
//! to `<state-dir>/enrollment.json`: the agent id derived from the key, the tenant, the group and the
//! server's signing key (what `--server-key` verifies against).

use crate::AgentError;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

fn failed(message: impl std::fmt::Display) -> AgentError {
    AgentError::Enroll(message.to_string())
}

/// The agent's key in `dir`, made there if there is none.
pub fn agent_key(dir: &Path) -> Result<schemas::signed::AgentKey, AgentError> {
    let path = dir.join("agent.key");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let seed: [u8; 32] =
                bytes.try_into().map_err(|_| failed(format!("{} is not a 32-byte key", path.display())))?;
            schemas::signed::AgentKey::from_seed(seed).map_err(failed)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(failed)?;
            let key = schemas::signed::AgentKey::generate().map_err(failed)?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| failed(format!("{}: {e}", path.display())))?;
            f.write_all(&key.seed()).and_then(|()| f.sync_all()).map_err(failed)?;
            Ok(key)
        }
        Err(e) => Err(failed(format!("{}: {e}", path.display()))),
    }
}

/// A TLS configuration that trusts only the CA certificates in `pem`.
pub fn trusting(pem: &[u8]) -> ureq::tls::TlsConfig {
    let roots: Vec<_> = ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(roots)))
        .build()
}

/// An HTTP client that trusts the CA certificates in `ca` (PEM) for HTTPS, or the bundled web PKI
/// roots without one.
pub fn http_agent(ca: Option<&Path>) -> Result<ureq::Agent, AgentError> {
    let mut cfg = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).map_err(|e| failed(format!("{}: {e}", ca.display())))?;
        let roots = trusting(&pem);
        if matches!(roots.root_certs(), ureq::tls::RootCerts::Specific(r) if r.is_empty()) {
            return Err(failed(format!("{} holds no PEM certificate", ca.display())));
        }
        cfg = cfg.tls_config(roots);
    }
    Ok(cfg.build().into())
}

/// Whether a request failed because the server could not be reached (worth retrying: it may be
/// restarting), rather than because of what it answered or presented (a certificate from the wrong
/// CA is a configuration error, retried in vain).
fn unreachable(e: &ureq::Error) -> bool {
    use std::io::ErrorKind as K;
    match e {
        ureq::Error::Io(io) => matches!(
            io.kind(),
            K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::NotConnected
                | K::TimedOut
                | K::UnexpectedEof
                | K::BrokenPipe
        ),
        ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => true,
        _ => false,
    }
}

/// Enrolls with `server` (the API's base URL) using `token`; the server's answer, also written to
/// `<dir>/enrollment.json`.
pub fn enroll(
    server: &str,
    token: &str,
    dir: &Path,
    host: &str,
    ca: Option<&Path>,
) -> Result<serde_json::Value, AgentError> {
    let key = agent_key(dir)?;
    let body = serde_json::json!({
        "token": token, "public_key": key.public(), "proof": key.enroll_proof(token), "host": host,
    });
    let url = format!("{}/api/v1/enroll", server.trim_end_matches('/'));
    let resp = http_agent(ca)?.post(&url).send_json(&body).map_err(|e| match unreachable(&e) {
        true => AgentError::ServerUnreachable(format!("{url}: {e}")),
        false => failed(format!("{url}: {e}")),
    })?;
    let status = resp.status().as_u16();
    let answer: serde_json::Value =
        resp.into_body().read_json().map_err(|e| failed(format!("{url}: {e}")))?;
    if status != 200 {
        return Err(failed(format!(
            "refused ({status}): {}",
            answer["error"]["message"].as_str().unwrap_or("?")
        )));
    }
    let mut record = answer.clone();
    record["server"] = serde_json::json!(server);
    record["public_key"] = serde_json::json!(key.public());
    let path = dir.join("enrollment.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&record).map_err(failed)?).map_err(failed)?;
    Ok(record)
}
