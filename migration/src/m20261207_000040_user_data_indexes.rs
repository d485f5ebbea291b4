//! Indexes for a user's own data (issue 22): reading or erasing everything of one user
//! finds their ratings, their flags and the log rows about them through these instead
//! of scanning the tables (their comments, votes and the log rows they acted in have
//! theirs already: `idx_comments_author`, `idx_comment_votes_user`,
//! `idx_moderation_log_actor`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const LOG_SUBJECT: &str = "idx_moderation_log_subject";
const RATINGS_USER: &str = "idx_ratings_user";
const FLAGS_USER: &str = "idx_flags_user";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name(LOG_SUBJECT)
                .table(ModerationLog::Table)
                .col(ModerationLog::SubjectUserId)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name(RATINGS_USER)
                .table(Ratings::Table)
                .col(Ratings::UserId)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name(FLAGS_USER)
                .table(Flags::Table)
                .col(Flags::UserId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name(FLAGS_USER)
                .table(Flags::Table)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name(RATINGS_USER)
                .table(Ratings::Table)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name(LOG_SUBJECT)
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

#[derive(DeriveIden)]
enum Ratings {
    Table,
    UserId,
}

#[derive(DeriveIden)]
enum Flags {
    Table,
    UserId,
}
