//! Limits every request meets before a handler parses anything.
//!
//! Parsers have their own, closer to the grammar: search syntax nests at most 32 deep and is at most
//! 16 KiB ([`store::index`]); SQL text is at most 64 KiB (the route's body limit) and DataFusion's
//! parser refuses deep recursion; JSON bodies nest at most 128 deep (serde_json's limit) and each
//! route caps its body size. This module caps the one input every route reads: the URI.

use crate::error::{ApiError, Kind};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Path and query together, bytes: under the 64 KiB an HTTP URI can hold at all, so the answer is
/// this one, naming the limit.
pub const MAX_URI_BYTES: usize = 60 * 1024;

/// Refuses a request whose URI is over [`MAX_URI_BYTES`] with 414, naming the limit.
pub async fn uri_layer(req: Request, next: Next) -> Response {
    let len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if len > MAX_URI_BYTES {
        return ApiError {
            kind: Kind::UriTooLong,
            code: "uri_too_long",
            message: format!("the path and query are {len} bytes; the limit is {MAX_URI_BYTES}"),
        }
        .into_response();
    }
    next.run(req).await
}

/// A query parameter's value, bytes, unless the route documents a longer one.
pub const MAX_PARAM_BYTES: usize = 1024;
/// Search syntax's own limit is 16 KiB; its parser answers for anything shorter than this.
const MAX_QUERY_SYNTAX_BYTES: usize = 32 * 1024;

/// Refuses query parameters the route does not document (a misspelt filter would otherwise be
/// ignored and widen the answer) and parameter or path values over their limit, with a 400 naming
/// the parameter and the limit.
pub async fn params_layer(req: Request, next: Next) -> Response {
    match check_params(&req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn check_params(req: &Request) -> Result<(), ApiError> {
    let Some(matched) = req.extensions().get::<axum::extract::MatchedPath>() else { return Ok(()) };
    let Some(spec) = crate::ROUTES.iter().find(|r| r.path == matched.as_str() && r.method == req.method())
    else {
        return Ok(());
    };
    if let Some(seg) = req.uri().path().split('/').find(|s| s.len() > MAX_PARAM_BYTES) {
        return Err(ApiError::invalid(
            "parameter_too_long",
            format!("a path segment is {} bytes; the limit is {MAX_PARAM_BYTES}", seg.len()),
        ));
    }
    let query = req.uri().query().unwrap_or_default();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let documented = spec.params.iter().any(|p| p.location == "query" && p.name == name);
        if !documented {
            let known: Vec<&str> =
                spec.params.iter().filter(|p| p.location == "query").map(|p| p.name).collect();
            return Err(ApiError::invalid(
                "unknown_parameter",
                format!("unknown query parameter {name:?}; this route takes: {}", known.join(", ")),
            ));
        }
        let limit = if name == "q" { MAX_QUERY_SYNTAX_BYTES } else { MAX_PARAM_BYTES };
        if value.len() > limit {
            return Err(ApiError::invalid(
                "parameter_too_long",
                format!("query parameter {name:?} is {} bytes; the limit is {limit}", value.len()),
            ));
        }
    }
    Ok(())
}
