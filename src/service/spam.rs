//! The learned spam model: naive Bayes counts (`spam_tokens`, one row of totals in
//! `spam_model`) learned from moderator decisions, and what each decided comment taught
//! (`spam_lessons`), so that a later decision on the same comment first takes back what
//! the earlier one taught.
//!
//! **How a decision teaches it.** Inside the decision's job, under its comment row's
//! lock, [`learn_in`] works out what the decision teaches (its lesson, and the change of
//! the model's counts: the earlier lesson taken back, the new one added) and stages both
//! in the job's batch, as the counters are (`write::lessons`). At the batch's end, just
//! before its COMMIT, the batch writes the lessons of all its decisions in one
//! multi-row upsert (and one delete for the lessons taken back) and their summed change
//! as ONE new *pending change* row (`spam_pending`: per-class and per-token deltas, and
//! how many decisions it sums): N teaching decisions cost one statement on PostgreSQL
//! (two or three on SQLite), not 2N. A failed job's staged lessons are dropped with it.
//! The earlier lesson a decision takes back is the one staged by an earlier job of the
//! same batch if there is one (two decisions on one comment share a writer: they are
//! routed by comment), else the stored row. None of these rows is one another batch writes: decisions never wait for
//! each other on the model's totals row and its commonest token rows (while they updated
//! those rows and held them to their COMMIT, teaching decisions on PostgreSQL committed
//! one at a time; see BENCHMARKS.md, issue 21's rows). After the COMMIT the deciding
//! instance asks for a fold ([`fold_soon`], not awaited: the answer does not wait for
//! it), and [`fold_pending`] applies every pending change to the totals and the token
//! rows in a short transaction of its own, deleting the pending rows in that same
//! transaction, and records `SpamModelChanged` (every instance's cached model
//! invalidates from it). One fold per instance runs at a time and takes whatever
//! accumulated meanwhile. It starts once the instance's writes pause, or after at most
//! [`FOLD_DEFER`] under a stream of writes, so under load one fold applies many batches
//! (one statement per 300 tokens) instead of one fold (a COMMIT; on SQLite it holds the
//! one writer) per batch. Every instance also folds at startup and every [`FOLD_EVERY`]
//! ([`fold_periodically`]), so changes left pending by a crash between a COMMIT and its
//! fold are applied later. [`learn`] does the same at once in a caller's transaction
//! (one lesson row and one pending row, written by `write::lessons` too; the
//! evaluation and the benchmark's training).
//!
//! **Eventual consistency.** The model a comment is scored with reflects a decision a
//! few milliseconds after the decision's COMMIT (once its fold committed; up to
//! [`FOLD_DEFER`] more while the instance's writes keep coming), not at it;
//! the stored lessons and `GET /moderation/model`'s example counts (the totals plus the
//! pending changes, read in one statement) reflect it at once. Once the pending changes
//! are applied the model equals [`rebuild`] from the stored lessons.
//!
//! **One fold at a time, in order.** A fold first locks the totals row (as every writer
//! of the token rows does), then takes the pending rows with the lowest ids. Folds of
//! several instances on one PostgreSQL therefore run one after the other, and each
//! pending change is applied exactly once: the next fold, once it has the totals row,
//! no longer sees the rows the previous one deleted. Order matters: a fold drops the
//! token rows its changes leave at zero, so a change that takes a lesson back must not be
//! applied before the change that taught it. A later decision on a comment in another
//! transaction inserts its pending row after the earlier one's transaction committed
//! (both hold the comment row until their COMMIT), so it has the higher id, and a fold
//! that sees it also sees (or already applied) the earlier one among the lower ids it
//! takes first; two decisions on a comment in one batch are summed into one row.
//!
//! Lock order: a decision locks its comment row; at its batch's end the batch writes
//! the lessons (rows of the comments it holds) and the pending row, then the counters;
//! a fold holds the totals row, then the pending rows
//! it deletes, then the token rows in sorted order. [`rebuild`] holds the totals against
//! every fold (PostgreSQL: the table, before its snapshot) and reads the lessons and
//! the pending changes in one snapshot, so it neither counts a decision twice nor
//! misses one that commits meanwhile.
//!
//! Bounds: one text teaches or is scored on at most
//! [`MAX_TOKENS_PER_TEXT`](crate::domain::MAX_TOKENS_PER_TEXT) distinct tokens, and the
//! vocabulary is capped at [`MAX_VOCABULARY`] tokens: once it grows past that, the fold
//! that took it there drops the rarest tokens until it holds 90 % of the cap, in its
//! transaction (it holds only the totals row, which no decision takes). Counting the
//! vocabulary reads every token row (4 ms at 22 000 tokens on PostgreSQL), so a fold
//! counts it only when it could be over the cap: each instance remembers the size its
//! last fold left (`Folds::vocabulary`, with the model's version then), and a fold
//! that finds the model at that version adds the tokens it changes (new rows at most)
//! and counts only if that sum passes the cap. A fold that finds another version (the
//! instance's first fold, another instance's fold or a rebuild in between) counts. A
//! pruned token later taken back by a decision is simply absent.
//!
//! Scoring reads nothing per comment: each instance keeps the model in memory
//! ([`SpamCache`]) and checks the totals row's version at most once a minute
//! (at once after a fold or a rebuild, through `SpamModelChanged`), reloading the tokens
//! only when the version moved and the model has enough examples to score.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Expr, ExprTrait, OnConflict},
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;

