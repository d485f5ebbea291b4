//! How many decisions one pending change of the spam model holds (issue 21): a batch of
//! group-committed decisions writes their summed change as ONE `spam_pending` row
//! (`service::write::lessons`), and the fold advances the model's version (and its
//! vocabulary checks, every `PRUNE_EVERY` decisions) by the decisions, not the rows.
//! Rows written one per decision count 1.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(SpamPending::Table)
                .add_column(
                    ColumnDef::new(SpamPending::Changes)
                        .big_integer()
                        .not_null()
                        .default(1),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(SpamPending::Table)
                .drop_column(SpamPending::Changes)
                .to_owned(),
        )
        .await
    }
}

#[derive(DeriveIden)]
enum SpamPending {
    Table,
    Changes,
}
