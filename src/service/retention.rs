//! Retention (issue 21): with the setting `retention_days_rejected`, rejected and spam
//! comments created longer ago than that are purged by a singleton background job
//! (`singleton::try_lock`, as the idempotency purge). Each purged comment leaves its
//! status's queue counter and its author's count, and the `flagged` counter when it
//! had unresolved flags; its flags and claim go with it; its log rows stay. A comment
//! with replies is kept (its replies hang from it). Its votes go with it, and a purged
//! review leaves its rating without text (`ratings.review_id` cleared; the stars stay).

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    sea_query::{Expr, ExprTrait, Query},
    ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::{
    comments::status_of, moderation::moves::FLAGGED, settings::PolicyCache, write::counters,
    write::db::Db, write::retry::retrying,
};
use crate::{
    domain::{CommentKind, ModerationStatus},
    entity::{comment, comment_claim, comment_vote, flag, rating},
    error::ApiError,
};

/// The job's name for [`super::singleton::try_lock`].
pub const RETENTION_JOB: &str = "retention";
/// Comments purged per write transaction.
pub const RETENTION_BATCH: u64 = 200;
/// How often a running server applies the retention.
pub const RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// The cutoff for `days` of retention at `now` (`None`: nothing is that old).
pub fn cutoff(now: DateTime<Utc>, days: u32) -> Option<DateTime<Utc>> {
    now.checked_sub_signed(Duration::days(i64::from(days)))
}

/// The rejected and spam comments created before `cutoff`, without replies, as a
/// subquery-free selection of ids (oldest ids first; at most `batch`).
async fn candidates(
    conn: &impl sea_orm::ConnectionTrait,
    cutoff: DateTime<Utc>,
    batch: u64,
) -> Result<Vec<String>, ApiError> {
    let children = Query::select()
        .expr(Expr::val(1))
        .from_as(comment::Entity, sea_orm::sea_query::Alias::new("child"))
        .and_where(
            Expr::col((
                sea_orm::sea_query::Alias::new("child"),
                comment::Column::ParentId,
            ))
            .equals((comment::Entity, comment::Column::Id)),
        )
        .to_owned();
    Ok(comment::Entity::find()
        .select_only()
        .column(comment::Column::Id)
        .filter(comment::Column::Status.is_in([
            ModerationStatus::Rejected.as_str(),
            ModerationStatus::Spam.as_str(),
        ]))
        .filter(comment::Column::CreatedAt.lt(cutoff))
        .filter(Expr::exists(children).not())
        .order_by_asc(comment::Column::Id)
        .limit(batch)
        .into_tuple()
        .all(conn)
        .await?)
}

/// Purges every rejected or spam comment created before `cutoff` (in batches of
/// `batch`, one transaction each); returns how many. Answers early when another
/// instance holds the job.
pub async fn purge_rejected(db: &Db, cutoff: DateTime<Utc>, batch: u64) -> Result<u64, ApiError> {
    let batch = Ord::max(batch, 1);
    let mut purged = 0;
    loop {
        // Looked for with a read first: an empty write would retire the caches.
        if candidates(&db.conn, cutoff, 1).await?.is_empty() {
            return Ok(purged);
        }
        let Some(n) = retrying(|| purge_batch(db, cutoff, batch)).await? else {
            tracing::debug!("another instance is applying the retention");
            return Ok(purged);
        };
        purged += n;
        if n < batch {
            return Ok(purged);
        }
    }
}

/// One batch; `None` when another instance holds the job.
async fn purge_batch(db: &Db, cutoff: DateTime<Utc>, batch: u64) -> Result<Option<u64>, ApiError> {
    let mut wtx = db.begin_write().await?;
    let mut w = wtx.write();
    let tx = w.tx();
    if !super::singleton::try_lock(tx, RETENTION_JOB).await? {
        wtx.rollback().await?;
        return Ok(None);
    }
    let mut n = 0;
    for id in candidates(tx, cutoff, batch).await? {
        // Locked as a decision locks it; skipped if it changed in the meantime.
        let Some(c) = comment::Entity::find_by_id(&id)
            .lock_exclusive()
            .one(tx)
            .await?
        else {
            continue;
        };
        let from = status_of(&c);
        if !matches!(from, ModerationStatus::Rejected | ModerationStatus::Spam) {
            continue;
        }
        // Leaving its status as if deleted, then leaving `deleted` too: the queue and
        // author counts of `from` drop by one, nothing else moves (not listed).
        counters::status_changed(&mut w, &c, Some(from), ModerationStatus::Deleted).await?;
        w.record(super::write::events::Event::CommentStatusChanged {
            comment_id: c.id.clone(),
            article_id: c.article_id.clone(),
            from: from.as_str().to_owned(),
            to: ModerationStatus::Deleted.as_str().to_owned(),
            actor_id: "system:retention".into(),
            actor_name: "retention".into(),
        });
        counters::bump_queue(&mut w, "deleted", -1);
        if c.flag_count > 0 {
            counters::bump_queue(&mut w, FLAGGED, -1);
        }
        flag::Entity::delete_many()
            .filter(flag::Column::CommentId.eq(&c.id))
            .exec(tx)
            .await?;
        comment_claim::Entity::delete_by_id(&c.id).exec(tx).await?;
        // Its votes go with it (counted on the comment row only), and a review leaves
        // its rating: the stars stay, without text (by the rating's key).
        comment_vote::Entity::delete_many()
            .filter(comment_vote::Column::CommentId.eq(&c.id))
            .exec(tx)
            .await?;
        if c.kind == CommentKind::Review.as_str() {
            rating::Entity::update_many()
                .col_expr(rating::Column::ReviewId, Expr::value(None::<String>))
                .filter(rating::Column::ArticleId.eq(&c.article_id))
                .filter(rating::Column::UserId.eq(&c.author_id))
                .filter(rating::Column::ReviewId.eq(&c.id))
                .exec(tx)
                .await?;
        }
        comment::Entity::delete_by_id(&c.id).exec(tx).await?;
        n += 1;
    }
    wtx.commit().await?;
    Ok(Some(n))
}

/// How long after the start the first round runs: not in the start's rush (nor in the
/// first requests' connections).
pub const RETENTION_FIRST_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Applies the retention a minute after the start and every [`RETENTION_EVERY`] while
/// the setting is set; runs until dropped (the server aborts it when it stops).
pub async fn purge_periodically(db: Db) {
    let policies = PolicyCache::default();
    let mut every = tokio::time::interval_at(
        tokio::time::Instant::now() + RETENTION_FIRST_AFTER,
        RETENTION_EVERY,
    );
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let days = match policies.get(&db.conn).await {
            Ok(p) => p.policy.retention_days_rejected,
            Err(e) => {
                tracing::warn!(error = %e, "retention: settings unreadable; retrying later");
                continue;
            }
        };
        let Some(cutoff) = days.and_then(|d| cutoff(super::now(), d)) else {
            continue;
        };
        match purge_rejected(&db, cutoff, RETENTION_BATCH).await {
            Ok(0) => {}
            Ok(purged) => {
                tracing::info!(purged, "rejected and spam comments past retention purged")
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention purge failed; retrying at the next interval")
            }
        }
    }
}
