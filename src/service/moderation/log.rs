//! The audit log: entries appended with the write's batch ([`append_log`]), and its
//! listing for moderators.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Serialize;

use crate::service::{
    listing::{paginate, CursorPage},
    write::Write,
};
use crate::{
    domain::{CommentKind, Cursor, FieldError},
    entity::{comment, moderation_log},
    error::ApiError,
};

/// The actor id of automatic decisions in the log.
pub const SYSTEM: &str = "system";

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

pub async fn append_log(w: &mut Write<'_>, e: LogEntry<'_>) -> Result<(), ApiError> {
    let row = moderation_log::ActiveModel {
        at: Set(crate::service::now()),
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
    // The entry joins the batch's one INSERT, just before the COMMIT.
    w.log(row);
    Ok(())
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
