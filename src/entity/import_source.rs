use sea_orm::entity::prelude::*;

/// Which comment an imported foreign record (`format`, its id there) became
/// (`tally import`, issue 22).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "import_sources")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub format: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub source_id: String,
    pub comment_id: String,
    pub imported_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
