//! Moderator tools: queues, stats, decisions (single and bulk), the audit log and bans.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use validator::Validate;

use super::json::{parse_json, validation_errors, ApiJson};
use super::paths::{article_id, CommentIdPath, UserIdPath};
use super::query::{bad_query, ApiQuery, PageParams};
use super::spec::{
    BadRequest, CommentPath, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized,
    Unavailable, ValidationFailed,
};
use crate::{
    auth::Moderator,
    domain::{CommentId, FieldError, Sort, UserId},
    error::ApiError,
    service::{
        comments::CursorPage,
        moderation::{
            self, BanOutcome, BanView, BulkResult, Decision, LogQuery, LogView, ModerationItem,
            NewBan, Queue, QueueQuery, QueueStats, Verdict,
        },
    },
    state::AppState,
};

/// 201 when a write made something new, 200 when it changed what was there.
pub(super) fn created_or_ok(created: bool) -> actix_web::HttpResponseBuilder {
    if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    }
}

/// The queues a moderator works.
#[derive(Debug, Clone, Copy, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum QueueName {
    /// Comments waiting for a decision.
    Pending,
    /// Comments with unresolved flags, whatever their status.
    Flagged,
    Rejected,
    Spam,
    Approved,
}

/// The orders of a queue.
#[derive(Debug, Clone, Copy, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum QueueSort {
    Oldest,
    Newest,
    /// Heaviest `flag_weight` first (the `flagged` queue only).
    Weight,
}

/// The parameters of `GET /api/v1/moderation/queue`; a bad value is 400 naming it.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueParams {
    #[param(value_type = Option<QueueName>, default = "pending")]
    pub queue: Option<String>,
    /// Only this article's comments.
    #[param(
        pattern = r"^[A-Za-z0-9][A-Za-z0-9._~:-]{0,199}$",
        min_length = 1,
        max_length = 200
    )]
    pub article_id: Option<String>,
    /// Work the queue in order: `oldest` first by default; `weight` (the `flagged`
    /// queue only, else 400 naming `sort`): heaviest `flag_weight` first.
    #[param(value_type = Option<QueueSort>, default = "oldest")]
    pub sort: Option<String>,
    /// `true`: hide the items other moderators have claimed (their claims in force).
    #[param(value_type = Option<bool>, default = false)]
    pub unclaimed: Option<String>,
}

/// `unclaimed=`: `true` or `false`; anything else is 400 naming it.
fn flag_param(field: &'static str, raw: Option<&str>) -> Result<bool, ApiError> {
    match raw {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(bad_query(FieldError::new(field, "must be true or false"))),
    }
}

/// `GET /api/v1/moderation/queue`: one queue, oldest first by default.
#[utoipa::path(
    get,
    path = "/api/v1/moderation/queue",
    tag = "moderation",
    operation_id = "moderation_queue",
    params(QueueParams, PageParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of moderation items.", body = CursorPage<ModerationItem>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn queue(
    state: web::Data<AppState>,
    Moderator(user): Moderator,
    ApiQuery(p): ApiQuery<QueueParams>,
    ApiQuery(paging): ApiQuery<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let queue = Queue::parse(p.queue.as_deref()).map_err(bad_query)?;
    let by_weight = p.sort.as_deref() == Some("weight");
    if by_weight && queue != Queue::Flagged {
        return Err(bad_query(FieldError::new(
            "sort",
            "weight applies to the flagged queue only",
        )));
    }
    let sort = if by_weight {
        Sort::Newest
    } else {
        Sort::parse("sort", p.sort.as_deref(), Sort::Oldest)
            .map_err(|_| bad_query(FieldError::new("sort", "must be oldest, newest or weight")))?
    };
    let q = QueueQuery {
        queue,
        article_id: p.article_id.as_deref().map(article_id).transpose()?,
        by_weight,
        page: paging.list(sort)?,
        unclaimed: flag_param("unclaimed", p.unclaimed.as_deref())?,
    };
    Ok(HttpResponse::Ok().json(moderation::queue(&state.db.conn, &user, q).await?))
}

/// `GET /api/v1/moderation/stats`: queue sizes from the kept counters.
#[utoipa::path(
    get,
    path = "/api/v1/moderation/stats",
    tag = "moderation",
    operation_id = "moderation_stats",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The size of each queue.", body = QueueStats),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn stats(state: web::Data<AppState>, _: Moderator) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(moderation::stats(&state.db.conn).await?))
}

/// A moderator's decision on one comment.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[schema(as = Decision, example = json!({"action": "approve", "expected_version": 3}))]
pub struct DecisionBody {
    pub action: Verdict,
    /// Why, for the audit log (blank means none).
    #[validate(length(max = 500, message = "must be at most 500 characters"))]
    #[schema(max_length = 500)]
    pub reason: Option<String>,
    /// The `version` the moderator saw: if the comment has changed since, 409
    /// `version_conflict` and nothing changes. Absent: wait for any other decision, then
    /// apply.
    pub expected_version: Option<i32>,
}

