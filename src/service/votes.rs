//! Helpful votes: one per reader per comment, switchable and removable. The comment's
//! kept counters (`votes_up`, `votes_down`) and its `best_score` (the Wilson lower
//! bound `sort=best` orders by) are written in the same transaction as the vote row,
//! under the comment row's lock, so they always equal a recount.
//!
//! The caller's own vote (`my_vote`) is the one per-reader field of a comment; it is
//! filled in by [`overlay_my_votes`] alone, after a page or comment was read, so a page
//! shared by every reader can be overlaid per reader.

use sea_orm::{
    sea_query::{Expr, LockType, Query},
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter,
    QuerySelect, QueryTrait, Statement,
};
use serde::Serialize;

use super::{
    comments::{self, VoteCounts},
    idempotency::{self, IdempotentRequest, Outcome},
    write::db::{Db, Route},
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

pub use super::comments::overlay_my_votes;

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
    let input = (user.clone(), id.to_owned(), idempotency.cloned());
    db.write(
        Route::comment(id),
        input,
        move |w, (user, id, idempotency)| {
            let (id, idempotency) = (id.as_str(), idempotency.as_ref());
            Box::pin(async move {
                let tx = w.tx();
                if let Some(req) = idempotency {
                    if let Some(stored) = idempotency::claim(tx, req).await? {
                        return Ok(Outcome::Replay(stored));
                    }
                }
                // One round trip: the comment row, locked (PostgreSQL) so its counters are read and
                // written as one, whether the caller is banned, and their vote so far. On
                // PostgreSQL, when the lock had to wait, the vote so far is read from the
                // statement's snapshot, from before the lock holder committed (an erasure
                // of the caller's data may have removed it meanwhile): the write then
                // changes no vote row and changes nothing, and this runs once more, now
                // under the lock.
                for _ in 0..2 {
                    let old_vote: Expr = Query::select()
                        .column(comment_vote::Column::Vote)
                        .from(comment_vote::Entity)
                        .and_where(comment_vote::Column::CommentId.eq(id))
                        .and_where(comment_vote::Column::UserId.eq(&user.id))
                        .to_owned()
                        .into();
                    let query = comment::Entity::find_by_id(id)
                        .lock(LockType::NoKeyUpdate)
                        .expr_as(
                            Expr::exists(super::moderation::bans::bans_in_force(&user.id)),
                            "banned",
                        )
                        .expr_as(old_vote, "old_vote");
                    let row = tx
                        .query_one_raw(query.build(tx.get_database_backend()))
                        .await?
                        .ok_or_else(|| ApiError::not_found("comment"))?;
                    let c = comment::Model::from_query_result(&row, "")?;
                    if comments::status_of(&c) == ModerationStatus::Deleted
                        || !comments::visible_to(&c, Some(user))
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
                        let counts = |v: Option<Vote>| v.map_or((0, 0), Vote::counts);
                        let (old_up, old_down) = counts(old_vote);
                        let (new_up, new_down) = counts(vote);
                        up += new_up - old_up;
                        down += new_down - old_down;
                        let now = super::now();
                        if tx.get_database_backend() == DbBackend::Postgres {
                            let written = write_in_one_statement(
                                tx,
                                id,
                                &user.id,
                                old_vote.is_some(),
                                vote,
                                now,
                                (up, down),
                            )
                            .await?;
                            if !written {
                                continue;
                            }
                        } else {
                            write_vote_row(tx, id, &user.id, old_vote.is_some(), vote, now).await?;
                            write_counts(tx, id, (up, down)).await?;
                        }
                        w.record(super::write::events::Event::VoteChanged {
                            comment_id: id.to_owned(),
                            article_id: c.article_id.clone(),
                            user_id: user.id.clone(),
                            vote: i8::try_from(new_up - new_down).unwrap_or(0),
                        });
                    }
                    let view = VoteView {
                        votes: VoteCounts { up, down },
                        my_vote: vote,
                    };
                    if let Some(req) = idempotency {
                        idempotency::complete(tx, req, 200, &view).await?;
                    }
                    return Ok(Outcome::Done(view));
                }
                Err(ApiError::Internal(
                    "the vote row changed under the comment's lock".into(),
                ))
            })
        },
    )
    .await
}

