//! Sending webhooks (issue 22). Each instance runs [`run`], a loop of **rounds**; the
//! deliveries survive restarts and the work is shared between instances.
//!
//! A round:
//!
//! 1. **Prepare** (reads only, no write lock): the committed events after the cursor
//!    kept in `webhook_cursor` are read from the `events` outbox (up to
//!    `DISPATCH_BATCH`: under load a round covers everything queued since the last
//!    one), mapped to webhook event types, and their payloads built (the moderation
//!    items of all their comments in a few reads). Nothing, when another instance
//!    holds the **dispatch lease** (kept on the cursor row): only the holder turns
//!    events into deliveries, so each event is sent by one instance.
//! 2. **Send** the fresh deliveries, if this instance holds the dispatch lease with
//!    room left (`LEASE_ROOM`), before anything is written: POSTed signed,
//!    `SEND_CONCURRENCY` at a time; the deliveries of one comment to one webhook one
//!    after another in commit order (a failure stops the rest, which wait for it), so
//!    one webhook hears of a comment in order; none of a comment that still has an
//!    earlier delivery pending (a retry) to that webhook.
//! 3. **One write**, a job of the group commit (`Db::write`: alone when idle, under
//!    load in the requests' transaction, sharing their COMMIT instead of taking
//!    SQLite's one writer from them): the outcomes of the last round's retries are
//!    recorded (the delivered ones in one statement); then, under a singleton lock
//!    (`singleton::try_lock`) and only if the cursor is still where step 1 read it, the
//!    dispatch lease is taken or renewed (unless another instance holds it) and each
//!    fresh delivery is inserted **once, with its first attempt's outcome**: those
//!    `delivered` together, one **batch row** a webhook listing them (without their
//!    bodies, which nobody sends again); the others (`pending` with their next
//!    attempt) a row each; and the cursor moved. The rows are built before the write
//!    (their common columns bound once: see [`Fresh`]), so the batch the job joins
//!    waits only for the statements. A round that did not hold the lease only takes
//!    it: the next round, at once, sends. A crash after sending and before the write
//!    loses nothing: the cursor has not moved, and the next holder (after the lease,
//!    15 s) sends those events again (at least once). Last, due deliveries nobody
//!    holds (retries, what a crashed or other instance left) are claimed (`FOR UPDATE
//!    SKIP LOCKED` on PostgreSQL, a lease in `claimed_until` on both), up to
//!    `CLAIM_BATCH`, and sent after the write like the fresh ones; their outcomes are
//!    recorded by the next round's write. An attempt is `delivered` (2xx) or gets its
//!    next attempt (exponential back-off from `TALLY_WEBHOOK_RETRY_BASE_MS`, 1 s, up
//!    to 1 h) until 24 hours have passed, then `failed`. An attempt is started only
//!    while its lease has room for it; one not started stays `pending`.
//!
//! Rounds run back to back while there is work (under load spaced `LINGER` apart, so
//! each covers more events: see [`BUSY_ROUND`]), wake on the in-process event bus (new
//! commits here, or from other instances through it) and otherwise poll, so a webhook
//! goes out well within a second.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use sea_orm::{
    sea_query::{Expr, ExprTrait},
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, FromQueryResult,
    QueryFilter, QuerySelect, Statement, Value,
};
use serde_json::{json, Value as Json};

use super::{
    webhooks::subscribed,
    write::{Db, Route},
};
use crate::{
    domain::ArticleId,
    entity::{comment, webhook, webhook_cursor, webhook_delivery},
    error::ApiError,
    outbound::{self, Outbound},
};

/// Events turned into deliveries per round (at most).
const DISPATCH_BATCH: u64 = 500;
/// Deliveries claimed per round besides the fresh ones (retries, leftovers).
const CLAIM_BATCH: u64 = 64;
/// Attempts in flight at once per instance (the sends share the cores with the
/// requests).
const SEND_CONCURRENCY: usize = 16;
/// How long a claim holds a delivery: longer than an attempt may take.
const LEASE: Duration = Duration::from_secs(15);
/// An attempt starts only while this much of its lease is left (it may take
/// `ATTEMPT_TIMEOUT`; its outcome is recorded by the next round).
const LEASE_ROOM: Duration = Duration::from_secs(12);
/// A round that found at least this many new events (and sent some of them) means
/// events are coming in fast: unless it left work behind (a full `DISPATCH_BATCH` or
/// `CLAIM_BATCH`), the next round starts `LINGER` after it did, and covers what
/// committed meanwhile in one go. Fewer, larger rounds cost the server less per
/// delivery (the reads, the write and the wake-ups of a round are shared by more of
/// them), which the requests feel under load; a delivery waits at most `LINGER`
/// longer. A quiet site's rounds (an event or two) follow each other at once.
const BUSY_ROUND: usize = 4;
const LINGER: Duration = Duration::from_millis(200);
/// Idle polling, for work made by other instances (or retries coming due).
const POLL: Duration = Duration::from_millis(500);
/// The longest wait between attempts, and how long a delivery is tried.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
const GIVE_UP_AFTER: chrono::Duration = chrono::Duration::hours(24);
/// An outbox id left behind a later one is waited for this long (a transaction that
/// took its id and has not committed yet) before the cursor moves past it.
const GAP_WAIT: chrono::Duration = chrono::Duration::seconds(3);

