//! The harness's HTTP calls to the API. Every successful answer is checked against the OpenAPI
//! document ([`api::openapi::check_call`]), so every end-to-end test also tests the document.

use serde_json::Value;
use std::path::Path;

fn call(
    req: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
    token: Option<&str>,
) -> anyhow::Result<(u16, Value)> {
    let req = match token {
        Some(t) => req.header("Authorization", &format!("Bearer {t}")),
        None => req,
    };
    let mut resp = req.config().http_status_as_error(false).build().call()?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string()?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

/// The CA certificate (PEM) HTTPS servers in these tests chain to ([`trust_ca`]).
fn test_ca() -> std::sync::MutexGuard<'static, Option<Vec<u8>>> {
    static CA: std::sync::OnceLock<std::sync::Mutex<Option<Vec<u8>>>> = std::sync::OnceLock::new();
    CA.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes the harness's HTTPS calls trust the CA certificate in `pem` (a test's own CA; plain HTTP
/// calls are unaffected).
pub fn trust_ca(pem: &Path) -> anyhow::Result<()> {
    *test_ca() = Some(std::fs::read(pem)?);
    Ok(())
}

/// The harness's HTTP client for `url`: for HTTPS, one that trusts only the test CA, if one was given.
fn http(url: &str) -> ureq::Agent {
    let ca = if url.starts_with("https://") { test_ca().clone() } else { None };
    let Some(pem) = ca else { return ureq::Agent::new_with_defaults() };
    ureq::Agent::config_builder().tls_config(sensor_agent::enroll::trusting(&pem)).build().into()
}

/// The OpenAPI document of the API under test (the build's own: the server serves the same).
static DOC: std::sync::LazyLock<Value> = std::sync::LazyLock::new(api::openapi::openapi);

/// Every successful answer an end-to-end test receives from the API is checked against the
/// OpenAPI document: a field the document does not describe, or of another type, fails the test.
fn checked(method: &str, url: &str, status: u16, body: Value) -> anyhow::Result<(u16, Value)> {
    let path = url.find("://").and_then(|i| url[i + 3..].find('/').map(|j| &url[i + 3 + j..])).unwrap_or(url);
    let api = path.starts_with("/api/v1/") || path.starts_with("/healthz") || path.starts_with("/readyz");
    if api && (200..300).contains(&status) {
        api::openapi::check_call(&DOC, method, path, &body)
            .map_err(|e| anyhow::anyhow!("the answer does not fit the OpenAPI document: {e}"))?;
    }
    Ok((status, body))
}

/// GET a URL; (status, JSON body or the text as a JSON string).
pub fn get(url: &str, token: Option<&str>) -> anyhow::Result<(u16, Value)> {
    let (status, body) = call(http(url).get(url), token)?;
    checked("GET", url, status, body)
}

/// Sends a JSON body with `req`'s method; (status, JSON body or the text as a JSON string).
fn send(
    req: ureq::RequestBuilder<ureq::typestate::WithBody>,
    token: Option<&str>,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let mut req = req.header("Content-Type", "application/json");
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.config().http_status_as_error(false).build().send(body.to_string())?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string()?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

/// POST JSON.
pub fn post(url: &str, token: Option<&str>, body: &Value) -> anyhow::Result<(u16, Value)> {
    let (status, answer) = send(http(url).post(url), token, body)?;
    checked("POST", url, status, answer)
}

/// PUT JSON.
pub fn put(url: &str, token: Option<&str>, body: &Value) -> anyhow::Result<(u16, Value)> {
    let (status, answer) = send(http(url).put(url), token, body)?;
    checked("PUT", url, status, answer)
}

/// PATCH JSON.
pub fn patch(url: &str, token: Option<&str>, body: &Value) -> anyhow::Result<(u16, Value)> {
    let (status, answer) = send(http(url).patch(url), token, body)?;
    checked("PATCH", url, status, answer)
}

/// DELETE.
pub fn delete(url: &str, token: Option<&str>) -> anyhow::Result<(u16, Value)> {
    let (status, text) = raw("DELETE", url, token, None)?;
    checked("DELETE", url, status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Any method with a raw body (sent as JSON); (status, body text). A connection the server closes
/// before answering is an error.
pub fn raw(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> anyhow::Result<(u16, String)> {
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header("Content-Type", "application/json");
    }
    let req = req.body(body.unwrap_or_default().to_vec())?;
    let agent = http(url);
    let req = agent.configure_request(req).http_status_as_error(false).build();
    let mut resp = agent.run(req)?;
    Ok((resp.status().as_u16(), resp.body_mut().read_to_string().unwrap_or_default()))
}
