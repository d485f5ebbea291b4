//! Ratings: one per user per article, counters kept on the article in the same
//! transaction as the rating row (written at the end of the group-committed batch, see
//! `write::Write::rating_changed`).

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use sea_orm::{
    sea_query::{Expr, LockType, OnConflict},
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
};
use serde::Serialize;

use super::{
    articles,
    comments::CommentView,
    idempotency::{self, IdempotentRequest, Outcome},
    reviews::{self, ReviewChange},
    settings::PolicyCache,
    write::db::{Db, Route},
    write::{self, RatingAfter},
};
use crate::{
    auth::User,
    domain::{Aggregate, ArticleId, Stars},
    entity::{article, rating},
    error::ApiError,
};

pub use super::articles::AggregateView;

/// A caller's own rating with the article's aggregate after it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MyRating {
    pub article_id: String,
    #[schema(minimum = 1, maximum = 5)]
    pub stars: i16,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub rating: AggregateView,
    /// The review written with this rating (a comment of kind `review`), or `null`.
    #[schema(required = true)]
    pub review: Option<CommentView>,
}

impl MyRating {
    /// The aggregate after this rating, from its article's histogram then.
    fn set_histogram(&mut self, histogram: [i64; 5]) {
        self.rating = AggregateView::new(&self.article_id, Aggregate { histogram });
    }
}

fn stored_stars(r: &rating::Model) -> Result<Stars, ApiError> {
    Stars::try_from(i64::from(r.stars))
        .map_err(|_| ApiError::Internal(format!("stored rating out of range: {}", r.stars)))
}

async fn my_rating(
    conn: &impl ConnectionTrait,
    user: &User,
    article_id: &ArticleId,
    r: rating::Model,
) -> Result<MyRating, ApiError> {
    let a = articles::find(conn, article_id).await?;
    let review = reviews::find(conn, user, r.review_id.as_deref()).await?;
    let mut view = rating_view(article_id, r, a.as_ref());
    view.review = review;
    Ok(view)
}

fn rating_view(article_id: &ArticleId, r: rating::Model, a: Option<&article::Model>) -> MyRating {
    MyRating {
        article_id: r.article_id,
        stars: r.stars,
        created_at: r.created_at,
        updated_at: r.updated_at,
        rating: AggregateView::new(article_id.as_str(), articles::aggregate_of(a)),
        review: None,
    }
}

/// Rates an article. Returns the rating and whether it was the user's first. Under an
/// idempotency key, a request already done is replayed and nothing is written.
/// Group-committed (`Db::write`): answered once the rating is durable, with the article's
/// aggregate as it stood right after this rating (in commit order).
pub async fn put(
    db: &Db,
    user: &User,
    article_id: &ArticleId,
    stars: Stars,
    auto_create: bool,
    idempotency: Option<&IdempotentRequest>,
) -> Result<Outcome<(MyRating, bool)>, ApiError> {
    // Leaving the review as it is never runs the rule pipeline: no policy needed.
    let policies = PolicyCache::default();
    let keep = ReviewChange::Keep;
    put_with_review(
        db,
        &policies,
        user,
        article_id,
        stars,
        keep,
        auto_create,
        idempotency,
    )
    .await
}

