//! Moderation: queues and their items, decisions (single and bulk), the audit log, and
//! bans. Every status change goes through [`move_comment`]: one conditional update, the
//! kept counters and a log row, in the caller's transaction.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Expr, ExprTrait, OnConflict, Query, SelectStatement},
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, Order, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::{Deserialize, Serialize};

use super::{
    comments::{
        after_cursor, comment_cursor, paginate, status_of, view, CommentView, CursorPage, ListQuery,
    },
    counters,
    db::Db,
    retry::retrying,
};
use crate::{
    auth::User,
    domain::{Action, ArticleId, CommentKind, Cursor, FieldError, ModerationStatus, Sort},
    entity::{author_count, ban, comment, flag, moderation_log, queue_counter},
    error::ApiError,
};

/// The actor id of automatic decisions in the log.
pub const SYSTEM: &str = "system";

/// 403 `banned` while the user has a ban that has not expired.
pub async fn ensure_not_banned(conn: &impl ConnectionTrait, user_id: &str) -> Result<(), ApiError> {
    if super::exists(conn, bans_in_force(user_id)).await? {
        return Err(ApiError::Banned);
    }
    Ok(())
}

/// The bans of `user_id` in force, as a subquery (for an EXISTS).
pub fn bans_in_force(user_id: &str) -> SelectStatement {
    Query::select()
        .expr(Expr::val(1))
        .from(ban::Entity)
        .and_where(ban::Column::UserId.eq(user_id))
        .cond_where(in_force())
        .to_owned()
}

/// Bans that have not expired: an expired ban stops applying by itself.
fn in_force() -> Condition {
    Condition::any()
        .add(ban::Column::ExpiresAt.is_null())
        .add(ban::Column::ExpiresAt.gt(super::now()))
}

/// One row of the append-only audit log.
pub struct LogEntry<'a> {
    pub actor_id: &'a str,
    pub actor_name: &'a str,
    pub action: &'a str,
    pub comment_id: Option<&'a str>,
    pub subject_user_id: Option<&'a str>,
    pub from_status: Option<&'a str>,
    pub to_status: Option<&'a str>,
    pub reason: Option<String>,
}

pub async fn append_log(conn: &impl ConnectionTrait, e: LogEntry<'_>) -> Result<(), ApiError> {
    let row = moderation_log::ActiveModel {
        at: Set(super::now()),
        actor_id: Set(e.actor_id.to_owned()),
        actor_name: Set(e.actor_name.to_owned()),
        action: Set(e.action.to_owned()),
        comment_id: Set(e.comment_id.map(str::to_owned)),
        subject_user_id: Set(e.subject_user_id.map(str::to_owned)),
        from_status: Set(e.from_status.map(str::to_owned)),
        to_status: Set(e.to_status.map(str::to_owned)),
        reason: Set(e.reason),
        ..Default::default()
    };
    // Inside a group-committed batch the entry joins the batch's one INSERT.
    if let Some(row) = super::counters::defer_log(row) {
        moderation_log::Entity::insert(row)
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Queues, items, decisions, the log listing and bans.
// ---------------------------------------------------------------------------------

/// A moderation queue: comments in one status, or those with unresolved flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    Status(ModerationStatus),
    Flagged,
}

impl Queue {
    /// `queue=` of `GET /moderation/queue`; `pending` when absent.
    pub fn parse(raw: Option<&str>) -> Result<Queue, FieldError> {
        match raw {
            None => Ok(Queue::Status(ModerationStatus::Pending)),
            Some("flagged") => Ok(Queue::Flagged),
            Some(s) => match ModerationStatus::parse(s) {
                Some(st) if st != ModerationStatus::Deleted => Ok(Queue::Status(st)),
                _ => Err(FieldError::new(
                    "queue",
                    "must be one of pending, flagged, rejected, spam, approved",
                )),
            },
        }
    }

    fn condition(self) -> Condition {
        match self {
            Queue::Status(s) => Condition::all().add(comment::Column::Status.eq(s.as_str())),
            // A literal, not a bound value: it must match the partial index
            // `idx_comments_flagged_queue` (… WHERE flag_count > 0) for the planner to use it.
            Queue::Flagged => {
                Condition::all().add(Expr::col(comment::Column::FlagCount).gt(Expr::cust("0")))
            }
        }
    }
}

fn sea_order(sort: Sort) -> Order {
    match sort {
        Sort::Oldest => Order::Asc,
        Sort::Newest => Order::Desc,
    }
}

/// What the rule pipeline saw: a 0–1 risk score and every signal (`links:3`, …).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AutoModeration {
    #[schema(minimum = 0, maximum = 1)]
    pub score: f64,
    pub reasons: Vec<String>,
    /// The learned spam model's probability when the text was last scored; `null`
    /// while the model had too few examples (`spam_min_examples` of each kind).
    #[schema(required = true, minimum = 0, maximum = 1)]
    pub spam_probability: Option<f64>,
}

