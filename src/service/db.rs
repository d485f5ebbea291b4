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

use super::{
    counters,
    events::EventBus,
    group_commit::{self, GroupCommit, JobFuture},
};
use crate::{config::Settings, error::ApiError};

/// The database handle shared by all requests.
#[derive(Clone, Debug)]
pub struct Db {
    pub conn: DatabaseConnection,
    /// SQLite has one writer at a time. Queuing writers here, in the process, instead of
    /// in SQLite's busy handler keeps them fair and never surfaces SQLITE_BUSY as a 500.
    sqlite_writer: Option<Arc<Mutex<()>>>,
    /// The group-commit writers behind [`Db::write`]; none in a writer's own copy.
    writers: Arc<[GroupCommit]>,
    /// Bumped after every write transaction of this process ended in a COMMIT, and at
    /// every event from another instance (see [`Db::write_epoch`]).
    epoch: Arc<AtomicU64>,
    /// Where committed events are published (`events`).
    bus: Arc<EventBus>,
    /// This instance's folds of the spam model's pending changes (`spam::fold_soon`).
    spam_folder: Arc<super::spam::Folder>,
}

/// How many group-commit writers a PostgreSQL pool gets (SQLite has one writer at a
/// time, so one). Each holds one connection while its batch runs. A batch is bound by
/// round trips to the database, not by CPU: two writers overlap them. A batch takes its
/// shared row locks (article, queue and author counters) only at its end, in one global
/// order (`counters::apply_deferred`), so two writers' batches wait on each other at
/// most for a COMMIT, never in a cycle.
pub const POSTGRES_WRITERS: usize = 2;

/// Which writer a group-committed write goes to. Writes that lock the same rows while
/// their batch runs (not only at its end) must go to the same writer: a user's own rows
/// (their ratings, their idempotency keys) by user, a thread's comment rows (a reply
/// locks its parents) by article.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route(u64);

impl Route {
    /// The first writer: for a write that locks no rows while its batch runs, or a `Db`
    /// with one writer.
    pub const ANY: Route = Route(0);

    pub fn user(id: &str) -> Route {
        Route::of("user", id)
    }

    pub fn article(id: &str) -> Route {
        Route::of("article", id)
    }

    /// Votes on one comment (they lock its row while their batch runs).
    pub fn comment(id: &str) -> Route {
        Route::of("comment", id)
    }

    fn of(kind: &str, id: &str) -> Route {
        use std::hash::BuildHasher;
        // Fixed seed: the same key goes to the same writer for the life of the process.
        Route(foldhash::fast::FixedState::with_seed(0).hash_one((kind, id)))
    }

    fn writer(self, writers: usize) -> usize {
        // Lossless: the remainder is below `writers`.
        (self.0 % writers.max(1) as u64) as usize
    }
}

/// A write transaction. On SQLite it holds the write lock from `BEGIN IMMEDIATE` on,
/// so it can never fail half-way with "database is locked".
pub struct WriteTx {
    tx: DatabaseTransaction,
    _writer: Option<OwnedMutexGuard<()>>,
    epoch: Arc<AtomicU64>,
    bus: Arc<EventBus>,
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
        // What the transaction wrote to the outbox, published once it is durable (a
        // failed COMMIT's events are dropped; if it did take effect, the pump reads
        // them back from the outbox).
        let written = counters::take_written_events();
        if done.is_ok() {
            self.bus.publish_committed(written);
        }
        done
    }

    /// Rolls back before the SQLite writer lock is let go (dropping also rolls back,
    /// but only once the connection is next used).
    pub async fn rollback(self) -> Result<(), DbErr> {
        self.tx.rollback().await
    }
}

