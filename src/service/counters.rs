//! Kept counters. Every change of a comment's status goes through `status_changed`, in
//! the same transaction as the change, so that article comment counts, reply counts and
//! queue sizes always equal a recount of the rows.

use sea_orm::{
    sea_query::{Expr, ExprTrait, LockType, OnConflict},
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
};

use crate::{
    domain::ModerationStatus,
    entity::{article, author_count, comment, queue_counter},
};

/// Adds `delta` to one queue size.
pub async fn bump_queue(conn: &impl ConnectionTrait, queue: &str, delta: i64) -> Result<(), DbErr> {
    if delta == 0 {
        return Ok(());
    }
    queue_counter::Entity::update_many()
        .col_expr(
            queue_counter::Column::Count,
            Expr::col(queue_counter::Column::Count).add(delta),
        )
        .filter(queue_counter::Column::Queue.eq(queue))
        .exec(conn)
        .await?;
    Ok(())
}

/// Records that comment `c` (as stored, with its current `reply_count`) moved from
/// `from` (`None`: it did not exist) to `to`.
pub async fn status_changed(
    conn: &impl ConnectionTrait,
    c: &comment::Model,
    from: Option<ModerationStatus>,
    to: ModerationStatus,
) -> Result<(), DbErr> {
    if from == Some(to) {
        return Ok(());
    }
    // Lock order, the same in every write: comment rows bottom-up (the comment, then its
    // ancestors), then the article row, then the queue counters, then the author's counts.
    // Any other order lets two transactions on PostgreSQL wait on each other.
    let listed =
        |s: Option<ModerationStatus>| i64::from(s.is_some_and(|s| s.is_listed(c.reply_count)));
    let listed_delta = listed(Some(to)) - listed(from);
    let approved = |s: Option<ModerationStatus>| i64::from(s == Some(ModerationStatus::Approved));
    let approved_delta = approved(Some(to)) - approved(from);
    // A top-level comment moves both article counters: one UPDATE of the article row.
    let top_level_delta = if c.parent_id.is_none() {
        listed_delta
    } else {
        listed_changed(conn, &c.article_id, c.parent_id.clone(), listed_delta).await?;
        0
    };
    if approved_delta != 0 || top_level_delta != 0 {
        article::Entity::update_many()
            .col_expr(
                article::Column::CommentCount,
                Expr::col(article::Column::CommentCount).add(approved_delta),
            )
            .col_expr(
                article::Column::TopLevelCount,
                Expr::col(article::Column::TopLevelCount).add(top_level_delta),
            )
            .filter(article::Column::Id.eq(&c.article_id))
            .exec(conn)
            .await?;
    }
    if let Some(from) = from {
        bump_queue(conn, from.as_str(), -1).await?;
    }
    bump_queue(conn, to.as_str(), 1).await?;
    if let Some(from) = from {
        bump_author(conn, &c.author_id, from, -1).await?;
    }
    bump_author(conn, &c.author_id, to, 1).await
}

/// Adds `delta` (±1) to the author's count of comments in `status`, for the statuses
/// the moderation queue shows as history (approved, rejected, spam).
async fn bump_author(
    conn: &impl ConnectionTrait,
    author_id: &str,
    status: ModerationStatus,
    delta: i64,
) -> Result<(), DbErr> {
    let col = match status {
        ModerationStatus::Approved => author_count::Column::Approved,
        ModerationStatus::Rejected => author_count::Column::Rejected,
        ModerationStatus::Spam => author_count::Column::Spam,
        ModerationStatus::Pending | ModerationStatus::Deleted => return Ok(()),
    };
    let add = Expr::col((author_count::Entity, col)).add(delta);
    if delta < 0 {
        // The comment was counted when it entered `status`, so the row exists.
        author_count::Entity::update_many()
            .col_expr(col, add)
            .filter(author_count::Column::AuthorId.eq(author_id))
            .exec(conn)
            .await?;
        return Ok(());
    }
    let mut row = author_count::ActiveModel {
        author_id: Set(author_id.to_owned()),
        approved: Set(0),
        rejected: Set(0),
        spam: Set(0),
    };
    sea_orm::ActiveModelTrait::set(&mut row, col, delta.into());
    author_count::Entity::insert(row)
        .on_conflict(
            OnConflict::column(author_count::Column::AuthorId)
                .value(col, add)
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// A comment under `parent` became listed (+1) or unlisted (-1). A deleted parent shows
/// as a tombstone only while it has listed replies, so the change can climb the thread.
async fn listed_changed(
    conn: &impl ConnectionTrait,
    article_id: &str,
    mut parent: Option<String>,
    mut delta: i64,
) -> Result<(), DbErr> {
    while delta != 0 {
        let Some(parent_id) = parent else {
            article::Entity::update_many()
                .col_expr(
                    article::Column::TopLevelCount,
                    Expr::col(article::Column::TopLevelCount).add(delta),
                )
                .filter(article::Column::Id.eq(article_id))
                .exec(conn)
                .await?;
            return Ok(());
        };
        // Lock the parent (PostgreSQL) so its status and count are read and written as one.
        let Some(p) = comment::Entity::find_by_id(&parent_id)
            .lock(LockType::NoKeyUpdate)
            .one(conn)
            .await?
        else {
            return Ok(());
        };
        comment::Entity::update_many()
            .col_expr(
                comment::Column::ReplyCount,
                Expr::col(comment::Column::ReplyCount).add(delta),
            )
            .filter(comment::Column::Id.eq(&parent_id))
            .exec(conn)
            .await?;
        let status = ModerationStatus::parse(&p.status).unwrap_or(ModerationStatus::Pending);
        let before = i64::from(status.is_listed(p.reply_count));
        let after = i64::from(status.is_listed(p.reply_count + delta));
        delta = after - before;
        parent = p.parent_id;
    }
    Ok(())
}
