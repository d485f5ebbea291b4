//! Kept counters. Every change of a comment's status goes through `status_changed`, in
//! the same transaction as the change, so that article comment counts, reply counts and
//! queue sizes always equal a recount of the rows.
//!
//! Inside a group-committed batch (see [`deferring`]), the counters that new comments and
//! ratings move on shared rows (articles, queues, authors) are added up in memory instead
//! and written by [`apply_deferred`] just before the batch commits: one UPDATE per
//! article and per queue and one INSERT for all the authors, instead of several
//! statements per write. Same transaction, so the counters still equal a recount at every
//! commit. A batch therefore locks shared rows only at its end, in one global order
//! (articles, the site's `rating_totals` row, queues, authors, each sorted by key;
//! comment rows, whose vote counters a vote moves, are locked before all of them, and a
//! deadlock between two batches' comment rows is retried, see `group_commit`), which is what lets several writers
//! run batches side by side on PostgreSQL without waiting on each other's rows mid-way
//! (see `group_commit`). A write that must answer with its article's aggregate asks for
//! it with [`watch_rating`]: it is told the histogram as it stood right after it, in
//! commit order, once the counters are written.

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
    future::Future,
    sync::{Arc, Mutex},
};

use sea_orm::{
    sea_query::{Alias, Expr, ExprTrait, LockType, OnConflict},
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
};

use super::idempotency::{self, IdempotentRequest};
use crate::{
    domain::{CommentKind, ModerationStatus, Stars},
    entity::{
        article, author_count, comment, flagger_record, moderation_log, queue_counter, rating_total,
    },
    error::ApiError,
};

/// Adds `delta` to one queue size: deferred to the end of the transaction when it
/// defers its counters (see [`in_lock_order`]), else at once.
pub async fn bump_queue(
    conn: &impl ConnectionTrait,
    queue: &'static str,
    delta: i64,
) -> Result<(), DbErr> {
    if delta == 0 {
        return Ok(());
    }
    let deferred = DEFERRED
        .try_with(|d| *d.borrow_mut().job.queues.entry(queue).or_default() += delta)
        .is_ok();
    if deferred {
        return Ok(());
    }
    write_queue(conn, queue, delta).await
}

async fn write_queue(conn: &impl ConnectionTrait, queue: &str, delta: i64) -> Result<(), DbErr> {
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
    // ancestors), then the article row, then the queue counters sorted by name, then the
    // authors' counts sorted by id. Any other order lets two transactions on PostgreSQL
    // wait on each other (an approve→reject and a reject→approve would take the two
    // queue rows in opposite orders). Inside a transaction that defers its counters
    // (every write that moves a comment does, see [`in_lock_order`]) only the comment
    // rows are locked here; the rest is written, sorted, just before the COMMIT.
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
        Some(parent) => climb(conn, Some(parent.clone()), listed_delta).await?,
    };
    let (top_level_delta, review_delta) = match top_kind {
        CommentKind::Comment => (top_delta, 0),
        CommentKind::Review => (0, top_delta),
    };
    if defer_change(c, approved_delta, top_level_delta, review_delta, from, to) {
        return Ok(());
    }
    if approved_delta != 0 || top_level_delta != 0 || review_delta != 0 {
        article::Entity::update_many()
            .col_expr(
                article::Column::CommentCount,
                Expr::col(article::Column::CommentCount).add(approved_delta),
            )
            .col_expr(
                article::Column::TopLevelCount,
                Expr::col(article::Column::TopLevelCount).add(top_level_delta),
            )
            .col_expr(
                article::Column::ReviewCount,
                Expr::col(article::Column::ReviewCount).add(review_delta),
            )
            .filter(article::Column::Id.eq(&c.article_id))
            .exec(conn)
            .await?;
    }
    // The two queue rows in name order, whichever way the comment moves.
    let mut queues = BTreeMap::new();
    if let Some(from) = from {
        *queues.entry(from.as_str()).or_insert(0) -= 1;
    }
    *queues.entry(to.as_str()).or_insert(0) += 1;
    for (queue, delta) in queues {
        write_queue(conn, queue, delta).await?;
    }
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

