//! Idempotency keys: a write sent again with the same `Idempotency-Key` by the same
//! caller gets the first response back instead of being done twice.
//!
//! The key row is claimed (inserted) at the start of the use case's write transaction
//! and completed with the response before it commits, so a key is never stored without
//! its write, nor a write without its key. A concurrent request with the same key waits
//! on the claim: on SQLite behind `Db::begin_write`, on PostgreSQL on the primary key of
//! the uncommitted row; it then sees the committed row and replays it. Only successful
//! responses are stored: a failed write rolls back its claim, so a retry runs afresh.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    sea_query::{Expr, ExprTrait, OnConflict, Query},
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
};

use super::write::db::Db;
use crate::{
    domain::IdempotencyKey,
    entity::idempotency_key::{self, Column},
    error::ApiError,
};

/// How long a key is remembered; an older key counts as unused.
pub const KEY_TTL_HOURS: i64 = 24;

/// The purge's name as a singleton job.
pub const PURGE_JOB: &str = "idempotency purge";

/// Expired keys deleted per write transaction by [`purge_expired`]: short transactions,
/// so requests' writes are never held up for long.
pub const PURGE_BATCH: u64 = 1_000;

/// Deletes the keys created before `cutoff` (use `now - KEY_TTL_HOURS`), `batch` per
/// write transaction, and returns how many. An expired key would be forgotten on reuse
/// anyway (see [`claim`]); this keeps the table from growing with keys never reused.
/// A singleton job ([`super::singleton`]): while another instance is purging, this
/// stops at once and returns what it deleted so far.
pub async fn purge_expired(db: &Db, cutoff: DateTime<Utc>, batch: u64) -> Result<u64, DbErr> {
    let batch = Ord::max(batch, 1);
    // Looked for first with a read: a write transaction for nothing would still retire
    // the caches keyed by the write epoch.
    let any = idempotency_key::Entity::find()
        .select_only()
        .column(Column::Scope)
        .filter(Column::CreatedAt.lt(cutoff))
        .into_tuple::<String>()
        .one(&db.conn)
        .await?;
    if any.is_none() {
        return Ok(0);
    }
    let mut purged = 0;
    loop {
        let expired = Query::select()
            .columns([Column::Scope, Column::Key])
            .from(idempotency_key::Entity)
            .and_where(Column::CreatedAt.lt(cutoff))
            .limit(batch)
            .to_owned();
        let tx = db.begin_write().await?;
        if !super::singleton::try_lock(&*tx, PURGE_JOB).await? {
            tx.rollback().await?;
            tracing::debug!("another instance is purging idempotency keys");
            return Ok(purged);
        }
        let deleted = idempotency_key::Entity::delete_many()
            .filter(
                Expr::tuple([Expr::col(Column::Scope), Expr::col(Column::Key)])
                    .in_subquery(expired),
            )
            .exec(&*tx)
            .await?
            .rows_affected;
        tx.commit()
            .await
            .map_err(|e| DbErr::Custom(e.to_string()))?;
        purged += deleted;
        if deleted < batch {
            return Ok(purged);
        }
    }
}

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

/// How often a running server purges expired keys.
pub const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Purges expired keys at start and every [`PURGE_EVERY`], logging what it deleted;
/// runs until dropped (the server aborts it when it stops).
pub async fn purge_periodically(db: Db) {
    let mut every = tokio::time::interval(PURGE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let cutoff = super::now() - Duration::hours(KEY_TTL_HOURS);
        match purge_expired(&db, cutoff, PURGE_BATCH).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired idempotency keys deleted"),
            Err(e) => tracing::warn!(
                error = %e,
                "purging expired idempotency keys failed; retrying at the next interval"
            ),
        }
    }
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