use super::write::{
    db::Db,
    events::Event,
    lessons::{self, Lesson, ModelDelta as Delta},
    retry::retrying,
    Write,
};
use crate::{
    domain::{tokenize, ModerationStatus, SpamCounts, SpamLabel},
    entity::{comment, spam_lesson, spam_model, spam_pending, spam_token},
    error::ApiError,
};

/// The most tokens the model keeps (about 50 000 × ~40 bytes in each instance's memory).
pub const MAX_VOCABULARY: usize = 50_000;
/// How long an instance scores with its cached model before checking the version. Every
/// change through any instance invalidates it at once (its `SpamModelChanged` event,
/// see `service::events`); this bound only covers rows changed behind tally's back.
pub const MODEL_FRESH_FOR: Duration = Duration::from_secs(60);
/// How often every instance folds what is still pending (changes a crashed instance
/// left behind; a live one folds its own right after each decision).
pub const FOLD_EVERY: Duration = Duration::from_secs(10);
/// How long a fold asked for after a COMMIT waits at most for this instance's writes to
/// pause (see [`fold_soon`]): under load the model reflects a decision up to this much
/// later, and one fold applies several batches' changes.
pub const FOLD_DEFER: Duration = Duration::from_millis(100);
/// Pending changes one fold transaction applies at most (it loops for more).
pub const FOLD_BATCH: u64 = 1000;
const MODEL_ID: i32 = 1;
/// Token rows per multi-row statement.
const CHUNK: usize = 300;

/// `GET /moderation/model`: how many comments the model learned from, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ModelSummary {
    pub examples: Examples,
    /// When the model last changed (`null`: never).
    #[schema(required = true)]
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Examples {
    pub spam: i64,
    pub ham: i64,
}

/// What a comment's new status teaches: approved → ham, spam → spam, rejected → nothing
/// (takes back an earlier lesson); `None` for statuses that are no decision.
fn lesson_of(status: ModerationStatus) -> Option<Option<SpamLabel>> {
    match status {
        ModerationStatus::Approved => Some(Some(SpamLabel::Ham)),
        ModerationStatus::Spam => Some(Some(SpamLabel::Spam)),
        ModerationStatus::Rejected => Some(None),
        ModerationStatus::Pending | ModerationStatus::Deleted => None,
    }
}