/// How many of the author's comments ended in each status.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct AuthorHistory {
    pub approved: i64,
    pub rejected: i64,
    pub spam: i64,
}

/// A comment plus what a moderator needs to decide on it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModerationItem {
    pub comment: CommentView,
    pub version: i32,
    pub flag_count: i32,
    /// The sum of the unresolved flags' weights (each `2·(upheld+1)/(upheld+dismissed+2)`
    /// of its flagger when cast); the hide threshold applies to it.
    pub flag_weight: f64,
    /// Unresolved flags by reason.
    pub flags: BTreeMap<String, i64>,
    pub auto_moderation: AutoModeration,
    pub author_history: AuthorHistory,
    /// The moderator working on it, or `null` (an expired claim is `null`).
    #[schema(required = true)]
    pub claim: Option<super::claims::ClaimView>,
}

/// Builds the items of a page with two grouped queries (flags, author history) in all,
/// whatever the page size.
pub async fn items(
    conn: &impl ConnectionTrait,
    caller: &User,
    rows: Vec<comment::Model>,
) -> Result<Vec<ModerationItem>, ApiError> {
    if rows.is_empty() {
        return Ok(vec![]);
    }
    let ids: Vec<&str> = rows.iter().map(|c| c.id.as_str()).collect();
    let flags: Vec<(String, String, i64)> = flag::Entity::find()
        .select_only()
        .column(flag::Column::CommentId)
        .column(flag::Column::Reason)
        .column_as(Expr::col(flag::Column::UserId).count(), "n")
        .filter(flag::Column::CommentId.is_in(ids))
        .filter(flag::Column::ResolvedAt.is_null())
        .group_by(flag::Column::CommentId)
        .group_by(flag::Column::Reason)
        .into_tuple()
        .all(conn)
        .await?;
    let mut authors: Vec<&str> = rows.iter().map(|c| c.author_id.as_str()).collect();
    authors.sort_unstable();
    authors.dedup();
    let history = author_count::Entity::find()
        .filter(author_count::Column::AuthorId.is_in(authors))
        .all(conn)
        .await?;
    let ids: Vec<&str> = rows.iter().map(|c| c.id.as_str()).collect();
    let claims = super::claims::in_force(conn, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|c| {
            let claim = claims
                .iter()
                .find(|h| h.comment_id == c.id)
                .cloned()
                .map(Into::into);
            let flags = flags
                .iter()
                .filter(|(id, _, _)| *id == c.id)
                .map(|(_, reason, n)| (reason.clone(), *n))
                .collect();
            let author_history = history
                .iter()
                .find(|h| h.author_id == c.author_id)
                .map(|h| AuthorHistory {
                    approved: h.approved,
                    rejected: h.rejected,
                    spam: h.spam,
                })
                .unwrap_or_default();
            ModerationItem {
                version: c.version,
                flag_count: c.flag_count,
                flag_weight: c.flag_weight,
                flags,
                auto_moderation: AutoModeration {
                    score: c.auto_score,
                    reasons: serde_json::from_str(&c.auto_reasons).unwrap_or_default(),
                    spam_probability: c.spam_probability,
                },
                author_history,
                claim,
                comment: view(c, Some(caller), true),
            }
        })
        .collect())
}

