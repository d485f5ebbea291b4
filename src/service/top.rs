//! `GET /api/v1/ratings/top`: articles ranked by the Bayesian average
//! `(C·m + sum) / (C + count)`, `m` the mean of all the site's ratings (kept in
//! `rating_totals`, never summed per request) and `C` the setting `rating_prior_weight`.
//!
//! Cheap at a million articles: the `limit` most-rated articles (read in order from
//! `idx_articles_rating_count`) give a score `t` the answer's last item reaches at
//! least. An article scoring `t` or more has a mean of at least `t` and, since its
//! score is at most `(C·m + 5n) / (C + n)`, at least `C·(t − m) / (5 − t)` ratings; only
//! articles with that many are read (a range of the same index), and ranked exactly.
//! Answers are kept for [`TOP_FRESH_FOR`].

use std::{
    collections::HashMap,
    sync::RwLock,
    time::{Duration, Instant},
};

use actix_web::web::Bytes;
use sea_orm::{
    sea_query::{Expr, ExprTrait},
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;

use super::{articles, ratings::AggregateView};
use crate::{
    domain::{BayesScore, Prior},
    entity::{article, rating_total},
    error::ApiError,
};

/// How long an answer is served from [`TopCache`] (the contract allows 60 s).
pub const TOP_FRESH_FOR: Duration = Duration::from_secs(60);

/// One ranked article.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TopItem {
    /// The Bayesian average rounded half-up to 2 decimals (ranking uses the exact one).
    #[schema(minimum = 1, maximum = 5)]
    pub score: f64,
    pub rating: AggregateView,
}

/// The prior every article's average is pulled towards.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TopPrior {
    /// The mean of all the site's ratings, rounded half-up to 2 decimals; `null`
    /// before the first rating.
    #[schema(required = true, minimum = 1, maximum = 5)]
    pub mean: Option<f64>,
    /// `rating_prior_weight`.
    #[schema(minimum = 0)]
    pub weight: i64,
}

/// The answer of `GET /api/v1/ratings/top`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"items": [{"score": 4.71, "rating": {"article_id": "why-back-cracks",
    "count": 47, "average": 4.96, "display": "5.0 (47 reviews)",
    "histogram": {"1": 0, "2": 0, "3": 0, "4": 2, "5": 45}}}],
    "prior": {"mean": 4.1, "weight": 5}}))]
pub struct TopList {
    pub items: Vec<TopItem>,
    pub prior: TopPrior,
}

/// The site's prior: its rating totals and the weight.
pub async fn prior(conn: &impl ConnectionTrait, weight: i64) -> Result<Prior, ApiError> {
    let totals = rating_total::Entity::find_by_id(1).one(conn).await?;
    let (count, sum) = totals.map_or((0, 0), |t| (t.rating_count, t.rating_sum));
    Ok(Prior { count, sum, weight })
}

/// The `limit` best articles with at least `min_count` ratings (and at least one:
/// an article never rated has no average to rank).
pub async fn top(
    conn: &impl ConnectionTrait,
    weight: i64,
    limit: u64,
    min_count: i64,
) -> Result<TopList, ApiError> {
    let prior = prior(conn, weight).await?;
    let floor = Ord::max(min_count, 1);
    let rated = || article::Entity::find().filter(article::Column::RatingCount.gte(floor));
    // The most-rated articles first: a score the answer's last item reaches at least.
    let seed = rated()
        .order_by_desc(article::Column::RatingCount)
        .order_by_asc(article::Column::Id)
        .limit(limit)
        .all(conn)
        .await?;
    let candidates = if (seed.len() as u64) < limit {
        // Every eligible article is in the seed.
        seed
    } else {
        let threshold = seed
            .iter()
            .filter_map(|a| prior.score(a.rating_count, a.rating_sum))
            .min();
        match threshold.and_then(|t| prior.min_count_for(&t).map(|n| (t, n))) {
            Some((t, needed)) => {
                // Mean ≥ t, with a margin for the float comparison (ranked exactly below).
                let mean_floor = t.approx() - 1e-9;
                rated()
                    .filter(article::Column::RatingCount.gte(Ord::max(needed, floor)))
                    .filter(
                        Expr::col(article::Column::RatingSum)
                            .gte(Expr::col(article::Column::RatingCount).mul(mean_floor)),
                    )
                    .all(conn)
                    .await?
            }
            // The most-rated articles score below the site mean: nothing bounds the
            // candidates (a small or unusual site), so all are read.
            None => rated().all(conn).await?,
        }
    };
    let mut ranked: Vec<(BayesScore, article::Model)> = candidates
        .into_iter()
        .filter_map(|a| prior.score(a.rating_count, a.rating_sum).map(|s| (s, a)))
        .collect();
    ranked.sort_by(|(sa, a), (sb, b)| {
        sb.cmp(sa)
            .then(b.rating_count.cmp(&a.rating_count))
            .then(a.id.cmp(&b.id))
    });
    ranked.truncate(limit as usize);
    Ok(TopList {
        items: ranked
            .into_iter()
            .map(|(score, a)| TopItem {
                score: score.rounded(),
                rating: AggregateView::new(&a.id, articles::aggregate_of(Some(&a))),
            })
            .collect(),
        prior: TopPrior {
            mean: prior.mean(),
            weight,
        },
    })
}

/// What an answer depends on: (limit, min_count, weight).
pub type TopKey = (u64, i64, i64);

/// Serialised answers by [`TopKey`], each kept [`TOP_FRESH_FOR`] from its read.
#[derive(Default)]
pub struct TopCache {
    entries: RwLock<HashMap<TopKey, (Instant, Bytes)>>,
    /// When [`TopCache::clear`] last ran: answers read before it are not kept.
    cleared_at: RwLock<Option<Instant>>,
}

/// More distinct questions than this and the cache starts over (`min_count` is open).
const TOP_CACHE_ENTRIES: usize = 1024;

impl TopCache {
    pub fn get(&self, key: TopKey) -> Option<Bytes> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&key)
            .filter(|(at, _)| at.elapsed() < TOP_FRESH_FOR)
            .map(|(_, body)| body.clone())
    }

    /// Keeps `body`, read from the database at `read_at`.
    pub fn put(&self, key: TopKey, read_at: Instant, body: Bytes) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let cleared_at = *self.cleared_at.read().unwrap_or_else(|e| e.into_inner());
        if cleared_at.is_some_and(|c| read_at <= c) {
            // Read before a write that cleared the cache: possibly older than it.
            return;
        }
        if entries.len() >= TOP_CACHE_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (read_at, body));
    }

    /// Drops every answer, and refuses those read before now. Run at every
    /// `UserDataErased` event (`startup::invalidate_from_events`): the list must not
    /// show the erased ratings for another minute. Single rating changes do not clear
    /// it: their effect on the list may take [`TOP_FRESH_FOR`] to show.
    pub fn clear(&self) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        *self.cleared_at.write().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        entries.clear();
    }
}
