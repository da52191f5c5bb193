//! Agent identity on NATS: Cordon answers nats-server's auth callout (ADR 0007).
//!
//! nats-server sends every connect that is not one of its own `auth_users` to
//! `$SYS.REQ.USER.AUTH` as a JWT signed by the server. Cordon checks that the client signed the
//! server's nonce with the key in `connect_opts.nkey`, looks that key up among the enrolled agents,
//! and answers with a user JWT, signed by the callout issuer, whose permissions are computed from the
//! agent's tenant and id: publish only its own events, heartbeats and policy and rule requests,
//! subscribe only its own command subject and inbox prefix, nothing else (no `$JS.API`, no `$SYS`).
//! The JWT expires after the session length, so every connection re-authenticates that often: a
//! revoked agent is disconnected and refused within one session, and two boot ids taking turns on
//! one key (a cloned credential) are seen within one session and alerted.

use base64::Engine;
use schemas::metrics::Registry;
use schemas::subject::Subjects;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::Store;

/// The subject nats-server sends auth requests to.
pub const AUTH_SUBJECT: &str = "$SYS.REQ.USER.AUTH";
const HELP_AUTH: &str = "NATS connects Cordon's auth callout answered, by outcome.";
const HELP_CLONES: &str = "Agent credentials seen connecting from two boot ids in turn (a cloned key).";

/// How the callout answers.
#[derive(Clone)]
pub struct CalloutConfig {
    /// The issuer (an account key) nats-server's `auth_callout.issuer` names; signs every answer.
    pub issuer: Arc<nkeys::KeyPair>,
    /// The account agents are placed in (the one Cordon's streams live in).
    pub account: String,
    /// How long an agent's credential lasts before it must connect (and be checked) again.
    pub session: Duration,
    /// The subject namespace.
    pub subjects: Subjects,
    /// The largest message an agent may publish.
    pub max_payload: usize,
}

impl std::fmt::Debug for CalloutConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CalloutConfig")
            .field("issuer", &self.issuer.public_key())
            .field("account", &self.account)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// Why a connect was refused (the reason goes back to the client and into the metric).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The client presented no nkey.
    #[error("no agent key: connect with the enrolled key as an nkey")]
    NoKey,
    /// The nonce signature does not verify.
    #[error("the nonce signature does not verify with the presented key")]
    BadSignature,
    /// The key is not enrolled.
    #[error("this key is not enrolled")]
    Unknown,
    /// The agent was revoked.
    #[error("agent {0} is revoked")]
    Revoked(String),
    /// The catalog could not be asked.
    #[error("the agent registry is unavailable")]
    Registry,
}

impl Refusal {
    fn label(&self) -> &'static str {
        match self {
            Refusal::NoKey => "no_key",
            Refusal::BadSignature => "bad_signature",
            Refusal::Unknown => "unknown_key",
            Refusal::Revoked(_) => "revoked",
            Refusal::Registry => "registry_unavailable",
        }
    }
}

/// What nats-server asks about one connect (the fields Cordon uses).
#[derive(Debug)]
pub struct AuthRequest {
    /// The id of the server asking (the answer's audience).
    pub server_id: String,
    /// The user key the server made for this connection (the answer's subject).
    pub user_nkey: String,
    /// The client's nkey (its public key), if it presented one.
    pub nkey: Option<String>,
    /// Its signature over the nonce.
    pub sig: Option<String>,
    /// The nonce the server sent it.
    pub nonce: String,
    /// The connection name (agents put their boot id in it).
    pub name: String,
    /// The client's address.
    pub host: String,
}

