//! The write context: a [`Write`] (the transaction and the [`Batch`] it adds to) and
//! what the batch writes just before the COMMIT.
//!
//! Every write runs with a [`Write`]: the counters that comments and ratings move on
//! shared rows (articles, queues, authors, flaggers) are added up in its [`Batch`]
//! instead and written by [`Batch::apply`] just before the transaction commits: one UPDATE per
//! article and per queue and one INSERT for all the authors, instead of several
//! statements per write. Same transaction, so the counters still equal a recount at every
//! commit. A batch therefore locks shared rows only at its end, in one global order
//! (articles, the site's `rating_totals` row, queues, authors, each sorted by key;
//! comment rows, whose vote counters a vote moves, are locked before all of them, and a
//! deadlock between two batches' comment rows is retried, see `group_commit`), which is what lets several writers
//! run batches side by side on PostgreSQL without waiting on each other's rows mid-way
//! (see `group_commit`). A write that must answer with its article's aggregate asks for
//! it with [`Write::watch_rating`]: it is told the histogram as it stood right after it, in
//! commit order, once the counters are written.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
};

use sea_orm::{
    sea_query::{Alias, Expr, ExprTrait, OnConflict},
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter,
};

use super::{
    events::{self, Event, StoredEvent},
    lessons::{Lesson, Lessons, ModelDelta},
};
use crate::{
    domain::Stars,
    entity::{article, author_count, flagger_record, moderation_log, queue_counter, rating_total},
    error::ApiError,
};

/// Counter changes (and log rows and events) added up while a write runs.
#[derive(Debug, Default)]
pub(super) struct Deltas {
    /// Article id → (comment_count, top_level_count, review_count).
    pub(super) articles: BTreeMap<String, [i64; 3]>,
    /// Article id → ratings added (removed: negative) per number of stars, 1..=5.
    pub(super) ratings: BTreeMap<String, [i64; 5]>,
    pub(super) queues: BTreeMap<&'static str, i64>,
    /// Author id → (approved, rejected, spam).
    pub(super) authors: BTreeMap<String, [i64; 3]>,
    /// Moderation log entries, in the order they were made.
    pub(super) log: Vec<moderation_log::ActiveModel>,
    /// Flagger id → (upheld, dismissed) (issue 21), written after the authors.
    pub(super) flaggers: BTreeMap<String, [i64; 2]>,
    /// Events for the outbox (`events`), in the order they were recorded.
    pub(super) events: Vec<Event>,
    /// What the decisions taught the spam model (`lessons`), written first.
    pub(super) lessons: Lessons,
}

pub(super) fn add<const N: usize>(into: &mut [i64; N], from: [i64; N]) {
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
        self.lessons.merge(other.lessons);
    }
}

/// Where a write that deferred its rating counters learns its article's histogram as it
/// stood right after that write (see [`Write::watch_rating`]). Filled just before the COMMIT.
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

/// Stores an idempotent write's answer, made from its article's histogram after it, in
/// the transaction (just before its COMMIT).
pub type Completion = Box<
    dyn for<'c> Fn(
            [i64; 5],
            &'c DatabaseTransaction,
        ) -> Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send + 'c>>
        + Send
        + Sync,
>;

/// A [`Completion`] from a closure (which gets its signature from here).
pub fn completion<F>(f: F) -> Completion
where
    F: for<'c> Fn(
            [i64; 5],
            &'c DatabaseTransaction,
        ) -> Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send + 'c>>
        + Send
        + Sync
        + 'static,
{
    Box::new(f)
}

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

