//! The API's trust boundary, as one middleware over every route:
//!
//! 1. the route's row in [`crate::ROUTES`] says what it needs; a route without a row is refused;
//! 2. the bearer token gives the caller's tenant and role ([`schemas::access::Role`]); a client address
//!    that sent [`FAILURE_LIMIT`] bad tokens within [`FAILURE_WINDOW`] gets 429 until the window passes
//!    (checked before the token is looked up, so the count is exact under a parallel burst);
//! 3. the role must grant the route's permission (403 otherwise, counted);
//! 4. an audited route's request (method, path, query, body) and its outcome go to the audit chain.

use crate::error::ApiError;
use crate::{Access, AppState, Caller, ROUTES, RouteSpec, session};
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use schemas::access::Permission;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::catalog::{AuditRecord, TokenInfo};

/// Bad tokens one client address may send within [`FAILURE_WINDOW`], unless configured otherwise.
pub const FAILURE_LIMIT: u32 = 20;
/// The window the failures are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Largest body an audited route accepts (the largest route limit, the IOC sweep's).
const AUDITED_BODY_LIMIT: usize = 4 * 1024 * 1024;
/// Body text kept in an audit row, at most.
const AUDIT_BODY_CAP: usize = 16 * 1024;

const HELP_AUTH_FAILURES: &str = "API requests with an unknown or revoked token.";
const HELP_THROTTLED: &str = "API requests refused because their address sent too many bad tokens.";
const HELP_DENIED: &str = "API requests whose token's role lacks the route's permission.";
const HELP_AUDIT_FAILED: &str = "Audit rows that could not be written (the server log has each).";

/// Failed token attempts per client address.
#[derive(Debug)]
pub struct FailureLimiter {
    windows: Mutex<HashMap<IpAddr, Window>>,
    limit: AtomicU32,
}

impl Default for FailureLimiter {
    fn default() -> Self {
        Self { windows: Mutex::default(), limit: AtomicU32::new(FAILURE_LIMIT) }
    }
}

#[derive(Debug)]
struct Window {
    start: Instant,
    failures: u32,
    in_flight: u32,
}

impl FailureLimiter {
    /// Sets how many bad tokens an address may send per window (at least 1).
    pub fn set_limit(&self, n: u32) {
        self.limit.store(n.max(1), Ordering::Relaxed);
    }

    /// How many bad tokens an address may send per window.
    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Takes one attempt for `ip`, or says how long it must wait. An attempt counts against the limit
    /// from the moment it is taken, so a burst cannot overrun the limit while lookups are pending.
    pub fn reserve(&self, ip: IpAddr) -> Result<(), Duration> {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if w.len() > 100_000 {
            w.retain(|_, v| now.duration_since(v.start) < FAILURE_WINDOW || v.in_flight > 0);
        }
        let win = w.entry(ip).or_insert(Window { start: now, failures: 0, in_flight: 0 });
        if now.duration_since(win.start) >= FAILURE_WINDOW && win.in_flight == 0 {
            *win = Window { start: now, failures: 0, in_flight: 0 };
        }
        if win.failures + win.in_flight >= self.limit() {
            return Err(FAILURE_WINDOW.saturating_sub(now.duration_since(win.start)));
        }
        win.in_flight += 1;
        Ok(())
    }

    /// Settles an attempt taken with [`Self::reserve`]; true when this failure reached the limit.
    pub fn settle(&self, ip: IpAddr, failed: bool) -> bool {
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let Some(win) = w.get_mut(&ip) else { return false };
        win.in_flight = win.in_flight.saturating_sub(1);
        if failed {
            win.failures += 1;
            return win.failures == self.limit();
        }
        false
    }
}

/// The middleware: see the module documentation.
pub(crate) async fn layer(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let path = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let Some(spec) = ROUTES.iter().find(|r| r.path == path && r.method == req.method()) else {
        return Err(ApiError::forbidden("no access rule for this route"));
    };
    let Access::Needs(permission) = spec.access else { return Ok(next.run(req).await) };
    let secret = match bearer(&req) {
        Some(secret) => Some(secret.to_owned()),
        None => console_session(&state, &req)?,
    };
    let token = authenticate(&state, secret, peer(&req)).await?;
    if !token.role.grants(permission) {
        return Err(deny(&state, spec, permission, token, req).await);
    }
    match spec.audit {
        Some(action) => audited(&state, action, token, req, next).await,
        None => {
            let mut req = req;
            req.extensions_mut().insert(Caller { token });
            Ok(next.run(req).await)
        }
    }
}

