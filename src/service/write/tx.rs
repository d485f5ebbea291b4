//! Write transactions: [`TxOpener`] opens them, a [`WriteTx`] lends its use cases a
//! [`Write`] and, at its COMMIT, writes their [`Batch`] and publishes the events it
//! wrote.

use std::{
    ops::Deref,
    sync::atomic::{AtomicU64, Ordering},
    sync::Arc,
};

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};
use tokio::sync::{watch, Mutex, OwnedMutexGuard};

use super::{
    batch::{Batch, Write},
    events::{EventBus, CHANNEL},
};
use crate::error::ApiError;

/// Opens write transactions on a pool; keeps the write epoch and the event bus they
/// publish to. Shared by a `Db` and its group-commit writers.
#[derive(Clone, Debug)]
pub struct TxOpener {
    conn: DatabaseConnection,
    /// SQLite has one writer at a time. Queuing writers here, in the process, instead of
    /// in SQLite's busy handler keeps them fair and never surfaces SQLITE_BUSY as a 500.
    sqlite_writer: Option<Arc<Mutex<()>>>,
    /// Bumped after every write transaction of this process ended in a COMMIT, and at
    /// every event from another instance (see `Db::write_epoch`).
    epoch: Arc<AtomicU64>,
    /// Where committed events are published (`events`).
    bus: Arc<EventBus>,
    /// PostgreSQL: the highest outbox id committed, for [`notify`] to NOTIFY.
    notified: Option<Arc<watch::Sender<i64>>>,
}

impl TxOpener {
    pub fn new(conn: DatabaseConnection) -> TxOpener {
        let sqlite = conn.get_database_backend() == DbBackend::Sqlite;
        let mut opener = TxOpener {
            conn,
            sqlite_writer: sqlite.then(|| Arc::new(Mutex::new(()))),
            epoch: Arc::new(AtomicU64::new(0)),
            bus: Arc::default(),
            notified: None,
        };
        if !sqlite {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let (tx, rx) = watch::channel(0);
                runtime.spawn(notify(opener.conn.clone(), rx));
                opener.notified = Some(Arc::new(tx));
            }
        }
        // Another instance's write retires this one's epoch-keyed reads too.
        let epoch = opener.epoch.clone();
        opener.bus.on_event(move |_| {
            epoch.fetch_add(1, Ordering::SeqCst);
        });
        opener
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    pub fn bus(&self) -> &Arc<EventBus> {
        &self.bus
    }

    /// See `Db::write_epoch`.
    pub fn write_epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
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
            tx: Some(tx),
            batch: Batch::default(),
            _writer: writer,
            epoch: self.epoch.clone(),
            bus: self.bus.clone(),
            notified: self.notified.clone(),
        })
    }
}

/// A write transaction. On SQLite it holds the write lock from `BEGIN IMMEDIATE` on,
/// so it can never fail half-way with "database is locked". What its use cases defer
/// (counters, log rows, events) is collected in its [`Batch`] through [`WriteTx::write`]
/// and written by [`WriteTx::commit`] just before the COMMIT.
pub struct WriteTx {
    /// `None` once committed or rolled back (see the `Drop`).
    pub(super) tx: Option<DatabaseTransaction>,
    pub(super) batch: Batch,
    _writer: Option<OwnedMutexGuard<()>>,
    epoch: Arc<AtomicU64>,
    bus: Arc<EventBus>,
    notified: Option<Arc<watch::Sender<i64>>>,
}

impl Deref for WriteTx {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        self.tx
            .as_ref()
            .expect("a write transaction is used only until it ends")
    }
}

