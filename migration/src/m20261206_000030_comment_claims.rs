//! Claims (issue 21): a moderator marks a comment as being worked on, for 5 minutes.
//! One row per claimed comment; an expired row counts as no claim and is replaced by
//! the next claim. Advisory only: nothing else reads it to refuse a write.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(CommentClaims::Table)
                .col(
                    ColumnDef::new(CommentClaims::CommentId)
                        .string_len(36)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(CommentClaims::ModeratorId)
                        .string_len(160)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(CommentClaims::ModeratorName)
                        .string_len(200)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(CommentClaims::ExpiresAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_comment_claims_comment")
                        .from(CommentClaims::Table, CommentClaims::CommentId)
                        .to(Comments::Table, Comments::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(CommentClaims::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum CommentClaims {
    Table,
    CommentId,
    ModeratorId,
    ModeratorName,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Comments {
    Table,
    Id,
}