/// Writes comment `id`'s vote counters and the `best_score` they give.
pub async fn write_counts(
    tx: &impl ConnectionTrait,
    id: &str,
    (up, down): (i64, i64),
) -> Result<(), ApiError> {
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
    Ok(())
}

/// Inserts, changes or deletes the caller's vote row (`had`: they had voted before).
async fn write_vote_row(
    tx: &impl ConnectionTrait,
    id: &str,
    user_id: &str,
    had: bool,
    vote: Option<Vote>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), ApiError> {
    match (had, vote) {
        (false, Some(v)) => {
            comment_vote::Entity::insert(comment_vote::ActiveModel {
                comment_id: Set(id.to_owned()),
                user_id: Set(user_id.to_owned()),
                vote: Set(v.as_str().to_owned()),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .exec_without_returning(tx)
            .await?;
        }
        (true, Some(v)) => {
            comment_vote::Entity::update_many()
                .col_expr(comment_vote::Column::Vote, Expr::value(v.as_str()))
                .col_expr(comment_vote::Column::UpdatedAt, Expr::value(now))
                .filter(comment_vote::Column::CommentId.eq(id))
                .filter(comment_vote::Column::UserId.eq(user_id))
                .exec(tx)
                .await?;
        }
        (true, None) => {
            comment_vote::Entity::delete_many()
                .filter(comment_vote::Column::CommentId.eq(id))
                .filter(comment_vote::Column::UserId.eq(user_id))
                .exec(tx)
                .await?;
        }
        (false, None) => {}
    }
    Ok(())
}

/// PostgreSQL: the vote row's change and the comment's new counters in ONE statement
/// (the vote row's INSERT, UPDATE or DELETE as a data-modifying `WITH`), so a vote
/// costs two round trips in its batch (this and the read before it) instead of three:
/// group-committed votes are bound by their round trips to the database (issue 20's
/// vote PUT target). The counters are written only if the vote row changed; whether
/// they were is returned (not: the row was not as the read before found it).
async fn write_in_one_statement(
    tx: &impl ConnectionTrait,
    id: &str,
    user_id: &str,
    had: bool,
    vote: Option<Vote>,
    now: chrono::DateTime<chrono::Utc>,
    (up, down): (i64, i64),
) -> Result<bool, ApiError> {
    let best = wilson_lower_bound(up, down);
    let (sql, values): (&str, Vec<sea_orm::Value>) = match (had, vote) {
        (false, Some(v)) => (
            "WITH v AS (INSERT INTO comment_votes (comment_id, user_id, vote, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $4) RETURNING 1) \
             UPDATE comments SET votes_up = $5, votes_down = $6, best_score = $7 \
             WHERE id = $1 AND EXISTS (SELECT 1 FROM v)",
            vec![
                id.into(),
                user_id.into(),
                v.as_str().into(),
                now.into(),
                up.into(),
                down.into(),
                best.into(),
            ],
        ),
        (true, Some(v)) => (
            "WITH v AS (UPDATE comment_votes SET vote = $3, updated_at = $4 \
             WHERE comment_id = $1 AND user_id = $2 RETURNING 1) \
             UPDATE comments SET votes_up = $5, votes_down = $6, best_score = $7 \
             WHERE id = $1 AND EXISTS (SELECT 1 FROM v)",
            vec![
                id.into(),
                user_id.into(),
                v.as_str().into(),
                now.into(),
                up.into(),
                down.into(),
                best.into(),
            ],
        ),
        (true, None) => (
            "WITH v AS (DELETE FROM comment_votes WHERE comment_id = $1 AND user_id = $2 \
             RETURNING 1) \
             UPDATE comments SET votes_up = $3, votes_down = $4, best_score = $5 \
             WHERE id = $1 AND EXISTS (SELECT 1 FROM v)",
            vec![
                id.into(),
                user_id.into(),
                up.into(),
                down.into(),
                best.into(),
            ],
        ),
        (false, None) => return Ok(true),
    };
    let done = tx
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    Ok(done.rows_affected() == 1)
}
