//! Moderator tools: queues, stats, decisions (single and bulk), the audit log and bans.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use validator::Validate;

use super::extract::{article_id, bad_query, parse_json, validation_errors, ApiJson, ApiQuery};
use crate::{
    auth::Moderator,
    domain::{parse_limit, Cursor, FieldError, Sort},
    error::ApiError,
    service::{
        comments::ListQuery,
        moderation::{self, BulkResult, Decision, LogQuery, NewBan, Queue, QueueQuery, Verdict},
    },
    startup::AppState,
};

/// 201 when a write made something new, 200 when it changed what was there.
pub(super) fn created_or_ok(created: bool) -> actix_web::HttpResponseBuilder {
    if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    }
}

/// `limit` and `cursor` of a listing.
fn page(limit: Option<i64>, cursor: Option<&str>, sort: Sort) -> Result<ListQuery, ApiError> {
    Ok(ListQuery {
        sort,
        limit: parse_limit(limit).map_err(bad_query)?,
        cursor: cursor.map(Cursor::decode).transpose().map_err(bad_query)?,
    })
}

#[derive(Debug, Deserialize)]
pub struct QueueParams {
    pub queue: Option<String>,
    pub article_id: Option<String>,
    pub sort: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// `GET /api/v1/moderation/queue`: one queue, oldest first by default.
pub async fn queue(
    state: web::Data<AppState>,
    Moderator(user): Moderator,
    ApiQuery(p): ApiQuery<QueueParams>,
) -> Result<HttpResponse, ApiError> {
    let q = QueueQuery {
        queue: Queue::parse(p.queue.as_deref()).map_err(bad_query)?,
        article_id: p.article_id.as_deref().map(article_id).transpose()?,
        page: page(
            p.limit,
            p.cursor.as_deref(),
            Sort::parse("sort", p.sort.as_deref(), Sort::Oldest).map_err(bad_query)?,
        )?,
    };
    Ok(HttpResponse::Ok().json(moderation::queue(&state.db.conn, &user, q).await?))
}

/// `GET /api/v1/moderation/stats`: queue sizes from the kept counters.
pub async fn stats(state: web::Data<AppState>, _: Moderator) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(moderation::stats(&state.db.conn).await?))
}

#[derive(Debug, Deserialize, Validate)]
pub struct DecisionBody {
    pub action: Verdict,
    #[validate(length(max = 500, message = "must be at most 500 characters"))]
    pub reason: Option<String>,
    pub expected_version: Option<i32>,
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
pub async fn decide(
    state: web::Data<AppState>,
    Moderator(user): Moderator,
    path: web::Path<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<HttpResponse, ApiError> {
    let item = moderation::decide(&state.db, &user, &path, body.into()).await?;
    Ok(HttpResponse::Ok().json(item))
}

/// A bulk body. Items stay raw JSON so that a bad item fails alone, not the request.
#[derive(Debug, Deserialize, Validate)]
pub struct BulkBody {
    #[validate(length(min = 1, max = 100, message = "must have 1 to 100 items"))]
    pub items: Vec<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct BulkResponse {
    pub results: Vec<BulkResult>,
}

/// The comment id an item names, if it names one.
fn item_comment_id(raw: &serde_json::Value) -> Option<&str> {
    raw.get("comment_id")
        .and_then(serde_json::Value::as_str)
        .filter(|id| !id.is_empty() && id.len() <= 64)
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

/// `POST /api/v1/moderation/decisions`: up to 100 decisions, each in its own transaction.
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

#[derive(Debug, Deserialize)]
pub struct LogParams {
    pub comment_id: Option<String>,
    pub actor: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// `GET /api/v1/moderation/log`: the audit log, newest first.
pub async fn log(
    state: web::Data<AppState>,
    _: Moderator,
    ApiQuery(p): ApiQuery<LogParams>,
) -> Result<HttpResponse, ApiError> {
    let page = page(p.limit, p.cursor.as_deref(), Sort::Newest)?;
    let q = LogQuery {
        comment_id: p.comment_id,
        actor: p.actor,
        limit: page.limit,
        cursor: page.cursor,
    };
    Ok(HttpResponse::Ok().json(moderation::log(&state.db.conn, q).await?))
}

#[derive(Debug, Deserialize, Validate)]
pub struct BanBody {
    #[validate(length(min = 1, max = 160, message = "must be 1–160 characters"))]
    pub user_id: String,
    #[validate(length(min = 1, max = 500, message = "must be 1–500 characters"))]
    pub reason: String,
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub purge: bool,
}

/// `POST /api/v1/moderation/bans`: 201 for a new ban, 200 when it replaces one.
pub async fn ban(
    state: web::Data<AppState>,
    Moderator(user): Moderator,
    ApiJson(body): ApiJson<BanBody>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = vec![];
    if body.user_id.trim().is_empty() {
        errors.push(FieldError::new("user_id", "must not be blank"));
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
        NewBan {
            user_id: body.user_id,
            reason: body.reason.trim().to_owned(),
            expires_at: body.expires_at,
            purge: body.purge,
        },
    )
    .await?;
    Ok(created_or_ok(created).json(outcome))
}

#[derive(Debug, Deserialize)]
pub struct BanListParams {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// `GET /api/v1/moderation/bans`: bans in force, newest first.
pub async fn bans(
    state: web::Data<AppState>,
    _: Moderator,
    ApiQuery(p): ApiQuery<BanListParams>,
) -> Result<HttpResponse, ApiError> {
    let page = page(p.limit, p.cursor.as_deref(), Sort::Newest)?;
    Ok(HttpResponse::Ok().json(moderation::bans(&state.db.conn, page.limit, page.cursor).await?))
}

/// `DELETE /api/v1/moderation/bans/{user_id}`: 204, also when there was no ban.
pub async fn unban(
    state: web::Data<AppState>,
    Moderator(user): Moderator,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    moderation::unban(&state.db, &user, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}