/// One item of a bulk decision: a decision plus the comment it is about.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct BulkItem {
    #[schema(min_length = 1, max_length = 64)]
    pub comment_id: String,
    #[serde(flatten)]
    pub decision: DecisionBody,
}

impl From<DecisionBody> for Decision {
    fn from(b: DecisionBody) -> Self {
        Decision {
            verdict: b.action,
            reason: b.reason.filter(|r| !r.trim().is_empty()),
            expected_version: b.expected_version,
        }
    }
}

/// `POST /api/v1/moderation/comments/{id}/decision`: 200 with the item at its new version.
///
/// The decision resolves the comment's flags and bumps `version` even when the status
/// stays. A deleted comment cannot be decided on (422 on `action`).
#[utoipa::path(
    post,
    path = "/api/v1/moderation/comments/{id}/decision",
    tag = "moderation",
    operation_id = "decide",
    params(CommentPath),
    request_body = DecisionBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The moderation item at its new version.", body = ModerationItem),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn decide(
    state: web::Data<AppState>,
    Moderator(user): Moderator,
    path: CommentIdPath,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<HttpResponse, ApiError> {
    let item = moderation::decide(&state.db, &user, &path, body.into()).await?;
    Ok(HttpResponse::Ok().json(item))
}

/// A bulk body. Items stay raw JSON so that a bad item fails alone, not the request.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[schema(as = BulkDecisions)]
pub struct BulkBody {
    /// 1–100 decisions; each is checked and applied on its own.
    #[validate(length(min = 1, max = 100, message = "must have 1 to 100 items"))]
    #[schema(value_type = Vec<BulkItem>, min_items = 1, max_items = 100)]
    pub items: Vec<serde_json::Value>,
}

/// The results of a bulk decision, in the order of the items.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = BulkResults)]
pub struct BulkResponse {
    pub results: Vec<BulkResult>,
}

/// The comment id an item names, if it names one.
fn item_comment_id(raw: &serde_json::Value) -> Option<&str> {
    raw.get("comment_id")
        .and_then(serde_json::Value::as_str)
        .filter(|id| CommentId::parse("comment_id", id).is_ok())
}

/// Parses one bulk item as the single decision endpoint parses its body (the extra
/// `comment_id` key is ignored there).
fn bulk_item(raw: &serde_json::Value) -> Result<(&str, DecisionBody), ApiError> {
    let comment_id = item_comment_id(raw)
        .ok_or_else(|| ApiError::validation("comment_id", "must be a comment id"))?;
    let bytes = serde_json::to_vec(raw).map_err(|e| ApiError::Internal(e.to_string()))?;
    let body: DecisionBody = parse_json(&bytes)?;
    body.validate()
        .map_err(|e| ApiError::Validation(validation_errors(&e)))?;
    Ok((comment_id, body))
}

/// `POST /api/v1/moderation/decisions`: up to 100 decisions, each its own group-committed
/// write (it commits or fails alone).
///
/// Each item stands alone: a bad or failing item gets `ok: false` and the problem the
/// single decision would have answered, and the others still apply.
#[utoipa::path(
    post,
    path = "/api/v1/moderation/decisions",
    tag = "moderation",
    operation_id = "decide_many",
    request_body = BulkBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One result per item, in order.", body = BulkResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn decide_many(
    state: web::Data<AppState>,
    Moderator(user): Moderator,
    ApiJson(body): ApiJson<BulkBody>,
) -> Result<HttpResponse, ApiError> {
    let mut results = Vec::with_capacity(body.items.len());
    for raw in &body.items {
        let outcome = match bulk_item(raw) {
            Ok((id, body)) => moderation::decide(&state.db, &user, id, body.into()).await,
            Err(e) => Err(e),
        };
        let comment_id = item_comment_id(raw).map(str::to_owned);
        results.push(BulkResult::of(comment_id, outcome));
    }
    Ok(HttpResponse::Ok().json(BulkResponse { results }))
}

/// The parameters of `GET /api/v1/moderation/log`; a bad value is 400 naming it.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// Only the entries about this comment (1–64 characters, no control characters;
    /// anything else is 400 naming `comment_id`).
    #[param(min_length = 1, max_length = 64)]
    pub comment_id: Option<String>,
    /// Only the entries by this actor id (`system` for automatic decisions; 1–160
    /// characters, no control characters, else 400 naming `actor`).
    #[param(min_length = 1, max_length = 160)]
    pub actor: Option<String>,
}

