//! Committed events: the outbox and the in-process bus (issue 18). How a write records
//! them is told in the parent module ([`super`]); this is the outbox's side.
//!
//! **The outbox.** [`insert`] (called last by `Batch::apply`, just before the COMMIT)
//! writes a write's [`Event`]s into the `events` table in the same transaction as the
//! change: an event exists exactly when its write committed. On PostgreSQL the instance
//! NOTIFYs `tally_events` (payload `<schema>:<max id>`) once the COMMIT returned (see
//! `tx`'s `notify`: inside the transaction it serialised every notifying COMMIT). Ids are taken just before the COMMIT:
//! on SQLite (one writer at a time) they are in commit order; on PostgreSQL two
//! transactions committing at the same moment may commit in the other order than their
//! ids, and a rolled-back transaction leaves an unused id. A reader by id therefore
//! treats a missing id below one it has seen as "committing now" for a moment
//! ([`GAP_GRACE`]) before it skips it (as the pump does). A global lock would give
//! commit order, but it serialises every COMMIT of every instance: measured, it made
//! concurrent decisions on PostgreSQL run out of pool connections.
//!
//! **Who listens.** After the COMMIT returned, `WriteTx::commit` publishes the batch's
//! events on this instance's [`EventBus`] before any caller is answered:
//! - synchronous listeners ([`EventBus::on_event`]) run first, inline: the caches
//!   (aggregates, pages, policies, the spam model) invalidate there, so a client that
//!   wrote reads its write back, and no handler touches a cache (the `ratings/top`
//!   answers are the exception on purpose: an expensive ranking the contract lets be
//!   up to 60 s old, see `top`);
//! - then every [`EventBus::subscribe`]r (a `tokio::sync::broadcast` of
//!   `Arc<StoredEvent>`) gets them: webhooks, live streams.
//!
//! **Other instances.** Each instance runs `pump::pump`: on PostgreSQL it LISTENs on
//! `tally_events` and, on each notification, reads the outbox from the last id it saw
//! and publishes what it had not published itself; after a lost connection it
//! reconnects and replays from that id. Where LISTEN is not available
//! (`TALLY_EVENTS_POLL_MS` > 0, a pooler in transaction mode, or SQLite) it polls the
//! outbox instead. So a write through instance A reaches instance B's caches within a
//! notification's round trip, and cache lifetimes can be long.
//!
//! Order: each event reaches the bus once. Events of this instance arrive in commit
//! order; events of other instances when the pump reads them, possibly after a later
//! local one. For an order, read the outbox by id ([`read_after`], minding the gaps
//! above). Rows are purged by age
//! (`pump::purge_periodically`, `TALLY_EVENTS_RETENTION_DAYS`, default 7).

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::{entity::event, error::ApiError};

/// The PostgreSQL channel the write path NOTIFYs after each COMMIT; the payload is `<schema>:<max id>`.
pub const CHANNEL: &str = "tally_events";

/// How many events a subscriber may fall behind before it misses some (it is told how
/// many with `RecvError::Lagged`, and can read them from the outbox).
pub const BUS_CAPACITY: usize = 4096;

/// The most events the pump reads from the outbox at once.
pub(super) const READ_BATCH: u64 = 500;

