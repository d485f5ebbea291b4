//! Reader flags. A user's flag on a comment is counted once while unresolved; the count
//! is kept on the comment (`flag_count`) and in the `flagged` queue counter. At the
//! policy's `flag_threshold` an approved comment is hidden (`pending`) until a moderator
//! decides, which resolves the flags (`super::moderation::moves::move_comment`).

use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Expr, ExprTrait},
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
};
use serde::{Deserialize, Serialize};

use super::{
    comments::{status_of, visible_to},
    moderation::moves::{Actor, Change, FLAGGED},
    settings::PolicyCache,
    write::db::Db,
    write::{counters, Write},
};
use crate::{
    auth::User,
    domain::{Action, ModerationStatus},
    entity::{comment, flag, flagger_record},
    error::ApiError,
};

/// Why a reader flags a comment (the `flags.reason` CHECK admits these four).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FlagReason {
    Spam,
    Abuse,
    OffTopic,
    Other,
}

impl FlagReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FlagReason::Spam => "spam",
            FlagReason::Abuse => "abuse",
            FlagReason::OffTopic => "off_topic",
            FlagReason::Other => "other",
        }
    }
}

/// The caller's flag as stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Flag)]
pub struct FlagView {
    pub comment_id: String,
    pub reason: FlagReason,
    #[schema(required = true)]
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Flags comment `id` as `user`. Returns the flag and whether it now counts where it
/// did not before (a first flag, or a new one after a moderator resolved the last).
/// Flagging again while the flag is unresolved only updates its reason and note.
pub async fn flag(
    db: &Db,
    policies: &PolicyCache,
    user: &User,
    id: &str,
    reason: FlagReason,
    note: Option<String>,
) -> Result<(FlagView, bool), ApiError> {
    super::write::retry::retrying(|| flag_once(db, policies, user, id, reason, note.clone())).await
}

async fn flag_once(
    db: &Db,
    policies: &PolicyCache,
    user: &User,
    id: &str,
    reason: FlagReason,
    note: Option<String>,
) -> Result<(FlagView, bool), ApiError> {
    let mut wtx = db.begin_write().await?;
    let mut w = wtx.write();
    let tx = w.tx();
    super::moderation::bans::ensure_not_banned(tx, &user.id).await?;
    // The lock (PostgreSQL) serialises flags and decisions on the same comment, so the
    // count and the threshold check see every flag before them.
    let c = comment::Entity::find_by_id(id)
        .lock_exclusive()
        .one(tx)
        .await?
        .filter(|c| status_of(c) != ModerationStatus::Deleted && visible_to(c, Some(user)))
        .ok_or_else(|| ApiError::not_found("comment"))?;
    let key = (c.id.clone(), user.id.clone());
    let existing = flag::Entity::find_by_id(key.clone()).one(tx).await?;
    let counts_now = existing.as_ref().is_none_or(|f| f.resolved_at.is_some());
    let now = super::now();
    // Fixed when cast: a flag that still counts keeps the weight it had.
    let weight = match &existing {
        Some(f) if !counts_now => f.weight,
        _ => weight_of(tx, &user.id).await?,
    };
    let row = flag::ActiveModel {
        comment_id: Set(c.id.clone()),
        user_id: Set(user.id.clone()),
        reason: Set(reason.as_str().to_owned()),
        note: Set(note),
        created_at: Set(match (&existing, counts_now) {
            (Some(f), false) => f.created_at,
            _ => now,
        }),
        resolved_at: Set(None),
        weight: Set(weight),
    };
    w.record(super::write::events::Event::CommentFlagged {
        comment_id: c.id.clone(),
        article_id: c.article_id.clone(),
        flagger_id: user.id.clone(),
        reason: reason.as_str().to_owned(),
    });
    if existing.is_some() {
        flag::Entity::update(row).exec(tx).await?;
    } else {
        flag::Entity::insert(row).exec_without_returning(tx).await?;
    }
    if counts_now {
        count_flag(&mut w, policies, c, weight).await?;
    }
    let stored = flag::Entity::find_by_id(key)
        .one(tx)
        .await?
        .ok_or_else(|| ApiError::Internal("flag missing after write".into()))?;
    wtx.commit().await?;
    Ok((
        FlagView {
            comment_id: stored.comment_id,
            reason,
            note: stored.note,
            created_at: stored.created_at,
        },
        counts_now,
    ))
}

/// A flag's weight from its flagger's track record: `2·(upheld+1)/(upheld+dismissed+2)`
/// (a new flagger weighs 1; always between 0 and 2).
pub fn flag_weight(upheld: i64, dismissed: i64) -> f64 {
    2.0 * (upheld as f64 + 1.0) / ((upheld + dismissed) as f64 + 2.0)
}

/// The weight a flag by `user_id` gets now.
async fn weight_of(conn: &impl ConnectionTrait, user_id: &str) -> Result<f64, ApiError> {
    let record = flagger_record::Entity::find_by_id(user_id)
        .one(conn)
        .await?;
    Ok(record.map_or(1.0, |r| flag_weight(r.upheld, r.dismissed)))
}

/// Sums of floats: a threshold reached up to rounding counts as reached.
const EPSILON: f64 = 1e-9;

/// One more unresolved flag on `c`, of `weight`: kept counts and weight sum, then the
/// threshold (on the weight sum).
async fn count_flag(
    w: &mut Write<'_>,
    policies: &PolicyCache,
    c: comment::Model,
    weight: f64,
) -> Result<(), ApiError> {
    let conn = w.tx();
    comment::Entity::update_many()
        .col_expr(
            comment::Column::FlagCount,
            Expr::col(comment::Column::FlagCount).add(1),
        )
        .col_expr(
            comment::Column::FlagWeight,
            Expr::col(comment::Column::FlagWeight).add(weight),
        )
        .filter(comment::Column::Id.eq(&c.id))
        .exec(conn)
        .await?;
    let first = c.flag_count == 0;
    let count = c.flag_count + 1;
    let sum = c.flag_weight + weight;
    let threshold = policies.get(conn).await?.policy.flag_threshold;
    if status_of(&c) == ModerationStatus::Approved && sum + EPSILON >= f64::from(threshold) {
        let version = c.version;
        super::moderation::moves::move_comment(
            w,
            comment::Model {
                flag_count: count,
                flag_weight: sum,
                ..c
            },
            version,
            Change {
                action: Action::Hide,
                log_action: "hide",
                actor: Actor::SYSTEM,
                reason: Some(format!("flag_threshold:{threshold}")),
                resolve_flags: false,
            },
        )
        .await?;
    }
    // Queue counters last: the lock order every write keeps (`counters::status_changed`).
    if first {
        counters::bump_queue(w, FLAGGED, 1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::flag_weight;

    #[test]
    fn a_new_flagger_weighs_1_and_the_record_moves_it_between_0_and_2() {
        assert_eq!(flag_weight(0, 0), 1.0);
        assert_eq!(flag_weight(3, 0), 1.6);
        assert_eq!(flag_weight(0, 2), 0.5);
        assert_eq!(flag_weight(1, 1), 1.0);
        assert!(flag_weight(1000, 0) < 2.0);
    }
}
