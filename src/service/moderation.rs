//! Moderation: bans, the audit log, and (with the moderation issue) queues and decisions.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
};

use crate::{
    entity::{ban, moderation_log},
    error::ApiError,
};

/// The actor id of automatic decisions in the log.
pub const SYSTEM: &str = "system";

/// 403 `banned` while the user has a ban that has not expired.
pub async fn ensure_not_banned(conn: &impl ConnectionTrait, user_id: &str) -> Result<(), ApiError> {
    let active = ban::Entity::find()
        .filter(ban::Column::UserId.eq(user_id))
        .filter(
            Condition::any()
                .add(ban::Column::ExpiresAt.is_null())
                .add(ban::Column::ExpiresAt.gt(super::now())),
        )
        .one(conn)
        .await?;
    match active {
        Some(_) => Err(ApiError::Banned),
        None => Ok(()),
    }
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
    moderation_log::Entity::insert(row)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}