/// What a committed write changed. Serialized (tagged by `type`) into `events.data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A reader's rating of an article was set (`stars`) or removed (`None`).
    RatingChanged {
        article_id: String,
        user_id: String,
        stars: Option<u8>,
    },
    /// A comment (or review, `kind`) was posted, in moderation status `status`.
    CommentCreated {
        comment_id: String,
        article_id: String,
        parent_id: Option<String>,
        author_id: String,
        kind: String,
        status: String,
    },
    /// A comment moved between moderation statuses (a decision, a ban's purge, its
    /// author deleting it, a retention purge).
    CommentStatusChanged {
        comment_id: String,
        article_id: String,
        from: String,
        to: String,
        actor_id: String,
        actor_name: String,
    },
    /// A comment's author edited its body; `status` is its status after the edit,
    /// `from` the one before (the moderation rules judge an edit again, so it may move
    /// a comment, e.g. from `pending` to `approved`; absent in events recorded before
    /// it was kept).
    CommentEdited {
        comment_id: String,
        article_id: String,
        status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
    },
    /// A reader flagged a comment.
    CommentFlagged {
        comment_id: String,
        article_id: String,
        flagger_id: String,
        reason: String,
    },
    /// A reader's vote on a comment was set (`1`, `-1`) or removed (`0`).
    VoteChanged {
        comment_id: String,
        article_id: String,
        user_id: String,
        vote: i8,
    },
    /// A review (a rating with a text) was written or rewritten.
    ReviewWritten {
        comment_id: String,
        article_id: String,
        author_id: String,
    },
    UserBanned {
        user_id: String,
        actor_id: String,
        actor_name: String,
    },
    UserUnbanned {
        user_id: String,
        actor_id: String,
        actor_name: String,
    },
    /// The site's moderation settings were replaced.
    SettingsChanged { actor_id: String },
    /// An article was registered (or its registration changed) by an admin.
    ArticleRegistered { article_id: String },
    /// The learned spam model changed: decisions' pending changes were folded into it
    /// (`spam::fold_pending`, right after each decision's COMMIT), or it was rebuilt.
    SpamModelChanged,
    /// A moderator claimed a pending comment, or let it go (`claimed: false`).
    ClaimChanged {
        comment_id: String,
        moderator_id: String,
        claimed: bool,
    },
    /// A user's data was erased (`DELETE /me/data`, or an admin's
    /// `DELETE /admin/users/{user_id}/data`; `actor_id` is then the admin's). Recorded
    /// after the erasure's own events (ratings, votes, comments, the spam model).
    UserDataErased { user_id: String, actor_id: String },
}

impl Event {
    /// The `type` tag, also stored in `events.kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::RatingChanged { .. } => "rating_changed",
            Event::CommentCreated { .. } => "comment_created",
            Event::CommentStatusChanged { .. } => "comment_status_changed",
            Event::CommentEdited { .. } => "comment_edited",
            Event::CommentFlagged { .. } => "comment_flagged",
            Event::VoteChanged { .. } => "vote_changed",
            Event::ReviewWritten { .. } => "review_written",
            Event::UserBanned { .. } => "user_banned",
            Event::UserUnbanned { .. } => "user_unbanned",
            Event::SettingsChanged { .. } => "settings_changed",
            Event::ArticleRegistered { .. } => "article_registered",
            Event::SpamModelChanged => "spam_model_changed",
            Event::ClaimChanged { .. } => "claim_changed",
            Event::UserDataErased { .. } => "user_data_erased",
        }
    }

    /// The article the event is about, if any (`events.article_id`).
    pub fn article_id(&self) -> Option<&str> {
        match self {
            Event::RatingChanged { article_id, .. }
            | Event::CommentCreated { article_id, .. }
            | Event::CommentStatusChanged { article_id, .. }
            | Event::CommentEdited { article_id, .. }
            | Event::CommentFlagged { article_id, .. }
            | Event::VoteChanged { article_id, .. }
            | Event::ReviewWritten { article_id, .. }
            | Event::ArticleRegistered { article_id } => Some(article_id),
            _ => None,
        }
    }

    /// The comment the event is about, if any (`events.comment_id`).
    pub fn comment_id(&self) -> Option<&str> {
        match self {
            Event::CommentCreated { comment_id, .. }
            | Event::CommentStatusChanged { comment_id, .. }
            | Event::CommentEdited { comment_id, .. }
            | Event::CommentFlagged { comment_id, .. }
            | Event::VoteChanged { comment_id, .. }
            | Event::ReviewWritten { comment_id, .. }
            | Event::ClaimChanged { comment_id, .. } => Some(comment_id),
            _ => None,
        }
    }

    fn row(&self, at: DateTime<Utc>) -> Result<event::ActiveModel, ApiError> {
        let data = serde_json::to_string(self)
            .map_err(|e| ApiError::Internal(format!("an event did not serialize: {e}")))?;
        Ok(event::ActiveModel {
            id: NotSet,
            kind: Set(self.kind().to_owned()),
            article_id: Set(self.article_id().map(str::to_owned)),
            comment_id: Set(self.comment_id().map(str::to_owned)),
            data: Set(data),
            created_at: Set(at),
        })
    }
}

/// An event as committed: its outbox id (see the module doc on their order) and time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredEvent {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub event: Event,
}

impl TryFrom<event::Model> for StoredEvent {
    type Error = ApiError;
    fn try_from(m: event::Model) -> Result<Self, ApiError> {
        let event = serde_json::from_str(&m.data).map_err(|e| {
            ApiError::Internal(format!("outbox event {} does not parse: {e}", m.id))
        })?;
        Ok(StoredEvent {
            id: m.id,
            created_at: m.created_at,
            event,
        })
    }
}

