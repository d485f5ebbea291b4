//! Webhooks (issue 22): the subscriptions, one delivery row per (webhook, event) with
//! its attempts, and the dispatcher's cursor into the `events` outbox (one row, so
//! restarts and several instances carry on where the last one stopped).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Webhooks::Table)
                .col(
                    ColumnDef::new(Webhooks::Id)
                        .string_len(36)
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Webhooks::Url).text().not_null())
                // JSON array of event types, or ["*"].
                .col(ColumnDef::new(Webhooks::Events).text().not_null())
                .col(ColumnDef::new(Webhooks::Description).text().null())
                .col(ColumnDef::new(Webhooks::Secret).string_len(80).not_null())
                .col(ts(Webhooks::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(WebhookDeliveries::Table)
                .col(
                    ColumnDef::new(WebhookDeliveries::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(WebhookDeliveries::WebhookId)
                        .string_len(36)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WebhookDeliveries::EventId)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WebhookDeliveries::EventType)
                        .string_len(32)
                        .not_null(),
                )
                // Deliveries of one comment go out in order, per webhook.
                .col(
                    ColumnDef::new(WebhookDeliveries::CommentId)
                        .string_len(36)
                        .null(),
                )
                // The body as first built: every attempt sends the same bytes.
                .col(ColumnDef::new(WebhookDeliveries::Payload).text().not_null())
                .col(
                    ColumnDef::new(WebhookDeliveries::Status)
                        .string_len(12)
                        .not_null()
                        .check(Expr::col(WebhookDeliveries::Status).is_in([
                            "pending",
                            "delivered",
                            "failed",
                        ])),
                )
                .col(
                    ColumnDef::new(WebhookDeliveries::Attempts)
                        .integer()
                        .not_null()
                        .default(0),
                )
                .col(
                    ColumnDef::new(WebhookDeliveries::LastStatusCode)
                        .integer()
                        .null(),
                )
                .col(ColumnDef::new(WebhookDeliveries::LastError).text().null())
                .col(ts(WebhookDeliveries::NextAttemptAt))
                .col(
                    ColumnDef::new(WebhookDeliveries::DeliveredAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                // An instance sending it holds it until then (a crashed one's lease ends).
                .col(
                    ColumnDef::new(WebhookDeliveries::ClaimedUntil)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(ts(WebhookDeliveries::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_webhook_deliveries_webhook")
                        .from(WebhookDeliveries::Table, WebhookDeliveries::WebhookId)
                        .to(Webhooks::Table, Webhooks::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        for (name, cols) in [
            (
                "ux_webhook_deliveries_event",
                vec![WebhookDeliveries::WebhookId, WebhookDeliveries::EventId],
            ),
            (
                "ix_webhook_deliveries_due",
                vec![WebhookDeliveries::Status, WebhookDeliveries::NextAttemptAt],
            ),
            (
                "ix_webhook_deliveries_comment",
                vec![
                    WebhookDeliveries::WebhookId,
                    WebhookDeliveries::CommentId,
                    WebhookDeliveries::Status,
                ],
            ),
        ] {
            let mut idx = Index::create()
                .name(name)
                .table(WebhookDeliveries::Table)
                .to_owned();
            for c in cols {
                idx.col(c);
            }
            if name.starts_with("ux_") {
                idx.unique();
            }
            m.create_index(idx).await?;
        }
        m.create_table(
            Table::create()
                .table(WebhookCursor::Table)
                .col(
                    ColumnDef::new(WebhookCursor::Id)
                        .integer()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(WebhookCursor::LastEventId)
                        .big_integer()
                        .not_null()
                        .default(0),
                )
                .to_owned(),
        )
        .await?;
        m.exec_stmt(
            Query::insert()
                .into_table(WebhookCursor::Table)
                .columns([WebhookCursor::Id])
                .values_panic([1.into()])
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            WebhookCursor::Table.into_iden(),
            WebhookDeliveries::Table.into_iden(),
            Webhooks::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    Id,
    Url,
    Events,
    Description,
    Secret,
    CreatedAt,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    WebhookId,
    EventId,
    EventType,
    CommentId,
    Payload,
    Status,
    Attempts,
    LastStatusCode,
    LastError,
    NextAttemptAt,
    DeliveredAt,
    ClaimedUntil,
    CreatedAt,
}

#[derive(DeriveIden)]
enum WebhookCursor {
    Table,
    Id,
    LastEventId,
}
