//! Connecting, migrating and opening write transactions on SQLite or PostgreSQL; the
//! group-committed writes of [`Db::write`] are in [`super::group_commit`].

use std::{
    ops::Deref,
    sync::atomic::{AtomicU64, Ordering},
    sync::Arc,
    time::Duration,
};

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::group_commit::{self, GroupCommit, JobFuture};
use crate::{config::Settings, error::ApiError};

/// The database handle shared by all requests.
#[derive(Clone, Debug)]
pub struct Db {
    pub conn: DatabaseConnection,
    /// SQLite has one writer at a time. Queuing writers here, in the process, instead of
    /// in SQLite's busy handler keeps them fair and never surfaces SQLITE_BUSY as a 500.
    sqlite_writer: Option<Arc<Mutex<()>>>,
    /// The group-commit writer behind [`Db::write`]; `None` in the writer's own copy.
    group: Option<GroupCommit>,
    /// Bumped after every write transaction of this process ended in a COMMIT (see
    /// [`Db::write_epoch`]).
    epoch: Arc<AtomicU64>,
}

/// A write transaction. On SQLite it holds the write lock from `BEGIN IMMEDIATE` on,
/// so it can never fail half-way with "database is locked".
pub struct WriteTx {
    tx: DatabaseTransaction,
    _writer: Option<OwnedMutexGuard<()>>,
    epoch: Arc<AtomicU64>,
}

impl Deref for WriteTx {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.tx
    }
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), DbErr> {
        let done = self.tx.commit().await;
        // Also after a failed COMMIT: a lost connection leaves it unknown whether it
        // took effect, and retiring cached reads for nothing costs only a re-read.
        self.epoch.fetch_add(1, Ordering::SeqCst);
        done
    }

    /// Rolls back before the SQLite writer lock is let go (dropping also rolls back,
    /// but only once the connection is next used).
    pub async fn rollback(self) -> Result<(), DbErr> {
        self.tx.rollback().await
    }
}

impl Db {
    /// Opens the pool. SQLite gets WAL (readers never block the writer), `synchronous =
    /// FULL` (a commit that returned survives power loss) and a busy timeout for other
    /// processes sharing the file.
    pub async fn connect(settings: &Settings) -> Result<Db, DbErr> {
        let mut opt = ConnectOptions::new(settings.database_url.clone());
        opt.max_connections(settings.db_max_connections)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(settings.db_acquire_timeout_secs))
            .connect_timeout(Duration::from_secs(settings.db_acquire_timeout_secs))
            .sqlx_logging(true)
            .sqlx_logging_level(log::LevelFilter::Debug)
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
            });
        let conn = Database::connect(opt).await?;
        Ok(Db::with_connection(conn))
    }

    /// Wraps an open pool and spawns its group-commit writer on the current tokio
    /// runtime (without a runtime, `write` runs each write alone). On SQLite the writer lock is per `Db`: two `Db`s on one file queue for
    /// each other in SQLite's busy handler instead.
    pub fn with_connection(conn: DatabaseConnection) -> Db {
        let sqlite_writer =
            (conn.get_database_backend() == DbBackend::Sqlite).then(|| Arc::new(Mutex::new(())));
        let mut db = Db {
            conn,
            sqlite_writer,
            group: None,
            epoch: Arc::new(AtomicU64::new(0)),
        };
        db.group = GroupCommit::spawn(db.clone());
        db
    }

    pub async fn migrate(&self) -> Result<(), DbErr> {
        Migrator::up(&self.conn, None).await
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// Starts a transaction that will write.
    pub async fn begin_write(&self) -> Result<WriteTx, DbErr> {
        let writer = match &self.sqlite_writer {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let options = TransactionOptions {
            sqlite_transaction_mode: writer.as_ref().map(|_| SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        let tx = self.conn.begin_with_options(options).await?;
        Ok(WriteTx {
            tx,
            _writer: writer,
            epoch: self.epoch.clone(),
        })
    }

    /// A number that changes after every write transaction of this process committed
    /// (every write goes through [`Db::begin_write`]). A value read from the database
    /// after reading epoch `e` is current for as long as the epoch is still `e`: cached
    /// reads keyed by it retire themselves on the next commit, with no invalidation to
    /// forget. Writes through other processes do not move it.
    pub fn write_epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Runs `work` as part of a group-committed write transaction (see
    /// [`group_commit`]) and returns its result once that transaction committed; an
    /// error result means nothing of `work` was written. `work` may run more than once
    /// (only the last run counts), so it owns (clones) its inputs.
    pub async fn write<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: for<'t> Fn(&'t DatabaseTransaction) -> JobFuture<'t, T> + Send + 'static,
    {
        match &self.group {
            Some(group) => group.submit(work).await,
            None => group_commit::run_unbatched(self, work).await,
        }
    }

    /// Writes waiting for the group-commit writer.
    pub fn queued_writes(&self) -> usize {
        self.group.as_ref().map_or(0, GroupCommit::queued)
    }

    /// How many writes each group-committed transaction carried.
    pub fn write_batch_sizes(&self) -> Option<prometheus_client::metrics::histogram::Histogram> {
        self.group.as_ref().map(GroupCommit::batch_sizes)
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        self.conn.execute_unprepared("SELECT 1").await.is_ok()
    }
}
