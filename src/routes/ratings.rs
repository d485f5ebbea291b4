use actix_web::{
    http::header::{self, HeaderValue},
    web, HttpRequest, HttpResponse,
};
use serde::Deserialize;
use serde_json::json;
use validator::Validate;

use super::extract::{article_id, bad_query, replay, ApiJsonRaw, IdempotencyHeader};
use crate::{
    auth::Reader,
    domain::{Aggregate, ArticleId, FieldError, Stars},
    error::ApiError,
    service::{
        idempotency::Outcome,
        ratings::{self, AggregateView},
    },
    startup::AppState,
};

/// Seconds a shared cache may keep an aggregate.
pub const AGGREGATE_MAX_AGE: u32 = 10;

#[derive(Debug, Deserialize, Validate)]
pub struct RateBody {
    #[validate(range(min = 1, max = 5, message = "must be a whole number from 1 to 5"))]
    pub stars: i64,
}

/// `PUT /api/v1/articles/{article_id}/ratings/me`: 201 on the first rating, 200 on a change.
/// With an `Idempotency-Key`, a repeat of the same request replays the first response.
pub async fn put_mine(
    state: web::Data<AppState>,
    req: HttpRequest,
    Reader(user): Reader,
    path: web::Path<String>,
    key: IdempotencyHeader,
    ApiJsonRaw(body, raw): ApiJsonRaw<RateBody>,
) -> Result<HttpResponse, ApiError> {
    let id = article_id(&path)?;
    let stars = Stars::try_from(body.stars)?;
    let idempotent = key.request(&req, Some(&user), &raw);
    let outcome = ratings::put(
        &state.db,
        &user,
        &id,
        stars,
        state.settings.auto_create_articles,
        idempotent.as_ref(),
    )
    .await?;
    Ok(match outcome {
        Outcome::Done((view, true)) => HttpResponse::Created().json(view),
        Outcome::Done((view, false)) => HttpResponse::Ok().json(view),
        Outcome::Replay(stored) => replay(stored),
    })
}

/// `GET /api/v1/articles/{article_id}/ratings/me`.
pub async fn get_mine(
    state: web::Data<AppState>,
    Reader(user): Reader,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = article_id(&path)?;
    match ratings::get(&state.db, &user, &id).await? {
        Some(view) => Ok(HttpResponse::Ok().json(view)),
        None => Err(ApiError::not_found("rating")),
    }
}

/// `DELETE /api/v1/articles/{article_id}/ratings/me`: 204, also when there was none.
pub async fn delete_mine(
    state: web::Data<AppState>,
    Reader(user): Reader,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = article_id(&path)?;
    ratings::delete(&state.db, &user, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

fn wants_json_ld(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|part| part.split(';').next().unwrap_or("").trim() == "application/ld+json")
        })
}

/// RFC 9110 weak comparison of `If-None-Match` against our tag.
fn matches_etag(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// `GET /api/v1/articles/{article_id}/rating`: the aggregate, as JSON or schema.org JSON-LD.
pub async fn aggregate(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = article_id(&path)?;
    let agg = ratings::aggregate(&state.db.conn, &id).await?;
    aggregate_response(&req, &id, agg)
}

fn aggregate_response(
    req: &HttpRequest,
    id: &ArticleId,
    agg: Aggregate,
) -> Result<HttpResponse, ApiError> {
    let ld = wants_json_ld(req);
    let etag = agg.etag(id.as_str(), if ld { "ld" } else { "j" });
    let mut res = if matches_etag(req, &etag) {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, etag.as_str()))
        .insert_header((
            header::CACHE_CONTROL,
            format!("public, max-age={AGGREGATE_MAX_AGE}"),
        ))
        .insert_header((header::VARY, HeaderValue::from_static("Accept")));
    if matches_etag(req, &etag) {
        return Ok(res.finish());
    }
    if !ld {
        return Ok(res.json(AggregateView::new(id.as_str(), agg)));
    }
    let Some(average) = agg.average() else {
        return Err(ApiError::NotFound(
            "no ratings yet, so no AggregateRating".into(),
        ));
    };
    let body = json!({
        "@context": "https://schema.org",
        "@type": "AggregateRating",
        "ratingValue": average,
        "ratingCount": agg.count(),
        "reviewCount": agg.count(),
        "bestRating": 5,
        "worstRating": 1,
    });
    Ok(res
        .content_type("application/ld+json")
        .body(body.to_string()))
}

/// `GET /api/v1/ratings?article_id=a&article_id=b`: 1–100 aggregates, in the order asked.
pub async fn batch(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let mut ids = vec![];
    for (key, value) in form_urlencoded::parse(req.query_string().as_bytes()) {
        if key == "article_id" {
            ids.push(ArticleId::parse(&value).map_err(bad_query)?);
        }
    }
    if ids.is_empty() || ids.len() > 100 {
        return Err(bad_query(FieldError::new(
            "article_id",
            "give 1 to 100 article ids",
        )));
    }
    let items = ratings::aggregates(&state.db.conn, &ids).await?;
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}