async fn totals_for_update(conn: &impl ConnectionTrait) -> Result<spam_model::Model, ApiError> {
    spam_model::Entity::find_by_id(MODEL_ID)
        .lock_exclusive()
        .one(conn)
        .await?
        .ok_or_else(|| ApiError::Internal("spam model row missing".into()))
}

/// Reads what an earlier decision on comment `id` taught (its stored lesson row).
async fn stored_lesson(conn: &impl ConnectionTrait, id: &str) -> Result<Option<Lesson>, ApiError> {
    let Some(o) = spam_lesson::Entity::find_by_id(id).one(conn).await? else {
        return Ok(None);
    };
    Ok(Some((
        SpamLabel::parse(&o.label)
            .ok_or_else(|| ApiError::Internal("bad spam lesson label".into()))?,
        serde_json::from_str::<BTreeMap<String, i64>>(&o.tokens)
            .map_err(|e| ApiError::Internal(format!("bad spam lesson: {e}")))?,
    )))
}

/// What a decision moving `c` to a status that teaches `label` (`None`: nothing, see
/// [`lesson_of`]) changes, given what `c` taught before (`old`): its new lesson and the
/// change of the model's counts (the old lesson taken back, the new one added); `None`
/// when it teaches what `c` already taught.
fn lesson_change(
    old: Option<&Lesson>,
    c: &comment::Model,
    label: Option<SpamLabel>,
) -> Option<(Option<Lesson>, Delta)> {
    let new = label.map(|l| (l, tokenize(&c.body)));
    if old == new.as_ref() {
        return None;
    }
    let mut delta = Delta::default();
    if let Some((l, t)) = old {
        delta.add(*l, t, -1);
    }
    if let Some((l, t)) = &new {
        delta.add(*l, t, 1);
    }
    Some((new, delta))
}

/// What a decision moving `c` to `to` teaches the model, replacing what an earlier
/// decision on it taught, staged in `w`'s batch (a decision, inside its job, after its
/// comment row is locked): its lesson and its change of the counts are written with the
/// batch's others just before the COMMIT (`write::lessons`: one upsert for the lessons,
/// one pending row for the summed change). The earlier lesson is the one staged by an
/// earlier job of the same batch if any (`Write::staged_lesson`), else the stored row.
/// True when it staged a change: after the COMMIT, fold it ([`fold_soon`]).
pub async fn learn_in(
    w: &mut Write<'_>,
    c: &comment::Model,
    to: ModerationStatus,
) -> Result<bool, ApiError> {
    let Some(label) = lesson_of(to) else {
        return Ok(false);
    };
    let stored;
    let old = match w.staged_lesson(&c.id) {
        Some(staged) => staged.as_ref(),
        None => {
            stored = stored_lesson(w.tx(), &c.id).await?;
            stored.as_ref()
        }
    };
    let Some((lesson, delta)) = lesson_change(old, c, label) else {
        return Ok(false);
    };
    w.stage_lesson(&c.id, lesson, delta);
    Ok(true)
}

/// Teaches the model what a decision moving `c` to `to` says, replacing what an earlier
/// decision on it taught, written at once in the caller's transaction (outside a
/// [`Write`]): the lesson row and one pending row, as a batch writes its decisions'
/// (`write::lessons`). True when it staged a change: after the COMMIT, fold it
/// ([`fold_soon`], or [`fold_pending`] to wait for it), which records
/// `SpamModelChanged`. The evaluation and the benchmark's training go through it;
/// decisions go through [`learn_in`], which counts the same.
pub async fn learn(
    conn: &impl ConnectionTrait,
    c: &comment::Model,
    to: ModerationStatus,
) -> Result<bool, ApiError> {
    let Some(label) = lesson_of(to) else {
        return Ok(false);
    };
    let old = stored_lesson(conn, &c.id).await?;
    let Some((lesson, delta)) = lesson_change(old.as_ref(), c, label) else {
        return Ok(false);
    };
    lessons::write_one(conn, &c.id, lesson, delta).await?;
    Ok(true)
}

