use sea_orm::entity::prelude::*;

/// The spam model's one row of per-class totals (id 1); `version` grows with each change.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "spam_model")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    /// Comments learned as spam.
    pub spam_docs: i64,
    /// Comments learned as ham (not spam).
    pub ham_docs: i64,
    /// Token occurrences learned as spam.
    pub spam_words: i64,
    /// Token occurrences learned as ham.
    pub ham_words: i64,
    pub version: i64,
    pub updated_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
