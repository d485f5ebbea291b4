//! Webhook deliveries delivered at their first attempt, one row a round and webhook
//! (issue 22).
//!
//! Nearly every delivery is delivered at its first attempt, and nothing about it changes
//! after that. Such deliveries of one dispatch round to one webhook are now stored as
//! **one row**: `items` holds them as a JSON array of `[event id, event type, status
//! code]` in event order. The row's own `event_id`, `event_type` and
//! `last_status_code` are its first item's (the unique `(webhook_id, event_id)` index
//! holds that one; the dispatch lease's cursor check keeps the others from being
//! written twice). The items share the row's `delivered_at` and `created_at`. A
//! delivery that is
//! pending, failed or retried keeps a row of its own (`items` null), as before.
//!
//! A round under load covers hundreds of events: this writes one row a webhook for
//! them, where it wrote one a delivery, each with an index entry. The listing of a
//! webhook's deliveries expands the rows again.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(WebhookDeliveries::Table)
                .add_column(ColumnDef::new(WebhookDeliveries::Items).text().null())
                .to_owned(),
        )
        .await
    }

    /// Each batch row's items but the first (the row's own) become rows of their own
    /// again, then the column goes.
    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let conn = m.get_connection();
        let expand = match m.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                "INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, payload, \
                 status, attempts, last_status_code, next_attempt_at, delivered_at, created_at) \
                 SELECT d.webhook_id, i ->> 0, i ->> 1, '', 'delivered', 1, (i ->> 2)::int, \
                 d.next_attempt_at, d.delivered_at, d.created_at \
                 FROM webhook_deliveries d, json_array_elements(d.items::json) AS i \
                 WHERE d.items IS NOT NULL AND i ->> 0 <> d.event_id"
            }
            _ => {
                "INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, payload, \
                 status, attempts, last_status_code, next_attempt_at, delivered_at, created_at) \
                 SELECT d.webhook_id, i.value ->> 0, i.value ->> 1, '', 'delivered', 1, \
                 i.value ->> 2, d.next_attempt_at, d.delivered_at, d.created_at \
                 FROM webhook_deliveries d, json_each(d.items) AS i \
                 WHERE d.items IS NOT NULL AND i.value ->> 0 <> d.event_id"
            }
        };
        conn.execute_unprepared(expand).await?;
        m.alter_table(
            Table::alter()
                .table(WebhookDeliveries::Table)
                .drop_column(WebhookDeliveries::Items)
                .to_owned(),
        )
        .await
    }
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Items,
}