/// Asks this instance to fold the pending changes soon, without waiting for it (after a
/// decision's COMMIT): once its writes pause, or [`FOLD_DEFER`] later under a stream of
/// writes. Requests while a fold runs are served by one more fold after it.
pub fn fold_soon(db: &Db) {
    let folder = db.spam_folds().clone();
    folder.wanted.store(true, Ordering::SeqCst);
    if folder.running.swap(true, Ordering::SeqCst) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        folder.running.store(false, Ordering::SeqCst);
        return;
    };
    let db = db.clone();
    runtime.spawn(async move {
        loop {
            while folder.wanted.swap(false, Ordering::SeqCst) {
                // Waits (at most FOLD_DEFER) while this instance has writes in
                // flight: under a stream of decisions one fold then takes what several
                // batches staged, instead of one fold (a write transaction and its
                // COMMIT; on SQLite it holds the one writer) after every batch; once
                // the writes pause, the fold runs at once.
                db.until_writes_pause(FOLD_DEFER).await;
                if let Err(e) = fold_pending(&db).await {
                    // Left pending: the next request or the periodic fold tries again.
                    tracing::warn!(error = ?e, "folding the spam model's pending changes failed");
                    break;
                }
            }
            folder.running.store(false, Ordering::SeqCst);
            // A request between the last check and now found the fold running: serve it.
            if !folder.wanted.load(Ordering::SeqCst) || folder.running.swap(true, Ordering::SeqCst)
            {
                return;
            }
        }
    });
}

/// Folds at once, then every [`FOLD_EVERY`] (started with the server).
pub async fn fold_periodically(db: Db) {
    let mut tick = tokio::time::interval(FOLD_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        fold_soon(&db);
    }
}

/// Applies every pending change committed before the call to the model's totals and
/// token rows (several transactions of at most [`FOLD_BATCH`] changes), each
/// recording `SpamModelChanged`; returns how many it applied. When another fold (of
/// this or another instance) is applying some, it waits for that one's COMMIT, so once
/// this returns every change committed before the call is in the model.
pub async fn fold_pending(db: &Db) -> Result<u64, ApiError> {
    let mut applied = 0;
    loop {
        // Nothing to do (the periodic fold, usually): no transaction, no lock.
        let any = spam_pending::Entity::find()
            .select_only()
            .column(spam_pending::Column::Id)
            .limit(1)
            .into_tuple::<i64>()
            .one(&db.conn)
            .await?;
        if any.is_none() {
            break;
        }
        let n = retrying(|| fold_once(db)).await?;
        applied += n;
        if n < FOLD_BATCH {
            break;
        }
    }
    Ok(applied)
}

