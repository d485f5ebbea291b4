//! Group commit: one writer task per `Db` commits concurrent writes together.
//!
//! A durable commit costs a disk flush (`synchronous = FULL` on SQLite, the WAL flush on
//! PostgreSQL), and SQLite has one writer at a time, so one transaction per request caps
//! writes at the flush rate. Instead, `Db::write` queues a job; the writer takes the
//! first job, drains whatever else is already queued (up to [`MAX_BATCH`]), runs them all
//! in ONE write transaction (`Db::begin_write`, so on SQLite it holds the in-process
//! writer lock like every other writer) and commits once. The jobs first run straight
//! in the transaction; if one of them fails, that attempt is rolled back whole and the
//! batch runs again with each job inside its own SAVEPOINT: a job that fails (a 4xx, a
//! database error) is then rolled back to its savepoint alone and the others commit. Every caller is answered only after the COMMIT
//! returned: nothing is acknowledged before it is durable.
//!
//! The counters that new comments and ratings move on shared rows (articles, queues,
//! authors) and the moderation log entries of new comments are deferred while a
//! transaction runs (each job adds them to the transaction's `Batch` through its
//! `Write`): each job's join the transaction's only if that job succeeded, and they are
//! written together just before the COMMIT. A
//! rating is answered with its article's aggregate as it stood right after it.
//!
//! SQLite has one writer. On PostgreSQL a `Db` has [`super::db::POSTGRES_WRITERS`], each
//! with its own queue and transaction; `Db::write` picks one by [`super::db::Route`] (by
//! user, or by article for replies), so the rows a job locks while its batch runs are
//! never wanted by another writer's batch, and the shared rows are locked only at the
//! end, in one order. Two batches then wait on each other at most for a COMMIT.
//!
//! When the batch itself fails (BEGIN, a SAVEPOINT or the COMMIT), its jobs run again,
//! each alone in its own transaction, and get their own outcome; when the database is
//! unreachable they get 503 at once instead. Jobs are therefore `Fn` over owned inputs.
//! A job that failed with an internal error inside a batch of several (on PostgreSQL
//! e.g. a lock wait given up, see [`BATCH_LOCK_TIMEOUT`]) runs once more alone after the
//! batch committed. A job that panics gets a 500 and the writer carries on; if the writer
//! is gone, callers get a 500, never a hang.

use std::{any::Any, fmt, future::Future, panic::AssertUnwindSafe, pin::Pin};

use futures_util::FutureExt;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, TransactionTrait};
use tokio::sync::{mpsc, oneshot};

use super::{
    batch::{Batch, Write},
    retry,
    tx::{TxOpener, WriteTx},
};
use crate::error::ApiError;

/// The most jobs committed by one transaction.
pub const MAX_BATCH: usize = 128;

/// How many jobs may wait for the writer before callers wait to enqueue (back-pressure).
pub const QUEUE_CAPACITY: usize = 1024;

/// PostgreSQL: how long a job in a batch of several waits for a row lock before it gives
/// up (and runs again alone after the batch). A batch holds the locks of the jobs before
/// it, so it does not take locks in the order every single transaction does (comments
/// bottom-up, then the article, then the queue counters); a moderator's transaction
/// could then wait on the batch while the batch waits on it. Giving up well before
/// PostgreSQL's `deadlock_timeout` (1 s by default) makes the batch the one that yields.
pub const BATCH_LOCK_TIMEOUT: &str = "200ms";

/// The future of one run of a job, borrowing the write it runs in and its input.
pub type JobFuture<'t, T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send + 't>>;

/// How one run of a job went.
enum Ran {
    Ok,
    /// `again`: worth one more run alone (an internal error inside a batch of several).
    Failed {
        again: bool,
    },
    Panicked,
}

/// A queued job with its result type erased: it keeps the result of its last run until
/// it is told to answer.
trait Job: Send {
    /// The caller stopped waiting (its request was dropped) before the job started.
    fn abandoned(&self) -> bool;
    fn run<'t>(
        &'t mut self,
        tx: &'t DatabaseTransaction,
        batch: &'t mut Batch,
        in_batch: bool,
    ) -> Pin<Box<dyn Future<Output = Ran> + Send + 't>>;
    /// Replaces the result of the last run (the batch it ran in did not commit).
    fn fail(&mut self, error: ApiError);
    /// The last run was rolled back by the database to break a deadlock or a
    /// serialization failure: worth running again.
    fn contended(&self) -> bool;
    /// Sends the result to the caller.
    fn answer(self: Box<Self>);
}