/// Encodes `claims` as a NATS JWT (`ed25519-nkey`) signed by `key`, which becomes its issuer.
pub fn encode_jwt(key: &nkeys::KeyPair, mut claims: Value) -> String {
    use sha2::Digest;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    claims["iss"] = json!(key.public_key());
    claims["iat"] = json!(schemas::time::now_micros() / 1_000_000);
    let digest = sha2::Sha256::digest(claims.to_string().as_bytes());
    claims["jti"] = json!(digest.iter().take(16).map(|b| format!("{b:02X}")).collect::<String>());
    let head = b64(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let signed = format!("{head}.{}", b64(claims.to_string().as_bytes()));
    let sig = key.sign(signed.as_bytes()).expect("a seeded key signs");
    format!("{signed}.{}", b64(&sig))
}

/// Decodes a NATS JWT and checks its signature against its own issuer; its claims.
pub fn decode_jwt(token: &str) -> Result<Value, String> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    let [head, body, sig] = parts[..] else { return Err("not a JWT".to_owned()) };
    let un64 = |s: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).map_err(|e| format!("base64: {e}"))
    };
    let header: Value = serde_json::from_slice(&un64(head)?).map_err(|e| format!("header: {e}"))?;
    if header["alg"] != "ed25519-nkey" {
        return Err(format!("algorithm {} is not ed25519-nkey", header["alg"]));
    }
    let claims: Value = serde_json::from_slice(&un64(body)?).map_err(|e| format!("claims: {e}"))?;
    let issuer = claims["iss"].as_str().ok_or("no issuer")?;
    let key = nkeys::KeyPair::from_public_key(issuer).map_err(|e| format!("issuer: {e}"))?;
    key.verify(format!("{head}.{body}").as_bytes(), &un64(sig)?).map_err(|_| "bad signature".to_owned())?;
    if claims["exp"].as_i64().is_some_and(|exp| exp < schemas::time::now_micros() / 1_000_000) {
        return Err("expired".to_owned());
    }
    Ok(claims)
}

impl AuthRequest {
    /// Parses and checks a request JWT from nats-server.
    pub fn decode(token: &[u8]) -> Result<Self, String> {
        let claims = decode_jwt(std::str::from_utf8(token).map_err(|_| "not UTF-8")?)?;
        let n = &claims["nats"];
        if n["type"] != "authorization_request" {
            return Err(format!("type {} is not authorization_request", n["type"]));
        }
        let text = |v: &Value| v.as_str().map(str::to_owned);
        Ok(Self {
            server_id: text(&n["server_id"]["id"]).ok_or("no server id")?,
            user_nkey: text(&n["user_nkey"]).ok_or("no user nkey")?,
            nkey: text(&n["connect_opts"]["nkey"]).filter(|k| !k.is_empty()),
            sig: text(&n["connect_opts"]["sig"]).filter(|s| !s.is_empty()),
            nonce: text(&n["client_info"]["nonce"]).unwrap_or_default(),
            name: text(&n["connect_opts"]["name"]).unwrap_or_default(),
            host: text(&n["client_info"]["host"]).unwrap_or_default(),
        })
    }

    /// The client's public key (hex), if it proved it holds it by signing the nonce.
    fn proven_key(&self) -> Result<String, Refusal> {
        let nkey = self.nkey.as_deref().ok_or(Refusal::NoKey)?;
        let pair = nkeys::KeyPair::from_public_key(nkey).map_err(|_| Refusal::NoKey)?;
        let sig = self.sig.as_deref().ok_or(Refusal::BadSignature)?;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(sig))
            .map_err(|_| Refusal::BadSignature)?;
        pair.verify(self.nonce.as_bytes(), &raw).map_err(|_| Refusal::BadSignature)?;
        let (_, public) = nkeys::from_public_key(nkey).map_err(|_| Refusal::NoKey)?;
        Ok(public.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The agent's boot id, from a connection name `cordon-agent <boot>` (else the whole name).
    fn boot(&self) -> &str {
        self.name.strip_prefix("cordon-agent ").unwrap_or(&self.name)
    }
}

/// The permissions of one agent's connection.
pub fn agent_permissions(subjects: &Subjects, tenant: &str, agent: &str, max_payload: usize) -> Value {
    let own = |kind: &str| format!("{}.{tenant}.{agent}.{kind}", subjects.prefix());
    json!({
        "pub": {"allow": [own("events"), own("hb"), own("policy"), own("rules"), own("orders"), own("result")]},
        "sub": {"allow": [own("cmd"), format!("_INBOX_{agent}.>")]},
        "subs": 16,
        "data": -1,
        "payload": max_payload,
        "type": "user",
        "version": 2,
    })
}

/// Per agent: each boot id that authenticated lately, and when it last did.
#[derive(Debug, Default)]
struct Boots(HashMap<String, Vec<(String, Instant)>>);

impl Boots {
    /// Records `boot` authenticating for `agent`; the other boot id, if another one authenticated
    /// since this one last did (two live processes taking turns on one key, each re-authenticating
    /// every session). A restart is not a clone: the old boot id never authenticates again.
    fn seen(&mut self, agent: &str, boot: &str, now: Instant, horizon: Duration) -> Option<String> {
        let seen = self.0.entry(agent.to_owned()).or_default();
        seen.retain(|(_, at)| now.duration_since(*at) <= horizon);
        let mine = seen.iter().find(|(b, _)| b == boot).map(|(_, at)| *at);
        let other =
            mine.and_then(|last| seen.iter().find(|(b, at)| b != boot && *at > last)).map(|(b, _)| b.clone());
        seen.retain(|(b, _)| b != boot);
        seen.push((boot.to_owned(), now));
        other
    }
}

/// Cordon's side of the auth callout.
pub struct Callout {
    cfg: CalloutConfig,
    store: Arc<Store>,
    metrics: Arc<Registry>,
    boots: Mutex<Boots>,
    /// When each (agent, kind) security event was last written: a revoked agent retrying every
    /// second is one catalog row a minute (the metric counts every attempt).
    recorded: Mutex<HashMap<(String, &'static str), Instant>>,
}

impl Callout {
    /// A callout over `store`'s enrolled agents.
    pub fn new(cfg: CalloutConfig, store: Arc<Store>, metrics: Arc<Registry>) -> Arc<Self> {
        Arc::new(Self { cfg, store, metrics, boots: Mutex::default(), recorded: Mutex::default() })
    }