pub struct QueueQuery {
    pub queue: Queue,
    pub article_id: Option<ArticleId>,
    pub page: ListQuery,
    /// `unclaimed=true`: hide the items other moderators hold.
    pub unclaimed: bool,
    /// `sort=weight` (flagged queue): heaviest `flag_weight` first, then id descending,
    /// keyset on both (served by `idx_comments_flagged_weight`).
    pub by_weight: bool,
}

/// `GET /moderation/queue`: oldest first by default, keyset-paginated on
/// (created_at, id) over the queue indexes.
pub async fn queue(
    conn: &impl ConnectionTrait,
    caller: &User,
    q: QueueQuery,
) -> Result<CursorPage<ModerationItem>, ApiError> {
    let mut select = comment::Entity::find().filter(q.queue.condition());
    if let Some(a) = &q.article_id {
        select = select.filter(comment::Column::ArticleId.eq(a.as_str()));
    }
    if q.unclaimed {
        select = select.filter(
            comment::Column::Id.not_in_subquery(super::claims::held_by_others_ids(&caller.id)),
        );
    }
    if q.by_weight {
        if let Some(c) = &q.page.cursor {
            let (w, id) = weight_position(c)?;
            select = select.filter(
                Condition::all()
                    .add(comment::Column::FlagWeight.lte(w))
                    .add(
                        Condition::any()
                            .add(comment::Column::FlagWeight.lt(w))
                            .add(comment::Column::Id.lt(id)),
                    ),
            );
        }
        let rows = select
            .order_by_desc(comment::Column::FlagWeight)
            .order_by_desc(comment::Column::Id)
            .limit(q.page.limit + 1)
            .all(conn)
            .await?;
        let page = paginate(rows, q.page.limit, |c| Cursor {
            created_at: c.created_at,
            id: format!("{} {}", c.flag_weight, c.id),
        });
        return Ok(CursorPage {
            items: items(conn, caller, page.items).await?,
            next_cursor: page.next_cursor,
        });
    }
    if let Some(c) = &q.page.cursor {
        select = select.filter(after_cursor(
            comment::Column::CreatedAt,
            comment::Column::Id,
            q.page.sort,
            c,
        ));
    }
    let order = sea_order(q.page.sort);
    let rows = select
        .order_by(comment::Column::CreatedAt, order.clone())
        .order_by(comment::Column::Id, order)
        .limit(q.page.limit + 1)
        .all(conn)
        .await?;
    let page = paginate(rows, q.page.limit, comment_cursor);
    Ok(CursorPage {
        items: items(conn, caller, page.items).await?,
        next_cursor: page.next_cursor,
    })
}

/// The (flag_weight, id) a `sort=weight` cursor carries in its id: `"<weight> <id>"`.
fn weight_position(c: &Cursor) -> Result<(f64, String), ApiError> {
    c.id.split_once(' ')
        .and_then(|(w, id)| Some((w.parse::<f64>().ok()?, id.to_owned())))
        .ok_or_else(|| {
            ApiError::BadRequest(
                "bad query string".into(),
                vec![FieldError::new(
                    "cursor",
                    "is not a cursor this service gave out",
                )],
            )
        })
}

/// Queue sizes, read from the kept counters (never counted per request).
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct QueueStats {
    pub pending: i64,
    pub flagged: i64,
    pub rejected: i64,
    pub spam: i64,
    pub approved: i64,
}

