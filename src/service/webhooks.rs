//! Webhooks (issue 22): subscriptions an admin manages, and the deliveries made for
//! them from the `events` outbox (see `service::webhook_dispatch` for the sending).

use chrono::{DateTime, Utc};
use rand::RngCore;
use sea_orm::{
    sea_query::{Expr, ExprTrait},
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;

use super::comments::{paginate, CursorPage};
use crate::{
    domain::{Cursor, FieldError},
    entity::{webhook, webhook_delivery},
    error::ApiError,
};

/// The event types a webhook may subscribe to.
pub const EVENT_TYPES: [&str; 5] = [
    "comment.created",
    "comment.published",
    "comment.status_changed",
    "comment.flagged",
    "rating.changed",
];

/// A webhook as listed (never with its secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    /// The event types it receives, or `["*"]` for all.
    pub events: Vec<String>,
    #[schema(required = true)]
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A new webhook, with the secret that signs its deliveries (shown only here).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// `whsec_…`: the HMAC key of `Tally-Signature`, the whole string as UTF-8 bytes.
    pub secret: String,
}

impl From<webhook::Model> for WebhookView {
    fn from(w: webhook::Model) -> Self {
        WebhookView {
            events: serde_json::from_str(&w.events).unwrap_or_default(),
            id: w.id,
            url: w.url,
            description: w.description,
            created_at: w.created_at,
        }
    }
}

/// One delivery of an event to a webhook.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// `pending` (to be tried, or retried), `delivered` (a 2xx answer) or `failed`
    /// (no 2xx answer within 24 hours).
    pub status: String,
    pub attempts: i32,
    #[schema(required = true)]
    pub last_status_code: Option<i32>,
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// When the next attempt is due; `null` once delivered or failed.
    #[schema(required = true)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub delivered_at: Option<DateTime<Utc>>,
}

impl DeliveryView {
    /// The deliveries a row stands for, newest first, each with its position in the
    /// listing: a delivery's own row is one (at its id); a batch row (`items`) is all of
    /// its deliveries, delivered at their first attempt (at `<id>.<k>`, the k-th of the
    /// row newest first).
    fn of_row(d: webhook_delivery::Model) -> Vec<(Cursor, DeliveryView)> {
        let at = |id: String| Cursor {
            created_at: d.created_at,
            id,
        };
        let Some(items) = &d.items else {
            return vec![(
                at(d.id.to_string()),
                DeliveryView {
                    next_attempt_at: (d.status == "pending").then_some(d.next_attempt_at),
                    event_id: d.event_id,
                    event_type: d.event_type,
                    status: d.status,
                    attempts: d.attempts,
                    last_status_code: d.last_status_code,
                    last_error: d.last_error,
                    delivered_at: d.delivered_at,
                },
            )];
        };
        let items: Vec<(String, String, Option<i32>)> =
            serde_json::from_str(items).unwrap_or_default();
        items
            .into_iter()
            .rev()
            .enumerate()
            .map(|(k, (event_id, event_type, code))| {
                let view = DeliveryView {
                    event_id,
                    event_type,
                    status: "delivered".into(),
                    attempts: 1,
                    last_status_code: code,
                    last_error: None,
                    next_attempt_at: None,
                    delivered_at: d.delivered_at,
                };
                (at(format!("{}.{k}", d.id)), view)
            })
            .collect()
    }
}

/// Checks the events list: 1–5 known types, or `["*"]` alone; returns it deduplicated.
pub fn parse_events(events: &[String]) -> Result<Vec<String>, FieldError> {
    if events.is_empty() {
        return Err(FieldError::new(
            "events",
            "must name at least one event type",
        ));
    }
    if events.iter().any(|e| e == "*") {
        return if events.len() == 1 {
            Ok(vec!["*".into()])
        } else {
            Err(FieldError::new("events", "\"*\" must stand alone"))
        };
    }
    let mut out: Vec<String> = vec![];
    for (i, e) in events.iter().enumerate() {
        if !EVENT_TYPES.contains(&e.as_str()) {
            return Err(FieldError::new(
                format!("events[{i}]"),
                format!("must be one of {} or \"*\"", EVENT_TYPES.join(", ")),
            ));
        }
        if !out.contains(e) {
            out.push(e.clone());
        }
    }
    Ok(out)
}

pub(crate) fn new_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("whsec_{hex}")
}

