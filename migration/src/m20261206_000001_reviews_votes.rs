//! Reviews and votes (API.md, Version 1.1 → Reviews and votes).
//!
//! - `comments` gains `kind` (`comment` | `review`), `stars` (a review's: its author's
//!   current rating), `verified` (the author's token said so when they wrote it), the
//!   kept vote counters `votes_up` / `votes_down`, and `best_score`: the lower bound of
//!   the 95 % Wilson interval of those counters, written with them, so `sort=best` is
//!   read in order from an index.
//! - `comment_votes`: one vote per reader per comment.
//! - `ratings.review_id`: the review that goes with a rating.
//! - `articles.review_count`: listed reviews (kept like `top_level_count`, which from now
//!   on counts top-level comments of kind `comment` only).
//! - `rating_totals`: the site's rating count and sum, kept with the articles' counters,
//!   for the Bayesian prior of `GET /ratings/top` without summing every article.
//!
//! ALTER TABLE adds one column per statement: SQLite takes no more.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const TOP_KIND: &str = "idx_comments_top_kind";
const TOP_BEST: &str = "idx_comments_top_best";
const REPLIES_BEST: &str = "idx_comments_replies_best";
const REVIEW_STARS: &str = "idx_comments_review_stars";
const VOTES_USER: &str = "idx_comment_votes_user";
const RATING_COUNT: &str = "idx_articles_rating_count";

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
        let comment_columns = [
            ColumnDef::new(Comments::Kind)
                .string_len(8)
                .not_null()
                .default("comment")
                .check(Expr::col(Comments::Kind).is_in(["comment", "review"]))
                .to_owned(),
            ColumnDef::new(Comments::Stars)
                .small_integer()
                .null()
                .check(Expr::col(Comments::Stars).between(1, 5))
                .to_owned(),
            ColumnDef::new(Comments::Verified)
                .boolean()
                .not_null()
                .default(false)
                .to_owned(),
            counter(Comments::VotesUp),
            counter(Comments::VotesDown),
            ColumnDef::new(Comments::BestScore)
                .double()
                .not_null()
                .default(0.0)
                .to_owned(),
        ];
        for mut col in comment_columns {
            m.alter_table(
                Table::alter()
                    .table(Comments::Table)
                    .add_column(&mut col)
                    .to_owned(),
            )
            .await?;
        }
        m.alter_table(
            Table::alter()
                .table(Articles::Table)
                .add_column(counter(Articles::ReviewCount))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Ratings::Table)
                .add_column(ColumnDef::new(Ratings::ReviewId).string_len(64).null())
                .to_owned(),
        )
        .await?;

        // Top-level listings by kind: comments and reviews each in keyset order, newest
        // or oldest, and by best score.
        m.create_index(
            Index::create()
                .name(TOP_KIND)
                .table(Comments::Table)
                .col(Comments::ArticleId)
                .col(Comments::Kind)
                .col(Comments::CreatedAt)
                .col(Comments::Id)
                .and_where(Expr::col(Comments::ParentId).is_null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name(TOP_BEST)
                .table(Comments::Table)
                .col(Comments::ArticleId)
                .col(Comments::Kind)
                .col(Comments::BestScore)
                .col(Comments::CreatedAt)
                .col(Comments::Id)
                .and_where(Expr::col(Comments::ParentId).is_null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name(REPLIES_BEST)
                .table(Comments::Table)
                .col(Comments::ParentId)
                .col(Comments::BestScore)
                .col(Comments::CreatedAt)
                .col(Comments::Id)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name(REVIEW_STARS)
                .table(Comments::Table)
                .col(Comments::ArticleId)
                .col(Comments::Stars)
                .col(Comments::CreatedAt)
                .col(Comments::Id)
                .and_where(Expr::col(Comments::Kind).eq("review"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(CommentVotes::Table)
                .col(
                    ColumnDef::new(CommentVotes::CommentId)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(CommentVotes::UserId)
                        .string_len(128)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(CommentVotes::Vote)
                        .string_len(4)
                        .not_null()
                        .check(Expr::col(CommentVotes::Vote).is_in(["up", "down"])),
                )
                .col(
                    ColumnDef::new(CommentVotes::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(CommentVotes::UpdatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .primary_key(
                    Index::create()
                        .name("pk_comment_votes")
                        .col(CommentVotes::CommentId)
                        .col(CommentVotes::UserId),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_comment_votes_comment")
                        .from(CommentVotes::Table, CommentVotes::CommentId)
                        .to(Comments::Table, Comments::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name(VOTES_USER)
                .table(CommentVotes::Table)
                .col(CommentVotes::UserId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(RatingTotals::Table)
                .col(
                    ColumnDef::new(RatingTotals::Id)
                        .integer()
                        .not_null()
                        .primary_key(),
                )
                .col(counter(RatingTotals::RatingCount))
                .col(counter(RatingTotals::RatingSum))
                .to_owned(),
        )
        .await?;
        // The one row, from the articles' kept counters as they are now.
        m.get_connection()
            .execute_unprepared(
                "INSERT INTO rating_totals (id, rating_count, rating_sum) \
                 SELECT 1, COALESCE(SUM(rating_count), 0), COALESCE(SUM(rating_sum), 0) \
                 FROM articles",
            )
            .await?;
        m.create_index(
            Index::create()
                .name(RATING_COUNT)
                .table(Articles::Table)
                .col(Articles::RatingCount)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name(RATING_COUNT)
                .table(Articles::Table)
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(RatingTotals::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(CommentVotes::Table).to_owned())
            .await?;
        for name in [TOP_KIND, TOP_BEST, REPLIES_BEST, REVIEW_STARS] {
            m.drop_index(Index::drop().name(name).table(Comments::Table).to_owned())
                .await?;
        }
        m.alter_table(
            Table::alter()
                .table(Ratings::Table)
                .drop_column(Ratings::ReviewId)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Articles::Table)
                .drop_column(Articles::ReviewCount)
                .to_owned(),
        )
        .await?;
        for col in [
            Comments::BestScore,
            Comments::VotesDown,
            Comments::VotesUp,
            Comments::Verified,
            Comments::Stars,
            Comments::Kind,
        ] {
            m.alter_table(
                Table::alter()
                    .table(Comments::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Comments {
    Table,
    Id,
    ArticleId,
    ParentId,
    CreatedAt,
    Kind,
    Stars,
    Verified,
    VotesUp,
    VotesDown,
    BestScore,
}

#[derive(DeriveIden)]
enum Articles {
    Table,
    RatingCount,
    ReviewCount,
}

#[derive(DeriveIden)]
enum Ratings {
    Table,
    ReviewId,
}

#[derive(DeriveIden)]
enum CommentVotes {
    Table,
    CommentId,
    UserId,
    Vote,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RatingTotals {
    Table,
    Id,
    RatingCount,
    RatingSum,
}
