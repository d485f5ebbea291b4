//! Screening a new or edited comment with the external moderation hook, before its
//! write (see the parent module).

use std::time::Duration;

use serde::Deserialize;

use crate::{
    auth::{Role, User},
    domain::{Action, ModerationStatus},
    entity::comment,
    error::ApiError,
    outbound::{self, Outbound},
};

use super::{Answer, Screened, EXTERNAL};
use crate::service::settings::PolicyCache;

/// The hook's client and signing secret (one per process, in `AppState`).
#[derive(Clone)]
pub struct ExternalHook {
    outbound: Outbound,
    secret: Option<String>,
}

#[derive(Deserialize)]
struct Reply {
    action: Option<ReplyAction>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ReplyAction {
    Approve,
    Reject,
    Spam,
    Pending,
}

impl ExternalHook {
    pub fn new(outbound: Outbound, secret: Option<String>) -> Self {
        ExternalHook { outbound, secret }
    }

    /// Asks the hook at `url` about `item`, waiting at most `timeout`.
    pub async fn ask(
        &self,
        url: &str,
        timeout: Duration,
        item: &crate::service::moderation::queue::ModerationItem,
    ) -> Answer {
        let body = match serde_json::to_vec(&serde_json::json!({ "comment": item })) {
            Ok(body) => body,
            Err(_) => return Answer::Unavailable,
        };
        let mut headers = vec![];
        if let Some(secret) = &self.secret {
            let t = chrono::Utc::now().timestamp();
            headers.push(("Tally-Signature", outbound::signature(secret, t, &body)));
        }
        // The whole exchange, answer included, within the setting's bound.
        let call = self.outbound.post(url, &headers, body, timeout);
        let answer = match tokio::time::timeout(timeout, call).await {
            Ok(Ok((status, answer))) if (200..300).contains(&status) => answer,
            Ok(Ok((status, _))) => {
                tracing::warn!(status, "external moderation answered with an error status");
                return Answer::Unavailable;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "external moderation unavailable");
                return Answer::Unavailable;
            }
            Err(_) => {
                tracing::warn!(
                    timeout_ms = timeout.as_millis() as u64,
                    "external moderation timed out"
                );
                return Answer::Unavailable;
            }
        };
        match serde_json::from_slice::<Reply>(&answer) {
            Ok(Reply {
                action: Some(action),
                reason,
            }) => Answer::Decided {
                status: match action {
                    ReplyAction::Approve => ModerationStatus::Approved,
                    ReplyAction::Reject => ModerationStatus::Rejected,
                    ReplyAction::Spam => ModerationStatus::Spam,
                    ReplyAction::Pending => ModerationStatus::Pending,
                },
                // Stored in the log: bounded like a moderator's reason.
                reason: reason.map(|r| r.chars().take(500).collect()),
            },
            Ok(Reply { action: None, .. }) => Answer::Keep,
            Err(e) => {
                tracing::warn!(error = %e, "external moderation answer unreadable");
                Answer::Unavailable
            }
        }
    }
}

/// The hook's URL and bound when one is configured.
pub async fn configured(
    conn: &impl sea_orm::ConnectionTrait,
    policies: &PolicyCache,
) -> Result<Option<(String, Duration)>, ApiError> {
    let policy = policies.get(conn).await?;
    Ok(policy.policy.external_moderation_url.clone().map(|url| {
        (
            url,
            Duration::from_millis(u64::from(policy.policy.external_moderation_timeout_ms)),
        )
    }))
}

/// The item the hook is shown for `c` (not stored yet, or stored with its old text):
/// its flags, claim and author history as they stand.
pub async fn item_for(
    conn: &impl sea_orm::ConnectionTrait,
    c: comment::Model,
) -> Result<crate::service::moderation::queue::ModerationItem, ApiError> {
    items_for(conn, vec![c])
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal("no item for the screened comment".into()))
}

/// [`item_for`] of several comments at once (a few reads for all of them), in order.
pub async fn items_for(
    conn: &impl sea_orm::ConnectionTrait,
    comments: Vec<comment::Model>,
) -> Result<Vec<crate::service::moderation::queue::ModerationItem>, ApiError> {
    // The hook sees what a moderator would (author ids included).
    let viewer = User {
        id: EXTERNAL.into(),
        name: EXTERNAL.into(),
        role: Role::Moderator,
        verified: false,
    };
    crate::service::moderation::queue::items(conn, &viewer, comments).await
}

