//! A reader's own data (`/api/v1/me/data`, `/api/v1/admin/users/{user_id}/data`):
//! everything stored about them as one document, and its erasure.
//!
//! Erasure is one group-committed write (`Db::write`, routed by the user like their
//! ratings, so it is ordered with them) that keeps every counter as the rows it counts:
//!
//! - their ratings are removed: the articles' histograms and the site's
//!   `rating_totals` follow (deferred like any rating's);
//! - their votes are removed, each under its comment's row lock, and the comment's
//!   `votes_up`, `votes_down` and `best_score` are written from what was removed;
//! - their flags are removed: an unresolved one leaves its comment's `flag_count` and
//!   `flag_weight` (and the `flagged` queue when it was the last); their flagger record
//!   goes;
//! - their comments, replies and reviews, newest first (replies before what they
//!   answer): each is moved to `deleted` through `counters::status_changed` (article
//!   counts, reply counts up the thread, queues, author counts), then removed when
//!   nothing answers it, or kept as a tombstone (no body, author `erased`, no stars,
//!   flags settled) when something does; what the spam model learned from it is taken
//!   back;
//! - moderation log rows stay, with their id and name replaced by `erased`; their
//!   idempotency keys (stored answers hold their text) and claims go. Bans stay.
//!
//! Events (`service::write::events`, written with the erasure's COMMIT): a `RatingChanged`
//! (`stars: null`) per removed rating, a `VoteChanged` (`vote: 0`) per removed vote, a
//! `CommentStatusChanged` (to `deleted`) per comment that was not deleted yet, then
//! `UserDataErased`; when the model took a lesson back, the fold of that change
//! (`spam::fold_pending`, awaited before the answer) records `SpamModelChanged` right
//! after, in a transaction of its own. The
//! caches of every instance invalidate from them (the top list at `UserDataErased`); no
//! caller touches a cache. In the comments' events the actor is the admin who erased,
//! or, when the user erased their own data, their id with the name `erased`.
//!
//! Lock order: rating rows, comment rows, then (at the batch's COMMIT) the erased
//! comments' spam lessons (rows of comments it holds) and one new pending-change row
//! (`write::lessons`), then the shared counters, as every write takes them.

use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Expr, ExprTrait, LockType},
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;

use super::{
    comments::status_of,
    moderation::moves::FLAGGED,
    write::db::{Db, Route},
    write::events::Event,
    write::{counters, Write},
};
use crate::{
    auth::User,
    domain::{Action, ModerationStatus, Stars, Vote},
    entity::{
        author_count, ban, comment, comment_claim, comment_vote, flag, flagger_record,
        idempotency_key, moderation_log, rating,
    },
    error::ApiError,
};

/// What an erased user's id and name become where rows stay (log rows, tombstones).
pub const ERASED: &str = "erased";

/// One of the user's comments or reviews, in any status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = DataComment)]
pub struct CommentData {
    pub id: String,
    pub article_id: String,
    #[schema(required = true)]
    pub parent_id: Option<String>,
    /// The name they wrote it under.
    pub author_name: String,
    pub body: String,
    /// `pending`, `approved`, `rejected`, `spam` or `deleted`.
    pub status: String,
    /// A review's stars; `null` for comments.
    #[schema(required = true, minimum = 1, maximum = 5)]
    pub stars: Option<i16>,
    pub verified: bool,
    pub created_at: DateTime<Utc>,
    #[schema(required = true)]
    pub edited_at: Option<DateTime<Utc>>,
}

impl From<comment::Model> for CommentData {
    fn from(c: comment::Model) -> Self {
        CommentData {
            id: c.id,
            article_id: c.article_id,
            parent_id: c.parent_id,
            author_name: c.author_name,
            body: c.body,
            status: c.status,
            stars: c.stars,
            verified: c.verified,
            created_at: c.created_at,
            edited_at: c.edited_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = DataRating)]
pub struct RatingData {
    pub article_id: String,
    #[schema(minimum = 1, maximum = 5)]
    pub stars: i16,
    /// The review written with it, if any (listed under `reviews`).
    #[schema(required = true)]
    pub review_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = DataFlag)]
pub struct FlagData {
    pub comment_id: String,
    /// `spam`, `abuse`, `off_topic` or `other`.
    pub reason: String,
    #[schema(required = true)]
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When a moderator's decision (or the comment's deletion) settled it.
    #[schema(required = true)]
    pub resolved_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = DataVote)]
