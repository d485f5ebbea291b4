//! Use cases. Each write runs in one transaction (`Db::begin_write`), or, for the hot
//! writes (ratings, new comments), in a savepoint of a group-committed transaction
//! (`Db::write`, see [`group_commit`]). Functions take `&impl ConnectionTrait` so they
//! compose inside a caller's transaction.

pub mod admin;
pub mod aggregate_cache;
pub mod articles;
pub mod comments;
pub mod counters;
pub mod db;
pub mod flags;
pub mod group_commit;
pub mod idempotency;
pub mod moderation;
pub mod ratings;
pub mod settings;

use chrono::{DateTime, SubsecRound, Utc};

/// The current time at the precision both databases store (microseconds), so a value
/// read back compares equal to the one written (keyset cursors depend on it).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