/// The token secret behind a console session cookie, when the request carries one (and, for a
/// change, the session's CSRF token): see [`crate::session`].
fn console_session(state: &AppState, req: &Request) -> Result<Option<String>, ApiError> {
    let Some(id) = session::cookie_id(req.headers()) else { return Ok(None) };
    let Some(found) = state.sessions.get(id) else {
        return Err(ApiError::unauthenticated("the console session has ended or expired: sign in again"));
    };
    if !session::csrf_ok(req.method(), req.headers(), &found) {
        return Err(ApiError::forbidden(
            "a change made from a console session must carry the session's X-CSRF-Token header",
        ));
    }
    Ok(Some(found.secret))
}

pub(crate) fn peer(req: &Request) -> IpAddr {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

fn bearer(req: &Request) -> Option<&str> {
    let header = req.headers().get("authorization").and_then(|v| v.to_str().ok())?;
    header.strip_prefix("Bearer ").map(str::trim).filter(|s| !s.is_empty())
}

/// The token of a bearer secret from `ip`, through the cache, else the limiter and the catalog.
pub(crate) async fn authenticate(
    state: &AppState,
    secret: Option<String>,
    ip: IpAddr,
) -> Result<TokenInfo, ApiError> {
    let Some(secret) = secret else {
        return Err(ApiError::unauthenticated(
            "missing bearer token: send 'Authorization: Bearer <token>', or sign in to the console",
        ));
    };
    let secret = secret.as_str();
    if let Some(t) = state.cached_token(secret) {
        return Ok(t);
    }
    if let Err(wait) = state.limiter.reserve(ip) {
        state.metrics.add("cordon_api_throttled_total", "", HELP_THROTTLED, 1);
        return Err(ApiError::throttled(format!(
            "{} unknown or revoked tokens from {ip} within {} s; retry in {} s",
            state.limiter.limit(),
            FAILURE_WINDOW.as_secs(),
            wait.as_secs().max(1)
        )));
    }
    let found = state.lookup_token(secret).await;
    let failed = matches!(found, Ok(None));
    if state.limiter.settle(ip, failed) {
        guessing(state, ip).await;
    }
    match found {
        Ok(Some(t)) => Ok(t),
        Ok(None) => {
            state.metrics.add("cordon_api_auth_failures_total", "", HELP_AUTH_FAILURES, 1);
            tracing::warn!(%ip, "API request with an unknown or revoked token");
            Err(ApiError::unauthenticated("unknown or revoked token"))
        }
        Err(e) => Err(e),
    }
}

/// An address reached the failure limit: a security event, and a line in the log.
async fn guessing(state: &AppState, ip: IpAddr) {
    let detail = format!(
        "{} unknown or revoked tokens from {ip} within {} s",
        state.limiter.limit(),
        FAILURE_WINDOW.as_secs()
    );
    tracing::warn!(%ip, "security: token guessing; the address is held off for the rest of the window");
    let now = schemas::time::now_micros();
    if let Err(e) = state.store.catalog().security_event("", "api", "token_guessing", &detail, now).await {
        tracing::error!(error = %e, "could not record the token-guessing security event");
    }
    state.metrics.add(
        "cordon_security_events_total",
        "kind=\"token_guessing\"",
        "Security events, by kind.",
        1,
    );
}

/// A role without the route's permission: 403, counted, and audited when the route is.
async fn deny(state: &AppState, spec: &RouteSpec, p: Permission, token: TokenInfo, req: Request) -> ApiError {
    state.metrics.add("cordon_api_denied_total", &format!("permission=\"{}\"", p.as_str()), HELP_DENIED, 1);
    tracing::warn!(token = %token.id, role = %token.role, route = %spec.path, "API request denied by role");
    let message = format!(
        "role {} may not {} {}: it needs the {} permission",
        token.role,
        spec.method,
        spec.path,
        p.as_str()
    );
    if let Some(action) = spec.audit {
        let (parts, _) = req.into_parts();
        write_audit(state, action, &token, &parts, None, 403).await;
    }
    ApiError::forbidden(message)
}

/// Runs an audited route: the body is read (to its limit) so the audit row holds what was asked.
async fn audited(
    state: &AppState,
    action: &'static str,
    token: TokenInfo,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, AUDITED_BODY_LIMIT)
        .await
        .map_err(|_| ApiError::too_large(format!("the request body is over {AUDITED_BODY_LIMIT} bytes")))?;
    parts.extensions.insert(Caller { token: token.clone() });
    let head = parts.clone();
    let resp = next.run(Request::from_parts(parts, Body::from(bytes.clone()))).await;
    write_audit(state, action, &token, &head, Some(&bytes), resp.status().as_u16()).await;
    Ok(resp)
}

