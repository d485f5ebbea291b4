//! A reader's own data: `GET`/`DELETE /api/v1/me/data`, and the same for an admin on
//! any user (`/api/v1/admin/users/{user_id}/data`).

use actix_web::{web, HttpResponse};

use super::paths::UserIdPath;
use super::spec::{BadRequest, Forbidden, Unauthorized, Unavailable};
use crate::{
    auth::{Admin, Reader, User},
    error::ApiError,
    service::user_data::{self, Erased, UserData},
    state::AppState,
};

/// `GET /api/v1/me/data`: everything stored about the caller, as one document.
///
/// Their comments, replies and reviews in any status (with their text), ratings, flags,
/// votes and bans. A banned reader may read theirs too.
#[utoipa::path(
    get,
    path = "/api/v1/me/data",
    tag = "your data",
    operation_id = "get_my_data",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Everything stored about the caller.", body = UserData),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn get_mine(
    state: web::Data<AppState>,
    Reader(user): Reader,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(user_data::export(&state.db.conn, &user.id).await?))
}

/// `DELETE /api/v1/me/data`: erases the caller's data; 200 with what was erased.
///
/// Comments without replies are removed, those with replies become tombstones (no
/// text, no author); ratings, votes and flags are removed and every count follows.
/// Moderation log entries stay, with the caller's id and name replaced by `erased`.
/// Bans stay; a banned reader may still erase their data.
#[utoipa::path(
    delete,
    path = "/api/v1/me/data",
    tag = "your data",
    operation_id = "erase_my_data",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "How many rows of each kind were erased.", body = Erased),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn erase_mine(
    state: web::Data<AppState>,
    Reader(user): Reader,
) -> Result<HttpResponse, ApiError> {
    erase(&state, &user.id, &user).await
}

/// `GET /api/v1/admin/users/{user_id}/data`: everything stored about a user.
///
/// A user tally knows nothing about gets an empty document.
#[utoipa::path(
    get,
    path = "/api/v1/admin/users/{user_id}/data",
    tag = "your data",
    operation_id = "get_user_data",
    params(("user_id" = String, Path, description = "The user's id (a token's `sub`): \
        1–160 characters, no control characters (else 400 naming `user_id`).",
        min_length = 1, max_length = 160)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Everything stored about the user.", body = UserData),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn get_user(
    state: web::Data<AppState>,
    _: Admin,
    path: UserIdPath,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(user_data::export(&state.db.conn, &path).await?))
}

/// `DELETE /api/v1/admin/users/{user_id}/data`: erases a user's data, as
/// `DELETE /api/v1/me/data` does for the caller.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/users/{user_id}/data",
    tag = "your data",
    operation_id = "erase_user_data",
    params(("user_id" = String, Path, description = "The user's id (a token's `sub`): \
        1–160 characters, no control characters (else 400 naming `user_id`).",
        min_length = 1, max_length = 160)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "How many rows of each kind were erased.", body = Erased),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn erase_user(
    state: web::Data<AppState>,
    Admin(admin): Admin,
    path: UserIdPath,
) -> Result<HttpResponse, ApiError> {
    erase(&state, &path, &admin).await
}

/// The caches (aggregates, pages, the top list, the spam model) invalidate from the
/// erasure's events, on this instance and the others (`service::events`).
async fn erase(state: &AppState, user_id: &str, actor: &User) -> Result<HttpResponse, ApiError> {
    let erased = user_data::erase(&state.db, user_id, actor).await?;
    Ok(HttpResponse::Ok().json(erased))
}
