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

use crate::{
    domain::{Action, Evaluation, ModerationStatus},
    entity::comment,
    error::ApiError,
};

use crate::service::moderation::log::LogEntry;

pub mod screen;

/// The actor id (and name) of the hook's decisions in the log.
pub const EXTERNAL: &str = "external";

/// The reason added when the hook could not be asked or answered nonsense.
pub const UNAVAILABLE: &str = "external:unavailable";

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
        w: &mut crate::service::write::Write<'_>,
        c: &comment::Model,
    ) -> Result<(), ApiError> {
        crate::service::moderation::log::append_log(
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