/// Stores a webhook whose fields are already checked.
pub async fn create(
    conn: &impl ConnectionTrait,
    url: String,
    events: Vec<String>,
    description: Option<String>,
) -> Result<CreatedWebhook, ApiError> {
    start_cursor_if_first(conn).await?;
    let model = webhook::Model {
        id: uuid::Uuid::now_v7().to_string(),
        url,
        events: serde_json::to_string(&events).map_err(|e| ApiError::Internal(e.to_string()))?,
        description,
        secret: new_secret(),
        created_at: super::now(),
    };
    webhook::Entity::insert(webhook::ActiveModel::from(model.clone()))
        .exec_without_returning(conn)
        .await?;
    let secret = model.secret.clone();
    Ok(CreatedWebhook {
        webhook: model.into(),
        secret,
    })
}

/// Before the first webhook is stored: starts the dispatcher at the outbox's end (with
/// none, the dispatcher does not move its cursor), so the webhook hears of what comes
/// after it.
pub async fn start_cursor_if_first(conn: &impl ConnectionTrait) -> Result<(), sea_orm::DbErr> {
    if webhook::Entity::find().one(conn).await?.is_none() {
        let last = super::write::events::last_id(conn)
            .await
            .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
        crate::entity::webhook_cursor::Entity::update_many()
            .col_expr(
                crate::entity::webhook_cursor::Column::LastEventId,
                Expr::value(last),
            )
            .filter(crate::entity::webhook_cursor::Column::Id.eq(1))
            .exec(conn)
            .await?;
    }
    Ok(())
}

/// Every webhook, oldest first (a site has a handful).
pub async fn list(conn: &impl ConnectionTrait) -> Result<Vec<WebhookView>, ApiError> {
    Ok(webhook::Entity::find()
        .order_by_asc(webhook::Column::CreatedAt)
        .order_by_asc(webhook::Column::Id)
        .limit(1000)
        .all(conn)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Deletes a webhook and its deliveries; whether there was one.
pub async fn delete(conn: &impl ConnectionTrait, id: &str) -> Result<bool, ApiError> {
    // Deliveries first: SQLite enforces the foreign key's cascade only with
    // `PRAGMA foreign_keys` on, and this works either way.
    webhook_delivery::Entity::delete_many()
        .filter(webhook_delivery::Column::WebhookId.eq(id))
        .exec(conn)
        .await?;
    let gone = webhook::Entity::delete_by_id(id).exec(conn).await?;
    Ok(gone.rows_affected > 0)
}

/// A webhook's deliveries, newest first; `None` when there is no such webhook.
pub async fn deliveries(
    conn: &impl ConnectionTrait,
    webhook_id: &str,
    limit: u64,
    cursor: Option<Cursor>,
) -> Result<Option<CursorPage<DeliveryView>>, ApiError> {
    if webhook::Entity::find_by_id(webhook_id)
        .one(conn)
        .await?
        .is_none()
    {
        return Ok(None);
    }
    // The cursor is the last delivery shown: `<row id>` or, inside a batch row,
    // `<row id>.<k>` (the rest of that row comes first).
    let bad = || ApiError::bad_request("cursor: is not a cursor this service gave out");
    let after = match &cursor {
        None => None,
        Some(c) => Some(match c.id.split_once('.') {
            None => (c.id.parse::<i64>().map_err(|_| bad())?, None),
            Some((id, k)) => (
                id.parse::<i64>().map_err(|_| bad())?,
                Some(k.parse::<usize>().map_err(|_| bad())?),
            ),
        }),
    };
    let mut select =
        webhook_delivery::Entity::find().filter(webhook_delivery::Column::WebhookId.eq(webhook_id));
    if let Some((id, within)) = after {
        let col = Expr::col(webhook_delivery::Column::Id);
        select = select.filter(match within {
            Some(_) => col.lte(id),
            None => col.lt(id),
        });
    }
    // Each row is at least one delivery (but the cursor's own, which may have none
    // left): `limit + 2` rows make at least `limit + 1` deliveries.
    let rows = select
        .order_by_desc(webhook_delivery::Column::Id)
        .limit(limit + 2)
        .all(conn)
        .await?;
    let mut listed = vec![];
    for row in rows {
        let skip = match after {
            Some((id, Some(k))) if row.id == id => k + 1,
            _ => 0,
        };
        let views = DeliveryView::of_row(row);
        listed.extend(views.into_iter().skip(skip));
        if listed.len() as u64 > limit {
            break;
        }
    }
    listed.truncate(limit as usize + 1);
    let page = paginate(listed, limit, |(position, _)| position.clone());
    Ok(Some(CursorPage {
        items: page.items.into_iter().map(|(_, view)| view).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Subscribed webhooks of `event_type` among `hooks`.
pub fn subscribed<'a>(
    hooks: &'a [webhook::Model],
    event_type: &'a str,
) -> impl Iterator<Item = &'a webhook::Model> + 'a {
    hooks.iter().filter(move |h| {
        let events: Vec<String> = serde_json::from_str(&h.events).unwrap_or_default();
        events.iter().any(|e| e == "*" || e == event_type)
    })
}