/// What one write transaction collects while it runs, to write just before its COMMIT:
/// counter changes, moderation log rows, events, and the rating watches of its jobs.
/// `job` holds the running job's own, which join `batch` only when that job succeeded
/// ([`Batch::job_ended`]); a failed job's are dropped with it. Owned by the transaction
/// (`WriteTx`), lent to its jobs as a [`Write`].
#[derive(Default)]
pub struct Batch {
    batch: Deltas,
    pub(super) job: Deltas,
    /// The running job's request for its article's histogram after it.
    job_watch: Option<Watch>,
    /// The rating changes of the batch's jobs and their requests, in the order the
    /// jobs ran.
    changes: Vec<Change>,
    /// The events written to the outbox by [`Batch::apply`], published once the
    /// transaction committed.
    written: Vec<Arc<StoredEvent>>,
}

impl Batch {
    /// A job of the batch starts: nothing of it is counted yet.
    pub fn job_started(&mut self) {
        self.job = Deltas::default();
        self.job_watch = None;
    }

    /// The job that ran last ended: its counter changes join the batch's if it succeeded.
    pub fn job_ended(&mut self, succeeded: bool) {
        let job = std::mem::take(&mut self.job);
        let mut watch = self.job_watch.take();
        if succeeded {
            for (id, own) in &job.ratings {
                let watch = watch.take_if(|w| w.article_id == *id);
                self.changes.push(Change {
                    article_id: id.clone(),
                    own: *own,
                    watch,
                });
            }
            if let Some(w) = watch {
                // Asked, but changed nothing there (the same stars again).
                self.changes.push(Change {
                    article_id: w.article_id.clone(),
                    own: [0; 5],
                    watch: Some(w),
                });
            }
            self.batch.merge(job);
        }
    }

    /// The events the transaction wrote to the outbox, to publish after its COMMIT
    /// (taken: a second call gets none).
    pub fn take_written(&mut self) -> Vec<Arc<StoredEvent>> {
        std::mem::take(&mut self.written)
    }
}

/// The write a use case runs in: its transaction (or the job's savepoint) and the
/// [`Batch`] it adds to. Only the write path makes one (`Db::write`'s jobs,
/// `WriteTx::write`), so a use case that takes `&mut Write` cannot run outside a write.
pub struct Write<'t> {
    tx: &'t DatabaseTransaction,
    pub(super) batch: &'t mut Batch,
}

