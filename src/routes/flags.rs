//! Reader flags on comments.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use validator::Validate;

use super::extract::ApiJson;
use super::moderation::created_or_ok;
use crate::{
    auth::Reader,
    error::ApiError,
    service::flags::{self, FlagReason},
    startup::AppState,
};

#[derive(Debug, Deserialize, Validate)]
pub struct FlagBody {
    pub reason: FlagReason,
    #[validate(length(max = 500, message = "must be at most 500 characters"))]
    pub note: Option<String>,
}

/// `POST /api/v1/comments/{id}/flags`: 201 when the flag is counted, 200 when the
/// caller's unresolved flag is only updated.
pub async fn create(
    state: web::Data<AppState>,
    Reader(user): Reader,
    path: web::Path<String>,
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
