//! Bans: whether one is in force (checked by every write of a reader), the list, and
//! banning (with the purge of the user's pending comments) and unbanning.

use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Expr, ExprTrait, OnConflict, Query, SelectStatement},
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;

use super::{
    log::{append_log, LogEntry},
    moves::status_of,
    moves::{move_comment, Actor, Change},
};
use crate::service::{
    listing::{paginate, CursorPage},
    write::db::Db,
    write::retry::retrying,
    write::Write,
};
use crate::{
    auth::User,
    domain::{Action, Cursor, ModerationStatus},
    entity::{ban, comment},
    error::ApiError,
};

/// 403 `banned` while the user has a ban that has not expired.
pub async fn ensure_not_banned(conn: &impl ConnectionTrait, user_id: &str) -> Result<(), ApiError> {
    if crate::service::exists(conn, bans_in_force(user_id)).await? {
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
        .add(ban::Column::ExpiresAt.gt(crate::service::now()))
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
    retrying(|| ban_once(db, moderator, b)).await
}

async fn ban_once(db: &Db, moderator: &User, b: &NewBan) -> Result<(BanOutcome, bool), ApiError> {
    let mut wtx = db.begin_write().await?;
    let mut w = wtx.write();
    let tx = w.tx();
    let created = ban::Entity::find_by_id(&b.user_id).one(tx).await?.is_none();
    let row = ban::Model {
        user_id: b.user_id.clone(),
        reason: b.reason.clone(),
        created_by: moderator.id.clone(),
        created_at: crate::service::now(),
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
        .exec_without_returning(tx)
        .await?;
    let until = b.expires_at.map_or_else(
        || "permanent".to_owned(),
        |t| format!("until {}", t.to_rfc3339()),
    );
    append_log(
        &mut w,
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
        purge(&mut w, moderator, &b.user_id, &b.reason).await?
    } else {
        0
    };
    w.record(crate::service::write::events::Event::UserBanned {
        user_id: b.user_id.clone(),
        actor_id: moderator.id.clone(),
        actor_name: moderator.name.clone(),
    });
    wtx.commit().await?;
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
    w: &mut Write<'_>,
    moderator: &User,
    user_id: &str,
    reason: &str,
) -> Result<u64, ApiError> {
    let conn = w.tx();
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
            w,
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
    retrying(|| unban_once(db, moderator, user_id)).await
}

async fn unban_once(db: &Db, moderator: &User, user_id: &str) -> Result<(), ApiError> {
    let mut wtx = db.begin_write().await?;
    let mut w = wtx.write();
    let tx = w.tx();
    let deleted = ban::Entity::delete_by_id(user_id)
        .exec(tx)
        .await?
        .rows_affected;
    if deleted > 0 {
        append_log(
            &mut w,
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
        w.record(crate::service::write::events::Event::UserUnbanned {
            user_id: user_id.to_owned(),
            actor_id: moderator.id.clone(),
            actor_name: moderator.name.clone(),
        });
    }
    wtx.commit().await?;
    Ok(())
}
