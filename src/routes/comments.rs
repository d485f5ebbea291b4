use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use validator::Validate;

use super::extract::{
    article_id, bad_query, parse_query, replay, worker_copies, ApiJson, ApiJsonRaw,
    IdempotencyHeader,
};
use super::openapi::{
    ArticlePath, BadRequest, CommentPath, Conflict, Forbidden, IdempotencyKeyHeader, NotFound,
    PayloadTooLarge, RateLimited, Unauthorized, Unavailable, ValidationFailed,
};
use crate::{
    auth::{MaybeReader, Reader},
    domain::{parse_limit, AuthorName, CommentBody, FieldError, Stars, ThreadCursor, ThreadSort},
    error::ApiError,
    service::{
        comments::{self, Author, CommentView, NewComment, Page, ThreadQuery},
        idempotency::Outcome,
    },
    startup::AppState,
};

/// A new comment.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[schema(as = NewComment, example = json!({"body": "Thanks, the open-book stretch helps."}))]
pub struct CreateBody {
    /// Plain text: 1–5000 characters after trimming, no control characters but newline
    /// and tab.
    #[schema(
        min_length = 1,
        max_length = 5000,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub body: String,
    /// Reply to this comment: a comment of the same article the caller can see (422
    /// otherwise).
    #[schema(min_length = 1, max_length = 64)]
    pub parent_id: Option<String>,
    /// Guests only (required for them): 1–64 characters after trimming, no control
    /// characters. Ignored for signed-in readers (their name comes from the token).
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub author_name: Option<String>,
}

/// A comment's new text.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[schema(as = CommentEdit, example = json!({"body": "Thanks, the open-book stretch helps a lot."}))]
pub struct EditBody {
    /// Plain text: 1–5000 characters after trimming, no control characters but newline
    /// and tab.
    #[schema(
        min_length = 1,
        max_length = 5000,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub body: String,
}

/// The orders of comment and reply listings (`best`: Wilson lower bound of the votes,
/// then newest first).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // Documents `ThreadSort`'s subset the comment listings accept.
pub enum CommentSort {
    Newest,
    Oldest,
    Best,
}

/// `sort`, `limit` and `cursor` of a comment listing; a bad value is 400 naming it.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `newest`, `oldest` or `best` first; default `newest` for an article's comments,
    /// `oldest` for replies.
    #[param(value_type = Option<CommentSort>)]
    pub sort: Option<String>,
    /// Page size.
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page (opaque).
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

impl ListParams {
    fn parse(self, default_sort: ThreadSort) -> Result<ThreadQuery, ApiError> {
        thread_query(
            self.sort.as_deref(),
            self.limit,
            self.cursor.as_deref(),
            default_sort,
            false,
        )
    }
}

fn thread_query(
    sort: Option<&str>,
    limit: Option<i64>,
    cursor: Option<&str>,
    default_sort: ThreadSort,
    reviews: bool,
) -> Result<ThreadQuery, ApiError> {
    let sort = ThreadSort::parse(sort, default_sort, reviews).map_err(bad_query)?;
    Ok(ThreadQuery {
        sort,
        limit: parse_limit(limit).map_err(bad_query)?,
        cursor: cursor
            .map(|c| ThreadCursor::decode(c, sort))
            .transpose()
            .map_err(bad_query)?,
    })
}

/// `sort`, `stars`, `limit` and `cursor` of the reviews listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReviewParams {
    /// `best` (default), `newest`, `oldest`, `highest` or `lowest` (by stars, then
    /// newest first).
    #[param(value_type = Option<ThreadSort>)]
    pub sort: Option<String>,
    /// Only reviews with this many stars.
    #[param(minimum = 1, maximum = 5)]
    pub stars: Option<i64>,
    /// Page size.
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page (opaque).
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

