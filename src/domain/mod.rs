//! Pure domain types and rules: no actix, no sea-orm. Values are parsed once at the
//! edge (`ArticleId::parse`, `Stars::try_from`, `CommentBody::parse`) and trusted after.

mod article_id;
mod comment_body;
mod cursor;
mod idempotency;
mod ids;
mod policy;
mod rating;
mod spam;
mod status;
mod vote;

pub use article_id::ArticleId;
pub use comment_body::{AuthorName, CommentBody};
pub use cursor::{parse_limit, Cursor, Sort};
pub use idempotency::{request_hash, IdempotencyKey};
pub use ids::{CommentId, UserId};
pub use policy::{
    normalise_for_repeat, CompiledPolicy, Evaluation, ModerationMode, Policy, Submission,
};
pub use rating::{Aggregate, Stars};
pub use spam::{tokenize, SpamCounts, SpamLabel, MAX_TOKENS_PER_TEXT};
pub use status::{Action, ModerationStatus, TransitionError};
pub use vote::{
    wilson_lower_bound, BayesScore, CommentKind, KeyCursor, Prior, ThreadCursor, ThreadSort, Vote,
};

/// A value that breaks a rule; `field` names the input it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// True for characters a comment or name may not contain: controls other than `\n` and `\t`.
pub(crate) fn is_forbidden_control(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}
