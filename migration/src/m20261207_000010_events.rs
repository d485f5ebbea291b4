//! The outbox (issue 18): every write records what it changed as typed events in
//! `events`, in the same transaction as the change. Ids grow in commit order (see
//! `service::events`); rows are purged by age.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const CREATED_AT: &str = "idx_events_created_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Events::Table)
                .col(
                    ColumnDef::new(Events::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(ColumnDef::new(Events::Kind).string_len(40).not_null())
                .col(ColumnDef::new(Events::ArticleId).string_len(255).null())
                .col(ColumnDef::new(Events::CommentId).string_len(64).null())
                .col(ColumnDef::new(Events::Data).text().not_null())
                .col(
                    ColumnDef::new(Events::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name(CREATED_AT)
                .table(Events::Table)
                .col(Events::CreatedAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Events::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    Kind,
    ArticleId,
    CommentId,
    Data,
    CreatedAt,
}