/// Counter changes added up while a batch runs. `job` holds the running job's own, which
/// join `batch` only when that job succeeded; a failed job's are dropped with it.
#[derive(Default)]
struct Deferred {
    batch: Deltas,
    job: Deltas,
    /// The running job's request for its article's histogram after it.
    job_watch: Option<Watch>,
    /// The rating changes of the batch's jobs and their requests, in the order the
    /// jobs ran.
    changes: Vec<Change>,
    /// The events written to the outbox by [`apply_deferred`], published once the
    /// transaction committed ([`take_written_events`]).
    written: Vec<Arc<super::events::StoredEvent>>,
}

#[derive(Debug, Default)]
struct Deltas {
    /// Article id → (comment_count, top_level_count, review_count).
    articles: BTreeMap<String, [i64; 3]>,
    /// Article id → ratings added (removed: negative) per number of stars, 1..=5.
    ratings: BTreeMap<String, [i64; 5]>,
    queues: BTreeMap<&'static str, i64>,
    /// Author id → (approved, rejected, spam).
    authors: BTreeMap<String, [i64; 3]>,
    /// Moderation log entries, in the order they were made.
    log: Vec<moderation_log::ActiveModel>,
    /// Flagger id → (upheld, dismissed) (issue 21), written after the authors.
    flaggers: BTreeMap<String, [i64; 2]>,
    /// Events for the outbox (`events`), in the order they were recorded.
    events: Vec<super::events::Event>,
}

fn add<const N: usize>(into: &mut [i64; N], from: [i64; N]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

impl Deltas {
    fn merge(&mut self, other: Deltas) {
        for (id, d) in other.articles {
            add(self.articles.entry(id).or_default(), d);
        }
        for (id, d) in other.ratings {
            add(self.ratings.entry(id).or_default(), d);
        }
        for (q, n) in other.queues {
            *self.queues.entry(q).or_default() += n;
        }
        for (id, d) in other.authors {
            add(self.authors.entry(id).or_default(), d);
        }
        self.log.extend(other.log);
        for (id, d) in other.flaggers {
            add(self.flaggers.entry(id).or_default(), d);
        }
        self.events.extend(other.events);
    }
}

/// Where a write that deferred its rating counters learns its article's histogram as it
/// stood right after that write (see [`watch_rating`]). Filled just before the COMMIT.
#[derive(Debug, Clone, Default)]
pub struct RatingAfter(Arc<Mutex<Option<[i64; 5]>>>);

impl RatingAfter {
    /// The histogram, once the batch's counters were written.
    pub fn get(&self) -> Option<[i64; 5]> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, histogram: [i64; 5]) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(histogram);
    }
}

/// An idempotent write's stored answer, made from its article's histogram after it.
pub type Completion =
    Box<dyn Fn([i64; 5]) -> (IdempotentRequest, u16, serde_json::Value) + Send + Sync>;

struct Watch {
    article_id: String,
    after: RatingAfter,
    complete: Option<Completion>,
}

/// One job's rating changes on one article, and what it asked to be told.
struct Change {
    article_id: String,
    own: [i64; 5],
    watch: Option<Watch>,
}

tokio::task_local! {
    static DEFERRED: RefCell<Deferred>;
}

/// Runs `batch` (a group-committed transaction's work) with the counters of new
/// comments and of ratings deferred. Inside it, mark each job with [`job_started`] and
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
    let _ = DEFERRED.try_with(|d| {
        let mut d = d.borrow_mut();
        d.job = Deltas::default();
        d.job_watch = None;
    });
}

/// The job that ran last ended: its counter changes join the batch's if it succeeded.
pub fn job_ended(succeeded: bool) {
    let _ = DEFERRED.try_with(|d| {
        let mut d = d.borrow_mut();
        let job = std::mem::take(&mut d.job);
        let mut watch = d.job_watch.take();
        if succeeded {
            for (id, own) in &job.ratings {
                let watch = watch.take_if(|w| w.article_id == *id);
                d.changes.push(Change {
                    article_id: id.clone(),
                    own: *own,
                    watch,
                });
            }
            if let Some(w) = watch {
                // Asked, but changed nothing there (the same stars again).
                d.changes.push(Change {
                    article_id: w.article_id.clone(),
                    own: [0; 5],
                    watch: Some(w),
                });
            }
            d.batch.merge(job);
        }
    });
}