/// One committed event as the outbox stores it.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub id: i64,
    pub kind: String,
    pub article_id: Option<String>,
    pub comment_id: Option<String>,
    pub data: Json,
    pub created_at: DateTime<Utc>,
}

/// The webhook events one outbox event stands for: `(type, extra data)`.
fn webhook_events(e: &OutboxEvent) -> Vec<(&'static str, Json)> {
    let str_of = |k: &str| e.data.get(k).and_then(Json::as_str).map(str::to_owned);
    match e.kind.as_str() {
        "comment_created" => {
            let mut out = vec![("comment.created", json!({}))];
            if str_of("status").as_deref() == Some("approved") {
                out.push(("comment.published", json!({})));
            }
            out
        }
        "comment_status_changed" => {
            let (from, to) = (str_of("from"), str_of("to"));
            let actor = json!({
                "id": str_of("actor_id").unwrap_or_else(|| "system".into()),
                "name": str_of("actor_name").unwrap_or_else(|| "system".into()),
            });
            let mut out = vec![(
                "comment.status_changed",
                json!({ "from": from, "to": to, "actor": actor }),
            )];
            if to.as_deref() == Some("approved") && from.as_deref() != Some("approved") {
                out.push(("comment.published", json!({})));
            }
            out
        }
        // An edit is judged again by the moderation rules: one that moves the comment
        // is a status change by the system, and one into `approved` publishes it.
        "comment_edited" => {
            let (from, to) = (str_of("from"), str_of("status"));
            if from.is_none() || from == to {
                return vec![];
            }
            let actor = json!({ "id": "system", "name": "system" });
            let mut out = vec![(
                "comment.status_changed",
                json!({ "from": from, "to": to, "actor": actor }),
            )];
            if to.as_deref() == Some("approved") {
                out.push(("comment.published", json!({})));
            }
            out
        }
        "comment_flagged" => vec![("comment.flagged", json!({}))],
        "rating_changed" => vec![("rating.changed", json!({}))],
        _ => vec![],
    }
}

/// Reads the outbox after `after`, oldest first.
async fn read_events(
    conn: &impl ConnectionTrait,
    after: i64,
    limit: u64,
) -> Result<Vec<OutboxEvent>, ApiError> {
    #[derive(FromQueryResult)]
    struct Row {
        id: i64,
        kind: String,
        article_id: Option<String>,
        comment_id: Option<String>,
        data: String,
        created_at: DateTime<Utc>,
    }
    let backend = conn.get_database_backend();
    let sql = placeholders(
        backend,
        "SELECT id, kind, article_id, comment_id, data, created_at FROM events \
         WHERE id > ? ORDER BY id LIMIT ?",
    );
    let rows = Row::find_by_statement(Statement::from_sql_and_values(
        backend,
        sql,
        [after.into(), (limit as i64).into()],
    ))
    .all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| OutboxEvent {
            id: r.id,
            kind: r.kind,
            article_id: r.article_id,
            comment_id: r.comment_id,
            data: serde_json::from_str(&r.data).unwrap_or(Json::Null),
            created_at: r.created_at,
        })
        .collect())
}

/// `?` placeholders as the backend wants them (`$1`, `$2`, … on PostgreSQL).
fn placeholders(backend: DbBackend, sql: &str) -> String {
    if backend != DbBackend::Postgres {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for ch in sql.chars() {
        if ch == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(ch);
        }
    }
    out
}

/// Events read and their deliveries built, before the write transaction.
struct Prepared {
    /// The cursor the events follow (the write transaction checks it has not moved).
    cursor: i64,
    /// The last event covered: the cursor's next position.
    last: i64,
    /// The deliveries, in event order; `id` is the position here (the row's own id is
    /// given when it is inserted).
    rows: Vec<webhook_delivery::Model>,
    /// `(webhook, comment)` pairs with an earlier delivery still pending: their fresh
    /// deliveries wait for it (not sent, inserted `pending`).
    blocked: HashSet<(String, String)>,
    /// How many events the deliveries come from.
    events: usize,
    /// Whether the read stopped at `DISPATCH_BATCH` (more events may be waiting).
    full: bool,
    /// When the deliveries were made.
    created: DateTime<Utc>,
}