/// One fold transaction: the totals row first, then the oldest pending changes (ids in
/// order, see the module doc), applied as one summed change and deleted, then the
/// vocabulary's cap when due. Returns how many it applied.
async fn fold_once(db: &Db) -> Result<u64, ApiError> {
    let mut wtx = db.begin_write().await?;
    let mut w = wtx.write();
    let tx = w.tx();
    let before = totals_for_update(tx).await?.version;
    let rows = spam_pending::Entity::find()
        .order_by_asc(spam_pending::Column::Id)
        .limit(FOLD_BATCH)
        .all(tx)
        .await?;
    if rows.is_empty() {
        wtx.rollback().await?;
        return Ok(0);
    }
    let n = rows.len() as u64;
    let mut delta = Delta::default();
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    // A row sums the changes of a batch's decisions: the version counts decisions.
    let changes: i64 = rows.iter().map(|r| r.changes).sum();
    for r in rows {
        delta.spam_docs += r.spam_docs;
        delta.ham_docs += r.ham_docs;
        delta.spam_words += r.spam_words;
        delta.ham_words += r.ham_words;
        let tokens = serde_json::from_str::<BTreeMap<String, (i64, i64)>>(&r.tokens)
            .map_err(|e| ApiError::Internal(format!("bad pending spam change {}: {e}", r.id)))?;
        for (t, (s, h)) in tokens {
            let e = delta.tokens.entry(t).or_default();
            e.0 += s;
            e.1 += h;
        }
    }
    for chunk in ids.chunks(CHUNK) {
        spam_pending::Entity::delete_many()
            .filter(spam_pending::Column::Id.is_in(chunk.iter().copied()))
            .exec(tx)
            .await?;
    }
    let version = apply(tx, &delta, changes).await?;
    // Every token this change touches may be a new row: the vocabulary grew by at most
    // that much since the size this instance's last fold left, if the model is still
    // at that fold's version (see the module doc).
    let touched = delta.tokens.values().filter(|(s, h)| *s != 0 || *h != 0);
    let at_most = db
        .spam_folds()
        .vocabulary_at(before)
        .map(|size| size + touched.count() as i64);
    let size = match at_most {
        Some(size) if size <= MAX_VOCABULARY as i64 => size,
        // Under the totals row, which only folds and rebuilds take: no decision waits.
        _ => prune(tx).await?,
    };
    // The instances' model caches invalidate from this event (see `events`).
    w.record(Event::SpamModelChanged);
    wtx.commit().await?;
    db.spam_folds().set_vocabulary(version, size);
    Ok(n)
}

/// Writes a (summed) change of `changes` decisions into the model's rows: the totals
/// row (a relative UPDATE; the caller holds it), then the token rows in sorted order.
/// Returns the model's version after it.
async fn apply(conn: &impl ConnectionTrait, delta: &Delta, changes: i64) -> Result<i64, ApiError> {
    let totals = spam_model::Entity::update_many()
        .col_expr(
            spam_model::Column::SpamDocs,
            Expr::col(spam_model::Column::SpamDocs).add(delta.spam_docs),
        )
        .col_expr(
            spam_model::Column::HamDocs,
            Expr::col(spam_model::Column::HamDocs).add(delta.ham_docs),
        )
        .col_expr(
            spam_model::Column::SpamWords,
            Expr::col(spam_model::Column::SpamWords).add(delta.spam_words),
        )
        .col_expr(
            spam_model::Column::HamWords,
            Expr::col(spam_model::Column::HamWords).add(delta.ham_words),
        )
        .col_expr(
            spam_model::Column::Version,
            Expr::col(spam_model::Column::Version).add(changes),
        )
        .col_expr(spam_model::Column::UpdatedAt, Expr::value(super::now()))
        .filter(spam_model::Column::Id.eq(MODEL_ID))
        .exec_with_returning(conn)
        .await?;
    let version = totals
        .first()
        .ok_or_else(|| ApiError::Internal("spam model row missing".into()))?
        .version;
    apply_tokens(conn, &delta.tokens).await?;
    Ok(version)
}

/// Adds the (sorted) per-token changes, then drops the rows left empty.
async fn apply_tokens(
    conn: &impl ConnectionTrait,
    tokens: &BTreeMap<String, (i64, i64)>,
) -> Result<(), ApiError> {
    let changed: Vec<(&String, &(i64, i64))> = tokens
        .iter()
        .filter(|(_, (s, h))| *s != 0 || *h != 0)
        .collect();
    for chunk in changed.chunks(CHUNK) {
        let rows = chunk.iter().map(|(t, (s, h))| spam_token::ActiveModel {
            token: Set((*t).clone()),
            spam: Set(*s),
            ham: Set(*h),
        });
        spam_token::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::column(spam_token::Column::Token)
                    .values([
                        (
                            spam_token::Column::Spam,
                            Expr::cust("spam_tokens.spam + excluded.spam"),
                        ),
                        (
                            spam_token::Column::Ham,
                            Expr::cust("spam_tokens.ham + excluded.ham"),
                        ),
                    ])
                    .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
        let lowered: Vec<&str> = chunk
            .iter()
            .filter(|(_, (s, h))| *s < 0 || *h < 0)
            .map(|(t, _)| t.as_str())
            .collect();
        if !lowered.is_empty() {
            spam_token::Entity::delete_many()
                .filter(spam_token::Column::Token.is_in(lowered))
                .filter(spam_token::Column::Spam.lte(0))
                .filter(spam_token::Column::Ham.lte(0))
                .exec(conn)
                .await?;
        }
    }
    Ok(())
}