/// `GET /api/v1/moderation/log`: the audit log, newest first.
///
/// Append-only. Actions: `approve`, `reject`, `spam` (moderators), `hold` / `reject`
/// (rules, actor `system`), `hide` (flag threshold, actor `system`), `delete` (the
/// author), `ban`, `unban`, `settings`.
#[utoipa::path(
    get,
    path = "/api/v1/moderation/log",
    tag = "moderation",
    operation_id = "moderation_log",
    params(LogParams, PageParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of log entries, newest first.", body = CursorPage<LogView>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn log(
    state: web::Data<AppState>,
    _: Moderator,
    ApiQuery(p): ApiQuery<LogParams>,
    ApiQuery(paging): ApiQuery<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let page = paging.list(Sort::Newest)?;
    // Parsed before any query: a filter the database could not store is 400 naming it.
    let comment_id = p
        .comment_id
        .map(|c| CommentId::parse("comment_id", &c).map(CommentId::into_inner))
        .transpose()
        .map_err(bad_query)?;
    let actor = p
        .actor
        .map(|a| UserId::parse("actor", &a).map(UserId::into_inner))
        .transpose()
        .map_err(bad_query)?;
    let q = LogQuery {
        comment_id,
        actor,
        limit: page.limit,
        cursor: page.cursor,
    };
    Ok(HttpResponse::Ok().json(moderation::log(&state.db.conn, q).await?))
}

/// A ban. A guest is banned as `guest:<author_name>`.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[schema(as = NewBan, example = json!({"user_id": "u-1", "reason": "spam links", "purge": true}))]
pub struct BanBody {
    /// Not blank.
    #[validate(length(min = 1, max = 160, message = "must be 1–160 characters"))]
    #[schema(min_length = 1, max_length = 160, pattern = r"\S")]
    pub user_id: String,
    /// Not blank.
    #[validate(length(min = 1, max = 500, message = "must be 1–500 characters"))]
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub reason: String,
    /// In the future; absent or `null`: until lifted.
    pub expires_at: Option<DateTime<Utc>>,
    /// Also reject the user's pending comments.
    #[serde(default)]
    #[schema(default = false)]
    pub purge: bool,
}

/// `POST /api/v1/moderation/bans`: 201 for a new ban, 200 when it replaces one.
///
/// A banned user's writes get 403 `banned`; an expired ban stops applying by itself.
#[utoipa::path(
    post,
    path = "/api/v1/moderation/bans",
    tag = "moderation",
    operation_id = "ban",
    request_body = BanBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The ban replaced an earlier one (reason and expiry).", body = BanOutcome),
        (status = 201, description = "A new ban.", body = BanOutcome),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn ban(
    state: web::Data<AppState>,
    Moderator(user): Moderator,
    ApiJson(body): ApiJson<BanBody>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = vec![];
    if body.user_id.trim().is_empty() {
        errors.push(FieldError::new("user_id", "must not be blank"));
    } else if let Err(e) = UserId::parse("user_id", &body.user_id) {
        errors.push(e);
    }
    if body.reason.trim().is_empty() {
        errors.push(FieldError::new("reason", "must not be blank"));
    }
    if body.expires_at.is_some_and(|t| t <= Utc::now()) {
        errors.push(FieldError::new("expires_at", "must be in the future"));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let (outcome, created) = moderation::ban(
        &state.db,
        &user,
        &NewBan {
            user_id: body.user_id,
            reason: body.reason.trim().to_owned(),
            expires_at: body.expires_at,
            purge: body.purge,
        },
    )
    .await?;
    Ok(created_or_ok(created).json(outcome))
}

/// `GET /api/v1/moderation/bans`: bans in force, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/moderation/bans",
    tag = "moderation",
    operation_id = "list_bans",
    params(PageParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of bans in force.", body = CursorPage<BanView>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn bans(
    state: web::Data<AppState>,
    _: Moderator,
    ApiQuery(paging): ApiQuery<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let page = paging.list(Sort::Newest)?;
    Ok(HttpResponse::Ok().json(moderation::bans(&state.db.conn, page.limit, page.cursor).await?))
}

/// `DELETE /api/v1/moderation/bans/{user_id}`: 204, also when there was no ban.
#[utoipa::path(
    delete,
    path = "/api/v1/moderation/bans/{user_id}",
    tag = "moderation",
    operation_id = "unban",
    params(("user_id" = String, Path, description = "The banned user's id (`guest:<name>` for a guest): \
        1–160 characters, no control characters (else 400 naming `user_id`).",
        min_length = 1, max_length = 160)),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "No ban of this user remains."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn unban(
    state: web::Data<AppState>,
    Moderator(user): Moderator,
    path: UserIdPath,
) -> Result<HttpResponse, ApiError> {
    moderation::unban(&state.db, &user, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}