/// Writes `events` to the outbox in
/// the calling transaction, and returns them as stored.
pub(crate) async fn insert(
    conn: &impl ConnectionTrait,
    events: Vec<Event>,
) -> Result<Vec<Arc<StoredEvent>>, ApiError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let at = crate::service::now();
    let rows = events
        .iter()
        .map(|e| e.row(at))
        .collect::<Result<Vec<_>, _>>()?;
    let stored = event::Entity::insert_many(rows)
        .exec_with_returning(conn)
        .await?;
    let mut out: Vec<Arc<StoredEvent>> = stored
        .into_iter()
        .zip(events)
        .map(|(m, event)| {
            Arc::new(StoredEvent {
                id: m.id,
                created_at: m.created_at,
                event,
            })
        })
        .collect();
    out.sort_by_key(|e| e.id);
    Ok(out)
}

/// The committed events after id `after`, oldest first, at most `limit`.
pub async fn read_after(
    conn: &impl ConnectionTrait,
    after: i64,
    limit: u64,
) -> Result<Vec<StoredEvent>, ApiError> {
    event::Entity::find()
        .filter(event::Column::Id.gt(after))
        .order_by_asc(event::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(StoredEvent::try_from)
        .collect()
}

/// The highest id in the outbox (0 when empty).
pub async fn last_id(conn: &impl ConnectionTrait) -> Result<i64, ApiError> {
    let last = event::Entity::find()
        .select_only()
        .column_as(event::Column::Id.max(), "max")
        .into_tuple::<Option<i64>>()
        .one(conn)
        .await?;
    Ok(last.flatten().unwrap_or(0))
}

type Listener = Box<dyn Fn(&StoredEvent) + Send + Sync>;

/// Where committed events are published in this process (see the module doc).
pub struct EventBus {
    sender: broadcast::Sender<Arc<StoredEvent>>,
    listeners: RwLock<Vec<Listener>>,
    seen: Mutex<Seen>,
    /// A webhook was created here (it wakes this instance's webhook sender, which
    /// without webhooks only polls).
    webhook_created: tokio::sync::Notify,
}

/// What this instance has published: everything up to `cursor`, and `above` it.
#[derive(Default)]
struct Seen {
    /// Every event up to this id has been published here (or its id was never used).
    cursor: i64,
    /// Ids above `cursor` published here (at this instance's commits, or read).
    above: BTreeSet<i64>,
    /// When the first missing id after `cursor` was noticed.
    gap_since: Option<Instant>,
}

/// How long a missing id below a published one is waited for before the cursor moves
/// past it. An id is taken just before its transaction's COMMIT, so a transaction with
/// a lower id commits at most a moment after one with a higher id; an id that is still
/// missing after this long belongs to a transaction that rolled back.
pub const GAP_GRACE: Duration = Duration::from_secs(10);

impl Seen {
    /// Takes `events` (ids not published here yet) and moves the cursor.
    fn take<E: std::ops::Deref<Target = StoredEvent>>(&mut self, events: Vec<E>) -> Vec<E> {
        let cursor = self.cursor;
        let fresh: Vec<E> = events
            .into_iter()
            .filter(|e| e.id > cursor && !self.above.contains(&e.id))
            .collect();
        self.above.extend(fresh.iter().map(|e| e.id));
        self.advance();
        fresh
    }

    fn advance(&mut self) {
        loop {
            while self.above.remove(&(self.cursor + 1)) {
                self.cursor += 1;
                self.gap_since = None;
            }
            let Some(&next) = self.above.first() else {
                self.gap_since = None;
                return;
            };
            let since = *self.gap_since.get_or_insert_with(Instant::now);
            if since.elapsed() < GAP_GRACE {
                return;
            }
            // Ids never committed (rolled back): nothing to wait for.
            self.cursor = next - 1;
            self.gap_since = None;
        }
    }
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            sender: broadcast::channel(BUS_CAPACITY).0,
            listeners: RwLock::default(),
            seen: Mutex::default(),
            webhook_created: tokio::sync::Notify::new(),
        }
    }
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("cursor", &self.cursor())
            .field("subscribers", &self.sender.receiver_count())
            .finish()
    }
}

