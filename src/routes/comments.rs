use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use validator::Validate;

use super::cached::SharedPage;
use super::idempotency::{replay, IdempotencyHeader};
use super::json::{json_content_type, ApiJson, ApiJsonRaw};
use super::paths::{ArticleIdPath, CommentIdPath};
use super::query::{bad_query, parse_query, PageParams};
use super::spec::{
    ArticlePath, BadRequest, CommentPath, Conflict, Forbidden, IdempotencyKeyHeader, NotFound,
    PayloadTooLarge, RateLimited, Unauthorized, Unavailable, ValidationFailed,
};
use crate::{
    auth::{MaybeReader, Reader, User},
    domain::{AuthorName, CommentBody, CommentKind, FieldError, Stars, ThreadCursor, ThreadSort},
    error::ApiError,
    service::{
        comments::{self, Author, CommentView, NewComment, Page, ThreadQuery},
        idempotency::Outcome,
        page_overlay::{compose, Composed, Overlay, Thread},
    },
    state::AppState,
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

/// `sort` of a comment listing (paged by [`PageParams`]); a bad value is 400 naming it.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `newest`, `oldest` or `best` first; default `newest` for an article's comments,
    /// `oldest` for replies.
    #[param(value_type = Option<CommentSort>)]
    pub sort: Option<String>,
}

impl ListParams {
    fn parse(self, page: PageParams, default_sort: ThreadSort) -> Result<ThreadQuery, ApiError> {
        thread_query(self.sort.as_deref(), page, default_sort, false)
    }
}

fn thread_query(
    sort: Option<&str>,
    page: PageParams,
    default_sort: ThreadSort,
    reviews: bool,
) -> Result<ThreadQuery, ApiError> {
    let sort = ThreadSort::parse(sort, default_sort, reviews).map_err(bad_query)?;
    Ok(ThreadQuery {
        sort,
        limit: page.limit()?,
        cursor: page
            .cursor
            .as_deref()
            .map(|c| ThreadCursor::decode(c, sort))
            .transpose()
            .map_err(bad_query)?,
    })
}

/// `sort` and `stars` of the reviews listing (paged by [`PageParams`]).
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
}