/// Records a comment's status change for later, if a batch is deferring counters (the
/// comment row and its thread were written already).
fn defer_change(
    c: &comment::Model,
    approved: i64,
    top_level: i64,
    reviews: i64,
    from: Option<ModerationStatus>,
    to: ModerationStatus,
) -> bool {
    DEFERRED
        .try_with(|d| {
            let job = &mut d.borrow_mut().job;
            add(
                job.articles.entry(c.article_id.clone()).or_default(),
                [approved, top_level, reviews],
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
        })
        .is_ok()
}

/// Runs one write transaction's `work` with its counter moves (articles, queues,
/// authors) deferred: they are added up in memory and written by [`flush`], which
/// `work` calls just before its COMMIT, in the one global order (articles, queues,
/// authors, each sorted by key). The rows locked before that are comment rows only, so
/// two transactions moving comments in opposite directions cannot deadlock on the
/// shared counter rows, and one moving several comments (a ban's purge) locks each
/// counter row once, at the end.
pub async fn in_lock_order<F: Future>(work: F) -> F::Output {
    deferring(async {
        job_started();
        work.await
    })
    .await
}

/// Writes what the transaction of [`in_lock_order`] deferred; call it right before
/// the COMMIT (and before reading a counter back).
pub async fn flush(conn: &impl ConnectionTrait) -> Result<(), ApiError> {
    job_ended(true);
    apply_deferred(conn).await?;
    job_started();
    Ok(())
}

/// Records that a rating of `stars` was added (`sign` 1) or removed (-1) on the
/// article. Only inside a batch that defers counters ([`is_deferring`]): ratings are
/// written through `Db::write` alone.
pub fn defer_rating(article_id: &str, stars: Stars, sign: i64) {
    let _ = DEFERRED.try_with(|d| {
        let job = &mut d.borrow_mut().job;
        let slot = usize::from(stars.get()) - 1;
        job.ratings.entry(article_id.to_owned()).or_default()[slot] += sign;
    });
}

/// Keeps a moderation log entry to be inserted with the batch's others, just before the
/// COMMIT (one INSERT for all); gives it back when no batch is deferring (the caller
/// inserts it then). Log rows are new rows: inserting them later locks nothing.
pub fn defer_log(row: moderation_log::ActiveModel) -> Option<moderation_log::ActiveModel> {
    let mut row = Some(row);
    let _ = DEFERRED.try_with(|d| d.borrow_mut().job.log.extend(row.take()));
    row
}

/// Records that a moderator's decision upheld or dismissed `flagger`'s flag (issue 21):
/// their track record is written by [`flush`] after the authors' counts, in flagger id
/// order, so these rows join the one global lock order. Outside a deferring
/// transaction it is written at once.
pub async fn flagger_decided(
    conn: &impl ConnectionTrait,
    flagger: &str,
    upheld: bool,
) -> Result<(), ApiError> {
    let delta = if upheld { [1, 0] } else { [0, 1] };
    let deferred = DEFERRED
        .try_with(|d| {
            add(
                d.borrow_mut()
                    .job
                    .flaggers
                    .entry(flagger.to_owned())
                    .or_default(),
                delta,
            )
        })
        .is_ok();
    if !deferred {
        apply_flaggers(conn, &BTreeMap::from([(flagger.to_owned(), delta)])).await?;
    }
    Ok(())
}

/// One upsert adding each flagger's (upheld, dismissed) to their record.
async fn apply_flaggers(
    conn: &impl ConnectionTrait,
    flaggers: &BTreeMap<String, [i64; 2]>,
) -> Result<(), DbErr> {
    let rows: Vec<flagger_record::ActiveModel> = flaggers
        .iter()
        .filter(|(_, d)| d.iter().any(|v| *v != 0))
        .map(|(id, [upheld, dismissed])| flagger_record::ActiveModel {
            user_id: Set(id.clone()),
            upheld: Set(*upheld),
            dismissed: Set(*dismissed),
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let add = |col: flagger_record::Column| {
        Expr::col((flagger_record::Entity, col)).add(Expr::col((Alias::new("excluded"), col)))
    };
    flagger_record::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::column(flagger_record::Column::UserId)
                .value(
                    flagger_record::Column::Upheld,
                    add(flagger_record::Column::Upheld),
                )
                .value(
                    flagger_record::Column::Dismissed,
                    add(flagger_record::Column::Dismissed),
                )
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Keeps an event of the running job, written to the outbox with the batch's others
/// just before the COMMIT (see `events`). Outside a write transaction that collects
/// them it is an error: the event would be lost.
pub fn defer_event(event: super::events::Event) -> Result<(), ApiError> {
    DEFERRED
        .try_with(|d| d.borrow_mut().job.events.push(event))
        .map_err(|_| ApiError::Internal("an event was recorded outside a write transaction".into()))
}

/// The events the running transaction wrote to the outbox, to publish after its
/// COMMIT (taken: a second call gets none).
pub fn take_written_events() -> Vec<Arc<super::events::StoredEvent>> {
    DEFERRED
        .try_with(|d| std::mem::take(&mut d.borrow_mut().written))
        .unwrap_or_default()
}

/// Whether the running write is inside a batch that defers counters.
pub fn is_deferring() -> bool {
    DEFERRED.try_with(|_| ()).is_ok()
}

/// Asks for the article's rating histogram as it stands right after the running job
/// (in commit order: every write committed before, this batch's jobs up to this one),
/// to be put in `after` once the batch's counters are written. With `complete`, the
/// job's idempotent answer is stored then too, made from that histogram. Only inside a
/// batch that defers counters ([`is_deferring`]).
pub fn watch_rating(article_id: &str, after: &RatingAfter, complete: Option<Completion>) {
    let _ = DEFERRED.try_with(|d| {
        d.borrow_mut().job_watch = Some(Watch {
            article_id: article_id.to_owned(),
            after: after.clone(),
            complete,
        });
    });
}

fn author_slot(status: ModerationStatus) -> Option<usize> {
    match status {
        ModerationStatus::Approved => Some(0),
        ModerationStatus::Rejected => Some(1),
        ModerationStatus::Spam => Some(2),
        ModerationStatus::Pending | ModerationStatus::Deleted => None,
    }
}

fn star_column(slot: usize) -> article::Column {
    match slot {
        0 => article::Column::Stars1,
        1 => article::Column::Stars2,
        2 => article::Column::Stars3,
        3 => article::Column::Stars4,
        _ => article::Column::Stars5,
    }
}

fn histogram(a: &article::Model) -> [i64; 5] {
    super::articles::aggregate_of(Some(a)).histogram
}

/// Writes one article's deferred counters; returns its histogram after them when
/// `watched` (read if nothing changed).
async fn apply_article(
    conn: &impl ConnectionTrait,
    id: &str,
    [comments, top_level, reviews]: [i64; 3],
    stars: [i64; 5],
    watched: bool,
) -> Result<Option<[i64; 5]>, DbErr> {
    let deltas: Vec<(article::Column, i64)> = [
        (article::Column::CommentCount, comments),
        (article::Column::TopLevelCount, top_level),
        (article::Column::ReviewCount, reviews),
        (article::Column::RatingCount, stars.iter().sum()),
        (
            article::Column::RatingSum,
            stars.iter().zip(1..).map(|(d, s)| d * s).sum(),
        ),
    ]
    .into_iter()
    .chain(
        stars
            .iter()
            .enumerate()
            .map(|(slot, d)| (star_column(slot), *d)),
    )
    .filter(|(_, delta)| *delta != 0)
    .collect();
    let changed = !deltas.is_empty();
    let update = deltas.into_iter().fold(
        article::Entity::update_many().filter(article::Column::Id.eq(id)),
        |update, (col, delta)| update.col_expr(col, Expr::col(col).add(delta)),
    );
    match (changed, watched) {
        (false, false) => Ok(None),
        (true, false) => update.exec(conn).await.map(|_| None),
        (true, true) => Ok(update
            .exec_with_returning(conn)
            .await?
            .first()
            .map(histogram)),
        (false, true) => Ok(article::Entity::find_by_id(id)
            .one(conn)
            .await?
            .as_ref()
            .map(histogram)),
    }
}

/// Writes the batch's deferred counters (articles, then the site's rating totals, then
/// queues, then authors: the lock order of every write), tells the watching jobs their histograms, stores their
/// idempotent answers, and forgets it all.
pub async fn apply_deferred(conn: &impl ConnectionTrait) -> Result<(), ApiError> {
    let Ok((d, changes)) = DEFERRED.try_with(|d| {
        let mut d = d.borrow_mut();
        (std::mem::take(&mut d.batch), std::mem::take(&mut d.changes))
    }) else {
        return Ok(());
    };
    let watched: BTreeSet<&str> = changes
        .iter()
        .filter_map(|c| c.watch.as_ref().map(|w| w.article_id.as_str()))
        .collect();
    let ids: BTreeSet<&str> = (d.articles.keys().chain(d.ratings.keys()))
        .map(String::as_str)
        .chain(watched.iter().copied())
        .collect();
    let mut after: BTreeMap<&str, [i64; 5]> = BTreeMap::new();
    for id in ids {
        let counts = d.articles.get(id).copied().unwrap_or_default();
        let stars = d.ratings.get(id).copied().unwrap_or_default();
        if let Some(h) = apply_article(conn, id, counts, stars, watched.contains(id)).await? {
            after.insert(id, h);
        }
    }
    // Each watcher sees the final histogram less what the jobs after it changed.
    for c in changes.iter().rev() {
        let Some(h) = after.get_mut(c.article_id.as_str()) else {
            if c.watch.is_some() {
                return Err(ApiError::Internal(format!(
                    "article {} vanished before its counters were written",
                    c.article_id
                )));
            }
            continue;
        };
        if let Some(w) = &c.watch {
            w.after.set(*h);
        }
        add(h, c.own.map(|d| -d));
    }
    apply_site_totals(conn, &d.ratings).await?;
    for (queue, n) in &d.queues {
        write_queue(conn, queue, *n).await?;
    }
    apply_authors(conn, &d.authors).await?;
    apply_flaggers(conn, &d.flaggers).await?;
    if !d.log.is_empty() {
        moderation_log::Entity::insert_many(d.log)
            .exec_without_returning(conn)
            .await?;
    }
    // Last: on PostgreSQL the outbox lock is the last lock of every write.
    let written = super::events::insert(conn, d.events).await?;
    if !written.is_empty() {
        let _ = DEFERRED.try_with(|d| d.borrow_mut().written.extend(written));
    }
    for w in changes.iter().filter_map(|c| c.watch.as_ref()) {
        if let (Some(complete), Some(h)) = (&w.complete, w.after.get()) {
            let (req, status, body) = complete(h);
            idempotency::complete(conn, &req, status, &body).await?;
        }
    }
    Ok(())
}

/// The site's rating count and sum (`rating_totals`) follow the batch's rating changes:
/// one UPDATE, after the articles' and before the queues' (the lock order).
async fn apply_site_totals(
    conn: &impl ConnectionTrait,
    ratings: &BTreeMap<String, [i64; 5]>,
) -> Result<(), DbErr> {
    let (count, sum) = ratings.values().fold((0, 0), |(n, s), d| {
        (
            n + d.iter().sum::<i64>(),
            s + d.iter().zip(1..).map(|(d, stars)| d * stars).sum::<i64>(),
        )
    });
    if count == 0 && sum == 0 {
        return Ok(());
    }
    rating_total::Entity::update_many()
        .col_expr(
            rating_total::Column::RatingCount,
            Expr::col(rating_total::Column::RatingCount).add(count),
        )
        .col_expr(
            rating_total::Column::RatingSum,
            Expr::col(rating_total::Column::RatingSum).add(sum),
        )
        .filter(rating_total::Column::Id.eq(1))
        .exec(conn)
        .await?;
    Ok(())
}

async fn apply_authors(
    conn: &impl ConnectionTrait,
    authors: &BTreeMap<String, [i64; 3]>,
) -> Result<(), DbErr> {
    let changed = || authors.iter().filter(|(_, n)| n.iter().any(|v| *v != 0));
    if changed().any(|(_, n)| n.iter().any(|v| *v < 0)) {
        // Comments left a status (decisions): the rows exist (each was counted when it
        // entered it), and an INSERT of a negative count would break the CHECK before
        // its ON CONFLICT applies. One UPDATE per author, in id order.
        for (id, [approved, rejected, spam]) in changed() {
            let mut update = author_count::Entity::update_many()
                .filter(author_count::Column::AuthorId.eq(id.as_str()));
            for (col, delta) in [
                (author_count::Column::Approved, *approved),
                (author_count::Column::Rejected, *rejected),
                (author_count::Column::Spam, *spam),
            ] {
                if delta != 0 {
                    update = update.col_expr(col, Expr::col(col).add(delta));
                }
            }
            let updated = update.exec(conn).await?.rows_affected;
            // No row yet: this author's comments only entered statuses here.
            if updated == 0 && [approved, rejected, spam].iter().all(|v| **v >= 0) {
                let one = BTreeMap::from([(id.clone(), [*approved, *rejected, *spam])]);
                Box::pin(apply_authors(conn, &one)).await?;
            }
        }
        return Ok(());
    }
    let rows: Vec<author_count::ActiveModel> = changed()
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
