//! Claims (issue 21): `POST` / `DELETE /api/v1/moderation/comments/{id}/claim`.

use actix_web::{web, HttpResponse};

use super::paths::CommentIdPath;
use super::spec::{
    BadRequest, CommentPath, Conflict, Forbidden, NotFound, Unauthorized, Unavailable,
};
use crate::{
    auth::Moderator,
    error::ApiError,
    service::claims::{self, ClaimView},
    state::AppState,
};

/// `POST /api/v1/moderation/comments/{id}/claim`: "I am working on this one".
///
/// Holds for 5 minutes; claiming again renews it. 409 `claimed` while another
/// moderator holds it. Advisory: decisions are never refused for a claim, and a
/// decision releases it.
#[utoipa::path(
    post,
    path = "/api/v1/moderation/comments/{id}/claim",
    tag = "moderation",
    operation_id = "claim",
    params(CommentPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's claim, new or renewed.", body = ClaimView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn claim(
    state: web::Data<AppState>,
    Moderator(user): Moderator,
    path: CommentIdPath,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(claims::claim(&state.db, &user, &path).await?))
}

/// `DELETE /api/v1/moderation/comments/{id}/claim`: releases the caller's claim.
///
/// 204 also when there was none; 409 `claimed` while another moderator holds it.
#[utoipa::path(
    delete,
    path = "/api/v1/moderation/comments/{id}/claim",
    tag = "moderation",
    operation_id = "release_claim",
    params(CommentPath),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The caller holds no claim on the comment now."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn release(
    state: web::Data<AppState>,
    Moderator(user): Moderator,
    path: CommentIdPath,
) -> Result<HttpResponse, ApiError> {
    claims::release(&state.db, &user, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The parameters of `GET /api/v1/moderation/metrics`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricsParams {
    /// RFC 3339 time; default 7 days ago. A bad value is 400 naming `since`.
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
}

/// `GET /api/v1/moderation/metrics`: decisions since `since`, time to decision, the
/// oldest pending comment's age and the queue sizes.
///
/// A decision is a log row that moves a comment to `approved`, `rejected` or `spam`
/// (holds are not); `automatic` counts those by `system` or `external`, `by_actor` the
/// human moderators, most decisions first. `time_to_decision_secs` runs from a
/// comment's creation to a human moderator's decision on it (nearest-rank percentiles;
/// `null` without any).
#[utoipa::path(
    get,
    path = "/api/v1/moderation/metrics",
    tag = "moderation",
    operation_id = "moderation_metrics",
    params(MetricsParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The metrics.", body = crate::service::metrics::Metrics),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn metrics(
    state: web::Data<AppState>,
    _: Moderator,
    super::query::ApiQuery(p): super::query::ApiQuery<MetricsParams>,
) -> Result<HttpResponse, ApiError> {
    let now = crate::service::now();
    let since = match p.since.as_deref() {
        None => now - chrono::Duration::days(7),
        Some(raw) => chrono::DateTime::parse_from_rfc3339(raw)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|_| {
                super::query::bad_query(crate::domain::FieldError::new(
                    "since",
                    "must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z",
                ))
            })?,
    };
    let m = crate::service::metrics::metrics(&state.db.conn, since, now).await?;
    Ok(HttpResponse::Ok().json(m))
}
