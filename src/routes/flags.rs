//! Reader flags on comments.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use validator::Validate;

use super::json::ApiJson;
use super::moderation::created_or_ok;
use super::paths::CommentIdPath;
use super::spec::{
    BadRequest, CommentPath, Forbidden, NotFound, PayloadTooLarge, RateLimited, Unauthorized,
    Unavailable, ValidationFailed,
};
use crate::{
    auth::Reader,
    error::ApiError,
    service::flags::{self, FlagReason, FlagView},
    state::AppState,
};

/// A reader's flag on a comment.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[schema(as = NewFlag, example = json!({"reason": "spam", "note": "link farm"}))]
pub struct FlagBody {
    pub reason: FlagReason,
    /// At most 500 characters, no control characters but newline and tab; blank means none.
    #[validate(length(max = 500, message = "must be at most 500 characters"))]
    #[schema(
        max_length = 500,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub note: Option<String>,
}

/// `POST /api/v1/comments/{id}/flags`: 201 when the flag is counted, 200 when the
/// caller's unresolved flag is only updated.
///
/// Counted once per reader while unresolved. At the flag threshold (3 by default) an
/// approved comment is hidden (`pending`) until a moderator decides. Banned users get
/// 403 `banned`.
#[utoipa::path(
    post,
    path = "/api/v1/comments/{id}/flags",
    tag = "comments",
    operation_id = "flag_comment",
    params(CommentPath),
    request_body = FlagBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's unresolved flag, with its reason and note updated.", body = FlagView),
        (status = 201, description = "The flag, newly counted.", body = FlagView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = ValidationFailed),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn create(
    state: web::Data<AppState>,
    Reader(user): Reader,
    path: CommentIdPath,
    ApiJson(body): ApiJson<FlagBody>,
) -> Result<HttpResponse, ApiError> {
    if body
        .note
        .as_deref()
        .is_some_and(|n| n.chars().any(crate::domain::is_forbidden_control))
    {
        return Err(ApiError::validation(
            "note",
            "must not contain control characters",
        ));
    }
    let note = body.note.filter(|n| !n.trim().is_empty());
    let (flag, counted) =
        flags::flag(&state.db, &state.policies, &user, &path, body.reason, note).await?;
    Ok(created_or_ok(counted).json(flag))
}
