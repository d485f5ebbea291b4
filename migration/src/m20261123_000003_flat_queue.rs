//! Flat-cost moderation queue pages at any table size:
//! - `author_counts` keeps, per author, how many comments are approved, rejected and
//!   spam (the queue's `author_history`), so a page never counts an author's comments;
//!   it is filled from the existing rows here and kept by the application afterwards;
//! - the flagged queue gets a partial index on (created_at, id) over flagged comments
//!   only, which serves its keyset order directly; it replaces `idx_comments_flagged`,
//!   whose leading `flag_count` column could not give that order.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const FLAGGED_QUEUE: &str = "idx_comments_flagged_queue";
const OLD_FLAGGED: &str = "idx_comments_flagged";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let count = |c: AuthorCounts| {
            ColumnDef::new(c)
                .big_integer()
                .not_null()
                .default(0)
                .check(Expr::col(c).gte(0))
                .to_owned()
        };
        m.create_table(
            Table::create()
                .table(AuthorCounts::Table)
                .col(
                    ColumnDef::new(AuthorCounts::AuthorId)
                        .string_len(160)
                        .not_null()
                        .primary_key(),
                )
                .col(count(AuthorCounts::Approved))
                .col(count(AuthorCounts::Rejected))
                .col(count(AuthorCounts::Spam))
                .to_owned(),
        )
        .await?;
        m.get_connection()
            .execute_unprepared(
                "INSERT INTO author_counts (author_id, approved, rejected, spam) \
                 SELECT author_id, \
                        SUM(CASE WHEN status = 'approved' THEN 1 ELSE 0 END), \
                        SUM(CASE WHEN status = 'rejected' THEN 1 ELSE 0 END), \
                        SUM(CASE WHEN status = 'spam' THEN 1 ELSE 0 END) \
                 FROM comments WHERE status IN ('approved', 'rejected', 'spam') \
                 GROUP BY author_id",
            )
            .await?;
        m.create_index(
            Index::create()
                .name(FLAGGED_QUEUE)
                .table(Comments::Table)
                .col(Comments::CreatedAt)
                .col(Comments::Id)
                .and_where(Expr::col(Comments::FlagCount).gt(Expr::cust("0")))
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name(OLD_FLAGGED)
                .table(Comments::Table)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name(OLD_FLAGGED)
                .table(Comments::Table)
                .col(Comments::FlagCount)
                .col(Comments::CreatedAt)
                .col(Comments::Id)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name(FLAGGED_QUEUE)
                .table(Comments::Table)
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(AuthorCounts::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum AuthorCounts {
    Table,
    AuthorId,
    Approved,
    Rejected,
    Spam,
}

#[derive(DeriveIden)]
enum Comments {
    Table,
    Id,
    CreatedAt,
    FlagCount,
}