impl ReviewParams {
    fn parse(self) -> Result<(ThreadQuery, Option<Stars>), ApiError> {
        let stars = self
            .stars
            .map(|s| {
                Stars::try_from(s)
                    .map_err(|_| FieldError::new("stars", "must be a whole number from 1 to 5"))
            })
            .transpose()
            .map_err(bad_query)?;
        let q = thread_query(
            self.sort.as_deref(),
            self.limit,
            self.cursor.as_deref(),
            ThreadSort::Best,
            true,
        )?;
        Ok((q, stars))
    }
}

/// `POST /api/v1/articles/{article_id}/comments`: 201 with the comment and its status.
/// With an `Idempotency-Key`, a repeat of the same request replays the first response.
///
/// A reader, or a guest (no token, `author_name` given) when guest comments are on; a
/// guest comment always waits in the queue. `status` says whether the comment is live
/// (`approved`), waits (`pending`) or was refused by a rule (`rejected`, kept for the
/// moderators). 401 for a guest without `author_name` while guest comments are off; 403
/// `forbidden` for a guest while they are off, `banned`, or `comments_closed`.
#[utoipa::path(
    post,
    path = "/api/v1/articles/{article_id}/comments",
    tag = "comments",
    operation_id = "create_comment",
    params(ArticlePath, IdempotencyKeyHeader),
    request_body = CreateBody,
    security((), ("bearer" = [])),
    responses(
        (status = 201, description = "The comment as stored (or a replay of an earlier identical request).",
            body = CommentView, headers(("Idempotent-Replayed" = String,
                description = "`true` when this is the stored answer to an earlier identical request."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = ValidationFailed),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    ),
)]
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
///
/// Public: approved comments of kind `comment` (reviews have their own listing), plus
/// the caller's own pending ones (`mine: true`). `total` counts the visible top-level
/// comments. `sort=best`: by the Wilson lower bound of the votes, then newest first.
#[utoipa::path(
    get,
    path = "/api/v1/articles/{article_id}/comments",
    tag = "comments",
    operation_id = "list_comments",
    params(ArticlePath, ListParams),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "A page of top-level comments.", body = Page<CommentView>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn list(
    state: web::Data<AppState>,
    MaybeReader(user): MaybeReader,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = article_id(&path)?;
    let query = || parse_query::<ListParams>(req.query_string())?.parse(ThreadSort::Newest);
    if user.is_some() {
        // `mine` and the caller's own pending comments: never shared.
        let page = comments::list_top_level(
            &state.db,
            user.as_ref(),
            &id,
            state.settings.auto_create_articles,
            query()?,
        )
        .await?;
        return Ok(HttpResponse::Ok().json(page));
    }
    let key = page_key("article", id.as_str(), &req, state.db.write_epoch());
    cached_page(&state, &req, key, async {
        comments::list_top_level(
            &state.db,
            None,
            &id,
            state.settings.auto_create_articles,
            query()?,
        )
        .await
    })
    .await
}

/// `GET /api/v1/articles/{article_id}/reviews`: reviews, best first by default.
///
/// Public, the same page shape as comments: approved reviews (plus the caller's own
/// pending ones), each with its author's current `stars`. `total` counts the visible
/// reviews that match `stars`. `highest` and `lowest` order by stars, then newest first.
#[utoipa::path(
    get,
    path = "/api/v1/articles/{article_id}/reviews",
    tag = "comments",
    operation_id = "list_reviews",
    params(ArticlePath, ReviewParams),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "A page of reviews.", body = Page<CommentView>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn reviews(
    state: web::Data<AppState>,
    MaybeReader(user): MaybeReader,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = article_id(&path)?;
    let query = || parse_query::<ReviewParams>(req.query_string())?.parse();
    let read = |user: Option<crate::auth::User>| {
        let id = id.clone();
        let state = state.clone();
        async move {
            let (q, stars) = query()?;
            comments::list_reviews(
                &state.db,
                user.as_ref(),
                &id,
                state.settings.auto_create_articles,
                q,
                stars,
            )
            .await
        }
    };
    if user.is_some() {
        return Ok(HttpResponse::Ok().json(read(user).await?));
    }
    let key = page_key("reviews", id.as_str(), &req, state.db.write_epoch());
    cached_page(&state, &req, key, read(None)).await
}

