//! Helpful votes: one per reader per comment, switchable and removable. The comment's
//! kept counters (`votes_up`, `votes_down`) and its `best_score` (the Wilson lower
//! bound `sort=best` orders by) are written in the same transaction as the vote row,
//! under the comment row's lock, so they always equal a recount.
//!
//! The caller's own vote (`my_vote`) is the one per-reader field of a comment; it is
//! filled in by [`overlay_my_votes`] alone, after a page or comment was read, so a page
//! shared by every reader can be overlaid per reader.

use std::collections::HashMap;

use sea_orm::{
    sea_query::{Expr, LockType, Query},
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QuerySelect,
    QueryTrait,
};
use serde::Serialize;

use super::{
    comments::{self, CommentView, VoteCounts},
    db::{Db, Route},
    idempotency::{self, IdempotentRequest, Outcome},
    moderation,
};
use crate::{
    auth::User,
    domain::{wilson_lower_bound, ModerationStatus, Vote},
    entity::{comment, comment_vote},
    error::ApiError,
};

/// The answer of `PUT` and `DELETE /api/v1/comments/{id}/vote`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"votes": {"up": 3, "down": 1}, "my_vote": "up"}))]
pub struct VoteView {
    pub votes: VoteCounts,
    /// The caller's vote now; `null` after a DELETE.
    #[schema(required = true)]
    pub my_vote: Option<Vote>,
}

/// Sets `my_vote` on each of `items` to the caller's vote (`null` for guests and where
/// they have not voted): at most one query for the whole page.
pub async fn overlay_my_votes(
    conn: &impl ConnectionTrait,
    caller: Option<&User>,
    items: &mut [CommentView],
) -> Result<(), ApiError> {
    let Some(user) = caller else {
        return Ok(());
    };
    // Only comments with votes can have the caller's (the counters are exact): a page
    // nobody voted on costs no query.
    let ids: Vec<&str> = items
        .iter()
        .filter(|c| c.votes.up + c.votes.down > 0)
        .map(|c| c.id.as_str())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let rows: Vec<(String, String)> = comment_vote::Entity::find()
        .select_only()
        .column(comment_vote::Column::CommentId)
        .column(comment_vote::Column::Vote)
        .filter(comment_vote::Column::UserId.eq(&user.id))
        .filter(comment_vote::Column::CommentId.is_in(ids))
        .into_tuple()
        .all(conn)
        .await?;
    let mine: HashMap<String, Vote> = rows
        .into_iter()
        .filter_map(|(id, v)| Vote::parse(&v).map(|v| (id, v)))
        .collect();
    for item in items {
        item.my_vote = mine.get(&item.id).copied();
    }
    Ok(())
}

/// Votes `vote` on comment `id` as `user`, or takes their vote back (`None`).
/// Group-committed (`Db::write`), by comment: every vote on one comment goes to one
/// writer. Under an idempotency key, a request already done is replayed.
pub async fn set(
    db: &Db,
    user: &User,
    id: &str,
    vote: Option<Vote>,
    idempotency: Option<&IdempotentRequest>,
) -> Result<Outcome<VoteView>, ApiError> {
    let (user, id, idempotency) = (user.clone(), id.to_owned(), idempotency.cloned());
    db.write(Route::comment(&id), move |tx| {
        let (user, id, idempotency) = (user.clone(), id.clone(), idempotency.clone());
        Box::pin(async move { set_in(tx, &user, &id, vote, idempotency.as_ref()).await })
    })
    .await
}

async fn set_in(
    tx: &impl ConnectionTrait,
    user: &User,
    id: &str,
    vote: Option<Vote>,
    idempotency: Option<&IdempotentRequest>,
) -> Result<Outcome<VoteView>, ApiError> {
    if let Some(req) = idempotency {
        if let Some(stored) = idempotency::claim(tx, req).await? {
            return Ok(Outcome::Replay(stored));
        }
    }
    // One round trip: the comment row, locked (PostgreSQL) so its counters are read and
    // written as one, whether the caller is banned, and their vote so far.
    let old_vote: Expr = Query::select()
        .column(comment_vote::Column::Vote)
        .from(comment_vote::Entity)
        .and_where(comment_vote::Column::CommentId.eq(id))
        .and_where(comment_vote::Column::UserId.eq(&user.id))
        .to_owned()
        .into();
    let query = comment::Entity::find_by_id(id)
        .lock(LockType::NoKeyUpdate)
        .expr_as(Expr::exists(moderation::bans_in_force(&user.id)), "banned")
        .expr_as(old_vote, "old_vote");
    let row = tx
        .query_one_raw(query.build(tx.get_database_backend()))
        .await?
        .ok_or_else(|| ApiError::not_found("comment"))?;
    let c = comment::Model::from_query_result(&row, "")?;
    if comments::status_of(&c) == ModerationStatus::Deleted || !comments::visible_to(&c, Some(user))
    {
        return Err(ApiError::not_found("comment"));
    }
    if !c.is_guest && c.author_id == user.id {
        return Err(ApiError::OwnComment);
    }
    if row.try_get::<bool>("", "banned")? {
        return Err(ApiError::Banned);
    }
    let old_vote = row
        .try_get::<Option<String>>("", "old_vote")?
        .and_then(|v| Vote::parse(&v));
    let (mut up, mut down) = (c.votes_up, c.votes_down);
    if old_vote != vote {
        let now = super::now();
        match (old_vote, vote) {
            (None, Some(v)) => {
                comment_vote::Entity::insert(comment_vote::ActiveModel {
                    comment_id: Set(id.to_owned()),
                    user_id: Set(user.id.clone()),
                    vote: Set(v.as_str().to_owned()),
                    created_at: Set(now),
                    updated_at: Set(now),
                })
                .exec_without_returning(tx)
                .await?;
            }
            (Some(_), Some(v)) => {
                comment_vote::Entity::update_many()
                    .col_expr(comment_vote::Column::Vote, Expr::value(v.as_str()))
                    .col_expr(comment_vote::Column::UpdatedAt, Expr::value(now))
                    .filter(comment_vote::Column::CommentId.eq(id))
                    .filter(comment_vote::Column::UserId.eq(&user.id))
                    .exec(tx)
                    .await?;
            }
            (Some(_), None) => {
                comment_vote::Entity::delete_many()
                    .filter(comment_vote::Column::CommentId.eq(id))
                    .filter(comment_vote::Column::UserId.eq(&user.id))
                    .exec(tx)
                    .await?;
            }
            (None, None) => {}
        }
        let counts = |v: Option<Vote>| v.map_or((0, 0), Vote::counts);
        let (old_up, old_down) = counts(old_vote);
        let (new_up, new_down) = counts(vote);
        up += new_up - old_up;
        down += new_down - old_down;
        comment::Entity::update_many()
            .col_expr(comment::Column::VotesUp, Expr::value(up))
            .col_expr(comment::Column::VotesDown, Expr::value(down))
            .col_expr(
                comment::Column::BestScore,
                Expr::value(wilson_lower_bound(up, down)),
            )
            .filter(comment::Column::Id.eq(id))
            .exec(tx)
            .await?;
        super::events::record(super::events::Event::VoteChanged {
            comment_id: id.to_owned(),
            article_id: c.article_id.clone(),
            user_id: user.id.clone(),
            vote: i8::try_from(new_up - new_down).unwrap_or(0),
        })?;
    }
    let view = VoteView {
        votes: VoteCounts { up, down },
        my_vote: vote,
    };
    if let Some(req) = idempotency {
        idempotency::complete(tx, req, 200, &view).await?;
    }
    Ok(Outcome::Done(view))
}
