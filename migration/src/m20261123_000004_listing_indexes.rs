//! Indexes for flat-cost listings and checks.
//!
//! Top-level comment pages in keyset order straight from an index: a partial index on
//! (article_id, created_at, id) over comments without a parent. The old
//! `idx_comments_thread` (article_id, parent_id, created_at, id) could not give that
//! order on PostgreSQL, whose planner does not treat `parent_id IS NULL` as an equality,
//! so the first page of a long thread sorted the whole thread. Replies keep
//! `idx_comments_replies`.
//!
//! Also (author_id, fingerprint, created_at): the repeat rule looks for the same text by
//! the same author in the last hours, which otherwise scans all of a prolific author's
//! comments on every post.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const TOP_LEVEL: &str = "idx_comments_top_level";
const OLD_THREAD: &str = "idx_comments_thread";
const REPEATS: &str = "idx_comments_author_fingerprint";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name(TOP_LEVEL)
                .table(Comments::Table)
                .col(Comments::ArticleId)
                .col(Comments::CreatedAt)
                .col(Comments::Id)
                .and_where(Expr::col(Comments::ParentId).is_null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name(REPEATS)
                .table(Comments::Table)
                .col(Comments::AuthorId)
                .col(Comments::Fingerprint)
                .col(Comments::CreatedAt)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name(OLD_THREAD)
                .table(Comments::Table)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name(REPEATS)
                .table(Comments::Table)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name(OLD_THREAD)
                .table(Comments::Table)
                .col(Comments::ArticleId)
                .col(Comments::ParentId)
                .col(Comments::CreatedAt)
                .col(Comments::Id)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name(TOP_LEVEL)
                .table(Comments::Table)
                .to_owned(),
        )
        .await
    }
}

#[derive(DeriveIden)]
enum Comments {
    Table,
    Id,
    ArticleId,
    ParentId,
    AuthorId,
    Fingerprint,
    CreatedAt,
}
