//! Moving a comment between moderation statuses: every status change goes through
//! [`move_comment`] (one conditional update, the kept counters and a log row, in the
//! caller's write).

use sea_orm::{
    sea_query::{Expr, ExprTrait},
    ColumnTrait, EntityTrait, QueryFilter, QuerySelect,
};

use super::log::{append_log, LogEntry, SYSTEM};
use crate::service::write::{counters, Write};
use crate::{
    auth::User,
    domain::{Action, ModerationStatus},
    entity::{comment, flag},
    error::ApiError,
};

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
    w: &mut Write<'_>,
    c: comment::Model,
    expected_version: i32,
    change: Change<'_>,
) -> Result<comment::Model, ApiError> {
    let conn = w.tx();
    let from = status_of(&c);
    let to = from
        .apply(change.action)
        .map_err(|e| ApiError::validation("action", e.to_string()))?;
    let now = crate::service::now();
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
                w.flagger_decided(&f, upheld);
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
    counters::status_changed(w, &c, Some(from), to).await?;
    if change.resolve_flags && c.flag_count > 0 {
        counters::bump_queue(w, FLAGGED, -1);
    }
    append_log(
        w,
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
    w.record(crate::service::write::events::Event::CommentStatusChanged {
        comment_id: c.id.clone(),
        article_id: c.article_id.clone(),
        from: from.as_str().to_owned(),
        to: to.as_str().to_owned(),
        actor_id: change.actor.id.to_owned(),
        actor_name: change.actor.name.to_owned(),
    });
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

pub fn status_of(c: &comment::Model) -> ModerationStatus {
    // The CHECK constraint admits only the five names, so this never falls back.
    ModerationStatus::parse(&c.status).unwrap_or(ModerationStatus::Pending)
}
