//! Kept counters. Every change of a comment's status goes through `status_changed`, in
//! the same transaction as the change, so that article comment counts, reply counts and
//! queue sizes always equal a recount of the rows.
//!
//! Inside a group-committed batch (see [`deferring`]), the counters of new top-level
//! comments are added up in memory instead and written by [`apply_deferred`] just before
//! the batch commits: one UPDATE per article and per queue and one INSERT for all the
//! authors, instead of three statements per comment. Same transaction, so the counters
//! still equal a recount at every commit.

use std::{cell::RefCell, collections::BTreeMap, future::Future};

use sea_orm::{
    sea_query::{Alias, Expr, ExprTrait, LockType, OnConflict},
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
    if from.is_none() && c.parent_id.is_none() && defer_new(c, to) {
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

/// Counter changes added up while a batch runs. `job` holds the running job's own, which
/// join `batch` only when that job succeeded; a failed job's are dropped with it.
#[derive(Debug, Default)]
struct Deferred {
    batch: Deltas,
    job: Deltas,
}

#[derive(Debug, Default)]
struct Deltas {
    /// Article id → (comment_count, top_level_count).
    articles: BTreeMap<String, [i64; 2]>,
    queues: BTreeMap<&'static str, i64>,
    /// Author id → (approved, rejected, spam).
    authors: BTreeMap<String, [i64; 3]>,
}

impl Deltas {
    fn merge(&mut self, other: Deltas) {
        for (id, [a, b]) in other.articles {
            let e = self.articles.entry(id).or_default();
            e[0] += a;
            e[1] += b;
        }
        for (q, n) in other.queues {
            *self.queues.entry(q).or_default() += n;
        }
        for (id, d) in other.authors {
            let e = self.authors.entry(id).or_default();
            for i in 0..3 {
                e[i] += d[i];
            }
        }
    }
}

tokio::task_local! {
    static DEFERRED: RefCell<Deferred>;
}

/// Runs `batch` (a group-committed transaction's work) with the counters of new
/// top-level comments deferred. Inside it, mark each job with [`job_started`] and
/// [`job_ended`], and call [`apply_deferred`] before committing.
pub async fn deferring<F: Future>(batch: F) -> F::Output {
    DEFERRED
        .scope(RefCell::new(Deferred::default()), batch)
        .await
}

/// A new transaction begins: whatever an earlier attempt deferred is forgotten.
pub fn discard_deferred() {
    let _ = DEFERRED.try_with(|d| *d.borrow_mut() = Deferred::default());
}

/// A job of the batch starts: nothing of it is counted yet.
pub fn job_started() {
    let _ = DEFERRED.try_with(|d| d.borrow_mut().job = Deltas::default());
}

/// The job that ran last ended: its counter changes join the batch's if it succeeded.
pub fn job_ended(succeeded: bool) {
    let _ = DEFERRED.try_with(|d| {
        let mut d = d.borrow_mut();
        let job = std::mem::take(&mut d.job);
        if succeeded {
            d.batch.merge(job);
        }
    });
}

/// Records a new top-level comment's counters for later, if a batch is deferring them.
fn defer_new(c: &comment::Model, to: ModerationStatus) -> bool {
    DEFERRED
        .try_with(|d| {
            let job = &mut d.borrow_mut().job;
            let article = job.articles.entry(c.article_id.clone()).or_default();
            article[0] += i64::from(to == ModerationStatus::Approved);
            article[1] += i64::from(to.is_listed(c.reply_count));
            *job.queues.entry(to.as_str()).or_default() += 1;
            if let Some(i) = author_slot(to) {
                job.authors.entry(c.author_id.clone()).or_default()[i] += 1;
            }
        })
        .is_ok()
}

fn author_slot(status: ModerationStatus) -> Option<usize> {
    match status {
        ModerationStatus::Approved => Some(0),
        ModerationStatus::Rejected => Some(1),
        ModerationStatus::Spam => Some(2),
        ModerationStatus::Pending | ModerationStatus::Deleted => None,
    }
}

/// Writes the batch's deferred counters (articles, then queues, then authors: the lock
/// order of every write) and forgets them.
pub async fn apply_deferred(conn: &impl ConnectionTrait) -> Result<(), DbErr> {
    let Ok(d) = DEFERRED.try_with(|d| std::mem::take(&mut d.borrow_mut().batch)) else {
        return Ok(());
    };
    for (id, [comments, top_level]) in &d.articles {
        if *comments == 0 && *top_level == 0 {
            continue;
        }
        article::Entity::update_many()
            .col_expr(
                article::Column::CommentCount,
                Expr::col(article::Column::CommentCount).add(*comments),
            )
            .col_expr(
                article::Column::TopLevelCount,
                Expr::col(article::Column::TopLevelCount).add(*top_level),
            )
            .filter(article::Column::Id.eq(id))
            .exec(conn)
            .await?;
    }
    for (queue, n) in &d.queues {
        bump_queue(conn, queue, *n).await?;
    }
    let rows: Vec<author_count::ActiveModel> = d
        .authors
        .iter()
        .filter(|(_, n)| n.iter().any(|v| *v != 0))
        .map(
            |(id, [approved, rejected, spam])| author_count::ActiveModel {
                author_id: Set(id.clone()),
                approved: Set(*approved),
                rejected: Set(*rejected),
                spam: Set(*spam),
            },
        )
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    // One statement for every author: a new row, or the counts added to theirs.
    let add = |col: author_count::Column| {
        Expr::col((author_count::Entity, col)).add(Expr::col((Alias::new("excluded"), col)))
    };
    author_count::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::column(author_count::Column::AuthorId)
                .value(
                    author_count::Column::Approved,
                    add(author_count::Column::Approved),
                )
                .value(
                    author_count::Column::Rejected,
                    add(author_count::Column::Rejected),
                )
                .value(author_count::Column::Spam, add(author_count::Column::Spam))
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(())
}
