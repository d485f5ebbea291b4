use std::{
    borrow::Cow,
    collections::{hash_map::Entry, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use actix_web::{
    http::{
        header::{self, HeaderValue},
        StatusCode,
    },
    web, HttpRequest, HttpResponse,
};
use serde::{de::Error as _, Deserialize, Deserializer, Serialize};
use validator::Validate;

use super::extract::{
    app_state, article_id, bad_article_id, bad_query, replay, worker_copies, ApiJsonRaw,
    IdempotencyHeader,
};
use super::openapi::{
    ArticleIdSchema, ArticlePath, BadRequest, Conflict, Forbidden, HeadersTooLarge,
    IdempotencyKeyHeader, IfNoneMatchHeader, NotFound, PayloadTooLarge, RateLimited, Unauthorized,
    Unavailable, ValidationFailed,
};
use crate::{
    auth::Reader,
    domain::{Aggregate, ArticleId, CommentBody, FieldError, Stars},
    error::ApiError,
    service::{
        aggregate_cache::WorkerCopy,
        articles,
        idempotency::Outcome,
        ratings::{self, AggregateView, MyRating},
        reviews::ReviewChange,
    },
    startup::AppState,
};

/// Seconds a shared cache may keep an aggregate.
pub const AGGREGATE_MAX_AGE: u32 = 10;

/// The aggregate's `Cache-Control`: `AGGREGATE_MAX_AGE` written out (a test checks).
const AGGREGATE_CACHE_CONTROL: &str = "public, max-age=10";

/// A rating: whole stars, 1–5, maybe with a review.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[schema(as = RatingInput, example = json!({"stars": 4, "review": "Clear and practical."}))]
pub struct RateBody {
    #[validate(range(min = 1, max = 5, message = "must be a whole number from 1 to 5"))]
    #[serde(deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 5)]
    pub stars: i64,
    /// The review's text (the comment body rules: 1–5000 characters after trimming, no
    /// control characters but newline and tab); `null` removes the review and keeps the
    /// stars; absent leaves the review as it is (its stars following the rating).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 5000)]
    pub review: Option<Option<String>>,
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or a value.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A JSON number with no fractional part: `4`, or `4.0`, which JSON Schema's `integer`
/// (and so the OpenAPI spec) admits as well. `4.5`, strings and the like are refused.
fn whole_number<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    match n.as_f64() {
        // Beyond 2^53 a float is not an exact whole number any more; no star count is.
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        _ => Err(D::Error::custom("must be a whole number from 1 to 5")),
    }
}

/// `PUT /api/v1/articles/{article_id}/ratings/me`: 201 on the first rating, 200 on a change.
/// With an `Idempotency-Key`, a repeat of the same request replays the first response.
///
/// One rating per reader per article; rating again replaces the old one. Guests can
/// never rate. Banned users get 403 `banned`. `review` writes the rating's text as a
/// comment of kind `review` (moderated like any comment; 403 `comments_closed` on a
/// closed article), `null` removes it; the answer carries it as `review`.
#[utoipa::path(
    put,
    path = "/api/v1/articles/{article_id}/ratings/me",
    tag = "ratings",
    operation_id = "put_my_rating",
    params(ArticlePath, IdempotencyKeyHeader),
    request_body = RateBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The rating changed (or a replay of such an answer).",
            body = MyRating, headers(("Idempotent-Replayed" = String,
                description = "`true` when this is the stored answer to an earlier identical request."))),
        (status = 201, description = "The first rating of this reader on this article (or a replay).",
            body = MyRating, headers(("Idempotent-Replayed" = String,
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
    let review = match body.review {
        None => ReviewChange::Keep,
        Some(None) => ReviewChange::Remove,
        Some(Some(text)) => ReviewChange::Write(
            CommentBody::parse(&text)
                .map_err(|e| ApiError::Validation(vec![FieldError::new("review", e.message)]))?,
        ),
    };
    let idempotent = key.request(&req, Some(&user), &raw);
    let outcome = ratings::put_with_review(
        &state.db,
        &state.policies,
        &user,
        &id,
        stars,
        review,
        state.settings.auto_create_articles,
        idempotent.as_ref(),
    )
    .await?;
    // The cached aggregate was invalidated by the write's event (`service::events`).
    Ok(match outcome {
        Outcome::Done((view, true)) => HttpResponse::Created().json(view),
        Outcome::Done((view, false)) => HttpResponse::Ok().json(view),
        Outcome::Replay(stored) => replay(stored),
    })
}

/// `GET /api/v1/articles/{article_id}/ratings/me`: the caller's own rating, or 404.
#[utoipa::path(
    get,
    path = "/api/v1/articles/{article_id}/ratings/me",
    tag = "ratings",
    operation_id = "get_my_rating",
    params(ArticlePath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's rating and the article's aggregate.", body = MyRating),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
)]
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
#[utoipa::path(
    delete,
    path = "/api/v1/articles/{article_id}/ratings/me",
    tag = "ratings",
    operation_id = "delete_my_rating",
    params(ArticlePath),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "No rating of the caller's remains."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
        (status = 503, response = Unavailable),
    ),
)]
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
fn matches_etag(req: &HttpRequest, etag: &HeaderValue) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t.as_bytes() == etag.as_bytes())
}