/// A new comment's screening: `None` when no hook is configured. The rules run here on
/// a read connection to build what the hook is shown; the write runs them again.
pub async fn screen_new(
    db: &crate::service::write::db::Db,
    policies: &PolicyCache,
    hook: &ExternalHook,
    author: &crate::service::comments::Author,
    article_id: &crate::domain::ArticleId,
    body: &str,
    parent_id: Option<&str>,
) -> Result<Option<Screened>, ApiError> {
    let conn = &db.conn;
    let Some((url, timeout)) = configured(conn, policies).await? else {
        return Ok(None);
    };
    let (author_id, author_name, is_guest, verified) = match author {
        crate::service::comments::Author::User(u) => {
            (u.id.clone(), u.name.clone(), false, u.verified)
        }
        crate::service::comments::Author::Guest(name) => (
            format!("guest:{}", name.as_str()),
            name.as_str().to_owned(),
            true,
            false,
        ),
    };
    let article = crate::service::articles::find(conn, article_id).await?;
    let (eval, fp) = crate::service::comments::evaluate(
        conn,
        policies,
        crate::service::comments::Candidate {
            article_mode: article.as_ref().and_then(|a| a.moderation_mode.as_deref()),
            author_id: &author_id,
            is_guest,
            body,
            exclude_id: None,
            known: None,
        },
    )
    .await?;
    let id = uuid::Uuid::now_v7().to_string();
    let now = crate::service::now();
    let model = comment::Model {
        id: id.clone(),
        article_id: article_id.as_str().to_owned(),
        parent_id: parent_id.map(str::to_owned),
        author_id,
        author_name,
        is_guest,
        body: body.to_owned(),
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
        kind: crate::domain::CommentKind::Comment.as_str().to_owned(),
        stars: None,
        verified,
        votes_up: 0,
        votes_down: 0,
        best_score: 0.0,
        flag_weight: 0.0,
    };
    let item = item_for(conn, model).await?;
    let answer = hook.ask(&url, timeout, &item).await;
    Ok(Some(Screened { id, answer }))
}

/// An edit's screening: `None` when no hook is configured, or when the comment is not
/// the caller's to edit (the write then answers why).
pub async fn screen_edit(
    db: &crate::service::write::db::Db,
    policies: &PolicyCache,
    hook: &ExternalHook,
    user: &User,
    id: &str,
    body: &str,
) -> Result<Option<Screened>, ApiError> {
    use sea_orm::EntityTrait;
    let conn = &db.conn;
    let Some((url, timeout)) = configured(conn, policies).await? else {
        return Ok(None);
    };
    let Some(c) = comment::Entity::find_by_id(id).one(conn).await? else {
        return Ok(None);
    };
    if c.author_id != user.id || c.is_guest {
        return Ok(None);
    }
    let article_mode = match crate::domain::ArticleId::parse(&c.article_id) {
        Ok(aid) => crate::service::articles::find(conn, &aid)
            .await?
            .and_then(|a| a.moderation_mode),
        Err(_) => None,
    };
    let (eval, fp) = crate::service::comments::evaluate(
        conn,
        policies,
        crate::service::comments::Candidate {
            article_mode: article_mode.as_deref(),
            author_id: &user.id,
            is_guest: false,
            body,
            exclude_id: Some(&c.id),
            known: None,
        },
    )
    .await?;
    let Ok(status) = crate::service::comments::status_of(&c).apply(Action::Resubmit(eval.status))
    else {
        return Ok(None);
    };
    let now = crate::service::now();
    let model = comment::Model {
        body: body.to_owned(),
        status: status.as_str().to_owned(),
        version: c.version + 1,
        auto_score: eval.score,
        auto_reasons: serde_json::to_string(&eval.reasons).unwrap_or_else(|_| "[]".into()),
        fingerprint: Some(fp),
        updated_at: now,
        edited_at: Some(now),
        spam_probability: eval.spam_probability,
        ..c
    };
    let item = item_for(conn, model).await?;
    let answer = hook.ask(&url, timeout, &item).await;
    Ok(Some(Screened {
        id: id.to_owned(),
        answer,
    }))
}
