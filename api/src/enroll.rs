//! Agent enrollment over the API: `POST /api/v1/enroll` (no bearer token: the enrollment token is the
//! credential) and the tenant's enrolled agents. An agent sends the token, its own public key and a
//! proof that it holds the private half (its signature over both), so nobody can enroll a key they do
//! not own; it gets back its agent id (derived from the key), its tenant and group, and the server's
//! signing key. Failed attempts count against the client address like bad API tokens do; every attempt
//! is written to the audit chain.

use crate::error::ApiError;
use crate::routes::Res;
use crate::{AppState, Caller};
use axum::Json;
use axum::extract::{ConnectInfo, Extension, Request, State};
use axum::response::IntoResponse;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use store::catalog::{AuditRecord, EnrollRefusal};

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrollRequest {
    token: String,
    public_key: String,
    proof: String,
    #[serde(default)]
    host: String,
}

/// `POST /api/v1/enroll`.
pub(crate) async fn enroll(State(s): State<Arc<AppState>>, req: Request) -> Res {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let body = axum::body::to_bytes(req.into_body(), 16 * 1024)
        .await
        .map_err(|_| ApiError::too_large("an enrollment request is at most 16 KiB"))?;
    let r: EnrollRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid("bad_body", format!("enrollment request: {e}")))?;
    if r.host.len() > 255 {
        return Err(ApiError::invalid("bad_body", "host is at most 255 bytes"));
    }
    if let Err(wait) = s.enroll_limiter.reserve(ip) {
        return Err(ApiError::throttled(format!(
            "too many failed enrollments from {ip}; retry in {} s",
            wait.as_secs().max(1)
        )));
    }
    let outcome = attempt(&s, &r).await;
    s.enroll_limiter.settle(ip, !matches!(outcome, Ok(Ok(_))));
    let now = schemas::time::now_micros();
    let (tenant, agent_id, result) = match &outcome {
        Ok(Ok(a)) => (a.tenant.clone(), a.agent_id.clone(), "enrolled".to_owned()),
        Ok(Err(e)) => (String::new(), String::new(), e.clone()),
        Err(e) => (String::new(), String::new(), e.message.clone()),
    };
    let rec = AuditRecord {
        tenant,
        actor: format!("enroll:{ip}"),
        action: "agent.enroll".into(),
        target: format!("agent:{agent_id}"),
        detail: json!({"public_key": r.public_key, "host": r.host, "outcome": result}),
    };
    if let Err(e) = s.store.catalog().audit(&rec, now).await {
        tracing::error!(error = %e, "could not write the enrollment to the audit chain");
    }
    match outcome? {
        Ok(a) => Ok(Json(Enrolled {
            approvers: crate::approver_sets::pinned_set(&s, &a.tenant).await?,
            agent_id: a.agent_id,
            tenant: a.tenant,
            group: a.group,
            server_key: s.server_key.get().cloned(),
        })
        .into_response()),
        Err(reason) => {
            s.metrics.add("cordon_enrollments_refused_total", "", "Enrollment attempts refused.", 1);
            tracing::warn!(%ip, %reason, "enrollment refused");
            Err(reason_error(&reason))
        }
    }
}

/// The enrollment, or why not (a refusal in words); an error for what is not a refusal.
async fn attempt(
    s: &AppState,
    r: &EnrollRequest,
) -> Result<Result<store::catalog::EnrolledAgent, String>, ApiError> {
    if schemas::signed::verify_enroll_proof(&r.token, &r.public_key, &r.proof).is_err() {
        return Ok(Err("bad_proof".into()));
    }
    let key = r.public_key.to_ascii_lowercase();
    let id = schemas::signed::agent_id(&key);
    let host = if r.host.is_empty() { id.clone() } else { r.host.clone() };
    let now = schemas::time::now_micros();
    let done =
        s.store.catalog().enroll(&r.token, &key, &id, &host, now).await.map_err(store::StoreError::from)?;
    Ok(done.map_err(|e| refusal_code(&e).to_owned()))
}

fn refusal_code(e: &EnrollRefusal) -> &'static str {
    match e {
        EnrollRefusal::Closed => "enrollment_closed",
        EnrollRefusal::UnknownToken => "unknown_token",
        EnrollRefusal::Expired => "token_expired",
        EnrollRefusal::UsedUp => "token_used_up",
        EnrollRefusal::KeyTaken => "key_taken",
    }
}

fn reason_error(code: &str) -> ApiError {
    match code {
        "bad_proof" => {
            ApiError::invalid("bad_proof", "the proof is not the key's signature over the token and the key")
        }
        "enrollment_closed" => ApiError::forbidden("enrollment is closed (cordon enrollment open)"),
        "key_taken" => {
            ApiError::conflict("this agent key is already enrolled or was revoked; make a new key")
        }
        "token_expired" => ApiError::unauthenticated("the enrollment token expired"),
        "token_used_up" => ApiError::unauthenticated("the enrollment token is used up"),
        _ => ApiError::unauthenticated("unknown or revoked enrollment token"),
    }
}

/// `POST /api/v1/enroll`: the agent's identity, the key the server signs its orders with, and the
/// approver set it pins.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct Enrolled {
    agent_id: String,
    tenant: String,
    group: Option<String>,
    server_key: Option<String>,
    approvers: crate::response_view::PinnedSet,
}

/// An enrolled agent.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct EnrolledView {
    agent_id: String,
    host: String,
    group: Option<String>,
    public_key: String,
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    enrolled_at: i64,
    #[serde(with = "schemas::time::rfc3339_opt")]
    #[schemars(with = "Option<schemas::time::Rfc3339>")]
    revoked_at: Option<i64>,
}

/// `GET /api/v1/agents/enrolled`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct EnrolledList {
    agents: Vec<EnrolledView>,
}

/// `GET /api/v1/agents/enrolled`: the tenant's enrolled agents.
pub(crate) async fn enrolled(State(s): State<Arc<AppState>>, Extension(c): Extension<Caller>) -> Res {
    let rows = s.store.catalog().enrolled_agents(&c.token.tenant).await.map_err(store::StoreError::from)?;
    let agents = rows
        .into_iter()
        .map(|a| EnrolledView {
            agent_id: a.agent_id,
            host: a.host,
            group: a.group,
            public_key: a.public_key,
            enrolled_at: a.enrolled_at,
            revoked_at: a.revoked_at,
        })
        .collect();
    Ok(Json(EnrolledList { agents }).into_response())
}
