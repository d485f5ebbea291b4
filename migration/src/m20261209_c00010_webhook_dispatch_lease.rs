//! Webhook deliveries written once, with their first attempt's outcome (issue 22).
//!
//! The dispatching instance now sends a fresh delivery before it writes it, under a
//! **dispatch lease** kept on the cursor row (`holder`, `held_until`): only the
//! holder turns outbox events into deliveries, so each event is sent by one instance,
//! and a crashed holder's lease runs out like a claim does. The delivery row is then
//! inserted once, already `delivered` (or `pending` with its next attempt), instead of
//! inserted claimed and updated after the attempt.
//!
//! The two indexes only the dispatcher's queries of `pending` deliveries use become
//! partial (`WHERE status = 'pending'`): a delivered row, nearly all of them, no
//! longer has entries there to write.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `(name, columns)` of the indexes made partial; both were `(…, status)` before.
const PARTIAL: [(&str, &str, &str); 2] = [
    (
        "ix_webhook_deliveries_due",
        "next_attempt_at",
        "status, next_attempt_at",
    ),
    (
        "ix_webhook_deliveries_comment",
        "webhook_id, comment_id",
        "webhook_id, comment_id, status",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(WebhookCursor::Table)
                .add_column(ColumnDef::new(WebhookCursor::Holder).string_len(36).null())
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(WebhookCursor::Table)
                .add_column(
                    ColumnDef::new(WebhookCursor::HeldUntil)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .to_owned(),
        )
        .await?;
        let conn = m.get_connection();
        // Each index dropped and made again in ONE call: one connection, whose schema
        // is not stale (a pooled SQLite connection that had not seen the DROP would
        // still know the index, and refuse the CREATE).
        for (name, cols, _) in PARTIAL {
            conn.execute_unprepared(&format!(
                "DROP INDEX {name}; \
                 CREATE INDEX {name} ON webhook_deliveries ({cols}) WHERE status = 'pending'"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let conn = m.get_connection();
        for (name, _, cols) in PARTIAL {
            conn.execute_unprepared(&format!(
                "DROP INDEX {name}; CREATE INDEX {name} ON webhook_deliveries ({cols})"
            ))
            .await?;
        }
        for col in [WebhookCursor::HeldUntil, WebhookCursor::Holder] {
            m.alter_table(
                Table::alter()
                    .table(WebhookCursor::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum WebhookCursor {
    Table,
    Holder,
    HeldUntil,
}
