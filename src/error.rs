//! The one error type of the HTTP edge. Every failure a client sees, ours or actix's,
//! is an RFC 9457 problem (`application/problem+json`) with a stable `code`. Internal
//! causes are logged with the request id and never returned.

use actix_web::{
    body::BoxBody,
    http::{header, StatusCode},
    HttpResponse, ResponseError,
};
use sea_orm::DbErr;
use serde::Serialize;

use crate::domain::FieldError;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed JSON, wrong content type, bad query string or path.
    #[error("{0}")]
    BadRequest(String, Vec<FieldError>),
    /// 401: missing, invalid or expired token where one is needed.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: valid token, not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 403: the user is banned.
    #[error("you are banned from posting")]
    Banned,
    /// 403: the article no longer takes comments.
    #[error("this article no longer takes comments")]
    CommentsClosed,
    /// 403: author edit after the edit window.
    #[error("the edit window for this comment has passed")]
    EditWindowExpired,
    /// 403: a vote on one's own comment.
    #[error("you cannot vote on your own comment")]
    OwnComment,
    /// 404: unknown resource, or one the caller may not see.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists but not with this method.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// 408: the request (head, or body after it) was not received within
    /// `request_timeout_ms`; the connection is closed.
    #[error("the request was not received in time ({0} ms); send it again, faster")]
    RequestTimeout(u64),
    /// 409: a moderator decision whose `expected_version` is stale.
    #[error("the comment has changed since version {expected}; it is now version {current}")]
    VersionConflict { expected: i32, current: i32 },
    /// 409: an `Idempotency-Key` reused with a different request.
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyConflict,
    /// 409: another moderator holds an unexpired claim on the comment (issue 21).
    #[error("{by} is working on this comment (claimed until {until})")]
    Claimed {
        by: String,
        until: chrono::DateTime<chrono::Utc>,
    },
    /// 413: request body over the limit.
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 431: the request line and headers together are larger than the server reads
    /// (a very long query string, e.g. too many `article_id`s); the connection is closed.
    #[error(
        "the request line and headers are larger than {0} bytes; send fewer or shorter parameters"
    )]
    HeadersTooLarge(usize),
    /// 422: well-formed input that breaks a rule.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 429: too many requests.
    #[error("too many requests; retry in {0} seconds")]
    RateLimited(u64),
    /// 503: the database cannot be reached, or did not answer in time; nothing was
    /// written.
    #[error("the database is unavailable; nothing was written, try again shortly")]
    Unavailable,
    /// 503 `unavailable`: a write's database work did not finish within `db_timeout_ms`
    /// (`deadline`). Unlike [`ApiError::Unavailable`] it may have been committed after
    /// all: retry it with the same `Idempotency-Key`.
    #[error("the database did not answer in time; the write may not have been applied, retry it (with the same Idempotency-Key where the operation takes one)")]
    WriteTimedOut,
    /// 503 `unavailable`: PostgreSQL gave up on the transaction (a deadlock, 40P01, or a
    /// serialization failure, 40001) and it was rolled back; the write paths retry it a
    /// few times (`service::write::retry`) before answering this. The cause is logged.
    #[error("the database is busy; nothing was written, try again shortly")]
    Contention(String),
    /// 500: a bug or an unexpected failure. The cause is logged, not returned.
    #[error("internal error")]
    Internal(String),
}

/// Every `code` an error can carry: API.md's table plus `method_not_allowed` and
/// `internal_error`. The OpenAPI spec lists exactly these (a test checks each variant).
pub const CODES: [&str; 19] = [
    "bad_request",
    "unauthorized",
    "forbidden",
    "banned",
    "comments_closed",
    "edit_window_expired",
    "own_comment",
    "not_found",
    "method_not_allowed",
    "request_timeout",
    "version_conflict",
    "idempotency_conflict",
    "claimed",
    "payload_too_large",
    "headers_too_large",
    "validation_failed",
    "rate_limited",
    "unavailable",
    "internal_error",
];

/// One entry of a problem's `errors` list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemField<'a> {
    /// The input at fault: a body field (`stars`, `items[2].action`), a query parameter,
    /// a path segment (`article_id`) or a header (`Idempotency-Key`).
    pub field: &'a str,
    pub message: &'a str,
}