pub async fn stats(conn: &impl ConnectionTrait) -> Result<QueueStats, ApiError> {
    let mut s = QueueStats::default();
    for row in queue_counter::Entity::find().all(conn).await? {
        let slot = match row.queue.as_str() {
            "pending" => &mut s.pending,
            "flagged" => &mut s.flagged,
            "rejected" => &mut s.rejected,
            "spam" => &mut s.spam,
            "approved" => &mut s.approved,
            _ => continue,
        };
        *slot = row.count;
    }
    Ok(s)
}

/// What a moderator may decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Approve,
    Reject,
    Spam,
}

impl Verdict {
    fn action(self) -> Action {
        match self {
            Verdict::Approve => Action::Approve,
            Verdict::Reject => Action::Reject,
            Verdict::Spam => Action::Spam,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Reject => "reject",
            Verdict::Spam => "spam",
        }
    }
}

/// Who made a change, as the log records it.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub id: &'a str,
    pub name: &'a str,
}

impl<'a> Actor<'a> {
    pub const SYSTEM: Actor<'static> = Actor {
        id: SYSTEM,
        name: SYSTEM,
    };

    pub fn user(u: &'a User) -> Self {
        Actor {
            id: &u.id,
            name: &u.name,
        }
    }
}

/// One status change of a comment, as `move_comment` carries it out.
pub struct Change<'a> {
    pub action: Action,
    /// The `action` column of the log row.
    pub log_action: &'a str,
    pub actor: Actor<'a>,
    pub reason: Option<String>,
    /// A moderator's decision settles the flags raised so far.
    pub resolve_flags: bool,
}

/// Moves `c` (as read in this transaction) through `change` if it is still at
/// `expected_version`: the conditional update is what makes one of two concurrent
/// moderators win and the other get 409, on SQLite and PostgreSQL alike. Keeps the
/// counters, resolves flags when asked, and appends the log row; returns the new row.
pub async fn move_comment(
    conn: &impl ConnectionTrait,
    c: comment::Model,
    expected_version: i32,
    change: Change<'_>,
) -> Result<comment::Model, ApiError> {
    let from = status_of(&c);
    let to = from
        .apply(change.action)
        .map_err(|e| ApiError::validation("action", e.to_string()))?;
    let now = super::now();
    let mut update = comment::Entity::update_many()
        .col_expr(comment::Column::Status, Expr::value(to.as_str()))
        .col_expr(
            comment::Column::Version,
            Expr::col(comment::Column::Version).add(1),
        )
        .col_expr(comment::Column::UpdatedAt, Expr::value(now))
        .filter(comment::Column::Id.eq(&c.id))
        .filter(comment::Column::Version.eq(expected_version));
    if change.resolve_flags {
        update = update
            .col_expr(comment::Column::FlagCount, Expr::value(0))
            .col_expr(comment::Column::FlagWeight, Expr::value(0.0));
    }
    if update.exec(conn).await?.rows_affected == 0 {
        let current = comment::Entity::find_by_id(&c.id)
            .one(conn)
            .await?
            .map_or(c.version, |now| now.version);
        return Err(ApiError::VersionConflict {
            expected: expected_version,
            current,
        });
    }
    if change.resolve_flags {
        // Each unresolved flag's flagger: upheld by a rejection or spam, dismissed by an
        // approval (their track record is written in the global lock order, at flush).
        let upheld = match change.action {
            Action::Approve => Some(false),
            Action::Reject | Action::Spam => Some(true),
            _ => None,
        };
        if let Some(upheld) = upheld.filter(|_| c.flag_count > 0) {
            let flaggers: Vec<String> = flag::Entity::find()
                .select_only()
                .column(flag::Column::UserId)
                .filter(flag::Column::CommentId.eq(&c.id))
                .filter(flag::Column::ResolvedAt.is_null())
                .into_tuple()
                .all(conn)
                .await?;
            for f in flaggers {
                counters::flagger_decided(conn, &f, upheld).await?;
            }
        }
        flag::Entity::update_many()
            .col_expr(flag::Column::ResolvedAt, Expr::value(now))
            .filter(flag::Column::CommentId.eq(&c.id))
            .filter(flag::Column::ResolvedAt.is_null())
            .exec(conn)
            .await?;
    }
    // Queue counters last, after the comment, its ancestors and the article: the lock
    // order every write keeps (see `counters::status_changed`).
    counters::status_changed(conn, &c, Some(from), to).await?;
    if change.resolve_flags && c.flag_count > 0 {
        counters::bump_queue(conn, FLAGGED, -1).await?;
    }
    append_log(
        conn,
        LogEntry {
            actor_id: change.actor.id,
            actor_name: change.actor.name,
            action: change.log_action,
            comment_id: Some(&c.id),
            subject_user_id: Some(&c.author_id),
            from_status: Some(from.as_str()),
            to_status: Some(to.as_str()),
            reason: change.reason,
        },
    )
    .await?;
    super::events::record(super::events::Event::CommentStatusChanged {
        comment_id: c.id.clone(),
        article_id: c.article_id.clone(),
        from: from.as_str().to_owned(),
        to: to.as_str().to_owned(),
        actor_id: change.actor.id.to_owned(),
        actor_name: change.actor.name.to_owned(),
    })?;
    Ok(comment::Model {
        status: to.as_str().to_owned(),
        version: c.version + 1,
        flag_count: if change.resolve_flags {
            0
        } else {
            c.flag_count
        },
        flag_weight: if change.resolve_flags {
            0.0
        } else {
            c.flag_weight
        },
        updated_at: now,
        ..c
    })
}

