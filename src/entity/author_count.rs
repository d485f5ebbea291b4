use sea_orm::entity::prelude::*;

/// Kept per-author counts of comments by final status (the queue's `author_history`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "author_counts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub author_id: String,
    pub approved: i64,
    pub rejected: i64,
    pub spam: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
