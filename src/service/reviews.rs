//! Reviews: a rating's text, stored as a top-level comment of kind `review` whose
//! `stars` are its author's current rating. Written, changed and removed only through
//! the rating PUT and DELETE (`service::ratings`), inside their group-committed write;
//! moderated by the same rule pipeline as any comment, counted by the same
//! `counters::status_changed` (listed reviews in `articles.review_count`).

use sea_orm::{sea_query::LockType, ActiveValue::Set, ConnectionTrait, EntityTrait, QuerySelect};

use super::{
    comments::{self, evaluate, log_automatic, status_of, view, Candidate, CommentView},
    moderation::moves::{Actor, Change},
    settings::PolicyCache,
    write::{counters, Write},
};
use crate::{
    auth::User,
    domain::{Action, CommentBody, CommentKind, ModerationStatus, Stars},
    entity::{article, comment},
    error::ApiError,
};

/// What a rating PUT asks of its review.
#[derive(Debug, Clone)]
pub enum ReviewChange {
    /// `review` absent: the review stays as it is, its stars following the rating.
    Keep,
    /// `"review": null`: the review goes (as an author delete), the stars stay.
    Remove,
    /// A text: the review is written or rewritten (and moderated again).
    Write(CommentBody),
}

/// The review `id` names, if it is still there (not deleted), locked for the
/// transaction on PostgreSQL.
async fn current(
    tx: &impl ConnectionTrait,
    id: Option<&str>,
) -> Result<Option<comment::Model>, ApiError> {
    let Some(id) = id else { return Ok(None) };
    Ok(comment::Entity::find_by_id(id)
        .lock(LockType::NoKeyUpdate)
        .one(tx)
        .await?
        .filter(|c| status_of(c) != ModerationStatus::Deleted))
}

/// Applies `change` to the review of `user`'s rating (`review_id`, as stored with the
/// rating) now at `stars`. Returns the review's id and view after it (`None`: no review).
pub async fn apply(
    w: &mut Write<'_>,
    policies: &PolicyCache,
    user: &User,
    article: &article::Model,
    review_id: Option<&str>,
    stars: Stars,
    change: ReviewChange,
) -> Result<Option<(String, CommentView)>, ApiError> {
    let tx = w.tx();
    let existing = current(tx, review_id).await?;
    let stars_now = i16::from(stars.get());
    match (change, existing) {
        (ReviewChange::Keep, None) => Ok(None),
        (ReviewChange::Keep, Some(c)) => {
            let c = follow_stars(tx, c, stars_now).await?;
            Ok(Some((c.id.clone(), view(c, Some(user), false))))
        }
        (ReviewChange::Remove, None) => Ok(None),
        (ReviewChange::Remove, Some(c)) => {
            delete(w, user, c, "review removed by the author").await?;
            Ok(None)
        }
        (ReviewChange::Write(body), Some(c)) => {
            let body = body.into_inner();
            let c = if c.body == body {
                follow_stars(tx, c, stars_now).await?
            } else {
                rewrite(w, policies, user, article, c, body, stars_now).await?
            };
            Ok(Some((c.id.clone(), view(c, Some(user), false))))
        }
        (ReviewChange::Write(body), None) => {
            let c = create(w, policies, user, article, body.into_inner(), stars_now).await?;
            Ok(Some((c.id.clone(), view(c, Some(user), false))))
        }
    }
}

/// The rating went: so does its review (a tombstone while it has replies).
pub async fn remove(
    w: &mut Write<'_>,
    user: &User,
    review_id: Option<&str>,
) -> Result<(), ApiError> {
    let tx = w.tx();
    if let Some(c) = current(tx, review_id).await? {
        delete(w, user, c, "rating removed by the author").await?;
    }
    Ok(())
}

/// The review of a rating as `user` sees it, if it is still there.
pub async fn find(
    conn: &impl ConnectionTrait,
    user: &User,
    review_id: Option<&str>,
) -> Result<Option<CommentView>, ApiError> {
    let Some(id) = review_id else { return Ok(None) };
    let c = comment::Entity::find_by_id(id).one(conn).await?;
    Ok(c.filter(|c| {
        status_of(c) != ModerationStatus::Deleted && comments::visible_to(c, Some(user))
    })
    .map(|c| view(c, Some(user), false)))
}

async fn follow_stars(
    tx: &impl ConnectionTrait,
    c: comment::Model,
    stars: i16,
) -> Result<comment::Model, ApiError> {
    if c.stars == Some(stars) {
        return Ok(c);
    }
    comment::Entity::update(comment::ActiveModel {
        id: Set(c.id.clone()),
        stars: Set(Some(stars)),
        ..Default::default()
    })
    .exec(tx)
    .await?;
    Ok(comment::Model {
        stars: Some(stars),
        ..c
    })
}