/// The aggregate as a schema.org `AggregateRating`, for a page's structured data.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"@context": "https://schema.org", "@type": "AggregateRating",
    "bestRating": 5, "ratingCount": 47, "ratingValue": 4.96, "reviewCount": 47, "worstRating": 1}))]
pub struct AggregateRating {
    /// Always `https://schema.org`.
    #[serde(rename = "@context")]
    pub context: &'static str,
    /// Always `AggregateRating`.
    #[serde(rename = "@type")]
    pub kind: &'static str,
    #[schema(minimum = 5, maximum = 5)]
    pub best_rating: u8,
    #[schema(minimum = 1)]
    pub rating_count: i64,
    /// The mean rounded half-up to 2 decimals.
    #[schema(minimum = 1, maximum = 5)]
    pub rating_value: f64,
    #[schema(minimum = 1)]
    pub review_count: i64,
    #[schema(minimum = 1, maximum = 1)]
    pub worst_rating: u8,
}

/// `GET /api/v1/articles/{article_id}/rating`: the aggregate, as JSON or schema.org JSON-LD.
///
/// Public. An article never rated (or unknown) gives count 0, not 404. Sends a strong
/// `ETag` and `Cache-Control: public, max-age=10`; `If-None-Match` with the current tag
/// gives 304 with no body. With `Accept: application/ld+json` the body is a schema.org
/// `AggregateRating` (an article with no ratings has none: 404 for this form only).
#[utoipa::path(
    get,
    path = "/api/v1/articles/{article_id}/rating",
    tag = "ratings",
    operation_id = "get_aggregate",
    params(
        ArticlePath,
        IfNoneMatchHeader,
    ),
    responses(
        (status = 200, description = "The aggregate: JSON by default, schema.org JSON-LD with `Accept: application/ld+json`.",
            content(
                (AggregateView = "application/json"),
                (AggregateRating = "application/ld+json"),
            ),
            headers(
                ("ETag" = String, description = "Strong tag of this aggregate in this form."),
                ("Cache-Control" = String, description = "`public, max-age=10`."),
                ("Vary" = String, description = "`Accept`."),
            )),
        (status = 304, description = "`If-None-Match` named the current tag; no body.",
            headers(
                ("ETag" = String, description = "The current tag."),
                ("Cache-Control" = String, description = "`public, max-age=10`."),
                ("Vary" = String, description = "`Accept`."),
            )),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn aggregate(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    // The segment as routed, checked in place: a hit needs no owned id. (It differs from
    // `web::Path<String>`'s only in `%`, `/` and `+`, which no valid id has.) The state
    // is looked up rather than extracted: one extractor fewer on the hottest route.
    let state = app_state(&req)?;
    let raw = req.match_info().query("article_id");
    ArticleId::check(raw).map_err(bad_article_id)?;
    match state.aggregates.get_copy(worker_copies(&req)?, raw) {
        Ok((hit, _)) => aggregate_response(&req, &hit),
        Err(ticket) => {
            let id = article_id(raw)?;
            // The ticket was taken before this read, so a write committed meanwhile
            // makes the fill a no-op instead of caching the older value.
            let agg = ratings::aggregate(&state.db.conn, &id).await?;
            let entry = Arc::new(CachedAggregate::new(id.as_str(), agg)?);
            state.aggregates.fill(ticket, id.as_str(), entry.clone());
            aggregate_response(&req, &entry)
        }
    }
}

/// What `GET …/rating` answers for one article in either form, serialised once per
/// database read and then served from [`AppState::aggregates`].
pub struct CachedAggregate {
    json: web::Bytes,
    json_etag: HeaderValue,
    /// The schema.org form; `None` when there are no ratings (that form is then 404).
    ld: Option<web::Bytes>,
    ld_etag: HeaderValue,
}

impl CachedAggregate {
    pub fn new(id: &str, agg: Aggregate) -> Result<Self, ApiError> {
        let etag = |variant| {
            HeaderValue::try_from(agg.etag(id, variant))
                .map_err(|e| ApiError::Internal(format!("aggregate etag: {e}")))
        };
        let json = serde_json::to_vec(&AggregateView::new(id, agg))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let ld = match agg.average() {
            None => None,
            Some(average) => {
                let body = AggregateRating {
                    context: "https://schema.org",
                    kind: "AggregateRating",
                    best_rating: 5,
                    rating_count: agg.count(),
                    rating_value: average,
                    review_count: agg.count(),
                    worst_rating: 1,
                };
                let body =
                    serde_json::to_vec(&body).map_err(|e| ApiError::Internal(e.to_string()))?;
                Some(body.into())
            }
        };
        Ok(CachedAggregate {
            json: json.into(),
            json_etag: etag("j")?,
            ld,
            ld_etag: etag("ld")?,
        })
    }
}

impl WorkerCopy for CachedAggregate {
    fn worker_copy(&self) -> Self {
        CachedAggregate {
            json: self.json.worker_copy(),
            json_etag: copy_header(&self.json_etag),
            ld: self.ld.as_ref().map(WorkerCopy::worker_copy),
            ld_etag: copy_header(&self.ld_etag),
        }
    }
}

/// The cached pages (`AppState::pages`) are bodies.
impl WorkerCopy for web::Bytes {
    fn worker_copy(&self) -> Self {
        web::Bytes::copy_from_slice(self)
    }
}

fn copy_header(v: &HeaderValue) -> HeaderValue {
    // The bytes of a valid header value are valid.
    HeaderValue::from_bytes(v.as_bytes()).unwrap_or_else(|_| v.clone())
}

fn aggregate_response(
    req: &HttpRequest,
    entry: &CachedAggregate,
) -> Result<HttpResponse, ApiError> {
    let ld = wants_json_ld(req);
    let etag = if ld { &entry.ld_etag } else { &entry.json_etag };
    // The headers go straight into the new response's map, appended since none is there
    // yet: the builder's `insert_header` converts each (name, value) pair first, and
    // `insert` hands back what it replaced, which is most of their cost on a cache hit.
    let mut res = if matches_etag(req, etag) {
        HttpResponse::new(StatusCode::NOT_MODIFIED)
    } else if !ld {
        let mut res = HttpResponse::with_body(StatusCode::OK, entry.json.clone());
        res.headers_mut()
            .append(header::CONTENT_TYPE, super::json_content_type());
        res.map_into_boxed_body()
    } else {
        let Some(body) = &entry.ld else {
            return Err(ApiError::NotFound(
                "no ratings yet, so no AggregateRating".into(),
            ));
        };
        let mut res = HttpResponse::with_body(StatusCode::OK, body.clone());
        res.headers_mut().append(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/ld+json"),
        );
        res.map_into_boxed_body()
    };
    let headers = res.headers_mut();
    headers.append(header::ETAG, etag.clone());
    headers.append(
        header::CACHE_CONTROL,
        HeaderValue::from_static(AGGREGATE_CACHE_CONTROL),
    );
    headers.append(header::VARY, HeaderValue::from_static("Accept"));
    Ok(res)
}

/// The answer of `GET /api/v1/ratings`: one aggregate per id asked, in that order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AggregateList {
    pub items: Vec<AggregateView>,
}