impl<'t> Write<'t> {
    pub fn new(tx: &'t DatabaseTransaction, batch: &'t mut Batch) -> Write<'t> {
        Write { tx, batch }
    }

    /// The transaction, for the use case's own statements.
    pub fn tx(&self) -> &'t DatabaseTransaction {
        self.tx
    }

    /// Records `event` as part of this write: it is written to the outbox with the
    /// write's transaction and published after its COMMIT, or dropped with the write.
    pub fn record(&mut self, event: Event) {
        self.batch.job.events.push(event);
    }

    /// Records that a rating of `stars` was added (`sign` 1) or removed (-1) on the
    /// article.
    pub fn rating_changed(&mut self, article_id: &str, stars: Stars, sign: i64) {
        let slot = usize::from(stars.get()) - 1;
        self.batch
            .job
            .ratings
            .entry(article_id.to_owned())
            .or_default()[slot] += sign;
    }

    /// Keeps a moderation log entry to be inserted with the batch's others, just before
    /// the COMMIT (one INSERT for all). Log rows are new rows: inserting them later locks
    /// nothing.
    pub fn log(&mut self, row: moderation_log::ActiveModel) {
        self.batch.job.log.push(row);
    }

    /// What this write staged as comment `comment_id`'s spam lesson, if anything: its
    /// running job's, else an earlier job's of the batch (`Some(None)`: taken back).
    /// `None`: nothing staged here, the stored row (`spam_lessons`) holds it.
    pub fn staged_lesson(&self, comment_id: &str) -> Option<&Option<Lesson>> {
        let b = &*self.batch;
        b.job
            .lessons
            .staged
            .get(comment_id)
            .or_else(|| b.batch.lessons.staged.get(comment_id))
    }

    /// Stages comment `comment_id`'s new spam lesson (`None`: takes it back) and the
    /// change of the model's counts it makes, to be written with the batch's others just
    /// before the COMMIT (see `lessons`): the lessons in one upsert, the changes summed
    /// into one pending row. Dropped with the job if it fails.
    pub fn stage_lesson(&mut self, comment_id: &str, lesson: Option<Lesson>, delta: ModelDelta) {
        self.batch.job.lessons.stage(comment_id, lesson, delta);
    }

    /// Replaces `user_id` by `with` as actor (id and name) and subject of the log
    /// entries this batch keeps for its COMMIT (an erasure: the rows already inserted
    /// are updated by the caller).
    pub fn erase_log(&mut self, user_id: &str, with: &str) {
        let b = &mut *self.batch;
        for row in b.batch.log.iter_mut().chain(b.job.log.iter_mut()) {
            if row.actor_id.try_as_ref().is_some_and(|a| a == user_id) {
                row.actor_id = Set(with.to_owned());
                row.actor_name = Set(with.to_owned());
            }
            if row
                .subject_user_id
                .try_as_ref()
                .is_some_and(|s| s.as_deref() == Some(user_id))
            {
                row.subject_user_id = Set(Some(with.to_owned()));
            }
        }
    }

    /// Records that a moderator's decision upheld or dismissed `flagger`'s flag (issue
    /// 21): their track record is written after the authors' counts, in flagger id
    /// order, so these rows join the one global lock order.
    pub fn flagger_decided(&mut self, flagger: &str, upheld: bool) {
        let delta = if upheld { [1, 0] } else { [0, 1] };
        add(
            self.batch
                .job
                .flaggers
                .entry(flagger.to_owned())
                .or_default(),
            delta,
        );
    }

    /// Asks for the article's rating histogram as it stands right after the running job
    /// (in commit order: every write committed before, this batch's jobs up to this one),
    /// to be put in `after` once the batch's counters are written. With `complete`, the
    /// job's idempotent answer is stored then too, made from that histogram.
    pub fn watch_rating(
        &mut self,
        article_id: &str,
        after: &RatingAfter,
        complete: Option<Completion>,
    ) {
        self.batch.job_watch = Some(Watch {
            article_id: article_id.to_owned(),
            after: after.clone(),
            complete,
        });
    }

    /// Writes what this write collected so far, in the global lock order; for a write
    /// that must write more after the counters (or read one back) before its COMMIT.
    pub async fn flush(&mut self) -> Result<(), ApiError> {
        self.batch.job_ended(true);
        self.batch.apply(self.tx).await?;
        self.batch.job_started();
        Ok(())
    }
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
    [a.stars_1, a.stars_2, a.stars_3, a.stars_4, a.stars_5]
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

impl Batch {
    /// Writes the batch's deferred counters (articles, then the site's rating totals,
    /// then queues, then authors, then flaggers: the lock order of every write), its log
    /// rows and, last, its events; tells the watching jobs their histograms, stores
    /// their idempotent answers, and forgets it all but the written events.
    pub async fn apply(&mut self, conn: &DatabaseTransaction) -> Result<(), ApiError> {
        let d = std::mem::take(&mut self.batch);
        let changes = std::mem::take(&mut self.changes);
        let written = apply(conn, d, &changes).await?;
        self.written.extend(written);
        Ok(())
    }
}

async fn apply(
    conn: &DatabaseTransaction,
    d: Deltas,
    changes: &[Change],
) -> Result<Vec<Arc<StoredEvent>>, ApiError> {
    // First: the lesson rows are the decided comments' own (only a transaction holding
    // the comment row writes its lesson), the pending row a new one.
    d.lessons.write(conn).await?;
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
    let written = events::insert(conn, d.events).await?;
    for w in changes.iter().filter_map(|c| c.watch.as_ref()) {
        if let (Some(complete), Some(h)) = (&w.complete, w.after.get()) {
            complete(h, conn).await?;
        }
    }
    Ok(written)
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