    /// Answers auth requests on `client` (a connection of an `auth_users` user) until it closes.
    pub async fn serve(
        self: Arc<Self>,
        client: async_nats::Client,
    ) -> Result<tokio::task::JoinHandle<()>, String> {
        use futures::StreamExt;
        let mut sub = client
            .queue_subscribe(AUTH_SUBJECT, "cordon-auth".to_owned())
            .await
            .map_err(|e| format!("subscribing to {AUTH_SUBJECT}: {e}"))?;
        Ok(tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let Some(reply) = msg.reply.clone() else { continue };
                if let Some(answer) = self.answer(&msg.payload).await
                    && let Err(e) = client.publish(reply, answer.into()).await
                {
                    tracing::warn!(error = %e, "could not answer an auth request");
                }
            }
        }))
    }

    /// The signed answer to one request JWT (None when it is not a request this server can answer).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn answer(&self, body: &[u8]) -> Option<String> {
        let req = match AuthRequest::decode(body) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "security: an auth request that does not check out");
                self.count("malformed");
                return None;
            }
        };
        let outcome = match self.decide(&req).await {
            Ok(user) => {
                self.count("accepted");
                json!({"jwt": user})
            }
            Err(refusal) => {
                if self.once_a_minute(&req.host, refusal.label()) {
                    tracing::warn!(host = %req.host, reason = %refusal, "security: NATS connect refused (logged once a minute per address and reason)");
                }
                self.count(refusal.label());
                json!({"error": refusal.to_string()})
            }
        };
        let mut nats = outcome;
        nats["type"] = json!("authorization_response");
        nats["version"] = json!(2);
        Some(encode_jwt(&self.cfg.issuer, json!({"sub": req.user_nkey, "aud": req.server_id, "nats": nats})))
    }

    fn count(&self, outcome: &str) {
        self.metrics.add("cordon_nats_auth_total", &format!("outcome=\"{outcome}\""), HELP_AUTH, 1);
    }

    async fn decide(&self, req: &AuthRequest) -> Result<String, Refusal> {
        let key = req.proven_key()?;
        let agent = match self.store.catalog().enrolled_agent(&key).await {
            Ok(Some(a)) => a,
            Ok(None) => return Err(Refusal::Unknown),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the enrolled agents");
                return Err(Refusal::Registry);
            }
        };
        let now = schemas::time::now_micros();
        if agent.revoked_at.is_some() {
            let detail = format!("revoked agent connected from {} ({})", req.host, req.name);
            self.security(&agent.tenant, &agent.agent_id, "revoked_connect", &detail, now).await;
            return Err(Refusal::Revoked(agent.agent_id));
        }
        if let Some(other) = self.clone_seen(&agent.agent_id, req.boot(), Instant::now()) {
            self.clone_alert(&agent.tenant, &agent.agent_id, req, &other, now).await;
        }
        let seconds = self.cfg.session.as_secs().max(1) as i64;
        let perms =
            agent_permissions(&self.cfg.subjects, &agent.tenant, &agent.agent_id, self.cfg.max_payload);
        Ok(encode_jwt(
            &self.cfg.issuer,
            json!({
                "sub": req.user_nkey, "aud": self.cfg.account, "name": agent.agent_id,
                "exp": now / 1_000_000 + seconds, "nats": perms,
            }),
        ))
    }

    fn clone_seen(&self, agent: &str, boot: &str, now: Instant) -> Option<String> {
        self.boots.lock().unwrap_or_else(|e| e.into_inner()).seen(agent, boot, now, self.cfg.session * 3)
    }

    async fn clone_alert(&self, tenant: &str, agent: &str, req: &AuthRequest, other: &str, now: i64) {
        let detail = format!(
            "agent {agent}'s key is in use by two processes: boot {} (from {}) and boot {other}",
            req.boot(),
            req.host
        );
        self.metrics.add("cordon_agent_credential_clones_total", "", HELP_CLONES, 1);
        self.security(tenant, agent, "credential_clone", &detail, now).await;
        let alert = clone_alert(tenant, agent, &detail, now);
        if let Err(e) = self.store.catalog().record_alerts(&[alert], 3_600_000_000, now).await {
            tracing::error!(error = %e, "could not record a cloned-credential alert");
        }
    }

    /// True at most once a minute for each (who, what).
    fn once_a_minute(&self, who: &str, what: &'static str) -> bool {
        let mut recorded = self.recorded.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match recorded.get(&(who.to_owned(), what)) {
            Some(last) if now.duration_since(*last) < Duration::from_secs(60) => false,
            _ => {
                recorded.insert((who.to_owned(), what), now);
                true
            }
        }
    }

    async fn security(&self, tenant: &str, agent: &str, kind: &'static str, detail: &str, now: i64) {
        self.metrics.add(
            "cordon_security_events_total",
            &format!("kind=\"{kind}\""),
            crate::HELP_SECURITY,
            1,
        );
        if !self.once_a_minute(agent, kind) {
            return;
        }
        tracing::warn!(tenant, agent, kind, detail, "security: agent credential");
        if let Err(e) = self.store.catalog().security_event(tenant, agent, kind, detail, now).await {
            tracing::error!(error = %e, "could not record a security event");
        }
    }
}

