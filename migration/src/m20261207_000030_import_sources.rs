//! `import_sources` (issue 22): which comment each imported foreign record became
//! (Disqus post, WordPress comment, Isso comment), so that importing the same file
//! again imports nothing twice and a reply imported later finds its parent.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ImportSources::Table)
                .col(
                    ColumnDef::new(ImportSources::Format)
                        .string_len(8)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ImportSources::SourceId)
                        .string_len(200)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ImportSources::CommentId)
                        .string_len(36)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ImportSources::ImportedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .primary_key(
                    Index::create()
                        .name("pk_import_sources")
                        .col(ImportSources::Format)
                        .col(ImportSources::SourceId),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_import_sources_comment")
                        .from(ImportSources::Table, ImportSources::CommentId)
                        .to(Comments::Table, Comments::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(ImportSources::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ImportSources {
    Table,
    Format,
    SourceId,
    CommentId,
    ImportedAt,
}

#[derive(DeriveIden)]
enum Comments {
    Table,
    Id,
}
