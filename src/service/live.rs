//! The live moderation stream (issue 22, `GET /api/v1/moderation/events`): queue moves
//! and queue sizes as Server-Sent Events, derived from the `events` outbox.
//!
//! Each connection has a task that, whenever the event bus says something committed
//! (here, or on another instance through the bus's pump), reads the outbox after the
//! last id it sent — so events come in commit order, none is skipped when the bus
//! delivers another instance's event late, and a client that reconnects with
//! `Last-Event-ID` gets what it missed (as long as the outbox keeps it: days). The
//! task writes into a small bounded channel that the response drains: a client that
//! does not read for `SLOW_CLIENT` is disconnected (it resumes with `Last-Event-ID`),
//! so a connection never holds more than `BUFFER` events.

use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tokio::sync::{broadcast::error::RecvError, mpsc};

use super::{
    write::db::Db,
    write::events::{self, Event, StoredEvent},
};
use crate::error::ApiError;

/// Frames buffered per connection.
pub const BUFFER: usize = 64;
/// A comment line this often keeps proxies from closing an idle stream.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// How long a full buffer may wait for the client before it is disconnected.
const SLOW_CLIENT: Duration = Duration::from_secs(30);
/// Outbox rows read at once.
const READ_BATCH: u64 = 500;

/// `item` event data: a comment entered or left a queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemChange {
    pub comment_id: String,
    pub queue: String,
    pub change: &'static str,
}

const QUEUES: [&str; 4] = ["pending", "approved", "rejected", "spam"];

fn change(comment_id: &str, queue: &str, change: &'static str) -> ItemChange {
    ItemChange {
        comment_id: comment_id.to_owned(),
        queue: queue.to_owned(),
        change,
    }
}

/// The queue moves one committed event stands for.
pub fn item_changes(e: &Event) -> Vec<ItemChange> {
    match e {
        Event::CommentCreated {
            comment_id, status, ..
        } if QUEUES.contains(&status.as_str()) => vec![change(comment_id, status, "entered")],
        Event::CommentStatusChanged {
            comment_id,
            from,
            to,
            actor_id,
            ..
        } => {
            let mut out = vec![];
            if from != to {
                if QUEUES.contains(&from.as_str()) {
                    out.push(change(comment_id, from, "left"));
                }
                if QUEUES.contains(&to.as_str()) {
                    out.push(change(comment_id, to, "entered"));
                }
            }
            // A moderator's decision settles the comment's flags.
            let decided = ["approved", "rejected", "spam"].contains(&to.as_str());
            if decided && actor_id != "system" && actor_id != "external" {
                out.push(change(comment_id, "flagged", "left"));
            }
            out
        }
        Event::CommentFlagged { comment_id, .. } => vec![change(comment_id, "flagged", "entered")],
        _ => vec![],
    }
}

/// One SSE frame: `id:`, `event:` and one `data:` line.
fn frame(id: i64, event: &str, data: &impl Serialize) -> String {
    let data = serde_json::to_string(data).unwrap_or_else(|_| "null".into());
    format!("id: {id}\nevent: {event}\ndata: {data}\n\n")
}

/// Starts a connection's task; the receiver yields its frames (it ends when the task
/// gives up: the client was too slow, or the process stops).
pub fn open(db: Db, resume_after: Option<i64>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        if let Err(e) = run(db, resume_after, tx).await {
            tracing::debug!(error = %e, "live stream ended");
        }
    });
    rx
}

/// Why a connection's task stopped.
#[derive(Debug, thiserror::Error)]
enum Stop {
    #[error("client gone or too slow")]
    Client,
    #[error("{0}")]
    Api(#[from] ApiError),
}

async fn push(tx: &mpsc::Sender<String>, frame: String) -> Result<(), Stop> {
    tx.send_timeout(frame, SLOW_CLIENT)
        .await
        .map_err(|_| Stop::Client)
}

async fn run(db: Db, resume_after: Option<i64>, tx: mpsc::Sender<String>) -> Result<(), Stop> {
    // Subscribed before the first read: nothing committed in between goes unnoticed.
    let mut bus = db.events().subscribe();
    let mut last = match resume_after {
        Some(id) => id,
        None => events::last_id(&db.conn).await?,
    };
    // What was missed (resume), then the stats as they are now.
    let mut stats = String::new();
    last = send_after(&db, &tx, last).await?;
    send_stats(&db, &tx, last, &mut stats).await?;
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            got = bus.recv() => {
                match got {
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return Ok(()),
                }
                // Everything already queued on the bus is covered by one read.
                while let Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) = bus.try_recv() {}
                let before = last;
                last = send_after(&db, &tx, last).await?;
                if last != before {
                    send_stats(&db, &tx, last, &mut stats).await?;
                }
            }
            _ = heartbeat.tick() => push(&tx, ": keep-alive\n\n".into()).await?,
            _ = tx.closed() => return Err(Stop::Client),
        }
    }
}

/// Sends the `item` events of the outbox after `last`; returns the new last id.
async fn send_after(db: &Db, tx: &mpsc::Sender<String>, mut last: i64) -> Result<i64, Stop> {
    loop {
        let batch: Vec<StoredEvent> = events::read_after(&db.conn, last, READ_BATCH).await?;
        let done = (batch.len() as u64) < READ_BATCH;
        for e in batch {
            for c in item_changes(&e.event) {
                push(tx, frame(e.id, "item", &c)).await?;
            }
            last = e.id;
        }
        if done {
            return Ok(last);
        }
    }
}

/// Sends `stats` when they differ from what this connection sent last.
async fn send_stats(
    db: &Db,
    tx: &mpsc::Sender<String>,
    id: i64,
    sent: &mut String,
) -> Result<(), Stop> {
    let now = serde_json::to_string(&super::moderation::queue::stats(&db.conn).await?)
        .unwrap_or_else(|_| json!({}).to_string());
    if *sent != now {
        push(tx, format!("id: {id}\nevent: stats\ndata: {now}\n\n")).await?;
        *sent = now;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_moves_the_comment_between_queues() {
        let e = Event::CommentStatusChanged {
            comment_id: "c".into(),
            article_id: "a".into(),
            from: "pending".into(),
            to: "approved".into(),
            actor_id: "mod-1".into(),
            actor_name: "Mo".into(),
        };
        assert_eq!(
            item_changes(&e),
            vec![
                change("c", "pending", "left"),
                change("c", "approved", "entered"),
                change("c", "flagged", "left"),
            ]
        );
    }

    #[test]
    fn frames_carry_the_outbox_id() {
        let f = frame(7, "item", &change("c", "pending", "entered"));
        assert_eq!(
            f,
            "id: 7\nevent: item\ndata: {\"comment_id\":\"c\",\"queue\":\"pending\",\"change\":\"entered\"}\n\n"
        );
    }
}