fn clone_alert(tenant: &str, agent: &str, detail: &str, now: i64) -> schemas::alert::Alert {
    use schemas::alert::{Alert, RuleRef};
    let rule = RuleRef {
        id: "cordon_agent_credential_clone".to_owned(),
        title: "One agent credential used by two processes".to_owned(),
        author: None,
    };
    Alert {
        level: 4,
        description: detail.to_owned(),
        source: "nats auth".to_owned(),
        why: json!({"explanation": detail}),
        ..Alert::about_agent(tenant, agent, "clone", rule, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwt_round_trips_and_a_changed_one_is_refused() {
        let key = nkeys::KeyPair::new_account();
        let token = encode_jwt(&key, json!({"sub": "x", "nats": {"type": "user"}}));
        let claims = decode_jwt(&token).unwrap();
        assert_eq!(claims["iss"], key.public_key());
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"y","iss":"A"}"#);
        assert!(decode_jwt(&parts.join(".")).is_err());
        let expired = encode_jwt(&key, json!({"sub": "x", "exp": 1}));
        assert_eq!(decode_jwt(&expired).unwrap_err(), "expired");
    }

    #[test]
    fn two_boot_ids_taking_turns_are_a_clone_and_a_restart_is_not() {
        let (mut b, t0, h) = (Boots::default(), Instant::now(), Duration::from_secs(135));
        let at = |s: u64| t0 + Duration::from_secs(s);
        // A restart: boot 1 re-authenticates, stops; boot 2 takes over and keeps re-authenticating.
        assert_eq!(b.seen("r", "1", at(0), h), None);
        assert_eq!(b.seen("r", "1", at(45), h), None);
        assert_eq!(b.seen("r", "2", at(50), h), None);
        assert_eq!(b.seen("r", "2", at(95), h), None);
        assert_eq!(b.seen("r", "2", at(140), h), None);
        // A clone: a and b both live; the first re-authentication after the other appeared says so.
        assert_eq!(b.seen("c", "a", at(0), h), None);
        assert_eq!(b.seen("c", "b", at(10), h), None);
        assert_eq!(b.seen("c", "a", at(45), h).as_deref(), Some("b"));
        assert_eq!(b.seen("c", "b", at(55), h).as_deref(), Some("a"));
    }

    #[test]
    fn permissions_name_only_the_agents_own_subjects() {
        let p = agent_permissions(&Subjects::default(), "acme", "a1", 1024);
        let all = format!("{} {}", p["pub"]["allow"], p["sub"]["allow"]);
        assert!(
            !all.contains('*')
                && !all.contains("$JS")
                && !all.contains("$SYS")
                && !all.contains("cmd\",\"cordon")
        );
        assert_eq!(p["sub"]["allow"], json!(["cordon.acme.a1.cmd", "_INBOX_a1.>"]));
        assert!(!p["pub"]["allow"].to_string().contains(".cmd"), "an agent cannot command itself or others");
    }
}