/// Reads the next committed events and builds their deliveries (no write lock);
/// `None` when there is nothing new. `finishing`: deliveries this round's transaction
/// takes out of `pending` before it inserts (they block nothing).
async fn prepare(
    db: &Db,
    hooks: &[webhook::Model],
    finishing: &HashSet<i64>,
    me: &str,
) -> Result<Option<Prepared>, ApiError> {
    let conn = &db.conn;
    let now = super::now();
    let Some(row) = webhook_cursor::Entity::find_by_id(1).one(conn).await? else {
        return Ok(None);
    };
    // Another instance holds the dispatch lease: the events are its to send.
    if row.holder.as_deref().is_some_and(|h| h != me) && row.held_until.is_some_and(|t| t >= now) {
        return Ok(None);
    }
    let cursor = row.last_event_id;
    // Most idle rounds find nothing new.
    if super::write::events::last_id(conn).await? <= cursor {
        return Ok(None);
    }
    let events = read_events(conn, cursor, DISPATCH_BATCH).await?;
    let full = events.len() as u64 >= DISPATCH_BATCH;
    // Stop at a gap younger than `GAP_WAIT`: its transaction may still commit.
    let mut expected = cursor + 1;
    let mut usable = 0;
    for e in &events {
        if e.id != expected && now - e.created_at < GAP_WAIT {
            break;
        }
        expected = e.id + 1;
        usable += 1;
    }
    let events = &events[..usable];
    let Some(last) = events.last().map(|e| e.id) else {
        return Ok(None);
    };
    // The comments' moderation items, as they stand now, in a few reads for all.
    let mut ids: Vec<&str> = events
        .iter()
        .filter_map(|e| e.comment_id.as_deref())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut items: HashMap<String, Json> = HashMap::new();
    for chunk in ids.chunks(500) {
        let comments = comment::Entity::find()
            .filter(comment::Column::Id.is_in(chunk.iter().copied()))
            .all(conn)
            .await?;
        for item in super::external::screen::items_for(conn, comments).await? {
            let id = item.comment.id.clone();
            items.insert(id, serde_json::to_value(item).unwrap_or(Json::Null));
        }
    }
    let mut aggregates: HashMap<String, Json> = HashMap::new();
    let mut rows = vec![];
    for e in events {
        for (kind, extra) in webhook_events(e) {
            let targets: Vec<&webhook::Model> = subscribed(hooks, kind).collect();
            if targets.is_empty() {
                continue;
            }
            let data = match (kind, &e.comment_id) {
                ("rating.changed", _) => {
                    let Some(aid) = e
                        .article_id
                        .as_deref()
                        .and_then(|a| ArticleId::parse(a).ok())
                    else {
                        continue;
                    };
                    if !aggregates.contains_key(aid.as_str()) {
                        let agg = super::ratings::aggregate(conn, &aid).await?;
                        let view = super::ratings::AggregateView::new(aid.as_str(), agg);
                        aggregates.insert(
                            aid.as_str().to_owned(),
                            serde_json::to_value(view).unwrap_or(Json::Null),
                        );
                    }
                    json!({
                        "article_id": aid.as_str(),
                        "rating": aggregates[aid.as_str()],
                    })
                }
                (_, Some(cid)) => {
                    // Purged since: nothing left to tell.
                    let Some(item) = items.get(cid) else { continue };
                    let mut data = json!({ "item": item });
                    if let (Some(obj), Some(extra)) = (data.as_object_mut(), extra.as_object()) {
                        for (k, v) in extra {
                            obj.insert(k.clone(), v.clone());
                        }
                    }
                    data
                }
                (_, None) => continue,
            };
            let event_id = format!("{}-{kind}", e.id);
            let body = json!({
                "id": event_id,
                "type": kind,
                "created_at": e.created_at,
                "data": data,
            })
            .to_string();
            for h in targets {
                rows.push(webhook_delivery::Model {
                    id: rows.len() as i64,
                    webhook_id: h.id.clone(),
                    event_id: event_id.clone(),
                    event_type: kind.to_owned(),
                    comment_id: e.comment_id.clone(),
                    payload: body.clone(),
                    status: "pending".into(),
                    attempts: 0,
                    last_status_code: None,
                    last_error: None,
                    next_attempt_at: now,
                    delivered_at: None,
                    claimed_until: None,
                    created_at: now,
                    items: None,
                });
            }
        }
    }
    // Which of these comments still have a delivery pending (a retry, or one another
    // instance holds). Read before the write lock: between this read and the insert
    // only the dispatch (which the cursor check excludes) adds pending deliveries, so
    // the answer can only be too careful, never too bold.
    let mut blocked = HashSet::new();
    let hook_ids: Vec<&str> = hooks.iter().map(|h| h.id.as_str()).collect();
    for chunk in ids.chunks(500) {
        let pending: Vec<(i64, String, Option<String>)> = webhook_delivery::Entity::find()
            .select_only()
            .column(webhook_delivery::Column::Id)
            .column(webhook_delivery::Column::WebhookId)
            .column(webhook_delivery::Column::CommentId)
            .filter(webhook_delivery::Column::WebhookId.is_in(hook_ids.iter().copied()))
            .filter(webhook_delivery::Column::CommentId.is_in(chunk.iter().copied()))
            // A literal, as in the partial index's predicate (a bound value would not
            // let SQLite use it).
            .filter(Expr::cust("status = 'pending'"))
            .into_tuple()
            .all(conn)
            .await?;
        for (id, hook, comment) in pending {
            if let (false, Some(comment)) = (finishing.contains(&id), comment) {
                blocked.insert((hook, comment));
            }
        }
    }
    Ok(Some(Prepared {
        cursor,
        last,
        rows,
        blocked,
        events: events.len(),
        full,
        created: now,
    }))
}

impl Prepared {
    /// The deliveries to send now: all but those waiting for an earlier one.
    fn sendable(&self) -> Vec<webhook_delivery::Model> {
        self.rows
            .iter()
            .filter(|d| match &d.comment_id {
                Some(c) => !self.blocked.contains(&(d.webhook_id.clone(), c.clone())),
                None => true,
            })
            .cloned()
            .collect()
    }
}

