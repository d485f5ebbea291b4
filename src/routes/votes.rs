//! Helpful votes on comments, and the Bayesian top list of rated articles.

use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use validator::Validate;

use super::idempotency::{replay, IdempotencyHeader};
use super::json::{json_content_type, ApiJsonRaw};
use super::paths::CommentIdPath;
use super::query::{bad_query, parse_query};
use super::spec::{
    BadRequest, CommentPath, Conflict, Forbidden, IdempotencyKeyHeader, NotFound, PayloadTooLarge,
    RateLimited, Unauthorized, Unavailable, ValidationFailed,
};
use crate::{
    auth::Reader,
    domain::{FieldError, Vote},
    error::ApiError,
    service::{
        idempotency::Outcome,
        top::{self, TopList},
        votes::{self, VoteView},
    },
    state::AppState,
};

/// A vote: `up` (helpful) or `down`.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[schema(as = VoteInput, example = json!({"vote": "up"}))]
pub struct VoteBody {
    #[schema(value_type = Vote)]
    pub vote: String,
}

/// `PUT /api/v1/comments/{id}/vote`: 200 with the comment's votes and the caller's.
///
/// One vote per reader per comment; voting again with the other value switches it.
/// Only comments the caller can see (404), never their own (403 `own_comment`); guests
/// cannot vote (401); banned readers get 403 `banned`. Rate-limited like other writes;
/// an `Idempotency-Key` replays the first answer.
#[utoipa::path(
    put,
    path = "/api/v1/comments/{id}/vote",
    tag = "comments",
    operation_id = "put_vote",
    params(CommentPath, IdempotencyKeyHeader),
    request_body = VoteBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The vote counts after this vote, and the caller's vote.",
            body = VoteView, headers(("Idempotent-Replayed" = String,
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
pub async fn put_vote(
    state: web::Data<AppState>,
    req: HttpRequest,
    Reader(user): Reader,
    path: CommentIdPath,
    key: IdempotencyHeader,
    ApiJsonRaw(body, raw): ApiJsonRaw<VoteBody>,
) -> Result<HttpResponse, ApiError> {
    let vote = Vote::parse(&body.vote)
        .ok_or_else(|| ApiError::validation("vote", "must be up or down"))?;
    let idempotent = key.request(&req, Some(&user), &raw);
    let outcome = votes::set(&state.db, &user, &path, Some(vote), idempotent.as_ref()).await?;
    Ok(match outcome {
        Outcome::Done(view) => HttpResponse::Ok().json(view),
        Outcome::Replay(stored) => replay(stored),
    })
}

/// `DELETE /api/v1/comments/{id}/vote`: 200 with the votes and `my_vote: null`, also
/// when the caller had not voted.
#[utoipa::path(
    delete,
    path = "/api/v1/comments/{id}/vote",
    tag = "comments",
    operation_id = "delete_vote",
    params(CommentPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The vote counts without the caller's vote.", body = VoteView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn delete_vote(
    state: web::Data<AppState>,
    Reader(user): Reader,
    path: CommentIdPath,
) -> Result<HttpResponse, ApiError> {
    match votes::set(&state.db, &user, &path, None, None).await? {
        Outcome::Done(view) => Ok(HttpResponse::Ok().json(view)),
        Outcome::Replay(stored) => Ok(replay(stored)),
    }
}

/// `limit` and `min_count` of the top list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TopParams {
    /// How many articles.
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<i64>,
    /// Only articles with at least this many ratings (an article never rated is never
    /// listed).
    #[param(minimum = 0, default = 0)]
    pub min_count: Option<i64>,
}

/// `GET /api/v1/ratings/top`: the best-rated articles by Bayesian average.
///
/// Public. Score `(C·m + sum) / (C + count)`, `m` the mean of all the site's ratings,
/// `C` the setting `rating_prior_weight`; ranked by the exact score, shown rounded
/// half-up to 2 decimals; ties by more ratings, then article id. Up to 60 s old.
#[utoipa::path(
    get,
    path = "/api/v1/ratings/top",
    tag = "ratings",
    operation_id = "get_top_ratings",
    params(TopParams),
    responses(
        (status = 200, description = "The top-rated articles and the prior.", body = TopList),
        (status = 400, response = BadRequest),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn top(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let p = parse_query::<TopParams>(req.query_string())?;
    let limit = match p.limit {
        None => 20,
        Some(n @ 1..=100) => n as u64,
        Some(_) => return Err(bad_query(FieldError::new("limit", "must be from 1 to 100"))),
    };
    let min_count = match p.min_count {
        None => 0,
        Some(n) if n >= 0 => n,
        Some(_) => return Err(bad_query(FieldError::new("min_count", "must be 0 or more"))),
    };
    let weight = state
        .policies
        .get(&state.db.conn)
        .await?
        .policy
        .rating_prior_weight;
    let key = (limit, min_count, weight);
    let body = match state.top.get(key) {
        Some(body) => body,
        None => {
            let read_at = Instant::now();
            let list = top::top(&state.db.conn, weight, limit, min_count).await?;
            let body = web::Bytes::from(
                serde_json::to_vec(&list).map_err(|e| ApiError::Internal(e.to_string()))?,
            );
            state.top.put(key, read_at, body.clone());
            body
        }
    };
    Ok(HttpResponse::Ok()
        .content_type(json_content_type())
        .body(body))
}
