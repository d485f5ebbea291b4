//! An index on `moderation_log.at` (issue 21): moderation metrics read only the log
//! rows of their `since` window, found through it instead of scanning the log.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const AT: &str = "idx_moderation_log_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name(AT)
                .table(ModerationLog::Table)
                .col(ModerationLog::At)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name(AT)
                .table(ModerationLog::Table)
                .to_owned(),
        )
        .await
    }
}

#[derive(DeriveIden)]
enum ModerationLog {
    Table,
    At,
}
