use sea_orm::entity::prelude::*;

/// A flagger's track record: their flags on comments a moderator then rejected or
/// marked spam (`upheld`) or approved (`dismissed`). Kept counters.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "flagger_records")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    pub upheld: i64,
    pub dismissed: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
