use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "articles")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub title: Option<String>,
    pub url: Option<String>,
    pub comments_open: bool,
    pub moderation_mode: Option<String>,
    pub registered: bool,
    pub rating_count: i64,
    pub rating_sum: i64,
    pub stars_1: i64,
    pub stars_2: i64,
    pub stars_3: i64,
    pub stars_4: i64,
    pub stars_5: i64,
    /// Approved comments, replies included.
    pub comment_count: i64,
    /// Listed top-level comments of kind `comment` (approved, or deleted with visible
    /// replies).
    pub top_level_count: i64,
    /// Listed reviews (approved, or deleted with visible replies).
    pub review_count: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
