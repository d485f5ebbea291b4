//! A moderator's decisions on comments, one or many at a time.

use sea_orm::{EntityTrait, QuerySelect};
use serde::{Deserialize, Serialize};

use super::{
    moves::{move_comment, Actor, Change},
    queue::{items, ModerationItem},
};
use crate::service::{
    comments::status_of,
    write::{
        batch::Write,
        db::{Db, Route},
    },
};
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

/// `POST /moderation/comments/{id}/decision`, group-committed like every other write
/// (`Db::write`, routed by comment as votes are): 404 for an unknown comment, 409 when
/// `expected_version` is stale, 422 (`action`) for a deleted one.
///
/// A decision moves the shared queue and author counters. Taken one transaction per
/// decision, those rows were held from the UPDATE to the COMMIT's disk flush, so on
/// PostgreSQL concurrent decisions committed one flush at a time; in a batch the
/// counters are written once, at its end, and one flush commits them all.
pub async fn decide(
    db: &Db,
    moderator: &User,
    comment_id: &str,
    d: Decision,
) -> Result<ModerationItem, ApiError> {
    let input = (moderator.clone(), comment_id.to_owned(), d);
    let (updated, model_changed) = db
        .write(
            Route::comment(comment_id),
            input,
            |w, (moderator, comment_id, d)| {
                Box::pin(async move { decide_in(w, moderator, comment_id, d.clone()).await })
            },
        )
        .await?;
    if model_changed {
        // The spam model's shared rows are written by a fold of their own, after the
        // COMMIT and not awaited (see `spam`): decisions never wait for each other there.
        crate::service::spam::fold_soon(db);
    }
    // The item is read after the COMMIT (its flags, author history and claim as they
    // stand now), outside the batch.
    items(&db.conn, moderator, vec![updated])
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal("decided comment has no item".into()))
}

/// A decision, as a job of a group-committed batch; returns the comment as it now
/// stands, and whether it staged a change of the spam model (`spam::learn_in`: then fold
/// it after the COMMIT).
async fn decide_in(
    w: &mut Write<'_>,
    moderator: &User,
    comment_id: &str,
    d: Decision,
) -> Result<(comment::Model, bool), ApiError> {
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
        w,
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
    // What the decision teaches the spam model: its lesson and its change of the counts,
    // staged in the batch, which writes all its decisions' lessons and ONE pending change
    // at its end (`write::lessons`); the model's shared rows are left to the fold after
    // the COMMIT.
    let model_changed = crate::service::spam::learn_in(w, &updated, status_of(&updated)).await?;
    crate::service::claims::released_by_decision(tx, comment_id).await?;
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
