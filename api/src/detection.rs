//! Detection routes: the policy (get, replace, versions, preview), the ATT&CK coverage matrix, and
//! alerts (list, get with evidence, handle).

use crate::detection_view::{Coverage, HandlingSet, PolicySaved, Preview, RulesAnswer, Tally};
use crate::error::ApiError;
use crate::routes::{Params, Res, limit_param, time_param};
use crate::{AppState, Caller};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::response::IntoResponse;
use schemas::policy::Policy;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use store::query::SqlLimits;

/// The tenant's current policy: (version, author, reason, created, policy); version 0 is the shipped
/// default.
async fn current_policy(s: &AppState, tenant: &str) -> Result<(i64, String, String, i64, Policy), ApiError> {
    let hist = s.store.catalog().policy_history(tenant).await.map_err(store::StoreError::from)?;
    match hist.into_iter().next() {
        Some(p) => {
            let policy: Policy = serde_json::from_str(&p.body).map_err(|e| ApiError::internal(&e))?;
            Ok((p.version, p.author, p.reason, p.created_at, policy))
        }
        None => Ok((0, "cordon".into(), "the shipped default policy".into(), 0, Policy::cordon_default())),
    }
}

pub(crate) async fn policy_get(State(s): State<Arc<AppState>>, Extension(c): Extension<Caller>) -> Res {
    let (version, author, reason, created, policy) = current_policy(&s, &c.token.tenant).await?;
    let summary =
        ["Windows", "Linux", "macOS"].iter().map(|p| ((*p).to_owned(), policy.summary(p, None))).collect();
    let version =
        PolicyVersion { version, author, reason, created: (created > 0).then_some(created), policy };
    Ok(Json(PolicyNow { version, summary }).into_response())
}

/// One version of a tenant's policy: who changed it, when and why.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct PolicyVersion {
    version: i64,
    author: String,
    reason: String,
    /// When it was saved (null for the shipped default).
    #[serde(with = "schemas::time::rfc3339_opt")]
    #[schemars(with = "Option<schemas::time::Rfc3339>")]
    created: Option<i64>,
    policy: Policy,
}

/// `GET /api/v1/policy`: the current version, and per platform how many endpoint techniques each
/// tier covers.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct PolicyNow {
    #[serde(flatten)]
    version: PolicyVersion,
    summary: std::collections::BTreeMap<String, schemas::policy::TierCounts>,
}

/// `GET /api/v1/policy/versions`: newest first, and `shipped`, the default the first version changed.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct PolicyVersions {
    versions: Vec<PolicyVersion>,
    shipped: PolicyVersion,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyBody {
    policy: Policy,
    reason: String,
    base_version: i64,
}

pub(crate) async fn policy_put(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    body: Bytes,
) -> Res {
    let req: PolicyBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("bad_body", format!("body: {e}")))?;
    if req.reason.trim().is_empty() {
        return Err(ApiError::invalid("bad_body", "say why the policy changes: reason must not be empty"));
    }
    let policy = req.policy.validated().map_err(|e| ApiError::invalid("invalid_policy", e.to_string()))?;
    let text = serde_json::to_string(&policy).map_err(|e| ApiError::internal(&e))?;
    let version = s
        .store
        .catalog()
        .put_policy(
            &c.token.tenant,
            req.base_version,
            &text,
            &c.token.name,
            req.reason.trim(),
            schemas::time::now_micros(),
        )
        .await
        .map_err(store::StoreError::from)?;
    Ok(Json(PolicySaved { version, author: c.token.name.clone(), policy }).into_response())
}

