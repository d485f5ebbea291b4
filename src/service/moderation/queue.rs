//! The moderation queues and their items (a comment with its flags, its author's
//! history and its claim), and the queue sizes.

use std::collections::BTreeMap;

use sea_orm::{
    sea_query::{Expr, ExprTrait},
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, Order, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Serialize;

use crate::service::{
    comments::{view, CommentView},
    listing::{after_cursor, comment_cursor, paginate, CursorPage, ListQuery},
};
use crate::{
    auth::User,
    domain::{ArticleId, Cursor, FieldError, ModerationStatus, Sort},
    entity::{author_count, comment, flag, queue_counter},
    error::ApiError,
};

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
    pub claim: Option<crate::service::claims::ClaimView>,
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
    let claims = crate::service::claims::in_force(conn, &ids).await?;
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
            comment::Column::Id
                .not_in_subquery(crate::service::claims::held_by_others_ids(&caller.id)),
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
