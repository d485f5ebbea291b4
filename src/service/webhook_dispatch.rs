//! Sending webhooks (issue 22), in two steps that survive restarts and share the work
//! between instances:
//!
//! 1. **Dispatch.** Committed events are read from the `events` outbox after the
//!    cursor kept in `webhook_cursor`, mapped to webhook event types, and one delivery
//!    row is written per subscribed webhook — in one transaction with the cursor's
//!    move, under a singleton lock (`singleton::try_lock`), so each event is turned
//!    into deliveries exactly once, whichever instance does it, and a crash loses
//!    nothing (a rolled-back change wrote no event, so it sends nothing).
//! 2. **Send.** Due deliveries are claimed (`FOR UPDATE SKIP LOCKED` on PostgreSQL, a
//!    lease in `claimed_until` on both) by one instance, POSTed signed, and marked
//!    `delivered`, or given their next attempt (exponential back-off from
//!    `TALLY_WEBHOOK_RETRY_BASE_MS`, 1 s, up to 1 h) until 24 hours have passed, then
//!    `failed`. A delivery is not claimed while an earlier one of the same comment for
//!    the same webhook is still pending: one webhook hears of a comment in order.
//!
//! Both wake on the in-process event bus (new commits here, or from other instances
//! through it) and otherwise poll, so a webhook goes out well within a second.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Expr, OnConflict},
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, Statement,
    Value,
};
use serde_json::{json, Value as Json};

use super::{webhooks::subscribed, write::db::Db};
use crate::{
    domain::ArticleId,
    entity::{comment, webhook, webhook_cursor, webhook_delivery},
    error::ApiError,
    outbound::{self, Outbound},
};

/// Events turned into deliveries per transaction.
const DISPATCH_BATCH: u64 = 200;
/// Deliveries claimed at once by one instance.
const SEND_BATCH: u64 = 16;
/// How long a claim holds a delivery: longer than an attempt may take.
const LEASE: Duration = Duration::from_secs(15);
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

/// The `data` of a comment event: the moderation item as it stands now.
async fn comment_data(
    conn: &impl ConnectionTrait,
    comment_id: &str,
    extra: &Json,
) -> Result<Option<Json>, ApiError> {
    let Some(c) = comment::Entity::find_by_id(comment_id).one(conn).await? else {
        return Ok(None);
    };
    let item = super::external::screen::item_for(conn, c).await?;
    let mut data = json!({ "item": item });
    if let (Some(obj), Some(extra)) = (data.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            obj.insert(k.clone(), v.clone());
        }
    }
    Ok(Some(data))
}

