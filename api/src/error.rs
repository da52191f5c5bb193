//! API errors: a kind that becomes the HTTP status in exactly one place, a stable code for scripts,
//! and a message a person can act on. Internal errors are logged and returned opaque.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use store::StoreError;
use store::index::IndexError;
use store::query::QueryError;

/// Error kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The request is wrong.
    Invalid,
    /// No or bad credentials.
    Unauthenticated,
    /// Credentials do not allow this.
    Forbidden,
    /// No such thing.
    NotFound,
    /// The change was made against a state that has moved on.
    Conflict,
    /// Over a budget (time, memory, size).
    TooExpensive,
    /// A dependency is down.
    Unavailable,
    /// Too many failed attempts from this client: wait (429).
    Throttled,
    /// The request body is over its limit (413).
    TooLarge,
    /// The request's URI (path and query) is over its limit (414).
    UriTooLong,
    /// Our fault.
    Internal,
}

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    /// Kind.
    pub kind: Kind,
    /// Stable code.
    pub code: &'static str,
    /// Message.
    pub message: String,
}

impl ApiError {
    /// A 400.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self { kind: Kind::Invalid, code, message: message.into() }
    }
    /// A 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self { kind: Kind::NotFound, code: "not_found", message: message.into() }
    }
    /// A 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self { kind: Kind::Conflict, code: "conflict", message: message.into() }
    }
    /// A 401.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self { kind: Kind::Unauthenticated, code: "unauthenticated", message: message.into() }
    }
    /// A 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self { kind: Kind::Forbidden, code: "forbidden", message: message.into() }
    }
    /// A 429: too many failed attempts from this client.
    pub fn throttled(message: impl Into<String>) -> Self {
        Self { kind: Kind::Throttled, code: "too_many_failures", message: message.into() }
    }
    /// A 413.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self { kind: Kind::TooLarge, code: "too_large", message: message.into() }
    }
    /// A 500 (the cause is logged, not returned).
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        let chain = schemas::error_chain(cause);
        tracing::error!(error = %chain, "internal error");
        Self {
            kind: Kind::Internal,
            code: "internal",
            message: "internal error; see the server log".to_owned(),
        }
    }

    fn status(&self) -> StatusCode {
        match self.kind {
            Kind::Invalid => StatusCode::BAD_REQUEST,
            Kind::Unauthenticated => StatusCode::UNAUTHORIZED,
            Kind::Forbidden => StatusCode::FORBIDDEN,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::Conflict => StatusCode::CONFLICT,
            Kind::TooExpensive => StatusCode::UNPROCESSABLE_ENTITY,
            Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Throttled => StatusCode::TOO_MANY_REQUESTS,
            Kind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::UriTooLong => StatusCode::URI_TOO_LONG,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        let mut resp = (self.status(), Json(body)).into_response();
        if self.kind == Kind::Unauthenticated {
            resp.headers_mut().insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Index(IndexError::BadQuery(m)) => Self::invalid("bad_query", m),
            StoreError::Query(QueryError::Invalid(m)) => Self::invalid("bad_sql", m),
            StoreError::Query(QueryError::Timeout(d)) => Self {
                kind: Kind::TooExpensive,
                code: "query_timeout",
                message: format!("the query ran longer than its {d:?} budget; narrow it (time range, LIMIT)"),
            },
            StoreError::Query(QueryError::ResourcesExhausted(m)) => Self {
                kind: Kind::TooExpensive,
                code: "query_memory",
                message: format!("the query needed more memory than its budget; narrow it: {m}"),
            },
            StoreError::Query(QueryError::Unavailable(m)) => {
                tracing::error!(error = %m, "SQL executors unavailable");
                Self { kind: Kind::Unavailable, code: "sql_executors_unavailable", message: m }
            }
            StoreError::Query(QueryError::Damaged(path)) => Self {
                kind: Kind::Unavailable,
                code: "lake_damaged",
                message: format!(
                    "lake file {path} failed its checksum while this query ran and was not served; retry"
                ),
            },
            StoreError::Catalog(store::catalog::CatalogError::Conflict(m)) => Self::conflict(m),
            StoreError::Catalog(c) => {
                tracing::error!(error = %c, "metadata database error");
                Self {
                    kind: Kind::Unavailable,
                    code: "metadata_unavailable",
                    message: "metadata database error; retry".to_owned(),
                }
            }
            other => Self::internal(&other),
        }
    }
}
