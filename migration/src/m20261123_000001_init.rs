//! The initial schema: articles with kept counters, comments, ratings, and the
//! moderation tables (flags, log, bans, settings, queue counters) plus idempotency keys.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const STATUSES: [&str; 5] = ["pending", "approved", "rejected", "spam", "deleted"];
/// Rows of `queue_counters`: one per status plus `flagged` (comments with unresolved flags).
const COUNTERS: [&str; 6] = [
    "pending", "approved", "rejected", "spam", "deleted", "flagged",
];

fn ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

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
                .table(Articles::Table)
                .col(
                    ColumnDef::new(Articles::Id)
                        .string_len(200)
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Articles::Title).text().null())
                .col(ColumnDef::new(Articles::Url).text().null())
                .col(
                    ColumnDef::new(Articles::CommentsOpen)
                        .boolean()
                        .not_null()
                        .default(true),
                )
                .col(
                    ColumnDef::new(Articles::ModerationMode)
                        .string_len(8)
                        .null()
                        .check(Expr::col(Articles::ModerationMode).is_in(["post", "pre"])),
                )
                .col(
                    ColumnDef::new(Articles::Registered)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(counter(Articles::RatingCount))
                .col(counter(Articles::RatingSum))
                .col(counter(Articles::Stars1))
                .col(counter(Articles::Stars2))
                .col(counter(Articles::Stars3))
                .col(counter(Articles::Stars4))
                .col(counter(Articles::Stars5))
                .col(counter(Articles::CommentCount))
                .col(counter(Articles::TopLevelCount))
                .col(ts(Articles::CreatedAt))
                .col(ts(Articles::UpdatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Comments::Table)
                .col(
                    ColumnDef::new(Comments::Id)
                        .string_len(36)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(Comments::ArticleId)
                        .string_len(200)
                        .not_null(),
                )
                .col(ColumnDef::new(Comments::ParentId).string_len(36).null())
                .col(
                    ColumnDef::new(Comments::AuthorId)
                        .string_len(160)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Comments::AuthorName)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Comments::IsGuest)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(ColumnDef::new(Comments::Body).text().not_null())
                .col(
                    ColumnDef::new(Comments::Status)
                        .string_len(16)
                        .not_null()
                        .check(Expr::col(Comments::Status).is_in(STATUSES)),
                )
                .col(
                    ColumnDef::new(Comments::Version)
                        .integer()
                        .not_null()
                        .default(1),
                )
                .col(counter(Comments::ReplyCount))
                .col(
                    ColumnDef::new(Comments::FlagCount)
                        .integer()
                        .not_null()
                        .default(0),
                )
                .col(
                    ColumnDef::new(Comments::AutoScore)
                        .double()
                        .not_null()
                        .default(0.0),
                )
                .col(
                    ColumnDef::new(Comments::AutoReasons)
                        .text()
                        .not_null()
                        .default("[]"),
                )
                .col(ColumnDef::new(Comments::Fingerprint).string_len(64).null())
                .col(ts(Comments::CreatedAt))
                .col(ts(Comments::UpdatedAt))
                .col(
                    ColumnDef::new(Comments::EditedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_comments_article")
                        .from(Comments::Table, Comments::ArticleId)
                        .to(Articles::Table, Articles::Id),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_comments_parent")
                        .from(Comments::Table, Comments::ParentId)
                        .to(Comments::Table, Comments::Id),
                )
                .to_owned(),
        )
        .await?;
        // Keyset pagination: every listing filters on a prefix and orders by (created_at, id).
        let comment_indexes: [(&str, &[Comments]); 5] = [
            (
                "idx_comments_thread",
                &[
                    Comments::ArticleId,
                    Comments::ParentId,
                    Comments::CreatedAt,
                    Comments::Id,
                ],
            ),
            (
                "idx_comments_replies",
                &[Comments::ParentId, Comments::CreatedAt, Comments::Id],
            ),
            (
                "idx_comments_queue",
                &[Comments::Status, Comments::CreatedAt, Comments::Id],
            ),
            (
                "idx_comments_article_queue",
                &[
                    Comments::ArticleId,
                    Comments::Status,
                    Comments::CreatedAt,
                    Comments::Id,
                ],
            ),
            (
                "idx_comments_author",
                &[Comments::AuthorId, Comments::Status, Comments::CreatedAt],
            ),
        ];
        for (name, cols) in comment_indexes {
            let mut idx = Index::create();
            idx.name(name).table(Comments::Table);
            for c in cols {
                idx.col(c.clone());
            }
            m.create_index(idx.to_owned()).await?;
        }
        m.create_index(
            Index::create()
                .name("idx_comments_flagged")
                .table(Comments::Table)
                .col(Comments::FlagCount)
                .col(Comments::CreatedAt)
                .col(Comments::Id)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Ratings::Table)
                .col(
                    ColumnDef::new(Ratings::ArticleId)
                        .string_len(200)
                        .not_null(),
                )
                .col(ColumnDef::new(Ratings::UserId).string_len(128).not_null())
                .col(
                    ColumnDef::new(Ratings::Stars)
                        .small_integer()
                        .not_null()
                        .check(Expr::col(Ratings::Stars).between(1, 5)),
                )
                .col(ts(Ratings::CreatedAt))
                .col(ts(Ratings::UpdatedAt))
                .primary_key(
                    Index::create()
                        .name("pk_ratings")
                        .col(Ratings::ArticleId)
                        .col(Ratings::UserId),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_ratings_article")
                        .from(Ratings::Table, Ratings::ArticleId)
                        .to(Articles::Table, Articles::Id),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Flags::Table)
                .col(ColumnDef::new(Flags::CommentId).string_len(36).not_null())
                .col(ColumnDef::new(Flags::UserId).string_len(128).not_null())
                .col(
                    ColumnDef::new(Flags::Reason)
                        .string_len(16)
                        .not_null()
                        .check(Expr::col(Flags::Reason).is_in([
                            "spam",
                            "abuse",
                            "off_topic",
                            "other",
                        ])),
                )
                .col(ColumnDef::new(Flags::Note).text().null())
                .col(ts(Flags::CreatedAt))
                .col(
                    ColumnDef::new(Flags::ResolvedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .primary_key(
                    Index::create()
                        .name("pk_flags")
                        .col(Flags::CommentId)
                        .col(Flags::UserId),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_flags_comment")
                        .from(Flags::Table, Flags::CommentId)
                        .to(Comments::Table, Comments::Id),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ModerationLog::Table)
                .col(
                    ColumnDef::new(ModerationLog::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(ts(ModerationLog::At))
                .col(
                    ColumnDef::new(ModerationLog::ActorId)
                        .string_len(128)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ModerationLog::ActorName)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ModerationLog::Action)
                        .string_len(24)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ModerationLog::CommentId)
                        .string_len(36)
                        .null(),
                )
                .col(
                    ColumnDef::new(ModerationLog::SubjectUserId)
                        .string_len(160)
                        .null(),
                )
                .col(
                    ColumnDef::new(ModerationLog::FromStatus)
                        .string_len(16)
                        .null(),
                )
                .col(
                    ColumnDef::new(ModerationLog::ToStatus)
                        .string_len(16)
                        .null(),
                )
                .col(ColumnDef::new(ModerationLog::Reason).text().null())
                .to_owned(),
        )
        .await?;
        for (name, col) in [
            ("idx_moderation_log_comment", ModerationLog::CommentId),
            ("idx_moderation_log_actor", ModerationLog::ActorId),
        ] {
            m.create_index(
                Index::create()
                    .name(name)
                    .table(ModerationLog::Table)
                    .col(col)
                    .col(ModerationLog::Id)
                    .to_owned(),
            )
            .await?;
        }

        m.create_table(
            Table::create()
                .table(Bans::Table)
                .col(
                    ColumnDef::new(Bans::UserId)
                        .string_len(160)
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Bans::Reason).text().not_null())
                .col(ColumnDef::new(Bans::CreatedBy).string_len(128).not_null())
                .col(ts(Bans::CreatedAt))
                .col(
                    ColumnDef::new(Bans::ExpiresAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Settings::Table)
                .col(
                    ColumnDef::new(Settings::Key)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Settings::Value).text().not_null())
                .col(ts(Settings::UpdatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(QueueCounters::Table)
                .col(
                    ColumnDef::new(QueueCounters::Queue)
                        .string_len(16)
                        .not_null()
                        .primary_key(),
                )
                .col(counter(QueueCounters::Count))
                .to_owned(),
        )
        .await?;
        let mut seed = Query::insert();
        seed.into_table(QueueCounters::Table)
            .columns([QueueCounters::Queue, QueueCounters::Count]);
        for q in COUNTERS {
            seed.values_panic([q.into(), 0i64.into()]);
        }
        m.exec_stmt(seed.to_owned()).await?;

        m.create_table(
            Table::create()
                .table(IdempotencyKeys::Table)
                .col(
                    ColumnDef::new(IdempotencyKeys::Scope)
                        .string_len(200)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(IdempotencyKeys::Key)
                        .string_len(255)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(IdempotencyKeys::RequestHash)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(IdempotencyKeys::StatusCode)
                        .small_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(IdempotencyKeys::ResponseBody)
                        .text()
                        .not_null(),
                )
                .col(ts(IdempotencyKeys::CreatedAt))
                .primary_key(
                    Index::create()
                        .name("pk_idempotency_keys")
                        .col(IdempotencyKeys::Scope)
                        .col(IdempotencyKeys::Key),
                )
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            IdempotencyKeys::Table.into_iden(),
            QueueCounters::Table.into_iden(),
            Settings::Table.into_iden(),
            Bans::Table.into_iden(),
            ModerationLog::Table.into_iden(),
            Flags::Table.into_iden(),
            Ratings::Table.into_iden(),
            Comments::Table.into_iden(),
            Articles::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Articles {
    Table,
    Id,
    Title,
    Url,
    CommentsOpen,
    ModerationMode,
    Registered,
    RatingCount,
    RatingSum,
    #[sea_orm(iden = "stars_1")]
    Stars1,
    #[sea_orm(iden = "stars_2")]
    Stars2,
    #[sea_orm(iden = "stars_3")]
    Stars3,
    #[sea_orm(iden = "stars_4")]
    Stars4,
    #[sea_orm(iden = "stars_5")]
    Stars5,
    CommentCount,
    TopLevelCount,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone)]
enum Comments {
    Table,
    Id,
    ArticleId,
    ParentId,
    AuthorId,
    AuthorName,
    IsGuest,
    Body,
    Status,
    Version,
    ReplyCount,
    FlagCount,
    AutoScore,
    AutoReasons,
    Fingerprint,
    CreatedAt,
    UpdatedAt,
    EditedAt,
}

#[derive(DeriveIden)]
enum Ratings {
    Table,
    ArticleId,
    UserId,
    Stars,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Flags {
    Table,
    CommentId,
    UserId,
    Reason,
    Note,
    CreatedAt,
    ResolvedAt,
}

#[derive(DeriveIden)]
enum ModerationLog {
    Table,
    Id,
    At,
    ActorId,
    ActorName,
    Action,
    CommentId,
    SubjectUserId,
    FromStatus,
    ToStatus,
    Reason,
}

#[derive(DeriveIden)]
enum Bans {
    Table,
    UserId,
    Reason,
    CreatedBy,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Settings {
    Table,
    Key,
    Value,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum QueueCounters {
    Table,
    Queue,
    Count,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Scope,
    Key,
    RequestHash,
    StatusCode,
    ResponseBody,
    CreatedAt,
}
