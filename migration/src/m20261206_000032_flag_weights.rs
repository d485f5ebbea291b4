//! Weighted flags (issue 21): each flag keeps the weight it was cast with, each comment
//! the sum of its unresolved flags' weights (`flag_weight`, what the hide threshold and
//! `sort=weight` use), and each flagger their track record (`flagger_records`: flags
//! upheld and dismissed by moderators). Existing flags weigh 1, the weight of a new
//! flagger; existing comments get the sum of their unresolved flags.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const BY_WEIGHT: &str = "idx_comments_flagged_weight";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Flags::Table)
                .add_column(
                    ColumnDef::new(Flags::Weight)
                        .double()
                        .not_null()
                        .default(1.0),
                )
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Comments::Table)
                .add_column(
                    ColumnDef::new(Comments::FlagWeight)
                        .double()
                        .not_null()
                        .default(0.0),
                )
                .to_owned(),
        )
        .await?;
        m.get_connection()
            .execute_unprepared(
                "UPDATE comments SET flag_weight = CAST(flag_count AS DOUBLE PRECISION) \
                 WHERE flag_count > 0",
            )
            .await?;
        m.create_table(
            Table::create()
                .table(FlaggerRecords::Table)
                .col(
                    ColumnDef::new(FlaggerRecords::UserId)
                        .string_len(160)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(FlaggerRecords::Upheld)
                        .big_integer()
                        .not_null()
                        .default(0)
                        .check(Expr::col(FlaggerRecords::Upheld).gte(0)),
                )
                .col(
                    ColumnDef::new(FlaggerRecords::Dismissed)
                        .big_integer()
                        .not_null()
                        .default(0)
                        .check(Expr::col(FlaggerRecords::Dismissed).gte(0)),
                )
                .to_owned(),
        )
        .await?;
        // The flagged queue heaviest first: a partial index like the flagged queue's.
        m.create_index(
            Index::create()
                .name(BY_WEIGHT)
                .table(Comments::Table)
                .col(Comments::FlagWeight)
                .col(Comments::Id)
                .and_where(Expr::col(Comments::FlagCount).gt(Expr::cust("0")))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name(BY_WEIGHT)
                .table(Comments::Table)
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(FlaggerRecords::Table).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(Comments::Table)
                .drop_column(Comments::FlagWeight)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Flags::Table)
                .drop_column(Flags::Weight)
                .to_owned(),
        )
        .await
    }
}

#[derive(DeriveIden)]
enum Flags {
    Table,
    Weight,
}

#[derive(DeriveIden)]
enum Comments {
    Table,
    FlagWeight,
    FlagCount,
    Id,
}

#[derive(DeriveIden)]
enum FlaggerRecords {
    Table,
    UserId,
    Upheld,
    Dismissed,
}