/// `GET /api/v1/ratings?article_id=a&article_id=b`: 1–100 aggregates, in the order asked.
///
/// Public, for listing pages. Duplicates are answered once each time asked.
#[utoipa::path(
    get,
    path = "/api/v1/ratings",
    tag = "ratings",
    operation_id = "get_aggregates",
    params(
        ("article_id" = Vec<ArticleIdSchema>, Query, style = Form, explode,
            description = "1–100 article ids, the parameter repeated (`article_id=a&article_id=b`); \
                more is 400 naming `article_id`, and a query string too long for the server to \
                read (over 128 KiB) is 431 `headers_too_large`.",
            min_items = 1, max_items = 100),
    ),
    responses(
        (status = 200, description = "The aggregates in the order asked.", body = AggregateList),
        (status = 400, response = BadRequest),
        (status = 431, response = HeadersTooLarge),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn batch(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    // The whole body is kept too (in the page cache, by the raw query), under the
    // aggregates' version: any rating write through this instance retires it, and it
    // never outlives the oldest aggregate it was built from.
    let key = format!(
        "{}|ratings|{}",
        state.aggregates.version(),
        req.query_string()
    );
    let body = match state.pages.get_copy(worker_copies(&req)?, &key) {
        Ok((hit, _)) => web::Bytes::clone(&hit),
        Err(ticket) => {
            let (body, until) = batch_body(&state, req.query_string()).await?;
            let body = web::Bytes::from(body);
            state
                .pages
                .fill_until(ticket, &key, Arc::new(body.clone()), Some(until));
            body
        }
    };
    Ok(HttpResponse::Ok()
        .content_type(super::json_content_type())
        .body(body))
}

/// The body of `GET /api/v1/ratings` for `query`, and until when it is current (when
/// the first of the cached aggregates it joins expires).
async fn batch_body(state: &AppState, query: &str) -> Result<(Vec<u8>, Instant), ApiError> {
    let ids = article_ids(query);
    for id in &ids {
        ArticleId::check(id).map_err(bad_query)?;
    }
    if ids.is_empty() || ids.len() > 100 {
        return Err(bad_query(FieldError::new(
            "article_id",
            format!("give 1 to 100 article ids (got {})", ids.len()),
        )));
    }
    // Each id looked up once, so duplicates get the same answer. Hits as they are; every
    // miss (its ticket taken now, before the read) in one query.
    let started = Instant::now();
    let mut until: Option<Instant> = None;
    let mut found: HashMap<&str, Option<Arc<CachedAggregate>>, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(ids.len(), Default::default());
    let mut misses = vec![];
    for id in &ids {
        if let Entry::Vacant(slot) = found.entry(id) {
            match state.aggregates.get_until(id) {
                Ok((hit, expires)) => {
                    until = Some(until.map_or(expires, |u| u.min(expires)));
                    slot.insert(Some(hit));
                }
                Err(ticket) => {
                    slot.insert(None);
                    misses.push((&**id, ticket));
                }
            }
        }
    }
    if !misses.is_empty() {
        // No later than the misses' own entries expire (their tickets are younger).
        let ttl = Duration::from_millis(state.settings.aggregate_cache_ttl_ms);
        let read = started + ttl;
        until = Some(until.map_or(read, |u| u.min(read)));
        let wanted: Vec<&str> = misses.iter().map(|(id, _)| *id).collect();
        let rows = articles::find_many(&state.db.conn, &wanted).await?;
        for (id, ticket) in misses {
            let row = rows.iter().find(|a| a.id == id);
            let entry = Arc::new(CachedAggregate::new(id, articles::aggregate_of(row))?);
            state.aggregates.fill(ticket, id, entry.clone());
            found.insert(id, Some(entry));
        }
    }
    let entries = ids
        .iter()
        .map(|id| {
            found
                .get(&**id)
                .and_then(Option::as_ref)
                .ok_or_else(|| ApiError::Internal(format!("no aggregate for {id}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // `{"items":[…]}` from the stored bodies, exactly what serialising `AggregateList` gives.
    let len = entries.iter().map(|e| e.json.len() + 1).sum::<usize>() + 12;
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(b"{\"items\":[");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&e.json);
    }
    body.extend_from_slice(b"]}");
    Ok((body, until.unwrap_or_else(Instant::now)))
}

/// The `article_id` values of a query string, exactly as `form_urlencoded::parse` reads
/// them. With no `%` or `+` in the query nothing needs decoding, so the values are
/// borrowed from it instead of copied.
fn article_ids(query: &str) -> Vec<Cow<'_, str>> {
    if query.bytes().any(|b| b == b'%' || b == b'+') {
        return form_urlencoded::parse(query.as_bytes())
            .filter(|(key, _)| key == "article_id")
            .map(|(_, value)| value)
            .collect();
    }
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == "article_id").then_some(Cow::Borrowed(value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn article_ids_are_read_as_form_urlencoded_reads_them() {
        for query in [
            "",
            "article_id=a",
            "article_id=a&article_id=b&article_id=a",
            "&&article_id=a&&other=1&article_id=",
            "article_id&article_id=x=y&article_idx=z&Article_id=w",
            "article_id=a%2Db&article_id=c+d&article%5Fid=e",
            "article_id=%FF&article_id=%zz",
        ] {
            let expected: Vec<String> = form_urlencoded::parse(query.as_bytes())
                .filter(|(k, _)| k == "article_id")
                .map(|(_, v)| v.into_owned())
                .collect();
            let got: Vec<String> = article_ids(query)
                .into_iter()
                .map(Cow::into_owned)
                .collect();
            assert_eq!(got, expected, "{query}");
        }
    }

    #[test]
    fn cache_control_states_the_max_age() {
        assert_eq!(
            AGGREGATE_CACHE_CONTROL,
            format!("public, max-age={AGGREGATE_MAX_AGE}")
        );
    }

    #[test]
    fn stored_bodies_are_what_serialising_the_views_gives() {
        let aggs = [
            ("a", Aggregate::default()),
            (
                "b",
                Aggregate {
                    histogram: [0, 0, 1, 1, 1],
                },
            ),
            (
                "a-long.id~x:y_z",
                Aggregate {
                    histogram: [0, 0, 0, 2, 45],
                },
            ),
        ];
        let mut bodies = vec![];
        for (id, agg) in aggs {
            let e = CachedAggregate::new(id, agg).unwrap();
            let view = AggregateView::new(id, agg);
            assert_eq!(e.json, serde_json::to_vec(&view).unwrap());
            assert_eq!(e.json_etag, agg.etag(id, "j").as_str());
            assert_eq!(e.ld_etag, agg.etag(id, "ld").as_str());
            assert_eq!(
                e.ld.is_none(),
                agg.count() == 0,
                "no JSON-LD without ratings"
            );
            bodies.push(String::from_utf8(e.json.to_vec()).unwrap());
        }
        // The batch body is the stored bodies joined: the same bytes as `AggregateList`.
        let list = AggregateList {
            items: aggs
                .iter()
                .map(|(id, a)| AggregateView::new(id, *a))
                .collect(),
        };
        assert_eq!(
            serde_json::to_string(&list).unwrap(),
            format!("{{\"items\":[{}]}}", bodies.join(","))
        );
    }
}
