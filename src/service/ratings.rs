//! Ratings: one per user per article, counters kept on the article in the same
//! transaction as the rating row.

use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Expr, ExprTrait, LockType, OnConflict},
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter,
    QuerySelect, Statement,
};
use serde::Serialize;

use super::{
    articles,
    db::Db,
    idempotency::{self, IdempotentRequest, Outcome},
};
use crate::{
    auth::User,
    domain::{Aggregate, ArticleId, Stars},
    entity::{article, rating},
    error::ApiError,
};

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

/// A caller's own rating with the article's aggregate after it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MyRating {
    pub article_id: String,
    #[schema(minimum = 1, maximum = 5)]
    pub stars: i16,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub rating: AggregateView,
}

fn star_column(stars: Stars) -> article::Column {
    match stars.get() {
        1 => article::Column::Stars1,
        2 => article::Column::Stars2,
        3 => article::Column::Stars3,
        4 => article::Column::Stars4,
        _ => article::Column::Stars5,
    }
}

/// Adds `sign` (±1) ratings of `stars` to the article's counters; returns the article
/// row as this update left it (`RETURNING`, so no second read is needed).
async fn count(
    conn: &impl ConnectionTrait,
    article_id: &str,
    stars: Stars,
    sign: i64,
) -> Result<Option<article::Model>, ApiError> {
    let col = star_column(stars);
    let updated = article::Entity::update_many()
        .col_expr(col, Expr::col(col).add(sign))
        .col_expr(
            article::Column::RatingCount,
            Expr::col(article::Column::RatingCount).add(sign),
        )
        .col_expr(
            article::Column::RatingSum,
            Expr::col(article::Column::RatingSum).add(sign * i64::from(stars.get())),
        )
        .filter(article::Column::Id.eq(article_id))
        .exec_with_returning(conn)
        .await?;
    Ok(updated.into_iter().next())
}

/// PostgreSQL: a first rating's INSERT and its article's counters in ONE statement (a
/// data-modifying CTE, one round trip instead of two), returning the article row as it
/// left it. `None` when the user had rated the article already: nothing was written.
async fn insert_counted(
    tx: &impl ConnectionTrait,
    article_id: &str,
    user_id: &str,
    stars: Stars,
    now: DateTime<Utc>,
) -> Result<Option<article::Model>, ApiError> {
    use sea_orm::{EntityName, Iden, IdenStatic};
    let (ratings, articles) = (rating::Entity.table_name(), article::Entity.table_name());
    let col = star_column(stars).as_str();
    let (count, sum) = (
        article::Column::RatingCount.as_str(),
        article::Column::RatingSum.as_str(),
    );
    let r = |c: rating::Column| c.to_string();
    let sql = format!(
        r#"WITH ins AS (
  INSERT INTO "{ratings}" ("{}", "{}", "{}", "{}", "{}") VALUES ($1, $2, $3, $4, $4)
  ON CONFLICT ("{}", "{}") DO NOTHING RETURNING 1
)
UPDATE "{articles}" SET "{col}" = "{col}" + 1, "{count}" = "{count}" + 1, "{sum}" = "{sum}" + $3
FROM ins WHERE "{articles}"."{}" = $1
RETURNING "{articles}".*"#,
        r(rating::Column::ArticleId),
        r(rating::Column::UserId),
        r(rating::Column::Stars),
        r(rating::Column::CreatedAt),
        r(rating::Column::UpdatedAt),
        r(rating::Column::ArticleId),
        r(rating::Column::UserId),
        article::Column::Id.as_str(),
    );
    let stmt = Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        [
            article_id.into(),
            user_id.into(),
            i16::from(stars.get()).into(),
            now.into(),
        ],
    );
    match tx.query_one_raw(stmt).await? {
        Some(row) => Ok(Some(article::Model::from_query_result(&row, "")?)),
        None => Ok(None),
    }
}

fn stored_stars(r: &rating::Model) -> Result<Stars, ApiError> {
    Stars::try_from(i64::from(r.stars))
        .map_err(|_| ApiError::Internal(format!("stored rating out of range: {}", r.stars)))
}

async fn my_rating(
    conn: &impl ConnectionTrait,
    article_id: &ArticleId,
    r: rating::Model,
) -> Result<MyRating, ApiError> {
    let a = articles::find(conn, article_id).await?;
    Ok(rating_view(article_id, r, a.as_ref()))
}

fn rating_view(article_id: &ArticleId, r: rating::Model, a: Option<&article::Model>) -> MyRating {
    MyRating {
        article_id: r.article_id,
        stars: r.stars,
        created_at: r.created_at,
        updated_at: r.updated_at,
        rating: AggregateView::new(article_id.as_str(), articles::aggregate_of(a)),
    }
}

/// Rates an article. Returns the rating and whether it was the user's first. Under an
/// idempotency key, a request already done is replayed and nothing is written.
/// Group-committed (`Db::write`): answered once the rating is durable.
pub async fn put(
    db: &Db,
    user: &User,
    article_id: &ArticleId,
    stars: Stars,
    auto_create: bool,
    idempotency: Option<&IdempotentRequest>,
) -> Result<Outcome<(MyRating, bool)>, ApiError> {
    let (user, article_id, idempotency) = (user.clone(), article_id.clone(), idempotency.cloned());
    db.write(move |tx| {
        let (user, article_id, idempotency) =
            (user.clone(), article_id.clone(), idempotency.clone());
        Box::pin(async move {
            put_in(
                tx,
                &user,
                &article_id,
                stars,
                auto_create,
                idempotency.as_ref(),
            )
            .await
        })
    })
    .await
}