/// The name of the kept counter of comments with unresolved flags.
pub const FLAGGED: &str = "flagged";

/// A moderator's decision on one comment.
#[derive(Debug, Clone)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: Option<String>,
    pub expected_version: Option<i32>,
}

/// `POST /moderation/comments/{id}/decision`, in one transaction: 404 for an unknown
/// comment, 409 when `expected_version` is stale, 422 (`action`) for a deleted one.
pub async fn decide(
    db: &Db,
    moderator: &User,
    comment_id: &str,
    d: Decision,
) -> Result<ModerationItem, ApiError> {
    let (updated, model_changed) =
        retrying(|| counters::in_lock_order(decide_once(db, moderator, comment_id, d.clone())))
            .await?;
    if model_changed {
        // The spam model's shared rows are written by a fold of their own, after the
        // COMMIT and not awaited (see `spam`): decisions never wait for each other there.
        super::spam::fold_soon(db);
    }
    // The item is read after the COMMIT (its flags, author history and claim as they
    // stand now): read inside, it kept the shared counter rows locked for three more
    // round trips, and decisions on PostgreSQL wait for each other on those rows.
    items(&db.conn, moderator, vec![updated])
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal("decided comment has no item".into()))
}

/// One attempt at a decision; returns the comment as it now stands, and whether it
/// staged a change of the spam model (`spam::stage`: then fold it after the COMMIT).
async fn decide_once(
    db: &Db,
    moderator: &User,
    comment_id: &str,
    d: Decision,
) -> Result<(comment::Model, bool), ApiError> {
    let tx = db.begin_write().await?;
    // Locked on PostgreSQL, so a decision without `expected_version` waits for a
    // concurrent one instead of failing; the conditional update still has the last word.
    let c = comment::Entity::find_by_id(comment_id)
        .lock_exclusive()
        .one(&*tx)
        .await?
        .ok_or_else(|| ApiError::not_found("comment"))?;
    let expected = d.expected_version.unwrap_or(c.version);
    if expected != c.version {
        return Err(ApiError::VersionConflict {
            expected,
            current: c.version,
        });
    }
    let updated = move_comment(
        &*tx,
        c,
        expected,
        Change {
            action: d.verdict.action(),
            log_action: d.verdict.as_str(),
            actor: Actor::user(moderator),
            reason: d.reason,
            resolve_flags: true,
        },
    )
    .await?;
    // What the decision teaches the spam model: its own lesson row and a pending change
    // (new rows only); the model's shared rows are left to the fold after the COMMIT.
    let lesson = super::spam::teach(&*tx, &updated, status_of(&updated)).await?;
    let model_changed = super::spam::stage(&*tx, lesson).await?;
    super::claims::released_by_decision(&*tx, comment_id).await?;
    // The counters, in the global lock order.
    counters::flush(&*tx).await?;
    tx.commit().await?;
    Ok((updated, model_changed))
}

