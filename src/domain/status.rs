/// Where a comment stands. Every move between statuses is decided in
/// [`ModerationStatus::apply`]; services never set a status by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ModerationStatus {
    Pending,
    Approved,
    Rejected,
    Spam,
    Deleted,
}

/// What can happen to a comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A moderator approves it.
    Approve,
    /// A moderator rejects it.
    Reject,
    /// A moderator marks it as spam.
    Spam,
    /// Flags reached the threshold: an approved comment is hidden until a decision.
    Hide,
    /// The author deletes it.
    Delete,
    /// The author edited it and the rules placed the new text here.
    Resubmit(ModerationStatus),
    /// The external moderation hook holds it for a moderator.
    Hold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} comment cannot be {action}")]
pub struct TransitionError {
    pub from: &'static str,
    pub action: &'static str,
}

impl ModerationStatus {
    pub const ALL: [ModerationStatus; 5] = [
        ModerationStatus::Pending,
        ModerationStatus::Approved,
        ModerationStatus::Rejected,
        ModerationStatus::Spam,
        ModerationStatus::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ModerationStatus::Pending => "pending",
            ModerationStatus::Approved => "approved",
            ModerationStatus::Rejected => "rejected",
            ModerationStatus::Spam => "spam",
            ModerationStatus::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The status after `action`, or why the move is not allowed.
    pub fn apply(self, action: Action) -> Result<ModerationStatus, TransitionError> {
        use Action as A;
        use ModerationStatus as S;
        let refuse = |action: &'static str| {
            Err(TransitionError {
                from: self.as_str(),
                action,
            })
        };
        match (self, action) {
            // Deleted is final: the author took it back, nobody may put it up again.
            (S::Deleted, A::Approve) => refuse("approved"),
            (S::Deleted, A::Reject) => refuse("rejected"),
            (S::Deleted, A::Spam) => refuse("marked as spam"),
            (S::Deleted, A::Delete) => refuse("deleted"),
            (S::Deleted, A::Hold) => refuse("held"),
            (_, A::Hold) => Ok(S::Pending),
            (S::Deleted, A::Resubmit(_)) => refuse("edited"),
            (_, A::Approve) => Ok(S::Approved),
            (_, A::Reject) => Ok(S::Rejected),
            (_, A::Spam) => Ok(S::Spam),
            // Only a live comment is hidden by flags; anything else keeps its status.
            (S::Approved, A::Hide) => Ok(S::Pending),
            (s, A::Hide) => Ok(s),
            (_, A::Delete) => Ok(S::Deleted),
            // An author can only edit what they can see: their approved or pending text.
            (
                S::Approved | S::Pending,
                A::Resubmit(to @ (S::Approved | S::Pending | S::Rejected)),
            ) => Ok(to),
            (S::Approved | S::Pending, A::Resubmit(_)) => refuse("resubmitted there"),
            (S::Rejected | S::Spam, A::Resubmit(_)) => refuse("edited"),
        }
    }

    /// Whether the public sees the comment itself (a deleted one shows as a tombstone
    /// while it has visible replies).
    pub fn is_listed(self, reply_count: i64) -> bool {
        match self {
            ModerationStatus::Approved => true,
            ModerationStatus::Deleted => reply_count > 0,
            _ => false,
        }
    }
}

impl std::fmt::Display for ModerationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::{Action as A, ModerationStatus as S};

    #[test]
    fn every_transition() {
        let ok = Ok;
        let table: Vec<(S, A, Result<S, ()>)> = vec![
            (S::Pending, A::Approve, ok(S::Approved)),
            (S::Pending, A::Reject, ok(S::Rejected)),
            (S::Pending, A::Spam, ok(S::Spam)),
            (S::Pending, A::Hide, ok(S::Pending)),
            (S::Pending, A::Delete, ok(S::Deleted)),
            (S::Pending, A::Resubmit(S::Approved), ok(S::Approved)),
            (S::Pending, A::Resubmit(S::Spam), Err(())),
            (S::Approved, A::Hold, ok(S::Pending)),
            (S::Rejected, A::Hold, ok(S::Pending)),
            (S::Deleted, A::Hold, Err(())),
            (S::Approved, A::Approve, ok(S::Approved)),
            (S::Approved, A::Reject, ok(S::Rejected)),
            (S::Approved, A::Spam, ok(S::Spam)),
            (S::Approved, A::Hide, ok(S::Pending)),
            (S::Approved, A::Delete, ok(S::Deleted)),
            (S::Approved, A::Resubmit(S::Pending), ok(S::Pending)),
            (S::Approved, A::Resubmit(S::Rejected), ok(S::Rejected)),
            (S::Rejected, A::Approve, ok(S::Approved)),
            (S::Rejected, A::Spam, ok(S::Spam)),
            (S::Rejected, A::Hide, ok(S::Rejected)),
            (S::Rejected, A::Delete, ok(S::Deleted)),
            (S::Rejected, A::Resubmit(S::Approved), Err(())),
            (S::Spam, A::Approve, ok(S::Approved)),
            (S::Spam, A::Reject, ok(S::Rejected)),
            (S::Spam, A::Hide, ok(S::Spam)),
            (S::Spam, A::Resubmit(S::Approved), Err(())),
            (S::Deleted, A::Approve, Err(())),
            (S::Deleted, A::Reject, Err(())),
            (S::Deleted, A::Spam, Err(())),
            (S::Deleted, A::Hide, ok(S::Deleted)),
            (S::Deleted, A::Delete, Err(())),
            (S::Deleted, A::Resubmit(S::Approved), Err(())),
        ];
        for (from, action, expected) in table {
            assert_eq!(
                from.apply(action).map_err(|_| ()),
                expected,
                "{from} + {action:?}"
            );
        }
    }

    #[test]
    fn listing_rules() {
        assert!(S::Approved.is_listed(0));
        assert!(!S::Pending.is_listed(3));
        assert!(!S::Deleted.is_listed(0));
        assert!(S::Deleted.is_listed(1));
        assert!(!S::Rejected.is_listed(1));
    }

    #[test]
    fn names_round_trip() {
        for s in S::ALL {
            assert_eq!(S::parse(s.as_str()), Some(s));
        }
        assert_eq!(S::parse("live"), None);
    }
}