async fn delete(
    w: &mut Write<'_>,
    user: &User,
    c: comment::Model,
    reason: &str,
) -> Result<(), ApiError> {
    let version = c.version;
    super::moderation::moves::move_comment(
        w,
        c,
        version,
        Change {
            action: Action::Delete,
            log_action: "delete",
            actor: Actor::user(user),
            reason: Some(reason.into()),
            resolve_flags: true,
        },
    )
    .await?;
    Ok(())
}

async fn create(
    w: &mut Write<'_>,
    policies: &PolicyCache,
    user: &User,
    article: &article::Model,
    body: String,
    stars: i16,
) -> Result<comment::Model, ApiError> {
    let tx = w.tx();
    if !article.comments_open {
        return Err(ApiError::CommentsClosed);
    }
    let (eval, fp) = evaluate(
        tx,
        policies,
        Candidate {
            article_mode: article.moderation_mode.as_deref(),
            author_id: &user.id,
            is_guest: false,
            body: &body,
            exclude_id: None,
            known: None,
        },
    )
    .await?;
    let now = super::now();
    let model = comment::Model {
        id: uuid::Uuid::now_v7().to_string(),
        article_id: article.id.clone(),
        parent_id: None,
        author_id: user.id.clone(),
        author_name: user.name.clone(),
        is_guest: false,
        body,
        status: eval.status.as_str().to_owned(),
        version: 1,
        reply_count: 0,
        flag_count: 0,
        auto_score: eval.score,
        auto_reasons: serde_json::to_string(&eval.reasons).unwrap_or_else(|_| "[]".into()),
        fingerprint: Some(fp),
        created_at: now,
        updated_at: now,
        edited_at: None,
        spam_probability: eval.spam_probability,
        flag_weight: 0.0,
        kind: CommentKind::Review.as_str().to_owned(),
        stars: Some(stars),
        verified: user.verified,
        votes_up: 0,
        votes_down: 0,
        best_score: 0.0,
    };
    let active: comment::ActiveModel = model.clone().into();
    comment::Entity::insert(active)
        .exec_without_returning(tx)
        .await?;
    counters::status_changed(w, &model, None, eval.status).await?;
    log_automatic(w, &model, None, &eval).await?;
    w.record(super::write::events::comment_created(&model));
    w.record(review_written(&model));
    Ok(model)
}

async fn rewrite(
    w: &mut Write<'_>,
    policies: &PolicyCache,
    user: &User,
    article: &article::Model,
    c: comment::Model,
    body: String,
    stars: i16,
) -> Result<comment::Model, ApiError> {
    let tx = w.tx();
    if !article.comments_open {
        return Err(ApiError::CommentsClosed);
    }
    let (eval, fp) = evaluate(
        tx,
        policies,
        Candidate {
            article_mode: article.moderation_mode.as_deref(),
            author_id: &user.id,
            is_guest: false,
            body: &body,
            exclude_id: Some(&c.id),
            known: None,
        },
    )
    .await?;
    let from = status_of(&c);
    let to = from
        .apply(Action::Resubmit(eval.status))
        .map_err(|e| ApiError::Forbidden(format!("this review cannot be rewritten: {e}")))?;
    let now = super::now();
    let updated = comment::Model {
        body,
        status: to.as_str().to_owned(),
        version: c.version + 1,
        auto_score: eval.score,
        auto_reasons: serde_json::to_string(&eval.reasons).unwrap_or_else(|_| "[]".into()),
        fingerprint: Some(fp),
        spam_probability: eval.spam_probability,
        updated_at: now,
        edited_at: Some(now),
        stars: Some(stars),
        verified: user.verified,
        ..c
    };
    comment::Entity::update(comment::ActiveModel {
        id: Set(updated.id.clone()),
        body: Set(updated.body.clone()),
        status: Set(updated.status.clone()),
        version: Set(updated.version),
        auto_score: Set(updated.auto_score),
        auto_reasons: Set(updated.auto_reasons.clone()),
        fingerprint: Set(updated.fingerprint.clone()),
        spam_probability: Set(updated.spam_probability),
        updated_at: Set(now),
        edited_at: Set(Some(now)),
        stars: Set(updated.stars),
        verified: Set(updated.verified),
        ..Default::default()
    })
    .exec(tx)
    .await?;
    counters::status_changed(w, &updated, Some(from), to).await?;
    log_automatic(w, &updated, Some(from), &eval).await?;
    w.record(super::write::events::comment_edited(
        &updated,
        from.as_str(),
    ));
    w.record(review_written(&updated));
    Ok(updated)
}

fn review_written(c: &comment::Model) -> super::write::events::Event {
    super::write::events::Event::ReviewWritten {
        comment_id: c.id.clone(),
        article_id: c.article_id.clone(),
        author_id: c.author_id.clone(),
    }
}