/// One result of a bulk decision: `item` when `ok`, else `error`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkResult {
    /// `null` when the item named no usable `comment_id`.
    #[schema(required = true)]
    pub comment_id: Option<String>,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub item: Option<ModerationItem>,
    /// The problem document the single decision would have answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = crate::error::Problem, nullable = false)]
    pub error: Option<serde_json::Value>,
}

impl BulkResult {
    pub fn of(comment_id: Option<String>, outcome: Result<ModerationItem, ApiError>) -> Self {
        match outcome {
            Ok(item) => BulkResult {
                comment_id,
                ok: true,
                item: Some(item),
                error: None,
            },
            Err(e) => {
                if let ApiError::Internal(cause) = &e {
                    tracing::error!(cause = %cause, "internal error in a bulk decision");
                }
                BulkResult {
                    comment_id,
                    ok: false,
                    item: None,
                    error: serde_json::from_str(&e.to_problem_json()).ok(),
                }
            }
        }
    }
}

/// One entry of the audit log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = LogEntry)]
pub struct LogView {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: ActorView,
    pub action: String,
    pub comment_id: Option<String>,
    /// The user a ban or a decision concerns.
    pub subject_user_id: Option<String>,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub reason: Option<String>,
    /// `review` when the entry is about a review (absent for comments and bans).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment_kind: Option<CommentKind>,
    /// The review's stars (its author's current rating); absent but for reviews.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 5)]
    pub stars: Option<i16>,
}

/// Who made a change; automatic decisions have id `system`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Actor)]
pub struct ActorView {
    pub id: String,
    pub name: String,
}

impl From<moderation_log::Model> for LogView {
    fn from(m: moderation_log::Model) -> Self {
        LogView {
            id: m.id,
            at: m.at,
            actor: ActorView {
                id: m.actor_id,
                name: m.actor_name,
            },
            action: m.action,
            comment_id: m.comment_id,
            subject_user_id: m.subject_user_id,
            from_status: m.from_status,
            to_status: m.to_status,
            reason: m.reason,
            comment_kind: None,
            stars: None,
        }
    }
}

pub struct LogQuery {
    pub comment_id: Option<String>,
    pub actor: Option<String>,
    pub limit: u64,
    pub cursor: Option<Cursor>,
}

/// The position of a log cursor: the id of the last entry seen.
fn log_position(c: &Cursor) -> Result<i64, ApiError> {
    c.id.parse().map_err(|_| {
        ApiError::BadRequest(
            "bad query string".into(),
            vec![FieldError::new(
                "cursor",
                "is not a cursor this service gave out",
            )],
        )
    })
}

/// `GET /moderation/log`: newest first, keyset on the id.
pub async fn log(
    conn: &impl ConnectionTrait,
    q: LogQuery,
) -> Result<CursorPage<LogView>, ApiError> {
    let mut select = moderation_log::Entity::find();
    if let Some(id) = &q.comment_id {
        select = select.filter(moderation_log::Column::CommentId.eq(id));
    }
    if let Some(actor) = &q.actor {
        select = select.filter(moderation_log::Column::ActorId.eq(actor));
    }
    if let Some(c) = &q.cursor {
        select = select.filter(moderation_log::Column::Id.lt(log_position(c)?));
    }
    let rows = select
        .order_by_desc(moderation_log::Column::Id)
        .limit(q.limit + 1)
        .all(conn)
        .await?;
    let page = paginate(rows, q.limit, |m| Cursor {
        created_at: m.at,
        id: m.id.to_string(),
    });
    let mut items: Vec<LogView> = page.items.into_iter().map(LogView::from).collect();
    mark_reviews(conn, &mut items).await?;
    Ok(CursorPage {
        items,
        next_cursor: page.next_cursor,
    })
}

