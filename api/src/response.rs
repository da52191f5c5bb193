//! Response rules over the API (issue 17, first part): the instruction set's JSON Schema, and a
//! rule checked field by field and planned against the platforms it would run on. Nothing here
//! reaches an agent; requests, approvals and dispatch build on it.

use crate::error::ApiError;
use crate::routes::Res;
use axum::Json;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use schemas::response::{FieldError, Platform, parse};
use serde_json::{Value, json};

/// `GET /api/v1/response/schema`.
pub(crate) async fn schema() -> Json<Value> {
    Json(schemas::response::json_schema())
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValidateBody {
    #[schemars(schema_with = "crate::openapi::response_rule")]
    rule: Value,
    #[serde(default)]
    platforms: Vec<Platform>,
}

/// `POST /api/v1/response/validate`: the rule in canonical form, whether it is destructive, and
/// per platform what would run and what is unsupported; or a 400 naming every malformed field.
pub(crate) async fn validate(body: Bytes) -> Res {
    let req: ValidateBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("bad_body", format!("body: {e}")))?;
    let rule = match parse(&req.rule) {
        Ok(r) => r,
        Err(errs) => return Ok(invalid_rule(&errs)),
    };
    let platforms = if req.platforms.is_empty() {
        vec![Platform::Linux, Platform::Windows, Platform::Macos]
    } else {
        req.platforms
    };
    let plan = platforms.iter().map(|p| (p.as_str().to_owned(), rule.plan(*p))).collect();
    Ok(Json(crate::response_view::Validated {
        rule: rule.to_json(),
        destructive: rule.is_destructive(),
        plan,
    })
    .into_response())
}

/// A 400 `invalid_rule` listing every malformed field by its JSON pointer in the request body.
pub(crate) fn invalid_rule(errs: &[FieldError]) -> axum::response::Response {
    let fields: Vec<Value> =
        errs.iter().map(|e| json!({"field": format!("/rule{}", e.field), "message": e.message})).collect();
    let said: Vec<String> = errs.iter().map(|e| format!("/rule{}: {}", e.field, e.message)).collect();
    let message = format!("{} malformed field(s): {}", errs.len(), said.join("; "));
    let body = json!({"error": {"code": "invalid_rule", "message": message, "fields": fields}});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}