/// `put` inside the caller's write transaction.
pub async fn put_in(
    tx: &impl ConnectionTrait,
    user: &User,
    article_id: &ArticleId,
    stars: Stars,
    auto_create: bool,
    idempotency: Option<&IdempotentRequest>,
) -> Result<Outcome<(MyRating, bool)>, ApiError> {
    if let Some(req) = idempotency {
        if let Some(stored) = idempotency::claim(tx, req).await? {
            return Ok(Outcome::Replay(stored));
        }
    }
    articles::for_user_write(tx, article_id, &user.id, auto_create, None).await?;
    let now = super::now();
    let row = rating::ActiveModel {
        article_id: Set(article_id.to_string()),
        user_id: Set(user.id.clone()),
        stars: Set(i16::from(stars.get())),
        created_at: Set(now),
        updated_at: Set(now),
    };
    // Insert-or-nothing first: a concurrent first rating by the same user waits on the
    // unique key and then takes the update path, so the counters are never doubled.
    let (created, mut article_after) = if tx.get_database_backend() == DbBackend::Postgres {
        match insert_counted(tx, article_id.as_str(), &user.id, stars, now).await? {
            Some(article) => (true, Some(article)),
            None => (false, None),
        }
    } else {
        let inserted = rating::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([rating::Column::ArticleId, rating::Column::UserId])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(tx)
            .await?;
        if inserted > 0 {
            (true, count(tx, article_id.as_str(), stars, 1).await?)
        } else {
            (false, None)
        }
    };
    let mut created_at = now;
    if !created {
        let old = rating::Entity::find_by_id((article_id.to_string(), user.id.clone()))
            .lock(LockType::NoKeyUpdate)
            .one(tx)
            .await?
            .ok_or_else(|| ApiError::Internal("rating vanished during update".into()))?;
        let old_stars = stored_stars(&old)?;
        created_at = old.created_at;
        rating::Entity::update_many()
            .col_expr(rating::Column::Stars, Expr::value(i16::from(stars.get())))
            .col_expr(rating::Column::UpdatedAt, Expr::value(now))
            .filter(rating::Column::ArticleId.eq(article_id.as_str()))
            .filter(rating::Column::UserId.eq(&user.id))
            .exec(tx)
            .await?;
        if old_stars != stars {
            count(tx, article_id.as_str(), old_stars, -1).await?;
            article_after = count(tx, article_id.as_str(), stars, 1).await?;
        }
    }
    // The row as just written: no need to read it back.
    let r = rating::Model {
        article_id: article_id.to_string(),
        user_id: user.id.clone(),
        stars: i16::from(stars.get()),
        created_at,
        updated_at: now,
    };
    let view = match article_after {
        Some(a) => rating_view(article_id, r, Some(&a)),
        // The same stars again: the counters did not move, so read them.
        None => my_rating(tx, article_id, r).await?,
    };
    if let Some(req) = idempotency {
        idempotency::complete(tx, req, if created { 201 } else { 200 }, &view).await?;
    }
    Ok(Outcome::Done((view, created)))
}

/// The caller's rating of an article, if any.
pub async fn get(
    db: &Db,
    user: &User,
    article_id: &ArticleId,
) -> Result<Option<MyRating>, ApiError> {
    match rating::Entity::find_by_id((article_id.to_string(), user.id.clone()))
        .one(&db.conn)
        .await?
    {
        Some(r) => Ok(Some(my_rating(&db.conn, article_id, r).await?)),
        None => Ok(None),
    }
}

/// Removes the caller's rating (nothing to do when there is none). Group-committed.
pub async fn delete(db: &Db, user: &User, article_id: &ArticleId) -> Result<(), ApiError> {
    let (user_id, article_id) = (user.id.clone(), article_id.clone());
    db.write(move |tx| {
        let (user_id, article_id) = (user_id.clone(), article_id.clone());
        Box::pin(async move { delete_in(tx, &user_id, &article_id).await })
    })
    .await
}

/// `delete` inside the caller's write transaction.
pub async fn delete_in(
    tx: &impl ConnectionTrait,
    user_id: &str,
    article_id: &ArticleId,
) -> Result<(), ApiError> {
    let old = rating::Entity::find_by_id((article_id.to_string(), user_id.to_owned()))
        .lock(LockType::NoKeyUpdate)
        .one(tx)
        .await?;
    if let Some(old) = old {
        let stars = stored_stars(&old)?;
        rating::Entity::delete_many()
            .filter(rating::Column::ArticleId.eq(article_id.as_str()))
            .filter(rating::Column::UserId.eq(user_id))
            .exec(tx)
            .await?;
        count(tx, article_id.as_str(), stars, -1).await?;
    }
    Ok(())
}

/// The aggregate of one article (zeros when it was never rated or does not exist).
pub async fn aggregate(
    conn: &impl ConnectionTrait,
    article_id: &ArticleId,
) -> Result<Aggregate, ApiError> {
    Ok(articles::aggregate_of(
        articles::find(conn, article_id).await?.as_ref(),
    ))
}

/// Aggregates for several articles, answered in the order asked (duplicates included).
pub async fn aggregates(
    conn: &impl ConnectionTrait,
    ids: &[ArticleId],
) -> Result<Vec<AggregateView>, ApiError> {
    let mut unique: Vec<&str> = ids.iter().map(ArticleId::as_str).collect();
    unique.sort_unstable();
    unique.dedup();
    let found = articles::find_many(conn, &unique).await?;
    Ok(ids
        .iter()
        .map(|id| {
            let a = found.iter().find(|a| a.id == id.as_str());
            AggregateView::new(id.as_str(), articles::aggregate_of(a))
        })
        .collect())
}