async fn count_sums(
    conn: &impl ConnectionTrait,
    max_total: Option<i64>,
) -> Result<(i64, i64, i64), ApiError> {
    let mut q = spam_token::Entity::find()
        .select_only()
        .column_as(Expr::cust("CAST(COUNT(*) AS BIGINT)"), "n")
        .column_as(Expr::cust("CAST(COALESCE(SUM(spam), 0) AS BIGINT)"), "s")
        .column_as(Expr::cust("CAST(COALESCE(SUM(ham), 0) AS BIGINT)"), "h");
    if let Some(k) = max_total {
        q = q.filter(Expr::cust(format!("spam + ham <= {k}")));
    }
    Ok(q.into_tuple::<(i64, i64, i64)>()
        .one(conn)
        .await?
        .unwrap_or_default())
}

/// Drops the rarest tokens while the vocabulary is over [`MAX_VOCABULARY`], keeping the
/// per-class word totals equal to the kept tokens' sums; returns the vocabulary's size
/// after it. The caller holds the totals row.
async fn prune(conn: &impl ConnectionTrait) -> Result<i64, ApiError> {
    let (mut size, _, _) = count_sums(conn, None).await?;
    let target = (MAX_VOCABULARY * 9 / 10) as i64;
    if size <= MAX_VOCABULARY as i64 {
        return Ok(size);
    }
    let mut k = 1;
    while size > target {
        let (n, s, h) = count_sums(conn, Some(k)).await?;
        spam_token::Entity::delete_many()
            .filter(Expr::cust(format!("spam + ham <= {k}")))
            .exec(conn)
            .await?;
        spam_model::Entity::update_many()
            .col_expr(
                spam_model::Column::SpamWords,
                Expr::col(spam_model::Column::SpamWords).sub(s),
            )
            .col_expr(
                spam_model::Column::HamWords,
                Expr::col(spam_model::Column::HamWords).sub(h),
            )
            .filter(spam_model::Column::Id.eq(MODEL_ID))
            .exec(conn)
            .await?;
        size -= n;
        k += 1;
    }
    tracing::info!(vocabulary = size, "spam model vocabulary pruned");
    Ok(size)
}

/// The model's example counts and last change, counting the pending changes too (the
/// decisions committed but not folded yet): one statement, so one snapshot.
pub async fn summary(conn: &impl ConnectionTrait) -> Result<ModelSummary, ApiError> {
    let pending = |col: &str| {
        Expr::cust(format!(
            "\"spam_model\".\"{col}\" + (SELECT CAST(COALESCE(SUM(p.{col}), 0) AS BIGINT) \
             FROM spam_pending p)"
        ))
    };
    let (spam, ham, updated_at, pending_at) = spam_model::Entity::find_by_id(MODEL_ID)
        .select_only()
        .column_as(pending("spam_docs"), "spam")
        .column_as(pending("ham_docs"), "ham")
        .column(spam_model::Column::UpdatedAt)
        .column_as(
            Expr::cust("(SELECT MAX(p.created_at) FROM spam_pending p)"),
            "pending_at",
        )
        .into_tuple::<(i64, i64, Option<DateTime<Utc>>, Option<DateTime<Utc>>)>()
        .one(conn)
        .await?
        .ok_or_else(|| ApiError::Internal("spam model row missing".into()))?;
    Ok(ModelSummary {
        examples: Examples { spam, ham },
        updated_at: Ord::max(updated_at, pending_at),
    })
}

