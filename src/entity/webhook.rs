use sea_orm::entity::prelude::*;

/// A webhook subscription (`/api/v1/admin/webhooks`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhooks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub url: String,
    /// JSON array of event types, or `["*"]`.
    pub events: String,
    pub description: Option<String>,
    /// `whsec_…`: signs every delivery; shown once, when created.
    pub secret: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
