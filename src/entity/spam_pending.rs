use sea_orm::entity::prelude::*;

/// A change of the spam model's counts a decision made and `service::spam::fold_pending`
/// has not applied yet (deleted in the transaction that applies it).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "spam_pending")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub spam_docs: i64,
    pub ham_docs: i64,
    pub spam_words: i64,
    pub ham_words: i64,
    /// JSON object: token → `[spam, ham]` change.
    pub tokens: String,
    /// How many decisions the change sums (a batch's decisions write one row).
    pub changes: i64,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