pub struct VoteData {
    pub comment_id: String,
    pub vote: Vote,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = DataBan)]
pub struct BanData {
    pub reason: String,
    pub created_at: DateTime<Utc>,
    /// `null`: permanent.
    #[schema(required = true)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// `GET /api/v1/me/data`: everything stored about one user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = UserData)]
pub struct UserData {
    pub user_id: String,
    /// Their comments and replies, in any status, oldest first.
    pub comments: Vec<CommentData>,
    /// Their reviews (the texts of ratings), in any status, oldest first.
    pub reviews: Vec<CommentData>,
    pub ratings: Vec<RatingData>,
    pub flags: Vec<FlagData>,
    pub votes: Vec<VoteData>,
    /// Bans of them (in force or expired).
    pub bans: Vec<BanData>,
}

/// `DELETE /api/v1/me/data`: how many rows of each kind were erased.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = Erased, example = json!({"comments": 3, "ratings": 1, "flags": 0, "votes": 2}))]
pub struct Erased {
    /// Comments, replies and reviews removed or turned into tombstones.
    #[schema(minimum = 0)]
    pub comments: u64,
    #[schema(minimum = 0)]
    pub ratings: u64,
    #[schema(minimum = 0)]
    pub flags: u64,
    #[schema(minimum = 0)]
    pub votes: u64,
}

/// Who erases: the user themselves or an admin (named in the comments' events).
#[derive(Debug, Clone)]
struct Actor {
    id: String,
    name: String,
}

/// Everything stored about `user_id`.
pub async fn export(conn: &impl ConnectionTrait, user_id: &str) -> Result<UserData, ApiError> {
    let written = comment::Entity::find()
        .filter(comment::Column::AuthorId.eq(user_id))
        .filter(comment::Column::IsGuest.eq(false))
        .order_by_asc(comment::Column::CreatedAt)
        .order_by_asc(comment::Column::Id)
        .all(conn)
        .await?;
    let (reviews, comments): (Vec<_>, Vec<_>) =
        written.into_iter().partition(|c| c.kind == "review");
    let ratings = rating::Entity::find()
        .filter(rating::Column::UserId.eq(user_id))
        .order_by_asc(rating::Column::CreatedAt)
        .order_by_asc(rating::Column::ArticleId)
        .all(conn)
        .await?;
    let flags = flag::Entity::find()
        .filter(flag::Column::UserId.eq(user_id))
        .order_by_asc(flag::Column::CreatedAt)
        .order_by_asc(flag::Column::CommentId)
        .all(conn)
        .await?;
    let votes = comment_vote::Entity::find()
        .filter(comment_vote::Column::UserId.eq(user_id))
        .order_by_asc(comment_vote::Column::CreatedAt)
        .order_by_asc(comment_vote::Column::CommentId)
        .all(conn)
        .await?;
    let bans = ban::Entity::find()
        .filter(ban::Column::UserId.eq(user_id))
        .all(conn)
        .await?;
    Ok(UserData {
        user_id: user_id.to_owned(),
        comments: comments.into_iter().map(CommentData::from).collect(),
        reviews: reviews.into_iter().map(CommentData::from).collect(),
        ratings: ratings
            .into_iter()
            .map(|r| RatingData {
                article_id: r.article_id,
                stars: r.stars,
                review_id: r.review_id,
                created_at: r.created_at,
                updated_at: r.updated_at,
            })
            .collect(),
        flags: flags
            .into_iter()
            .map(|f| FlagData {
                comment_id: f.comment_id,
                reason: f.reason,
                note: f.note,
                created_at: f.created_at,
                resolved_at: f.resolved_at,
            })
            .collect(),
        votes: votes
            .into_iter()
            .filter_map(|v| {
                Some(VoteData {
                    vote: Vote::parse(&v.vote)?,
                    comment_id: v.comment_id,
                    created_at: v.created_at,
                    updated_at: v.updated_at,
                })
            })
            .collect(),
        bans: bans
            .into_iter()
            .map(|b| BanData {
                reason: b.reason,
                created_at: b.created_at,
                expires_at: b.expires_at,
            })
            .collect(),
    })
}

/// Erases everything of `user_id` but their bans (see the module's documentation), in
/// one group-committed write, on behalf of `actor` (the user or an admin); then drops
/// their author counts row once it is all zeros.
pub async fn erase(db: &Db, user_id: &str, actor: &User) -> Result<Erased, ApiError> {
    let id = user_id.to_owned();
    let actor = Actor {
        id: actor.id.clone(),
        // Their own name is not written anew anywhere (the log's is replaced too).
        name: if actor.id == user_id {
            ERASED.to_owned()
        } else {
            actor.name.clone()
        },
    };
    let erased = db
        .write(
            Route::user(&id),
            (id.clone(), actor),
            |w, (user_id, actor)| {
                Box::pin(async move {
                    let tx = w.tx();
                    let mut out = Erased::default();
                    erase_ratings(w, user_id, &mut out).await?;
                    erase_votes(w, user_id, &mut out).await?;
                    erase_flags(w, user_id, &mut out).await?;
                    erase_comments(w, user_id, actor, &mut out).await?;
                    anonymise_log(w, user_id).await?;
                    idempotency_key::Entity::delete_many()
                        .filter(idempotency_key::Column::Scope.eq(format!("user:{user_id}")))
                        .exec(tx)
                        .await?;
                    comment_claim::Entity::delete_many()
                        .filter(comment_claim::Column::ModeratorId.eq(user_id.as_str()))
                        .exec(tx)
                        .await?;
                    // The top list's caches retire at this one (`startup::invalidate_from_events`).
                    w.record(Event::UserDataErased {
                        user_id: user_id.clone(),
                        actor_id: actor.id.clone(),
                    });
                    Ok(out)
                })
            },
        )
        .await?;
    // Their author counts reach zero only when the batch's counters are written (at its
    // COMMIT): the row goes in a write of its own after it, and only if nothing of
    // theirs was counted since.
    db.write(Route::user(user_id), user_id.to_owned(), |w, id| {
        Box::pin(async move {
            author_count::Entity::delete_many()
                .filter(author_count::Column::AuthorId.eq(id.as_str()))
                .filter(author_count::Column::Approved.eq(0))
                .filter(author_count::Column::Rejected.eq(0))
                .filter(author_count::Column::Spam.eq(0))
                .exec(w.tx())
                .await?;
            Ok(())
        })
    })
    .await?;
    // What the model learned from their comments is taken back by the fold of the pending
    // changes the erasure staged (it records `SpamModelChanged`). Awaited, unlike a
    // decision's: once the erasure is answered, the user's words are in no table. A failure
    // leaves them pending for the periodic fold; the erasure itself stands.
    if let Err(e) = super::spam::fold_pending(db).await {
        tracing::warn!(error = ?e, "folding the spam model's pending changes after an erasure failed");
    }
    Ok(erased)
}

async fn erase_ratings(w: &mut Write<'_>, user_id: &str, out: &mut Erased) -> Result<(), ApiError> {
    let tx = w.tx();
    let ratings = rating::Entity::find()
        .filter(rating::Column::UserId.eq(user_id))
        .order_by_asc(rating::Column::ArticleId)
        .lock(LockType::NoKeyUpdate)
        .all(tx)
        .await?;
    for r in ratings {
        let stars = Stars::try_from(i64::from(r.stars))
            .map_err(|_| ApiError::Internal(format!("stored rating out of range: {}", r.stars)))?;
        rating::Entity::delete_many()
            .filter(rating::Column::ArticleId.eq(r.article_id.as_str()))
            .filter(rating::Column::UserId.eq(user_id))
            .exec(tx)
            .await?;
        w.rating_changed(&r.article_id, stars, -1);
        w.record(Event::RatingChanged {
            article_id: r.article_id,
            user_id: user_id.to_owned(),
            stars: None,
        });
        out.ratings += 1;
    }
    Ok(())
}

/// Each vote under its comment's lock (as a vote takes it), comments in id order.
async fn erase_votes(w: &mut Write<'_>, user_id: &str, out: &mut Erased) -> Result<(), ApiError> {
    let tx = w.tx();
    let voted: Vec<String> = comment_vote::Entity::find()
        .select_only()
        .column(comment_vote::Column::CommentId)
        .filter(comment_vote::Column::UserId.eq(user_id))
        .order_by_asc(comment_vote::Column::CommentId)
        .into_tuple()
        .all(tx)
        .await?;
    for comment_id in voted {
        let Some(c) = comment::Entity::find_by_id(comment_id.as_str())
            .lock(LockType::NoKeyUpdate)
            .one(tx)
            .await?
        else {
            continue;
        };
        // Read again under the lock: a vote changed since the listing is what counts.
        let Some(v) = comment_vote::Entity::find_by_id((comment_id.clone(), user_id.to_owned()))
            .one(tx)
            .await?
        else {
            continue;
        };
        comment_vote::Entity::delete_many()
            .filter(comment_vote::Column::CommentId.eq(comment_id.as_str()))
            .filter(comment_vote::Column::UserId.eq(user_id))
            .exec(tx)
            .await?;
        let (up, down) = Vote::parse(&v.vote).map_or((0, 0), Vote::counts);
        super::votes::write_counts(tx, &comment_id, (c.votes_up - up, c.votes_down - down)).await?;
        w.record(Event::VoteChanged {
            comment_id,
            article_id: c.article_id,
            user_id: user_id.to_owned(),
            vote: 0,
        });
        out.votes += 1;
    }
    Ok(())
}

/// Each flag under its comment's lock (as a flag and a decision take it).
async fn erase_flags(w: &mut Write<'_>, user_id: &str, out: &mut Erased) -> Result<(), ApiError> {
    let tx = w.tx();
    let flagged: Vec<String> = flag::Entity::find()
        .select_only()
        .column(flag::Column::CommentId)
        .filter(flag::Column::UserId.eq(user_id))
        .order_by_asc(flag::Column::CommentId)
        .into_tuple()
        .all(tx)
        .await?;
    for comment_id in flagged {
        let Some(c) = comment::Entity::find_by_id(comment_id.as_str())
            .lock_exclusive()
            .one(tx)
            .await?
        else {
            continue;
        };
        let Some(f) = flag::Entity::find_by_id((comment_id.clone(), user_id.to_owned()))
            .one(tx)
            .await?
        else {
            continue;
        };
        flag::Entity::delete_many()
            .filter(flag::Column::CommentId.eq(comment_id.as_str()))
            .filter(flag::Column::UserId.eq(user_id))
            .exec(tx)
            .await?;
        out.flags += 1;
        if f.resolved_at.is_some() || c.flag_count <= 0 {
            continue;
        }
        let count = c.flag_count - 1;
        // The last unresolved flag gone: exactly no weight (no rounding left over).
        let weight = if count == 0 {
            0.0
        } else {
            (c.flag_weight - f.weight).max(0.0)
        };
        comment::Entity::update_many()
            .col_expr(comment::Column::FlagCount, Expr::value(count))
            .col_expr(comment::Column::FlagWeight, Expr::value(weight))
            .filter(comment::Column::Id.eq(comment_id.as_str()))
            .exec(tx)
            .await?;
        if count == 0 {
            counters::bump_queue(w, FLAGGED, -1);
        }
    }
    flagger_record::Entity::delete_many()
        .filter(flagger_record::Column::UserId.eq(user_id))
        .exec(tx)
        .await?;
    Ok(())
}

/// Newest first, so a reply of theirs goes before the comment of theirs it answers (and
/// that comment, with nothing else answering it, is then removed too).
async fn erase_comments(
    w: &mut Write<'_>,
    user_id: &str,
    actor: &Actor,
    out: &mut Erased,
) -> Result<(), ApiError> {
    let tx = w.tx();
    let written: Vec<String> = comment::Entity::find()
        .select_only()
        .column(comment::Column::Id)
        .filter(comment::Column::AuthorId.eq(user_id))
        .filter(comment::Column::IsGuest.eq(false))
        .order_by_desc(comment::Column::CreatedAt)
        .order_by_desc(comment::Column::Id)
        .into_tuple()
        .all(tx)
        .await?;
    let mut unlearn = Vec::new();
    for id in written {
        // Locked as a decision locks it (and against a reply being written under it:
        // a reply holds its parent's row while it checks and inserts).
        let Some(c) = comment::Entity::find_by_id(id.as_str())
            .lock_exclusive()
            .one(tx)
            .await?
        else {
            continue;
        };
        out.comments += 1;
        let from = status_of(&c);
        if from != ModerationStatus::Deleted {
            let to = from
                .apply(Action::Delete)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            counters::status_changed(w, &c, Some(from), to).await?;
            w.record(Event::CommentStatusChanged {
                comment_id: c.id.clone(),
                article_id: c.article_id.clone(),
                from: from.as_str().to_owned(),
                to: to.as_str().to_owned(),
                actor_id: actor.id.clone(),
                actor_name: actor.name.clone(),
            });
        }
        if c.flag_count > 0 {
            counters::bump_queue(w, FLAGGED, -1);
        }
        let answered = super::exists(
            tx,
            sea_orm::sea_query::Query::select()
                .expr(Expr::val(1))
                .from(comment::Entity)
                .and_where(comment::Column::ParentId.eq(id.as_str()))
                .to_owned(),
        )
        .await?;
        if answered {
            tombstone(tx, &c).await?;
        } else {
            // Flags on it first (their key refers to it); votes and claims cascade.
            flag::Entity::delete_many()
                .filter(flag::Column::CommentId.eq(id.as_str()))
                .exec(tx)
                .await?;
            comment::Entity::delete_by_id(id.as_str()).exec(tx).await?;
            counters::bump_queue(w, ModerationStatus::Deleted.as_str(), -1);
        }
        unlearn.push(c);
    }
    // After every comment row: the spam model's rows come next in the lock order.
    for c in &unlearn {
        // `rejected` teaches nothing: what an earlier decision taught (stored, or staged
        // by a decision earlier in this batch) is taken back, staged like a decision's;
        // the pending change is folded once the erasure committed (`erase`).
        let _staged = super::spam::learn_in(w, c, ModerationStatus::Rejected).await?;
    }
    Ok(())
}

/// Keeps `c`'s place in its thread with nothing of its author: no body, author
/// `erased`, no stars; its flags are settled (nothing is left to decide).
async fn tombstone(tx: &impl ConnectionTrait, c: &comment::Model) -> Result<(), ApiError> {
    comment::Entity::update_many()
        .col_expr(
            comment::Column::Status,
            Expr::value(ModerationStatus::Deleted.as_str()),
        )
        .col_expr(comment::Column::Body, Expr::value(""))
        .col_expr(comment::Column::AuthorId, Expr::value(ERASED))
        .col_expr(comment::Column::AuthorName, Expr::value(ERASED))
        .col_expr(comment::Column::IsGuest, Expr::value(true))
        .col_expr(comment::Column::Verified, Expr::value(false))
        .col_expr(comment::Column::Stars, Expr::value(Option::<i16>::None))
        .col_expr(
            comment::Column::Fingerprint,
            Expr::value(Option::<String>::None),
        )
        .col_expr(comment::Column::AutoReasons, Expr::value("[]"))
        .col_expr(comment::Column::AutoScore, Expr::value(0.0))
        .col_expr(
            comment::Column::SpamProbability,
            Expr::value(Option::<f64>::None),
        )
        .col_expr(
            comment::Column::EditedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(comment::Column::FlagCount, Expr::value(0))
        .col_expr(comment::Column::FlagWeight, Expr::value(0.0))
        .col_expr(
            comment::Column::Version,
            Expr::col(comment::Column::Version).add(1),
        )
        .col_expr(comment::Column::UpdatedAt, Expr::value(super::now()))
        .filter(comment::Column::Id.eq(c.id.as_str()))
        .exec(tx)
        .await?;
    flag::Entity::update_many()
        .col_expr(flag::Column::ResolvedAt, Expr::value(super::now()))
        .filter(flag::Column::CommentId.eq(c.id.as_str()))
        .filter(flag::Column::ResolvedAt.is_null())
        .exec(tx)
        .await?;
    comment_claim::Entity::delete_many()
        .filter(comment_claim::Column::CommentId.eq(c.id.as_str()))
        .exec(tx)
        .await?;
    Ok(())
}

/// Log rows stay; the user's id and name in them become `erased` (also in the entries
/// this batch has not inserted yet).
async fn anonymise_log(w: &mut Write<'_>, user_id: &str) -> Result<(), ApiError> {
    let tx = w.tx();
    moderation_log::Entity::update_many()
        .col_expr(moderation_log::Column::ActorId, Expr::value(ERASED))
        .col_expr(moderation_log::Column::ActorName, Expr::value(ERASED))
        .filter(moderation_log::Column::ActorId.eq(user_id))
        .exec(tx)
        .await?;
    moderation_log::Entity::update_many()
        .col_expr(moderation_log::Column::SubjectUserId, Expr::value(ERASED))
        .filter(moderation_log::Column::SubjectUserId.eq(user_id))
        .exec(tx)
        .await?;
    w.erase_log(user_id, ERASED);
    Ok(())
}
