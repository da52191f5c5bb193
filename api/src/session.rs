//! Browser sessions for the console.
//!
//! An analyst signs in once with a token; the server answers with a random session id in an
//! `HttpOnly`, `SameSite=Strict` cookie (no script can read it, no other site's request carries it)
//! and a CSRF token the console keeps in memory only. A request authenticated by the cookie that
//! changes anything must echo the CSRF token in `X-CSRF-Token`. The session holds the token's secret
//! server-side, so a revoked token ends its sessions within the token cache's 30 s, exactly as for
//! bearer requests. Sessions live in the server's memory (ids stored as SHA-256 hashes) and end at
//! sign-out, after [`TTL`], or when the server restarts.

use crate::error::ApiError;
use crate::{AppState, Caller};
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "cordon_session";
/// The header a cookie-authenticated change must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts (one long shift).
pub const TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions one server keeps at most (the oldest go first).
const MAX_SESSIONS: usize = 10_000;

/// One signed-in browser.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    /// The token's secret, kept here so every request re-checks it (revocation applies).
    pub secret: String,
    /// What the console echoes in [`CSRF_HEADER`].
    pub csrf: String,
    /// When it ends.
    pub expires: Instant,
    /// The same, in Unix seconds (for the console).
    pub expires_unix: i64,
}

/// The server's sessions, by the SHA-256 of their id.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

fn random_hex() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// Starts a session for a verified token's secret: (id, its session).
    pub(crate) fn create(&self, secret: String) -> (String, Session) {
        let id = random_hex();
        let session = Session {
            secret,
            csrf: random_hex(),
            expires: Instant::now() + TTL,
            expires_unix: schemas::time::now_micros() / 1_000_000 + TTL.as_secs() as i64,
        };
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(key(&id), session.clone());
        (id, session)
    }

    /// The live session of an id.
    pub(crate) fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let k = key(id);
        match map.get(&k) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Ends a session; false when there was none.
    pub(crate) fn remove(&self, id: &str) -> bool {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(&key(id)).is_some()
    }
}

/// The session id in a request's cookies.
pub(crate) fn cookie_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty())
}

/// Whether a cookie-authenticated request may go on: reads always, changes only with the session's
/// CSRF token.
pub(crate) fn csrf_ok(method: &axum::http::Method, headers: &HeaderMap, session: &Session) -> bool {
    if matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD) {
        return true;
    }
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    // Compared in constant time, byte for byte.
    sent.len() == session.csrf.len()
        && sent.bytes().zip(session.csrf.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

fn set_cookie(value: &str, max_age: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"))
        .expect("a cookie of hex digits is a valid header")
}

/// Who is calling; for a console session also its CSRF token and expiry (null for a bearer token).
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct Who {
    token_id: String,
    name: String,
    tenant: String,
    role: schemas::access::Role,
    /// The session's CSRF token, sent back as `X-CSRF-Token` on every change.
    csrf: Option<String>,
    #[serde(with = "schemas::time::rfc3339_opt")]
    #[schemars(with = "Option<schemas::time::Rfc3339>")]
    expires: Option<i64>,
}

fn who(caller: &Caller, session: Option<&Session>) -> Who {
    Who {
        token_id: caller.token.id.clone(),
        name: caller.token.name.clone(),
        tenant: caller.token.tenant.clone(),
        role: caller.token.role,
        csrf: session.map(|s| s.csrf.clone()),
        expires: session.map(|s| s.expires_unix * 1_000_000),
    }
}

/// `DELETE /api/v1/session`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct SignedOut {
    /// A session was ended (false: there was none).
    signed_out: bool,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignIn {
    token: String,
}

/// `POST /api/v1/session`: a token becomes a session cookie (bad tokens count against the address's
/// limit, as bearer requests do).
pub(crate) async fn sign_in(
    State(state): State<Arc<AppState>>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let ip = crate::access::peer(&req);
    let body = axum::body::to_bytes(req.into_body(), 4096)
        .await
        .map_err(|_| ApiError::too_large("the sign-in body is over 4096 bytes"))?;
    let req: SignIn = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid("bad_body", format!("body: {e}; expected {{\"token\": \"cdn_...\"}}"))
    })?;
    let token = crate::access::authenticate(&state, Some(req.token.clone()), ip).await?;
    let (id, session) = state.sessions.create(req.token);
    let caller = Caller { token };
    crate::access::audit_session(&state, "session.start", &caller.token).await;
    let mut resp = Json(who(&caller, Some(&session))).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, set_cookie(&id, TTL.as_secs()));
    Ok(resp)
}

/// `GET /api/v1/session`: who is calling and, for a console session, its CSRF token (for a console
/// that was reloaded).
pub(crate) async fn current(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let session = cookie_id(&headers).and_then(|id| state.sessions.get(id));
    Json(who(&caller, session.as_ref())).into_response()
}

/// `DELETE /api/v1/session`: signs out (the cookie is cleared and the session forgotten; the access
/// layer audits it as `session.end`).
pub(crate) async fn sign_out(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let ended = cookie_id(&headers).is_some_and(|id| state.sessions.remove(id));
    let mut resp = Json(SignedOut { signed_out: ended }).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, set_cookie("", 0));
    resp
}