async fn write_audit(
    state: &AppState,
    action: &str,
    token: &TokenInfo,
    head: &axum::http::request::Parts,
    body: Option<&[u8]>,
    status: u16,
) {
    let rec = AuditRecord {
        tenant: token.tenant.clone(),
        actor: format!("token:{}", token.id),
        action: action.to_owned(),
        target: head.uri.path().to_owned(),
        detail: serde_json::json!({
            "actor_name": token.name,
            "role": token.role.as_str(),
            "method": head.method.as_str(),
            "query": head.uri.query().unwrap_or(""),
            "body": body.map(body_detail),
            "status": status,
            "outcome": outcome(status),
        }),
    };
    if let Err(e) = state.store.catalog().audit(&rec, schemas::time::now_micros()).await {
        state.metrics.add("cordon_audit_failures_total", "", HELP_AUDIT_FAILED, 1);
        tracing::error!(error = %e, action, tenant = %rec.tenant, "could not write the audit row");
    }
}

/// A console sign-in or sign-out, in the audit chain.
pub(crate) async fn audit_session(state: &AppState, action: &str, token: &TokenInfo) {
    let rec = AuditRecord {
        tenant: token.tenant.clone(),
        actor: format!("token:{}", token.id),
        action: action.to_owned(),
        target: "/api/v1/session".to_owned(),
        detail: serde_json::json!({"actor_name": token.name, "role": token.role.as_str(), "outcome": "done"}),
    };
    if let Err(e) = state.store.catalog().audit(&rec, schemas::time::now_micros()).await {
        state.metrics.add("cordon_audit_failures_total", "", HELP_AUDIT_FAILED, 1);
        tracing::error!(error = %e, action, tenant = %rec.tenant, "could not write the audit row");
    }
}

fn outcome(status: u16) -> &'static str {
    match status {
        200..=299 => "done",
        403 => "denied",
        400..=499 => "refused",
        _ => "failed",
    }
}

/// The body as JSON when it is JSON and small enough, else its text cut at [`AUDIT_BODY_CAP`].
fn body_detail(b: &[u8]) -> serde_json::Value {
    if b.len() <= AUDIT_BODY_CAP
        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(b)
    {
        return v;
    }
    let cut = &b[..b.len().min(AUDIT_BODY_CAP)];
    serde_json::json!({ "text": String::from_utf8_lossy(cut), "bytes": b.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_is_exact_under_a_burst_and_counts_only_failures() {
        let l = FailureLimiter::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        // Every attempt of a burst is taken before any settles: only the limit's worth get through.
        let taken = (0..100).filter(|_| l.reserve(ip).is_ok()).count();
        assert_eq!(taken, FAILURE_LIMIT as usize);
        let reached: Vec<bool> = (0..taken).map(|_| l.settle(ip, true)).collect();
        assert_eq!(reached.iter().filter(|r| **r).count(), 1, "the limit is reached once");
        assert!(l.reserve(ip).is_err());
        // Another address is not held off, and successes do not count against it.
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..(3 * FAILURE_LIMIT) {
            l.reserve(other).unwrap();
            assert!(!l.settle(other, false));
        }
    }

    #[test]
    fn audit_bodies_keep_json_and_cut_the_rest() {
        assert_eq!(body_detail(br#"{"sql":"SELECT 1"}"#)["sql"], "SELECT 1");
        let big = vec![b'a'; AUDIT_BODY_CAP * 2];
        let v = body_detail(&big);
        assert_eq!(v["bytes"], AUDIT_BODY_CAP * 2);
        assert_eq!(v["text"].as_str().unwrap().len(), AUDIT_BODY_CAP);
    }
}