/// `POST /admin/model/rebuild`: recounts the model from the stored lessons (what the
/// last decision on each comment taught), in one transaction, then applies the cap. The
/// pending changes it sees are dropped (the lessons it reads include them); those
/// committed after its snapshot stay for the next fold (their lessons are not read).
pub async fn rebuild(db: &Db) -> Result<ModelSummary, ApiError> {
    retrying(|| rebuild_once(db)).await
}

async fn rebuild_once(db: &Db) -> Result<ModelSummary, ApiError> {
    let mut wtx = db.begin_write().await?;
    let mut w = wtx.write();
    let tx = w.tx();
    if db.backend() == DbBackend::Postgres {
        // One snapshot for the lessons and the pending changes, taken once no fold runs
        // (a fold locks the totals row, which this table lock keeps out) and before any
        // read: a decision committing meanwhile is either wholly in it (lesson and
        // pending change) or wholly after it. SQLite: the write lock serialises it all.
        tx.execute_unprepared("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await?;
        tx.execute_unprepared("LOCK TABLE spam_model IN EXCLUSIVE MODE")
            .await?;
    }
    totals_for_update(tx).await?;
    spam_pending::Entity::delete_many().exec(tx).await?;
    let mut tokens: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut delta = Delta::default();
    let mut after: Option<String> = None;
    loop {
        let mut q = spam_lesson::Entity::find()
            .order_by_asc(spam_lesson::Column::CommentId)
            .limit(1000);
        if let Some(a) = &after {
            q = q.filter(spam_lesson::Column::CommentId.gt(a.as_str()));
        }
        let page = q.all(tx).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.comment_id.clone());
        for l in page {
            let (Some(label), Ok(t)) = (
                SpamLabel::parse(&l.label),
                serde_json::from_str::<BTreeMap<String, i64>>(&l.tokens),
            ) else {
                return Err(ApiError::Internal("bad spam lesson".into()));
            };
            delta.add(label, &t, 1);
        }
        for (t, (s, h)) in std::mem::take(&mut delta.tokens) {
            let e = tokens.entry(t).or_default();
            e.0 += s;
            e.1 += h;
        }
    }
    spam_token::Entity::delete_many().exec(tx).await?;
    let rows: Vec<(&String, &(i64, i64))> = tokens.iter().collect();
    for chunk in rows.chunks(CHUNK) {
        spam_token::Entity::insert_many(chunk.iter().map(|(t, (s, h))| spam_token::ActiveModel {
            token: Set((*t).clone()),
            spam: Set(*s),
            ham: Set(*h),
        }))
        .exec_without_returning(tx)
        .await?;
    }
    spam_model::Entity::update_many()
        .col_expr(spam_model::Column::SpamDocs, Expr::value(delta.spam_docs))
        .col_expr(spam_model::Column::HamDocs, Expr::value(delta.ham_docs))
        .col_expr(spam_model::Column::SpamWords, Expr::value(delta.spam_words))
        .col_expr(spam_model::Column::HamWords, Expr::value(delta.ham_words))
        .col_expr(
            spam_model::Column::Version,
            Expr::col(spam_model::Column::Version).add(1),
        )
        .col_expr(spam_model::Column::UpdatedAt, Expr::value(super::now()))
        .filter(spam_model::Column::Id.eq(MODEL_ID))
        .exec(tx)
        .await?;
    prune(tx).await?;
    let s = summary(tx).await?;
    w.record(Event::SpamModelChanged);
    wtx.commit().await?;
    Ok(s)
}

