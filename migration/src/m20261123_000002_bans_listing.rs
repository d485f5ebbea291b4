//! An index for listing bans newest first with keyset pagination on
//! (created_at, user_id) (`GET /api/v1/moderation/bans`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "idx_bans_created";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name(INDEX)
                .table(Bans::Table)
                .col(Bans::CreatedAt)
                .col(Bans::UserId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name(INDEX).table(Bans::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Bans {
    Table,
    UserId,
    CreatedAt,
}