/// Marks the entries about reviews with their kind and stars: one query for the page.
async fn mark_reviews(conn: &impl ConnectionTrait, items: &mut [LogView]) -> Result<(), ApiError> {
    let ids: Vec<&str> = items
        .iter()
        .filter_map(|i| i.comment_id.as_deref())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let reviews: Vec<(String, Option<i16>)> = comment::Entity::find()
        .select_only()
        .column(comment::Column::Id)
        .column(comment::Column::Stars)
        .filter(comment::Column::Id.is_in(ids))
        .filter(comment::Column::Kind.eq(CommentKind::Review.as_str()))
        .into_tuple()
        .all(conn)
        .await?;
    for item in items {
        if let Some((_, stars)) = reviews
            .iter()
            .find(|(id, _)| item.comment_id.as_deref() == Some(id.as_str()))
        {
            item.comment_kind = Some(CommentKind::Review);
            item.stars = *stars;
        }
    }
    Ok(())
}

/// A ban as moderators see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Ban)]
pub struct BanView {
    pub user_id: String,
    pub reason: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<ban::Model> for BanView {
    fn from(b: ban::Model) -> Self {
        BanView {
            user_id: b.user_id,
            reason: b.reason,
            created_by: b.created_by,
            created_at: b.created_at,
            expires_at: b.expires_at,
        }
    }
}

/// The answer to a ban: the ban, and how many pending comments `purge` rejected.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BanOutcome {
    #[serde(flatten)]
    pub ban: BanView,
    pub purged: u64,
}

pub struct NewBan {
    pub user_id: String,
    pub reason: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub purge: bool,
}

/// `POST /moderation/bans`: bans (or re-bans, replacing reason and expiry) a user, and
/// with `purge` rejects their pending comments, all in one transaction. Returns whether
/// the ban is new.
pub async fn ban(db: &Db, moderator: &User, b: &NewBan) -> Result<(BanOutcome, bool), ApiError> {
    retrying(|| counters::in_lock_order(ban_once(db, moderator, b))).await
}

