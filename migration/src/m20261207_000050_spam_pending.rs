//! Pending changes of the spam model (issue 21): a decision that teaches the model
//! writes what it changes in the model's counts as one new row here, in its own
//! transaction, instead of updating the shared totals and token rows; an applier
//! (`service::spam::fold_pending`) folds the pending rows into `spam_model` and
//! `spam_tokens` in a short transaction of its own right after, deleting them as it
//! applies them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn counter(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .big_integer()
        .not_null()
        .default(0)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(SpamPending::Table)
                .col(
                    ColumnDef::new(SpamPending::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(counter(SpamPending::SpamDocs))
                .col(counter(SpamPending::HamDocs))
                .col(counter(SpamPending::SpamWords))
                .col(counter(SpamPending::HamWords))
                .col(ColumnDef::new(SpamPending::Tokens).text().not_null())
                .col(
                    ColumnDef::new(SpamPending::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(SpamPending::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum SpamPending {
    Table,
    Id,
    SpamDocs,
    HamDocs,
    SpamWords,
    HamWords,
    Tokens,
    CreatedAt,
}
