//! An index on `moderation_log.subject_user_id` (issue 22): erasing a user's data
//! replaces their id in the log rows about them, found through it instead of scanning
//! the log (the rows they acted in are found through `idx_moderation_log_actor`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SUBJECT: &str = "idx_moderation_log_subject";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name(SUBJECT)
                .table(ModerationLog::Table)
                .col(ModerationLog::SubjectUserId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name(SUBJECT)
                .table(ModerationLog::Table)
                .to_owned(),
        )
        .await
    }
}

#[derive(DeriveIden)]
enum ModerationLog {
    Table,
    SubjectUserId,
}