/// Turns the next committed events into deliveries; how many events it consumed
/// (0: none waiting, or another instance is at it).
pub async fn dispatch_once(db: &Db) -> Result<usize, ApiError> {
    // Without webhooks there is nothing to do (the first webhook moves the cursor to
    // the outbox's end when it is created: it hears of what comes after).
    if webhook::Entity::find().one(&db.conn).await?.is_none() {
        return Ok(0);
    }
    // A look without the write lock first: most rounds find nothing new.
    let seen = webhook_cursor::Entity::find_by_id(1)
        .one(&db.conn)
        .await?
        .map_or(0, |c| c.last_event_id);
    if super::write::events::last_id(&db.conn).await? <= seen {
        return Ok(0);
    }
    let tx = db.begin_write().await?;
    if !super::singleton::try_lock(&*tx, "webhook-dispatch").await? {
        tx.rollback().await?;
        return Ok(0);
    }
    let cursor = webhook_cursor::Entity::find_by_id(1)
        .one(&*tx)
        .await?
        .map_or(0, |c| c.last_event_id);
    let events = read_events(&*tx, cursor, DISPATCH_BATCH).await?;
    // Stop at a gap younger than `GAP_WAIT`: its transaction may still commit.
    let now = super::now();
    let mut expected = cursor + 1;
    let mut usable = 0;
    for e in &events {
        if e.id != expected && now - e.created_at < GAP_WAIT {
            break;
        }
        expected = e.id + 1;
        usable += 1;
    }
    if usable == 0 {
        // Rolled back before the SQLite writer lock is let go (see `WriteTx`).
        tx.rollback().await?;
        return Ok(0);
    }
    let events = &events[..usable];
    let hooks = webhook::Entity::find().all(&*tx).await?;
    if !hooks.is_empty() {
        let mut rows = vec![];
        for e in events {
            for (kind, extra) in webhook_events(e) {
                let targets: Vec<&webhook::Model> = subscribed(&hooks, kind).collect();
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
                        let agg = super::ratings::aggregate(&*tx, &aid).await?;
                        json!({
                            "article_id": aid.as_str(),
                            "rating": super::ratings::AggregateView::new(aid.as_str(), agg),
                        })
                    }
                    (_, Some(cid)) => match comment_data(&*tx, cid, &extra).await? {
                        Some(data) => data,
                        // Purged since: nothing left to tell.
                        None => continue,
                    },
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
                    rows.push(webhook_delivery::ActiveModel {
                        webhook_id: Set(h.id.clone()),
                        event_id: Set(event_id.clone()),
                        event_type: Set(kind.to_owned()),
                        comment_id: Set(e.comment_id.clone()),
                        payload: Set(body.clone()),
                        status: Set("pending".into()),
                        attempts: Set(0),
                        last_status_code: Set(None),
                        last_error: Set(None),
                        next_attempt_at: Set(now),
                        delivered_at: Set(None),
                        claimed_until: Set(None),
                        created_at: Set(now),
                        ..Default::default()
                    });
                }
            }
        }
        for chunk in rows.chunks(100) {
            webhook_delivery::Entity::insert_many(chunk.to_vec())
                .on_conflict(
                    OnConflict::columns([
                        webhook_delivery::Column::WebhookId,
                        webhook_delivery::Column::EventId,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .exec_without_returning(&*tx)
                .await?;
        }
    }
    let last = events.last().map_or(cursor, |e| e.id);
    webhook_cursor::Entity::update_many()
        .col_expr(webhook_cursor::Column::LastEventId, Expr::value(last))
        .filter(webhook_cursor::Column::Id.eq(1))
        .exec(&*tx)
        .await?;
    tx.commit().await?;
    Ok(events.len())
}

/// Claims up to `SEND_BATCH` due deliveries for this instance.
async fn claim(db: &Db) -> Result<Vec<webhook_delivery::Model>, ApiError> {
    let now = super::now();
    // A look without the write lock first (the due index): usually nothing is due.
    let due = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::Status.eq("pending"))
        .filter(webhook_delivery::Column::NextAttemptAt.lte(now))
        .one(&db.conn)
        .await?;
    if due.is_none() {
        return Ok(vec![]);
    }
    let lease = now + chrono::Duration::from_std(LEASE).unwrap_or_default();
    let backend = db.backend();
    let lock = if backend == DbBackend::Postgres {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let sql = placeholders(
        backend,
        &format!(
            "UPDATE webhook_deliveries SET claimed_until = ? WHERE id IN (\
             SELECT d.id FROM webhook_deliveries d \
             WHERE d.status = 'pending' AND d.next_attempt_at <= ? \
             AND (d.claimed_until IS NULL OR d.claimed_until < ?) \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e \
               WHERE e.webhook_id = d.webhook_id AND e.comment_id = d.comment_id \
               AND e.status = 'pending' AND e.id < d.id) \
             ORDER BY d.id LIMIT {SEND_BATCH}{lock}) RETURNING *"
        ),
    );
    let values: [Value; 3] = [lease.into(), now.into(), now.into()];
    let tx = db.begin_write().await?;
    let claimed = webhook_delivery::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(backend, sql, values))
        .all(&*tx)
        .await?;
    if claimed.is_empty() {
        // Nothing changed: a COMMIT would retire this instance's cached pages
        // (`Db::write_epoch`) twice a second for nothing.
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(claimed)
}

/// The delay before attempt `attempts + 1`, after `attempts` failed ones.
pub fn backoff(base: Duration, attempts: i32) -> Duration {
    let shift = attempts.clamp(1, 30) - 1;
    base.saturating_mul(1u32 << shift).min(MAX_BACKOFF)
}

/// Sends one claimed delivery; the outcome to record (`None`: the webhook is gone).
async fn send(
    db: &Db,
    outbound: &Outbound,
    retry_base: Duration,
    d: webhook_delivery::Model,
) -> Result<Option<webhook_delivery::ActiveModel>, ApiError> {
    let Some(hook) = webhook::Entity::find_by_id(&d.webhook_id)
        .one(&db.conn)
        .await?
    else {
        return Ok(None); // deleted meanwhile (its deliveries with it)
    };
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
    let now = super::now();
    let attempts = d.attempts + 1;
    let mut update = webhook_delivery::ActiveModel {
        id: Set(d.id),
        attempts: Set(attempts),
        claimed_until: Set(None),
        ..Default::default()
    };
    let (code, error) = match result {
        Ok((status, _)) if (200..300).contains(&status) => (Some(status), None),
        Ok((status, _)) => (Some(status), Some(format!("answered {status}"))),
        Err(e) => (None, Some(e)),
    };
    update.last_status_code = Set(code.map(i32::from));
    match error {
        None => {
            update.status = Set("delivered".into());
            update.last_error = Set(None);
            update.delivered_at = Set(Some(now));
        }
        Some(error) => {
            let next =
                now + chrono::Duration::from_std(backoff(retry_base, attempts)).unwrap_or_default();
            update.last_error = Set(Some(error));
            if next - d.created_at > GIVE_UP_AFTER {
                update.status = Set("failed".into());
            } else {
                update.next_attempt_at = Set(next);
            }
        }
    }
    Ok(Some(update))
}

/// Sends what is due until nothing is; how many were sent. The outcomes of one
/// claimed batch are recorded in one write transaction (on SQLite every write takes
/// the one writer's turn from the requests: one per delivery made webhooks cost a
/// site's POSTs several times what they cost once batched).
pub async fn send_due(
    db: &Db,
    outbound: &Outbound,
    retry_base: Duration,
) -> Result<usize, ApiError> {
    let mut total = 0;
    loop {
        let claimed = claim(db).await?;
        if claimed.is_empty() {
            return Ok(total);
        }
        total += claimed.len();
        let sends = claimed
            .into_iter()
            .map(|d| send(db, outbound, retry_base, d));
        let mut updates = vec![];
        for r in futures_util::future::join_all(sends).await {
            match r {
                Ok(Some(update)) => updates.push(update),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "webhook delivery not recorded"),
            }
        }
        if !updates.is_empty() {
            // Unrecorded outcomes are retried when the claim's lease runs out.
            let tx = db.begin_write().await?;
            for update in updates {
                webhook_delivery::Entity::update(update).exec(&*tx).await?;
            }
            tx.commit().await?;
        }
    }
}

/// The background task: dispatch and send, woken by the event bus (a commit here, or
/// on another instance through the bus's pump), else polling every `POLL`.
pub async fn run(db: Db, outbound: Outbound, retry_base: Duration) {
    use tokio::sync::broadcast::error::TryRecvError;
    let mut bus = db.events().subscribe();
    loop {
        let mut worked = false;
        loop {
            match dispatch_once(&db).await {
                Ok(0) => break,
                Ok(_) => worked = true,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook dispatch failed");
                    break;
                }
            }
        }
        match send_due(&db, &outbound, retry_base).await {
            Ok(n) => worked |= n > 0,
            Err(e) => tracing::warn!(error = %e, "webhook sending failed"),
        }
        if worked {
            continue;
        }
        // Sleep until the next commit (or the poll); what queued up meanwhile is
        // covered by the next round's read of the outbox.
        let _ = tokio::time::timeout(POLL, bus.recv()).await;
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
