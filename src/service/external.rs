//! The external moderation hook (issue 21): with the setting `external_moderation_url`,
//! each new or edited comment is POSTed there after tally's own rules, before the
//! request is answered, as `{"comment": <moderation item>}` (signed like webhooks with
//! `TALLY_EXTERNAL_MODERATION_SECRET`). The answer's `action` decides the status.
//!
//! The call is made *before* the write: the rules run on a read connection, the item
//! is built for the comment as it would be stored (with the id it will keep, drawn
//! here), and only then does the write job run — re-running the rules, cheap — with
//! the answer. No database write lock (SQLite's writer, a PostgreSQL row lock, the
//! group-commit batch) is held while the hook thinks.

use std::time::Duration;

use serde::Deserialize;

use crate::{
    auth::{Role, User},
    domain::{Action, Evaluation, ModerationStatus},
    entity::comment,
    error::ApiError,
    outbound::{self, Outbound},
};

use super::{
    moderation::{self, LogEntry},
    settings::PolicyCache,
};

/// The actor id (and name) of the hook's decisions in the log.
pub const EXTERNAL: &str = "external";

/// The reason added when the hook could not be asked or answered nonsense.
pub const UNAVAILABLE: &str = "external:unavailable";

/// The hook's client and signing secret (one per process, in `AppState`).
#[derive(Clone)]
pub struct ExternalHook {
    outbound: Outbound,
    secret: Option<String>,
}

/// What the hook said about one text.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `action` was given: it decides the status.
    Decided {
        status: ModerationStatus,
        reason: Option<String>,
    },
    /// `action: null`: the rules' verdict stands.
    Keep,
    /// A timeout, a refused connection, a non-2xx status or an unreadable answer.
    Unavailable,
}

/// A text screened before its write: the comment id the hook was told (a new comment
/// keeps it) and the answer.
#[derive(Debug, Clone)]
pub struct Screened {
    pub id: String,
    pub answer: Answer,
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
        item: &moderation::ModerationItem,
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
) -> Result<moderation::ModerationItem, ApiError> {
    // The hook sees what a moderator would (author ids included).
    let viewer = User {
        id: EXTERNAL.into(),
        name: EXTERNAL.into(),
        role: Role::Moderator,
        verified: false,
    };
    moderation::items(conn, &viewer, vec![c])
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal("no item for the screened comment".into()))
}

/// What the answer does to the rules' `eval` (as re-run in the write): the status it
/// decides (also returned, with the log line to write), or the `external:unavailable`
/// reason added.
pub fn apply(eval: &mut Evaluation, answer: &Answer) -> Option<Decision> {
    match answer {
        Answer::Decided { status, reason } => {
            let rules = eval.status;
            eval.status = *status;
            Some(Decision {
                from: rules,
                to: *status,
                reason: reason.clone(),
            })
        }
        Answer::Keep => None,
        Answer::Unavailable => {
            eval.reasons.push(UNAVAILABLE.to_owned());
            None
        }
    }
}

/// The hook's verdict on a text, to log once the comment row is written.
#[derive(Debug, Clone)]
pub struct Decision {
    /// What the rules said.
    pub from: ModerationStatus,
    pub to: ModerationStatus,
    pub reason: Option<String>,
}

impl Decision {
    /// The move from the rules' verdict as a status transition.
    pub fn action(&self) -> Action {
        match self.to {
            ModerationStatus::Approved => Action::Approve,
            ModerationStatus::Rejected => Action::Reject,
            ModerationStatus::Spam => Action::Spam,
            _ => Action::Hold,
        }
    }

    fn log_action(&self) -> &'static str {
        match self.to {
            ModerationStatus::Approved => "approve",
            ModerationStatus::Rejected => "reject",
            ModerationStatus::Spam => "spam",
            _ => "hold",
        }
    }

    /// Appends the log row, actor `external`.
    pub async fn log(
        &self,
        w: &mut super::write::Write<'_>,
        c: &comment::Model,
    ) -> Result<(), ApiError> {
        moderation::append_log(
            w,
            LogEntry {
                actor_id: EXTERNAL,
                actor_name: EXTERNAL,
                action: self.log_action(),
                comment_id: Some(&c.id),
                subject_user_id: Some(&c.author_id),
                from_status: Some(self.from.as_str()),
                to_status: Some(self.to.as_str()),
                reason: self.reason.clone(),
            },
        )
        .await
    }
}

/// A new comment's screening: `None` when no hook is configured. The rules run here on
/// a read connection to build what the hook is shown; the write runs them again.
pub async fn screen_new(
    db: &super::write::db::Db,
    policies: &PolicyCache,
    hook: &ExternalHook,
    author: &super::comments::Author,
    article_id: &crate::domain::ArticleId,
    body: &str,
    parent_id: Option<&str>,
) -> Result<Option<Screened>, ApiError> {
    let conn = &db.conn;
    let Some((url, timeout)) = configured(conn, policies).await? else {
        return Ok(None);
    };
    let (author_id, author_name, is_guest, verified) = match author {
        super::comments::Author::User(u) => (u.id.clone(), u.name.clone(), false, u.verified),
        super::comments::Author::Guest(name) => (
            format!("guest:{}", name.as_str()),
            name.as_str().to_owned(),
            true,
            false,
        ),
    };
    let article = super::articles::find(conn, article_id).await?;
    let (eval, fp) = super::comments::evaluate(
        conn,
        policies,
        super::comments::Candidate {
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
    let now = super::now();
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
    db: &super::write::db::Db,
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
        Ok(aid) => super::articles::find(conn, &aid)
            .await?
            .and_then(|a| a.moderation_mode),
        Err(_) => None,
    };
    let (eval, fp) = super::comments::evaluate(
        conn,
        policies,
        super::comments::Candidate {
            article_mode: article_mode.as_deref(),
            author_id: &user.id,
            is_guest: false,
            body,
            exclude_id: Some(&c.id),
            known: None,
        },
    )
    .await?;
    let Ok(status) = super::comments::status_of(&c).apply(Action::Resubmit(eval.status)) else {
        return Ok(None);
    };
    let now = super::now();
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
