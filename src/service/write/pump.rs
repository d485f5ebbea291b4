//! Other instances' writes: the pump that LISTENs on (or polls) the outbox and
//! publishes what this instance did not write itself, and the outbox's purge by age
//! (see `events` for the whole story).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Statement};

use super::{
    db::Db,
    events::{last_id, read_after, CHANNEL, READ_BATCH},
};
use crate::{entity::event, error::ApiError};

/// How the pump learns of other instances' writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PumpMode {
    /// PostgreSQL: LISTEN on [`CHANNEL`] through a connection of its own to `url`;
    /// polls every `fallback` while it cannot.
    Listen { url: String, fallback: Duration },
    /// Read the outbox every interval.
    Poll(Duration),
}

/// How often a listening pump reads the outbox even without a notification (a safety
/// net: a notification is lost with its connection, which is replayed, or when the
/// writing instance dies between its COMMIT and its NOTIFY, see `tx::notify`). One
/// indexed read a second.
const LISTEN_SAFETY_NET: Duration = Duration::from_secs(1);

/// Reads the outbox after the bus's cursor and publishes what it finds.
pub async fn catch_up(db: &Db) -> Result<usize, ApiError> {
    let mut total = 0;
    loop {
        let cursor = db.events().cursor();
        let events = read_after(&db.conn, cursor, READ_BATCH).await?;
        let n = events.len();
        total += n;
        if n > 0 {
            db.events().publish_read(events);
        }
        // More to read only if a full batch came and the cursor moved (behind a gap it
        // waits, see `GAP_GRACE`).
        if (n as u64) < READ_BATCH || db.events().cursor() == cursor {
            return Ok(total);
        }
    }
}

/// Publishes other instances' committed events on `db`'s bus (see the module doc);
/// runs until dropped. Starts after the outbox's current last id.
pub async fn pump(db: Db, mode: PumpMode) {
    loop {
        match last_id(&db.conn).await {
            Ok(id) => {
                db.events().start_at(id);
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the outbox failed; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    match mode {
        PumpMode::Poll(every) => poll(&db, every).await,
        PumpMode::Listen { url, fallback } => listen(&db, &url, fallback).await,
    }
}

async fn poll(db: &Db, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = catch_up(db).await {
            tracing::debug!(error = %e, "reading the outbox failed; retrying at the next tick");
        }
    }
}

/// The current schema's name, which NOTIFY payloads of this database start with.
async fn schema(db: &Db) -> Result<String, ApiError> {
    let row = db
        .conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_schema()",
        ))
        .await?
        .ok_or_else(|| ApiError::Internal("no current schema".into()))?;
    Ok(row.try_get_by_index::<String>(0)?)
}

/// The listener's connection options: those of `url`, with the same loopback default
/// as the pool (`Db::connect`), named so operators see it in `pg_stat_activity`.
fn listener_options(
    url: &str,
    schema: &str,
) -> Result<sea_orm::sqlx::postgres::PgConnectOptions, ApiError> {
    use std::str::FromStr;
    let o = sea_orm::sqlx::postgres::PgConnectOptions::from_str(url)
        .map_err(|e| ApiError::Internal(format!("the database URL does not parse: {e}")))?;
    let o = if !url.to_ascii_lowercase().contains("sslmode=")
        && super::db::is_loopback_host(o.get_host())
    {
        o.ssl_mode(sea_orm::sqlx::postgres::PgSslMode::Disable)
    } else {
        o
    };
    let mut name = format!("tally events {schema}");
    name.truncate(63);
    Ok(o.application_name(&name))
}

/// LISTENs and catches up on every notification of this schema; on a lost connection,
/// reconnects (sqlx does, at the next receive) and replays from the cursor. While it
/// cannot listen, it polls every `fallback`.
async fn listen(db: &Db, url: &str, fallback: Duration) {
    use sea_orm::sqlx::postgres::PgListener;
    let mut tick = tokio::time::interval(fallback);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let listener = async {
            let schema = schema(db).await?;
            let options = listener_options(url, &schema)?;
            let pool = sea_orm::sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(3))
                .connect_lazy_with(options);
            let mut listener = PgListener::connect_with(&pool)
                .await
                .map_err(|e| ApiError::Internal(format!("LISTEN: {e}")))?;
            listener
                .listen(CHANNEL)
                .await
                .map_err(|e| ApiError::Internal(format!("LISTEN: {e}")))?;
            Ok::<_, ApiError>((listener, format!("{schema}:")))
        }
        .await;
        let (mut listener, prefix) = match listener {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for other instances' writes; polling the outbox");
                tick.tick().await;
                let _ = catch_up(db).await;
                continue;
            }
        };
        // What was committed before the LISTEN took effect.
        let _ = catch_up(db).await;
        loop {
            match tokio::time::timeout(LISTEN_SAFETY_NET, listener.try_recv()).await {
                Ok(Ok(Some(n))) => {
                    if n.payload().starts_with(&prefix) {
                        let _ = catch_up(db).await;
                    }
                }
                // The connection was lost (sqlx reconnects at the next receive):
                // replay whatever was committed meanwhile.
                Ok(Ok(None)) => {
                    tracing::info!("the LISTEN connection was lost; replaying the outbox");
                    let _ = catch_up(db).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "LISTEN failed; reconnecting");
                    tick.tick().await;
                    let _ = catch_up(db).await;
                    break;
                }
                Err(_) => {
                    let _ = catch_up(db).await;
                }
            }
        }
    }
}

/// The outbox purge's job name (`singleton`): one instance at a time.
const PURGE_JOB: &str = "events purge";

/// Deletes events older than `cutoff`, `batch` rows per transaction; how many.
pub async fn purge_older_than(db: &Db, cutoff: DateTime<Utc>, batch: u64) -> Result<u64, ApiError> {
    let mut purged = 0;
    loop {
        let tx = db.begin_write().await?;
        if !crate::service::singleton::try_lock(&*tx, PURGE_JOB).await? {
            tx.rollback().await?;
            return Ok(purged);
        }
        let old = sea_orm::sea_query::Query::select()
            .column(event::Column::Id)
            .from(event::Entity)
            .and_where(event::Column::CreatedAt.lt(cutoff))
            .order_by(event::Column::Id, sea_orm::Order::Asc)
            .limit(batch)
            .to_owned();
        let deleted = event::Entity::delete_many()
            .filter(event::Column::Id.in_subquery(old))
            .exec(&*tx)
            .await?
            .rows_affected;
        tx.commit().await?;
        purged += deleted;
        if deleted < batch {
            return Ok(purged);
        }
    }
}

/// Purges events older than `retention` at start and every hour; runs until dropped.
pub async fn purge_periodically(db: Db, retention: Duration) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let Ok(retention) = chrono::Duration::from_std(retention) else {
        return;
    };
    loop {
        every.tick().await;
        match purge_older_than(&db, crate::service::now() - retention, 1000).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "old outbox events deleted"),
            Err(e) => tracing::warn!(error = %e, "purging old outbox events failed"),
        }
    }
}