/// A write transaction dropped without its COMMIT or ROLLBACK (a `?` on an error path)
/// rolls back at once, on a task of its own, and keeps the SQLite writer lock until
/// then. Dropped as it is, sqlx would roll it back only when its pooled connection is
/// next used: on a quiet SQLite instance that connection kept the file's write lock for
/// as long as it sat idle, and another process (`tally import`) found the database
/// locked.
impl Drop for WriteTx {
    fn drop(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        let writer = self._writer.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = tx.rollback().await {
                    tracing::warn!(error = %e, "rolling back an abandoned write transaction failed");
                }
                drop(writer);
            });
        }
    }
}

impl WriteTx {
    /// The write the use cases of this transaction run in.
    pub fn write(&mut self) -> Write<'_> {
        let tx = self
            .tx
            .as_ref()
            .expect("a write transaction is used only until it ends");
        Write::new(tx, &mut self.batch)
    }

    /// Writes what the transaction's use cases deferred (see `counters`), then commits
    /// and publishes the events it wrote.
    pub async fn commit(mut self) -> Result<(), ApiError> {
        self.batch.job_ended(true);
        self.apply().await?;
        Ok(self.finish().await?)
    }

    /// Writes what the batch collected (see [`Batch::apply`]).
    pub(super) async fn apply(&mut self) -> Result<(), ApiError> {
        let tx = self
            .tx
            .as_ref()
            .expect("a write transaction is used only until it ends");
        self.batch.apply(tx).await
    }

    /// Commits what was written (the batch's deferred writes must have been applied),
    /// and publishes the events written to the outbox.
    pub(super) async fn finish(mut self) -> Result<(), DbErr> {
        let done = match self.tx.take() {
            Some(tx) => tx.commit().await,
            None => Err(DbErr::Custom("the write transaction had ended".into())),
        };
        // Also after a failed COMMIT: a lost connection leaves it unknown whether it
        // took effect, and retiring cached reads for nothing costs only a re-read.
        self.epoch.fetch_add(1, Ordering::SeqCst);
        // What the transaction wrote to the outbox, published once it is durable (a
        // failed COMMIT's events are dropped; if it did take effect, the pump reads
        // them back from the outbox).
        let written = self.batch.take_written();
        if done.is_ok() {
            let last = written.iter().map(|e| e.id).max();
            if let (Some(notified), Some(last)) = (&self.notified, last) {
                // The other instances' wake-up, sent after the COMMIT ([`notify`]).
                notified.send_if_modified(|n| {
                    let newer = last > *n;
                    *n = (*n).max(last);
                    newer
                });
            }
            self.bus.publish_committed(written);
        }
        done
    }

    /// Rolls back before the SQLite writer lock is let go (dropping also rolls back,
    /// but only once the connection is next used).
    pub async fn rollback(mut self) -> Result<(), DbErr> {
        match self.tx.take() {
            Some(tx) => tx.rollback().await,
            None => Ok(()),
        }
    }
}

/// The NOTIFY after a COMMIT (PostgreSQL). Not inside the transaction: PostgreSQL
/// serialises the COMMITs of every transaction that NOTIFYs (one queue lock, held
/// through the commit's disk flush; 2.3–7× fewer commits per second measured, see
/// BENCHMARKS.md). Each committing write sets the highest outbox id it wrote; this task
/// sends one `NOTIFY tally_events, '<schema>:<id>'` per burst (a notification tells a
/// listener to read everything after its cursor, so the last id stands for all).
/// A notification lost with a crash between the COMMIT and the NOTIFY is made up by
/// the next one or by the listeners' safety-net read (`pump`). Ends when every sender
/// is dropped.
async fn notify(conn: DatabaseConnection, mut last_id: watch::Receiver<i64>) {
    while last_id.changed().await.is_ok() {
        let id = *last_id.borrow_and_update();
        let sent = conn
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_notify($1, current_schema() || ':' || $2)",
                [CHANNEL.into(), id.to_string().into()],
            ))
            .await;
        if let Err(e) = sent {
            // The other instances read it at their next notification or safety-net read.
            tracing::warn!(error = %e, "NOTIFY after a commit failed");
        }
    }
}