/// [`put`] that also writes, rewrites or removes the rating's review (`review`), which
/// the answer carries.
#[allow(clippy::too_many_arguments)]
pub async fn put_with_review(
    db: &Db,
    policies: &PolicyCache,
    user: &User,
    article_id: &ArticleId,
    stars: Stars,
    review: ReviewChange,
    auto_create: bool,
    idempotency: Option<&IdempotentRequest>,
) -> Result<Outcome<(MyRating, bool)>, ApiError> {
    let after = RatingAfter::default();
    let input = (
        policies.clone(),
        user.clone(),
        article_id.clone(),
        idempotency.cloned(),
        after.clone(),
        review,
    );
    let route = Route::user(&user.id);
    let mut outcome = db
        .write(route, input, move |w, input| {
            let (policies, user, article_id, idempotency, after, review) = input;
            let idempotency = idempotency.as_ref();
            Box::pin(async move {
                let tx = w.tx();
                if let Some(req) = idempotency {
                    if let Some(stored) = idempotency::claim(tx, req).await? {
                        return Ok(Outcome::Replay(stored));
                    }
                }
                let (article, _) =
                    articles::for_user_write(tx, article_id, &user.id, auto_create, None).await?;
                let now = super::now();
                let row = rating::ActiveModel {
                    article_id: Set(article_id.to_string()),
                    user_id: Set(user.id.clone()),
                    stars: Set(i16::from(stars.get())),
                    created_at: Set(now),
                    updated_at: Set(now),
                    review_id: Set(None),
                };
                // Insert-or-nothing first: a concurrent first rating by the same user waits on the
                // unique key and then takes the update path, so the counters are never doubled.
                let inserted = rating::Entity::insert(row)
                    .on_conflict(
                        OnConflict::columns([rating::Column::ArticleId, rating::Column::UserId])
                            .do_nothing()
                            .to_owned(),
                    )
                    .exec_without_returning(tx)
                    .await?;
                let created = inserted > 0;
                let mut created_at = now;
                let mut review_id = None;
                let rated = super::write::events::Event::RatingChanged {
                    article_id: article_id.to_string(),
                    user_id: user.id.clone(),
                    stars: Some(stars.get()),
                };
                if created {
                    w.rating_changed(article_id.as_str(), stars, 1);
                    w.record(rated);
                } else {
                    let old = rating::Entity::find_by_id((article_id.to_string(), user.id.clone()))
                        .lock(LockType::NoKeyUpdate)
                        .one(tx)
                        .await?
                        .ok_or_else(|| {
                            ApiError::Internal("rating vanished during update".into())
                        })?;
                    let old_stars = stored_stars(&old)?;
                    created_at = old.created_at;
                    review_id = old.review_id;
                    rating::Entity::update_many()
                        .col_expr(rating::Column::Stars, Expr::value(i16::from(stars.get())))
                        .col_expr(rating::Column::UpdatedAt, Expr::value(now))
                        .filter(rating::Column::ArticleId.eq(article_id.as_str()))
                        .filter(rating::Column::UserId.eq(&user.id))
                        .exec(tx)
                        .await?;
                    if old_stars != stars {
                        w.rating_changed(article_id.as_str(), old_stars, -1);
                        w.rating_changed(article_id.as_str(), stars, 1);
                        w.record(rated);
                    }
                }
                let review = reviews::apply(
                    w,
                    policies,
                    user,
                    &article,
                    review_id.as_deref(),
                    stars,
                    review.clone(),
                )
                .await?;
                let new_review_id = review.as_ref().map(|(id, _)| id.clone());
                if new_review_id != review_id {
                    rating::Entity::update_many()
                        .col_expr(rating::Column::ReviewId, Expr::value(new_review_id.clone()))
                        .filter(rating::Column::ArticleId.eq(article_id.as_str()))
                        .filter(rating::Column::UserId.eq(&user.id))
                        .exec(tx)
                        .await?;
                }
                // The row as just written: no need to read it back. The aggregate in it is the one
                // read before this batch's counters; `put` replaces it with `after`'s.
                let r = rating::Model {
                    article_id: article_id.to_string(),
                    user_id: user.id.clone(),
                    stars: i16::from(stars.get()),
                    created_at,
                    updated_at: now,
                    review_id: new_review_id,
                };
                let mut view = rating_view(article_id, r, Some(&article));
                view.review = review.map(|(_, v)| v);
                // An idempotent answer is stored once the aggregate is known, just before COMMIT.
                let complete = idempotency.map(|req| {
                    let (req, view) = (req.clone(), view.clone());
                    let status: u16 = if created { 201 } else { 200 };
                    write::completion(move |histogram, tx| {
                        let (mut view, req) = (view.clone(), req.clone());
                        view.set_histogram(histogram);
                        let body = serde_json::to_value(&view).unwrap_or_default();
                        async move { idempotency::complete(tx, &req, status, &body).await }.boxed()
                    })
                });
                w.watch_rating(article_id.as_str(), after, complete);
                Ok(Outcome::Done((view, created)))
            })
        })
        .await?;
    if let Outcome::Done((view, _)) = &mut outcome {
        let histogram = after.get().ok_or_else(|| {
            ApiError::Internal("a rating was committed without its aggregate".into())
        })?;
        view.set_histogram(histogram);
    }
    Ok(outcome)
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
        Some(r) => Ok(Some(my_rating(&db.conn, user, article_id, r).await?)),
        None => Ok(None),
    }
}

/// Removes the caller's rating (nothing to do when there is none). Group-committed.
pub async fn delete(db: &Db, user: &User, article_id: &ArticleId) -> Result<(), ApiError> {
    let input = (user.clone(), article_id.clone());
    db.write(Route::user(&user.id), input, |w, (user, article_id)| {
        Box::pin(async move {
            let tx = w.tx();
            let user_id = user.id.as_str();
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
                w.rating_changed(article_id.as_str(), stars, -1);
                w.record(super::write::events::Event::RatingChanged {
                    article_id: article_id.to_string(),
                    user_id: user_id.to_owned(),
                    stars: None,
                });
                // Its review goes with it (a tombstone while it has replies).
                reviews::remove(w, user, old.review_id.as_deref()).await?;
            }
            Ok(())
        })
    })
    .await
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