async fn ban_once(db: &Db, moderator: &User, b: &NewBan) -> Result<(BanOutcome, bool), ApiError> {
    let tx = db.begin_write().await?;
    let created = ban::Entity::find_by_id(&b.user_id)
        .one(&*tx)
        .await?
        .is_none();
    let row = ban::Model {
        user_id: b.user_id.clone(),
        reason: b.reason.clone(),
        created_by: moderator.id.clone(),
        created_at: super::now(),
        expires_at: b.expires_at,
    };
    ban::Entity::insert(ban::ActiveModel::from(row.clone()))
        .on_conflict(
            OnConflict::column(ban::Column::UserId)
                .update_columns([
                    ban::Column::Reason,
                    ban::Column::CreatedBy,
                    ban::Column::CreatedAt,
                    ban::Column::ExpiresAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(&*tx)
        .await?;
    let until = b.expires_at.map_or_else(
        || "permanent".to_owned(),
        |t| format!("until {}", t.to_rfc3339()),
    );
    append_log(
        &*tx,
        LogEntry {
            actor_id: &moderator.id,
            actor_name: &moderator.name,
            action: "ban",
            comment_id: None,
            subject_user_id: Some(&b.user_id),
            from_status: None,
            to_status: None,
            reason: Some(format!("{} ({until})", b.reason)),
        },
    )
    .await?;
    let purged = if b.purge {
        purge(&*tx, moderator, &b.user_id, &b.reason).await?
    } else {
        0
    };
    super::events::record(super::events::Event::UserBanned {
        user_id: b.user_id.clone(),
        actor_id: moderator.id.clone(),
        actor_name: moderator.name.clone(),
    })?;
    counters::flush(&*tx).await?;
    tx.commit().await?;
    Ok((
        BanOutcome {
            ban: row.into(),
            purged,
        },
        created,
    ))
}

/// Rejects every pending comment of `user_id`; returns how many.
async fn purge(
    conn: &impl ConnectionTrait,
    moderator: &User,
    user_id: &str,
    reason: &str,
) -> Result<u64, ApiError> {
    let pending: Vec<String> = comment::Entity::find()
        .select_only()
        .column(comment::Column::Id)
        .filter(comment::Column::AuthorId.eq(user_id))
        .filter(comment::Column::Status.eq(ModerationStatus::Pending.as_str()))
        // Comment rows in id order, as every write that locks several takes them.
        .order_by_asc(comment::Column::Id)
        .into_tuple()
        .all(conn)
        .await?;
    let mut n = 0;
    for id in pending {
        // One comment at a time, locked as a decision locks it (PostgreSQL), and skipped
        // if a moderator decided on it in the meantime.
        let Some(c) = comment::Entity::find_by_id(&id)
            .lock_exclusive()
            .one(conn)
            .await?
            .filter(|c| status_of(c) == ModerationStatus::Pending)
        else {
            continue;
        };
        n += 1;
        let version = c.version;
        move_comment(
            conn,
            c,
            version,
            Change {
                action: Action::Reject,
                log_action: "reject",
                actor: Actor::user(moderator),
                reason: Some(format!("ban purge: {reason}")),
                resolve_flags: true,
            },
        )
        .await?;
    }
    Ok(n)
}

/// `GET /moderation/bans`: bans in force, newest first, keyset on (created_at, user_id).
pub async fn bans(
    conn: &impl ConnectionTrait,
    limit: u64,
    cursor: Option<Cursor>,
) -> Result<CursorPage<BanView>, ApiError> {
    let mut select = ban::Entity::find().filter(in_force());
    if let Some(c) = cursor {
        let key = Expr::tuple([
            Expr::col(ban::Column::CreatedAt),
            Expr::col(ban::Column::UserId),
        ]);
        select = select.filter(key.lt(Expr::tuple([Expr::value(c.created_at), Expr::value(c.id)])));
    }
    let rows = select
        .order_by_desc(ban::Column::CreatedAt)
        .order_by_desc(ban::Column::UserId)
        .limit(limit + 1)
        .all(conn)
        .await?;
    let page = paginate(rows, limit, |b| Cursor {
        created_at: b.created_at,
        id: b.user_id.clone(),
    });
    Ok(CursorPage {
        items: page.items.into_iter().map(BanView::from).collect(),
        next_cursor: page.next_cursor,
    })
}

/// `DELETE /moderation/bans/{user_id}`: lifts a ban (nothing to do when there is none).
pub async fn unban(db: &Db, moderator: &User, user_id: &str) -> Result<(), ApiError> {
    retrying(|| counters::in_lock_order(unban_once(db, moderator, user_id))).await
}

async fn unban_once(db: &Db, moderator: &User, user_id: &str) -> Result<(), ApiError> {
    let tx = db.begin_write().await?;
    let deleted = ban::Entity::delete_by_id(user_id)
        .exec(&*tx)
        .await?
        .rows_affected;
    if deleted > 0 {
        append_log(
            &*tx,
            LogEntry {
                actor_id: &moderator.id,
                actor_name: &moderator.name,
                action: "unban",
                comment_id: None,
                subject_user_id: Some(user_id),
                from_status: None,
                to_status: None,
                reason: None,
            },
        )
        .await?;
        super::events::record(super::events::Event::UserUnbanned {
            user_id: user_id.to_owned(),
            actor_id: moderator.id.clone(),
            actor_name: moderator.name.clone(),
        })?;
    }
    counters::flush(&*tx).await?;
    tx.commit().await?;
    Ok(())
}
