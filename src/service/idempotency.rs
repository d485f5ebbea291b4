//! Idempotency keys: a write sent again with the same `Idempotency-Key` by the same
//! caller gets the first response back instead of being done twice.
//!
//! The key row is claimed (inserted) at the start of the use case's write transaction
//! and completed with the response before it commits, so a key is never stored without
//! its write, nor a write without its key. A concurrent request with the same key waits
//! on the claim: on SQLite behind `Db::begin_write`, on PostgreSQL on the primary key of
//! the uncommitted row; it then sees the committed row and replays it. Only successful
//! responses are stored: a failed write rolls back its claim, so a retry runs afresh.

use chrono::Duration;
use sea_orm::{
    sea_query::{Expr, OnConflict},
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
};

use crate::{
    domain::IdempotencyKey,
    entity::idempotency_key::{self, Column},
    error::ApiError,
};

/// How long a key is remembered; an older key counts as unused.
pub const KEY_TTL_HOURS: i64 = 24;

/// A write request made under an `Idempotency-Key`.
#[derive(Debug, Clone)]
pub struct IdempotentRequest {
    /// Whose key it is: `user:<id>`, or `guest-ip:<ip>` for guests.
    pub scope: String,
    pub key: IdempotencyKey,
    /// `domain::request_hash` of the method, path and body.
    pub hash: String,
}

/// The response stored for a key, replayed as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    /// JSON text.
    pub body: String,
}

/// What a use case under an optional key did.
#[derive(Debug)]
pub enum Outcome<T> {
    /// The write was done now.
    Done(T),
    /// The key was used before for the same request: its response, nothing written.
    Replay(StoredResponse),
}

/// Claims `req`'s key inside the caller's write transaction. `None`: the key is new (or
/// expired), go on and `complete` it before committing. `Some`: the same request was
/// done before, replay its response. A key used for a different request is a 409.
pub async fn claim(
    conn: &impl ConnectionTrait,
    req: &IdempotentRequest,
) -> Result<Option<StoredResponse>, ApiError> {
    let now = super::now();
    // An expired key is forgotten, so the insert below reuses it.
    idempotency_key::Entity::delete_many()
        .filter(Column::Scope.eq(&req.scope))
        .filter(Column::Key.eq(req.key.as_str()))
        .filter(Column::CreatedAt.lt(now - Duration::hours(KEY_TTL_HOURS)))
        .exec(conn)
        .await?;
    let row = idempotency_key::ActiveModel {
        scope: Set(req.scope.clone()),
        key: Set(req.key.as_str().to_owned()),
        request_hash: Set(req.hash.clone()),
        // Completed by `complete` in the same transaction; never visible as 0.
        status_code: Set(0),
        response_body: Set(String::new()),
        created_at: Set(now),
    };
    // Insert-or-nothing: on PostgreSQL a concurrent claim of the same key blocks here
    // until the first transaction ends, then finds its committed row.
    let inserted = idempotency_key::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([Column::Scope, Column::Key])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    if inserted > 0 {
        return Ok(None);
    }
    let existing =
        idempotency_key::Entity::find_by_id((req.scope.clone(), req.key.as_str().to_owned()))
            .one(conn)
            .await?
            .ok_or_else(|| {
                ApiError::Internal("idempotency key vanished after a conflict".into())
            })?;
    if existing.request_hash != req.hash {
        return Err(ApiError::IdempotencyConflict);
    }
    let status = u16::try_from(existing.status_code)
        .ok()
        .filter(|s| (200..600).contains(s))
        .ok_or_else(|| {
            ApiError::Internal(format!(
                "stored idempotent response has status {}",
                existing.status_code
            ))
        })?;
    Ok(Some(StoredResponse {
        status,
        body: existing.response_body,
    }))
}

/// Stores the response of a claimed key (same transaction as the claim and the write).
pub async fn complete(
    conn: &impl ConnectionTrait,
    req: &IdempotentRequest,
    status: u16,
    body: &impl serde::Serialize,
) -> Result<(), ApiError> {
    let status = i16::try_from(status)
        .map_err(|_| ApiError::Internal(format!("status {status} out of range")))?;
    let body = serde_json::to_string(body)
        .map_err(|e| ApiError::Internal(format!("serialising a response to store: {e}")))?;
    idempotency_key::Entity::update_many()
        .col_expr(Column::StatusCode, Expr::value(status))
        .col_expr(Column::ResponseBody, Expr::value(body))
        .filter(Column::Scope.eq(&req.scope))
        .filter(Column::Key.eq(req.key.as_str()))
        .exec(conn)
        .await?;
    Ok(())
}