impl ReviewParams {
    fn parse(self, page: PageParams) -> Result<(ThreadQuery, Option<Stars>), ApiError> {
        let stars = self
            .stars
            .map(|s| {
                Stars::try_from(s)
                    .map_err(|_| FieldError::new("stars", "must be a whole number from 1 to 5"))
            })
            .transpose()
            .map_err(bad_query)?;
        let q = thread_query(self.sort.as_deref(), page, ThreadSort::Best, true)?;
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
    key: IdempotencyHeader,
    ApiJsonRaw(input, raw): ApiJsonRaw<CreateBody>,
    ArticleIdPath(id): ArticleIdPath,
) -> Result<HttpResponse, ApiError> {
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
        if let Err(e) = crate::domain::CommentId::parse("parent_id", pid) {
            errors.push(e);
        }
    }
    let (Some(body), Some(author), true) = (body, author, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    // The external moderation hook is asked before the write (no write lock held).
    let screened = crate::service::external::screen::screen_new(
        &state.db,
        &state.policies,
        &state.external,
        &author,
        &id,
        body.as_str(),
        input.parent_id.as_deref(),
    )
    .await?;
    let outcome = comments::create(
        &state.db,
        &state.policies,
        state.settings.auto_create_articles,
        author,
        &id,
        NewComment {
            body,
            parent_id: input.parent_id,
            screened,
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
    params(ArticlePath, ListParams, PageParams),
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
    req: HttpRequest,
    ArticleIdPath(id): ArticleIdPath,
) -> Result<HttpResponse, ApiError> {
    let query = || {
        let qs = req.query_string();
        parse_query::<ListParams>(qs)?.parse(parse_query(qs)?, ThreadSort::Newest)
    };
    let read = |caller: Option<User>| {
        let (state, id) = (&state, &id);
        async move {
            let q = query()?;
            let page = comments::list_top_level(
                &state.db,
                caller.as_ref(),
                id,
                state.settings.auto_create_articles,
                q.clone(),
            )
            .await?;
            Ok(Listed {
                page,
                query: q,
                stars: None,
            })
        }
    };
    let epoch = state.db.write_epoch();
    let key = page_key("article", id.as_str(), &req, epoch);
    let thread = |_| Thread::TopLevel {
        article_id: id.as_str(),
        kind: CommentKind::Comment,
        stars: None,
    };
    match &user {
        None => anonymous_page(&state, key, read(None)).await,
        Some(user) => signed_in_page(&state, key, epoch, user, thread, read).await,
    }
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
    params(ArticlePath, ReviewParams, PageParams),
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
    req: HttpRequest,
    ArticleIdPath(id): ArticleIdPath,
) -> Result<HttpResponse, ApiError> {
    let query = || {
        let qs = req.query_string();
        parse_query::<ReviewParams>(qs)?.parse(parse_query(qs)?)
    };
    let read = |caller: Option<User>| {
        let (state, id) = (&state, &id);
        async move {
            let (q, stars) = query()?;
            let page = comments::list_reviews(
                &state.db,
                caller.as_ref(),
                id,
                state.settings.auto_create_articles,
                q.clone(),
                stars,
            )
            .await?;
            Ok(Listed {
                page,
                query: q,
                stars,
            })
        }
    };
    let epoch = state.db.write_epoch();
    let key = page_key("reviews", id.as_str(), &req, epoch);
    match &user {
        None => anonymous_page(&state, key, read(None)).await,
        Some(user) => {
            // The `stars` filter as the shared page was listed with: a cache hit needs
            // no parsing (a second parse of the query cost about a tenth of the
            // signed-in page's time).
            let thread = |stars| Thread::TopLevel {
                article_id: id.as_str(),
                kind: CommentKind::Review,
                stars,
            };
            signed_in_page(&state, key, epoch, user, thread, read).await
        }
    }
}

/// What a listing read gives: the page, the query it answers and, for reviews, the
/// star filter it was listed with (kept with the shared page, see [`SharedPage`]).
struct Listed {
    page: Page<CommentView>,
    query: ThreadQuery,
    stars: Option<Stars>,
}

/// The cache key of an anonymous page: the write epoch read *before* the database is
/// (so a page read around a commit is filed under the epoch that commit retired), what
/// is listed, and the raw query string. A hit needs no parsing at all; a query string
/// that does not parse is answered 400 and never cached.
fn page_key(kind: &str, of: &str, req: &HttpRequest, epoch: u64) -> String {
    format!("{epoch}|{kind}|{}:{of}|{}", of.len(), req.query_string())
}

/// The anonymous page under `key`, from [`AppState::comment_pages`], or read with
/// `read`, serialised once and kept. Pages are keyed by the write epoch, so any write
/// committed through this instance retires every cached page; writes through other
/// instances show within `TALLY_PAGE_CACHE_TTL_MS`.
async fn shared_page(
    state: &AppState,
    key: &str,
    read: impl std::future::Future<Output = Result<Listed, ApiError>>,
) -> Result<Arc<SharedPage>, ApiError> {
    match state.comment_pages.get(key) {
        Ok(hit) => Ok(hit),
        Err(ticket) => {
            let Listed { page, query, stars } = read.await?;
            let body = web::Bytes::from(
                serde_json::to_vec(&page).map_err(|e| ApiError::Internal(e.to_string()))?,
            );
            let shared = Arc::new(SharedPage {
                body,
                page,
                query,
                stars,
            });
            state.comment_pages.fill(ticket, key, shared.clone());
            Ok(shared)
        }
    }
}

fn json_body(body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(json_content_type())
        .body(body)
}

/// Answers an anonymous comment page (see [`shared_page`]).
async fn anonymous_page(
    state: &AppState,
    key: String,
    read: impl std::future::Future<Output = Result<Listed, ApiError>>,
) -> Result<HttpResponse, ApiError> {
    let shared = shared_page(state, &key, read).await?;
    Ok(json_body(web::Bytes::clone(&shared.body)))
}

/// Answers a signed-in reader's comment page from the anonymous page of the same query
/// (`key`, read at `epoch`) and the reader's own overlay (their pending comments, kept
/// per user under the same epoch): the same bytes as reading it for them from the
/// database, which `read(Some(user))` does when the overlay cannot say (the caches are
/// off, the anonymous page is an error such as a reply listing of a comment only the
/// reader may see, or the reader has too much pending). `thread` names the listing,
/// given the star filter the shared page was listed with.
async fn signed_in_page<'t, F, Fut>(
    state: &AppState,
    key: String,
    epoch: u64,
    user: &User,
    thread: impl FnOnce(Option<Stars>) -> Thread<'t>,
    read: F,
) -> Result<HttpResponse, ApiError>
where
    F: Fn(Option<User>) -> Fut,
    Fut: std::future::Future<Output = Result<Listed, ApiError>>,
{
    let uncached = async || -> Result<HttpResponse, ApiError> {
        let listed = read(Some(user.clone())).await?;
        Ok(HttpResponse::Ok().json(listed.page))
    };
    if !state.comment_pages.is_enabled() || !state.overlays.is_enabled() {
        return uncached().await;
    }
    let Ok(shared) = shared_page(state, &key, read(None)).await else {
        return uncached().await;
    };
    let overlay = overlay(state, epoch, user).await?;
    let thread = thread(shared.stars);
    match compose(&shared.page, thread, &shared.query, &overlay, user) {
        Composed::Shared => Ok(json_body(web::Bytes::clone(&shared.body))),
        Composed::Own(page) => Ok(HttpResponse::Ok().json(page)),
        Composed::Uncached => uncached().await,
    }
}

/// `user`'s overlay as of `epoch` (read before the pages it is composed with), from
/// [`AppState::overlays`] or the database. Keyed by the write epoch like the pages, so
/// any write committed through this instance (their own comment, edit or deletion, a
/// moderator's decision on it, a ban) retires it.
async fn overlay(state: &AppState, epoch: u64, user: &User) -> Result<Arc<Overlay>, ApiError> {
    let key = format!("{epoch}|{}", user.id);
    match state.overlays.get(&key) {
        Ok(hit) => Ok(hit),
        Err(ticket) => {
            let overlay = Arc::new(Overlay::read(&state.db.conn, user).await?);
            state.overlays.fill(ticket, &key, overlay.clone());
            Ok(overlay)
        }
    }
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
    params(CommentPath, ListParams, PageParams),
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
    path: CommentIdPath,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = || {
        let qs = req.query_string();
        parse_query::<ListParams>(qs)?.parse(parse_query(qs)?, ThreadSort::Oldest)
    };
    let read = |caller: Option<User>| {
        let (state, path) = (&state, &path);
        async move {
            let q = query()?;
            let page = comments::list_replies(&state.db, caller.as_ref(), path, q.clone()).await?;
            Ok(Listed {
                page,
                query: q,
                stars: None,
            })
        }
    };
    let epoch = state.db.write_epoch();
    let key = page_key("replies", &path, &req, epoch);
    let thread = |_| Thread::Replies { parent_id: &path };
    match &user {
        None => anonymous_page(&state, key, read(None)).await,
        Some(user) => signed_in_page(&state, key, epoch, user, thread, read).await,
    }
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
    path: CommentIdPath,
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
    path: CommentIdPath,
    ApiJson(input): ApiJson<EditBody>,
) -> Result<HttpResponse, ApiError> {
    let body = CommentBody::parse(&input.body)?;
    // The external moderation hook is asked before the write (no write lock held).
    let screened = crate::service::external::screen::screen_edit(
        &state.db,
        &state.policies,
        &state.external,
        &user,
        &path,
        body.as_str(),
    )
    .await?;
    Ok(HttpResponse::Ok()
        .json(comments::edit(&state.db, &state.policies, &user, &path, body, screened).await?))
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
    path: CommentIdPath,
) -> Result<HttpResponse, ApiError> {
    comments::delete(&state.db, &user, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}
