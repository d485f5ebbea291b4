//! Kept counters. Every change of a comment's status goes through [`status_changed`], in
//! the same transaction as the change, so that article comment counts, reply counts and
//! queue sizes always equal a recount of the rows. Only the comment rows (the comment's
//! thread, bottom-up) are written at once; the counters on shared rows (articles,
//! queues, authors) are added up in the write's [`Batch`](super::Batch) and written
//! just before the COMMIT, in one global lock order (see `batch`).

use sea_orm::{
    sea_query::{Expr, ExprTrait, LockType},
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
};

use super::batch::{add, Write};
use crate::{
    domain::{CommentKind, ModerationStatus},
    entity::comment,
};

/// Adds `delta` to one queue size, written with the batch's counters just before the
/// COMMIT (see [`Write`]).
pub fn bump_queue(w: &mut Write<'_>, queue: &'static str, delta: i64) {
    if delta != 0 {
        *w.batch.job.queues.entry(queue).or_default() += delta;
    }
}

/// Records that comment `c` (as stored, with its current `reply_count`) moved from
/// `from` (`None`: it did not exist) to `to`.
pub async fn status_changed(
    w: &mut Write<'_>,
    c: &comment::Model,
    from: Option<ModerationStatus>,
    to: ModerationStatus,
) -> Result<(), DbErr> {
    if from == Some(to) {
        return Ok(());
    }
    // Lock order, the same in every write: comment rows bottom-up (the comment, then its
    // ancestors), then the article row, then the queue counters sorted by name, then the
    // authors' counts sorted by id. Any other order lets two transactions on PostgreSQL
    // wait on each other (an approve→reject and a reject→approve would take the two
    // queue rows in opposite orders). Only the comment rows are locked here; the rest is
    // added up in the batch and written, sorted, just before the COMMIT.
    let listed =
        |s: Option<ModerationStatus>| i64::from(s.is_some_and(|s| s.is_listed(c.reply_count)));
    let listed_delta = listed(Some(to)) - listed(from);
    let approved = |s: Option<ModerationStatus>| i64::from(s == Some(ModerationStatus::Approved));
    let approved_delta = approved(Some(to)) - approved(from);
    // A reply's listing climbs its thread (comment rows, locked now); what reaches the
    // top moves the article's count of listed top-level comments, or of listed reviews
    // when the thread is a review's.
    let (top_delta, top_kind) = match &c.parent_id {
        None => (listed_delta, CommentKind::parse(&c.kind)),
        Some(parent) => climb(w.tx(), Some(parent.clone()), listed_delta).await?,
    };
    let (top_level_delta, review_delta) = match top_kind {
        CommentKind::Comment => (top_delta, 0),
        CommentKind::Review => (0, top_delta),
    };
    let job = &mut w.batch.job;
    add(
        job.articles.entry(c.article_id.clone()).or_default(),
        [approved_delta, top_level_delta, review_delta],
    );
    if let Some(from) = from {
        *job.queues.entry(from.as_str()).or_default() -= 1;
        if let Some(i) = author_slot(from) {
            job.authors.entry(c.author_id.clone()).or_default()[i] -= 1;
        }
    }
    *job.queues.entry(to.as_str()).or_default() += 1;
    if let Some(i) = author_slot(to) {
        job.authors.entry(c.author_id.clone()).or_default()[i] += 1;
    }
    Ok(())
}

/// A comment under `parent` became listed (+1) or unlisted (-1): the parents' reply
/// counts move. A deleted parent shows as a tombstone only while it has listed replies,
/// so the change can climb the thread; returns what reaches the top (the change of the
/// article's count of listed top-level comments, or reviews: the kind of the thread's
/// top-level comment), for the caller to apply.
async fn climb(
    conn: &impl ConnectionTrait,
    mut parent: Option<String>,
    mut delta: i64,
) -> Result<(i64, CommentKind), DbErr> {
    let mut kind = CommentKind::Comment;
    while delta != 0 {
        let Some(parent_id) = parent else {
            return Ok((delta, kind));
        };
        // Lock the parent (PostgreSQL) so its status and count are read and written as one.
        let Some(p) = comment::Entity::find_by_id(&parent_id)
            .lock(LockType::NoKeyUpdate)
            .one(conn)
            .await?
        else {
            return Ok((0, kind));
        };
        kind = CommentKind::parse(&p.kind);
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
    Ok((0, kind))
}

fn author_slot(status: ModerationStatus) -> Option<usize> {
    match status {
        ModerationStatus::Approved => Some(0),
        ModerationStatus::Rejected => Some(1),
        ModerationStatus::Spam => Some(2),
        ModerationStatus::Pending | ModerationStatus::Deleted => None,
    }
}