struct TypedJob<I, T, F> {
    input: I,
    work: F,
    result: Option<Result<T, ApiError>>,
    reply: oneshot::Sender<Result<T, ApiError>>,
}

/// `f` as a closure called once (so what it returns may borrow what it captured).
fn once<R>(f: impl FnOnce() -> R) -> impl FnOnce() -> R {
    f
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a write panicked".into())
}

impl<I, T, F> Job for TypedJob<I, T, F>
where
    I: Send + Sync + 'static,
    T: Send + 'static,
    F: for<'t> Fn(&'t mut Write<'t>, &'t I) -> JobFuture<'t, T> + Send + 'static,
{
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    fn run<'t>(
        &'t mut self,
        tx: &'t DatabaseTransaction,
        batch: &'t mut Batch,
        in_batch: bool,
    ) -> Pin<Box<dyn Future<Output = Ran> + Send + 't>> {
        Box::pin(async move {
            let mut write = Write::new(tx, batch);
            let start = once(|| (self.work)(&mut write, &self.input));
            let outcome = match std::panic::catch_unwind(AssertUnwindSafe(start)) {
                Ok(fut) => AssertUnwindSafe(fut).catch_unwind().await,
                Err(panic) => Err(panic),
            };
            let (ran, result) = match outcome {
                Ok(Ok(value)) => (Ran::Ok, Ok(value)),
                Ok(Err(e)) => (
                    Ran::Failed {
                        again: in_batch
                            && matches!(e, ApiError::Internal(_) | ApiError::Contention(_)),
                    },
                    Err(e),
                ),
                Err(panic) => (
                    Ran::Panicked,
                    Err(ApiError::Internal(format!(
                        "a write panicked: {}",
                        panic_message(&*panic)
                    ))),
                ),
            };
            self.result = Some(result);
            ran
        })
    }

    fn fail(&mut self, error: ApiError) {
        self.result = Some(Err(error));
    }

    fn contended(&self) -> bool {
        matches!(self.result, Some(Err(ApiError::Contention(_))))
    }

    fn answer(self: Box<Self>) {
        let result = self
            .result
            .unwrap_or_else(|| Err(ApiError::Internal("a write was never run".into())));
        // The caller may have gone away (client disconnected): nothing to tell.
        let _ = self.reply.send(result);
    }
}

/// The histogram of jobs per transaction: 1, 2, 4 … 128.
pub fn batch_size_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 8))
}

/// The handle on one of a `Db`'s writer tasks.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Box<dyn Job>>,
    batch_sizes: Histogram,
}

impl fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupCommit")
            .field("queued", &self.queued())
            .finish()
    }
}

impl GroupCommit {
    /// Spawns a writer on the current tokio runtime (`None` outside of one), observing
    /// its batch sizes into `batch_sizes`, opening its transactions with `db`; the task
    /// ends when every handle is dropped.
    pub fn spawn(db: TxOpener, batch_sizes: Histogram) -> Option<GroupCommit> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        runtime.spawn(writer(db, rx, batch_sizes.clone()));
        Some(GroupCommit { queue, batch_sizes })
    }

    /// Jobs waiting for the writer (not counting the batch it is running).
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// How many jobs each transaction committed.
    pub fn batch_sizes(&self) -> Histogram {
        self.batch_sizes.clone()
    }

    /// Queues `work` and waits for its result, given after the transaction it ran in
    /// committed (or rolled back, for an error).
    pub async fn submit<I, T, F>(&self, input: I, work: F) -> Result<T, ApiError>
    where
        I: Send + Sync + 'static,
        T: Send + 'static,
        F: for<'t> Fn(&'t mut Write<'t>, &'t I) -> JobFuture<'t, T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(TypedJob {
            input,
            work,
            result: None,
            reply,
        });
        self.queue
            .send(job)
            .await
            .map_err(|_| ApiError::Internal("the database writer has stopped".into()))?;
        answer.await.map_err(|_| {
            ApiError::Internal("the database writer stopped before answering".into())
        })?
    }
}