impl EventBus {
    /// Every committed event from now on (this instance's and, through [`pump`], the
    /// other instances'). A receiver that lags more than [`BUS_CAPACITY`] behind is told
    /// how many it missed; [`read_after`] has them.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.sender.subscribe()
    }

    /// Runs `listener` on every event, inline, before the write that committed it is
    /// answered (for caches: keep it short, never block).
    pub fn on_event(&self, listener: impl Fn(&StoredEvent) + Send + Sync + 'static) {
        self.listeners
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(listener));
    }

    /// Tells this instance's webhook sender that a webhook was just created (a wake-up
    /// that waits for the sender if it is busy: none is lost).
    pub fn webhook_created(&self) {
        self.webhook_created.notify_one();
    }

    /// Until [`webhook_created`](Self::webhook_created) is called (or was, since the
    /// last wait).
    pub async fn until_webhook_created(&self) {
        self.webhook_created.notified().await;
    }

    /// The id up to which the pump has published every event.
    pub fn cursor(&self) -> i64 {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).cursor
    }

    fn deliver(&self, events: &[Arc<StoredEvent>]) {
        {
            let listeners = self.listeners.read().unwrap_or_else(|e| e.into_inner());
            for e in events {
                for l in listeners.iter() {
                    l(e);
                }
            }
        }
        for e in events {
            // No subscriber: nothing to tell.
            let _ = self.sender.send(e.clone());
        }
    }

    /// Publishes what this instance just committed.
    pub(crate) fn publish_committed(&self, events: Vec<Arc<StoredEvent>>) {
        if events.is_empty() {
            return;
        }
        // The pump may have read (and published) them already, from our own NOTIFY.
        let events = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(events);
        self.deliver(&events);
    }

    /// Publishes what the pump read from the outbox (oldest first), less what was
    /// published here already, and moves the cursor.
    pub(super) fn publish_read(&self, events: Vec<StoredEvent>) {
        let events = events.into_iter().map(Arc::new).collect();
        let fresh = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(events);
        self.deliver(&fresh);
    }

    /// Starts the cursor at `id` (the outbox's last id when the pump starts).
    pub(super) fn start_at(&self, id: i64) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.cursor = seen.cursor.max(id);
        let cursor = seen.cursor;
        seen.above.retain(|l| *l > cursor);
        seen.advance();
    }
}

/// A comment was stored as `c` (new).
pub fn comment_created(c: &crate::entity::comment::Model) -> Event {
    Event::CommentCreated {
        comment_id: c.id.clone(),
        article_id: c.article_id.clone(),
        parent_id: c.parent_id.clone(),
        author_id: c.author_id.clone(),
        kind: c.kind.clone(),
        status: c.status.clone(),
    }
}

/// A comment in status `from` was rewritten by its author and is now `c`.
pub fn comment_edited(c: &crate::entity::comment::Model, from: &str) -> Event {
    Event::CommentEdited {
        comment_id: c.id.clone(),
        article_id: c.article_id.clone(),
        status: c.status.clone(),
        from: Some(from.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(id: i64) -> Arc<StoredEvent> {
        Arc::new(StoredEvent {
            id,
            created_at: Utc::now(),
            event: Event::SpamModelChanged,
        })
    }

    fn ids(events: &[Arc<StoredEvent>]) -> Vec<i64> {
        events.iter().map(|e| e.id).collect()
    }

    #[test]
    fn each_id_is_taken_once_and_the_cursor_waits_at_a_gap() {
        let mut seen = Seen::default();
        assert_eq!(ids(&seen.take(vec![at(1), at(3)])), [1, 3]);
        assert_eq!(seen.cursor, 1, "2 may still be committing");
        assert_eq!(ids(&seen.take(vec![at(3)])), Vec::<i64>::new(), "3 again");
        assert_eq!(ids(&seen.take(vec![at(2), at(3), at(4)])), [2, 4]);
        assert_eq!(seen.cursor, 4);
        assert!(seen.above.is_empty());
    }

    #[test]
    fn a_gap_older_than_the_grace_is_skipped() {
        let mut seen = Seen::default();
        seen.take(vec![at(2)]);
        assert_eq!(seen.cursor, 0);
        seen.gap_since = Instant::now().checked_sub(GAP_GRACE + Duration::from_secs(1));
        seen.advance();
        assert_eq!(seen.cursor, 2);
        assert!(seen.gap_since.is_none());
    }
}