/// The model's full counts (tokens in sorted order), for tests and the evaluation.
pub async fn load(conn: &impl ConnectionTrait) -> Result<SpamCounts, ApiError> {
    let m = spam_model::Entity::find_by_id(MODEL_ID)
        .one(conn)
        .await?
        .ok_or_else(|| ApiError::Internal("spam model row missing".into()))?;
    let rows: Vec<(String, i64, i64)> = spam_token::Entity::find()
        .select_only()
        .column(spam_token::Column::Token)
        .column(spam_token::Column::Spam)
        .column(spam_token::Column::Ham)
        .into_tuple()
        .all(conn)
        .await?;
    Ok(SpamCounts {
        spam_docs: m.spam_docs,
        ham_docs: m.ham_docs,
        spam_words: m.spam_words,
        ham_words: m.ham_words,
        tokens: rows
            .into_iter()
            .map(|(t, s, h)| (t, (s, h)))
            .collect::<HashMap<_, _>>(),
    })
}

/// Each instance's copy of the model (cloning shares it).
#[derive(Default, Clone)]
pub struct SpamCache {
    inner: Arc<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    cached: RwLock<Option<Cached>>,
    generation: AtomicU64,
}

struct Cached {
    version: i64,
    /// `None` when the model had too few examples to be worth loading.
    counts: Arc<SpamCounts>,
    complete: bool,
    read_at: Option<Instant>,
}

impl SpamCache {
    /// The spam probability of `text`, or `None` while the model has fewer than
    /// `min_examples` examples of either kind.
    pub async fn probability(
        &self,
        conn: &impl ConnectionTrait,
        text: &str,
        min_examples: u32,
    ) -> Result<Option<f64>, ApiError> {
        let counts = self.get(conn, min_examples).await?;
        Ok(counts.probability(&tokenize(text), min_examples))
    }

    async fn get(
        &self,
        conn: &impl ConnectionTrait,
        min_examples: u32,
    ) -> Result<Arc<SpamCounts>, ApiError> {
        let min = i64::from(min_examples);
        let usable = |c: &Cached| c.complete || c.counts.spam_docs < min || c.counts.ham_docs < min;
        if let Some(c) = &*self.inner.cached.read().unwrap_or_else(|e| e.into_inner()) {
            if c.read_at.is_some_and(|t| t.elapsed() < MODEL_FRESH_FOR) && usable(c) {
                return Ok(c.counts.clone());
            }
        }
        let generation = self.inner.generation.load(Ordering::SeqCst);
        let read_at = Instant::now();
        let m = spam_model::Entity::find_by_id(MODEL_ID)
            .one(conn)
            .await?
            .ok_or_else(|| ApiError::Internal("spam model row missing".into()))?;
        let known = match &*self.inner.cached.read().unwrap_or_else(|e| e.into_inner()) {
            Some(c) if c.version == m.version && c.complete => Some(c.counts.clone()),
            _ => None,
        };
        let (counts, complete) = match known {
            Some(c) => (c, true),
            None if m.spam_docs < min || m.ham_docs < min => (
                Arc::new(SpamCounts {
                    spam_docs: m.spam_docs,
                    ham_docs: m.ham_docs,
                    spam_words: m.spam_words,
                    ham_words: m.ham_words,
                    tokens: HashMap::new(),
                }),
                false,
            ),
            None => {
                let c = load(conn).await?;
                if c.spam_docs != m.spam_docs || c.ham_docs != m.ham_docs {
                    // Changed between the two reads: use it, but read again next time.
                    return Ok(Arc::new(c));
                }
                (Arc::new(c), true)
            }
        };
        let mut cached = self.inner.cached.write().unwrap_or_else(|e| e.into_inner());
        if self.inner.generation.load(Ordering::SeqCst) == generation {
            *cached = Some(Cached {
                version: m.version,
                counts: counts.clone(),
                complete,
                read_at: Some(read_at),
            });
        }
        Ok(counts)
    }

    /// Forgets the model (run at every `SpamModelChanged` event, see `events`).
    pub fn invalidate(&self) {
        let mut cached = self.inner.cached.write().unwrap_or_else(|e| e.into_inner());
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(c) = cached.as_mut() {
            c.read_at = None;
        }
    }
}