async fn writer(db: TxOpener, mut rx: mpsc::Receiver<Box<dyn Job>>, batch_sizes: Histogram) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // A request dropped before its write started (client gone) is not written.
        batch.retain(|job| !job.abandoned());
        if batch.is_empty() {
            continue;
        }
        batch_sizes.observe(batch.len() as f64);
        if batch.len() == 1 {
            for job in batch {
                run_alone(&db, job).await;
            }
        } else {
            run_batch(&db, batch).await;
        }
    }
}

/// Runs `work` in a transaction of its own, without the writer (for a `Db` that has none).
pub async fn run_unbatched<I, T, F>(db: &TxOpener, input: I, work: F) -> Result<T, ApiError>
where
    I: Send + Sync + 'static,
    T: Send + 'static,
    F: for<'t> Fn(&'t mut Write<'t>, &'t I) -> JobFuture<'t, T> + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    run_alone(
        db,
        Box::new(TypedJob {
            input,
            work,
            result: None,
            reply,
        }),
    )
    .await;
    answer
        .await
        .map_err(|_| ApiError::Internal("a write was never answered".into()))?
}

/// Runs one job in its own transaction (like a plain write) and answers it; a run the
/// database rolled back to break a deadlock runs again (see `super::retry`).
async fn run_alone(db: &TxOpener, mut job: Box<dyn Job>) {
    for run in 1..=retry::ATTEMPTS {
        run_alone_once(db, &mut job).await;
        if run == retry::ATTEMPTS || !job.contended() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5 * u64::from(run))).await;
    }
    job.answer();
}

async fn run_alone_once(db: &TxOpener, job: &mut Box<dyn Job>) {
    match db.begin_write().await {
        Ok(mut tx) => {
            if let Ran::Ok = run_counted(job, &mut tx, false).await {
                if let Err(e) = tx.apply().await {
                    job.fail(e);
                    let _ = tx.rollback().await;
                } else if let Err(e) = tx.finish().await {
                    job.fail(e.into());
                }
            } else {
                // The job's own error is its answer; a failed rollback changes nothing.
                let _ = tx.rollback().await;
            }
        }
        Err(e) => job.fail(e.into()),
    }
}

/// Runs a job, keeping the counters it deferred only if it succeeded.
async fn run_counted(job: &mut Box<dyn Job>, tx: &mut WriteTx, in_batch: bool) -> Ran {
    let WriteTx { tx, batch, .. } = tx;
    let Some(tx) = tx.as_ref() else {
        return Ran::Failed { again: false };
    };
    batch.job_started();
    let ran = job.run(tx, batch, in_batch).await;
    batch.job_ended(matches!(ran, Ran::Ok));
    ran
}

/// Whether a batch failure means the database is out of reach: rerunning each job would
/// only wait for it again, one after the other.
fn unreachable(e: sea_orm::DbErr) -> bool {
    matches!(ApiError::from(e), ApiError::Unavailable)
}

/// Gives every job the same failure.
fn fail_all(jobs: Vec<Box<dyn Job>>, error: impl Fn() -> ApiError) {
    for mut job in jobs {
        job.fail(error());
        job.answer();
    }
}

async fn rerun_alone(db: &TxOpener, jobs: Vec<Box<dyn Job>>) {
    for job in jobs {
        run_alone(db, job).await;
    }
}

/// Opens a batch's transaction (on PostgreSQL with the batch's lock timeout). When that
/// fails, the jobs are settled here (503 if the database is out of reach, else each run
/// alone) and `None` comes back.
async fn begin_batch(
    db: &TxOpener,
    jobs: Vec<Box<dyn Job>>,
) -> Option<(WriteTx, Vec<Box<dyn Job>>)> {
    let tx = match db.begin_write().await {
        Ok(tx) => tx,
        Err(e) => {
            if unreachable(e) {
                fail_all(jobs, || ApiError::Unavailable);
            } else {
                rerun_alone(db, jobs).await;
            }
            return None;
        }
    };
    if db.backend() == DbBackend::Postgres {
        let set = format!("SET LOCAL lock_timeout = '{BATCH_LOCK_TIMEOUT}'");
        if tx.execute_unprepared(&set).await.is_err() {
            let _ = tx.rollback().await;
            rerun_alone(db, jobs).await;
            return None;
        }
    }
    Some((tx, jobs))
}

