//! Articles: created on first write (unless turned off), summaries, admin registration.

use sea_orm::{
    sea_query::{Expr, OnConflict, SelectStatement},
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QuerySelect,
    QueryTrait,
};
use serde::Serialize;

use crate::{
    domain::{Aggregate, ArticleId},
    entity::article,
    error::ApiError,
};

pub async fn find(
    conn: &impl ConnectionTrait,
    id: &ArticleId,
) -> Result<Option<article::Model>, ApiError> {
    Ok(article::Entity::find_by_id(id.as_str()).one(conn).await?)
}

pub async fn find_many(
    conn: &impl ConnectionTrait,
    ids: &[&str],
) -> Result<Vec<article::Model>, ApiError> {
    Ok(article::Entity::find()
        .filter(article::Column::Id.is_in(ids.iter().copied()))
        .all(conn)
        .await?)
}

/// What a user's write checks before it writes, read in one round trip: 403 `banned`
/// while `user_id` has a ban in force, then the article as [`for_write`] gives it, and
/// whether the rows `also` selects exist (`None` when not asked). An unknown article
/// falls back to one query each (it is then created, once).
pub async fn for_user_write(
    conn: &impl ConnectionTrait,
    id: &ArticleId,
    user_id: &str,
    auto_create: bool,
    also: Option<SelectStatement>,
) -> Result<(article::Model, Option<bool>), ApiError> {
    let mut query = article::Entity::find_by_id(id.as_str()).expr_as(
        Expr::exists(super::moderation::bans::bans_in_force(user_id)),
        "banned",
    );
    if let Some(sub) = &also {
        query = query.expr_as(Expr::exists(sub.clone()), "also");
    }
    let row = conn
        .query_one_raw(query.build(conn.get_database_backend()))
        .await?;
    let Some(row) = row else {
        super::moderation::bans::ensure_not_banned(conn, user_id).await?;
        let article = for_write(conn, id, auto_create).await?;
        let also = match also {
            Some(sub) => Some(super::exists(conn, sub).await?),
            None => None,
        };
        return Ok((article, also));
    };
    if row.try_get::<bool>("", "banned")? {
        return Err(ApiError::Banned);
    }
    let article = article::Model::from_query_result(&row, "")?;
    let also = match also {
        Some(_) => Some(row.try_get::<bool>("", "also")?),
        None => None,
    };
    Ok((article, also))
}

/// The article a write goes to: created now if unknown and `auto_create` is on, 404 otherwise.
pub async fn for_write(
    conn: &impl ConnectionTrait,
    id: &ArticleId,
    auto_create: bool,
) -> Result<article::Model, ApiError> {
    if let Some(a) = find(conn, id).await? {
        return Ok(a);
    }
    if !auto_create {
        return Err(ApiError::not_found("article"));
    }
    let now = super::now();
    let row = article::ActiveModel {
        id: Set(id.as_str().to_owned()),
        title: Set(None),
        url: Set(None),
        comments_open: Set(true),
        moderation_mode: Set(None),
        registered: Set(false),
        rating_count: Set(0),
        rating_sum: Set(0),
        stars_1: Set(0),
        stars_2: Set(0),
        stars_3: Set(0),
        stars_4: Set(0),
        stars_5: Set(0),
        comment_count: Set(0),
        top_level_count: Set(0),
        review_count: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    };
    // Two first writes may race to create it; either insert is fine.
    article::Entity::insert(row)
        .on_conflict(
            OnConflict::column(article::Column::Id)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    find(conn, id)
        .await?
        .ok_or_else(|| ApiError::Internal("article vanished after insert".into()))
}

pub fn aggregate_of(a: Option<&article::Model>) -> Aggregate {
    match a {
        Some(a) => Aggregate {
            histogram: [a.stars_1, a.stars_2, a.stars_3, a.stars_4, a.stars_5],
        },
        None => Aggregate::default(),
    }
}

/// `GET /api/v1/articles/{id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ArticleSummary {
    pub article_id: String,
    #[schema(required = true)]
    pub title: Option<String>,
    #[schema(required = true)]
    pub url: Option<String>,
    pub comments_open: bool,
    /// Every visible comment: top-level, replies and reviews.
    #[schema(minimum = 0)]
    pub comment_count: i64,
    /// Visible reviews.
    #[schema(minimum = 0)]
    pub review_count: i64,
    pub rating: AggregateView,
}

/// The public summary; an unknown article reads as empty and open while articles are
/// created on demand, and is 404 when only registered articles exist.
pub async fn summary(
    conn: &impl ConnectionTrait,
    id: &ArticleId,
    auto_create: bool,
) -> Result<ArticleSummary, ApiError> {
    let a = find(conn, id).await?;
    if a.is_none() && !auto_create {
        return Err(ApiError::not_found("article"));
    }
    let rating = AggregateView::new(id.as_str(), aggregate_of(a.as_ref()));
    Ok(match a {
        Some(a) => ArticleSummary {
            article_id: a.id,
            title: a.title,
            url: a.url,
            comments_open: a.comments_open,
            comment_count: a.comment_count,
            review_count: a.review_count,
            rating,
        },
        None => ArticleSummary {
            article_id: id.to_string(),
            title: None,
            url: None,
            comments_open: true,
            comment_count: 0,
            review_count: 0,
            rating,
        },
    })
}

/// The public aggregate of an article's ratings (count 0 for an article never rated).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Aggregate, example = json!({"article_id": "why-back-cracks", "count": 47,
    "average": 4.96, "display": "5.0 (47 reviews)",
    "histogram": {"1": 0, "2": 0, "3": 0, "4": 2, "5": 45}}))]
pub struct AggregateView {
    pub article_id: String,
    #[schema(minimum = 0)]
    pub count: i64,
    /// The exact mean rounded half-up to 2 decimals; `null` when `count` is 0.
    #[schema(minimum = 1, maximum = 5, required = true)]
    pub average: Option<f64>,
    /// The exact mean rounded half-up to one decimal with the count, e.g.
    /// `4.7 (3 reviews)`, `4.0 (1 review)`; `No reviews yet` at 0.
    pub display: String,
    pub histogram: Histogram,
}

/// How many ratings gave each number of stars.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Histogram {
    #[serde(rename = "1")]
    #[schema(minimum = 0)]
    pub one: i64,
    #[serde(rename = "2")]
    #[schema(minimum = 0)]
    pub two: i64,
    #[serde(rename = "3")]
    #[schema(minimum = 0)]
    pub three: i64,
    #[serde(rename = "4")]
    #[schema(minimum = 0)]
    pub four: i64,
    #[serde(rename = "5")]
    #[schema(minimum = 0)]
    pub five: i64,
}

impl AggregateView {
    pub fn new(article_id: &str, a: Aggregate) -> Self {
        let [one, two, three, four, five] = a.histogram;
        AggregateView {
            article_id: article_id.to_owned(),
            count: a.count(),
            average: a.average(),
            display: a.display(),
            histogram: Histogram {
                one,
                two,
                three,
                four,
                five,
            },
        }
    }
}