/// A fresh delivery as it is written: with its first attempt's outcome (`at`: when
/// the attempts were over), or `pending` and due now when it was not attempted. A
/// delivered one keeps no body: only a pending one is sent again.
fn written(
    d: &webhook_delivery::Model,
    outcome: Option<&Outcome>,
    at: DateTime<Utc>,
) -> webhook_delivery::Model {
    let mut row = webhook_delivery::Model {
        status: "pending".into(),
        attempts: 0,
        last_status_code: None,
        last_error: None,
        delivered_at: None,
        claimed_until: None,
        ..d.clone()
    };
    match outcome {
        Some(Outcome::Delivered { code, .. }) => {
            row.payload = String::new();
            row.status = "delivered".into();
            row.attempts = 1;
            row.last_status_code = Some(*code);
            row.delivered_at = Some(at);
        }
        Some(Outcome::Failed {
            attempts,
            code,
            error,
            next,
            ..
        }) => {
            row.attempts = *attempts;
            row.last_status_code = *code;
            row.last_error = Some(error.clone());
            match next {
                Some(next) => row.next_attempt_at = *next,
                None => row.status = "failed".into(),
            }
        }
        Some(Outcome::Released { .. }) | None => {}
    }
    row
}

/// A round's fresh deliveries in a statement or two of one text whatever their number
/// (prepared once per connection, one round trip each), each reading one JSON array
/// (PostgreSQL's `json_array_elements` / `json_to_recordset`, SQLite's `json_each`).
/// The delivered ones, nearly all of them under load, as one **batch row** a webhook:
/// `[webhook, first event id, its type, its status code, items]`, `items` being all of
/// them as `[event id, type, status code]` (the row's other columns are the same for
/// the whole round: bound once); the others (pending, failed) as whole [`written`]
/// rows, one a delivery.
const PG_INSERT_DELIVERED: &str = "\
    INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, payload, status, \
    attempts, last_status_code, next_attempt_at, delivered_at, created_at, items) \
    SELECT r ->> 0, r ->> 1, r ->> 2, '', 'delivered', 1, (r ->> 3)::int, $2, $3, $2, r ->> 4 \
    FROM json_array_elements($1::json) AS r \
    ON CONFLICT (webhook_id, event_id) DO NOTHING";
/// SQLite's: `WHERE true` tells its parser the `ON CONFLICT` is the upsert's.
const SQLITE_INSERT_DELIVERED: &str = "\
    INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, payload, status, \
    attempts, last_status_code, next_attempt_at, delivered_at, created_at, items) \
    SELECT value ->> 0, value ->> 1, value ->> 2, '', 'delivered', 1, value ->> 3, ?2, ?3, \
    ?2, value ->> 4 FROM json_each(?1) WHERE true \
    ON CONFLICT (webhook_id, event_id) DO NOTHING";
const PG_INSERT: &str = "\
    INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, comment_id, payload, \
    status, attempts, last_status_code, last_error, next_attempt_at, delivered_at, created_at) \
    SELECT r.webhook_id, r.event_id, r.event_type, r.comment_id, r.payload, r.status, \
    r.attempts, r.last_status_code, r.last_error, r.next_attempt_at, r.delivered_at, \
    r.created_at FROM json_to_recordset($1::json) AS r(webhook_id text, event_id text, \
    event_type text, comment_id text, payload text, status text, attempts int, \
    last_status_code int, last_error text, next_attempt_at timestamptz, \
    delivered_at timestamptz, created_at timestamptz) \
    ON CONFLICT (webhook_id, event_id) DO NOTHING";
const SQLITE_INSERT: &str = "\
    INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, comment_id, payload, \
    status, attempts, last_status_code, last_error, next_attempt_at, delivered_at, created_at) \
    SELECT value ->> 'webhook_id', value ->> 'event_id', value ->> 'event_type', \
    value ->> 'comment_id', value ->> 'payload', value ->> 'status', value ->> 'attempts', \
    value ->> 'last_status_code', value ->> 'last_error', value ->> 'next_attempt_at', \
    value ->> 'delivered_at', value ->> 'created_at' FROM json_each(?) WHERE true \
    ON CONFLICT (webhook_id, event_id) DO NOTHING";

/// A round's fresh deliveries, each with the outcome of its first attempt, as the
/// insert statements read them: built before the write transaction, so that the
/// batch the round's write joins does not wait while they are.
struct Fresh {
    /// The delivered ones' batch rows (a JSON array), if any.
    delivered: Option<String>,
    /// The others' whole rows (a JSON array), if any.
    others: Option<String>,
    /// When the deliveries were made (their `created_at`, and first `next_attempt_at`).
    created: DateTime<Utc>,
    /// When their attempts were over (the delivered ones' `delivered_at`).
    attempted: DateTime<Utc>,
}

impl Fresh {
    /// `outcomes`: of the first attempts, by position in `p.rows`; `attempted`: when
    /// they were over.
    fn new(p: &Prepared, outcomes: &HashMap<i64, Outcome>, attempted: DateTime<Utc>) -> Fresh {
        // Times as sqlx writes them on SQLite, which compares them as text;
        // PostgreSQL reads the same text as `timestamptz`.
        let time = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false);
        // The delivered ones by webhook, in event order: a batch row each.
        let mut delivered: Vec<(&str, Vec<Json>)> = vec![];
        let mut others = vec![];
        for d in &p.rows {
            let r = written(d, outcomes.get(&d.id), attempted);
            if r.status == "delivered" {
                // The columns `written` gave it besides these are the same for every
                // delivered row: bound once.
                let item = json!([r.event_id, r.event_type, r.last_status_code]);
                match delivered.iter_mut().find(|(h, _)| *h == d.webhook_id) {
                    Some((_, items)) => items.push(item),
                    None => delivered.push((&d.webhook_id, vec![item])),
                }
                continue;
            }
            others.push(json!({
                "webhook_id": r.webhook_id, "event_id": r.event_id,
                "event_type": r.event_type, "comment_id": r.comment_id,
                "payload": r.payload, "status": r.status, "attempts": r.attempts,
                "last_status_code": r.last_status_code, "last_error": r.last_error,
                "next_attempt_at": time(r.next_attempt_at),
                "delivered_at": r.delivered_at.map(time),
                "created_at": time(r.created_at),
            }));
        }
        let delivered = delivered
            .into_iter()
            .map(|(hook, items)| {
                let first = &items[0];
                json!([hook, first[0], first[1], first[2], items])
            })
            .collect();
        let text = |rows: Vec<Json>| (!rows.is_empty()).then(|| Json::Array(rows).to_string());
        Fresh {
            delivered: text(delivered),
            others: text(others),
            created: p.created,
            attempted,
        }
    }
}

