//! Claims (issue 21): `POST` / `DELETE /api/v1/moderation/comments/{id}/claim`.

use actix_web::{web, HttpResponse};

use super::openapi::{
    BadRequest, CommentPath, Conflict, Forbidden, NotFound, Unauthorized, Unavailable,
};
use super::paths::CommentIdPath;
use crate::{
    auth::Moderator,
    error::ApiError,
    service::claims::{self, ClaimView},
    startup::AppState,
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
