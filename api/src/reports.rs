//! Anomaly reports over the API, and the generation the server's schedules share: the period's
//! anomaly alerts (catalog), hourly counts and host groups (lake, DataFusion) and the previous report
//! of the same schedule go into [`anomaly::report::build`]; the result is stored and served as JSON,
//! HTML or CSV.

use crate::error::ApiError;
use crate::routes::{Params, Res, limit_param};
use crate::{AppState, Caller};
use anomaly::report::{Report, ReportInput};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use store::Store;

use anomaly::series::HOUR;
/// The longest period a report covers.
pub const MAX_PERIOD_DAYS: i64 = 400;

/// Makes and stores the report of `tenant`'s anomalies in `[from, to)`, named after its schedule
/// (`on-demand` for the API's runs).
pub async fn generate(
    store: &Store,
    tenant: &str,
    name: &str,
    from: i64,
    to: i64,
    now: i64,
) -> Result<Report, store::StoreError> {
    let filter = store::catalog::AlertFilter {
        rule_prefix: Some("cordon-anomaly-".to_owned()),
        from: Some(from),
        to: Some(to),
        limit: 100_000,
        ..Default::default()
    };
    let alerts = store.catalog().alerts(tenant, &filter).await?;
    let counts = store.login_counts(tenant, None, from, to).await?;
    let groups: HashMap<String, String> = store.host_groups(tenant, from, to).await?.into_iter().collect();
    let previous: Option<Report> = store
        .catalog()
        .previous_report(tenant, name, to)
        .await?
        .and_then(|r| serde_json::from_str(&r.body).ok());
    let id = format!("rep-{}-{:x}", schemas::time::format_micros(to).get(..10).unwrap_or("x"), now);
    let report = anomaly::report::build(&ReportInput {
        id: id.clone(),
        tenant: tenant.to_owned(),
        name: name.to_owned(),
        from,
        to,
        now,
        alerts: &alerts,
        counts: &counts,
        groups: &groups,
        previous: previous.as_ref(),
    });
    store
        .catalog()
        .insert_report(&store::catalog::ReportRow {
            id,
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            period_from: from,
            period_to: to,
            anomalies: report.anomalies.len() as i64,
            created_at: now,
            body: serde_json::to_string(&report).unwrap_or_default(),
        })
        .await?;
    Ok(report)
}

/// A stored report, listed.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct ReportSummary {
    id: String,
    name: String,
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    from: i64,
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    to: i64,
    anomalies: i64,
    #[serde(with = "schemas::time::rfc3339")]
    #[schemars(with = "schemas::time::Rfc3339")]
    created: i64,
}

/// `GET /api/v1/reports`: newest first.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct ReportList {
    reports: Vec<ReportSummary>,
}

pub(crate) async fn reports(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Query(p): Params,
) -> Res {
    let list = s
        .store
        .catalog()
        .reports(&c.token.tenant, limit_param(&p, 50)?)
        .await
        .map_err(store::StoreError::from)?;
    let reports = list
        .into_iter()
        .map(|r| ReportSummary {
            id: r.id,
            name: r.name,
            from: r.period_from,
            to: r.period_to,
            anomalies: r.anomalies,
            created: r.created_at,
        })
        .collect();
    Ok(Json(ReportList { reports }).into_response())
}

pub(crate) async fn report_get(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Query(p): Params,
) -> Res {
    let Some(row) = s.store.catalog().report(&c.token.tenant, &id).await.map_err(store::StoreError::from)?
    else {
        return Err(ApiError::not_found(format!("no report {id}")));
    };
    let report: Report = serde_json::from_str(&row.body).map_err(|e| ApiError::internal(&e))?;
    render(&report, p.get("format").map(String::as_str))
}

fn render(report: &Report, format: Option<&str>) -> Res {
    match format.unwrap_or("json") {
        "json" => Ok(Json(json!({ "report": report })).into_response()),
        "html" => {
            Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], anomaly::report::to_html(report))
                .into_response())
        }
        "csv" => Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}.csv\"", report.id)),
            ],
            anomaly::report::to_csv(report),
        )
            .into_response()),
        other => {
            Err(ApiError::invalid("bad_parameter", format!("format={other:?} must be json, html or csv")))
        }
    }
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunRequest {
    from: Option<String>,
    to: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

/// Runs a report now for any past period (default: the last 24 hours, to the start of this hour).
pub(crate) async fn report_run(
    State(s): State<Arc<AppState>>,
    Extension(c): Extension<Caller>,
    body: Bytes,
) -> Res {
    let req: RunRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RunRequest { from: None, to: None, format: None }
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("bad_body", format!("body: {e}")))?
    };
    let time = |name: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .map(|t| {
                schemas::time::parse_rfc3339_micros(t).ok_or_else(|| {
                    ApiError::invalid("bad_body", format!("{name} {t:?} is not an RFC 3339 time"))
                })
            })
            .transpose()
    };
    let now = schemas::time::now_micros();
    let to = time("to", &req.to)?.unwrap_or(now.div_euclid(HOUR) * HOUR);
    let from = time("from", &req.from)?.unwrap_or(to - 24 * HOUR);
    if from >= to {
        return Err(ApiError::invalid("bad_body", "from must be before to"));
    }
    if to - from > MAX_PERIOD_DAYS * 24 * HOUR {
        return Err(ApiError::invalid("bad_body", format!("a report covers at most {MAX_PERIOD_DAYS} days")));
    }
    if to > now + HOUR {
        return Err(ApiError::invalid("bad_body", "to is in the future"));
    }
    let report = generate(&s.store, &c.token.tenant, "on-demand", from, to, now).await?;
    render(&report, req.format.as_deref())
}