/// Inserts a round's fresh deliveries and moves the cursor to `last`, in `tx` (which
/// holds the dispatch lease and found the cursor unmoved). No conflict can arise (the
/// cursor was checked under the lease); should one, the row already there stands (a
/// batch row is not written when its first delivery is there already).
async fn insert(tx: &DatabaseTransaction, fresh: &Fresh, last: i64) -> Result<(), ApiError> {
    let backend = tx.get_database_backend();
    let pg = backend == DbBackend::Postgres;
    if let Some(rows) = &fresh.delivered {
        let sql = if pg {
            PG_INSERT_DELIVERED
        } else {
            SQLITE_INSERT_DELIVERED
        };
        let values: [Value; 3] = [
            rows.as_str().into(),
            fresh.created.into(),
            fresh.attempted.into(),
        ];
        tx.execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
    }
    if let Some(rows) = &fresh.others {
        let sql = if pg { PG_INSERT } else { SQLITE_INSERT };
        tx.execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [rows.as_str().into()],
        ))
        .await?;
    }
    webhook_cursor::Entity::update_many()
        .col_expr(webhook_cursor::Column::LastEventId, Expr::value(last))
        .filter(webhook_cursor::Column::Id.eq(1))
        .exec(tx)
        .await?;
    Ok(())
}

/// The claim: due pending deliveries nobody holds, none behind an earlier pending one
/// of the same comment to the same webhook, oldest first.
fn claimable_sql(backend: DbBackend, select: &str, tail: &str) -> String {
    placeholders(
        backend,
        &format!(
            "SELECT {select} FROM webhook_deliveries d \
             WHERE d.status = 'pending' AND d.next_attempt_at <= ? \
             AND (d.claimed_until IS NULL OR d.claimed_until < ?) \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e \
               WHERE e.webhook_id = d.webhook_id AND e.comment_id = d.comment_id \
               AND e.status = 'pending' AND e.id < d.id) \
             ORDER BY d.id {tail}"
        ),
    )
}

/// Whether any delivery is there to claim (a read without the write lock: usually
/// none is).
async fn any_claimable(db: &Db) -> Result<bool, ApiError> {
    let now = super::now();
    let backend = db.backend();
    let row = db
        .conn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            claimable_sql(backend, "d.id", "LIMIT 1"),
            [now.into(), now.into()],
        ))
        .await?;
    Ok(row.is_some())
}

/// Claims up to `CLAIM_BATCH` claimable deliveries until `lease`, in `tx`.
async fn claim(
    tx: &DatabaseTransaction,
    now: DateTime<Utc>,
    lease: DateTime<Utc>,
) -> Result<Vec<webhook_delivery::Model>, ApiError> {
    let backend = tx.get_database_backend();
    let lock = if backend == DbBackend::Postgres {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let inner = claimable_sql(backend, "d.id", &format!("LIMIT {CLAIM_BATCH}{lock}"));
    // The inner statement numbers its placeholders from 1: the lease goes last.
    let n = if backend == DbBackend::Postgres {
        "$3"
    } else {
        "?"
    };
    let sql = format!(
        "UPDATE webhook_deliveries SET claimed_until = {n} WHERE id IN ({inner}) RETURNING *"
    );
    let values: [Value; 3] = [now.into(), now.into(), lease.into()];
    Ok(webhook_delivery::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(backend, sql, values))
        .all(tx)
        .await?)
}

/// What became of a claimed delivery, recorded by the next round's transaction.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// Answered 2xx.
    Delivered { id: i64, code: i32 },
    /// Failed: tried again at `next`, or given up (`None`).
    Failed {
        id: i64,
        attempts: i32,
        code: Option<i32>,
        error: String,
        next: Option<DateTime<Utc>>,
    },
    /// Not attempted (an earlier delivery of its chain failed, or its lease had too
    /// little room left): the claim is let go.
    Released { id: i64 },
}

impl Outcome {
    fn id(&self) -> i64 {
        match self {
            Outcome::Delivered { id, .. }
            | Outcome::Failed { id, .. }
            | Outcome::Released { id } => *id,
        }
    }

    /// Whether it takes the delivery out of `pending`.
    fn finishes(&self) -> bool {
        matches!(
            self,
            Outcome::Delivered { .. } | Outcome::Failed { next: None, .. }
        )
    }
}