/// RFC 9457 problem details, plus our stable `code` and per-field `errors`. Sent as
/// `application/problem+json` by every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"type": "about:blank", "title": "Validation failed", "status": 422,
    "code": "validation_failed", "detail": "body: must not be empty",
    "errors": [{"field": "body", "message": "must not be empty"}]}))]
pub struct Problem<'a> {
    /// Always `about:blank`: `code` says what happened.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    /// The HTTP status, repeated.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// Stable and machine-readable.
    #[schema(schema_with = code_schema)]
    pub code: &'static str,
    pub detail: String,
    /// Each failing input (400 and 422 only; absent when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField<'a>>,
}

fn code_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(CODES))
        .build()
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::BadRequest(detail.into(), vec![])
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(..) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Banned => "banned",
            ApiError::CommentsClosed => "comments_closed",
            ApiError::EditWindowExpired => "edit_window_expired",
            ApiError::OwnComment => "own_comment",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::HeadersTooLarge(_) => "headers_too_large",
            ApiError::VersionConflict { .. } => "version_conflict",
            ApiError::IdempotencyConflict => "idempotency_conflict",
            ApiError::Claimed { .. } => "claimed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Validation(_) => "validation_failed",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::Unavailable | ApiError::WriteTimedOut | ApiError::Contention(_) => {
                "unavailable"
            }
            ApiError::Internal(_) => "internal_error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::BadRequest(..) => "Bad request",
            ApiError::Unauthorized(_) => "Unauthorized",
            ApiError::Forbidden(_)
            | ApiError::Banned
            | ApiError::CommentsClosed
            | ApiError::EditWindowExpired
            | ApiError::OwnComment => "Forbidden",
            ApiError::NotFound(_) => "Not found",
            ApiError::MethodNotAllowed => "Method not allowed",
            ApiError::RequestTimeout(_) => "Request timeout",
            ApiError::HeadersTooLarge(_) => "Request header fields too large",
            ApiError::VersionConflict { .. }
            | ApiError::IdempotencyConflict
            | ApiError::Claimed { .. } => "Conflict",
            ApiError::PayloadTooLarge(_) => "Payload too large",
            ApiError::Validation(_) => "Validation failed",
            ApiError::RateLimited(_) => "Too many requests",
            ApiError::Unavailable | ApiError::WriteTimedOut | ApiError::Contention(_) => {
                "Service unavailable"
            }
            ApiError::Internal(_) => "Internal server error",
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::Validation(errors) | ApiError::BadRequest(_, errors)
                if !errors.is_empty() =>
            {
                errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            }
            other => other.to_string(),
        }
    }

    fn fields(&self) -> &[FieldError] {
        match self {
            ApiError::Validation(errors) | ApiError::BadRequest(_, errors) => errors,
            _ => &[],
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(..) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_)
            | ApiError::Banned
            | ApiError::CommentsClosed
            | ApiError::EditWindowExpired
            | ApiError::OwnComment => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::VersionConflict { .. }
            | ApiError::IdempotencyConflict
            | ApiError::Claimed { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable | ApiError::WriteTimedOut | ApiError::Contention(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(cause) => tracing::error!(cause = %cause, "internal error"),
            ApiError::Contention(cause) => {
                tracing::warn!(cause = %cause, "transaction given up after retries")
            }
            _ => {}
        }
        let status = self.status_code();
        let mut res = HttpResponse::build(status);
        res.insert_header((header::CONTENT_TYPE, PROBLEM_JSON));
        match self {
            ApiError::Unauthorized(_) => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::RateLimited(secs) => {
                res.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            ApiError::Unavailable | ApiError::WriteTimedOut | ApiError::Contention(_) => {
                res.insert_header((header::RETRY_AFTER, "5"));
            }
            // The client may still be sending what we stopped reading.
            ApiError::RequestTimeout(_) | ApiError::HeadersTooLarge(_) => {
                res.force_close();
            }
            _ => {}
        }
        res.body(self.to_problem_json())
    }
}

impl ApiError {
    /// The problem document as JSON text.
    pub fn to_problem_json(&self) -> String {
        let problem = Problem {
            kind: "about:blank",
            title: self.title(),
            status: self.status_code().as_u16(),
            code: self.code(),
            detail: self.detail(),
            errors: self
                .fields()
                .iter()
                .map(|e| ProblemField {
                    field: &e.field,
                    message: &e.message,
                })
                .collect(),
        };
        serde_json::to_string(&problem).unwrap_or_else(|_| String::from("{}"))
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::Validation(vec![e])
    }
}

/// Database errors are mapped on purpose: a lost or unreachable database is 503 (the
/// client may retry, nothing was written); a missing row is 404; anything else is a bug.
impl From<DbErr> for ApiError {
    fn from(e: DbErr) -> Self {
        match &e {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::Unavailable
            }
            DbErr::RecordNotFound(what) => ApiError::NotFound(format!("{what} not found")),
            _ if is_connection_lost(&e) => {
                tracing::warn!(error = %e, "database connection lost");
                ApiError::Unavailable
            }
            _ if is_transient(&e) => ApiError::Contention(e.to_string()),
            _ if is_timeout(&e) => {
                tracing::warn!(error = %e, "database statement timed out");
                ApiError::Unavailable
            }
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

/// The SQLSTATE of a database's own error, if it is one.
fn sqlstate(e: &DbErr) -> Option<String> {
    use sea_orm::{sqlx, RuntimeErr};
    match e {
        DbErr::Exec(RuntimeErr::SqlxError(err)) | DbErr::Query(RuntimeErr::SqlxError(err)) => {
            match &**err {
                sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Whether PostgreSQL rolled the transaction back to break a deadlock (40P01) or a
/// serialization failure (40001): running it again may well succeed.
fn is_transient(e: &DbErr) -> bool {
    sqlstate(e).is_some_and(|c| c == "40P01" || c == "40001")
}

/// Whether a statement was cancelled by `statement_timeout` (57014): the database did
/// not answer in time.
pub fn is_timeout(e: &DbErr) -> bool {
    sqlstate(e).is_some_and(|c| c == "57014")
}

/// Whether a query failed because the connection (not the statement) failed.
fn is_connection_lost(e: &DbErr) -> bool {
    use sea_orm::{sqlx, RuntimeErr};
    let runtime = match e {
        DbErr::Exec(r) | DbErr::Query(r) => r,
        _ => return false,
    };
    match runtime {
        RuntimeErr::SqlxError(err) => {
            matches!(
                &**err,
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
            ) || matches!(&**err, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("08") || c == "57P01"))
        }
        _ => false,
    }
}

pub type BoxedResponse = HttpResponse<BoxBody>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_is_listed_for_the_openapi_spec() {
        let all = [
            ApiError::bad_request("x"),
            ApiError::Unauthorized("x".into()),
            ApiError::Forbidden("x".into()),
            ApiError::Banned,
            ApiError::CommentsClosed,
            ApiError::EditWindowExpired,
            ApiError::OwnComment,
            ApiError::NotFound("x".into()),
            ApiError::MethodNotAllowed,
            ApiError::RequestTimeout(1),
            ApiError::HeadersTooLarge(1),
            ApiError::VersionConflict {
                expected: 1,
                current: 2,
            },
            ApiError::IdempotencyConflict,
            ApiError::Claimed {
                by: "x".into(),
                until: chrono::Utc::now(),
            },
            ApiError::PayloadTooLarge(1),
            ApiError::Validation(vec![]),
            ApiError::RateLimited(1),
            ApiError::Unavailable,
            ApiError::Contention("x".into()),
            ApiError::WriteTimedOut,
            ApiError::Internal("x".into()),
        ];
        let codes: Vec<&str> = all.iter().map(ApiError::code).collect();
        let mut listed = CODES.to_vec();
        listed.sort_unstable();
        let mut seen = codes.clone();
        seen.sort_unstable();
        // Several variants may share a code (`Contention` answers `unavailable`).
        seen.dedup();
        assert_eq!(seen, listed, "CODES must list every ApiError::code()");
    }
}
