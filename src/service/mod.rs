//! Use cases. Each write runs in one transaction (`Db::begin_write`), or, for the hot
//! writes (ratings, new comments, votes, erasures), as a job of a group-committed
//! transaction (`Db::write`, see [`write`]). Either way it does its work through
//! a `&mut write::Write`, which only the write path makes: a write use case cannot
//! be called outside a write. Reads take `&impl ConnectionTrait`.

pub mod admin;
pub mod aggregate_cache;
pub mod articles;
pub mod claims;
pub mod comments;
pub mod connect;
pub mod external;
pub mod flags;
pub mod idempotency;
pub mod listing;
pub mod live;
pub mod metrics;
pub mod moderation;
pub mod page_overlay;
pub mod ratings;
pub mod retention;
pub mod reviews;
pub mod schema;
pub mod settings;
pub mod singleton;
pub mod spam;
pub mod top;
pub mod transfer;
pub mod user_data;
pub mod votes;
pub mod webhook_dispatch;
pub mod webhooks;
pub mod write;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    sea_query::{Expr, Query, SelectStatement},
    ConnectionTrait,
};

use crate::error::ApiError;

/// Whether `sub` selects any row: `SELECT EXISTS (sub)`, one round trip.
pub async fn exists(conn: &impl ConnectionTrait, sub: SelectStatement) -> Result<bool, ApiError> {
    let query = Query::select()
        .expr_as(Expr::exists(sub), "found")
        .to_owned();
    let row = conn
        .query_one_raw(conn.get_database_backend().build(&query))
        .await?
        .ok_or_else(|| ApiError::Internal("SELECT EXISTS gave no row".into()))?;
    Ok(row.try_get::<bool>("", "found")?)
}

/// The current time at the precision both databases store (microseconds), so a value
/// read back compares equal to the one written (keyset cursors depend on it).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
