use sea_orm::entity::prelude::*;

/// Append-only: rows are inserted, never deleted, and updated only by an erasure
/// (`service::user_data`), which replaces a user's id and name by `erased`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "moderation_log")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub at: DateTimeUtc,
    pub actor_id: String,
    pub actor_name: String,
    pub action: String,
    pub comment_id: Option<String>,
    pub subject_user_id: Option<String>,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