pub(crate) async fn policy_versions(State(s): State<Arc<AppState>>, Extension(c): Extension<Caller>) -> Res {
    let hist = s.store.catalog().policy_history(&c.token.tenant).await.map_err(store::StoreError::from)?;
    let versions = hist
        .into_iter()
        .map(|p| {
            // Stored policies were validated when they were saved.
            let policy: Policy = serde_json::from_str(&p.body).map_err(|e| ApiError::internal(&e))?;
            Ok(PolicyVersion {
                version: p.version,
                author: p.author,
                reason: p.reason,
                created: Some(p.created_at),
                policy,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    // The shipped default, which the first version changed (so every version has something to be
    // compared with).
    let shipped = PolicyVersion {
        version: 0,
        author: "cordon".into(),
        reason: "the shipped default policy".into(),
        created: None,
        policy: Policy::cordon_default(),
    };
    Ok(Json(PolicyVersions { versions, shipped }).into_response())
}

pub(crate) async fn rules(State(s): State<Arc<AppState>>, Query(p): Params) -> Res {
    let with_refused = match p.get("refused").map(String::as_str) {
        None | Some("true") => true,
        Some("false") => false,
        Some(v) => {
            return Err(ApiError::invalid("bad_parameter", format!("refused={v:?} must be true or false")));
        }
    };
    Ok(Json(match s.detection.get() {
        Some(t) => RulesAnswer::of(&t, with_refused),
        None => RulesAnswer::disabled(),
    })
    .into_response())
}

pub(crate) async fn coverage(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Query(p): Params,
) -> Res {
    let now = schemas::time::now_micros();
    let from = time_param(&p, "from")?.unwrap_or(now - 7 * 86_400_000_000);
    let to = time_param(&p, "to")?;
    let platform = p.get("platform").map_or("Windows", String::as_str);
    if !["Windows", "Linux", "macOS"].contains(&platform) {
        return Err(ApiError::invalid(
            "bad_parameter",
            format!("platform={platform:?} must be Windows, Linux or macOS"),
        ));
    }
    let (_, _, _, _, policy) = current_policy(&s, &c.token.tenant).await?;
    // Events per technique in the range, from the lake.
    let upper = to.map(|to| format!(" AND time < to_timestamp_micros({to})")).unwrap_or_default();
    let q = format!(
        "SELECT t, count(*) FROM (SELECT unnest(threat_technique_id) AS t FROM events \
         WHERE time >= to_timestamp_micros({from}){upper}) GROUP BY t"
    );
    let out = s
        .store
        .sql(&c.token.tenant, &q, SqlLimits { max_rows: 100_000, timeout: Duration::from_secs(30) })
        .await?;
    let events: HashMap<String, u64> = out
        .rows
        .iter()
        .filter_map(|r| Some((r.first()?.as_str()?.to_owned(), r.get(1)?.as_u64()?)))
        .collect();
    Ok(Json(Coverage::new(platform, &policy, &s.rule_techniques(), &events)).into_response())
}

pub(crate) async fn alerts(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Query(p): Params,
) -> Res {
    let f = alert_filter(&p)?;
    let list = s.store.catalog().alerts(&c.token.tenant, &f).await.map_err(store::StoreError::from)?;
    Ok(Json(json!({ "alerts": list })).into_response())
}

/// The login anomalies: alerts of the baselines' rules.
pub(crate) async fn anomalies(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Query(p): Params,
) -> Res {
    let mut f = alert_filter(&p)?;
    f.rule_prefix = Some("cordon-anomaly-".to_owned());
    let list = s.store.catalog().alerts(&c.token.tenant, &f).await.map_err(store::StoreError::from)?;
    let anomalies = list
        .into_iter()
        .filter_map(|a| {
            // Every anomaly alert carries its finding; one that does not is not listed as one.
            let why = match serde_json::from_value::<anomaly::alert::Why>(a.why) {
                Ok(why) => why,
                Err(e) => {
                    tracing::warn!(alert = %a.id, error = %e, "an anomaly alert's why does not parse; left out of the list");
                    return None;
                }
            };
            Some(AnomalyView {
                id: a.id,
                host: a.endpoint.name,
                group: a.endpoint.group,
                level: a.level,
                rule: a.rule.id,
                first_seen: a.first_seen,
                last_seen: a.last_seen,
                why,
                evidence: a.evidence,
                handling: a.handling,
                techniques: a.techniques,
            })
        })
        .collect();
    Ok(Json(AnomalyList { anomalies }).into_response())
}

/// `GET /api/v1/anomalies`.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct AnomalyList {
    anomalies: Vec<AnomalyView>,
}

/// A login anomaly: its alert's identity and handling, and its finding with the series around it.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct AnomalyView {
    id: String,
    host: String,
    group: Option<String>,
    level: u8,
    rule: String,
    #[schemars(with = "schemas::time::Rfc3339")]
    first_seen: String,
    #[schemars(with = "schemas::time::Rfc3339")]
    last_seen: String,
    #[serde(flatten)]
    why: anomaly::alert::Why,
    evidence: Vec<String>,
    handling: schemas::alert::Handling,
    techniques: Vec<schemas::alert::TechniqueTag>,
}

fn alert_filter(p: &HashMap<String, String>) -> Result<store::catalog::AlertFilter, ApiError> {
    let level = match p.get("level") {
        None => None,
        Some(v) => Some(
            v.parse::<u8>()
                .ok()
                .filter(|l| (1..=5).contains(l))
                .ok_or_else(|| ApiError::invalid("bad_parameter", format!("level={v:?} must be 1 to 5")))?,
        ),
    };
    let one_of = |name: &'static str, allowed: &[&str]| -> Result<Option<String>, ApiError> {
        match p.get(name) {
            None => Ok(None),
            Some(v) if allowed.contains(&v.as_str()) => Ok(Some(v.clone())),
            Some(v) => {
                Err(ApiError::invalid("bad_parameter", format!("{name}={v:?} must be one of {allowed:?}")))
            }
        }
    };
    let f = store::catalog::AlertFilter {
        min_level: level,
        status: one_of("status", &["blocked", "alerted"])?,
        handling: one_of("handling", &["unhandled", "handled", "false_positive"])?,
        host: p.get("host").cloned(),
        technique: p.get("technique").map(|t| t.to_ascii_uppercase()),
        from: time_param(p, "from")?,
        to: time_param(p, "to")?,
        limit: limit_param(p, 100)?,
        rule_prefix: None,
    };
    Ok(f)
}

pub(crate) async fn alert_get(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Res {
    let Some((alert, comments)) =
        s.store.catalog().alert(&c.token.tenant, &id).await.map_err(store::StoreError::from)?
    else {
        return Err(ApiError::not_found(format!("no alert {id}")));
    };
    // The evidence events themselves, from the lake, in the one event shape (nested ECS).
    let events: Vec<Value> = crate::investigate::events_by_id(&s, &c.token.tenant, &alert.evidence, 200)
        .await?
        .iter()
        .map(schemas::Record::to_ecs_json)
        .collect();
    Ok(Json(json!({ "alert": alert, "events": events, "comments": comments })).into_response())
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertPatch {
    handling: schemas::alert::Handling,
    comment: String,
}

pub(crate) async fn alert_patch(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    let req: AlertPatch =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("bad_body", format!("body: {e}")))?;
    let found = s
        .store
        .catalog()
        .handle_alert(
            &c.token.tenant,
            &id,
            req.handling,
            req.comment.trim(),
            &c.token.name,
            schemas::time::now_micros(),
        )
        .await
        .map_err(store::StoreError::from)?;
    if !found {
        return Err(ApiError::not_found(format!("no alert {id}")));
    }
    // The lake's alerts table follows the catalog (derived: a failure is logged, not returned).
    if let Err(e) = s.store.export_alerts(&c.token.tenant).await {
        tracing::error!(error = %e, "could not export the alerts table to the lake");
    }
    Ok(Json(HandlingSet { id, handling: req.handling }).into_response())
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreviewBody {
    policy: Policy,
    #[serde(default = "seven")]
    days: u32,
}

fn seven() -> u32 {
    7
}

/// Counts detections under policy `k` (0 current, 1 proposed).
fn tally(
    by_technique: &mut Tally,
    by_host: &mut Tally,
    k: usize,
    host: &str,
    found: &[correlate::sigma::Detection],
) {
    for d in found {
        let slot = match d.tier {
            schemas::policy::Tier::Alert => 2 * k,
            schemas::policy::Tier::Block => 2 * k + 1,
            _ => continue,
        };
        for tech in &d.techniques {
            by_technique.entry(tech.clone()).or_default()[slot] += 1;
        }
        by_host.entry(host.to_owned()).or_default()[slot] += 1;
    }
}

pub(crate) async fn policy_preview(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    body: Bytes,
) -> Res {
    let req: PreviewBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("bad_body", format!("body: {e}")))?;
    if !(1..=90).contains(&req.days) {
        return Err(ApiError::invalid("bad_body", format!("days={} must be from 1 to 90", req.days)));
    }
    let proposed = req.policy.validated().map_err(|e| ApiError::invalid("invalid_policy", e.to_string()))?;
    let (_, _, _, _, current) = current_policy(&s, &c.token.tenant).await?;
    let now = schemas::time::now_micros();
    let from = now - i64::from(req.days) * 86_400_000_000;
    let Some(base) = s.detection.get() else {
        return Err(ApiError::invalid("no_rules", "this server runs no detection rules"));
    };
    let taggers = [Arc::new(base.with_policy(current)), Arc::new(base.with_policy(proposed))];
    let scanners = taggers.clone();
    // Single-event rules are decided during the scan; the events correlations need are kept and
    // replayed in time order afterwards.
    let (events, mut by_technique, mut by_host, mut pending) = s
        .store
        .scan(
            &c.token.tenant,
            from,
            i64::MAX,
            (0u64, Tally::new(), Tally::new(), Vec::new()),
            move |acc, rec| {
                acc.0 += 1;
                let mut feeds = None;
                for (k, t) in scanners.iter().enumerate() {
                    let (found, hits) = t.tag_and_hits(&mut rec.clone());
                    tally(&mut acc.1, &mut acc.2, k, rec.host(), &found);
                    if !hits.is_empty() {
                        feeds = Some(hits);
                    }
                }
                if let Some(hits) = feeds {
                    acc.3.push((rec, hits));
                }
            },
        )
        .await?;
    pending.sort_by_key(|p: &(schemas::Record, Vec<usize>)| p.0.time());
    for (k, t) in taggers.iter().enumerate() {
        let mut state = t.correlator();
        for (rec, hits) in &pending {
            let fired = t.correlate(&mut state, rec, hits);
            tally(&mut by_technique, &mut by_host, k, rec.host(), &fired);
        }
    }
    Ok(Json(Preview::new(req.days, events, &by_technique, &by_host)).into_response())
}
