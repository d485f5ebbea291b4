//! Connecting, migrating and opening write transactions on SQLite or PostgreSQL; the
//! group-committed writes of [`Db::write`] are in [`super::group_commit`].

use std::{sync::Arc, time::Duration};

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr,
};

use super::{
    batch::Write,
    events::EventBus,
    group_commit::{self, GroupCommit, JobFuture},
    tx::{TxOpener, WriteTx},
};
use crate::{config::Settings, error::ApiError};

/// The database handle shared by all requests.
#[derive(Clone, Debug)]
pub struct Db {
    pub conn: DatabaseConnection,
    /// Opens the write transactions (and keeps the write epoch and the event bus).
    tx: TxOpener,
    /// The group-commit writers behind [`Db::write`].
    writers: Arc<[GroupCommit]>,
    /// This instance's folds of the spam model's pending changes (`spam::fold_soon`).
    spam_folds: Arc<Folds>,
    /// Writes of [`Db::write`] queued or running (see [`Db::writes_in_flight`]).
    in_flight: Arc<WritesInFlight>,
}

/// How many writes of [`Db::write`] are in flight, and a wake-up for those waiting for
/// none to be ([`Db::until_writes_pause`]).
#[derive(Debug, Default)]
struct WritesInFlight {
    count: std::sync::atomic::AtomicUsize,
    paused: tokio::sync::Notify,
}

/// Counts a write in flight while it lives.
struct InFlight(Arc<WritesInFlight>);

impl InFlight {
    fn new(n: &Arc<WritesInFlight>) -> InFlight {
        n.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlight(n.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self
            .0
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0.paused.notify_waiters();
        }
    }
}

/// Background folds of pending changes (the spam model's, see `spam::fold_soon`): at
/// most one runs at a time per instance, and a request made while one runs makes it
/// fold once more when it is done (what was staged meanwhile).
#[derive(Debug, Default)]
pub struct Folds {
    pub running: std::sync::atomic::AtomicBool,
    pub wanted: std::sync::atomic::AtomicBool,
    /// The spam model's version after this instance's last fold, and its vocabulary's
    /// size then at most (see `spam`'s bounds): a fold that finds the model still at
    /// that version need not count the vocabulary unless its change could take it past
    /// the cap.
    vocabulary: std::sync::Mutex<Option<(i64, i64)>>,
}

impl Folds {
    /// The vocabulary's size at most at model version `version`, if this instance's
    /// last fold left the model at that version.
    pub fn vocabulary_at(&self, version: i64) -> Option<i64> {
        let known = *self.vocabulary.lock().unwrap_or_else(|e| e.into_inner());
        known.and_then(|(v, size)| (v == version).then_some(size))
    }

    /// Records what a committed fold left: the model's version and the vocabulary's
    /// size at most.
    pub fn set_vocabulary(&self, version: i64, size: i64) {
        *self.vocabulary.lock().unwrap_or_else(|e| e.into_inner()) = Some((version, size));
    }
}

/// How many group-commit writers a PostgreSQL pool gets (SQLite has one writer at a
/// time, so one). Each holds one connection while its batch runs. A batch is bound by
/// round trips to the database, not by CPU: two writers overlap them. A batch takes its
/// shared row locks (article, queue and author counters) only at its end, in one global
/// order (`Batch::apply`), so two writers' batches wait on each other at
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
        let tx = TxOpener::new(conn.clone());
        let n = if sqlite { 1 } else { writers.max(1) };
        let batch_sizes = group_commit::batch_size_histogram();
        let writers = (0..n)
            .map_while(|_| GroupCommit::spawn(tx.clone(), batch_sizes.clone()))
            .collect();
        Db {
            conn,
            tx,
            writers,
            spam_folds: Arc::default(),
            in_flight: Arc::default(),
        }
    }

    /// Applies the pending migrations, in one transaction that first takes a lock, so
    /// that instances starting together on one fresh database (replicas, a restart
    /// overlapping the old process) do not race: the first migrates, the others wait
    /// for its commit and then find nothing pending. SQLite: the write lock, from
    /// `BEGIN IMMEDIATE` on (a waiting process gives up after the busy timeout, 5 s).
    /// PostgreSQL: a transaction-scoped advisory lock per schema, so instances on other
    /// schemas of the same database never wait for each other.
    /// With nothing pending (a command run beside a live server, every restart) it
    /// takes no lock: only a read of the migrations table.
    pub async fn migrate(&self) -> Result<(), DbErr> {
        if matches!(Migrator::get_pending_migrations(&self.conn).await, Ok(p) if p.is_empty()) {
            return Ok(());
        }
        let tx = self.begin_write().await?;
        if self.backend() == DbBackend::Postgres {
            tx.execute_unprepared(
                "SELECT pg_advisory_xact_lock(hashtext('tally migrations ' || current_schema()))",
            )
            .await?;
        }
        Migrator::up(&*tx, None).await?;
        tx.finish().await
    }

    /// This instance's folds of the spam model's pending changes.
    pub fn spam_folds(&self) -> &Arc<Folds> {
        &self.spam_folds
    }

    /// This instance's event bus: subscribe to committed events (see `events`).
    pub fn events(&self) -> &Arc<EventBus> {
        self.tx.bus()
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// Starts a transaction that will write.
    pub async fn begin_write(&self) -> Result<WriteTx, DbErr> {
        self.tx.begin_write().await
    }

    /// A number that changes after every write transaction of this process committed
    /// (every write goes through [`Db::begin_write`]). A value read from the database
    /// after reading epoch `e` is current for as long as the epoch is still `e`: cached
    /// reads keyed by it retire themselves on the next commit, with no invalidation to
    /// forget. Writes through other processes do not move it.
    pub fn write_epoch(&self) -> u64 {
        self.tx.write_epoch()
    }

    /// Runs `work` on `input` as part of a group-committed write transaction (see
    /// [`group_commit`]) on the writer `route` picks, and returns its result once that
    /// transaction committed; an error result means nothing of `work` was written.
    /// `work` may run more than once (only the last run counts): it borrows `input`.
    pub async fn write<I, T, F>(&self, route: Route, input: I, work: F) -> Result<T, ApiError>
    where
        I: Send + Sync + 'static,
        T: Send + 'static,
        F: for<'t> Fn(&'t mut Write<'t>, &'t I) -> JobFuture<'t, T> + Send + 'static,
    {
        let _in_flight = InFlight::new(&self.in_flight);
        match self.writers.get(route.writer(self.writers.len())) {
            Some(writer) => writer.submit(input, work).await,
            None => group_commit::run_unbatched(&self.tx, input, work).await,
        }
    }

    /// Writes of [`Db::write`] through this handle (and its clones) not answered yet:
    /// queued or in the batch a writer runs. Zero when this instance's writers are idle.
    pub fn writes_in_flight(&self) -> usize {
        self.in_flight
            .count
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until no write of [`Db::write`] is in flight, or for `at_most`, whichever
    /// comes first. Woken when the last write in flight is answered, not by polling.
    pub async fn until_writes_pause(&self, at_most: Duration) {
        let deadline = tokio::time::Instant::now() + at_most;
        loop {
            // Registered before the check: a pause between the check and the wait
            // still wakes it.
            let paused = self.in_flight.paused.notified();
            tokio::pin!(paused);
            paused.as_mut().enable();
            if self.writes_in_flight() == 0
                || tokio::time::timeout_at(deadline, paused).await.is_err()
            {
                return;
            }
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