/// Records attempts' outcomes in `tx`: the delivered ones a statement per status
/// code (`delivered_at`: `at`, when the round's attempts were over), the others
/// one by one.
async fn record(
    tx: &DatabaseTransaction,
    outcomes: &[Outcome],
    at: DateTime<Utc>,
) -> Result<(), ApiError> {
    let mut delivered: HashMap<i32, Vec<i64>> = HashMap::new();
    for o in outcomes {
        match o {
            Outcome::Delivered { id, code } => delivered.entry(*code).or_default().push(*id),
            Outcome::Failed {
                id,
                attempts,
                code,
                error,
                next,
            } => {
                let mut update = webhook_delivery::ActiveModel {
                    id: Set(*id),
                    attempts: Set(*attempts),
                    claimed_until: Set(None),
                    last_status_code: Set(*code),
                    last_error: Set(Some(error.clone())),
                    ..Default::default()
                };
                match next {
                    Some(next) => update.next_attempt_at = Set(*next),
                    None => update.status = Set("failed".into()),
                }
                webhook_delivery::Entity::update_many()
                    .set(update)
                    .filter(webhook_delivery::Column::Id.eq(*id))
                    .exec(tx)
                    .await?;
            }
            Outcome::Released { id } => {
                webhook_delivery::Entity::update_many()
                    .col_expr(
                        webhook_delivery::Column::ClaimedUntil,
                        Expr::value(Option::<DateTime<Utc>>::None),
                    )
                    .filter(webhook_delivery::Column::Id.eq(*id))
                    .exec(tx)
                    .await?;
            }
        }
    }
    for (code, ids) in delivered {
        for chunk in ids.chunks(500) {
            webhook_delivery::Entity::update_many()
                .col_expr(webhook_delivery::Column::Status, Expr::value("delivered"))
                .col_expr(webhook_delivery::Column::Payload, Expr::value(""))
                .col_expr(
                    webhook_delivery::Column::Attempts,
                    Expr::col(webhook_delivery::Column::Attempts).add(1),
                )
                .col_expr(webhook_delivery::Column::LastStatusCode, Expr::value(code))
                .col_expr(
                    webhook_delivery::Column::LastError,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(webhook_delivery::Column::DeliveredAt, Expr::value(at))
                .col_expr(
                    webhook_delivery::Column::ClaimedUntil,
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
                .filter(webhook_delivery::Column::Id.is_in(chunk.iter().copied()))
                .exec(tx)
                .await?;
        }
    }
    Ok(())
}

/// The delay before attempt `attempts + 1`, after `attempts` failed ones.
pub fn backoff(base: Duration, attempts: i32) -> Duration {
    let shift = attempts.clamp(1, 30) - 1;
    base.saturating_mul(1u32 << shift).min(MAX_BACKOFF)
}

/// One attempt at a claimed delivery.
async fn attempt(
    outbound: &Outbound,
    retry_base: Duration,
    hook: &webhook::Model,
    d: &webhook_delivery::Model,
) -> Outcome {
    let t = Utc::now().timestamp();
    let body = d.payload.clone().into_bytes();
    let headers = [
        ("Tally-Event-Id", d.event_id.clone()),
        ("Tally-Event-Type", d.event_type.clone()),
        (
            "Tally-Signature",
            outbound::signature(&hook.secret, t, &body),
        ),
    ];
    let result = outbound
        .post(&hook.url, &headers, body, outbound::ATTEMPT_TIMEOUT)
        .await;
    let (code, error) = match result {
        Ok((status, _)) if (200..300).contains(&status) => {
            return Outcome::Delivered {
                id: d.id,
                code: i32::from(status),
            }
        }
        Ok((status, _)) => (Some(i32::from(status)), format!("answered {status}")),
        Err(e) => (None, e),
    };
    let attempts = d.attempts + 1;
    let next = super::now()
        + chrono::Duration::from_std(backoff(retry_base, attempts)).unwrap_or_default();
    Outcome::Failed {
        id: d.id,
        attempts,
        code,
        error,
        next: (next - d.created_at <= GIVE_UP_AFTER).then_some(next),
    }
}

/// Sends claimed deliveries (their lease runs out at `lease_end`): the deliveries of
/// one comment to one webhook in order, one after another, stopping at a failure;
/// `SEND_CONCURRENCY` such chains at once. Deliveries of a webhook deleted meanwhile
/// (gone with it) have no outcome.
async fn send_all(
    outbound: &Outbound,
    retry_base: Duration,
    hooks: &[webhook::Model],
    mut claimed: Vec<webhook_delivery::Model>,
    lease_end: Instant,
) -> Vec<Outcome> {
    claimed.sort_by_key(|d| d.id);
    let mut chains: Vec<Vec<webhook_delivery::Model>> = vec![];
    let mut chain_of: HashMap<(String, String), usize> = HashMap::new();
    for d in claimed {
        match d.comment_id.clone() {
            Some(c) => {
                let key = (d.webhook_id.clone(), c);
                match chain_of.get(&key) {
                    Some(&i) => chains[i].push(d),
                    None => {
                        chain_of.insert(key, chains.len());
                        chains.push(vec![d]);
                    }
                }
            }
            None => chains.push(vec![d]),
        }
    }
    let send_chain = |chain: Vec<webhook_delivery::Model>| async move {
        let mut out = vec![];
        let mut go_on = true;
        for d in chain {
            let Some(hook) = hooks.iter().find(|h| h.id == d.webhook_id) else {
                continue;
            };
            if !go_on || Instant::now() + LEASE_ROOM > lease_end {
                out.push(Outcome::Released { id: d.id });
                continue;
            }
            let o = attempt(outbound, retry_base, hook, &d).await;
            go_on = matches!(o, Outcome::Delivered { .. });
            out.push(o);
        }
        out
    };
    futures_util::stream::iter(chains.into_iter().map(send_chain))
        .buffer_unordered(SEND_CONCURRENCY)
        .flat_map(futures_util::stream::iter)
        .collect()
        .await
}

/// What a round writes (see [`round_write`]).
struct RoundWrite {
    /// The last round's outcomes (claimed leftovers), and when its attempts were over.
    outcomes: Vec<Outcome>,
    attempted_at: DateTime<Utc>,
    prepared: Option<Prepared>,
    /// The prepared deliveries with their first attempts' outcomes, when this instance
    /// held the dispatch lease (else the write only takes the lease: the next round
    /// sends).
    fresh: Option<Fresh>,
    /// Whether there are deliveries to claim besides the fresh ones.
    leftovers: bool,
    /// This instance, for the dispatch lease.
    me: String,
    now: DateTime<Utc>,
    lease: DateTime<Utc>,
}

/// What a round's write did.
struct Written {
    /// Leftover deliveries claimed, to send now.
    claimed: Vec<webhook_delivery::Model>,
    /// Whether it wrote anything (then the next round follows at once).
    wrote: bool,
    /// Whether this instance holds the dispatch lease until the write's `lease`.
    leased: bool,
}

/// A round's write, in `tx` (may run more than once: only the last run counts):
/// records the last round's outcomes; if the cursor is still where the prepared
/// events follow, takes or renews the dispatch lease (unless another instance holds
/// it) and inserts the deliveries sent under it, moving the cursor; claims leftovers.
async fn round_write(tx: &DatabaseTransaction, i: &RoundWrite) -> Result<Written, ApiError> {
    use webhook_cursor::Column as C;
    record(tx, &i.outcomes, i.attempted_at).await?;
    let mut leased = false;
    if let Some(p) = &i.prepared {
        if super::singleton::try_lock(tx, "webhook-dispatch").await? {
            let took = webhook_cursor::Entity::update_many()
                .col_expr(C::Holder, Expr::value(i.me.clone()))
                .col_expr(C::HeldUntil, Expr::value(i.lease))
                .filter(C::Id.eq(1))
                .filter(C::LastEventId.eq(p.cursor))
                .filter(
                    sea_orm::Condition::any()
                        .add(C::Holder.is_null())
                        .add(C::Holder.eq(i.me.as_str()))
                        .add(C::HeldUntil.lt(i.now)),
                )
                .exec(tx)
                .await?;
            // Not taken: the cursor moved (another instance dispatched these events;
            // the next round starts from where it left it) or its lease holds.
            leased = took.rows_affected == 1;
            if let (true, Some(fresh)) = (leased, &i.fresh) {
                insert(tx, fresh, p.last).await?;
            }
        }
    }
    let claimed = match i.leftovers {
        true => claim(tx, i.now, i.lease).await?,
        false => vec![],
    };
    let wrote = !i.outcomes.is_empty() || leased || !claimed.is_empty();
    Ok(Written {
        claimed,
        wrote,
        leased,
    })
}

/// One instance's webhook sender: rounds of dispatch, claim and send (module doc).
struct Sender {
    db: Db,
    outbound: Outbound,
    retry_base: Duration,
    /// This instance's name in the dispatch lease.
    me: String,
    /// Until when this instance holds the dispatch lease, as far as it knows.
    lease_end: Option<Instant>,
    /// The last round's outcomes, for the next round's transaction.
    outcomes: Vec<Outcome>,
    /// When the last round's attempts were over.
    attempted_at: DateTime<Utc>,
    /// Whether the last round found any webhook (without one, commits do not wake it).
    hooked: bool,
}

impl Sender {
    /// One round: `None` when it did nothing, else how long after its start the next
    /// one follows (`LINGER` after a busy round that left nothing behind, else at once).
    async fn round(&mut self) -> Result<Option<Duration>, ApiError> {
        let db = &self.db;
        let hooks = webhook::Entity::find().all(&db.conn).await?;
        self.hooked = !hooks.is_empty();
        let finishing: HashSet<i64> = self
            .outcomes
            .iter()
            .filter(|o| o.finishes())
            .map(Outcome::id)
            .collect();
        // Without webhooks there is nothing to dispatch (the first webhook moves the
        // cursor to the outbox's end when it is created: it hears of what comes after).
        let prepared = match hooks.is_empty() {
            true => None,
            false => prepare(db, &hooks, &finishing, &self.me).await?,
        };
        let leftovers = !hooks.is_empty() && any_claimable(db).await?;
        if prepared.is_none() && !leftovers && self.outcomes.is_empty() {
            return Ok(None);
        }
        let mut sending = 0;
        let events = prepared.as_ref().map_or(0, |p| p.events);
        let behind = prepared.as_ref().is_some_and(|p| p.full);
        // Under the dispatch lease (taken by an earlier round's write, with room left)
        // the fresh deliveries go out before they are written, so each is written
        // once, with its outcome. Without it this round's write takes the lease.
        // The rows are built here, not in the write: the batch it joins would wait.
        let fresh = match (&prepared, self.lease_end) {
            (Some(p), Some(end)) if Instant::now() + LEASE_ROOM <= end => {
                let sendable = p.sendable();
                sending = sendable.len();
                let outcomes =
                    send_all(&self.outbound, self.retry_base, &hooks, sendable, end).await;
                let outcomes = outcomes.into_iter().map(|o| (o.id(), o)).collect();
                Some(Fresh::new(p, &outcomes, super::now()))
            }
            _ => None,
        };
        let now = super::now();
        let input = RoundWrite {
            outcomes: std::mem::take(&mut self.outcomes),
            attempted_at: self.attempted_at,
            prepared,
            fresh,
            leftovers,
            me: self.me.clone(),
            now,
            lease: now + chrono::Duration::from_std(LEASE).unwrap_or_default(),
        };
        let lease_end = Instant::now() + LEASE;
        // A job of the group commit: under load it shares the requests' transaction
        // and COMMIT instead of taking the writer's turn from them. If it fails, the
        // outcomes are lost with it: their claims run out (the dispatch lease too) and
        // they are sent again.
        let Written {
            claimed,
            wrote,
            leased,
        } = db
            .write(Route::ANY, input, |w, i| Box::pin(round_write(w.tx(), i)))
            .await?;
        self.lease_end = leased.then_some(lease_end);
        if !wrote {
            return Ok(None);
        }
        let behind = behind || claimed.len() as u64 >= CLAIM_BATCH;
        if !claimed.is_empty() {
            self.outcomes =
                send_all(&self.outbound, self.retry_base, &hooks, claimed, lease_end).await;
            self.attempted_at = super::now();
        }
        Ok(Some(match events >= BUSY_ROUND && sending > 0 && !behind {
            true => LINGER,
            false => Duration::ZERO,
        }))
    }
}

/// The background task: rounds back to back while there is work (a busy one followed
/// `LINGER` after its start), then woken by the event bus (a commit here, or on
/// another instance through the bus's pump) while there are webhooks, else polling
/// every `POLL` and woken by a webhook created here.
pub async fn run(db: Db, outbound: Outbound, retry_base: Duration) {
    use tokio::sync::broadcast::error::TryRecvError;
    let mut bus = db.events().subscribe();
    let mut sender = Sender {
        db,
        outbound,
        retry_base,
        me: uuid::Uuid::now_v7().to_string(),
        lease_end: None,
        outcomes: vec![],
        attempted_at: super::now(),
        hooked: false,
    };
    loop {
        let started = tokio::time::Instant::now();
        match sender.round().await {
            Ok(Some(next)) => {
                tokio::time::sleep_until(started + next).await;
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "webhook round failed"),
        }
        // Sleep until the next commit (or the poll); what queued up meanwhile is
        // covered by the next round's read of the outbox. Without webhooks, commits do
        // not wake it: a webhook created here does (one created on another instance
        // is found by the poll, and hears of the events after its creation, the first
        // of them at most `POLL` late).
        if sender.hooked {
            let _ = tokio::time::timeout(POLL, bus.recv()).await;
        } else {
            let _ = tokio::time::timeout(POLL, sender.db.events().until_webhook_created()).await;
        }
        while matches!(bus.try_recv(), Ok(_) | Err(TryRecvError::Lagged(_))) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_up_to_an_hour() {
        let base = Duration::from_secs(1);
        assert_eq!(backoff(base, 1), Duration::from_secs(1));
        assert_eq!(backoff(base, 2), Duration::from_secs(2));
        assert_eq!(backoff(base, 5), Duration::from_secs(16));
        assert_eq!(backoff(base, 13), Duration::from_secs(3600));
        assert_eq!(backoff(base, 40), Duration::from_secs(3600));
    }

    #[test]
    fn a_comment_created_live_is_also_published() {
        let e = |kind: &str, data: Json| OutboxEvent {
            id: 1,
            kind: kind.into(),
            article_id: None,
            comment_id: Some("c".into()),
            data,
            created_at: Utc::now(),
        };
        let types = |e: OutboxEvent| -> Vec<&str> {
            webhook_events(&e).into_iter().map(|(t, _)| t).collect()
        };
        assert_eq!(
            types(e("comment_created", json!({"status": "approved"}))),
            ["comment.created", "comment.published"]
        );
        assert_eq!(
            types(e("comment_created", json!({"status": "pending"}))),
            ["comment.created"]
        );
        assert_eq!(
            types(e(
                "comment_status_changed",
                json!({"from": "pending", "to": "approved"})
            )),
            ["comment.status_changed", "comment.published"]
        );
        assert_eq!(
            types(e(
                "comment_status_changed",
                json!({"from": "approved", "to": "pending"})
            )),
            ["comment.status_changed"]
        );
        // An edit the rules let through publishes a pending comment; one that keeps
        // its status says nothing.
        assert_eq!(
            types(e(
                "comment_edited",
                json!({"from": "pending", "status": "approved"})
            )),
            ["comment.status_changed", "comment.published"]
        );
        assert_eq!(
            types(e(
                "comment_edited",
                json!({"from": "approved", "status": "pending"})
            )),
            ["comment.status_changed"]
        );
        assert!(types(e(
            "comment_edited",
            json!({"from": "approved", "status": "approved"})
        ))
        .is_empty());
        assert!(types(e("comment_edited", json!({"status": "approved"}))).is_empty());
    }
}