/// The cache key of an anonymous page: the write epoch read *before* the database is
/// (so a page read around a commit is filed under the epoch that commit retired), what
/// is listed, and the raw query string. A hit needs no parsing at all; a query string
/// that does not parse is answered 400 and never cached.
fn page_key(kind: &str, of: &str, req: &HttpRequest, epoch: u64) -> String {
    format!("{epoch}|{kind}|{}:{of}|{}", of.len(), req.query_string())
}

/// Answers an anonymous comment page from [`AppState::pages`], or reads it with `read`,
/// serialises it once and keeps it. Pages are keyed by the write epoch, so any write
/// committed through this instance retires every cached page; writes through other
/// instances show within `TALLY_PAGE_CACHE_TTL_MS`.
async fn cached_page(
    state: &AppState,
    req: &HttpRequest,
    key: String,
    read: impl std::future::Future<Output = Result<Page<CommentView>, ApiError>>,
) -> Result<HttpResponse, ApiError> {
    let body = match state.pages.get_copy(worker_copies(req)?, &key) {
        Ok((hit, _)) => web::Bytes::clone(&hit),
        Err(ticket) => {
            let page = read.await?;
            let body = web::Bytes::from(
                serde_json::to_vec(&page).map_err(|e| ApiError::Internal(e.to_string()))?,
            );
            state
                .pages
                .fill(ticket, &key, std::sync::Arc::new(body.clone()));
            body
        }
    };
    Ok(HttpResponse::Ok()
        .content_type(super::json_content_type())
        .body(body))
}

/// `GET /api/v1/comments/{id}/replies`: replies, oldest first by default.
///
/// Public, the same shape as the article's list; 404 when the parent is unknown or not
/// visible to the caller.
#[utoipa::path(
    get,
    path = "/api/v1/comments/{id}/replies",
    tag = "comments",
    operation_id = "list_replies",
    params(CommentPath, ListParams),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "A page of direct replies.", body = Page<CommentView>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn replies(
    state: web::Data<AppState>,
    MaybeReader(user): MaybeReader,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = || parse_query::<ListParams>(req.query_string())?.parse(ThreadSort::Oldest);
    if user.is_some() {
        let page = comments::list_replies(&state.db, user.as_ref(), &path, query()?).await?;
        return Ok(HttpResponse::Ok().json(page));
    }
    let key = page_key("replies", &path, &req, state.db.write_epoch());
    cached_page(&state, &req, key, async {
        comments::list_replies(&state.db, None, &path, query()?).await
    })
    .await
}

/// `GET /api/v1/comments/{id}`: one comment; 404 for what the caller may not see.
#[utoipa::path(
    get,
    path = "/api/v1/comments/{id}",
    tag = "comments",
    operation_id = "get_comment",
    params(CommentPath),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The comment.", body = CommentView),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn get(
    state: web::Data<AppState>,
    MaybeReader(user): MaybeReader,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(comments::get(&state.db, user.as_ref(), &path).await?))
}

/// `PATCH /api/v1/comments/{id}`: the author edits within the edit window.
///
/// The new text goes through moderation again. 403 `forbidden` (not the author),
/// `edit_window_expired`, `banned` or `comments_closed`.
#[utoipa::path(
    patch,
    path = "/api/v1/comments/{id}",
    tag = "comments",
    operation_id = "edit_comment",
    params(CommentPath),
    request_body = EditBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The comment with its new text and status.", body = CommentView),
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
///
/// A deleted comment that has replies keeps its place with an empty body and no author.
/// Deleting settles its flags. 403 `forbidden` when not the author.
#[utoipa::path(
    delete,
    path = "/api/v1/comments/{id}",
    tag = "comments",
    operation_id = "delete_comment",
    params(CommentPath),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn delete(
    state: web::Data<AppState>,
    Reader(user): Reader,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    comments::delete(&state.db, &user, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}
