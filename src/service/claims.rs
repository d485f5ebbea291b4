//! Claims (issue 21): a moderator marks a comment as being worked on, so that two
//! moderators do not work the same item by accident. Advisory: decisions never look at
//! them (a decision only releases the comment's claim). One row per comment in
//! `comment_claims`; a row whose `expires_at` has passed counts as no claim.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    sea_query::{Alias, Expr, ExprTrait, OnConflict, Query},
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
};
use serde::Serialize;

use super::{moderation::log::ActorView, write::db::Db, write::retry::retrying};
use crate::{
    auth::User,
    entity::{comment, comment_claim},
    error::ApiError,
};

/// How long a claim holds: claiming again renews it for as long.
pub const CLAIM_DURATION: Duration = Duration::minutes(5);

/// A claim as the claim POST answers it and queue items show it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClaimView {
    pub claimed_by: ActorView,
    pub expires_at: DateTime<Utc>,
}

impl From<comment_claim::Model> for ClaimView {
    fn from(c: comment_claim::Model) -> Self {
        ClaimView {
            claimed_by: ActorView {
                id: c.moderator_id,
                name: c.moderator_name,
            },
            expires_at: c.expires_at,
        }
    }
}

/// Claims held by anyone other than `moderator_id` that have not expired at `now`.
fn held_by_others(moderator_id: &str, now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(comment_claim::Column::ModeratorId.ne(moderator_id))
        .add(comment_claim::Column::ExpiresAt.gt(now))
}

/// `POST /moderation/comments/{id}/claim`: claims (or renews) the comment for
/// [`CLAIM_DURATION`]; 409 `claimed` while another moderator holds it, 404 for an
/// unknown comment.
pub async fn claim(db: &Db, moderator: &User, comment_id: &str) -> Result<ClaimView, ApiError> {
    retrying(|| claim_at(db, moderator, comment_id, super::now(), CLAIM_DURATION)).await
}

/// [`claim`] at a given time, for a given duration (tests pass their own).
pub async fn claim_at(
    db: &Db,
    moderator: &User,
    comment_id: &str,
    now: DateTime<Utc>,
    duration: Duration,
) -> Result<ClaimView, ApiError> {
    let mut wtx = db.begin_write().await?;
    let mut w = wtx.write();
    let tx = w.tx();
    if comment::Entity::find_by_id(comment_id)
        .one(tx)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("comment"));
    }
    let row = comment_claim::ActiveModel {
        comment_id: Set(comment_id.to_owned()),
        moderator_id: Set(moderator.id.clone()),
        moderator_name: Set(moderator.name.clone()),
        expires_at: Set(now + duration),
    };
    // One statement decides between two racing moderators on both databases: the
    // existing row is replaced only when it is the caller's own or has expired.
    let table = Alias::new("comment_claims");
    let keep_unless = Expr::col((table.clone(), comment_claim::Column::ModeratorId))
        .eq(Expr::cust("excluded.moderator_id"))
        .or(Expr::col((table, comment_claim::Column::ExpiresAt)).lte(now));
    comment_claim::Entity::insert(row)
        .on_conflict(
            OnConflict::column(comment_claim::Column::CommentId)
                .update_columns([
                    comment_claim::Column::ModeratorId,
                    comment_claim::Column::ModeratorName,
                    comment_claim::Column::ExpiresAt,
                ])
                .action_and_where(keep_unless)
                .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
    let held = comment_claim::Entity::find_by_id(comment_id)
        .one(tx)
        .await?
        .ok_or_else(|| ApiError::Internal("claim row vanished".into()))?;
    if held.moderator_id != moderator.id {
        return Err(ApiError::Claimed {
            by: held.moderator_name,
            until: held.expires_at,
        });
    }
    w.record(super::write::events::Event::ClaimChanged {
        comment_id: comment_id.to_owned(),
        moderator_id: moderator.id.clone(),
        claimed: true,
    });
    wtx.commit().await?;
    Ok(held.into())
}

/// `DELETE /moderation/comments/{id}/claim`: releases the caller's claim (nothing to do
/// when there is none); 409 `claimed` while another moderator holds it, 404 for an
/// unknown comment.
pub async fn release(db: &Db, moderator: &User, comment_id: &str) -> Result<(), ApiError> {
    retrying(|| release_once(db, moderator, comment_id)).await
}

async fn release_once(db: &Db, moderator: &User, comment_id: &str) -> Result<(), ApiError> {
    let mut wtx = db.begin_write().await?;
    let mut w = wtx.write();
    let tx = w.tx();
    if comment::Entity::find_by_id(comment_id)
        .one(tx)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("comment"));
    }
    if let Some(other) = comment_claim::Entity::find_by_id(comment_id)
        .filter(held_by_others(&moderator.id, super::now()))
        .one(tx)
        .await?
    {
        return Err(ApiError::Claimed {
            by: other.moderator_name,
            until: other.expires_at,
        });
    }
    let released = comment_claim::Entity::delete_by_id(comment_id)
        .exec(tx)
        .await?
        .rows_affected;
    if released > 0 {
        w.record(super::write::events::Event::ClaimChanged {
            comment_id: comment_id.to_owned(),
            moderator_id: moderator.id.clone(),
            claimed: false,
        });
    }
    wtx.commit().await?;
    Ok(())
}

/// Drops the claim of a comment a decision was just made on (in the decision's
/// transaction).
pub async fn released_by_decision(
    conn: &impl ConnectionTrait,
    comment_id: &str,
) -> Result<(), ApiError> {
    comment_claim::Entity::delete_by_id(comment_id)
        .exec(conn)
        .await?;
    Ok(())
}

/// The claims in force on `ids` (one query, whatever the page size).
pub async fn in_force(
    conn: &impl ConnectionTrait,
    ids: &[&str],
) -> Result<Vec<comment_claim::Model>, ApiError> {
    Ok(comment_claim::Entity::find()
        .filter(comment_claim::Column::CommentId.is_in(ids.iter().copied()))
        .filter(comment_claim::Column::ExpiresAt.gt(super::now()))
        .all(conn)
        .await?)
}

/// Comments another moderator holds, as a subquery of comment ids (for `unclaimed=true`).
pub fn held_by_others_ids(moderator_id: &str) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(comment_claim::Column::CommentId)
        .from(comment_claim::Entity)
        .cond_where(held_by_others(moderator_id, super::now()))
        .to_owned()
}