/// `localhost` or a loopback address: a server on this machine.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Db {
    /// Opens the pool. SQLite gets WAL (readers never block the writer), `synchronous =
    /// FULL` (a commit that returned survives power loss) and a busy timeout for other
    /// processes sharing the file.
    pub async fn connect(settings: &Settings) -> Result<Db, DbErr> {
        let mut opt = ConnectOptions::new(settings.database_url.clone());
        let statement_timeout_ms = settings.db_timeout_ms;
        // TLS to a server on this machine protects nothing and costs a handshake per
        // connection (about 230 ms of cold start with `prefer`, sqlx's default, measured
        // in BENCHMARKS.md): a loopback host without an explicit `sslmode=` connects in
        // plain text. Any `sslmode=` in the URL is obeyed as written.
        let loopback_default = !settings
            .database_url
            .to_ascii_lowercase()
            .contains("sslmode=");
        opt.max_connections(settings.db_max_connections)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(settings.db_acquire_timeout_secs))
            .connect_timeout(Duration::from_secs(settings.db_acquire_timeout_secs))
            .sqlx_logging(true)
            .sqlx_logging_level(log::LevelFilter::Debug)
            // A statement that runs longer than a request may wait is cancelled by the
            // server too, so it does not hold locks for a client long gone (`deadline`).
            .map_sqlx_postgres_opts(move |o| {
                let o = if loopback_default && is_loopback_host(o.get_host()) {
                    o.ssl_mode(sea_orm::sqlx::postgres::PgSslMode::Disable)
                } else {
                    o
                };
                match statement_timeout_ms {
                    0 => o,
                    ms => o.options([("statement_timeout", ms.to_string())]),
                }
            })
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
            });
        let conn = Database::connect(opt).await?;
        Ok(Db::with_connection(conn))
    }

    /// Wraps an open pool and spawns its group-commit writers on the current tokio
    /// runtime: one on SQLite, [`POSTGRES_WRITERS`] on PostgreSQL (without a runtime,
    /// `write` runs each write alone). On SQLite the writer lock is per `Db`: two `Db`s
    /// on one file queue for each other in SQLite's busy handler instead.
    pub fn with_connection(conn: DatabaseConnection) -> Db {
        Db::with_writers(conn, POSTGRES_WRITERS)
    }

    /// [`Db::with_connection`] with `writers` group-commit writers (at least one; SQLite
    /// always gets one).
    pub fn with_writers(conn: DatabaseConnection, writers: usize) -> Db {
        let sqlite = conn.get_database_backend() == DbBackend::Sqlite;
        let sqlite_writer = sqlite.then(|| Arc::new(Mutex::new(())));
        let mut db = Db {
            conn,
            sqlite_writer,
            writers: Arc::new([]),
            epoch: Arc::new(AtomicU64::new(0)),
            bus: Arc::default(),
            spam_folder: Arc::default(),
        };
        // Another instance's write retires this one's epoch-keyed reads too.
        let epoch = db.epoch.clone();
        db.bus.on_event(move |_| {
            epoch.fetch_add(1, Ordering::SeqCst);
        });
        let n = if sqlite { 1 } else { writers.max(1) };
        let batch_sizes = group_commit::batch_size_histogram();
        db.writers = (0..n)
            .map_while(|_| GroupCommit::spawn(db.clone(), batch_sizes.clone()))
            .collect();
        db
    }

    /// Applies the pending migrations, in one transaction that first takes a lock, so
    /// that instances starting together on one fresh database (replicas, a restart
    /// overlapping the old process) do not race: the first migrates, the others wait
    /// for its commit and then find nothing pending. SQLite: the write lock, from
    /// `BEGIN IMMEDIATE` on (a waiting process gives up after the busy timeout, 5 s).
    /// PostgreSQL: a transaction-scoped advisory lock per schema, so instances on other
    /// schemas of the same database never wait for each other.
    pub async fn migrate(&self) -> Result<(), DbErr> {
        let tx = self.begin_write().await?;
        if self.backend() == DbBackend::Postgres {
            tx.execute_unprepared(
                "SELECT pg_advisory_xact_lock(hashtext('tally migrations ' || current_schema()))",
            )
            .await?;
        }
        Migrator::up(&*tx, None).await?;
        tx.commit().await
    }

    /// This instance's folds of the spam model's pending changes.
    pub(crate) fn spam_folder(&self) -> &Arc<super::spam::Folder> {
        &self.spam_folder
    }

    /// This instance's event bus: subscribe to committed events (see `events`).
    pub fn events(&self) -> &Arc<EventBus> {
        &self.bus
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
            bus: self.bus.clone(),
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
    /// [`group_commit`]) on the writer `route` picks, and returns its result once that
    /// transaction committed; an error result means nothing of `work` was written.
    /// `work` may run more than once (only the last run counts), so it owns (clones) its
    /// inputs.
    pub async fn write<T, F>(&self, route: Route, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: for<'t> Fn(&'t DatabaseTransaction) -> JobFuture<'t, T> + Send + 'static,
    {
        match self.writers.get(route.writer(self.writers.len())) {
            Some(writer) => writer.submit(work).await,
            None => group_commit::run_unbatched(self, work).await,
        }
    }

    /// Writes waiting for the group-commit writers.
    pub fn queued_writes(&self) -> usize {
        self.writers.iter().map(GroupCommit::queued).sum()
    }

    /// How many writes each group-committed transaction carried (all writers).
    pub fn write_batch_sizes(&self) -> Option<prometheus_client::metrics::histogram::Histogram> {
        self.writers.first().map(GroupCommit::batch_sizes)
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        self.conn.execute_unprepared("SELECT 1").await.is_ok()
    }
}
