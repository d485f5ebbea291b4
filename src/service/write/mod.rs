//! The write path: how every write reaches the database, what it emits once committed,
//! and who listens. Start here.
//!
//! **A write runs in a [`Write`].** A write use case (`ratings::put_with_review`,
//! `comments::create`, `moderation::decisions::decide`, …) does its work through a
//! `&mut Write`: the transaction (`Write::tx`) for its own statements, plus the
//! [`Batch`] that collects what must be written at the end, in one order, just before
//! the COMMIT: counter changes on shared rows (`counters::status_changed`,
//! `counters::bump_queue`, `Write::rating_changed`, `Write::flagger_decided`),
//! moderation log rows (`Write::log`), the spam model's lessons (`Write::stage_lesson`,
//! through `spam::learn_in`), the rating watches that answer a rating with its
//! article's aggregate (`Write::watch_rating`), and the committed **events**
//! (`Write::record(Event::…)`). Only the write path makes a `Write`, so a use case that
//! takes one cannot run outside a write: that is checked by the compiler.
//!
//! **Two ways in.**
//! - The hot writes (ratings, new comments, votes, a reader's erasure, and each round
//!   of the webhook sender, `webhook_dispatch`) go through
//!   [`Db::write`]: a job (a closure over its borrowed input) is queued to one of the
//!   group-commit writers ([`group_commit`]), which runs many jobs in ONE transaction and
//!   commits once. Each job's collection joins the transaction's only if the job
//!   succeeded (`Batch::job_started`/`job_ended`); a job that fails in a batch of
//!   several makes the batch run again with a savepoint per job, so only it is refused.
//!   Callers are answered after the COMMIT.
//! - Every other write (decisions, bans, flags, claims, edits, settings, retention)
//!   opens its own transaction: `let mut tx = db.begin_write().await?; let mut w =
//!   tx.write(); …; tx.commit().await?`, most inside [`retry::retrying`]
//!   (PostgreSQL's 40001/40P01 run it again).
//!
//! **Just before the COMMIT** ([`Batch::apply`], called by `WriteTx::commit` and by the
//! group-commit writer) the batch is written in one global lock order: first what its
//! decisions taught the spam model (`lessons`: their lesson rows in one upsert, their
//! summed change as one pending row; rows of comments the batch holds, and a new row),
//! then the articles' counters, the site's `rating_totals`, the queue counters, the authors' counts and
//! the flaggers' records, each sorted by key; then the log rows; then, last, the events
//! into the `events` table (the outbox), in the same transaction as the change, so an
//! event exists exactly when its write committed. On PostgreSQL the instance NOTIFYs
//! `tally_events` right after the COMMIT (not in it: PostgreSQL serialises notifying
//! commits; see `tx`'s `notify`). Comment rows are the only rows locked before that (bottom-up:
//! a comment, then its ancestors), which is why concurrent writers never deadlock on
//! the shared counter rows. The watching ratings learn their histograms and idempotent
//! answers are stored then too.
//!
//! **What it emits.** After the COMMIT returned, `WriteTx` publishes the written events
//! on the instance's [`events::EventBus`] (`Db::events()`), before any caller is
//! answered. The event kinds are [`events::Event`]: a rating set or removed, a comment
//! created, edited, moved between statuses, flagged, voted on, a review written, a
//! claim taken or released, a ban, settings changed, an article registered, a spam
//! model change, a reader's data erased.
//!
//! **Who listens.**
//! - Synchronously, first: the caches (`startup::invalidate_from_events`: aggregates by
//!   article, pages, policies, the spam model) and the write epoch; no handler
//!   invalidates a cache by hand (the `ratings/top` answers may be up to 60 s old on
//!   purpose, see `top`).
//! - Then the broadcast subscribers (`EventBus::subscribe`): webhooks
//!   (`webhook_dispatch`) and the live moderation stream (`live`).
//! - Other instances: each runs [`pump::pump`], which LISTENs on `tally_events`
//!   (PostgreSQL) or polls the outbox, reads it from the last id it saw and publishes
//!   what it did not write itself, so a write through one instance reaches every other
//!   one's caches at once; [`pump::purge_periodically`] deletes old events (7 days by
//!   default, one instance at a time). The details (ids and gaps, replay after a lost
//!   connection) are in [`events`].

pub mod batch;
pub mod counters;
pub mod db;
pub mod events;
pub mod group_commit;
pub mod lessons;
pub mod pump;
pub mod retry;
pub mod tx;

pub use batch::{completion, Batch, Completion, RatingAfter, Write};
pub use db::{Db, Route};
