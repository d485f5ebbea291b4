//! Background jobs that must not run on two instances at once (the idempotency purge
//! today; outbox purge and retention later). Each batch of such a job runs in a write
//! transaction that first calls [`try_lock`]: on PostgreSQL a transaction-scoped
//! advisory lock per job and schema, taken without waiting, so while one instance
//! works through a job the others skip it (their next tick tries again), whatever the
//! number of instances; the lock goes with the transaction, so a crashed instance never
//! leaves it held. On SQLite every write transaction already holds the file's write
//! lock (`Db::begin_write`), which serialises the job's batches the same way.

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

/// Takes `job`'s lock for the rest of the transaction `tx`, or answers `false` at once
/// when another instance (or transaction) holds it.
pub async fn try_lock(tx: &impl ConnectionTrait, job: &str) -> Result<bool, DbErr> {
    if tx.get_database_backend() != DbBackend::Postgres {
        return Ok(true);
    }
    let row = tx
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_try_advisory_xact_lock(hashtext('tally job ' || $1 || ' ' || current_schema()))",
            [job.into()],
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get_by_index::<bool>(0))
        .transpose()?
        .unwrap_or(false))
}
