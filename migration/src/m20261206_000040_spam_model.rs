//! The learned spam model (`service::spam`): per-token counts by class, one row of
//! per-class totals (with a version bumped on every change, which each instance's
//! cached copy watches), what each decided comment taught (so that a later decision
//! replaces it), and the probability the model gave each comment when it was scored.

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
                .table(SpamTokens::Table)
                .col(
                    ColumnDef::new(SpamTokens::Token)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(counter(SpamTokens::Spam))
                .col(counter(SpamTokens::Ham))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(SpamModel::Table)
                .col(
                    ColumnDef::new(SpamModel::Id)
                        .integer()
                        .not_null()
                        .primary_key(),
                )
                .col(counter(SpamModel::SpamDocs))
                .col(counter(SpamModel::HamDocs))
                .col(counter(SpamModel::SpamWords))
                .col(counter(SpamModel::HamWords))
                .col(counter(SpamModel::Version))
                .col(
                    ColumnDef::new(SpamModel::UpdatedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .to_owned(),
        )
        .await?;
        m.exec_stmt(
            Query::insert()
                .into_table(SpamModel::Table)
                .columns([SpamModel::Id])
                .values_panic([1.into()])
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(SpamLessons::Table)
                .col(
                    ColumnDef::new(SpamLessons::CommentId)
                        .string_len(36)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(SpamLessons::Label)
                        .string_len(8)
                        .not_null()
                        .check(Expr::col(SpamLessons::Label).is_in(["spam", "ham"])),
                )
                .col(ColumnDef::new(SpamLessons::Tokens).text().not_null())
                .col(
                    ColumnDef::new(SpamLessons::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Comments::Table)
                .add_column(ColumnDef::new(Comments::SpamProbability).double().null())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Comments::Table)
                .drop_column(Comments::SpamProbability)
                .to_owned(),
        )
        .await?;
        for t in [
            SpamLessons::Table.into_iden(),
            SpamModel::Table.into_iden(),
            SpamTokens::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum SpamTokens {
    Table,
    Token,
    Spam,
    Ham,
}

#[derive(DeriveIden)]
enum SpamModel {
    Table,
    Id,
    SpamDocs,
    HamDocs,
    SpamWords,
    HamWords,
    Version,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SpamLessons {
    Table,
    CommentId,
    Label,
    Tokens,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Comments {
    Table,
    SpamProbability,
}
