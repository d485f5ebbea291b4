use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use validator::Validate;

use super::extract::{
    article_id, bad_query, replay, ApiJson, ApiJsonRaw, ApiQuery, IdempotencyHeader,
};
use crate::{
    auth::{MaybeReader, Reader},
    domain::{parse_limit, AuthorName, CommentBody, Cursor, Sort},
    error::ApiError,
    service::{
        comments::{self, Author, ListQuery, NewComment},
        idempotency::Outcome,
    },
    startup::AppState,
};

#[derive(Debug, Deserialize, Validate)]
pub struct CreateBody {
    pub body: String,
    pub parent_id: Option<String>,
    /// Guests only; ignored for signed-in readers (their name comes from the token).
    pub author_name: Option<String>,
}

#[derive(Debug, Deserialize, Validate)]
pub struct EditBody {
    pub body: String,
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    pub sort: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

impl ListParams {
    fn parse(self, default_sort: Sort) -> Result<ListQuery, ApiError> {
        Ok(ListQuery {
            sort: Sort::parse("sort", self.sort.as_deref(), default_sort).map_err(bad_query)?,
            limit: parse_limit(self.limit).map_err(bad_query)?,
            cursor: self
                .cursor
                .as_deref()
                .map(Cursor::decode)
                .transpose()
                .map_err(bad_query)?,
        })
    }
}

/// `POST /api/v1/articles/{article_id}/comments`: 201 with the comment and its status.
/// With an `Idempotency-Key`, a repeat of the same request replays the first response.
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    MaybeReader(user): MaybeReader,
    path: web::Path<String>,
    key: IdempotencyHeader,
    ApiJsonRaw(input, raw): ApiJsonRaw<CreateBody>,
) -> Result<HttpResponse, ApiError> {
    let id = article_id(&path)?;
    let idempotent = key.request(&req, user.as_ref(), &raw);
    let mut errors = vec![];
    let body = CommentBody::parse(&input.body)
        .map_err(|e| errors.push(e))
        .ok();
    let author = match user {
        Some(u) => Some(Author::User(u)),
        None => match input.author_name.as_deref() {
            Some(name) => AuthorName::parse("author_name", name)
                .map(Author::Guest)
                .map_err(|e| errors.push(e))
                .ok(),
            None => {
                // A guest without a name: say so only if guests may post at all.
                if !state
                    .policies
                    .get(&state.db.conn)
                    .await?
                    .policy
                    .guest_comments
                {
                    return Err(ApiError::Unauthorized("sign in to comment".into()));
                }
                errors.push(crate::domain::FieldError::new(
                    "author_name",
                    "is required for guest comments",
                ));
                None
            }
        },
    };
    if let Some(pid) = &input.parent_id {
        if pid.is_empty() || pid.len() > 64 {
            errors.push(crate::domain::FieldError::new(
                "parent_id",
                "must be a comment id",
            ));
        }
    }
    let (Some(body), Some(author), true) = (body, author, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let outcome = comments::create(
        &state.db,
        &state.policies,
        state.settings.auto_create_articles,
        author,
        &id,
        NewComment {
            body,
            parent_id: input.parent_id,
        },
        idempotent.as_ref(),
    )
    .await?;
    Ok(match outcome {
        Outcome::Done(view) => HttpResponse::Created().json(view),
        Outcome::Replay(stored) => replay(stored),
    })
}

/// `GET /api/v1/articles/{article_id}/comments`: top-level comments, newest first by default.
pub async fn list(
    state: web::Data<AppState>,
    MaybeReader(user): MaybeReader,
    path: web::Path<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let id = article_id(&path)?;
    let q = params.parse(Sort::Newest)?;
    let page = comments::list_top_level(
        &state.db,
        user.as_ref(),
        &id,
        state.settings.auto_create_articles,
        q,
    )
    .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `GET /api/v1/comments/{id}/replies`: replies, oldest first by default.
pub async fn replies(
    state: web::Data<AppState>,
    MaybeReader(user): MaybeReader,
    path: web::Path<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let q = params.parse(Sort::Oldest)?;
    let page = comments::list_replies(&state.db, user.as_ref(), &path, q).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `GET /api/v1/comments/{id}`.
pub async fn get(
    state: web::Data<AppState>,
    MaybeReader(user): MaybeReader,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(comments::get(&state.db, user.as_ref(), &path).await?))
}

/// `PATCH /api/v1/comments/{id}`: the author edits within the edit window.
pub async fn edit(
    state: web::Data<AppState>,
    Reader(user): Reader,
    path: web::Path<String>,
    ApiJson(input): ApiJson<EditBody>,
) -> Result<HttpResponse, ApiError> {
    let body = CommentBody::parse(&input.body)?;
    Ok(HttpResponse::Ok()
        .json(comments::edit(&state.db, &state.policies, &user, &path, body).await?))
}

/// `DELETE /api/v1/comments/{id}`: the author deletes; 204.
pub async fn delete(
    state: web::Data<AppState>,
    Reader(user): Reader,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    comments::delete(&state.db, &user, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}