/// Writes a batch's deferred counters. On PostgreSQL without the batch's lock timeout:
/// every batch takes these locks last and in the same order, and no other transaction
/// of ours waits on a batch while holding one of them (comment rows come first in every
/// write), so waiting here can only be for a COMMIT, not a cycle.
async fn apply_batch_counters(db: &TxOpener, tx: &mut WriteTx) -> Result<(), ApiError> {
    if db.backend() == DbBackend::Postgres {
        tx.execute_unprepared("SET LOCAL lock_timeout = 0").await?;
    }
    tx.apply().await
}

/// A batch's COMMIT failed. A lost connection leaves it unknown whether it took effect,
/// so a rerun could write twice: the callers get 503, as a single write would. Any
/// other failure rolled it back: each job runs again alone.
async fn commit_failed(db: &TxOpener, jobs: Vec<Box<dyn Job>>, e: sea_orm::DbErr) {
    if unreachable(e) {
        fail_all(jobs, || ApiError::Unavailable);
    } else {
        rerun_alone(db, jobs).await;
    }
}

/// Runs several jobs in one transaction and commits once. Optimistic first: the jobs
/// run straight in the transaction, no savepoints (two statements fewer per job). Should
/// any of them fail, nothing of that attempt is kept and the batch runs again with a
/// savepoint per job ([`run_batch_isolated`]), so only the failing job is refused.
async fn run_batch(db: &TxOpener, jobs: Vec<Box<dyn Job>>) {
    let Some((mut tx, jobs)) = begin_batch(db, jobs).await else {
        return;
    };
    let mut jobs = jobs;
    let mut all_ok = true;
    for job in jobs.iter_mut() {
        if !matches!(run_counted(job, &mut tx, true).await, Ran::Ok) {
            all_ok = false;
            break;
        }
    }
    if !all_ok {
        // Release the SQLite writer lock before the isolated run takes it again.
        let _ = tx.rollback().await;
        return run_batch_isolated(db, jobs).await;
    }
    if apply_batch_counters(db, &mut tx).await.is_err() {
        let _ = tx.rollback().await;
        return rerun_alone(db, jobs).await;
    }
    match tx.finish().await {
        Ok(()) => {
            for job in jobs {
                job.answer();
            }
        }
        Err(e) => commit_failed(db, jobs, e).await,
    }
}

/// Runs several jobs in one transaction, each in a savepoint, then commits and answers.
async fn run_batch_isolated(db: &TxOpener, jobs: Vec<Box<dyn Job>>) {
    let Some((mut tx, jobs)) = begin_batch(db, jobs).await else {
        return;
    };
    let mut ran: Vec<(Box<dyn Job>, bool)> = Vec::with_capacity(jobs.len());
    let mut pending = jobs.into_iter();
    let mut broken = false;
    for mut job in pending.by_ref() {
        let savepoint = match tx.begin().await {
            Ok(sp) => sp,
            Err(_) => {
                ran.push((job, false));
                broken = true;
                break;
            }
        };
        tx.batch.job_started();
        let outcome = job.run(&savepoint, &mut tx.batch, true).await;
        let (closed, again) = match outcome {
            Ran::Ok => (savepoint.commit().await, false),
            Ran::Failed { again } => (savepoint.rollback().await, again),
            Ran::Panicked => (savepoint.rollback().await, false),
        };
        tx.batch
            .job_ended(matches!(outcome, Ran::Ok) && closed.is_ok());
        ran.push((job, again));
        if closed.is_err() {
            broken = true;
            break;
        }
    }
    if broken {
        // The transaction is unusable: nothing of it commits; every job runs again alone.
        let _ = tx.rollback().await;
        let all = ran.into_iter().map(|(job, _)| job).chain(pending).collect();
        return rerun_alone(db, all).await;
    }
    if apply_batch_counters(db, &mut tx).await.is_err() {
        let _ = tx.rollback().await;
        return rerun_alone(db, ran.into_iter().map(|(job, _)| job).collect()).await;
    }
    match tx.finish().await {
        Ok(()) => {
            let mut again = Vec::new();
            for (job, retry) in ran {
                if retry {
                    again.push(job);
                } else {
                    job.answer();
                }
            }
            rerun_alone(db, again).await;
        }
        Err(e) => commit_failed(db, ran.into_iter().map(|(job, _)| job).collect(), e).await,
    }
}
