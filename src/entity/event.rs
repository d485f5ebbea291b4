use sea_orm::entity::prelude::*;

/// The outbox (`service::events`): append-only, purged by age.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub kind: String,
    pub article_id: Option<String>,
    pub comment_id: Option<String>,
    /// The event as JSON (`service::events::Event`).
    pub data: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
