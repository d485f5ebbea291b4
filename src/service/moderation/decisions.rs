//! A moderator's decisions on comments, one or many at a time.

use sea_orm::{EntityTrait, QuerySelect};
use serde::{Deserialize, Serialize};

use super::{
    moves::{move_comment, Actor, Change},
    queue::{items, ModerationItem},
};
use crate::service::{comments::status_of, write::db::Db, write::retry::retrying};
use crate::{auth::User, domain::Action, entity::comment, error::ApiError};

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
    let (updated, check_vocabulary) =
        retrying(|| decide_once(db, moderator, comment_id, d.clone())).await?;
    if check_vocabulary {
        // Maintenance after the COMMIT: the decision stands whatever happens here, and
        // the next due check tries again.
        if let Err(e) = crate::service::spam::check_vocabulary(db).await {
            tracing::warn!(error = ?e, "spam model vocabulary check failed");
        }
    }
    // The item is read after the COMMIT (its flags, author history and claim as they
    // stand now): read inside, it kept the shared counter rows locked for three more
    // round trips, and decisions on PostgreSQL wait for each other on those rows.
    items(&db.conn, moderator, vec![updated])
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal("decided comment has no item".into()))
}

/// One attempt at a decision; returns the comment as it now stands, and whether the
/// spam model's vocabulary is due for a check (`spam::apply`).
async fn decide_once(
    db: &Db,
    moderator: &User,
    comment_id: &str,
    d: Decision,
) -> Result<(comment::Model, bool), ApiError> {
    let mut wtx = db.begin_write().await?;
    let mut w = wtx.write();
    let tx = w.tx();
    // Locked on PostgreSQL, so a decision without `expected_version` waits for a
    // concurrent one instead of failing; the conditional update still has the last word.
    let c = comment::Entity::find_by_id(comment_id)
        .lock_exclusive()
        .one(tx)
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
        &mut w,
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
    // What the decision teaches the spam model: its own lesson row now, the model's
    // shared rows after the counters (see `spam`'s lock order).
    let lesson = crate::service::spam::teach(tx, &updated, status_of(&updated)).await?;
    if lesson.is_some() {
        // The instances' model caches invalidate from this event (see `events`).
        w.record(crate::service::write::events::Event::SpamModelChanged);
    }
    crate::service::claims::released_by_decision(tx, comment_id).await?;
    // The counters (in the global lock order), then the model's shared rows.
    w.flush().await?;
    let check_vocabulary = crate::service::spam::apply(tx, lesson).await?;
    wtx.commit().await?;
    Ok((updated, check_vocabulary))
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
